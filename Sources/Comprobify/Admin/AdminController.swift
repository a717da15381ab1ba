import Hummingbird
import Postgres

/// Support's routes, enabled only when COMPROBIFY_ADMIN_TOKEN is set.
struct AdminController {
    let database: Database
    let adminToken: String

    func addRoutes(to router: Router<AppRequestContext>) {
        let group = router.group("admin/v1/tenants")
        group.post(":id/verify-email", use: verifyEmail)
        group.post(":id/keys", use: mintKey)
        group.delete(":id/keys/:keyId", use: revokeKey)
    }

    /// The admin bearer token, compared in constant time.
    func authorize(_ context: AppRequestContext) throws {
        guard context.presents(adminToken) else {
            throw APIError.unauthorized("A valid admin token is required (Authorization: Bearer <admin token>).")
        }
    }

    static let tenantNotFound = APIError.notFound("No tenant with this id.")

    @Sendable func verifyEmail(_ request: Request, context: AppRequestContext) async throws -> Response {
        try authorize(context)
        guard let id = Format.pathID(context.parameters.get("id")) else { throw AdminController.tenantNotFound }
        let tenant = try await database.transaction(forTenantID: id, prologue: [TenantsStore.lockedForSupport]) { transaction, results in
            guard let row = results[0].first else { throw AdminController.tenantNotFound }
            if try row.decode(String.self, at: 3) == "ACTIVE" {
                return try TenantsStore.tenant(row)
            }
            return try TenantsStore.verifyBySupport(transaction)
        }
        return Reply.json([("tenant", tenant)])
    }

    @Sendable func mintKey(_ request: Request, context: AppRequestContext) async throws -> Response {
        try authorize(context)
        guard let id = Format.pathID(context.parameters.get("id")) else { throw AdminController.tenantNotFound }
        let bytes = try await Input.collect(request, from: context.bodyPeer)
        // The body and its fields are answered after the tenant (404 first, as on every route).
        let parsed = Result { try MintRequest(try Input.parse(bytes, of: request, allowEmpty: true)) }
        let environment = (try? parsed.get())?.environment ?? .sandbox
        // The count runs after the lock is taken, as in `Database.transactionAddingToRoster`.
        let prologue = [TenantsStore.rosterLock, KeysStore.activeCount(environment)]
        let token = try await database.transaction(forTenantID: id, prologue: prologue) { transaction, results in
            guard let row = results[0].first else { throw AdminController.tenantNotFound }
            let mint = try parsed.get()
            if mint.environment == .production {
                try KeysStore.requirePromotedIssuer(
                    transaction, tenantInProduction: try row.decode(String.self, at: 1) == "production")
            }
            try KeysStore.requireRoom(count: try results[1][0].decode(Int64.self, at: 0), environment: mint.environment)
            return try KeysStore.insertKey(
                transaction, label: mint.label, environment: mint.environment, actor: "support", actorKeyID: nil
            )
        }
        return Reply.json(.created, [("apiKey", .string(token.plaintext))], noStore: true)
    }

    @Sendable func revokeKey(_ request: Request, context: AppRequestContext) async throws -> Response {
        try authorize(context)
        guard let id = Format.pathID(context.parameters.get("id")) else { throw AdminController.tenantNotFound }
        let keyID = Format.pathID(context.parameters.get("keyId"))
        try await database.transaction(forTenantID: id, prologue: [TenantsStore.lockedForSupport]) { transaction, results in
            // The tenant's 404 first, then the key's.
            guard results[0].count == 1 else { throw AdminController.tenantNotFound }
            guard let keyID else { throw KeysStore.keyNotFound }
            try KeysStore.revokeKey(transaction, id: keyID, actor: "support", actorKeyID: nil)
        }
        return Reply.json([])
    }
}
