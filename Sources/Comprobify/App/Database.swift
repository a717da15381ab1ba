import Foundation
import Postgres

/// Who a request acts for, as found by `authenticate()` in the request's own transaction.
public struct Principal: Sendable {
    public let keyID: Int64
    public let tenantID: Int64
    public let keyEnvironment: Environment
    public let tenantActive: Bool
    public let tenantEnvironment: Environment

    static let columns = "key_id, tenant_id, environment, tenant_status, tenant_environment"

    /// The row of `authenticate()`, or nil when the key is unknown or revoked.
    /// An environment the service does not know fails the request (500), never
    /// defaults to sandbox.
    init?(_ result: QueryResult) throws {
        guard let row = result.first else { return nil }
        // Column by column rather than as one tuple: it runs for every
        // authenticated request, and a tuple of five is looked up at run time.
        // The text columns are compared as bytes, with no string made of them.
        self.keyID = try row.decode(Int64.self, at: 0)
        self.tenantID = try row.decode(Int64.self, at: 1)
        self.keyEnvironment = try Environment(row, at: 2)
        self.tenantActive =
            try row.withBytes(at: 3, ofType: PostgresType.text) { $0.map { $0.elementsEqual("ACTIVE".utf8) } }
            ?? false
        self.tenantEnvironment = try Environment(row, at: 4)
    }

    /// The same key with the tenant's status and environment as read later in the transaction.
    func with(tenant row: Row) throws -> Principal {
        let (status, environment) = try row.decode((String, String).self)
        return Principal(
            keyID: keyID, tenantID: tenantID, keyEnvironment: keyEnvironment,
            tenantActive: status == "ACTIVE", tenantEnvironment: try Environment(column: environment)
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

/// A read a store offers for the one-round-trip path: its SQL and how its rows
/// decode. `Database.read` pipelines it with the authentication.
struct Read<Value: Sendable>: Sendable {
    let query: PostgresQuery
    let decode: @Sendable (QueryResult) throws -> Value

    init(_ query: PostgresQuery, decode: @escaping @Sendable (QueryResult) throws -> Value) {
        self.query = query
        self.decode = decode
    }
}

/// The only way the service reaches PostgreSQL. Every entry point below sets the
/// tenant before any statement of the request runs, so row-level security scopes
/// all of them; the pool itself is private to this type.
///
/// Every entry point acting for a tenant also goes through the `TenantGate`:
/// one tenant holds at most its share of the pool at once.
public struct Database: Sendable {
    private let pool: ConnectionPool
    private let gate: TenantGate
    /// The lanes of reads in one round trip (`pool.pipeline`): a tenant's
    /// share of connections times the pipelines one connection carries. A
    /// read that gets a connection of its own also takes its place in `gate`.
    private let reads: TenantGate
    private let counters: TenantGate

    /// Issuing transactions of one numbering counter (issuer × document type)
    /// at once: one holds the counter's row lock, the next build, check and
    /// sign their comprobantes meanwhile, taking their numbers in the order
    /// they asked (`NumberForecast`), and those signed while the one ahead
    /// committed are stored together by the next (`DocumentsStore.store(together:)`).
    /// At least 3; more when the tenant's share of connections leaves one
    /// for its other work, up to what one statement stores
    /// (docs/adr/007-request-cpu.md, items 19 and 38).
    static func issuingPerCounter(tenantShare: Int) -> Int {
        max(3, min(NumberForecast.mostTogether, tenantShare - 1))
    }

    /// `tenantMaxConnections`: connections one tenant may hold at once (half the pool when nil).
    public init(pool: ConnectionPool, tenantMaxConnections: Int? = nil) {
        self.pool = pool
        let size = pool.configuration.size
        let share = min(size, tenantMaxConnections ?? max(1, size / 2))
        let name = pool.configuration.name
        self.gate = TenantGate(perTenant: share, wait: pool.configuration.waitTimeout, pool: name)
        self.reads = TenantGate(
            perTenant: share * pool.configuration.pipelineDepth, wait: pool.configuration.waitTimeout, name: "tenant_reads",
            pool: name)
        self.counters = TenantGate(
            perTenant: Database.issuingPerCounter(tenantShare: share), wait: pool.configuration.waitTimeout, busy: .counterBusy,
            name: "counter", pool: name)
    }

    /// Runs `body` (the issuing transaction) in the lane of the counter it
    /// numbers from; a request that waits longer than the pool's wait gets 503.
    /// The lane is named by the tenant `token` acts for (the key's own digest
    /// until the tenant is known) as well as the issuer: requests naming
    /// another tenant's issuer can never hold up that tenant's numbering.
    func issuing<T>(for token: APIToken, issuer: Int64, documentType: String, _ body: () async throws -> T) async throws -> T {
        try await counters.run(lane: counterLane(for: token, issuer: issuer, documentType: documentType), body)
    }

    func counterLane(for token: APIToken, issuer: Int64, documentType: String) -> TenantGate.Lane {
        .counter(gate.lane(for: token.digest), issuer: issuer, documentType: documentType)
    }

    /// Runs `work` in the lane of the tenant `token` acts for, in `gate` (the
    /// connections' unless given); `work` gets the lane. A key whose tenant
    /// the gate does not know (first seen, or unused for a minute) is looked up
    /// first, alone, so that its request waits in its tenant's lane: were it
    /// run in a lane of its own, a tenant could hold one share per fresh key
    /// it minted. The lookup is a read that waits on no lock; an unknown or
    /// revoked key ends there with 401.
    private func gated<T>(
        _ token: APIToken, _ facts: RequestFacts, through gate: TenantGate? = nil, _ work: (TenantGate.Lane) async throws -> T
    ) async throws -> T {
        let gate = gate ?? self.gate
        var lane = gate.lane(for: token.digest)
        if case .key = lane {
            guard let tenantID = try await tenantOfUnknownKey(token, lane: lane) else {
                facts.refused()
                throw APIError.unauthorized
            }
            self.gate.learn(digest: token.digest, tenantID: tenantID)
            reads.learn(digest: token.digest, tenantID: tenantID)
            lane = .tenant(tenantID)
        }
        return try await gate.run(lane: lane) { try await work(lane) }
    }

    /// The tenant of a key the gates do not know, in a round trip of its own
    /// in the key's lane (one share per key, as for any stranger's key); nil
    /// when no active key has its digest.
    private func tenantOfUnknownKey(_ token: APIToken, lane: TenantGate.Lane) async throws -> Int64? {
        let results = try await reads.run(lane: lane) { try await pipeline([Database.authenticate(token, lockKey: false)], in: lane) }
        return try Principal(results[0])?.tenantID
    }

    /// `queries` in one round trip behind the reads in flight on a shared
    /// connection, or on one of their own holding a place in `lane` of the
    /// connections' gate (ADR 007, items 37 and 40).
    private func pipeline(_ queries: [PostgresQuery], in lane: TenantGate.Lane) async throws -> [QueryResult] {
        let gate = self.gate
        return try await pool.pipeline(queries, alone: { work in try await gate.run(lane: lane, work) }, opening: { gate.tryEnter(lane) })
    }

    /// The statement is made once; each request adds only its digest (it runs
    /// for every authenticated request).
    static func authenticate(_ token: APIToken, lockKey: Bool) -> PostgresQuery {
        PostgresQuery(lockKey ? authenticateLocking : authenticateReading, [token.digest])
    }

    private static let authenticateLocking = "SELECT \(Principal.columns) FROM authenticate($1, true)"
    private static let authenticateReading = "SELECT \(Principal.columns) FROM authenticate($1, false)"

    /// A transaction acting for the tenant of `token`. The key is looked up by its
    /// digest in the transaction's first round trip (pipelined with BEGIN and
    /// `prologue`), holding a share lock on the key row until commit: a revocation
    /// that committed first makes this 401; one that comes later waits for it.
    /// A transaction that itself revokes keys (promotion) passes `lockKey: false`:
    /// under SERIALIZABLE its own update of the key row already conflicts with any
    /// concurrent revocation, and holding share locks there would deadlock
    /// concurrent promotions against each other.
    func transaction<T: Sendable>(
        for token: APIToken,
        facts: RequestFacts,
        isolation: IsolationLevel = .readCommitted,
        lockKey: Bool = true,
        prologue: [PostgresQuery] = [],
        _ body: @escaping @Sendable (Transaction, Principal, [QueryResult]) throws -> T
    ) async throws -> T {
        let auth = Database.authenticate(token, lockKey: lockKey)
        return try await gated(token, facts) { _ in
            try await pool.transaction(isolation, prologue: [auth] + prologue) { transaction, results in
                guard let principal = try Principal(results[0]) else {
                    facts.refused()
                    throw APIError.unauthorized
                }
                facts.authenticated(tenantID: principal.tenantID, keyID: principal.keyID)
                return try body(transaction, principal, Array(results.dropFirst()))
            }
        }
    }

    /// A READ COMMITTED transaction for the tenant of `token` that holds the
    /// tenant row, in one first round trip: the key lookup, `tenantRow` (a
    /// statement that locks the row and returns its status and environment),
    /// the key again, now under a share lock, then `prologue`, whose snapshots
    /// are taken with the lock held. Locks are taken in the order a promotion
    /// takes them (tenant row, then keys), so the two never deadlock: a
    /// promotion that committed first has revoked the sandbox key, and the
    /// second look at the key makes this 401.
    func transactionHoldingTenantRow<T: Sendable>(
        for token: APIToken,
        facts: RequestFacts,
        tenantRow: PostgresQuery,
        prologue: [PostgresQuery] = [],
        _ body: @escaping @Sendable (Transaction, Principal, [QueryResult]) throws -> T
    ) async throws -> T {
        let lead = [
            Database.authenticate(token, lockKey: false),
            tenantRow,
            Database.authenticate(token, lockKey: true),
        ]
        return try await gated(token, facts) { _ in
            try await pool.transaction(.readCommitted, prologue: lead + prologue) { transaction, results in
                guard let found = try Principal(results[0]), let tenant = results[1].first,
                    try results[2].first?.decode(Int64.self, at: 0) == found.keyID
                else {
                    facts.refused()
                    throw APIError.unauthorized
                }
                facts.authenticated(tenantID: found.tenantID, keyID: found.keyID)
                return try body(transaction, try found.with(tenant: tenant), Array(results.dropFirst(lead.count)))
            }
        }
    }

    /// Adds a key or an issuer for the tenant of `token`, holding the tenant row
    /// through `TenantsStore.rosterLock`: a promotion that comes later waits for
    /// this commit, then retries with the addition in view. `count` (how many
    /// the tenant has, for its cap) runs in the first round trip after the lock
    /// is taken, so its snapshot includes every addition that held the lock
    /// before: concurrent additions cannot both see room for one more.
    func transactionAddingToRoster<T: Sendable>(
        for token: APIToken,
        facts: RequestFacts,
        count: PostgresQuery,
        _ body: @escaping @Sendable (Transaction, Principal, _ count: Int64) throws -> T
    ) async throws -> T {
        try await transactionHoldingTenantRow(for: token, facts: facts, tenantRow: TenantsStore.rosterLock, prologue: [count]) {
            transaction, principal, results in
            try body(transaction, principal, try results[0][0].decode(Int64.self, at: 0))
        }
    }

    /// A read for the tenant of `token` in one round trip: authentication and the
    /// read are pipelined as one implicit transaction. With an unknown key no
    /// tenant is set, so the read sees nothing, and this throws 401.
    func read<A>(for token: APIToken, facts: RequestFacts, _ a: Read<A>) async throws -> (Principal, A) {
        let (principal, results) = try await pipelined(token, facts, [a.query])
        return (principal, try a.decode(results[0]))
    }

    /// Two reads in the same round trip (a resolved issuer and its documents, say).
    func read<A, B>(for token: APIToken, facts: RequestFacts, _ a: Read<A>, _ b: Read<B>) async throws -> (Principal, A, B) {
        let (principal, results) = try await pipelined(token, facts, [a.query, b.query])
        return (principal, try a.decode(results[0]), try b.decode(results[1]))
    }

    /// Runs `check`, a check of the request that needs no database (a header, a
    /// body's fields). When it fails, the credential is looked at first, so the
    /// order of answers is the same on every route: 401, then 404, then 400.
    func checkAfterAuthenticating<T>(for token: APIToken, facts: RequestFacts, _ check: () throws -> T) async throws -> T {
        do {
            return try check()
        } catch {
            _ = try await pipelined(token, facts, [])
            throw error
        }
    }

    /// The key's principal, in a round trip of its own: for a route that must
    /// know its caller before doing work a stranger must not cause.
    func authenticate(for token: APIToken, facts: RequestFacts) async throws -> Principal {
        try await pipelined(token, facts, []).0
    }

    private func pipelined(_ token: APIToken, _ facts: RequestFacts, _ queries: [PostgresQuery]) async throws -> (Principal, [QueryResult])
    {
        // One lane for both gates: the reads' own memory of the key's tenant
        // decides it (the connections' gate may have forgotten a key that
        // only reads, and would give it a lane of its own).
        return try await gated(token, facts, through: reads) { lane in
            let results = try await pipeline([Database.authenticate(token, lockKey: false)] + queries, in: lane)
            guard let principal = try Principal(results[0]) else {
                facts.refused()
                throw APIError.unauthorized
            }
            facts.authenticated(tenantID: principal.tenantID, keyID: principal.keyID)
            return (principal, Array(results.dropFirst()))
        }
    }

    /// A transaction acting for a tenant known by id (admin routes, promotion by support).
    func transaction<T: Sendable>(
        forTenantID tenantID: Int64,
        isolation: IsolationLevel = .readCommitted,
        prologue: [PostgresQuery] = [],
        _ body: @escaping @Sendable (Transaction, [QueryResult]) throws -> T
    ) async throws -> T {
        return try await gate.run(lane: .tenant(tenantID)) {
            try await pool.transaction(isolation, prologue: [Database.setTenant(tenantID)] + prologue) { transaction, results in
                try body(transaction, Array(results.dropFirst()))
            }
        }
    }

    /// Acts as the tenant `tenantID` until the transaction ends (row-level security).
    private static func setTenant(_ tenantID: Int64) -> PostgresQuery {
        "SELECT set_config('app.tenant_id', \(String(tenantID)), true)"
    }

    /// A read for a tenant known by id (the background workers) in one round
    /// trip: setting the tenant and the read are pipelined as one implicit
    /// transaction.
    func read<A>(forTenantID tenantID: Int64, _ a: Read<A>) async throws -> A {
        try await reads.run(lane: .tenant(tenantID)) {
            try a.decode(try await pipeline([Database.setTenant(tenantID), a.query], in: .tenant(tenantID))[1])
        }
    }

    /// A transaction that starts with no tenant: the first statement of
    /// `prologue` must set one through a SECURITY DEFINER function (sign-up takes
    /// a fresh id, email verification finds it by token) or touch only tables
    /// without tenants (the sign-up limit). Until then row-level security hides
    /// every tenant row.
    func transactionFindingTenant<T: Sendable>(
        prologue: [PostgresQuery],
        _ body: @escaping @Sendable (Transaction, [QueryResult]) throws -> T
    ) async throws -> T {
        try await pool.transaction(.readCommitted, prologue: prologue, body)
    }

    /// One trivial statement: is the database answering, and does it take
    /// writes? A standby (a failover left the address on the demoted primary)
    /// or a database set read-only answers every write with 25006: throws then.
    func ping() async throws {
        let readOnly = try await pool.withConnection {
            try $0.query("SELECT current_setting('transaction_read_only')")[0].decode(String.self, at: 0)
        }
        guard readOnly == "off" else {
            throw PostgresError(kind: .server, sqlState: .readOnlySQLTransaction, message: "the database takes no writes")
        }
    }

    /// The most rows of each table one `purge_expired()` removes (migration 0019).
    static let purgeBatch: Int64 = 10_000

    /// Deletes expired idempotency keys, old sign-up attempts and outbox
    /// messages whose token has expired (migration 0073), at most
    /// `purgeBatch` of each; the count removed.
    func purgeExpired() async throws -> Int64 {
        try await pool.withConnection { try $0.query("SELECT purge_expired()")[0].decode(Int64.self, at: 0) }
    }

    /// The most events one `purge_webhook_history()` removes (migration 0046).
    static let webhookPurgeBatch: Int64 = 1_000

    /// Deletes webhook events older than `days` whose deliveries all ended
    /// more than `days` ago (or that had none), with their deliveries and
    /// attempts, at most `webhookPurgeBatch` events; the count of events removed.
    func purgeWebhookHistory(days: Int) async throws -> Int64 {
        try await pool.withConnection {
            try $0.query("SELECT purge_webhook_history(make_interval(days => \(days)))")[0].decode(Int64.self, at: 0)
        }
    }

    /// The most exchanges one `purge_sri_exchanges()` removes (migration 0072).
    static let exchangePurgeBatch: Int64 = 5_000

    /// Deletes SRI exchanges older than `days`, the oldest first, at most
    /// `exchangePurgeBatch`; the count removed. Documents and their
    /// submissions stay.
    func purgeSRIExchanges(days: Int) async throws -> Int64 {
        try await pool.withConnection {
            try $0.query("SELECT purge_sri_exchanges(make_interval(days => \(days)))")[0].decode(Int64.self, at: 0)
        }
    }

    /// Claims up to `limit` documents due for SRI, across tenants, through
    /// `claim_sri_work()`: production ones first, then at most `sandboxLimit`
    /// sandbox ones. Only (tenant, document, environment) come back, leased
    /// to `lease` (an id per claim) for `leaseMilliseconds`. Each is then
    /// handled in a transaction of its own tenant.
    func claimSRIWork(lease: UUID, limit: Int, sandboxLimit: Int, leaseMilliseconds: Int, tenants: [Int64]?) async throws
        -> [(tenantID: Int64, documentID: Int64, environment: Environment)]
    {
        let query: PostgresQuery = """
            SELECT tenant_id, document_id, environment
              FROM claim_sri_work(\(lease.uuidString)::uuid, \(limit), \(leaseMilliseconds), \(sandboxLimit), \(tenants)::bigint[])
            """
        return try await pool.withConnection { connection in
            try connection.query(query).rows.map { row in
                let (tenantID, documentID, environment) = try row.decode((Int64, Int64, String).self)
                return (tenantID, documentID, try Environment(column: environment))
            }
        }
    }

    /// Documents of all tenants waiting for SRI, the age of the oldest in
    /// seconds, and how long the count took (QueueGauge).
    func sriQueueDepth() async throws -> (pending: Int64, oldestSeconds: Double, took: Duration) {
        try await pool.withConnection { connection in
            let started = ContinuousClock.now
            let row = try connection.query("SELECT pending, oldest_seconds FROM sri_queue_depth()")[0]
            let (pending, oldest) = try row.decode((Int64, Double).self)
            return (pending, oldest, ContinuousClock.now - started)
        }
    }

    /// Sessions named `applicationName` (of any process) that are in a statement
    /// or in a transaction, this one left out. `pg_stat_activity` shows their
    /// state to sessions of the same role, comprobify_app.
    func busySessions(applicationName: String) async throws -> Int {
        try await pool.withConnection { connection in
            try connection.query(
                """
                SELECT count(*)::int FROM pg_stat_activity
                 WHERE application_name = \(applicationName) AND pid <> pg_backend_pid()
                   AND state IN ('active', 'idle in transaction')
                """
            )[0].decode(Int.self, at: 0)
        }
    }

    /// Claims up to `limit` webhook deliveries that are due, across tenants,
    /// through `claim_webhook_deliveries()`: only (tenant, delivery) pairs come
    /// back, leased under `lease` (an id per claim). Each is then made and
    /// recorded as its tenant.
    func claimWebhookDeliveries(
        lease: UUID, limit: Int, leaseMilliseconds: Int, perEndpoint: Int, perTenant: Int, tenants: [Int64]?
    ) async throws
        -> [(tenantID: Int64, deliveryID: Int64)]
    {
        let query: PostgresQuery = """
            SELECT tenant_id, delivery_id
              FROM claim_webhook_deliveries(\(lease.uuidString)::uuid, \(limit), \(leaseMilliseconds), \(perEndpoint),
                                            \(perTenant), \(tenants)::bigint[])
            """
        return try await pool.withConnection { connection in
            try connection.query(query).rows.map { row in
                let (tenantID, deliveryID) = try row.decode((Int64, Int64).self)
                return (tenantID, deliveryID)
            }
        }
    }

    /// Pending webhook deliveries of all tenants, the age of the oldest in
    /// seconds, and how long the count took (QueueGauge).
    func webhookQueueDepth() async throws -> (pending: Int64, oldestSeconds: Double, took: Duration) {
        try await pool.withConnection { connection in
            let started = ContinuousClock.now
            let row = try connection.query("SELECT pending, oldest_seconds FROM webhook_queue_depth()")[0]
            let (pending, oldest) = try row.decode((Int64, Double).self)
            return (pending, oldest, ContinuousClock.now - started)
        }
    }
}

extension Environment {
    /// An environment column; anything else is a broken invariant, not a sandbox.
    init(column: String) throws {
        guard let value = Environment(rawValue: column) else {
            throw PostgresError(kind: .decoding, message: "unknown environment in the database")
        }
        self = value
    }

    /// An environment column read as bytes; NULL or anything else is a broken invariant.
    init(_ row: Row, at column: Int) throws {
        let value = try row.withBytes(at: column, ofType: PostgresType.text) { bytes -> Environment? in
            guard let bytes else { return nil }
            if bytes.elementsEqual("sandbox".utf8) { return .sandbox }
            if bytes.elementsEqual("production".utf8) { return .production }
            return nil
        }
        guard let value else { throw PostgresError(kind: .decoding, message: "unknown environment in the database") }
        self = value
    }
}

extension Row {
    /// A timestamptz column as RFC 3339 UTC with milliseconds, e.g. `2026-03-01T12:00:00.000Z`.
    func timestamp(at column: Int) throws -> JSONValue {
        JSONValue(try rfc3339Milliseconds(at: column))
    }

    func int(at column: Int) throws -> JSONValue {
        JSONValue(try decode(Int64.self, at: column))
    }

    func string(at column: Int) throws -> JSONValue {
        JSONValue(try decode(String?.self, at: column))
    }
}
