import Foundation
import NIOConcurrencyHelpers
import Postgres
import TestSupport
import XCTest

/// `ConnectionPool.pipeline`: sent by the caller, answered through the pool's
/// watcher thread on Linux. The pool's slots, waits and discards apply to it
/// as to `withConnection`.
final class PoolPipelineTests: XCTestCase {
    func makePool(size: Int, wait: Duration = .seconds(10)) -> ConnectionPool {
        ConnectionPool(configuration: .init(conninfo: TestDatabase.ownerURL, size: size, waitTimeout: wait))
    }

    func testManyConcurrentPipelinesEachGetTheirOwnAnswers() async throws {
        let pool = makePool(size: 3)
        let answers = try await concurrently(400) { index in
            let results = try await pool.pipeline([
                Statement("SELECT $1::int", [index]),
                Statement("SELECT $1::int * 2, pg_backend_pid()", [index]),
            ])
            return (
                try results[0][0].decode(Int.self, at: 0), try results[1][0].decode(Int.self, at: 0),
                try results[1][0].decode(Int32.self, at: 1)
            )
        }
        XCTAssertEqual(answers.map(\.0), Array(0..<400))
        XCTAssertEqual(answers.map(\.1), (0..<400).map { $0 * 2 })
        XCTAssertLessThanOrEqual(Set(answers.map(\.2)).count, 3, "no more connections than the pool's size")
        XCTAssertEqual(pool.inUse, 0)
        await pool.shutdown()
    }

    func testAFailingStatementUndoesItsPipelineAndTheConnectionIsKept() async throws {
        let table = TestDatabase.uniqueTable("pipeline")
        let pool = makePool(size: 1)
        try await pool.withConnection { try $0.execute(script: "CREATE TABLE \(table) (v int CHECK (v < 10))") }
        let pid = try await pool.pipeline(["SELECT pg_backend_pid()", "SELECT 1"])[0][0].decode(Int32.self, at: 0)
        do {
            _ = try await pool.pipeline([
                "INSERT INTO \(unescaped: table) VALUES (1)",
                "INSERT INTO \(unescaped: table) VALUES (20)",
                "INSERT INTO \(unescaped: table) VALUES (2)",
            ])
            XCTFail("the check violation should have been thrown")
        } catch let error as PostgresError {
            XCTAssertEqual(error.sqlState, SQLState.checkViolation)
            XCTAssertFalse(error.isUnavailable)
        }
        // A statement that cannot even be prepared fails the same way, every time.
        for _ in 0..<2 {
            do {
                _ = try await pool.pipeline(["SELECT 1", "SELECT nothing FROM no_such_table_here"])
                XCTFail("the missing table should have been reported")
            } catch let error as PostgresError {
                XCTAssertEqual(error.sqlState?.code, "42P01")
            }
        }
        let results = try await pool.pipeline(["SELECT count(*) FROM \(unescaped: table)", "SELECT pg_backend_pid()"])
        XCTAssertEqual(try results[0][0].decode(Int.self, at: 0), 0, "nothing of the failed pipeline stayed")
        XCTAssertEqual(try results[1][0].decode(Int32.self, at: 0), pid, "the connection was kept")
        try await pool.withConnection { try $0.execute(script: "DROP TABLE \(table)") }
        await pool.shutdown()
    }

    func testLargeStatementsAndAnswersCrossTheSocketInPieces() async throws {
        let pool = makePool(size: 2)
        try await sendLargePipelines(on: pool)
        await pool.shutdown()
    }

    func testAKilledConnectionFailsOnePipelineThenIsReplaced() async throws {
        let pool = makePool(size: 1)
        let pid = try await pool.pipeline(["SELECT pg_backend_pid()", "SELECT 1"])[0][0].decode(Int32.self, at: 0)
        let killer = try Connection(conninfo: TestDatabase.ownerURL)
        XCTAssertTrue(try killer.query("SELECT pg_terminate_backend($1)", [pid])[0].decode(Bool.self, at: 0))
        XCTAssertTrue(TestDatabase.waitForBackendExit(pid))
        do {
            _ = try await pool.pipeline(["SELECT 1", "SELECT 2"])
            XCTFail("the killed connection's pipeline should fail")
        } catch let error as PostgresError {
            XCTAssertTrue(error.isUnavailable, "\(error)")
        }
        XCTAssertEqual(pool.inUse, 0)
        let results = try await pool.pipeline(["SELECT pg_backend_pid()", "SELECT 2"])
        XCTAssertNotEqual(try results[0][0].decode(Int32.self, at: 0), pid)
        XCTAssertEqual(try results[1][0].decode(Int.self, at: 0), 2)
        await pool.shutdown()
    }

    /// A connection the server closed while it sat idle past
    /// `ConnectionPool.idleCheckAfter` (PostgreSQL restarted, say) is replaced
    /// before it is handed out: no caller fails for it, pipeline or blocking.
    func testAnIdleConnectionTheServerClosedIsReplacedWithoutAFailure() async throws {
        let pool = makePool(size: 1)
        for round in 0..<2 {
            let pid = try await pool.pipeline(["SELECT pg_backend_pid()", "SELECT 1"])[0][0].decode(Int32.self, at: 0)
            let killer = try Connection(conninfo: TestDatabase.ownerURL)
            XCTAssertTrue(try killer.query("SELECT pg_terminate_backend($1)", [pid])[0].decode(Bool.self, at: 0))
            XCTAssertTrue(TestDatabase.waitForBackendExit(pid))
            try await Task.sleep(for: ConnectionPool.idleCheckAfter + .milliseconds(100))
            let after: Int32
            if round == 0 {
                after = try await pool.pipeline(["SELECT pg_backend_pid()", "SELECT 2"])[0][0].decode(Int32.self, at: 0)
            } else {
                after = try await pool.withConnection { try $0.query("SELECT pg_backend_pid()")[0].decode(Int32.self, at: 0) }
            }
            XCTAssertNotEqual(after, pid, "a new connection served the caller")
            XCTAssertEqual(pool.inUse, 0)
        }
        await pool.shutdown()
    }

    func testAKillDuringThePipelineFailsItWithoutHanging() async throws {
        let pool = makePool(size: 1)
        let outcome = try await killedWhileSleeping(on: pool)
        switch await outcome.result {
        case .success: XCTFail("the killed pipeline should fail")
        case .failure(let error): XCTAssertTrue((error as? PostgresError)?.isUnavailable ?? false, "\(error)")
        }
        let after = try await pool.pipeline(["SELECT 3", "SELECT 4"])
        XCTAssertEqual(try after[1][0].decode(Int.self, at: 0), 4)
        await pool.shutdown()
    }

    func testPipelinesWaitForASlotAtMostTheWaitTimeout() async throws {
        let pool = makePool(size: 1, wait: .milliseconds(300))
        let release = DispatchSemaphore(value: 0)
        async let holder: Void = pool.withConnection { _ in _ = release.wait(timeout: .now() + 30) }
        while pool.inUse == 0 { try await Task.sleep(for: .milliseconds(5)) }
        do {
            _ = try await pool.pipeline(["SELECT 1", "SELECT 2"])
            XCTFail("expected a pool timeout")
        } catch let error as PostgresError {
            XCTAssertEqual(error.kind, .poolTimeout)
        }
        release.signal()
        try await holder
        let after = try await pool.pipeline(["SELECT 1", "SELECT 2"])
        XCTAssertEqual(try after[0][0].decode(Int.self, at: 0), 1)
        await pool.shutdown()
    }

    func testShutdownWaitsForPipelinesInFlightThenRefusesThem() async throws {
        let pool = makePool(size: 2)
        async let slow = pool.pipeline(["SELECT pg_sleep(0.3)", "SELECT 7"])
        while pool.inUse == 0 { try await Task.sleep(for: .milliseconds(2)) }
        await pool.shutdown()
        let finished = try await slow
        XCTAssertEqual(try finished[1][0].decode(Int.self, at: 0), 7, "the pipeline in flight finished")
        do {
            _ = try await pool.pipeline(["SELECT 1", "SELECT 2"])
            XCTFail("expected poolClosed")
        } catch let error as PostgresError {
            XCTAssertEqual(error.kind, .poolClosed)
        }
    }

    func testAnUnreachableDatabaseFailsThePipelineAndFreesTheSlot() async throws {
        let port = try freeLoopbackPort()
        let pool = ConnectionPool(
            configuration: .init(
                conninfo: "postgresql://nobody@127.0.0.1:\(port)/none?connect_timeout=2", size: 1, waitTimeout: .seconds(5)))
        for _ in 0..<2 {
            do {
                _ = try await pool.pipeline(["SELECT 1", "SELECT 2"])
                XCTFail("expected a connection error")
            } catch let error as PostgresError {
                XCTAssertEqual(error.kind, .connection)
            }
        }
        XCTAssertEqual(pool.inUse, 0)
        await pool.shutdown()
    }

    func testManyConnectionsBreakingAtOnceFailTheirPipelinesAndNoneHangs() async throws {
        let pool = makePool(size: 4)
        let callers = (0..<12).map { _ in
            Task { try await pool.pipeline(["SELECT 1", "SELECT pg_sleep(10) /* mass kill */"]) }
        }
        // Every backend that starts the sleep is killed, as the callers reach
        // the database slot after slot on new connections (whose sockets may
        // take the numbers of those just closed).
        let killer = try Connection(conninfo: TestDatabase.ownerURL)
        let done = NIOLockedValueBox(0)
        for caller in callers {
            Task {
                _ = await caller.result
                done.withLockedValue { $0 += 1 }
            }
        }
        let deadline = ContinuousClock.now + .seconds(60)
        while done.withLockedValue({ $0 }) < callers.count, ContinuousClock.now < deadline {
            try killer.query(
                """
                SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                WHERE query LIKE '%/* mass kill */%' AND pid <> pg_backend_pid() AND wait_event = 'PgSleep'
                """)
            try await Task.sleep(for: .milliseconds(20))
        }
        for caller in callers {
            switch await caller.result {
            case .success: XCTFail("a killed pipeline succeeded")
            case .failure(let error): XCTAssertTrue((error as? PostgresError)?.isUnavailable ?? false, "\(error)")
            }
        }
        XCTAssertEqual(pool.inUse, 0, "every slot came back")
        let after = try await concurrently(8) { index in
            try await pool.pipeline([Statement("SELECT $1::int", [index]), "SELECT 1"])[0][0].decode(Int.self, at: 0)
        }
        XCTAssertEqual(after, Array(0..<8))
        await pool.shutdown()
    }

    func testPipelinesOfNoneOrOneStatement() async throws {
        let pool = makePool(size: 1)
        let none = try await pool.pipeline([])
        XCTAssertTrue(none.isEmpty)
        let one = try await pool.pipeline(["SELECT 5"])
        XCTAssertEqual(try one[0][0].decode(Int.self, at: 0), 5)
        await pool.shutdown()
    }

    func testAPipelineThatLeavesATransactionOpenIsNotHandedOn() async throws {
        let pool = makePool(size: 1)
        let pid = try await pool.pipeline(["BEGIN", "SELECT pg_backend_pid()"])[1][0].decode(Int32.self, at: 0)
        let next = try await pool.pipeline(["SELECT pg_backend_pid()", "SELECT 1"])
        XCTAssertNotEqual(try next[0][0].decode(Int32.self, at: 0), pid, "the connection in a transaction was closed")
        XCTAssertTrue(TestDatabase.waitForBackendExit(pid))
        await pool.shutdown()
    }

    /// A pipeline whose backend is ended while part of it is still unsent (the
    /// statement ahead keeps the backend from reading; the rest, 16 MiB, fills
    /// the socket's buffers and waits for them to drain): the watcher's next
    /// send meets the closed socket (libpq keeps that failure for the read
    /// that follows, which finds the server's last message), the pipeline
    /// fails as unavailable without hanging, its slot is freed, and the next
    /// pipeline runs on a new connection.
    func testAKillWhileAPipelineIsStillBeingSentFailsItAndFreesTheSlot() async throws {
        let pool = makePool(size: 1)
        let killer = try Connection(conninfo: TestDatabase.ownerURL)
        let large = String(repeating: "x", count: 16 << 20)
        // Its own text: tests running beside it sleep too.
        let sleep = "SELECT pg_sleep(30) /* a pipeline still being sent */"
        let sending = Task { try await pool.pipeline([Statement(sleep, []), Statement("SELECT length($1)", [large])]) }
        var pid: Int32?
        for _ in 0..<250 where pid == nil {
            try await Task.sleep(for: .milliseconds(20))
            pid = try killer.query("SELECT pid FROM pg_stat_activity WHERE query = $1 AND wait_event = 'PgSleep'", [sleep])
                .rows.first?.decode(Int32.self, at: 0)
        }
        let sleeping = try XCTUnwrap(pid, "the pipeline's first statement never ran")
        // Time for the rest to fill the socket's buffers and stop there.
        try await Task.sleep(for: .milliseconds(300))
        XCTAssertTrue(try killer.query("SELECT pg_terminate_backend($1)", [sleeping])[0].decode(Bool.self, at: 0))
        switch await sending.result {
        case .success: XCTFail("the pipeline should fail with its connection")
        case .failure(let error): XCTAssertTrue((error as? PostgresError)?.isUnavailable ?? false, "\(error)")
        }
        XCTAssertEqual(pool.inUse, 0)
        let after = try await pool.pipeline(["SELECT 3", Statement("SELECT length($1)", [large])])
        XCTAssertEqual(try after[1][0].decode(Int.self, at: 0), 16 << 20, "a large pipeline is sent whole on the new connection")
        await pool.shutdown()
    }

    func testAPipelineThatCannotBeSentFailsAndFreesTheSlot() async throws {
        let pool = makePool(size: 1)
        // libpq refuses more than 65535 parameters before anything of this statement is sent.
        let tooMany = Statement("SELECT 1", Array(repeating: 1 as any PostgresBindable, count: 70_000))
        for _ in 0..<2 {
            do {
                _ = try await pool.pipeline(["SELECT 1", tooMany])
                XCTFail("libpq should have refused the statement")
            } catch let error as PostgresError {
                XCTAssertTrue(error.message.contains("65535"), error.message)
            }
        }
        XCTAssertEqual(pool.inUse, 0)
        let after = try await pool.pipeline(["SELECT 1", "SELECT 2"])
        XCTAssertEqual(try after[1][0].decode(Int.self, at: 0), 2)
        await pool.shutdown()
    }

    func testCopyInAPipelineIsRefusedAndItsConnectionReplaced() async throws {
        let pool = makePool(size: 1)
        let pid = try await pool.pipeline(["SELECT pg_backend_pid()", "SELECT 1"])[0][0].decode(Int32.self, at: 0)
        for copy in ["COPY (SELECT 1) TO STDOUT", "COPY pg_temp.nothing FROM STDIN"] {
            let outcome = try await finishing(within: 60) { () -> PostgresError? in
                do {
                    _ = try await pool.pipeline(["SELECT 1", "CREATE TEMP TABLE IF NOT EXISTS nothing (v int)", "\(unescaped: copy)"])
                    return nil
                } catch let error as PostgresError {
                    return error
                }
            }
            XCTAssertEqual(outcome?.kind, .refused, copy)
            XCTAssertEqual(outcome?.message, "COPY cannot run in a pipeline")
            XCTAssertEqual(outcome?.isUnavailable, false)
        }
        XCTAssertEqual(pool.inUse, 0)
        let after = try await pool.pipeline(["SELECT pg_backend_pid()", "SELECT 2"])
        XCTAssertNotEqual(try after[0][0].decode(Int32.self, at: 0), pid, "the connection left in COPY was not handed on")
        await pool.shutdown()
    }

    func testMoreParametersThanTheProtocolCarriesAreRefusedBeforeSending() async throws {
        let pool = makePool(size: 1)
        let pid = try await pool.pipeline(["SELECT pg_backend_pid()", "SELECT 1"])[0][0].decode(Int32.self, at: 0)
        let many = Statement("SELECT $1::int", Array(repeating: 1, count: 65536))
        do {
            _ = try await pool.pipeline(["SELECT 1", many])
            XCTFail("65536 parameters were sent")
        } catch let error as PostgresError {
            XCTAssertEqual(error.kind, .refused)
            XCTAssertFalse(error.isUnavailable, "a caller's mistake, not an outage")
            XCTAssertEqual(error.message, "a statement takes at most 65535 parameters, not 65536")
        }
        try await pool.withConnection { connection in
            XCTAssertThrowsError(try connection.query("SELECT $1::int", Array(repeating: 1, count: 70000))) { error in
                XCTAssertEqual((error as? PostgresError)?.kind, .refused)
            }
        }
        let after = try await pool.pipeline(["SELECT pg_backend_pid()", "SELECT 2"])
        XCTAssertEqual(try after[0][0].decode(Int32.self, at: 0), pid, "the connection was kept")
        await pool.shutdown()
    }

    /// A binary value longer than a field can hold (1 GB) is refused before
    /// anything is sent, alone or optional, and the connection is kept. (libpq
    /// takes its length as an int: one past 2 GiB would have trapped.)
    func testABinaryParameterLongerThanAFieldIsRefused() async throws {
        let pool = makePool(size: 1)
        // Zeroed pages the kernel maps lazily: nothing is written.
        let huge = Data(count: (1 << 31) + 1)
        let optional: Data? = huge
        try await pool.withConnection { connection in
            let pid = try connection.query("SELECT pg_backend_pid()")[0].decode(Int32.self, at: 0)
            for parameter: any PostgresBindable in [huge, optional] {
                XCTAssertThrowsError(try connection.query("SELECT octet_length($1::bytea)", [parameter])) { error in
                    XCTAssertEqual((error as? PostgresError)?.kind, .refused)
                    XCTAssertEqual(
                        (error as? PostgresError)?.message, "parameter $1 has 2147483649 bytes; a field holds at most 1073741824")
                }
            }
            XCTAssertEqual(try connection.query("SELECT pg_backend_pid()")[0].decode(Int32.self, at: 0), pid, "the connection was kept")
        }
    }

    /// libpq takes text parameters as C strings: one with NUL would be cut
    /// there and stored shorter than given. Refused before anything is sent,
    /// in a pipeline and alone, and the connection is kept.
    func testATextParameterWithNULIsRefusedBeforeSending() async throws {
        let pool = makePool(size: 1)
        let pid = try await pool.pipeline(["SELECT pg_backend_pid()", "SELECT 1"])[0][0].decode(Int32.self, at: 0)
        for text: String? in ["a\u{0}b", "\u{0}"] {
            do {
                _ = try await pool.pipeline(["SELECT 1", Statement("SELECT $1::int, $2::text", [1, text])])
                XCTFail("a text with NUL was sent")
            } catch let error as PostgresError {
                XCTAssertEqual(error.kind, .refused)
                XCTAssertFalse(error.isUnavailable)
                XCTAssertEqual(error.message, "parameter $2 contains NUL, which PostgreSQL text cannot hold")
            }
        }
        try await pool.withConnection { connection in
            for prepared in [true, false] {
                XCTAssertThrowsError(try connection.query("SELECT $1::text", ["x\u{0}"], prepared: prepared)) { error in
                    XCTAssertEqual((error as? PostgresError)?.kind, .refused)
                }
                // An array's literal carries its elements' text.
                XCTAssertThrowsError(try connection.query("SELECT $1::text[]", [["a", "b\u{0}c"]], prepared: prepared)) { error in
                    XCTAssertEqual((error as? PostgresError)?.kind, .refused)
                    XCTAssertEqual((error as? PostgresError)?.message, "parameter $1 contains NUL, which PostgreSQL text cannot hold")
                }
            }
        }
        let after = try await pool.pipeline(["SELECT pg_backend_pid()", Statement("SELECT $1::text", ["a\\u0000b"])])
        XCTAssertEqual(try after[0][0].decode(Int32.self, at: 0), pid, "the connection was kept")
        XCTAssertEqual(try after[1][0].decode(String.self, at: 0), "a\\u0000b", "an escaped NUL is only text")
        await pool.shutdown()
    }

    func testShuttingDownTwiceIsHarmless() async throws {
        let pool = makePool(size: 1)
        _ = try await pool.pipeline(["SELECT 1", "SELECT 2"])
        await pool.shutdown()
        await pool.shutdown()
        // Descriptors opened now are not written to by the second shutdown.
        let other = makePool(size: 2)
        let results = try await concurrently(4) { index in
            try await other.pipeline([Statement("SELECT $1::int", [index]), "SELECT 1"])[0][0].decode(Int.self, at: 0)
        }
        XCTAssertEqual(results, Array(0..<4))
        await other.shutdown()
    }
}

/// A pipeline on `pool` (of one connection) whose backend is killed while it
/// sleeps in its second statement; the caller awaits its outcome.
func killedWhileSleeping(on pool: ConnectionPool) async throws -> Task<[QueryResult], any Error> {
    let pid = try await pool.pipeline(["SELECT pg_backend_pid()", "SELECT 1"])[0][0].decode(Int32.self, at: 0)
    let outcome = Task { try await pool.pipeline(["SELECT 1", "SELECT pg_sleep(30)"]) }
    let killed = try await killOnceSleeping(pid)
    XCTAssertTrue(killed, "the pipeline's backend was never seen sleeping")
    return outcome
}

/// Kills backend `pid` as soon as it is seen in `pg_sleep`; false when it
/// was not seen there within about five seconds.
func killOnceSleeping(_ pid: Int32) async throws -> Bool {
    let killer = try Connection(conninfo: TestDatabase.ownerURL)
    for _ in 0..<500 {
        let state = try killer.query("SELECT wait_event FROM pg_stat_activity WHERE pid = $1", [pid])
        if try state.count == 1 && state[0].decode(String?.self, at: 0) == "PgSleep" {
            return try killer.query("SELECT pg_terminate_backend($1)", [pid])[0].decode(Bool.self, at: 0)
        }
        try await Task.sleep(for: .milliseconds(10))
    }
    return false
}

/// Three pipelines at once on `pool`, each with 24 MiB each way: more than a
/// loopback socket's buffers, so sent and read in several pieces.
func sendLargePipelines(on pool: ConnectionPool) async throws {
    let big = String(repeating: "x", count: 24 << 20)
    let results = try await concurrently(3) { _ in
        try await pool.pipeline([
            Statement("SELECT length($1::text)", [big]),
            Statement("SELECT repeat('y', $1)", [24 << 20]),
        ])
    }
    for result in results {
        XCTAssertEqual(try result[0][0].decode(Int.self, at: 0), 24 << 20)
        let answer = try result[1][0].decode(String.self, at: 0)
        XCTAssertEqual(answer.utf8.count, 24 << 20)
        XCTAssertTrue(answer.utf8.allSatisfy { $0 == UInt8(ascii: "y") })
    }
}

struct TimedOut: Error {}

extension XCTestCase {
    /// `body`'s answer, or TimedOut when it has none after `seconds` (it is
    /// then left running): a test of something that could hang fails instead.
    func finishing<T: Sendable>(within seconds: TimeInterval, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        let outcome = NIOLockedValueBox<Result<T, any Error>?>(nil)
        let done = expectation(description: "answered")
        Task {
            do {
                let value = try await body()
                outcome.withLockedValue { $0 = .success(value) }
            } catch {
                outcome.withLockedValue { $0 = .failure(error) }
            }
            done.fulfill()
        }
        await fulfillment(of: [done], timeout: seconds)
        guard let result = outcome.withLockedValue({ $0 }) else { throw TimedOut() }
        return try result.get()
    }
}
