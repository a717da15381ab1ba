import Foundation
import Postgres

/// The SQL of tenants: sign-up, email verification, the sign-up limit and the
/// tenant row that additions to a tenant's roster lock.
enum TenantsStore {
    static let columns = "id, email, name, status, environment, created_at, promoted_at"

    /// A tenant as API.md shows it, from `columns`.
    static func tenant(_ row: Row) throws -> JSONValue {
        .object([
            ("id", try row.int(at: 0)),
            ("email", try row.string(at: 1)),
            ("name", try row.string(at: 2)),
            ("status", try row.string(at: 3)),
            ("environment", try row.string(at: 4)),
            ("createdAt", try row.timestamp(at: 5)),
            ("promotedAt", try row.timestamp(at: 6)),
        ])
    }

    static let verificationLifetime = "48 hours"

    /// The current tenant; 401 when none (a key revoked between the two looks).
    static let current = Read<JSONValue>("SELECT \(unescaped: columns) FROM tenants WHERE id = current_tenant_id()") { result in
        guard let row = result.first else { throw APIError.unauthorized }
        return try tenant(row)
    }

    /// Takes the tenant row for an addition to its roster (an API key, an issuer):
    /// returns the tenant's current status and environment. Additions of one
    /// tenant queue on this row lock. A promotion whose snapshot was taken before
    /// the addition committed cannot lock the row afterwards without a
    /// serialization failure, so it is retried and never misses a key or an
    /// issuer added while it ran.
    static let rosterLock: PostgresQuery =
        "UPDATE tenants SET roster_changed_at = now() WHERE id = current_tenant_id() RETURNING status, environment"

    /// The tenant row for support's changes, locked as promotion locks it.
    static let lockedForSupport: PostgresQuery =
        "SELECT \(unescaped: columns) FROM tenants WHERE id = current_tenant_id() FOR NO KEY UPDATE"

    /// Sets a fresh tenant id as the transaction's tenant, for a sign-up.
    static let newTenantID: PostgresQuery = "SELECT set_config('app.tenant_id', nextval('tenants_id_seq')::text, true)"

    /// Inserts the tenant (id already set), its first sandbox key, its verification
    /// and the audit events (the sign-up, then the key's minting); commits.
    static func signUp(_ transaction: Transaction, email: String, name: String, apiKey: APIToken, verification: String) throws -> JSONValue
    {
        do {
            let results = try transaction.commit(after: [
                "INSERT INTO tenants (id, email, name) VALUES (current_tenant_id(), \(email), \(name)) RETURNING \(unescaped: columns)",
                "INSERT INTO audit_events (tenant_id, action, actor) VALUES (current_tenant_id(), 'tenant.signed_up', 'system')",
                KeysStore.mint(apiKey, label: "Initial sandbox key", actor: "system", actorKeyID: nil),
                queueVerification(email: email, token: verification),
            ])
            return try tenant(results[0][0])
        } catch let error as PostgresError where error.hasCode(.uniqueViolation) {
            throw APIError.conflict(.alreadyExists, "A tenant with this email address already exists.")
        }
    }

    /// Stores a verification token's digest and queues the message that carries it.
    static func queueVerification(email: String, token: String) -> PostgresQuery {
        """
        WITH verification AS (
            INSERT INTO email_verifications (tenant_id, token_digest, expires_at)
            VALUES (current_tenant_id(), \(Crypto.sha256(token)), now() + interval '\(unescaped: verificationLifetime)')
        )
        INSERT INTO email_outbox (tenant_id, recipient, subject, body)
        VALUES (current_tenant_id(), \(email), 'Verify your Comprobify account',
                'Confirm your email address with POST /v1/tenants/verify-email and this token (valid 48 hours): ' || \(token))
        """
    }

    /// Serializes concurrent sign-up attempts from one address.
    static func signupLock(_ address: String) -> PostgresQuery {
        "SELECT pg_advisory_xact_lock(hashtextextended('signup:' || \(address), 0))"
    }

    /// Records an attempt when the address is under `limit` this hour; commits.
    /// Nil when recorded, else the seconds until the oldest attempt leaves the window.
    static func recordSignupAttempt(_ transaction: Transaction, address: String, limit: Int) throws -> Int? {
        let results = try transaction.commit(after: [
            """
            WITH recent AS (
                SELECT count(*) AS attempts, min(attempted_at) AS oldest
                  FROM signup_attempts
                 WHERE client_address = \(address) AND attempted_at > now() - interval '1 hour'
            ), recorded AS (
                INSERT INTO signup_attempts (client_address)
                SELECT \(address)::text FROM recent WHERE attempts < \(limit)
                RETURNING 1
            )
            SELECT (SELECT count(*) FROM recorded),
                   ceil(extract(epoch FROM (SELECT oldest FROM recent) + interval '1 hour' - now()))::bigint
            """
        ])
        let (recorded, wait) = try results[0][0].decode((Int64, Int64?).self)
        return recorded == 1 ? nil : Int(wait ?? 3600)
    }

    /// Sets the tenant of a verification token as the transaction's tenant (no row when unknown).
    static func tenantOfVerification(_ digest: Data) -> PostgresQuery {
        "SELECT set_config('app.tenant_id', t::text, true) FROM email_verification_tenant(\(digest)) AS t WHERE t IS NOT NULL"
    }

    /// Uses the token and activates the tenant; commits. False when the token is
    /// used, invalidated or expired.
    static func verify(_ transaction: Transaction, digest: Data) throws -> Bool {
        let changed = try transaction.commit(after: [
            """
            WITH used AS (
                UPDATE email_verifications SET used_at = now()
                 WHERE token_digest = \(digest) AND used_at IS NULL AND invalidated_at IS NULL AND expires_at > now()
                RETURNING tenant_id
            ), activated AS (
                UPDATE tenants SET status = 'ACTIVE' WHERE id IN (SELECT tenant_id FROM used) RETURNING id
            ), audited AS (
                INSERT INTO audit_events (tenant_id, action, actor)
                SELECT id, 'tenant.email_verified', 'system' FROM activated
            )
            SELECT count(*) FROM activated
            """
        ])
        return try changed[0][0].decode(Int64.self, at: 0) == 1
    }

    /// Support marks the tenant verified (row locked by `lockedForSupport`) and
    /// the tokens still pending are invalidated, so that the emailed link,
    /// followed later, is the 400 of a used token rather than a second
    /// verification; commits.
    static func verifyBySupport(_ transaction: Transaction) throws -> JSONValue {
        let updated = try transaction.commit(after: [
            "UPDATE tenants SET status = 'ACTIVE' WHERE id = current_tenant_id() RETURNING \(unescaped: columns)",
            """
            UPDATE email_verifications SET invalidated_at = now()
             WHERE tenant_id = current_tenant_id() AND used_at IS NULL AND invalidated_at IS NULL
            """,
            """
            INSERT INTO audit_events (tenant_id, action, actor, details)
            VALUES (current_tenant_id(), 'tenant.email_verified', 'support', '{"manual": true}')
            """,
        ])
        return try tenant(updated[0][0])
    }

    /// The tenant row, locked as promotion locks it, for a resend, a key's
    /// revocation or a verification (before its token is used): changes of
    /// one tenant's keys and tokens queue on it instead of deadlocking. No
    /// row (and no lock) when no tenant is set, as for an unknown token.
    static let lockedLikePromotion: PostgresQuery =
        "SELECT status, environment FROM tenants WHERE id = current_tenant_id() FOR NO KEY UPDATE"

    /// Read once the tenant row is held: the email and the resends of the last hour.
    static let resendState: PostgresQuery = """
        SELECT t.email,
               (SELECT count(*) FROM audit_events
                 WHERE action = 'tenant.verification_resent' AND created_at > now() - interval '1 hour'),
               (SELECT ceil(extract(epoch FROM min(created_at) + interval '1 hour' - now()))::bigint FROM audit_events
                 WHERE action = 'tenant.verification_resent' AND created_at > now() - interval '1 hour')
          FROM tenants t WHERE t.id = current_tenant_id()
        """

    /// Replaces the pending verification with a new token; commits.
    static func resend(_ transaction: Transaction, email: String, token: String, actorKeyID: Int64) throws {
        try transaction.commit(after: [
            "UPDATE email_verifications SET invalidated_at = now() WHERE used_at IS NULL AND invalidated_at IS NULL",
            queueVerification(email: email, token: token),
            """
            INSERT INTO audit_events (tenant_id, action, actor, actor_key_id)
            VALUES (current_tenant_id(), 'tenant.verification_resent', 'tenant', \(actorKeyID))
            """,
        ])
    }
}
