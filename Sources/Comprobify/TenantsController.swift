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

    static let verificationLifetime = "48 hours"

    @Sendable func signUp(_ request: Request, context: AppRequestContext) async throws -> Response {
        var input = try await Input.read(request)
        let email = input.formatted(
            "email", required: true, rule: "a plausible email address of at most 254 characters", matches: Format.email)
        let name = input.string("name", required: true, length: 1...200)
        try input.validated()
        guard let email, let name else { throw APIError.internalError }

        try await enforceSignupLimit(for: clientAddress(request, context))

        let apiKey = APIToken.generate(.sandbox)
        let verification = Crypto.hex(Crypto.randomBytes(32))
        let tenant = try await database.pool.transaction(
            prologue: [Statement("SELECT set_config('app.tenant_id', nextval('tenants_id_seq')::text, true)")]
        ) { transaction, _ in
            do {
                let results = try transaction.commit(after: [
                    Statement(
                        "INSERT INTO tenants (id, email, name) VALUES (current_tenant_id(), $1, $2) RETURNING \(Representation.tenantColumns)",
                        [email, name]
                    ),
                    Statement(
                        """
                        INSERT INTO api_keys (tenant_id, label, environment, token_digest, token_prefix)
                        VALUES (current_tenant_id(), 'Initial sandbox key', 'sandbox', $1, $2)
                        """,
                        [apiKey.digest, apiKey.prefix]
                    ),
                    TenantsController.queueVerification(email: email, token: verification),
                    Statement(
                        "INSERT INTO audit_events (tenant_id, action, actor) VALUES (current_tenant_id(), 'tenant.signed_up', 'system')"
                    ),
                ])
                return try Representation.tenant(results[0][0])
            } catch let error as PostgresError where error.hasCode(SQLState.uniqueViolation) {
                throw APIError.conflict("A tenant with this email address already exists.")
            }
        }
        return Reply.json(.created, [("tenant", tenant), ("apiKey", .string(apiKey.plaintext))], noStore: true)
    }

    /// Stores a verification token's digest and queues the message that carries it.
    static func queueVerification(email: String, token: String) -> Statement {
        Statement(
            """
            WITH verification AS (
                INSERT INTO email_verifications (tenant_id, token_digest, expires_at)
                VALUES (current_tenant_id(), $1, now() + interval '\(verificationLifetime)')
            )
            INSERT INTO email_outbox (tenant_id, recipient, subject, body)
            VALUES (current_tenant_id(), $2, 'Verify your Comprobify account',
                    'Confirm your email address with POST /v1/tenants/verify-email and this token (valid 48 hours): ' || $3)
            """,
            [Crypto.sha256(token), email, token]
        )
    }

    /// The client's address: the peer, or the first X-Forwarded-For hop when TRUST_PROXY=1.
    func clientAddress(_ request: Request, _ context: AppRequestContext) -> String {
        if configuration.trustProxy, let forwarded = request.headers[.forwardedFor] {
            let first = forwarded.split(separator: ",").first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
            // At most 255 code points, as the schema counts them.
            if !first.isEmpty { return String(String.UnicodeScalarView(first.unicodeScalars.prefix(255))) }
        }
        return context.peerAddress ?? "unknown"
    }

    /// At most SIGNUP_RATE_LIMIT attempts per address per hour, counted in the
    /// database so the limit holds across server instances. Concurrent attempts
    /// from one address are serialized by an advisory lock on the address.
    func enforceSignupLimit(for address: String) async throws {
        let limit = configuration.signupRateLimit
        guard limit > 0 else { return }
        let retryAfter = try await database.pool.transaction(
            prologue: [Statement("SELECT pg_advisory_xact_lock(hashtextextended('signup:' || $1, 0))", [address])]
        ) { transaction, _ -> Int? in
            let results = try transaction.commit(after: [
                Statement(
                    """
                    WITH recent AS (
                        SELECT count(*) AS attempts, min(attempted_at) AS oldest
                          FROM signup_attempts
                         WHERE client_address = $1 AND attempted_at > now() - interval '1 hour'
                    ), recorded AS (
                        INSERT INTO signup_attempts (client_address)
                        SELECT $1 FROM recent WHERE attempts < $2
                        RETURNING 1
                    )
                    SELECT (SELECT count(*) FROM recorded),
                           ceil(extract(epoch FROM (SELECT oldest FROM recent) + interval '1 hour' - now()))::bigint
                    """,
                    [address, limit]
                )
            ])
            let row = results[0][0]
            return try row.decode(Int64.self, at: 0) == 1 ? nil : Int(try row.decode(Int64?.self, at: 1) ?? 3600)
        }
        if let retryAfter {
            throw APIError.rateLimited("Too many sign-ups from this address; try again later.", retryAfter: retryAfter)
        }
    }

    @Sendable func verifyEmail(_ request: Request, context: AppRequestContext) async throws -> Response {
        var input = try await Input.read(request)
        // Any string is looked up: an empty or overlong one is simply unknown (BAD_REQUEST).
        let token = input.string("token", required: true, length: 0...Int.max)
        try input.validated()
        let digest = Crypto.sha256(token ?? "")
        let invalid = APIError.badRequest("The verification token is unknown, already used or expired.")
        try await database.pool.transaction(
            prologue: [
                Statement(
                    "SELECT set_config('app.tenant_id', t::text, true) FROM email_verification_tenant($1) AS t WHERE t IS NOT NULL",
                    [digest]
                )
            ]
        ) { transaction, results in
            guard results[0].count == 1 else { throw invalid }
            let changed = try transaction.commit(after: [
                Statement(
                    """
                    WITH used AS (
                        UPDATE email_verifications SET used_at = now()
                         WHERE token_digest = $1 AND used_at IS NULL AND invalidated_at IS NULL AND expires_at > now()
                        RETURNING tenant_id
                    ), activated AS (
                        UPDATE tenants SET status = 'ACTIVE' WHERE id IN (SELECT tenant_id FROM used) RETURNING id
                    ), audited AS (
                        INSERT INTO audit_events (tenant_id, action, actor)
                        SELECT id, 'tenant.email_verified', 'system' FROM activated
                    )
                    SELECT count(*) FROM activated
                    """,
                    [digest]
                )
            ])
            guard try changed[0][0].decode(Int64.self, at: 0) == 1 else { throw invalid }
        }
        return Reply.json([])
    }

    @Sendable func resendVerification(_ request: Request, context: TenantRequestContext) async throws -> Response {
        let token = Crypto.hex(Crypto.randomBytes(32))
        // Resends of one tenant queue on the tenant row; the state is read by a
        // statement whose snapshot is taken once the lock is held, so it counts
        // the resends and sees a verification that came first.
        try await database.asTenant(
            context.token, facts: context.facts,
            holdingTenantRow: Statement(
                "SELECT status, environment FROM tenants WHERE id = current_tenant_id() FOR NO KEY UPDATE"),
            prologue: [
                Statement(
                    """
                    SELECT t.email,
                           (SELECT count(*) FROM audit_events
                             WHERE action = 'tenant.verification_resent' AND created_at > now() - interval '1 hour'),
                           (SELECT ceil(extract(epoch FROM min(created_at) + interval '1 hour' - now()))::bigint FROM audit_events
                             WHERE action = 'tenant.verification_resent' AND created_at > now() - interval '1 hour')
                      FROM tenants t WHERE t.id = current_tenant_id()
                    """
                )
            ]
        ) { transaction, principal, results in
            guard !principal.tenantActive else { throw APIError.conflict("The tenant's email address is already verified.") }
            let row = results[0][0]
            if try row.decode(Int64.self, at: 1) >= 5 {
                throw APIError.rateLimited(
                    "At most 5 verification emails an hour; try again later.",
                    retryAfter: Int(try row.decode(Int64?.self, at: 2) ?? 3600)
                )
            }
            try transaction.commit(after: [
                Statement(
                    "UPDATE email_verifications SET invalidated_at = now() WHERE used_at IS NULL AND invalidated_at IS NULL"
                ),
                TenantsController.queueVerification(email: try row.decode(String.self, at: 0), token: token),
                Statement(
                    """
                    INSERT INTO audit_events (tenant_id, action, actor, actor_key_id)
                    VALUES (current_tenant_id(), 'tenant.verification_resent', 'tenant', $1)
                    """,
                    [principal.keyID]
                ),
            ])
        }
        return Reply.json([])
    }

    @Sendable func me(_ request: Request, context: TenantRequestContext) async throws -> Response {
        let (_, results) = try await database.readAsTenant(
            context.token, facts: context.facts,
            [Statement("SELECT \(Representation.tenantColumns) FROM tenants WHERE id = current_tenant_id()")]
        )
        guard let row = results[0].first else { throw APIError.unauthorized }
        return Reply.json([("tenant", try Representation.tenant(row))])
    }

    @Sendable func promote(_ request: Request, context: TenantRequestContext) async throws -> Response {
        let input = try await Input.read(request, allowEmpty: true)
        let requested = Result { try Promotion.Request(input) }
        let keys = try await Promotion(database: database).run(token: context.token, facts: context.facts, request: requested)
        ServiceMetrics.promoted()
        return Reply.json(
            [("apiKeys", .array(keys.map { .object([("label", JSONValue($0.label)), ("apiKey", .string($0.token.plaintext))]) }))],
            noStore: true
        )
    }
}
