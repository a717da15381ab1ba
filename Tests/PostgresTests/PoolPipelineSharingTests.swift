import Foundation
import NIOConcurrencyHelpers
import Postgres
import TestSupport
import XCTest

/// Pipelines sharing a connection (`ConnectionPool.Configuration.pipelineDepth`
/// and `pipelineConnections`): one sent behind others on a connection that is
/// running them instead of waiting for a slot. Each stays its own transaction
/// with its own answers and errors.
final class PoolPipelineSharingTests: XCTestCase {
    /// A pool of `size` connections whose first pipeline has connected the
    /// one connection they share (`pipelineConnections` is 1 below a size of
    /// 8), and that connection's backend. Pipelines go behind one in flight
    /// for up to `stall` (the tests' first pipelines sleep).
    func makePool(size: Int = 1, depth: Int = 16, wait: Duration = .seconds(10), stall: Duration = .seconds(60)) async throws -> (
        ConnectionPool, Int32
    ) {
        let pool = ConnectionPool(
            configuration: .init(
                conninfo: TestDatabase.ownerURL, size: size, waitTimeout: wait, pipelineDepth: depth, pipelineStall: stall))
        let pid = try await pool.pipeline(["SELECT pg_backend_pid()"])[0][0].decode(Int32.self, at: 0)
        return (pool, pid)
    }

    /// Starts `statements` as a pipeline and waits until it is in flight on
    /// a connection open to sharing (the pipelines started after it find it
    /// there).
    func started(_ statements: [Statement], on pool: ConnectionPool) async throws -> Task<[QueryResult], any Error> {
        let task = Task { try await pool.pipeline(statements) }
        try await inFlight(1, on: pool)
        return task
    }

    /// Waits until `count` pipelines are in flight on shared connections.
    func inFlight(_ count: Int, on pool: ConnectionPool) async throws {
        try await waitUntil { pool.sharedPipelinesInFlight >= count }
    }

    /// Waits until `condition` holds; TimedOut after 20 s.
    func waitUntil(_ condition: () -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(20)
        while !condition() {
            guard ContinuousClock.now < deadline else { throw TimedOut() }
            try await Task.sleep(for: .milliseconds(2))
        }
    }

    func testAtMostPipelineConnectionsAreOpenToSharing() async throws {
        // With 2 open to sharing, the third pipeline goes behind one of them
        // though 6 slots are free (each opens one while it may: no packing).
        let pool = ConnectionPool(
            configuration: .init(
                conninfo: TestDatabase.ownerURL, size: 8, pipelineConnections: 2, pipelineStall: .seconds(60), pipelinePack: 1))
        var sleepers: [Task<[QueryResult], any Error>] = []
        for count in 1...2 {
            sleepers.append(Task { try await pool.pipeline(["SELECT pg_sleep(0.5)", "SELECT pg_backend_pid()"]) })
            try await inFlight(count, on: pool)
        }
        let behind = try await concurrently(4) { _ in
            try await pool.pipeline(["SELECT pg_backend_pid()"])[0][0].decode(Int32.self, at: 0)
        }
        var open = Set<Int32>()
        for sleeper in sleepers { open.insert(try await sleeper.value[1][0].decode(Int32.self, at: 0)) }
        XCTAssertEqual(open.count, 2)
        XCTAssertTrue(Set(behind).isSubset(of: open), "every later pipeline went behind a sleeper: \(behind), \(open)")
        await pool.shutdown()
    }

    func testPipelinesGoBehindABusyConnectionBeforeOpeningAnother() async throws {
        // Free slots and room to open 3 more connections to sharing: the next
        // 3 pipelines still go behind the one in flight, up to `pipelinePack`
        // (4) in all; the one after them opens another connection.
        let pool = ConnectionPool(
            configuration: .init(conninfo: TestDatabase.ownerURL, size: 8, pipelineConnections: 4, pipelineStall: .seconds(60)))
        XCTAssertEqual(pool.configuration.pipelinePack, 4)
        let sleeper = Task { try await pool.pipeline(["SELECT pg_sleep(0.5)", "SELECT pg_backend_pid()"]) }
        try await inFlight(1, on: pool)
        let behind = (0..<3).map { _ in Task { try await pool.pipeline(["SELECT pg_backend_pid()"])[0][0].decode(Int32.self, at: 0) } }
        try await inFlight(4, on: pool)
        let fifth = try await pool.pipeline(["SELECT pg_backend_pid()"])[0][0].decode(Int32.self, at: 0)
        let busy = try await sleeper.value[1][0].decode(Int32.self, at: 0)
        var behindPIDs: [Int32] = []
        for task in behind { behindPIDs.append(try await task.value) }
        XCTAssertEqual(Set(behindPIDs), [busy], "behind the busy connection, not on connections of their own")
        XCTAssertNotEqual(fifth, busy, "with 4 in flight there, the fifth opened another")
        XCTAssertEqual(pool.inUse, 0)
        await pool.shutdown()
    }

    func testAPipelineGoesBehindTheBusiestConnectionWithRoom() async throws {
        let pool = ConnectionPool(
            configuration: .init(conninfo: TestDatabase.ownerURL, size: 8, pipelineConnections: 4, pipelineStall: .seconds(60)))
        // Four on one connection, each sleeping in turn, so that it has room
        // again once the first ends; a fifth opens another connection.
        var first: [Task<Int32, any Error>] = []
        for count in 1...4 {
            first.append(
                Task { try await pool.pipeline(["SELECT pg_sleep(0.3)", "SELECT pg_backend_pid()"])[1][0].decode(Int32.self, at: 0) })
            try await inFlight(count, on: pool)
        }
        let other = Task { try await pool.pipeline(["SELECT pg_sleep(2)", "SELECT pg_backend_pid()"])[1][0].decode(Int32.self, at: 0) }
        try await inFlight(5, on: pool)
        // Three left on the first, one on the other: the busier one takes the next.
        try await waitUntil { pool.sharedPipelinesInFlight == 4 }
        let next = try await pool.pipeline(["SELECT pg_backend_pid()"])[0][0].decode(Int32.self, at: 0)
        let busier = try await first[0].value
        let otherPID = try await other.value
        XCTAssertNotEqual(busier, otherPID)
        XCTAssertEqual(next, busier, "behind the connection with more in flight")
        await pool.shutdown()
    }

    func testPipelinesGoBehindOneAnotherInsteadOfWaitingForASlot() async throws {
        // One connection, and a wait shorter than the pipelines take together:
        // each waiting for the slot in turn, the later ones would time out.
        let (pool, pid) = try await makePool(wait: .milliseconds(300))
        let first = try await started(["SELECT pg_sleep(0.5)", "SELECT pg_backend_pid()"], on: pool)
        let others = try await concurrently(5) { index in
            let results = try await pool.pipeline([
                "SELECT pg_sleep(0.05)", Statement("SELECT $1::int, pg_backend_pid(), txid_current()", [index]),
            ])
            return (
                try results[1][0].decode(Int.self, at: 0), try results[1][0].decode(Int32.self, at: 1),
                try results[1][0].decode(Int64.self, at: 2)
            )
        }
        let firstPID = try await first.value[1][0].decode(Int32.self, at: 0)
        XCTAssertEqual(firstPID, pid)
        XCTAssertEqual(others.map(\.0), Array(0..<5), "each pipeline got its own answers")
        XCTAssertEqual(Set(others.map(\.1)), [pid], "all of them ran on the one connection")
        XCTAssertEqual(Set(others.map(\.2)).count, 5, "each in a transaction of its own")
        XCTAssertEqual(pool.inUse, 0)
        await pool.shutdown()
    }

    func testNothingGoesBehindAPipelineInFlightForLongerThanTheStall() async throws {
        let (pool, pid) = try await makePool(size: 2, stall: .milliseconds(300))
        let sleeper = try await started(["SELECT pg_sleep(1.5)", "SELECT pg_backend_pid()"], on: pool)
        let fresh = Task { try await pool.pipeline(["SELECT pg_backend_pid()"])[0][0].decode(Int32.self, at: 0) }
        try await inFlight(2, on: pool)
        try await Task.sleep(for: .milliseconds(400))
        let start = ContinuousClock.now
        let other = try await pool.pipeline(["SELECT pg_backend_pid()"])[0][0].decode(Int32.self, at: 0)
        XCTAssertLessThan(ContinuousClock.now - start, .milliseconds(900), "it did not wait for the sleeper")
        XCTAssertNotEqual(other, pid, "on the other connection, not behind the stalled one")
        let freshPID = try await fresh.value
        XCTAssertEqual(freshPID, pid, "behind a pipeline in flight for less than the stall")
        let sleeperAnswer = try await sleeper.value
        XCTAssertEqual(try sleeperAnswer[1][0].decode(Int32.self, at: 0), pid)
        await pool.shutdown()
    }

    func testAConnectionCarriesAtMostItsDepth() async throws {
        let (pool, _) = try await makePool(depth: 2, wait: .milliseconds(100))
        let first = try await started(["SELECT pg_sleep(0.5)", "SELECT 1"], on: pool)
        let second = Task { try await pool.pipeline(["SELECT 2"]) }
        try await inFlight(2, on: pool)
        do {
            _ = try await pool.pipeline(["SELECT 3"])
            XCTFail("a third pipeline should have waited for the slot, and timed out")
        } catch let error as PostgresError {
            XCTAssertEqual(error.kind, .poolTimeout)
        }
        let secondAnswer = try await second.value
        let firstAnswer = try await first.value
        XCTAssertEqual(try secondAnswer[0][0].decode(Int.self, at: 0), 2)
        XCTAssertEqual(try firstAnswer[1][0].decode(Int.self, at: 0), 1)
        await pool.shutdown()
    }

    func testAStatementErrorFailsOnlyItsOwnPipeline() async throws {
        let table = TestDatabase.uniqueTable("sharing")
        let (pool, pid) = try await makePool()
        try await pool.withConnection { try $0.execute(script: "CREATE TABLE \(table) (v int)") }
        let failing = try await started(
            [
                "SELECT pg_sleep(0.2)", "INSERT INTO \(unescaped: table) VALUES (1)", "SELECT 1 / 0",
                "INSERT INTO \(unescaped: table) VALUES (2)",
            ],
            on: pool)
        let behind = try await concurrently(3) { index in
            try await pool.pipeline([
                Statement("INSERT INTO \(table) VALUES ($1)", [10 + index]), "SELECT pg_backend_pid()",
            ])[1][0].decode(Int32.self, at: 0)
        }
        do {
            _ = try await failing.value
            XCTFail("the division by zero should have been thrown")
        } catch let error as PostgresError {
            XCTAssertEqual(error.sqlState?.code, "22012")
        }
        XCTAssertEqual(Set(behind), [pid], "the pipelines behind it ran on its connection")
        let rows = try await pool.pipeline(["SELECT array_agg(v ORDER BY v)::text FROM \(unescaped: table)", "SELECT pg_backend_pid()"])
        XCTAssertEqual(
            try rows[0][0].decode(String.self, at: 0), "{10,11,12}", "nothing of the failed pipeline stayed; all of the others did")
        XCTAssertEqual(try rows[1][0].decode(Int32.self, at: 0), pid, "the connection was kept")
        try await pool.withConnection { try $0.execute(script: "DROP TABLE \(table)") }
        await pool.shutdown()
    }

    func testASettingLocalToOnePipelineDoesNotReachTheNext() async throws {
        let (pool, pid) = try await makePool(size: 2)
        let setting = try await started(
            [
                "SELECT set_config('comprobify.sharing_test', 'first', true)", "SELECT pg_sleep(0.2)",
                "SELECT current_setting('comprobify.sharing_test')",
            ],
            on: pool)
        let next = try await pool.pipeline(["SELECT current_setting('comprobify.sharing_test', true)", "SELECT pg_backend_pid()"])
        let settingAnswer = try await setting.value
        XCTAssertEqual(try settingAnswer[2][0].decode(String.self, at: 0), "first")
        XCTAssertNotEqual(try next[0][0].decode(String?.self, at: 0), "first")
        XCTAssertEqual(try next[1][0].decode(Int32.self, at: 0), pid, "it ran on the same connection, after the first")
        await pool.shutdown()
    }

    func testAPipelineThatMayLeaveATransactionOpenKeepsItsConnectionToItself() async throws {
        let (pool, pid) = try await makePool()
        // Left open, the transaction would take in any pipeline sent behind it.
        let open = Task {
            try await pool.pipeline(["BEGIN", "SELECT set_config('comprobify.sharing_test', 'open', true)", "SELECT pg_sleep(0.2)"])
        }
        try await waitUntil { pool.inUse > 0 }
        let next = try await pool.pipeline(["SELECT current_setting('comprobify.sharing_test', true)", "SELECT pg_backend_pid()"])
        _ = try await open.value
        XCTAssertNotEqual(try next[0][0].decode(String?.self, at: 0), "open")
        XCTAssertNotEqual(
            try next[1][0].decode(Int32.self, at: 0), pid, "it waited for the slot, and the open transaction's connection was closed")
        await pool.shutdown()
    }

    func testAPipelineThatMayControlATransactionJoinsNoOther() async throws {
        let (pool, pid) = try await makePool(size: 2)
        let sleeping = try await started(["SELECT pg_sleep(1)", "SELECT pg_backend_pid()"], on: pool)
        let wrapped = NIOLockedValueBox(0)
        let beginning = try await pool.pipeline(["BEGIN", "SELECT pg_backend_pid()", "COMMIT"]) { work in
            wrapped.withLockedValue { $0 += 1 }
            return try await work()
        }
        XCTAssertNotEqual(try beginning[1][0].decode(Int32.self, at: 0), pid, "on the other connection, not behind the sleeper")
        XCTAssertEqual(wrapped.withLockedValue { $0 }, 1, "as a pipeline alone, inside the caller's wrapper")
        let sleeperAnswer = try await sleeping.value
        XCTAssertEqual(try sleeperAnswer[1][0].decode(Int32.self, at: 0), pid)
        // A pipeline that shares runs outside the wrapper.
        _ = try await pool.pipeline(["SELECT 1"]) { work in
            wrapped.withLockedValue { $0 += 1 }
            return try await work()
        }
        XCTAssertEqual(wrapped.withLockedValue { $0 }, 1)
        await pool.shutdown()
    }

    /// A long read marked `runsAlone` waits for a connection of its own: it
    /// goes behind no pipeline in flight, and none goes behind it (PostgreSQL
    /// would run it first, and the short read would wait for the long one).
    func testAPipelineThatRunsAloneSharesNoConnection() async throws {
        let (pool, pid) = try await makePool(size: 2)
        let sleeping = try await started(["SELECT pg_sleep(0.5)", "SELECT pg_backend_pid()"], on: pool)
        let long: Statement = {
            var statement: Statement = "SELECT pg_backend_pid(), pg_sleep(0.5)"
            statement.runsAlone = true
            return statement
        }()
        let wrapped = NIOLockedValueBox(0)
        let alone = Task {
            try await pool.pipeline([long]) { work in
                wrapped.withLockedValue { $0 += 1 }
                return try await work()
            }
        }
        try await waitUntil { pool.inUse == 2 }
        XCTAssertEqual(pool.sharedPipelinesInFlight, 1, "not behind the sleeper")
        let aloneAnswer = try await alone.value
        let alonePID = try aloneAnswer[0][0].decode(Int32.self, at: 0)
        XCTAssertNotEqual(alonePID, pid, "on the other connection")
        XCTAssertEqual(wrapped.withLockedValue { $0 }, 1, "as a pipeline alone, inside the caller's wrapper")
        _ = try await sleeping.value
        // Behind it: a short read started while it runs is not queued on its connection.
        let again = Task { try await pool.pipeline([long]) }
        try await waitUntil { pool.inUse == 1 }
        let short = try await pool.pipeline(["SELECT pg_backend_pid()"])
        let shortPID = try short[0][0].decode(Int32.self, at: 0)
        let againPID = try await again.value[0][0].decode(Int32.self, at: 0)
        XCTAssertNotEqual(shortPID, againPID, "not sent behind the long read")
        await pool.shutdown()
    }

    func testStatementsThatMayControlATransactionAreKnownByTheirFirstWord() {
        for sql in [
            "BEGIN", "  begin isolation level serializable", "START TRANSACTION", "commit", "END", "Rollback", "ABORT",
            "SAVEPOINT a", "RELEASE a", "PREPARE TRANSACTION 'x'", "CALL p()", "DO $$ BEGIN END $$",
            "-- a comment\nCOMMIT", "/* one /* nested */ comment */ BEGIN", "\t\n ROLLBACK",
        ] {
            XCTAssertTrue(Statement(stringLiteral: sql).mayControlTransaction, sql)
        }
        for sql in [
            "SELECT 1", "WITH begun AS (SELECT 1) SELECT * FROM begun", "INSERT INTO t VALUES (1)", "(SELECT 1)",
            "-- BEGIN\nSELECT 1", "/* COMMIT */ SELECT 1", "ENDS", "DONE", "BEGINNING", "", "   ", "SET LOCAL x = 1",
        ] {
            XCTAssertFalse(Statement(stringLiteral: sql).mayControlTransaction, sql)
        }
    }

    func testAKillFailsEveryPipelineOnTheConnectionAndNoneHangs() async throws {
        let (pool, pid) = try await makePool()
        let sleeper = try await started(["SELECT pg_sleep(30)", "SELECT 1"], on: pool)
        let behind = (0..<3).map { index in Task { try await pool.pipeline([Statement("SELECT $1::int", [index])]) } }
        try await inFlight(4, on: pool)
        let killed = try await killOnceSleeping(pid)
        XCTAssertTrue(killed, "the sleeping backend was never seen")
        for task in [sleeper] + behind {
            let outcome = try await finishing(within: 30) { await task.result }
            switch outcome {
            case .success: XCTFail("a pipeline on the killed connection succeeded")
            case .failure(let error): XCTAssertTrue((error as? PostgresError)?.isUnavailable ?? false, "\(error)")
            }
        }
        XCTAssertEqual(pool.inUse, 0, "the slot came back")
        let after = try await pool.pipeline(["SELECT pg_backend_pid()"])[0][0].decode(Int32.self, at: 0)
        XCTAssertNotEqual(after, pid, "the slot connected afresh")
        await pool.shutdown()
    }

    func testAParameterRefusedBeforeSendingFailsOnlyItsOwnPipeline() async throws {
        let (pool, pid) = try await makePool()
        let sleeper = try await started(["SELECT pg_sleep(0.2)", "SELECT pg_backend_pid()"], on: pool)
        let tooMany = Statement("SELECT 1", Array(repeating: 1 as any PostgresBindable, count: 70_000))
        do {
            _ = try await pool.pipeline(["SELECT 1", tooMany])
            XCTFail("libpq should have refused the statement")
        } catch let error as PostgresError {
            XCTAssertTrue(error.message.contains("65535"), error.message)
        }
        let after = try await pool.pipeline(["SELECT pg_backend_pid()"])
        let sleeperAnswer = try await sleeper.value
        XCTAssertEqual(try sleeperAnswer[1][0].decode(Int32.self, at: 0), pid)
        XCTAssertEqual(try after[0][0].decode(Int32.self, at: 0), pid, "the connection went on serving")
        await pool.shutdown()
    }

    func testAStatementNewToTheConnectionIsPreparedOnceWhenPipelinesSendItTogether() async throws {
        let (pool, _) = try await makePool()
        let sql = "SELECT $1::int + 1 /* \(UUID().uuidString) */"
        let sleeper = try await started(["SELECT pg_sleep(0.2)"], on: pool)
        let sums = try await concurrently(4) { index in
            try await pool.pipeline([Statement(sql, [index])])[0][0].decode(Int.self, at: 0)
        }
        _ = try await sleeper.value
        XCTAssertEqual(sums, [1, 2, 3, 4])
        let again = try await pool.pipeline([
            Statement(sql, [10]), Statement("SELECT count(*) FROM pg_prepared_statements WHERE statement = $1", [sql]),
        ])
        XCTAssertEqual(try again[0][0].decode(Int.self, at: 0), 11)
        XCTAssertEqual(try again[1][0].decode(Int.self, at: 0), 1, "one prepared statement, not one per pipeline that sent it")
        await pool.shutdown()
    }

    func testAPipelineOpensASharedConnectionOnlyWithAPlaceInItsCallersShare() async throws {
        // Two connections open to sharing, and a caller whose share is one
        // connection. Its slow pipelines come too late to go behind the one
        // before (the stall): each opens a connection to sharing or has one
        // to itself only with a place in the share, held while it is in
        // flight, so they run one at a time.
        let pool = ConnectionPool(
            configuration: .init(
                conninfo: TestDatabase.ownerURL, size: 4, pipelineConnections: 2, pipelineStall: .milliseconds(2)))
        let share = Share(places: 1)
        let start = ContinuousClock.now
        let pids = try await concurrently(3) { index in
            try await Task.sleep(for: .milliseconds(50 * index))
            let results = try await pool.pipeline(
                ["SELECT pg_sleep(0.3)", "SELECT pg_backend_pid()"], alone: { try await share.run($0) }, opening: { share.take() })
            return try results[1][0].decode(Int32.self, at: 0)
        }
        // Side by side (the first two on connections they opened to sharing,
        // outside the share) they take about 0.4 s.
        XCTAssertGreaterThanOrEqual(ContinuousClock.now - start, .milliseconds(850), "one at a time: \(pids)")
        XCTAssertEqual(share.held, 0, "every place given back")
        XCTAssertEqual(pool.inUse, 0)
        await pool.shutdown()
        // With its one place taken by a pipeline that opened a connection to
        // sharing, a pipeline goes behind it (no stall here) with no place.
        let (shared, _) = try await makePool(size: 4)
        let opener = Task {
            try await shared.pipeline(
                ["SELECT pg_sleep(0.3)", "SELECT pg_backend_pid()"], alone: { try await share.run($0) }, opening: { share.take() })
        }
        try await inFlight(1, on: shared)
        XCTAssertEqual(share.held, 1, "the opener holds its place")
        let alone = NIOLockedValueBox(0)
        let behind = try await shared.pipeline(
            ["SELECT pg_backend_pid()"],
            alone: { work in
                alone.withLockedValue { $0 += 1 }
                return try await share.run(work)
            }, opening: { share.take() })
        let openerPID = try await opener.value[1][0].decode(Int32.self, at: 0)
        XCTAssertEqual(try behind[0][0].decode(Int32.self, at: 0), openerPID, "behind the opener, on its connection")
        XCTAssertEqual(alone.withLockedValue { $0 }, 0, "with no place of the share")
        XCTAssertEqual(share.held, 0)
        await shared.shutdown()
    }

    func testPipelinesJoiningAConnectionAsItDrainsAreAllAnswered() async throws {
        // One connection open to sharing, and callers that each send their
        // next pipeline as soon as the last is answered, so that pipelines
        // join it while the watcher is reading the ones before them, just
        // after, and as the last is answered. A pipeline whose socket is not
        // watched waits for ever (its caller cannot be cancelled): the test
        // stops waiting after 20 s and fails, leaving it behind.
        let pool = ConnectionPool(configuration: .init(conninfo: TestDatabase.ownerURL, size: 2, pipelineConnections: 1))
        let rounds = 2000
        let outcome = NIOLockedValueBox<Result<[Int], any Error>?>(nil)
        Task {
            do {
                let answered = try await concurrently(12) { caller in
                    var answered = 0
                    for round in 0..<rounds {
                        let results = try await pool.pipeline([Statement("SELECT $1::int", [caller * rounds + round])])
                        if try results[0][0].decode(Int.self, at: 0) == caller * rounds + round { answered += 1 }
                    }
                    return answered
                }
                outcome.withLockedValue { $0 = .success(answered) }
            } catch {
                outcome.withLockedValue { $0 = .failure(error) }
            }
        }
        try await waitUntil { outcome.withLockedValue { $0 } != nil }
        let answered = try outcome.withLockedValue { $0 }!.get()
        XCTAssertEqual(answered, Array(repeating: rounds, count: 12), "every pipeline got its own answer")
        XCTAssertEqual(pool.sharedPipelinesInFlight, 0)
        await pool.shutdown()
    }

    func testManyPipelinesOnAFewSharedConnections() async throws {
        let pool = ConnectionPool(configuration: .init(conninfo: TestDatabase.ownerURL, size: 8, pipelineDepth: 4, pipelineConnections: 2))
        let answers = try await concurrently(300) { index in
            let results = try await pool.pipeline([Statement("SELECT $1::int", [index]), "SELECT pg_backend_pid()"])
            return (try results[0][0].decode(Int.self, at: 0), try results[1][0].decode(Int32.self, at: 0))
        }
        XCTAssertEqual(answers.map(\.0), Array(0..<300))
        XCTAssertLessThanOrEqual(Set(answers.map(\.1)).count, 8)
        XCTAssertEqual(pool.sharedPipelinesInFlight, 0)
        XCTAssertEqual(pool.inUse, 0)
        await pool.shutdown()
    }
}

/// A caller's share of connections in the tests: `places` at once, taken at
/// once (`take`) or waited for in order (`run`).
final class Share: Sendable {
    private let state: NIOLockedValueBox<(free: Int, waiting: [CheckedContinuation<Void, Never>])>

    init(places: Int) { state = NIOLockedValueBox((places, [])) }

    var held: Int { 1 - state.withLockedValue { $0.free } }

    func take() -> (@Sendable () -> Void)? {
        let taken = state.withLockedValue { state -> Bool in
            guard state.free > 0 else { return false }
            state.free -= 1
            return true
        }
        return taken ? { @Sendable in self.give() } : nil
    }

    func run<T: Sendable>(_ body: @Sendable () async throws -> T) async throws -> T {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let now = state.withLockedValue { state -> Bool in
                guard state.free > 0 else {
                    state.waiting.append(continuation)
                    return false
                }
                state.free -= 1
                return true
            }
            if now { continuation.resume() }
        }
        defer { give() }
        return try await body()
    }

    private func give() {
        let next = state.withLockedValue { state -> CheckedContinuation<Void, Never>? in
            if state.waiting.isEmpty {
                state.free += 1
                return nil
            }
            return state.waiting.removeFirst()
        }
        next?.resume()
    }
}
