import Foundation
import Postgres

/// Who a request acts for, as found by `authenticate()` in the request's own transaction.
public struct Principal: Sendable {
    public let keyID: Int64
    public let tenantID: Int64
    public let keyEnvironment: Environment
    public let tenantActive: Bool
    public let tenantEnvironment: Environment

    init?(_ result: QueryResult) throws {
        guard let row = result.first else { return nil }
        keyID = try row.decode(at: 0)
        tenantID = try row.decode(at: 1)
        keyEnvironment = Environment(rawValue: try row.decode(at: 2)) ?? .sandbox
        tenantActive = try row.decode(String.self, at: 3) == "ACTIVE"
        tenantEnvironment = Environment(rawValue: try row.decode(at: 4)) ?? .sandbox
    }

    /// The same key with the tenant's status and environment as read later in the transaction.
    func with(tenant row: Row) throws -> Principal {
        Principal(
            keyID: keyID, tenantID: tenantID, keyEnvironment: keyEnvironment,
            tenantActive: try row.decode(String.self, at: 0) == "ACTIVE",
            tenantEnvironment: Environment(rawValue: try row.decode(at: 1)) ?? .sandbox
        )
    }

    private init(keyID: Int64, tenantID: Int64, keyEnvironment: Environment, tenantActive: Bool, tenantEnvironment: Environment) {
        self.keyID = keyID
        self.tenantID = tenantID
        self.keyEnvironment = keyEnvironment
        self.tenantActive = tenantActive
        self.tenantEnvironment = tenantEnvironment
    }
}

/// Every data access of the service goes through one of these entry points, so
/// row-level security scopes every statement to one tenant.
public struct Database: Sendable {
    public let pool: ConnectionPool

    public init(pool: ConnectionPool) {
        self.pool = pool
    }

    static let authenticateSQL =
        "SELECT key_id, tenant_id, environment, tenant_status, tenant_environment FROM authenticate($1, $2)"

    /// A transaction acting for the tenant of `token`. The key is looked up by its
    /// digest in the transaction's first round trip (pipelined with BEGIN and
    /// `prologue`), holding a share lock on the key row until commit: a revocation
    /// that committed first makes this 401; one that comes later waits for it.
    /// A transaction that itself revokes keys (promotion) passes `lockKey: false`:
    /// under SERIALIZABLE its own update of the key row already conflicts with any
    /// concurrent revocation, and holding share locks there would deadlock
    /// concurrent promotions against each other.
    public func asTenant<T: Sendable>(
        _ token: APIToken,
        facts: RequestFacts,
        isolation: IsolationLevel = .readCommitted,
        lockKey: Bool = true,
        prologue: [Statement] = [],
        _ body: @escaping @Sendable (Transaction, Principal, [QueryResult]) throws -> T
    ) async throws -> T {
        let auth = Statement(Database.authenticateSQL, [token.digest, lockKey])
        return try await pool.transaction(isolation, prologue: [auth] + prologue) { transaction, results in
            guard let principal = try Principal(results[0]) else { throw APIError.unauthorized }
            facts.authenticated(tenantID: principal.tenantID, keyID: principal.keyID)
            return try body(transaction, principal, Array(results.dropFirst()))
        }
    }

    /// Takes the tenant row for an addition to its roster (an API key, an issuer):
    /// returns the tenant's current status and environment. Additions of one
    /// tenant queue on this row lock. A promotion whose snapshot was taken before
    /// the addition committed cannot lock the row afterwards without a
    /// serialization failure, so it is retried and never misses a key or an
    /// issuer added while it ran.
    static let rosterLock = Statement(
        "UPDATE tenants SET roster_changed_at = now() WHERE id = current_tenant_id() RETURNING status, environment"
    )

    /// A READ COMMITTED transaction for the tenant of `token` that holds the
    /// tenant row, in one first round trip: the key lookup, `tenantRow` (a
    /// statement that locks the row and returns its status and environment),
    /// the key again, now under a share lock, then `prologue`, whose snapshots
    /// are taken with the lock held. Locks are taken in the order a promotion
    /// takes them (tenant row, then keys), so the two never deadlock: a
    /// promotion that committed first has revoked the sandbox key, and the
    /// second look at the key makes this 401.
    public func asTenant<T: Sendable>(
        _ token: APIToken,
        facts: RequestFacts,
        holdingTenantRow tenantRow: Statement,
        prologue: [Statement] = [],
        _ body: @escaping @Sendable (Transaction, Principal, [QueryResult]) throws -> T
    ) async throws -> T {
        let lead = [
            Statement(Database.authenticateSQL, [token.digest, false]),
            tenantRow,
            Statement("SELECT key_id FROM authenticate($1, true)", [token.digest]),
        ]
        return try await pool.transaction(.readCommitted, prologue: lead + prologue) { transaction, results in
            guard let found = try Principal(results[0]), let tenant = results[1].first,
                try results[2].first?.decode(Int64.self, at: 0) == found.keyID
            else {
                throw APIError.unauthorized
            }
            facts.authenticated(tenantID: found.tenantID, keyID: found.keyID)
            return try body(transaction, try found.with(tenant: tenant), Array(results.dropFirst(lead.count)))
        }
    }

    /// Adds a key or an issuer for the tenant of `token`, holding the tenant row
    /// through `rosterLock`: a promotion that comes later waits for this commit,
    /// then retries with the addition in view.
    public func asTenantAddingToRoster<T: Sendable>(
        _ token: APIToken,
        facts: RequestFacts,
        _ body: @escaping @Sendable (Transaction, Principal) throws -> T
    ) async throws -> T {
        try await asTenant(token, facts: facts, holdingTenantRow: Database.rosterLock) { transaction, principal, _ in
            try body(transaction, principal)
        }
    }

    /// Reads for the tenant of `token` in one round trip: authentication and the
    /// statements are pipelined as one implicit transaction. With an unknown key no
    /// tenant is set, so the statements see nothing, and this throws 401.
    public func readAsTenant(
        _ token: APIToken,
        facts: RequestFacts,
        _ statements: [Statement]
    ) async throws -> (Principal, [QueryResult]) {
        let auth = Statement(Database.authenticateSQL, [token.digest, false])
        let results = try await pool.pipeline([auth] + statements)
        guard let principal = try Principal(results[0]) else { throw APIError.unauthorized }
        facts.authenticated(tenantID: principal.tenantID, keyID: principal.keyID)
        return (principal, Array(results.dropFirst()))
    }

    /// A transaction acting for a tenant known by id (admin routes, email links).
    public func asTenantID<T: Sendable>(
        _ tenantID: Int64,
        isolation: IsolationLevel = .readCommitted,
        prologue: [Statement] = [],
        _ body: @escaping @Sendable (Transaction, [QueryResult]) throws -> T
    ) async throws -> T {
        let set = Statement("SELECT set_config('app.tenant_id', $1, true)", [String(tenantID)])
        return try await pool.transaction(isolation, prologue: [set] + prologue) { transaction, results in
            try body(transaction, Array(results.dropFirst()))
        }
    }
}

extension Row {
    /// A timestamptz column as RFC 3339 UTC with milliseconds, e.g. `2026-03-01T12:00:00.000Z`.
    func timestamp(at column: Int) throws -> JSONValue {
        guard let date = try decode(Date?.self, at: column) else { return .null }
        return .string(Timestamp.format(date, fractionDigits: 3) + "Z")
    }

    func int(at column: Int) throws -> JSONValue {
        JSONValue(try decode(Int64.self, at: column))
    }

    func string(at column: Int) throws -> JSONValue {
        JSONValue(try decode(String?.self, at: column))
    }
}
