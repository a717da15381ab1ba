import Foundation
import NIOConcurrencyHelpers
import Postgres
import TestSupport
import XCTest

final class PoolTests: XCTestCase {
    func makePool(size: Int = 2, wait: Duration = .seconds(5)) -> ConnectionPool {
        ConnectionPool(configuration: .init(conninfo: TestDatabase.ownerURL, size: size, waitTimeout: wait))
    }

    func withTable(_ definition: String, _ body: (String, ConnectionPool) async throws -> Void) async throws {
        let table = TestDatabase.uniqueTable("pool")
        let pool = makePool()
        try await pool.withConnection { try $0.execute(script: "CREATE TABLE \(table) (\(definition))") }
        do {
            try await body(table, pool)
        } catch {
            _ = try? await pool.withConnection { try $0.execute(script: "DROP TABLE \(table)") }
            await pool.shutdown()
            throw error
        }
        try await pool.withConnection { try $0.execute(script: "DROP TABLE \(table)") }
        await pool.shutdown()
    }

    func testTransactionCommitsOnReturnAndRollsBackOnThrow() async throws {
        try await withTable("v int") { table, pool in
            struct Boom: Error {}
            try await pool.transaction { transaction, _ in try transaction.query("INSERT INTO \(unescaped: table) VALUES (1)") }
            do {
                try await pool.transaction { transaction, _ in
                    try transaction.query("INSERT INTO \(unescaped: table) VALUES (2)")
                    throw Boom()
                }
                XCTFail("the transaction should have thrown")
            } catch is Boom {}
            let values = try await pool.withConnection { connection in
                try connection.query("SELECT v FROM \(unescaped: table) ORDER BY v").rows.map { try $0.decode(Int.self, at: 0) }
            }
            XCTAssertEqual(values, [1])
        }
    }

    /// A body that catches a statement's error and returns normally leaves a
    /// failed transaction, whose COMMIT PostgreSQL answers with ROLLBACK (not
    /// an error): the commit is refused, so the caller never takes the lost
    /// writes for saved.
    func testATransactionThatFailedInsideItsBodyDoesNotReportACommit() async throws {
        try await withTable("v int") { table, pool in
            for explicitCommit in [false, true] {
                do {
                    try await pool.transaction { transaction, _ in
                        try transaction.query("INSERT INTO \(unescaped: table) VALUES (1)")
                        XCTAssertThrowsError(try transaction.query("SELECT 1 / 0"))
                        if explicitCommit { try transaction.commit() }
                    }
                    XCTFail("a failed transaction reported a commit (explicitly: \(explicitCommit))")
                } catch let error as PostgresError {
                    XCTAssertEqual(error.kind, .refused, error.message)
                }
            }
            let rows = try await pool.withConnection { try $0.query("SELECT count(*) FROM \(unescaped: table)")[0].decode(Int.self, at: 0) }
            XCTAssertEqual(rows, 0, "nothing was committed")
            let usable = try await pool.pipeline(["SELECT 1"])
            XCTAssertEqual(try usable[0][0].decode(Int.self, at: 0), 1, "the pool still serves")
        }
    }

    /// An error that would have the transaction run again (40001) raised
    /// after the body has committed does not run the committed work twice.
    func testWorkIsNotRunAgainOnceItHasCommitted() async throws {
        try await withTable("v int") { table, pool in
            let attempts = NIOLockedValueBox(0)
            do {
                try await pool.transaction { transaction, _ in
                    attempts.withLockedValue { $0 += 1 }
                    try transaction.commit(after: ["INSERT INTO \(unescaped: table) VALUES (1)"])
                    try transaction.query("DO $$ BEGIN RAISE EXCEPTION 'after the commit' USING ERRCODE = 'serialization_failure'; END $$")
                }
                XCTFail("the error after the commit was not thrown")
            } catch let error as PostgresError {
                XCTAssertEqual(error.sqlState, "40001")
            }
            XCTAssertEqual(attempts.withLockedValue { $0 }, 1, "run once")
            let rows = try await pool.withConnection { try $0.query("SELECT count(*) FROM \(unescaped: table)")[0].decode(Int.self, at: 0) }
            XCTAssertEqual(rows, 1, "committed once")
        }
    }

    /// A migration that changes what a prepared statement returns fails that
    /// statement once per connection (PostgreSQL: "cached plan must not change
    /// result type"); the connection is then replaced, and the next call
    /// prepares it afresh instead of failing on that connection for good.
    func testAConnectionWhosePreparedStatementNoLongerFitsIsReplaced() async throws {
        let table = TestDatabase.uniqueTable("stale")
        let pool = makePool(size: 1)
        try await pool.withConnection { try $0.execute(script: "CREATE TABLE \(table) (a int); INSERT INTO \(table) VALUES (1)") }
        var failure: (any Error)?
        do {
            let select: PostgresQuery = "SELECT * FROM \(unescaped: table)"
            for read in 0..<2 {
                let columns =
                    try await read == 0
                    ? pool.withConnection { try $0.query(select).columnCount } : pool.pipeline([select])[0].columnCount
                XCTAssertEqual(columns, 1 + read)
                try await pool.withConnection { try $0.execute(script: "ALTER TABLE \(table) ADD COLUMN b\(read) int") }
                do {
                    _ = try await read == 0 ? pool.withConnection { try $0.query(select) } : pool.pipeline([select])[0]
                    XCTFail("the statement prepared before the change was answered")
                } catch let error as PostgresError {
                    XCTAssertEqual(error.sqlState, "0A000", error.message)
                    // Known by the function that raised it: the message is in the server's language.
                    XCTAssertEqual(error.sourceFunction, "RevalidateCachedQuery")
                }
                let after =
                    try await read == 0
                    ? pool.withConnection { try $0.query(select).columnCount } : pool.pipeline([select])[0].columnCount
                XCTAssertEqual(after, 2 + read, "prepared afresh on a new connection")
            }
        } catch {
            failure = error
        }
        // Dropped whatever happened above: pgTAP counts the schema's tables.
        _ = try? await pool.withConnection { try $0.execute(script: "DROP TABLE \(table)") }
        await pool.shutdown()
        if let failure { throw failure }
    }

    func testSerializationFailureIsRetried() async throws {
        try await withTable("k int, v int") { table, pool in
            // Two SERIALIZABLE transactions each read the sum, then insert it: a
            // write skew that PostgreSQL must refuse for one of them (40001).
            let attempts = NIOLockedValueBox(0)
            let bothRead = DispatchGroup()
            bothRead.enter()
            bothRead.enter()
            let results = try await concurrently(2) { index in
                try await pool.transaction(.serializable) { transaction, _ in
                    let attempt = attempts.withLockedValue {
                        $0 += 1; return $0
                    }
                    let sum = try transaction.query("SELECT coalesce(sum(v), 0)::int FROM \(unescaped: table)")[0].decode(Int.self, at: 0)
                    if attempt <= 2 {
                        bothRead.leave()
                        _ = bothRead.wait(timeout: .now() + 10)
                    }
                    try transaction.query("INSERT INTO \(unescaped: table) VALUES (\(index), \(sum + 1))")
                    return sum
                }
            }
            XCTAssertGreaterThanOrEqual(attempts.withLockedValue { $0 }, 3, "one transaction must have been run again")
            XCTAssertEqual(results.sorted(), [0, 1], "the retried transaction saw the other's row")
        }
    }

    func testExhaustedPoolQueuesThenTimesOut() async throws {
        let pool = ConnectionPool(configuration: .init(conninfo: TestDatabase.ownerURL, size: 1, waitTimeout: .milliseconds(300)))
        let release = DispatchSemaphore(value: 0)
        async let holder: Void = pool.withConnection { _ in _ = release.wait(timeout: .now() + 30) }
        while pool.inUse == 0 { try await Task.sleep(for: .milliseconds(5)) }
        do {
            _ = try await pool.withConnection { try $0.query("SELECT 1") }
            XCTFail("expected a pool timeout")
        } catch let error as PostgresError {
            XCTAssertEqual(error.kind, .poolTimeout)
            XCTAssertTrue(error.isUnavailable)
        }
        // The waiter gave up while the connection was still held: the wait is
        // bounded by the pool's timeout, not by the holder.
        XCTAssertEqual(pool.inUse, 1)
        release.signal()
        try await holder
        // Once the connection is free again, work goes through.
        let one = try await pool.withConnection { try $0.query("SELECT 1")[0].decode(Int.self, at: 0) }
        XCTAssertEqual(one, 1)
        await pool.shutdown()
    }

    func testWaitersAreServedWhenAConnectionFrees() async throws {
        let pool = ConnectionPool(configuration: .init(conninfo: TestDatabase.ownerURL, size: 1, waitTimeout: .seconds(10)))
        let values = try await concurrently(6) { index in
            try await pool.withConnection { connection in
                try connection.query("SELECT $1::int FROM pg_sleep(0.05)", [index])[0].decode(Int.self, at: 0)
            }
        }
        XCTAssertEqual(values, Array(0..<6))
        await pool.shutdown()
    }

    /// Callers waiting for a connection are served in the order they came:
    /// five callers, each queued behind the one before while the pool's one
    /// connection is held, get it in that order once it frees.
    func testWaitersAreServedInTheOrderTheyCame() async throws {
        let pool = ConnectionPool(configuration: .init(conninfo: TestDatabase.ownerURL, size: 1, waitTimeout: .seconds(20)))
        let order = NIOLockedValueBox<[Int]>([])
        let holder = Task { try await pool.withConnection { try $0.query("SELECT pg_sleep(0.8)") } }
        try await Task.sleep(for: .milliseconds(100))
        var waiters: [Task<Void, any Error>] = []
        for index in 0..<5 {
            waiters.append(Task { try await pool.withConnection { _ in order.withLockedValue { $0.append(index) } } })
            // The next comes once this one is queued.
            try await Task.sleep(for: .milliseconds(60))
        }
        _ = try await holder.value
        for waiter in waiters { try await waiter.value }
        XCTAssertEqual(order.withLockedValue { $0 }, [0, 1, 2, 3, 4])
        await pool.shutdown()
    }

    /// A wait inside a `WaitBudget` ends when the budget does, however long
    /// the pool's own wait, and what it waited is taken from the budget.
    func testAWaitEndsWithItsBudget() async throws {
        let pool = ConnectionPool(configuration: .init(conninfo: TestDatabase.ownerURL, size: 1, waitTimeout: .seconds(10)))
        let holder = Task { try await pool.withConnection { try $0.query("SELECT pg_sleep(1.5)") } }
        try await Task.sleep(for: .milliseconds(200))
        let budget = WaitBudget(.milliseconds(300))
        let start = ContinuousClock.now
        do {
            _ = try await ConnectionPool.$waitBudget.withValue(budget) { try await pool.withConnection { try $0.query("SELECT 1") } }
            XCTFail("it got the connection")
        } catch let error as PostgresError {
            XCTAssertEqual(error.kind, .poolTimeout, "\(error)")
        }
        XCTAssertGreaterThanOrEqual(ContinuousClock.now - start, .milliseconds(280))
        XCTAssertLessThan(ContinuousClock.now - start, .seconds(1), "not the pool's 10 s, nor the holder's 1.5 s")
        XCTAssertEqual(budget.remaining, .zero, "the wait spent the budget")
        // Spent, it lets a later wait wait no more: a free connection is still taken.
        _ = try await holder.value
        let one = try await ConnectionPool.$waitBudget.withValue(budget) {
            try await pool.withConnection { try $0.query("SELECT 1")[0].decode(Int.self, at: 0) }
        }
        XCTAssertEqual(one, 1)
        await pool.shutdown()
    }

    func testKilledConnectionIsReplaced() async throws {
        let pool = ConnectionPool(configuration: .init(conninfo: TestDatabase.ownerURL, size: 1, waitTimeout: .seconds(5)))
        let firstPID = try await pool.withConnection { $0.backendPID }
        let killer = try Connection(conninfo: TestDatabase.ownerURL)
        XCTAssertTrue(try killer.query("SELECT pg_terminate_backend($1)", [firstPID])[0].decode(Bool.self, at: 0))
        XCTAssertTrue(TestDatabase.waitForBackendExit(firstPID))
        do {
            _ = try await pool.withConnection { try $0.query("SELECT 1") }
            XCTFail("the first use of a killed connection fails")
        } catch let error as PostgresError {
            XCTAssertTrue(error.isUnavailable, "\(error)")
        }
        let (pid, one) = try await pool.withConnection { ($0.backendPID, try $0.query("SELECT 1")[0].decode(Int.self, at: 0)) }
        XCTAssertEqual(one, 1)
        XCTAssertNotEqual(pid, firstPID)
        await pool.shutdown()
    }

    /// A connection lost once COMMIT was sent (the pool's own, or one sent by
    /// `commit(after:)` behind the transaction's statements) leaves the
    /// outcome unknown, and the error says so; one lost while a statement ran
    /// before COMMIT was sent does not: that transaction did not commit.
    func testAConnectionLostWhileCommittingIsThrownAsUncertain() async throws {
        let owner = try Connection(conninfo: TestDatabase.ownerURL)
        let table = "commit_uncertain_\(UInt32.random(in: 0...UInt32.max))"
        // A deferred trigger keeps COMMIT running until the backend is ended.
        try owner.execute(
            script: """
                CREATE TABLE \(table) (id int);
                CREATE FUNCTION \(table)_slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(30); RETURN NULL; END $$;
                CREATE CONSTRAINT TRIGGER slow AFTER INSERT ON \(table) DEFERRABLE INITIALLY DEFERRED
                    FOR EACH ROW EXECUTE FUNCTION \(table)_slow();
                """)
        defer { try? owner.execute(script: "DROP TABLE \(table); DROP FUNCTION \(table)_slow();") }
        let pool = ConnectionPool(configuration: .init(conninfo: TestDatabase.ownerURL, size: 1, waitTimeout: .seconds(5)))
        // Runs `work`, ends its backend once it runs `running`, and returns the error it threw.
        func lost(running: String, _ work: @escaping @Sendable (Transaction) throws -> Void) async throws -> PostgresError? {
            let task = Task { try await pool.transaction { transaction, _ in try work(transaction) } }
            var ended = false
            for _ in 0..<300 where !ended {
                try await Task.sleep(for: .milliseconds(20))
                // Only a backend that wrote into this test's table, or runs its own text: tests beside it sleep too.
                ended =
                    try owner.query(
                        """
                        SELECT pg_terminate_backend(a.pid) FROM pg_stat_activity a
                         WHERE a.query = $1 AND a.wait_event = 'PgSleep'
                           AND (a.query <> 'COMMIT' OR EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid AND l.relation = $2::regclass))
                        """, [running, table]
                    ).rows.count > 0
            }
            XCTAssertTrue(ended, "no backend ran \(running)")
            do {
                try await task.value
                XCTFail("the transaction survived its backend")
                return nil
            } catch let error as PostgresError {
                XCTAssertTrue(error.isUnavailable, "\(error)")
                return error
            }
        }
        let pools = try await lost(running: "COMMIT") { try $0.query("INSERT INTO \(unescaped: table) VALUES (1)") }
        XCTAssertEqual(pools?.commitUncertain, true, "the pool's COMMIT")
        XCTAssertTrue(pools?.description.contains("may have committed") == true, pools?.description ?? "")
        let pipelined = try await lost(running: "COMMIT") { try $0.commit(after: ["INSERT INTO \(unescaped: table) VALUES (2)"]) }
        XCTAssertEqual(pipelined?.commitUncertain, true, "COMMIT sent behind the statements")
        let sleep = "SELECT pg_sleep(30) /* lost before COMMIT */"
        let before = try await lost(running: sleep) { try $0.query("SELECT pg_sleep(30) /* lost before COMMIT */") }
        XCTAssertEqual(before?.commitUncertain, false, "lost before COMMIT was sent")
        // What the server did: the commits ended before they were done, nothing stored.
        XCTAssertEqual(try owner.query("SELECT count(*) FROM \(unescaped: table)")[0].decode(Int.self, at: 0), 0)
        await pool.shutdown()
    }

    /// A write refused as read-only (a standby, a demoted primary) closes the
    /// connection: the next one may reach the new primary.
    func testAConnectionRefusedAWriteAsReadOnlyIsReplaced() async throws {
        let readOnly =
            TestDatabase.ownerURL + (TestDatabase.ownerURL.contains("?") ? "&" : "?")
            + "options=-c%20default_transaction_read_only%3Don"
        let pool = ConnectionPool(configuration: .init(conninfo: readOnly, size: 1, waitTimeout: .seconds(5)))
        let firstPID = try await pool.withConnection { $0.backendPID }
        let samePID = try await pool.withConnection { $0.backendPID }
        XCTAssertEqual(samePID, firstPID, "a connection that did nothing wrong is kept")
        do {
            _ = try await pool.transaction { transaction, _ in try transaction.query("CREATE TEMP TABLE refused (x int)") }
            XCTFail("a read-only session refuses the write")
        } catch let error as PostgresError {
            XCTAssertTrue(error.hasCode(.readOnlySQLTransaction), "\(error)")
            XCTAssertTrue(error.isUnavailable, "\(error)")
        }
        let nextPID = try await pool.withConnection { $0.backendPID }
        XCTAssertNotEqual(nextPID, firstPID, "a new connection")
        await pool.shutdown()
    }

    /// A database that holds the connection open and never answers (frozen,
    /// its disk stalled): past `answerLimit` the connection is closed and the
    /// statement fails as unavailable, instead of waiting out the stall.
    /// `pg_sleep` stands in for the silence.
    func testAStatementWithNoAnswerIsCutOffAndItsConnectionReplaced() async throws {
        let pool = ConnectionPool(
            configuration: .init(conninfo: TestDatabase.ownerURL, size: 1, waitTimeout: .seconds(5), answerLimit: .milliseconds(300)))
        let firstPID = try await pool.withConnection { $0.backendPID }
        let start = ContinuousClock.now
        do {
            _ = try await pool.withConnection { try $0.query("SELECT pg_sleep(5)") }
            XCTFail("a statement with no answer in time fails")
        } catch let error as PostgresError {
            XCTAssertTrue(error.isUnavailable, "\(error)")
            XCTAssertTrue(error.message.hasPrefix("no answer from the database in "), error.message)
        }
        XCTAssertLessThan(ContinuousClock.now - start, .seconds(3), "not the statement's 5 s")
        let nextPID = try await pool.withConnection { $0.backendPID }
        XCTAssertNotEqual(nextPID, firstPID, "a new connection")

        // A pipeline (answered by the watcher on Linux) is cut off past the
        // limit as well, whatever the number of its statements.
        let pipelineStart = ContinuousClock.now
        do {
            _ = try await pool.pipeline(["SELECT pg_sleep(5)"] + Array(repeating: "SELECT 1", count: 9))
            XCTFail("a pipeline with no answer in time fails")
        } catch let error as PostgresError {
            XCTAssertTrue(error.isUnavailable, "\(error)")
        }
        let waited = ContinuousClock.now - pipelineStart
        XCTAssertGreaterThanOrEqual(waited, .milliseconds(300))
        XCTAssertLessThan(waited, .seconds(2), "the limit, not the limit for each of ten statements (3 s)")

        // Answers within the limit, and time spent between statements of a
        // transaction (waiting for nothing), are not cut.
        let slow = try await pool.withConnection { try $0.query("SELECT pg_sleep(0.1), 7")[0].decode(Int.self, at: 1) }
        XCTAssertEqual(slow, 7)
        let committed = try await pool.transaction { transaction, _ in
            Thread.sleep(forTimeInterval: 0.8)
            return try transaction.query("SELECT 8")[0].decode(Int.self, at: 0)
        }
        XCTAssertEqual(committed, 8)
        await pool.shutdown()
    }

    /// Pipelines queued one behind another on a shared connection wait longer
    /// in all than the limit, but each answer moves the wait on: none is cut.
    func testPipelinesAnsweredInTurnOnASharedConnectionAreNotCutOff() async throws {
        let pool = ConnectionPool(
            configuration: .init(
                conninfo: TestDatabase.ownerURL, size: 1, waitTimeout: .seconds(10), pipelineConnections: 1,
                answerLimit: .milliseconds(400)))
        let start = ContinuousClock.now
        let answers = try await withThrowingTaskGroup(of: Int.self) { group in
            for index in 0..<8 {
                group.addTask {
                    try await pool.pipeline(["SELECT pg_sleep(0.15)", Statement("SELECT \(index)::int")])[1][0].decode(Int.self, at: 0)
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        XCTAssertEqual(answers.sorted(), Array(0..<8))
        XCTAssertGreaterThan(ContinuousClock.now - start, .milliseconds(800), "longer in all than the limit for two statements")

        // Behind an answered pipeline, one with no answer is cut off the
        // limit after that answer.
        let shared = ConnectionPool(
            configuration: .init(
                conninfo: TestDatabase.ownerURL, size: 1, waitTimeout: .seconds(10), pipelineConnections: 1,
                pipelineStall: .seconds(60), answerLimit: .milliseconds(300)))
        let ten: [Statement] = ["SELECT pg_sleep(0.1)"] + Array(repeating: "SELECT 1", count: 9)
        async let answered = shared.pipeline(ten)
        try await Task.sleep(for: .milliseconds(20))
        let silentStart = ContinuousClock.now
        do {
            _ = try await shared.pipeline(["SELECT pg_sleep(6)", "SELECT 1"])
            XCTFail("the pipeline with no answer is cut off")
        } catch let error as PostgresError {
            XCTAssertTrue(error.isUnavailable, "\(error)")
        }
        // About 0.1 s for the ten, then 0.3 s.
        XCTAssertLessThan(ContinuousClock.now - silentStart, .milliseconds(2_000))
        let tenAnswers = try await answered
        XCTAssertEqual(tenAnswers.count, 10, "the ten were answered")
        await shared.shutdown()
        await pool.shutdown()
    }

    func testCancelledCallerRunsNothingAndLeavesThePoolOpen() async throws {
        let pool = makePool(size: 1)
        let ran = NIOLockedValueBox(false)
        let outcome = await Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return try await pool.withConnection { _ in ran.withLockedValue { $0 = true } }
        }.result
        XCTAssertThrowsError(try outcome.get()) { error in
            XCTAssertTrue(error is CancellationError, "expected CancellationError, got \(error)")
        }
        XCTAssertFalse(ran.withLockedValue { $0 })
        // The slot went back: the next caller gets the pool's one connection.
        let one = try await pool.withConnection { try $0.query("SELECT 1").rows[0].decode(Int.self, at: 0) }
        XCTAssertEqual(one, 1)
        await pool.shutdown()
    }

    /// A shutdown whose task is cancelled (a graceful stop past its deadline)
    /// still waits for the work that holds a slot, without spinning a core.
    func testACancelledShutdownWaitsForTheSlotsWithoutSpinning() async throws {
        let pool = makePool(size: 1)
        let finished = NIOLockedValueBox(false)
        let work = Task {
            try await pool.withConnection { _ in
                Thread.sleep(forTimeInterval: 1)
                finished.withLockedValue { $0 = true }
            }
        }
        while pool.inUse == 0 { try await Task.sleep(for: .milliseconds(5)) }
        func cpuSeconds() -> Double {
            var usage = rusage()
            getrusage(RUSAGE_SELF.rawValue, &usage)
            return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec)
                + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1_000_000
        }
        let before = cpuSeconds()
        await Task {
            withUnsafeCurrentTask { $0?.cancel() }
            await pool.shutdown()
        }.value
        let spent = cpuSeconds() - before
        XCTAssertTrue(finished.withLockedValue { $0 }, "shutdown returned before the work that held the slot")
        XCTAssertEqual(pool.inUse, 0)
        XCTAssertLessThan(spent, 0.3, "the wait spun: \(spent) s of CPU")
        try await work.value
    }

    /// Callers waiting for a connection when the pool shuts down are told at
    /// once (`poolClosed`), not left to their wait's end; the shutdown itself
    /// returns only once the work that held the connection is done.
    func testWaitersAreToldAtOnceWhenThePoolShutsDown() async throws {
        let pool = makePool(size: 1, wait: .seconds(30))
        let release = DispatchSemaphore(value: 0)
        let finished = NIOLockedValueBox(false)
        let holder = Task {
            try await pool.withConnection { _ in
                _ = release.wait(timeout: .now() + 30)
                finished.withLockedValue { $0 = true }
            }
        }
        while pool.inUse == 0 { try await Task.sleep(for: .milliseconds(5)) }
        let waiters = (0..<3).map { _ in
            Task { () -> PostgresError.Kind? in
                do {
                    _ = try await pool.withConnection { try $0.query("SELECT 1") }
                    return nil
                } catch let error as PostgresError {
                    return error.kind
                }
            }
        }
        try await Task.sleep(for: .milliseconds(200))
        let shutdown = Task { await pool.shutdown() }
        // Left to their wait, they would end with poolTimeout after 30 s.
        for waiter in waiters {
            let kind = try await waiter.value
            XCTAssertEqual(kind, .poolClosed)
        }
        XCTAssertFalse(finished.withLockedValue { $0 }, "the waiters were told while the connection was still held")
        release.signal()
        await shutdown.value
        XCTAssertTrue(finished.withLockedValue { $0 }, "the shutdown waited for the work that held the connection")
        try await holder.value
    }

    func testClosedPoolRefusesWork() async throws {
        let pool = makePool()
        await pool.shutdown()
        do {
            _ = try await pool.withConnection { try $0.query("SELECT 1") }
            XCTFail("expected poolClosed")
        } catch let error as PostgresError {
            XCTAssertEqual(error.kind, .poolClosed)
        }
    }
}
