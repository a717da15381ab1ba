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

    /// The issuer takes the tenant's environment from the tenant row this
    /// transaction holds locked, so one created while the tenant is being promoted
    /// either commits first (and is promoted with the others) or comes after the
    /// promotion and is refused, its sandbox key revoked (401); a production key
    /// then creates a production issuer with all its counters.
    @Sendable func create(_ request: Request, context: TenantRequestContext) async throws -> Response {
        let input = try await Input.read(request)
        let parsed = Result { try NewIssuer(input) }
        let issuer = try await database.transactionAddingToRoster(for: context.token, facts: context.facts) { transaction, _ in
            try IssuersStore.create(transaction, try parsed.get())
        }
        return Reply.json(.created, [("issuer", issuer)])
    }

    @Sendable func list(_ request: Request, context: TenantRequestContext) async throws -> Response {
        let (_, issuers) = try await database.read(for: context.token, facts: context.facts, IssuersStore.all)
        return Reply.json([("issuers", .array(issuers))])
    }

    @Sendable func show(_ request: Request, context: TenantRequestContext) async throws -> Response {
        let id = Format.pathID(context.parameters.get("id"))
        let (_, issuer) = try await database.read(for: context.token, facts: context.facts, IssuersStore.one(id ?? 0))
        return Reply.json([("issuer", issuer)])
    }

    @Sendable func sequentials(_ request: Request, context: TenantRequestContext) async throws -> Response {
        let id = Format.pathID(context.parameters.get("id")) ?? 0
        let (_, exists, counters) = try await database.read(
            for: context.token, facts: context.facts, IssuersStore.exists(id), IssuersStore.counters(id)
        )
        guard exists else { throw IssuersStore.notFound }
        return Reply.json([("sequentials", .array(counters))])
    }
}

/// The body of POST /v1/issuers.
struct NewIssuer: Sendable {
    let ruc: String
    let legalName: String
    let tradeName: String?
    let establishment: String
    let emissionPoint: String
    let address: String?

    init(_ input: Input) throws {
        var input = input
        let ruc = input.formatted("ruc", required: true, rule: "exactly 13 digits") { Format.digits($0, count: 13) }
        let legalName = input.string("legalName", required: true, length: 1...300)
        tradeName = input.string("tradeName", required: false, length: 1...300)
        let establishment = input.formatted(
            "establishment", required: true, rule: "3 digits other than \"000\"", matches: Format.branchCode)
        let emissionPoint = input.formatted(
            "emissionPoint", required: true, rule: "3 digits other than \"000\"", matches: Format.branchCode)
        address = input.string("address", required: false, length: 1...300)
        try input.validated()
        guard let ruc, let legalName, let establishment, let emissionPoint else { throw APIError.internalError }
        self.ruc = ruc
        self.legalName = legalName
        self.establishment = establishment
        self.emissionPoint = emissionPoint
    }
}
