import CLibPQ
import Foundation
import Synchronization

/// One libpq connection. Every call blocks the calling thread until the server
/// answers, so connections are used only on the pool's own threads (or in tests).
/// Not thread-safe: one thread uses a connection at a time.
public final class Connection: @unchecked Sendable {
    let handle: OpaquePointer
    private var preparedNames: [String: String] = [:]
    private var preparedCount = 0
    /// Statements sent on this connection (prepares not counted).
    public private(set) var statementCount = 0

    /// Network timeouts every connection has unless `conninfo` sets its own:
    /// a database host that goes silent (a failover to another address, a
    /// partition) fails the statement in flight within about half a minute,
    /// instead of holding its thread, its pool slot and its request for the
    /// kernel's minutes or libpq's two hours of keepalive.
    public static let networkDefaults = [
        ("connect_timeout", "5"),
        ("keepalives", "1"),
        ("keepalives_idle", "10"),
        ("keepalives_interval", "5"),
        ("keepalives_count", "3"),
        ("tcp_user_timeout", "30000"),
    ]

    /// Connects with a libpq URI (`postgresql://...`) or conninfo string
    /// (`host=... dbname=...`); `networkDefaults` fill what it leaves unset.
    public init(conninfo: String) throws {
        // libpq takes the last value of a repeated keyword: the defaults come
        // first, then the caller's string, expanded from `dbname`.
        let keywords = Connection.networkDefaults.map(\.0) + ["dbname"]
        let values = Connection.networkDefaults.map(\.1) + [conninfo]
        let handle = Connection.withCStrings(keywords) { keywords in
            Connection.withCStrings(values) { values in PQconnectdbParams(keywords, values, 1) }
        }
        guard let handle else {
            throw PostgresError(kind: .connection, message: "out of memory creating a connection")
        }
        guard PQstatus(handle) == CONNECTION_OK else {
            // libpq quotes what it could not use, and a password written
            // unescaped in a URL is misread as other parts ("invalid
            // percent-encoded token: "…"", a host name that is half of it):
            // every quoted part is elided, so no connection string's secret
            // reaches a log line or a terminal. libpq does not escape a quote
            // inside what it quotes: a connection string with one is elided
            // from the message's first quote to its last.
            let quotesMayNest = conninfo.contains("\"") || conninfo.lowercased().contains("%22")
            let message = PostgresError.redactingQuotes(Connection.trimmed(PQerrorMessage(handle)), quotesMayNest: quotesMayNest)
            PQfinish(handle)
            throw PostgresError(kind: .connection, message: message.isEmpty ? "could not connect" : message)
        }
        self.handle = handle
        self.backendPID = PQbackendPID(handle)
        // A descriptor of our own for the socket, for `cutOff` from another
        // thread: libpq's may be closed (and its number reused) meanwhile.
        // (Closed on exec, as libpq's is.)
        self.watchedSocket = fcntl(PQsocket(handle), F_DUPFD_CLOEXEC, 0)
    }

    deinit {
        for flight in flights { if let last = flight.last { PQclear(last) } }
        PQfinish(handle)
        if watchedSocket >= 0 { close(watchedSocket) }
    }

    // MARK: - Waiting for answers

    /// The socket, duplicated at connection (-1 when that failed): `cutOff`
    /// shuts it down, which ends libpq's own descriptor's socket too.
    private let watchedSocket: Int32
    /// Since when the connection has waited for an answer of the database
    /// (`Connection.monotonicNanoseconds`), moved on by each answer read; 0
    /// while it waits for nothing. Read by another thread (`AnswerWatch`).
    private let waitingSince = Atomic<Int64>(0)
    /// Set by `cutOff`: how long the connection had waited, in milliseconds.
    private let cutOffAfter = Atomic<Int64>(0)

    static func monotonicNanoseconds() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)
    }

    /// Marks the connection as waiting for an answer from now: when it sends,
    /// and again when an answer comes and more are to come.
    private func waiting() {
        waitingSince.store(Connection.monotonicNanoseconds(), ordering: .relaxed)
    }

    /// Marks the connection as waiting for nothing. Sequentially consistent,
    /// with `cutOffIfOverdue`'s two steps and `isReusable`'s look: either the
    /// cut-off sees this and does nothing, or the caller, looking next, sees
    /// the cut-off and does not reuse the connection.
    private func answered() {
        waitingSince.store(0, ordering: .sequentiallyConsistent)
    }

    /// Runs one blocking libpq call that waits for the server.
    private func awaitingAnswer<T>(_ call: () throws -> T) rethrows -> T {
        waiting()
        defer { answered() }
        return try call()
    }

    /// When the connection has waited longer than `limit` for an answer
    /// (since it sent, or since the last answer it read) at `now`, shuts its
    /// socket down, from any thread, and answers how long it had waited, in
    /// milliseconds; else nil. A pipeline's answers come together at its end,
    /// so the limit covers all of its statements. The statement in flight
    /// then fails at once as on a broken connection (its error says how long
    /// it had waited), and the connection is never used again
    /// (`isReusable`), even when its answer came as it was cut. For a
    /// database that holds the connection open and never answers (a frozen
    /// server, a stalled disk), where TCP's own timeouts never fire.
    func cutOffIfOverdue(limit: Duration, now: Int64) -> Int64? {
        guard watchedSocket >= 0 else { return nil }
        let since = waitingSince.load(ordering: .relaxed)
        guard since > 0 else { return nil }
        let (seconds, attoseconds) = limit.components
        let waited = now - since
        guard waited > seconds * 1_000_000_000 + attoseconds / 1_000_000_000 else { return nil }
        // Marked cut off before the wait is taken, so that a caller whose answer
        // came at this moment cannot find the connection reusable and hand it
        // on before its socket is shut (`answered`); not when an answer came
        // (or the wait ended) since the look.
        let milliseconds = max(1, waited / 1_000_000)
        cutOffAfter.store(milliseconds, ordering: .sequentiallyConsistent)
        guard waitingSince.compareExchange(expected: since, desired: 0, ordering: .sequentiallyConsistent).exchanged else {
            cutOffAfter.store(0, ordering: .sequentiallyConsistent)
            return nil
        }
        _ = shutdown(watchedSocket, Int32(SHUT_RDWR))
        return milliseconds
    }

    /// `password` for `user`, hashed as the server stores passwords
    /// (`password_encryption`, SCRAM-SHA-256 by default) on this side of the
    /// connection (libpq's PQencryptPasswordConn), for ALTER ROLE ... PASSWORD:
    /// the clear password then never reaches the server, its logs or its
    /// statistics. A password with a NUL is refused.
    public func hashedPassword(_ password: String, user: String) throws -> String {
        guard !password.utf8.contains(0), !user.utf8.contains(0) else {
            throw PostgresError(kind: .refused, message: "a password or role name contains NUL")
        }
        guard let hashed = PQencryptPasswordConn(handle, password, user, nil) else {
            throw PostgresError(kind: .connection, message: connectionMessage())
        }
        defer { PQfreemem(hashed) }
        return String(cString: hashed)
    }

    /// A NULL-terminated array of C strings, alive for the duration of `body`.
    private static func withCStrings<R>(_ strings: [String], _ body: ([UnsafePointer<CChar>?]) -> R) -> R {
        let copies = strings.map { strdup($0) }
        defer { copies.forEach { free($0) } }
        return body(copies.map { UnsafePointer($0) } + [nil])
    }

    /// The value libpq uses for a connection keyword (`connect_timeout`, say), or nil when unset.
    public func setting(_ keyword: String) -> String? {
        guard let options = PQconninfo(handle) else { return nil }
        defer { PQconninfoFree(options) }
        var option = options
        while let name = option.pointee.keyword {
            if String(cString: name) == keyword { return option.pointee.val.map { String(cString: $0) } }
            option += 1
        }
        return nil
    }

    /// Whether the connection can serve the next caller as it is: open, no
    /// transaction, out of pipeline mode, and not cut off for a wait past
    /// its pool's answer limit (`cutOffIfOverdue`).
    public var isReusable: Bool {
        !isBroken && !abandoned && !isInTransaction && PQpipelineStatus(handle) == PQ_PIPELINE_OFF
            && cutOffAfter.load(ordering: .sequentiallyConsistent) == 0
    }

    /// True once libpq has seen the connection fail; the pool discards such connections.
    public var isBroken: Bool {
        PQstatus(handle) != CONNECTION_OK
    }

    /// When the pool last put this connection back (set by the pool, under its lock).
    var idleSince = ContinuousClock.now

    /// True when the server has closed, or is closing, this idle connection
    /// (a restart, an administrator's pg_terminate_backend, an idle timeout):
    /// its socket is readable, or has hung up, with nothing asked. A backend
    /// says nothing to an idle session of ours (no LISTEN) except the FATAL
    /// error it sends as it ends the session, so anything to read means the
    /// connection is not to be trusted with the next statement. Does not wait.
    func closedByServer() -> Bool {
        if isBroken { return true }
        var descriptor = pollfd(fd: PQsocket(handle), events: Int16(POLLIN), revents: 0)
        guard descriptor.fd >= 0 else { return true }
        return poll(&descriptor, 1, 0) != 0
    }

    /// True when the open transaction block has failed: the server answers
    /// COMMIT there with ROLLBACK, not with an error, so a commit checks this first.
    public var isInFailedTransaction: Bool {
        PQtransactionStatus(handle) == PQTRANS_INERROR
    }

    /// Throws when the transaction has failed (`isInFailedTransaction`): its
    /// COMMIT would roll everything back and still report success.
    public func requireCommittable() throws {
        guard !isInFailedTransaction else {
            throw PostgresError(
                kind: .refused, message: "the transaction failed earlier (an error was caught and not rethrown): it cannot commit")
        }
    }

    /// True while a transaction block is open (or failed) on the server side.
    public var isInTransaction: Bool {
        let status = PQtransactionStatus(handle)
        return status == PQTRANS_INTRANS || status == PQTRANS_INERROR || status == PQTRANS_ACTIVE
    }

    /// True when a pipeline on this connection can be waited for on its socket
    /// alone (`PipelineWatcher`): a plain connection, or TLS through OpenSSL,
    /// whose decrypted bytes `readPipeline` takes before it answers that more
    /// is to come. Not with GSSAPI encryption, whose decrypted bytes wait in
    /// libpq's own buffer where nothing can see them, nor with a TLS library
    /// libpq does not expose as OpenSSL.
    var canWaitOnSocket: Bool {
        guard PQgssEncInUse(handle) == 0 else { return false }
        return PQsslInUse(handle) == 0 || PQsslStruct(handle, "OpenSSL") != nil
    }

    /// The backend's process id (for `pg_terminate_backend` in tests and diagnostics).
    public let backendPID: Int32

    /// Runs one statement and returns its rows: `query("... WHERE id = \(id)")`.
    /// Statements are prepared once per connection and then reused, unless
    /// `prepared` is false or the connection already holds `maxPreparedStatements`.
    @discardableResult
    public func query(_ query: PostgresQuery, prepared: Bool = true) throws -> QueryResult {
        try run(query.sql, query.binds, prepared: prepared && !query.plannedEachTime)
    }

    /// Runs SQL with `$n` placeholders written by hand and their values in order.
    /// Prefer `query(_:)` with interpolated values; this form exists for the
    /// wrapper's own tests of parameter handling.
    @discardableResult
    public func query(_ sql: String, _ parameters: [any PostgresBindable], prepared: Bool = true) throws -> QueryResult {
        try run(sql, parameters, prepared: prepared)
    }

    /// At most this many statements are prepared per connection. SQL built at run
    /// time cannot pile up server-side statements: past the limit, new SQL runs
    /// unprepared (one extra parse per execution, nothing kept).
    public static let maxPreparedStatements = 256

    private func run(_ sql: String, _ parameters: [any PostgresBindable], prepared: Bool) throws -> QueryResult {
        try Connection.checkParameters(parameters)
        statementCount += 1
        return try withParameters(parameters) { values, lengths, formats in
            let result: OpaquePointer?
            if prepared, let name = try prepare(sql, parameterCount: values.count) {
                result = awaitingAnswer { PQexecPrepared(handle, name, Int32(values.count), values, lengths, formats, 0) }
            } else {
                result = awaitingAnswer { PQexecParams(handle, sql, Int32(values.count), nil, values, lengths, formats, 0) }
            }
            return try check(result)
        }
    }

    /// Sends every statement at once in pipeline mode and reads all the answers:
    /// one network round trip. Statements before the first failing one have run;
    /// the failing one's error is thrown and the rest were skipped by the server.
    /// Outside an explicit transaction block the statements form one implicit
    /// transaction, committed when the pipeline ends.
    public func pipeline(_ statements: [Statement]) throws -> [QueryResult] {
        guard statements.count > 1 else {
            return try statements.map { try query($0) }
        }
        try sendPipeline(statements, blocking: true)
        return try readPipeline(blocking: true)!
    }

    /// `pipeline`, with the first statement's answer asked for at once (a
    /// flush request right after it, so that the server sends it before it
    /// runs the rest) and `answeredFirst` called as soon as that answer, or
    /// its error, has been read, before the rest are: with true when it
    /// succeeded, false when it failed (the server refused it, or the
    /// connection broke while it ran: libpq reports that as its error). It is
    /// not called when the pipeline cannot be sent.
    public func pipeline(_ statements: [Statement], answeredFirst: (Bool) -> Void) throws -> [QueryResult] {
        try sendPipeline(statements, blocking: true, flushAfterFirst: true)
        return try readPipeline(blocking: true, answeredFirst: answeredFirst)!
    }

    // MARK: - Pipelines, blocking or not

    /// A pipeline sent and not yet read to its synchronization point.
    private struct PipelineInFlight {
        /// What was sent, in order: a prepare (its name and SQL) or a statement.
        enum Sent {
            case prepare(name: String, sql: String)
            case statement
        }
        var sent: [Sent] = []
        /// The item whose results are being read; `sent.count` once only the sync is left.
        var next = 0
        /// The latest result of item `next` (a statement's results end with a NULL).
        var last: OpaquePointer?
        var results: [QueryResult] = []
        var firstError: PostgresError?
        /// Whether the first statement's answer has been read.
        var answeredFirst = false

        var prepareCount: Int {
            sent.reduce(0) { if case .prepare = $1 { $0 + 1 } else { $0 } }
        }

        func prepares(_ sql: String) -> Bool {
            sent.contains { if case .prepare(_, let prepared) = $0 { prepared == sql } else { false } }
        }
    }

    /// Pipelines sent and not yet read to their synchronization points,
    /// oldest first. More than one only for non-blocking pipelines sent one
    /// after another (`PipelineWatcher`'s shared connections): PostgreSQL
    /// answers them in order, each as its own implicit transaction.
    private var flights: [PipelineInFlight] = []

    /// How many pipelines were sent on this connection and not yet read to the end.
    var pipelinesInFlight: Int { flights.count }

    /// Set once pipelines in flight were given up unread: their answers may
    /// still come, so the connection must not serve anyone again.
    private var abandoned = false

    /// Gives up the pipelines in flight, unread (`isReusable` is false from now on).
    func abandonPipelines() {
        abandoned = true
        endPipeline()
    }

    /// Whether libpq holds an answer of the oldest pipeline in flight that a
    /// read would take without waiting: one it read while it was sending (a
    /// full socket makes it read), which the socket will not announce again.
    var hasAnswerBuffered: Bool {
        !flights.isEmpty && (PQisBusy(handle) == 0 || clibpq_tls_pending(handle) > 0)
    }

    /// The connection's socket, for a caller that waits on it (`PipelineWatcher`).
    var socket: Int32 { PQsocket(handle) }

    /// Sends `statements` and a synchronization point in pipeline mode. With
    /// `blocking` false the connection is first put in non-blocking mode and
    /// the answer is false when part of the pipeline is still unsent
    /// (`flushPipeline` sends the rest once the socket is writable). Read the
    /// answers with `readPipeline`. When sending fails the connection is left
    /// out of use (still in pipeline mode, or broken), every pipeline in
    /// flight on it is dropped, and the error is thrown; a parameter refused
    /// before anything is sent (`check(_:)`, unless `checked` says the
    /// caller did) changes nothing.
    ///
    /// A non-blocking pipeline may be sent while others are in flight: its
    /// answers come after theirs, and `readPipeline` reads them in order.
    @discardableResult
    func sendPipeline(_ statements: [Statement], blocking: Bool, flushAfterFirst: Bool = false, checked: Bool = false) throws -> Bool {
        precondition(flights.isEmpty || !blocking, "a blocking pipeline needs the connection to itself")
        if !checked { try Connection.check(statements) }
        if !blocking, PQsetnonblocking(handle, 1) != 0 { throw connectionError() }
        guard PQenterPipelineMode(handle) == 1 else { throw failPipeline() }
        statementCount += statements.count
        // A pipeline sent behind others keeps the wait's start: theirs.
        if flights.isEmpty { waiting() }
        var flight = PipelineInFlight()
        flight.sent.reserveCapacity(statements.count * 2)
        // Prepares in flight count against the cache's size.
        var pendingPrepares = flights.reduce(0) { $0 + $1.prepareCount }
        for (index, statement) in statements.enumerated() {
            let ok: Bool = withParameters(statement.binds) { pointers, lengths, formats in
                var name = statement.plannedEachTime ? nil : preparedNames[statement.sql]
                if name == nil,
                    statement.plannedEachTime || preparedNames.count + pendingPrepares >= Connection.maxPreparedStatements
                        || flights.contains(where: { $0.prepares(statement.sql) })
                {
                    // Planned each time, or the cache is full, or a pipeline in
                    // flight is preparing the statement (and may yet fail
                    // to): it runs unnamed.
                    guard PQsendQueryParams(handle, statement.sql, Int32(pointers.count), nil, pointers, lengths, formats, 0) == 1 else {
                        return false
                    }
                    flight.sent.append(.statement)
                    return true
                }
                if name == nil {
                    let fresh = nextPreparedName()
                    guard PQsendPrepare(handle, fresh, statement.sql, Int32(pointers.count), nil) == 1 else { return false }
                    flight.sent.append(.prepare(name: fresh, sql: statement.sql))
                    pendingPrepares += 1
                    name = fresh
                }
                guard PQsendQueryPrepared(handle, name!, Int32(pointers.count), pointers, lengths, formats, 0) == 1 else {
                    return false
                }
                flight.sent.append(.statement)
                return true
            }
            guard ok else { throw failPipeline() }
            if flushAfterFirst, index == 0, PQsendFlushRequest(handle) != 1 { throw failPipeline() }
        }
        guard PQpipelineSync(handle) == 1 else { throw failPipeline() }
        let flushed = PQflush(handle)
        guard flushed >= 0 else { throw failPipeline() }
        flights.append(flight)
        return flushed == 0
    }

    /// Sends more of a pipeline that `sendPipeline` could not send whole; true once all is sent.
    func flushPipeline() throws -> Bool {
        let flushed = PQflush(handle)
        guard flushed >= 0 else {
            throw failPipeline()
        }
        return flushed == 0
    }

    /// Reads the answers of the oldest pipeline in flight. Blocking, it waits
    /// for all of them. Not blocking, it takes what the socket holds (and what
    /// TLS has decrypted from it) and answers nil while more is to come (wait
    /// for the socket to be readable, then call again); with `reading` false
    /// it does not ask the socket, only takes what libpq already read (a
    /// caller that has just read for the pipeline before this one saves a
    /// read that would mostly find nothing). At its end the
    /// pipeline leaves the queue, the connection leaves pipeline mode (and
    /// non-blocking mode) when no other pipeline is in flight, and the first
    /// statement's error, if any, is thrown: the pipelines after it are not
    /// touched. Any other error (the connection broke, an answer out of
    /// order) drops every pipeline in flight, as `sendPipeline`'s do.
    func readPipeline(blocking: Bool, reading: Bool = true, answeredFirst: (Bool) -> Void = { _ in }) throws -> [QueryResult]? {
        guard var flight = flights.first else {
            preconditionFailure("no pipeline in flight on this connection")
        }
        if !blocking, reading, PQconsumeInput(handle) == 0 {
            flights[0] = flight
            throw failPipeline()
        }
        while true {
            // PQisBusy answers 0 on a broken connection: PQgetResult then reports it.
            if !blocking, PQisBusy(handle) == 1 {
                // Decrypted bytes left in OpenSSL's buffer never make the
                // socket readable again: take them now.
                if clibpq_tls_pending(handle) > 0 {
                    guard PQconsumeInput(handle) == 1 else {
                        flights[0] = flight
                        throw failPipeline()
                    }
                    continue
                }
                flights[0] = flight
                return nil
            }
            if flight.next < flight.sent.count {
                if let result = PQgetResult(handle) {
                    let status = PQresultStatus(result)
                    if status == PGRES_COPY_IN || status == PGRES_COPY_OUT || status == PGRES_COPY_BOTH {
                        // libpq would hand out the same COPY state for ever; the
                        // connection, in COPY, is left out of use.
                        PQclear(result)
                        flights[0] = flight
                        throw failPipeline(PostgresError(kind: .refused, message: "COPY cannot run in a pipeline"))
                    }
                    if let last = flight.last { PQclear(last) }
                    flight.last = result
                    waiting()
                    continue
                }
                // A NULL ends the results of item `next`.
                guard let result = flight.last else {
                    flights[0] = flight
                    throw failPipeline()
                }
                flight.last = nil
                let item = flight.sent[flight.next]
                flight.next += 1
                record(result, of: item, in: &flight)
                if case .statement = item, !flight.answeredFirst {
                    flight.answeredFirst = true
                    answeredFirst(flight.firstError == nil)
                }
            } else {
                // Only the synchronization point is left.
                guard let result = PQgetResult(handle) else {
                    flights[0] = flight
                    throw failPipeline()
                }
                let status = PQresultStatus(result)
                PQclear(result)
                guard status == PGRES_PIPELINE_SYNC else { continue }
                flights.removeFirst()
                if flights.isEmpty { endPipeline() }
                if let error = flight.firstError { throw error }
                if isBroken { throw failPipeline() }
                return flight.results
            }
        }
    }

    /// Files one statement's last result: a prepared name learnt, a result
    /// kept, or the pipeline's first error.
    private func record(_ result: OpaquePointer, of item: PipelineInFlight.Sent, in flight: inout PipelineInFlight) {
        let status = PQresultStatus(result)
        if status == PGRES_PIPELINE_ABORTED {
            PQclear(result)
            return
        }
        switch item {
        case .prepare(let name, let sql):
            if status == PGRES_COMMAND_OK {
                preparedNames[sql] = name
            } else if flight.firstError == nil {
                flight.firstError = error(from: result)
            }
            PQclear(result)
        case .statement:
            do {
                flight.results.append(try check(result))
            } catch let error as PostgresError {
                if flight.firstError == nil { flight.firstError = error }
            } catch {}
        }
    }

    /// Ends the pipelines in flight: frees what was read, leaves pipeline mode
    /// when libpq allows it (it does not while answers are unread; the
    /// connection then stays in pipeline mode, which `isReusable` refuses) and
    /// leaves non-blocking mode.
    private func endPipeline() {
        for flight in flights { if let last = flight.last { PQclear(last) } }
        flights = []
        answered()
        _ = PQexitPipelineMode(handle)
        _ = PQsetnonblocking(handle, 0)
    }

    /// Ends the pipelines in flight (or one that could not be sent whole) and
    /// answers `error`, or the connection's own error when there is none.
    private func failPipeline(_ error: PostgresError? = nil) -> PostgresError {
        let error = error ?? connectionError()
        endPipeline()
        return error
    }

    /// Runs SQL text with no parameters through the simple query protocol (several
    /// statements allowed). For fixed SQL only: migrations, session settings.
    public func execute(script sql: String) throws {
        // The simple query protocol: never parameters, never prepared.
        statementCount += 1
        _ = try check(awaitingAnswer { PQexec(handle, sql) })
    }

    // MARK: - Internals

    /// The prepared statement's name, preparing it first if needed; nil when the
    /// cache is full and the statement should run unprepared.
    private func prepare(_ sql: String, parameterCount: Int) throws -> String? {
        if let name = preparedNames[sql] { return name }
        guard preparedNames.count < Connection.maxPreparedStatements else { return nil }
        let name = nextPreparedName()
        _ = try check(awaitingAnswer { PQprepare(handle, name, sql, Int32(parameterCount), nil) })
        preparedNames[sql] = name
        return name
    }

    private func nextPreparedName() -> String {
        preparedCount += 1
        return "cfy_\(preparedCount)"
    }

    private func check(_ result: OpaquePointer?) throws -> QueryResult {
        guard let result else { throw connectionError() }
        switch PQresultStatus(result) {
        case PGRES_COMMAND_OK, PGRES_TUPLES_OK, PGRES_EMPTY_QUERY:
            return QueryResult(handle: result)
        default:
            let error = error(from: result)
            PQclear(result)
            throw error
        }
    }

    private func error(from result: OpaquePointer) -> PostgresError {
        func field(_ code: Int32) -> String? {
            guard let pointer = PQresultErrorField(result, code) else { return nil }
            return String(cString: pointer)
        }
        guard let sqlState = field(CLIBPQ_DIAG_SQLSTATE) else {
            // No SQLSTATE: libpq itself failed (lost connection and the like).
            let message = Connection.trimmed(PQresultErrorMessage(result))
            let cut = cutOffAfter.load(ordering: .relaxed) > 0
            return PostgresError(kind: .connection, message: message.isEmpty || cut ? connectionMessage() : message)
        }
        let broken = isBroken
        return PostgresError(
            kind: broken ? .connection : .server,
            sqlState: SQLState(sqlState),
            message: field(CLIBPQ_DIAG_MESSAGE_PRIMARY) ?? "error",
            detail: field(CLIBPQ_DIAG_MESSAGE_DETAIL),
            constraint: field(CLIBPQ_DIAG_CONSTRAINT_NAME),
            column: field(CLIBPQ_DIAG_COLUMN_NAME),
            sourceFunction: field(CLIBPQ_DIAG_SOURCE_FUNCTION)
        )
    }

    private func connectionMessage() -> String {
        let waited = cutOffAfter.load(ordering: .relaxed)
        if waited > 0 { return "no answer from the database in \(waited) ms: the connection was closed" }
        let message = Connection.trimmed(PQerrorMessage(handle))
        return message.isEmpty ? "connection lost" : message
    }

    /// The protocol counts a statement's parameters in 16 bits; libpq refuses
    /// more (a failure it reports like a lost connection), so they are refused
    /// here first, before anything is sent.
    static let maximumParameters = 65535

    /// Refuses, before anything is sent, more parameters than the protocol
    /// carries and a text containing NUL: libpq takes text parameters as C
    /// strings and would cut it there, storing less than the caller gave.
    /// The longest binary parameter sent: PostgreSQL's limit for one field (1 GB).
    static let maximumBinaryLength = 1 << 30

    private static func checkBinaryLength(_ data: Data, _ index: Int) throws {
        guard data.count <= maximumBinaryLength else {
            throw PostgresError(
                kind: .refused, message: "parameter $\(index + 1) has \(data.count) bytes; a field holds at most \(maximumBinaryLength)")
        }
    }

    /// Refuses, before anything is sent, a statement whose parameters libpq
    /// or PostgreSQL cannot take (`checkParameters`).
    static func check(_ statements: [Statement]) throws {
        for statement in statements { try checkParameters(statement.binds) }
    }

    private static func checkParameters(_ parameters: [any PostgresBindable]) throws {
        guard parameters.count <= maximumParameters else {
            throw PostgresError(
                kind: .refused, message: "a statement takes at most \(maximumParameters) parameters, not \(parameters.count)")
        }
        for (index, parameter) in parameters.enumerated() {
            let text: String?
            // The commonest types first: each case is a dynamic cast, and
            // this runs for every parameter of every statement.
            switch parameter {
            case let string as String: text = string
            // libpq takes a binary value's length as an int, and PostgreSQL
            // holds at most 1 GB in a field: a larger value is refused here
            // rather than trapping when its length is converted.
            case let data as Data:
                try checkBinaryLength(data, index)
                continue
            // Their text cannot hold NUL.
            case is Int64, is Int, is Int32, is Bool, is Double, is Date: continue
            // An optional, an array (its literal holds its elements' text): whatever goes as text.
            default:
                if let data = parameter.postgresBinary {
                    try checkBinaryLength(data, index)
                    continue
                }
                text = parameter.postgresText
            }
            if let text, text.utf8.contains(0) {
                throw PostgresError(kind: .refused, message: "parameter $\(index + 1) contains NUL, which PostgreSQL text cannot hold")
            }
        }
    }

    private func connectionError() -> PostgresError {
        PostgresError(kind: .connection, message: connectionMessage())
    }

    static func trimmed(_ pointer: UnsafePointer<CChar>?) -> String {
        guard let pointer else { return "" }
        return String(cString: pointer).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

/// Calls `body` with libpq's three parameter arrays for `parameters`: the
/// values (NUL-terminated text, the bytes of binary ones, NULL for SQL NULL),
/// their lengths and their formats. The last two are nil when every value is
/// text, as libpq then needs neither. The copies are freed afterwards.
private func withParameters<R>(
    _ parameters: [any PostgresBindable],
    _ body: ([UnsafePointer<CChar>?], [Int32]?, [Int32]?) throws -> R
) rethrows -> R {
    var pointers: [UnsafeMutablePointer<CChar>?] = []
    pointers.reserveCapacity(parameters.count)
    var lengths: [Int32] = []
    var formats: [Int32] = []
    var anyBinary = false
    defer { pointers.forEach { free($0) } }
    for parameter in parameters {
        switch PostgresParameter(parameter) {
        case .null:
            pointers.append(nil)
            lengths.append(0)
            formats.append(0)
        case .text(let text):
            pointers.append(strdup(text))
            lengths.append(0)
            formats.append(0)
        case .binary(let bytes):
            // One byte at least, so that an empty value is not a NULL pointer.
            let copy = malloc(max(bytes.count, 1))!.assumingMemoryBound(to: CChar.self)
            bytes.withUnsafeBytes { source in
                if let base = source.baseAddress { memcpy(copy, base, source.count) }
            }
            pointers.append(copy)
            lengths.append(Int32(bytes.count))
            formats.append(1)
            anyBinary = true
        }
    }
    return try body(pointers.map { $0.map { UnsafePointer($0) } }, anyBinary ? lengths : nil, anyBinary ? formats : nil)
}
