import Logging
import Metrics
import NIOConcurrencyHelpers
import NIOPosix

/// Transaction isolation levels.
public enum IsolationLevel: String, Sendable {
    case readCommitted = "READ COMMITTED"
    case repeatableRead = "REPEATABLE READ"
    case serializable = "SERIALIZABLE"
}

/// A fixed-size pool of libpq connections with its own threads.
///
/// A unit of work with Swift code between its statements (`withConnection`, a
/// transaction from BEGIN to COMMIT) uses blocking libpq calls, so it runs in
/// one hop on a thread of the pool's `NIOThreadPool`, which has one thread per
/// connection: the async executor's threads never block on the database. A
/// pipeline (`pipeline`: statements known in advance) is sent without blocking
/// by the caller and its answers are read by the pool's one watcher thread
/// (Linux; elsewhere it runs on the pool's threads too). Callers wait in FIFO order for a free
/// connection, at most `waitTimeout`. A connection that breaks is discarded and
/// its slot reconnects on next use; the caller gets an error with
/// `isUnavailable == true` and never hangs.
public final class ConnectionPool: Sendable {
    public struct Configuration: Sendable {
        /// libpq URI or conninfo string.
        public var conninfo: String
        public var size: Int
        /// How long a caller waits for a free connection before `poolTimeout`
        /// (or less: what is left of its `WaitBudget`).
        public var waitTimeout: Duration
        /// Session settings applied once per new connection (`set_config(name, value, false)`).
        /// `DateStyle`, `TimeZone` and `bytea_output`, which result decoding relies on, are always set.
        public var sessionSettings: [(String, String)]
        /// Attempts of a transaction that fails with 40001 or 40P01 (including the first).
        public var maxTransactionAttempts: Int
        /// The `pool` label of the pool's metrics, so that two pools of one
        /// process keep their figures apart.
        public var name: String
        /// Pipelines that may be in flight on one connection at once (Linux);
        /// 1 gives every pipeline a connection of its own.
        public var pipelineDepth: Int
        /// Connections open to sharing at a time (half the pool unless
        /// given): a pipeline takes a free slot to open one while fewer are
        /// (unless one has room under `pipelinePack`),
        /// and otherwise is sent on the open one with the fewest in flight,
        /// behind them, if it has room (`pipelineDepth`). PostgreSQL then
        /// runs the pipelines of a connection back to back, where each would
        /// cost a backend a wake-up of its own.
        public var pipelineConnections: Int
        /// A pipeline in flight for longer than this on a connection (a
        /// large read, a slow statement) keeps others from being sent behind
        /// it: they take another connection, or wait for one.
        public var pipelineStall: Duration
        /// A pipeline goes behind the busiest connection open to sharing that
        /// has fewer than this in flight (and is not stalled) before it opens
        /// another or goes behind the one with the fewest: a backend at work
        /// runs it right after the ones before it, where a connection of its
        /// own, or the least busy one, would more often wake a sleeping
        /// backend for it (ADR 007, item 43). 1 opens a connection whenever
        /// it may.
        public var pipelinePack: Int
        /// The longest a connection waits for an answer of the database
        /// (since it sent, or since the last answer it read; a pipeline's
        /// answers come together at its end) before it is closed and the statement fails
        /// as unavailable (`AnswerWatch`); nil: as long as the connection
        /// stays open. Longer than `statement_timeout`, which ends a slow
        /// statement with an error of the server's.
        public var answerLimit: Duration?

        public init(
            conninfo: String,
            size: Int = 8,
            waitTimeout: Duration = .seconds(5),
            sessionSettings: [(String, String)] = [],
            maxTransactionAttempts: Int = 8,
            name: String = "requests",
            pipelineDepth: Int = 16,
            pipelineConnections: Int? = nil,
            pipelineStall: Duration = .milliseconds(2),
            pipelinePack: Int = 4,
            answerLimit: Duration? = nil
        ) {
            self.conninfo = conninfo
            self.size = size
            self.waitTimeout = waitTimeout
            self.sessionSettings = sessionSettings
            self.maxTransactionAttempts = maxTransactionAttempts
            self.name = name
            self.pipelineDepth = pipelineDepth
            self.pipelineConnections = pipelineConnections ?? max(1, size / 2)
            self.pipelineStall = pipelineStall
            self.pipelinePack = pipelinePack
            self.answerLimit = answerLimit
        }
    }

    private struct Waiter {
        let continuation: CheckedContinuation<Connection?, any Error>
        let deadline: ContinuousClock.Instant
    }

    private struct State {
        /// Free slots: a connection, or nil for a slot that must connect first.
        var free: [Connection?]
        /// Callers waiting for a slot, oldest first.
        var waiters: [Waiter] = []
        /// Whether the task that expires overdue waiters is running.
        var sweeping = false
        var inUse = 0
        var closed = false
        /// `shutdown` calls waiting for the last slot to come back.
        var drainWaiters: [CheckedContinuation<Void, Never>] = []
        #if os(Linux)
            /// Connections open to sharing, running pipelines (each holds its
            /// slot until its last pipeline ends).
            var channels: [PipelineWatcher.Channel] = []
            /// Slots taken to be opened to sharing, still connecting.
            var opening = 0
        #endif
    }

    public let configuration: Configuration
    private let state: NIOLockedValueBox<State>
    private let threads: NIOThreadPool
    #if os(Linux)
        /// Reads the answers of `pipeline`; nil (and pipelines run on the pool's
        /// threads) when the kernel refused its epoll.
        private let watcher: PipelineWatcher?
    #endif
    private let logger: Logger
    /// Closes connections that wait too long for an answer (`Configuration.answerLimit`).
    private let answerWatch: AnswerWatch?

    private let inUseGauge: Gauge
    private let sizeGauge: Gauge
    private let waitTimer: Metrics.Timer
    private let retryCounter: Counter
    private let discardCounter: Counter

    public init(configuration: Configuration, logger: Logger = Logger(label: "postgres.pool")) {
        precondition(configuration.size > 0, "pool size must be positive")
        precondition(configuration.pipelineDepth > 0, "pipeline depth must be positive")
        precondition(configuration.pipelineConnections > 0, "pipeline connections must be positive")
        self.configuration = configuration
        self.logger = logger
        self.state = NIOLockedValueBox(State(free: Array(repeating: nil, count: configuration.size)))
        self.answerWatch = configuration.answerLimit.map { AnswerWatch(limit: $0, logger: logger) }
        self.threads = NIOThreadPool(numberOfThreads: configuration.size)
        self.threads.start()
        #if os(Linux)
            self.watcher = PipelineWatcher(name: String("pg-\(configuration.name)".prefix(15)))
        #endif
        let pool = [("pool", configuration.name)]
        self.inUseGauge = Gauge(label: "db_pool_connections_in_use", dimensions: pool)
        self.sizeGauge = Gauge(label: "db_pool_size", dimensions: pool)
        self.waitTimer = Metrics.Timer(label: "db_pool_wait_seconds", dimensions: pool)
        self.retryCounter = Counter(label: "db_transaction_retries_total", dimensions: pool)
        self.discardCounter = Counter(label: "db_connections_discarded_total", dimensions: pool)
        sizeGauge.record(configuration.size)
    }

    /// Runs `body` with a connection on one of the pool's threads.
    public func withConnection<T: Sendable>(_ body: @escaping @Sendable (Connection) throws -> T) async throws -> T {
        try await runBlocking(holding: try await acquire(), body)
    }

    /// Runs `body` on one of the pool's threads with the slot's connection
    /// (connecting first when the slot has none), then releases the slot.
    private func runBlocking<T: Sendable>(holding slot: Connection?, _ body: @escaping @Sendable (Connection) throws -> T) async throws -> T
    {
        let configuration = self.configuration
        let answerWatch = self.answerWatch
        let outcome: (Connection?, Result<T, any Error>) = try await onPoolThread(holding: slot) {
            let connection: Connection
            do {
                connection = try slot ?? ConnectionPool.connect(configuration, watch: answerWatch)
            } catch {
                return (nil, .failure(error))
            }
            let result = Result { try body(connection) }
            if !connection.isBroken, connection.isInTransaction {
                // Work that left a transaction open (a thrown error mid-way) is undone here.
                _ = try? connection.query("ROLLBACK", prepared: false)
            }
            // Anything else left half done (a pipeline left open, a rollback
            // that failed) is not handed to the next caller, who may act for
            // another tenant: the connection is closed instead. So is one whose
            // prepared statements no longer fit the schema.
            return (connection.isReusable && !ConnectionPool.mustReplace(after: result) ? connection : nil, result)
        }
        if outcome.0 == nil, slot != nil { discardCounter.increment() }
        release(outcome.0)
        return try outcome.1.get()
    }

    /// Work that runs a pipeline on a connection of its own, handed to the
    /// caller's wrapper (`pipeline(_:alone:)`).
    public typealias PipelineWork = @Sendable () async throws -> [QueryResult]

    /// Sends the statements in one round trip (pipeline mode) as one implicit
    /// transaction: all of them take effect, or none.
    ///
    /// On Linux the caller's thread sends them without blocking and the pool's
    /// watcher thread reads the answers (`PipelineWatcher`); no pool thread is
    /// involved unless the slot must connect first (TLS included).
    ///
    /// Pipelines share connections. Up to `Configuration.pipelineConnections`
    /// connections at a time are open to sharing: a pipeline goes behind the
    /// busiest of them with fewer than `pipelinePack` in flight; else it takes
    /// a free slot for one while fewer are open, and otherwise is sent on the
    /// one with the fewest in flight, behind them, if it has room
    /// (`pipelineDepth`); always behind a pipeline in flight for less than
    /// `pipelineStall`. PostgreSQL
    /// runs them one after the other, each its own transaction; the error of
    /// one does not touch the others, but a connection that breaks fails them
    /// all. Otherwise the pipeline has a connection to itself, waiting for a
    /// slot as `withConnection` does, inside `alone` when given (the caller's
    /// share of the connections, say): so does a pipeline with a statement
    /// that could leave a transaction open behind it (BEGIN, say:
    /// `Statement.mayControlTransaction`), and one with a statement marked
    /// `runsAlone` (a long read would hold up every pipeline sent behind it).
    /// A pipeline opens a connection to
    /// sharing only if `opening`, when given, takes a place in that share at
    /// once (it answers how to give the place back, or nil), and holds the
    /// place while it is in flight: a caller's slow pipelines hold no more
    /// connections than its share. Over a GSSAPI-encrypted connection the
    /// pipeline runs blocking on one of the pool's threads.
    public func pipeline(
        _ statements: [Statement], alone: (@Sendable (PipelineWork) async throws -> [QueryResult])? = nil,
        opening: (@Sendable () -> (@Sendable () -> Void)?)? = nil
    ) async throws -> [QueryResult] {
        #if os(Linux)
            if let watcher, configuration.pipelineDepth > 1, !statements.contains(where: { $0.runsAlone || $0.mayControlTransaction }) {
                switch try share(opening: opening) {
                case .join(let channel):
                    do {
                        return try await send(statements, on: channel, watcher)
                    } catch is PipelineWatcher.NotSent {
                        // The connection failed while this pipeline was on its way: it goes alone.
                        break
                    }
                case .open(let slot, let place):
                    // The caller's place (`opening`) is held while this pipeline is in flight.
                    defer { place?() }
                    let connection: Connection
                    do {
                        connection = try await connected(checkedIfIdle(slot))
                    } catch {
                        state.withLockedValue { $0.opening -= 1 }
                        throw error
                    }
                    guard connection.canWaitOnSocket else {
                        state.withLockedValue { $0.opening -= 1 }
                        return try await runBlocking(holding: connection) { try $0.pipeline(statements) }
                    }
                    do {
                        return try await send(statements, on: openChannel(on: connection, shareable: true, watcher), watcher)
                    } catch is PipelineWatcher.NotSent {
                        // A pipeline that joined the new connection first could
                        // not be sent and gave it up: this one goes alone.
                        break
                    }
                case .alone:
                    break
                }
            }
        #endif
        let work: PipelineWork = { try await self.pipelineAlone(statements) }
        if let alone { return try await alone(work) }
        return try await work()
    }

    /// A pipeline on a connection of its own. (A channel of one pipeline is
    /// never abandoned before its pipeline is sent: `NotSent` cannot come.)
    private func pipelineAlone(_ statements: [Statement]) async throws -> [QueryResult] {
        #if os(Linux)
            guard let watcher else {
                return try await withConnection { try $0.pipeline(statements) }
            }
            let connection = try await connected(try await acquire())
            if !connection.canWaitOnSocket {
                // GSSAPI encryption (or TLS not through OpenSSL): decrypted bytes
                // can wait in a buffer that nothing outside libpq can see.
                return try await runBlocking(holding: connection) { try $0.pipeline(statements) }
            }
            return try await send(statements, on: openChannel(on: connection, shareable: false, watcher), watcher)
        #else
            try await withConnection { try $0.pipeline(statements) }
        #endif
    }

    /// Pipelines sent on connections open to sharing and not yet answered.
    public var sharedPipelinesInFlight: Int {
        #if os(Linux)
            state.withLockedValue { $0.channels.reduce(0) { $0 + $1.started.count } }
        #else
            0
        #endif
    }

    #if os(Linux)
        private enum Sharing {
            /// Sent behind the pipelines in flight on this connection.
            case join(PipelineWatcher.Channel)
            /// A free slot taken, to open to sharing (counted in `opening`),
            /// with what gives back the caller's place in its share, if it took one.
            case open(Connection?, place: (@Sendable () -> Void)?)
            /// No room: a connection of its own.
            case alone
        }

        /// Where a pipeline that may share goes, its place counted. It opens a
        /// connection to sharing only when `opening` (if given) takes a place
        /// in the caller's share; with the share full it goes behind others,
        /// or alone.
        private func share(opening: (@Sendable () -> (@Sendable () -> Void)?)?) throws -> Sharing {
            try state.withLockedValue { state in
                if state.closed { throw PostgresError(kind: .poolClosed, message: "the connection pool is shut down") }
                let now = ContinuousClock.now
                // Whether a pipeline may go behind those in flight on `channel`, up to `most`.
                func room(_ channel: PipelineWatcher.Channel, below most: Int) -> Bool {
                    !channel.discard && channel.started.count < most && now - (channel.started.first ?? now) < configuration.pipelineStall
                }
                var busiest: PipelineWatcher.Channel?
                for channel in state.channels where room(channel, below: min(configuration.pipelinePack, configuration.pipelineDepth)) {
                    if busiest == nil || channel.started.count > busiest!.started.count { busiest = channel }
                }
                if let busiest {
                    busiest.started.append(now)
                    return .join(busiest)
                }
                if state.channels.count + state.opening < configuration.pipelineConnections, state.waiters.isEmpty,
                    !state.free.isEmpty
                {
                    // The caller's lock is only ever taken inside the pool's, never around it.
                    let place = opening?()
                    if opening == nil || place != nil {
                        let slot = state.free.removeLast()
                        state.inUse += 1
                        inUseGauge.record(state.inUse)
                        state.opening += 1
                        return .open(slot, place: place)
                    }
                }
                var chosen: PipelineWatcher.Channel?
                for channel in state.channels where room(channel, below: configuration.pipelineDepth) {
                    if chosen == nil || channel.started.count < chosen!.started.count { chosen = channel }
                }
                guard let chosen else { return .alone }
                chosen.started.append(now)
                return .join(chosen)
            }
        }

        /// Lends a slot's connection to pipelines, the caller's first; others
        /// may join it only when it is `shareable` (it was counted in `opening`).
        private func openChannel(on connection: Connection, shareable: Bool, _ watcher: PipelineWatcher) -> PipelineWatcher.Channel {
            let channel = watcher.channel(for: connection)
            state.withLockedValue { state in
                channel.started = [ContinuousClock.now]
                if shareable {
                    state.opening -= 1
                    state.channels.append(channel)
                }
            }
            return channel
        }

        private func send(_ statements: [Statement], on channel: PipelineWatcher.Channel, _ watcher: PipelineWatcher) async throws
            -> [QueryResult]
        {
            try await withCheckedThrowingContinuation { continuation in
                watcher.run(statements, on: channel) { outcome in
                    self.pipelineEnded(on: channel, outcome, watcher)
                    continuation.resume(with: outcome)
                }
            }
        }

        /// Counts a pipeline of `channel` as ended. A connection that broke,
        /// whose pipelines were given up (`Channel.isAbandoned`) or whose
        /// prepared statements no longer fit the schema takes no more; after
        /// the last one the connection goes back to the slots, unless it is
        /// one of those or is left in pipeline mode or in a transaction.
        private func pipelineEnded(
            on channel: PipelineWatcher.Channel, _ outcome: Result<[QueryResult], any Error>, _ watcher: PipelineWatcher
        ) {
            let doomed = ConnectionPool.mustReplace(after: outcome) || channel.isAbandoned
            let (last, discard) = state.withLockedValue { state -> (Bool, Bool) in
                // Pipelines end in the order they were sent (but for one
                // refused before it was sent, which only the count minds).
                channel.started.removeFirst()
                if doomed { channel.discard = true }
                guard channel.started.isEmpty else { return (false, false) }
                state.channels.removeAll { $0 === channel }
                return (true, channel.discard)
            }
            guard last else { return }
            // Nothing is in flight on the connection and nothing can be sent on it now.
            watcher.forget(channel)
            let reusable = !discard && channel.connection.isReusable
            if !reusable { discardCounter.increment() }
            release(reusable ? channel.connection : nil)
        }
    #endif

    /// A slot's connection, connected first on one of the pool's threads when
    /// the slot has none. The slot is released again when this throws.
    private func connected(_ slot: Connection?) async throws -> Connection {
        if let slot { return slot }
        let configuration = self.configuration
        let answerWatch = self.answerWatch
        let connected = try await onPoolThread(holding: nil) { Result { try ConnectionPool.connect(configuration, watch: answerWatch) } }
        do {
            return try connected.get()
        } catch {
            release(nil)
            throw error
        }
    }

    /// Runs `work` on one of the pool's threads for a caller holding `slot`.
    /// When no thread takes it, the slot is released and the error says why:
    /// the caller's task was cancelled first (nothing ran), or the threads
    /// stopped at shutdown, which also answers CancellationError.
    private func onPoolThread<T: Sendable>(holding slot: Connection?, _ work: @escaping @Sendable () -> T) async throws -> T {
        do {
            return try await threads.runIfActive(work)
        } catch is CancellationError where Task.isCancelled {
            release(slot)
            throw CancellationError()
        } catch {
            release(slot)
            throw PostgresError(kind: .poolClosed, message: "the connection pool is shut down")
        }
    }

    /// Runs `body` inside `BEGIN ISOLATION LEVEL ... COMMIT`; rolls back when it throws.
    ///
    /// `prologue` statements are pipelined with BEGIN, so the first round trip
    /// also carries them (authentication, `set_config`, a first read); their
    /// results are handed to `body`. The whole transaction is run again, up to
    /// `maxTransactionAttempts` times with jittered backoff, when it fails with a
    /// serialization failure or a deadlock: `body` must be safe to repeat.
    @discardableResult
    public func transaction<T: Sendable>(
        _ isolation: IsolationLevel = .readCommitted,
        prologue: [Statement] = [],
        _ body: @escaping @Sendable (Transaction, [QueryResult]) throws -> T
    ) async throws -> T {
        var attempt = 1
        while true {
            // Set once this attempt has committed: an error after that (a
            // statement the body runs after `commit(after:)`) is not a reason
            // to run the committed work again.
            let committed = NIOLockedValueBox(false)
            do {
                return try await withConnection { connection in
                    let begin = Statement("BEGIN ISOLATION LEVEL \(unescaped: isolation.rawValue)")
                    let start = connection.statementCount
                    let results = try connection.pipeline([begin] + prologue)
                    let transaction = Transaction(connection: connection, statementBase: start)
                    defer { if transaction.isCommitted { committed.withLockedValue { $0 = true } } }
                    let value = try body(transaction, Array(results.dropFirst()))
                    if !transaction.isCommitted {
                        try connection.requireCommittable()
                        try Transaction.committing { try connection.query("COMMIT") }
                    }
                    return value
                }
            } catch let error as PostgresError
                where error.isTransactionRetryable && attempt < configuration.maxTransactionAttempts && !committed.withLockedValue({ $0 })
            {
                retryCounter.increment()
                logger.debug("transaction retried", metadata: ["sqlstate": "\(error.sqlState ?? "")", "attempt": "\(attempt)"])
                // Exponential backoff with full jitter: 1, 2, 4 ... ms, at most 50 ms.
                let ceiling = min(50_000, 1_000 << min(attempt - 1, 6))
                try await Task.sleep(for: .microseconds(Int.random(in: 0...ceiling)))
                attempt += 1
            }
        }
    }

    /// Waits for in-flight work, then closes every connection. Later calls fail with `poolClosed`.
    public func shutdown() async {
        let waiters = state.withLockedValue { state -> [Waiter] in
            state.closed = true
            let waiters = state.waiters
            state.waiters = []
            return waiters
        }
        for waiter in waiters {
            waiter.continuation.resume(throwing: PostgresError(kind: .poolClosed, message: "the connection pool is shut down"))
        }
        // Work holds its slot until it is done (a pipeline, until its answers
        // are read): once every slot is back, nothing is in flight or can
        // start. Waited for before the threads stop, since work that holds a
        // slot may still need one of them (to connect, or to run), and a
        // stopped thread pool would refuse it.
        // Resumed by the release of the last slot; not by cancellation, which
        // must not end the wait (a shutdown cut short by its deadline still
        // waits, without spinning, for the work that holds slots).
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let drained = state.withLockedValue { state -> Bool in
                if state.inUse == 0 { return true }
                state.drainWaiters.append(continuation)
                return false
            }
            if drained { continuation.resume() }
        }
        try? await threads.shutdownGracefully()
        #if os(Linux)
            watcher?.stop()
        #endif
        state.withLockedValue { $0.free = [] }
    }

    /// Connections currently lent out.
    public var inUse: Int {
        state.withLockedValue { $0.inUse }
    }

    // MARK: - Slots

    private enum Slot {
        case ready(Connection?)
        case closed
        case busy
    }

    /// A connection idle this long is looked at before it is handed out
    /// (`Connection.closedByServer`, one poll of its socket): one the server
    /// closed meanwhile, as when PostgreSQL restarted, is replaced instead of
    /// failing the request that drew it. Busier connections are not looked at.
    public static let idleCheckAfter = Duration.seconds(1)

    /// A free slot, `acquireSlot`'s, with a connection the server closed while
    /// it sat idle traded for a slot that connects afresh.
    private func acquire() async throws -> Connection? {
        checkedIfIdle(try await acquireSlot())
    }

    /// The slot, or a slot that connects afresh when its connection sat idle
    /// and the server closed it meanwhile.
    private func checkedIfIdle(_ slot: Connection?) -> Connection? {
        if let slot, ContinuousClock.now - slot.idleSince >= ConnectionPool.idleCheckAfter, slot.closedByServer() {
            discardCounter.increment()
            return nil
        }
        return slot
    }

    private func acquireSlot() async throws -> Connection? {
        let start = ContinuousClock.now
        defer {
            let waited = ContinuousClock.now - start
            waitTimer.recordNanoseconds(waited.components.seconds * 1_000_000_000 + waited.components.attoseconds / 1_000_000_000)
        }
        // A free slot is taken without suspending the caller.
        switch takeFreeSlot() {
        case .ready(let slot): return slot
        case .closed: throw PostgresError(kind: .poolClosed, message: "the connection pool is shut down")
        case .busy: break
        }
        // The wait shares the request's budget (`WaitBudget`) when it has one.
        let (deadline, budget) = ConnectionPool.budgetedWait(startingAt: start, atMost: configuration.waitTimeout)
        defer { budget?.spend(ContinuousClock.now - start) }
        return try await withCheckedThrowingContinuation { continuation in
            let (immediate, startSweeper) = state.withLockedValue { state -> (Slot, Bool) in
                if state.closed { return (.closed, false) }
                if let slot = state.free.popLast() {
                    state.inUse += 1
                    inUseGauge.record(state.inUse)
                    return (.ready(slot), false)
                }
                state.waiters.append(Waiter(continuation: continuation, deadline: deadline))
                let startSweeper = !state.sweeping
                state.sweeping = true
                return (.busy, startSweeper)
            }
            switch immediate {
            case .ready(let slot): continuation.resume(returning: slot)
            case .closed: continuation.resume(throwing: PostgresError(kind: .poolClosed, message: "the connection pool is shut down"))
            case .busy: if startSweeper { startSweeping() }
            }
        }
    }

    private func takeFreeSlot() -> Slot {
        state.withLockedValue { state -> Slot in
            if state.closed { return .closed }
            guard state.waiters.isEmpty, let slot = state.free.popLast() else { return .busy }
            state.inUse += 1
            inUseGauge.record(state.inUse)
            return .ready(slot)
        }
    }

    /// One task, running only while callers wait, fails those past their deadline
    /// (checked every few milliseconds) instead of a timer per waiter.
    private func startSweeping() {
        let interval = min(configuration.waitTimeout / 10, .milliseconds(25))
        Task { [weak self] in
            while let self {
                try? await Task.sleep(for: interval)
                let now = ContinuousClock.now
                let (expired, done) = self.state.withLockedValue { state -> ([Waiter], Bool) in
                    let expired = state.waiters.filter { $0.deadline <= now }
                    state.waiters.removeAll { $0.deadline <= now }
                    if state.waiters.isEmpty { state.sweeping = false }
                    return (expired, state.waiters.isEmpty)
                }
                for waiter in expired {
                    waiter.continuation.resume(
                        throwing: PostgresError(kind: .poolTimeout, message: "no database connection became free in time")
                    )
                }
                if done { return }
            }
        }
    }

    private func release(_ slot: Connection?) {
        // Still this caller's until the lock hands it on.
        slot?.idleSince = ContinuousClock.now
        let (waiter, drained) = state.withLockedValue { state -> (Waiter?, [CheckedContinuation<Void, Never>]) in
            defer { inUseGauge.record(state.inUse) }
            if state.closed {
                state.inUse -= 1
                guard state.inUse == 0 else { return (nil, []) }
                defer { state.drainWaiters = [] }
                return (nil, state.drainWaiters)
            }
            if !state.waiters.isEmpty {
                // Handed straight to the next caller: still in use.
                return (state.waiters.removeFirst(), [])
            }
            state.inUse -= 1
            state.free.append(slot)
            return (nil, [])
        }
        waiter?.continuation.resume(returning: slot)
        for shutdown in drained { shutdown.resume() }
    }

    /// Whether the connection that gave `outcome` is closed rather than used
    /// again: its prepared statements no longer fit the schema
    /// (`staleStatements`), or the error says the database is unavailable
    /// through it (`PostgresError.isUnavailable`: the connection broke, or
    /// the database refused a write as read-only, 25006, as a standby or a
    /// demoted primary after a failover does, while a new connection may
    /// reach the new primary).
    static func mustReplace<T>(after outcome: Result<T, any Error>) -> Bool {
        if case .failure(let error as PostgresError) = outcome, error.isUnavailable { return true }
        return staleStatements(outcome)
    }

    /// Whether `outcome` failed because a statement this connection prepared
    /// no longer fits the schema: a migration applied while the server runs
    /// changed what it returns ("cached plan must not change result type",
    /// 0A000), or the statement is gone from the session (26000). Such a
    /// connection would fail the same statement every time it is used: it is
    /// closed, and a new one prepares the statement afresh.
    static func staleStatements<T>(_ outcome: Result<T, any Error>) -> Bool {
        guard case .failure(let error as PostgresError) = outcome, let state = error.sqlState else { return false }
        // 0A000 is "feature not supported" at large: only the one the plan
        // cache raises, known by its source function (the message is in the
        // server's language).
        return (state == "0A000" && error.sourceFunction == "RevalidateCachedQuery") || state == "26000"
    }

    private static func connect(_ configuration: Configuration, watch: AnswerWatch?) throws -> Connection {
        let connection = try Connection(conninfo: configuration.conninfo)
        watch?.watch(connection)
        let settings =
            [("DateStyle", "ISO"), ("TimeZone", "UTC"), ("client_encoding", "UTF8"), ("bytea_output", "hex")]
            + configuration.sessionSettings
        // In one round trip: a pool reconnecting after an outage does so at once.
        let each: [SQLFragment] = settings.map { name, value in "set_config(\(name), \(value), false)" }
        try connection.query("SELECT \(each, separator: ", ")", prepared: false)
        return connection
    }
}

/// A transaction in progress, handed to the body of `ConnectionPool.transaction`.
/// Used only on the pool thread that runs the body.
public final class Transaction {
    public let connection: Connection
    public private(set) var isCommitted = false
    private let statementBase: Int

    init(connection: Connection, statementBase: Int) {
        self.connection = connection
        self.statementBase = statementBase
    }

    @discardableResult
    public func query(_ query: PostgresQuery) throws -> QueryResult {
        try connection.query(query)
    }

    /// Several statements in one round trip; see `Connection.pipeline`.
    public func pipeline(_ statements: [Statement]) throws -> [QueryResult] {
        try connection.pipeline(statements)
    }

    /// Runs the last statements and COMMIT in one round trip. If a statement
    /// fails, nothing commits and the error is thrown.
    @discardableResult
    public func commit(after statements: [Statement] = []) throws -> [QueryResult] {
        try connection.requireCommittable()
        let results = try Self.committing { try connection.pipeline(statements + [Statement("COMMIT")]) }
        isCommitted = true
        return Array(results.dropLast())
    }

    /// `commit(after:)`, calling `answeredFirst` as soon as the first
    /// statement's answer (or error: false) is read, before COMMIT's
    /// (`Connection.pipeline(_:answeredFirst:)`).
    @discardableResult
    public func commit(after statements: [Statement], answeredFirst: (Bool) -> Void) throws -> [QueryResult] {
        try connection.requireCommittable()
        let results = try Self.committing { try connection.pipeline(statements + [Statement("COMMIT")], answeredFirst: answeredFirst) }
        isCommitted = true
        return Array(results.dropLast())
    }

    /// Runs `send`, which sends COMMIT: a connection lost meanwhile is
    /// thrown as `PostgresError.commitUncertain`.
    @discardableResult
    static func committing<T>(_ send: () throws -> T) throws -> T {
        do {
            return try send()
        } catch let error as PostgresError {
            throw error.whileCommitting()
        }
    }

    /// Statements sent by this attempt of the transaction so far, BEGIN and
    /// its prologue included (COMMIT, when the pool sends it, is one more).
    public var statementCount: Int { connection.statementCount - statementBase }
}
