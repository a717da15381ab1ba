import Foundation
import Postgres
import TestSupport
import XCTest

/// The pool through PostgreSQL's Unix socket (scripts/test names the cluster's
/// socket folder in `host=`), the way `scripts/run` and scripts/bench connect a
/// server on the database's machine: the same answers as over TCP, with the
/// watcher waiting on a socket of the other kind.
final class PoolUnixSocketTests: XCTestCase {
    func makePool(size: Int) -> ConnectionPool {
        ConnectionPool(configuration: .init(conninfo: TestDatabase.socketURL, size: size, waitTimeout: .seconds(30)))
    }

    func testPipelinesThroughTheUnixSocketEachGetTheirOwnAnswer() async throws {
        let pool = makePool(size: 3)
        let answers = try await finishing(within: 120) {
            try await concurrently(400) { index in
                let results = try await pool.pipeline([
                    Statement("SELECT $1::int", [index]),
                    // No server address: the session came through a Unix socket.
                    Statement("SELECT inet_server_addr() IS NULL, current_user::text, pg_backend_pid()"),
                ])
                return (
                    try results[0][0].decode(Int.self, at: 0), try results[1][0].decode(Bool.self, at: 0),
                    try results[1][0].decode(String.self, at: 1), try results[1][0].decode(Int32.self, at: 2)
                )
            }
        }
        XCTAssertEqual(answers.map(\.0), Array(0..<400))
        XCTAssertTrue(answers.allSatisfy(\.1), "every pipeline ran on a Unix-socket session")
        XCTAssertEqual(Set(answers.map(\.2)), ["comprobify_app"])
        XCTAssertLessThanOrEqual(Set(answers.map(\.3)).count, 3, "no more connections than the pool's size")
        XCTAssertEqual(pool.inUse, 0)
        await pool.shutdown()
    }

    func testLargeStatementsAndAnswersCrossTheUnixSocketInPieces() async throws {
        let pool = makePool(size: 2)
        try await finishing(within: 120) { try await sendLargePipelines(on: pool) }
        await pool.shutdown()
    }

    func testATransactionThroughTheUnixSocketCommitsAndAFailedOneLeavesNothing() async throws {
        let pool = makePool(size: 1)
        let table = "socket_test_\(UInt32.random(in: 0...UInt32.max))"
        try await pool.withConnection { _ = try $0.query("CREATE TEMP TABLE \(unescaped: table) (n int)") }
        // One connection: the temporary table is on the session every call below uses.
        try await pool.transaction { transaction, _ in
            try transaction.query("INSERT INTO \(unescaped: table) VALUES (1), (2)")
        }
        do {
            try await pool.transaction { transaction, _ in
                try transaction.query("INSERT INTO \(unescaped: table) VALUES (3)")
                try transaction.query("SELECT 1 / 0")
            }
            XCTFail("the division by zero fails the transaction")
        } catch let error as PostgresError {
            XCTAssertEqual(error.sqlState, "22012")
        }
        let rows = try await pool.pipeline([Statement("SELECT array_agg(n ORDER BY n)::text FROM \(unescaped: table)")])
        XCTAssertEqual(try rows[0][0].decode(String.self, at: 0), "{1,2}")
        await pool.shutdown()
    }
}
