import Hummingbird
import Postgres

/// GET/POST/DELETE /v1/keys, as the published API keys documentation says.
struct KeysController {
    let database: Database

    func addRoutes(to group: RouterGroup<TenantRequestContext>) {
        group.get("keys", use: list)
        group.post("keys", use: mint)
        group.delete("keys/:id", use: revoke)
    }

    /// Active keys of the tenant, oldest first. One round trip.
    @Sendable func list(_ request: Request, context: TenantRequestContext) async throws -> Response {
        let (_, results) = try await database.readAsTenant(
            context.token, facts: context.facts,
            [Statement("SELECT \(Representation.keyColumns) FROM api_keys WHERE revoked_at IS NULL ORDER BY id")]
        )
        return Reply.json([("keys", .array(try results[0].rows.map(Representation.key)))])
    }

    /// The fields of a mint request (POST /v1/keys and its admin twin).
    struct MintRequest: Sendable {
        let label: String?
        let environment: Environment

        init(_ input: Input) throws {
            var input = input
            label = input.string("label", required: false, length: 1...100)
            let environment = input.choice("environment", required: false, allowed: ["sandbox", "production"])
            try input.validated()
            self.environment = environment.flatMap(Environment.init(rawValue:)) ?? .sandbox
        }
    }

    /// A mint racing a promotion either commits first (and its key is then
    /// swapped by the promotion) or sees the minting key revoked (401): see
    /// `Database.asTenantAddingToRoster`.
    @Sendable func mint(_ request: Request, context: TenantRequestContext) async throws -> Response {
        let input = try await Input.read(request, allowEmpty: true)
        let parsed = Result { try MintRequest(input) }
        let token = try await database.asTenantAddingToRoster(context.token, facts: context.facts) { transaction, principal in
            let mint = try parsed.get()
            guard principal.tenantActive else {
                throw APIError.forbidden("Verify the tenant's email address before minting keys.")
            }
            if mint.environment == .production {
                try KeysController.requirePromotedIssuer(transaction, tenantInProduction: principal.tenantEnvironment == .production)
            }
            return try KeysController.insertKey(
                transaction, label: mint.label, environment: mint.environment, actor: "tenant", actorKeyID: principal.keyID
            )
        }
        return Reply.json(.created, [("apiKey", .string(token.plaintext))], noStore: true)
    }

    /// Revokes one of the tenant's keys; never the one making the request.
    @Sendable func revoke(_ request: Request, context: TenantRequestContext) async throws -> Response {
        let id = Format.pathID(context.parameters.get("id"))
        try await database.asTenant(context.token, facts: context.facts) { transaction, principal, _ in
            guard let id else { throw KeysController.keyNotFound }
            if id == principal.keyID {
                throw APIError.badRequest(
                    "A key cannot revoke itself: use a different key, or coordinate with admin support."
                )
            }
            try KeysController.revokeKey(transaction, id: id, actor: "tenant", actorKeyID: principal.keyID)
        }
        return Reply.json([])
    }

    static let keyNotFound = APIError.notFound("No active key with this id.")

    /// A production key needs a production issuer to act on: 403 "before any
    /// issuer has been promoted" (the published documentation), which covers a
    /// tenant still in sandbox and one promoted with no issuer yet.
    static func requirePromotedIssuer(_ transaction: Transaction, tenantInProduction: Bool) throws {
        let forbidden = APIError.forbidden(
            "Production keys can be minted only once the tenant has been promoted to production with at least one issuer.")
        guard tenantInProduction else { throw forbidden }
        let found = try transaction.query("SELECT EXISTS (SELECT 1 FROM issuers WHERE NOT sandbox)")
        guard try found[0].decode(Bool.self, at: 0) else { throw forbidden }
    }

    /// Inserts a key for the transaction's tenant and its audit event, and commits.
    static func insertKey(
        _ transaction: Transaction, label: String?, environment: Environment, actor: String, actorKeyID: Int64?
    ) throws -> APIToken {
        let token = APIToken.generate(environment)
        try transaction.commit(after: [
            Statement(
                """
                WITH minted AS (
                    INSERT INTO api_keys (tenant_id, label, environment, token_digest, token_prefix)
                    VALUES (current_tenant_id(), $1, $2, $3, $4)
                    RETURNING tenant_id, id
                )
                INSERT INTO audit_events (tenant_id, action, actor, actor_key_id, details)
                SELECT tenant_id, 'api_key.minted', $5, $6::bigint,
                       jsonb_build_object('keyId', id, 'environment', $2::text, 'label', $1::text)
                  FROM minted
                """,
                [label, environment.rawValue, token.digest, token.prefix, actor, actorKeyID]
            )
        ])
        return token
    }

    /// Revokes an active key of the transaction's tenant with its audit event and
    /// commits; 404 when there is no such active key (unknown, revoked or another tenant's).
    static func revokeKey(_ transaction: Transaction, id: Int64, actor: String, actorKeyID: Int64?) throws {
        let results = try transaction.commit(after: [
            Statement(
                """
                WITH revoked AS (
                    UPDATE api_keys SET revoked_at = now()
                     WHERE id = $1 AND revoked_at IS NULL
                    RETURNING tenant_id, id
                ), audited AS (
                    INSERT INTO audit_events (tenant_id, action, actor, actor_key_id, details)
                    SELECT tenant_id, 'api_key.revoked', $2, $3::bigint, jsonb_build_object('keyId', id)
                      FROM revoked
                )
                SELECT count(*) FROM revoked
                """,
                [id, actor, actorKeyID]
            )
        ])
        guard try results[0].first?.decode(Int64.self, at: 0) == 1 else { throw keyNotFound }
    }
}
