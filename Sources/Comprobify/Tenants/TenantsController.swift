import Foundation
import Hummingbird
import Postgres

/// Sign-up, email verification, GET /v1/tenants/me and promotion.
struct TenantsController {
    let database: Database
    let configuration: Configuration

    /// Routes without authentication.
    func addPublicRoutes(to router: Router<AppRequestContext>) {
        router.post("v1/tenants", use: signUp)
        router.post("v1/tenants/verify-email", use: verifyEmail)
    }

    func addRoutes(to group: RouterGroup<TenantRequestContext>) {
        group.get("tenants/me", use: me)
        group.post("tenants/resend-verification", use: resendVerification)
        group.post("tenants/promote", use: promote)
    }

    @Sendable func signUp(_ request: Request, context: AppRequestContext) async throws -> Response {
        var input = try await Input.read(request, from: context.bodyPeer)
        let email = input.formatted(
            "email", required: true, rule: "a plausible email address of at most 254 characters", matches: Format.email)
        let name = input.string("name", required: true, length: 1...200)
        try input.validated()
        // Stored as sent (API.md); the schema's unique index compares its NFC
        // form, so an accent written composed or not is one address.
        guard let name, let email else { throw APIError.internalError }

        try await enforceSignupLimit(
            for: TenantsController.signupClient(
                context.clientAddress(request, trustProxy: configuration.trustProxy) ?? "unknown"))

        let apiKey = APIToken.generate(.sandbox)
        let verification = Crypto.hex(Crypto.randomBytes(32))
        let tenant = try await database.transactionFindingTenant(prologue: [TenantsStore.newTenantID]) { transaction, _ in
            try TenantsStore.signUp(transaction, email: email, name: name, apiKey: apiKey, verification: verification)
        }
        return Reply.json(.created, [("tenant", tenant), ("apiKey", .string(apiKey.plaintext))], noStore: true)
    }

    /// What the sign-up limit counts by: an IPv4 address, an IPv6 address's
    /// /64 (IPAddress.clientNetwork), or the text as given when it is no address.
    /// A hop some proxies write with its port ("192.0.2.7:51234",
    /// "[2001:db8::1]:443") counts as its address.
    static func signupClient(_ address: String) -> String {
        if let ip = IPAddress(address) { return ip.clientNetwork }
        var host = Substring(address)
        if host.hasPrefix("["), let close = host.firstIndex(of: "]") {
            host = host[host.index(after: host.startIndex)..<close]
        } else if let colon = host.firstIndex(of: ":"), host.lastIndex(of: ":") == colon {
            host = host[..<colon]
        }
        return IPAddress(String(host))?.clientNetwork ?? address
    }

    /// At most SIGNUP_RATE_LIMIT attempts per client per hour, counted in the
    /// database so the limit holds across server instances. Concurrent attempts
    /// from one address are serialized by an advisory lock on the address.
    func enforceSignupLimit(for address: String) async throws {
        let limit = configuration.signupRateLimit
        guard limit > 0 else { return }
        let retryAfter = try await database.transactionFindingTenant(prologue: [TenantsStore.signupLock(address)]) { transaction, _ in
            try TenantsStore.recordSignupAttempt(transaction, address: address, limit: limit)
        }
        if let retryAfter {
            throw APIError.rateLimited("Too many sign-ups from this address; try again later.", retryAfter: retryAfter)
        }
    }

    @Sendable func verifyEmail(_ request: Request, context: AppRequestContext) async throws -> Response {
        var input = try await Input.read(request, from: context.bodyPeer)
        // Any string is looked up: an empty or overlong one is simply unknown (BAD_REQUEST).
        let token = input.string("token", required: true, length: 0...Int.max)
        try input.validated()
        let digest = Crypto.sha256(token ?? "")
        let invalid = APIError.badRequest("The verification token is unknown, already used or expired.")
        try await database.transactionFindingTenant(
            prologue: [TenantsStore.tenantOfVerification(digest), TenantsStore.lockedLikePromotion]
        ) { transaction, results in
            guard results[0].count == 1, try TenantsStore.verify(transaction, digest: digest) else { throw invalid }
        }
        return Reply.json([])
    }

    @Sendable func resendVerification(_ request: Request, context: TenantRequestContext) async throws -> Response {
        let token = Crypto.hex(Crypto.randomBytes(32))
        // Resends of one tenant queue on the tenant row; the state is read by a
        // statement whose snapshot is taken once the lock is held, so it counts
        // the resends and sees a verification that came first.
        try await database.transactionHoldingTenantRow(
            for: context.token, facts: context.facts,
            tenantRow: TenantsStore.lockedLikePromotion, prologue: [TenantsStore.resendState]
        ) { transaction, principal, results in
            guard !principal.tenantActive else {
                throw APIError.conflict(.alreadyVerified, "The tenant's email address is already verified.")
            }
            let (email, recent, wait) = try results[0][0].decode((String, Int64, Int64?).self)
            if recent >= 5 {
                throw APIError.rateLimited(
                    "At most 5 resends of the verification email an hour; try again later.", retryAfter: Int(wait ?? 3600))
            }
            try TenantsStore.resend(transaction, email: email, token: token, actorKeyID: principal.keyID)
        }
        return Reply.json([])
    }

    @Sendable func me(_ request: Request, context: TenantRequestContext) async throws -> Response {
        let (_, tenant) = try await database.read(for: context.token, facts: context.facts, TenantsStore.current)
        return Reply.json([("tenant", tenant)])
    }

    @Sendable func promote(_ request: Request, context: TenantRequestContext) async throws -> Response {
        let input = try await database.input(request, context, allowEmpty: true)
        let requested = Result { try PromotionRequest(input) }
        let keys = try await Promotion(database: database).run(token: context.token, facts: context.facts, request: requested)
        ServiceMetrics.promoted()
        return Reply.json(
            [("apiKeys", .array(keys.map { .object([("label", JSONValue($0.label)), ("apiKey", .string($0.token.plaintext))]) }))],
            noStore: true
        )
    }
}
