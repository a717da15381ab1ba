import CoreMetrics
import Foundation
import NIOConcurrencyHelpers
import Postgres

/// At most `perTenant` database connections held at once by one tenant
/// (docs/adr/006-hostile-load.md). A request over the share waits, at most
/// `wait`, for one of its own tenant's requests to finish, then gets 503; it
/// never takes a connection from the pool while it waits, so the rest of the
/// pool stays free for everyone else.
///
/// The tenant is known only once a key has been authenticated, so a lane is
/// keyed by the tenant a key digest was last seen acting for (remembered while
/// the key is in use, and 30 s to a minute after), or by the digest itself the
/// first time.
final class TenantGate: Sendable {
    /// A lane: a tenant, a key whose tenant is not known yet, or one
    /// numbering counter of either (`Database.issuing`).
    enum Lane: Hashable, Sendable {
        case tenant(Int64)
        case key(Data)
        indirect case counter(Lane, issuer: Int64, documentType: String)
    }

    private struct Waiter {
        let continuation: CheckedContinuation<Void, any Error>
        let deadline: ContinuousClock.Instant
    }

    private struct Places {
        var held = 0
        var waiters: [Waiter] = []
    }

    private struct State {
        var lanes: [Lane: Places] = [:]
        /// Lanes with waiters, for the sweeper.
        var waiting: Set<Lane> = []
        /// Whether the task that fails overdue waiters is running.
        var sweeping = false
        var tenants: [Data: (tenantID: Int64, until: ContinuousClock.Instant)] = [:]
    }

    let perTenant: Int
    let wait: Duration
    /// What a request that waited `wait` in vain gets.
    let busy: APIError
    let memory: Duration
    private let state = NIOLockedValueBox(State())
    private static let cacheLimit = 100_000
    /// `db_tenant_gate_wait_seconds{gate, pool}`: how long work that found no
    /// free place waited, admitted or not; `db_tenant_gate_timeouts_total{gate, pool}`:
    /// waits that ran out (a request's 503; a streamed page waits again).
    /// The pool's metrics show neither: a tenant at its share waits with the
    /// pool half idle.
    private let waitTimer: CoreMetrics.Timer
    private let timeouts: Counter

    /// `perTenant`: places per lane. The same gate also serves lanes that are
    /// not tenants (`Database.issuing`: one lane per numbering counter), with
    /// their own `busy` answer. `name` and `pool`: the metrics' `gate` and
    /// `pool` labels (the pool's name, as the `db_pool_*` metrics have it).
    /// `memory`: how long a key's tenant is remembered after it was last used.
    init(
        perTenant: Int, wait: Duration, busy: APIError = .tenantBusy, name: String = "tenant", pool: String = "requests",
        memory: Duration = .seconds(60)
    ) {
        self.perTenant = max(1, perTenant)
        self.wait = wait
        self.busy = busy
        self.memory = memory
        self.waitTimer = CoreMetrics.Timer(label: "db_tenant_gate_wait_seconds", dimensions: [("gate", name), ("pool", pool)])
        self.timeouts = Counter(label: "db_tenant_gate_timeouts_total", dimensions: [("gate", name), ("pool", pool)])
    }

    /// The lane of a key: its tenant when known, else the key's digest. A key
    /// in use stays known: past half of `memory` the entry is renewed here
    /// (`learn` runs only for keys not known).
    func lane(for digest: Data) -> Lane {
        let now = ContinuousClock.now
        return state.withLockedValue { state in
            guard let known = state.tenants[digest], known.until > now else { return .key(digest) }
            if known.until - now < memory / 2 {
                state.tenants[digest] = (known.tenantID, now + memory)
            }
            return .tenant(known.tenantID)
        }
    }

    /// Remembers which tenant a key acts for.
    func learn(digest: Data, tenantID: Int64) {
        let until = ContinuousClock.now + memory
        state.withLockedValue { state in
            if state.tenants.count >= TenantGate.cacheLimit { state.tenants.removeAll(keepingCapacity: true) }
            state.tenants[digest] = (tenantID, until)
        }
    }

    /// Runs `body` holding one of the lane's places.
    func run<T>(lane: Lane, _ body: () async throws -> T) async throws -> T {
        try await enter(lane)
        defer { leave(lane) }
        return try await body()
    }

    /// Takes one of the lane's places if one is free now (and no one waits
    /// for it): how to give it back, or nil.
    func tryEnter(_ lane: Lane) -> (@Sendable () -> Void)? {
        guard takeFreePlace(lane) else { return nil }
        return { @Sendable in self.leave(lane) }
    }

    /// Takes one of the lane's places if one is free and no one waits for it.
    private func takeFreePlace(_ lane: Lane) -> Bool {
        state.withLockedValue { state -> Bool in
            var entry = state.lanes[lane, default: Places()]
            guard entry.held < perTenant, entry.waiters.isEmpty else { return false }
            entry.held += 1
            state.lanes[lane] = entry
            return true
        }
    }

    private func enter(_ lane: Lane) async throws {
        if takeFreePlace(lane) { return }
        // The wait shares the request's budget (`WaitBudget`) when it has one.
        let start = ContinuousClock.now
        let (deadline, budget) = ConnectionPool.budgetedWait(startingAt: start, atMost: wait)
        defer {
            let waited = ContinuousClock.now - start
            budget?.spend(waited)
            waitTimer.recordNanoseconds(waited.components.seconds * 1_000_000_000 + waited.components.attoseconds / 1_000_000_000)
        }
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let (admittedNow, startSweeper) = state.withLockedValue { state -> (Bool, Bool) in
                var entry = state.lanes[lane, default: Places()]
                if entry.held < perTenant, entry.waiters.isEmpty {
                    entry.held += 1
                    state.lanes[lane] = entry
                    return (true, false)
                }
                entry.waiters.append(Waiter(continuation: continuation, deadline: deadline))
                state.lanes[lane] = entry
                state.waiting.insert(lane)
                let startSweeper = !state.sweeping
                state.sweeping = true
                return (false, startSweeper)
            }
            if admittedNow {
                continuation.resume()
            } else if startSweeper {
                startSweeping()
            }
        }
    }

    /// One task, running only while some request waits, fails the waiters past
    /// their deadline with 503 (checked every few milliseconds), instead of a
    /// timer per waiter.
    private func startSweeping() {
        let interval = min(wait / 10, .milliseconds(25))
        Task { [weak self] in
            while let self {
                try? await Task.sleep(for: interval)
                let now = ContinuousClock.now
                let (expired, done) = self.state.withLockedValue { state -> ([Waiter], Bool) in
                    var expired: [Waiter] = []
                    for lane in state.waiting {
                        guard var entry = state.lanes[lane] else {
                            state.waiting.remove(lane)
                            continue
                        }
                        // Waiters of a lane are in arrival order, so the overdue ones lead.
                        let overdue = entry.waiters.prefix { $0.deadline <= now }.count
                        guard overdue > 0 else { continue }
                        expired += entry.waiters.prefix(overdue)
                        entry.waiters.removeFirst(overdue)
                        if entry.waiters.isEmpty { state.waiting.remove(lane) }
                        state.lanes[lane] = entry
                    }
                    if state.waiting.isEmpty { state.sweeping = false }
                    return (expired, state.waiting.isEmpty)
                }
                if !expired.isEmpty { self.timeouts.increment(by: expired.count) }
                for waiter in expired { waiter.continuation.resume(throwing: self.busy) }
                if done { return }
            }
        }
    }

    private func leave(_ lane: Lane) {
        let next = state.withLockedValue { state -> Waiter? in
            guard var entry = state.lanes[lane] else { return nil }
            if !entry.waiters.isEmpty {
                // The place passes straight to the oldest waiter of the same lane.
                let waiter = entry.waiters.removeFirst()
                if entry.waiters.isEmpty { state.waiting.remove(lane) }
                state.lanes[lane] = entry
                return waiter
            }
            entry.held -= 1
            state.lanes[lane] = entry.held > 0 ? entry : nil
            return nil
        }
        next?.continuation.resume()
    }
}

extension APIError {
    static let counterBusy = APIError(
        status: .serviceUnavailable, code: "SERVICE_UNAVAILABLE",
        detail: "This issuer's numbering for this document type is busy with other requests. Retry shortly.",
        headers: [.retryAfter: "1"]
    )

    static let tenantBusy = APIError(
        status: .serviceUnavailable, code: "SERVICE_UNAVAILABLE",
        detail: "This tenant already has as many requests at the database as it may have at once. Retry shortly.",
        headers: [.retryAfter: "1"]
    )
}

/// Requests per second per API key: a token bucket of `burst` requests that
/// refills at `rate` a second (docs/adr/006-hostile-load.md). In memory, per
/// server process.
final class KeyRateLimiter: Sendable {
    private struct Bucket {
        var tokens: Double
        var updated: ContinuousClock.Instant
    }

    let rate: Double
    let burst: Double
    private let buckets = NIOLockedValueBox<[Data: Bucket]>([:])
    private static let bucketLimit = 100_000

    init(rate: Int, burst: Int) {
        self.rate = Double(rate)
        self.burst = Double(max(1, burst))
    }

    /// Nil when the request may go ahead; else the seconds until it may.
    func take(_ digest: Data, now: ContinuousClock.Instant = .now) -> Int? {
        guard rate > 0 else { return nil }
        return buckets.withLockedValue { buckets in
            if buckets.count >= KeyRateLimiter.bucketLimit, buckets[digest] == nil {
                // Full buckets say nothing a fresh one would not: drop them.
                buckets = buckets.filter { KeyRateLimiter.refilled($0.value, now: now, rate: rate, burst: burst).tokens < burst }
            }
            var bucket = KeyRateLimiter.refilled(buckets[digest] ?? Bucket(tokens: burst, updated: now), now: now, rate: rate, burst: burst)
            defer { buckets[digest] = bucket }
            guard bucket.tokens >= 1 else {
                return Int(((1 - bucket.tokens) / rate).rounded(.up))
            }
            bucket.tokens -= 1
            return nil
        }
    }

    private static func refilled(_ bucket: Bucket, now: ContinuousClock.Instant, rate: Double, burst: Double) -> Bucket {
        let elapsed = now - bucket.updated
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        return Bucket(tokens: min(burst, bucket.tokens + max(0, seconds) * rate), updated: now)
    }
}

/// Digests of well-formed API keys the database refused (unknown, or revoked:
/// revocation is final, and a new key's 256 random bits make one with a
/// digest already presented practically impossible). A request presenting one
/// skips the per-key rate limit, and the routes that take a key answer it 401
/// from memory (`TenantRequestContext`), without a round trip: a client
/// repeating a dead key is told 401 (API.md), never 429. In memory, per
/// process, bounded: past `limit` digests the memory starts over, and a
/// digest forgotten costs one lookup again.
final class RefusedKeys: Sendable {
    private let digests = NIOLockedValueBox<Set<Data>>([])
    let limit: Int

    init(limit: Int = 10_000) {
        self.limit = limit
    }

    func contains(_ digest: Data) -> Bool {
        digests.withLockedValue { $0.contains(digest) }
    }

    func insert(_ digest: Data) {
        digests.withLockedValue { digests in
            if digests.count >= limit { digests.removeAll(keepingCapacity: true) }
            digests.insert(digest)
        }
    }
}
