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
