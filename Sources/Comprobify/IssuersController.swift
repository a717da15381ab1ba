import Hummingbird
import Postgres

/// POST/GET /v1/issuers, GET /v1/issuers/:id and its sequentials.
struct IssuersController {
    let database: Database

    func addRoutes(to group: RouterGroup<TenantRequestContext>) {
        group.post("issuers", use: create)
        group.get("issuers", use: list)
        group.get("issuers/:id", use: show)
        group.get("issuers/:id/sequentials", use: sequentials)
    }

    static let notFound = APIError.notFound("No issuer with this id.")

    /// The issuer takes the tenant's environment from the tenant row this
    /// transaction holds locked, so one created while the tenant is being promoted
    /// either commits first (and is promoted with the others) or comes after the
    /// promotion and is refused, its sandbox key revoked (401); a production key
    /// then creates a production issuer with all its counters.
    @Sendable func create(_ request: Request, context: TenantRequestContext) async throws -> Response {
        var input = try await Input.read(request)
        let ruc = input.formatted("ruc", required: true, rule: "exactly 13 digits") { Format.digits($0, count: 13) }
        let legalName = input.string("legalName", required: true, length: 1...300)
        let tradeName = input.string("tradeName", required: false, length: 1...300)
        let establishment = input.formatted(
            "establishment", required: true, rule: "3 digits other than \"000\"", matches: Format.branchCode)
        let emissionPoint = input.formatted(
            "emissionPoint", required: true, rule: "3 digits other than \"000\"", matches: Format.branchCode)
        let address = input.string("address", required: false, length: 1...300)
        let validation = Result { try input.validated() }

        let issuer = try await database.asTenantAddingToRoster(context.token, facts: context.facts) { transaction, _ in
            try validation.get()
            do {
                let results = try transaction.commit(after: [
                    Statement(
                        """
                        WITH issuer AS (
                            INSERT INTO issuers (tenant_id, ruc, legal_name, trade_name, establishment, emission_point, address, sandbox)
                            SELECT t.id, $1, $2, $3, $4, $5, $6, t.environment = 'sandbox'
                              FROM tenants t WHERE t.id = current_tenant_id()
                            RETURNING \(Representation.issuerColumns), tenant_id
                        ), counters AS (
                            INSERT INTO sequentials (tenant_id, issuer_id, document_type, environment)
                            SELECT i.tenant_id, i.id, d.code, 'production'
                              FROM issuer i CROSS JOIN document_types d
                             WHERE NOT i.sandbox
                        )
                        SELECT \(Representation.issuerColumns) FROM issuer
                        """,
                        [ruc, legalName, tradeName, establishment, emissionPoint, address]
                    )
                ])
                return try Representation.issuer(results[0][0])
            } catch let error as PostgresError where error.hasCode(SQLState.uniqueViolation) {
                throw APIError.conflict("This tenant already has an issuer with this RUC, establishment and emission point.")
            }
        }
        return Reply.json(.created, [("issuer", issuer)])
    }

    @Sendable func list(_ request: Request, context: TenantRequestContext) async throws -> Response {
        let (_, results) = try await database.readAsTenant(
            context.token, facts: context.facts,
            [Statement("SELECT \(Representation.issuerColumns) FROM issuers ORDER BY id")]
        )
        return Reply.json([("issuers", .array(try results[0].rows.map(Representation.issuer)))])
    }

    @Sendable func show(_ request: Request, context: TenantRequestContext) async throws -> Response {
        let id = Format.pathID(context.parameters.get("id")) ?? 0
        let (_, results) = try await database.readAsTenant(
            context.token, facts: context.facts,
            [Statement("SELECT \(Representation.issuerColumns) FROM issuers WHERE id = $1", [id])]
        )
        guard let row = results[0].first else { throw IssuersController.notFound }
        return Reply.json([("issuer", try Representation.issuer(row))])
    }

    @Sendable func sequentials(_ request: Request, context: TenantRequestContext) async throws -> Response {
        let id = Format.pathID(context.parameters.get("id")) ?? 0
        let (_, results) = try await database.readAsTenant(
            context.token, facts: context.facts,
            [
                Statement("SELECT 1 FROM issuers WHERE id = $1", [id]),
                Statement(
                    "SELECT document_type, environment, next_sequential FROM sequentials WHERE issuer_id = $1 ORDER BY environment, document_type",
                    [id]
                ),
            ]
        )
        guard results[0].count == 1 else { throw IssuersController.notFound }
        let counters: [JSONValue] = try results[1].rows.map { row in
            .object([
                ("documentType", try row.string(at: 0)),
                ("environment", try row.string(at: 1)),
                ("next", try row.int(at: 2)),
            ])
        }
        return Reply.json([("sequentials", .array(counters))])
    }
}

extension Format {
    /// Establishment and emission point codes: 3 digits, not "000".
    static func branchCode(_ text: String) -> Bool {
        digits(text, count: 3) && text != "000"
    }
}
