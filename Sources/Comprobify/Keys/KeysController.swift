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
        let (_, keys) = try await database.read(for: context.token, facts: context.facts, KeysStore.activeKeys)
        return Reply.json([("keys", keys)])
    }

    /// A mint racing a promotion either commits first (and its key is then
    /// swapped by the promotion) or sees the minting key revoked (401): see
    /// `Database.transactionAddingToRoster`. Past `KeysStore.limit` active keys
    /// of the environment, 409.
    @Sendable func mint(_ request: Request, context: TenantRequestContext) async throws -> Response {
        let input = try await database.input(request, context, allowEmpty: true)
        let parsed = Result { try MintRequest(input) }
        let environment = (try? parsed.get())?.environment ?? .sandbox
        let token = try await database.transactionAddingToRoster(
            for: context.token, facts: context.facts, count: KeysStore.activeCount(environment)
        ) { transaction, principal, count in
            let mint = try parsed.get()
            guard principal.tenantActive else {
                throw APIError.forbidden("Verify the tenant's email address before minting keys.")
            }
            if mint.environment == .production {
                try KeysStore.requirePromotedIssuer(transaction, tenantInProduction: principal.tenantEnvironment == .production)
            }
            try KeysStore.requireRoom(count: count, environment: mint.environment)
            return try KeysStore.insertKey(
                transaction, label: mint.label, environment: mint.environment, actor: "tenant", actorKeyID: principal.keyID
            )
        }
        return Reply.json(.created, [("apiKey", .string(token.plaintext))], noStore: true)
    }

    /// Revokes one of the tenant's keys; never the one making the request.
    @Sendable func revoke(_ request: Request, context: TenantRequestContext) async throws -> Response {
        let id = Format.pathID(context.parameters.get("id"))
        // The tenant row first, then the keys, as a promotion takes them: two
        // keys revoking each other, or a revocation beside a promotion, queue
        // instead of deadlocking (which cost a second each before PostgreSQL
        // broke it and the transaction was tried again).
        try await database.transactionHoldingTenantRow(
            for: context.token, facts: context.facts, tenantRow: TenantsStore.lockedLikePromotion
        ) { transaction, principal, _ in
            guard let id else { throw KeysStore.keyNotFound }
            if id == principal.keyID {
                throw APIError.badRequest(
                    "A key cannot revoke itself: use a different key, or coordinate with admin support."
                )
            }
            try KeysStore.revokeKey(transaction, id: id, actor: "tenant", actorKeyID: principal.keyID)
        }
        return Reply.json([])
    }
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
