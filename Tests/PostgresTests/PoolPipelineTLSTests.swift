import Foundation
import NIOConcurrencyHelpers
import Postgres
import TestSupport
import XCTest

/// `ConnectionPool.pipeline` over TLS (scripts/test gives its cluster a
/// certificate). OpenSSL decrypts a whole TLS record at once while libpq may
/// take only part of it: the rest has left the socket, so a watcher that only
/// waited on the socket would wait for ever for an answer already received.
/// Every test here fails by timing out, not by hanging the run.
final class PoolPipelineTLSTests: XCTestCase {
    func makePool(size: Int, conninfo: String = TestDatabase.tlsURL) -> ConnectionPool {
        ConnectionPool(configuration: .init(conninfo: conninfo, size: size, waitTimeout: .seconds(30)))
    }

    func testPipelinesOverTLSAreEncryptedAndEachGetsItsOwnAnswer() async throws {
        let pool = makePool(size: 3)
        // Answers of many sizes, most of them not a whole number of TLS records.
        let sizes = (0..<200).map { 1 + ($0 * 7919) % 90_000 }
        let answers = try await finishing(within: 120) {
            try await concurrently(sizes.count) { index in
                let results = try await pool.pipeline([
                    Statement("SELECT $1::int", [index]),
                    Statement("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"),
                    Statement("SELECT repeat(chr(97 + $1 % 26), $2)", [index, sizes[index]]),
                ])
                return (
                    try results[0][0].decode(Int.self, at: 0), try results[1][0].decode(Bool.self, at: 0),
                    try results[2][0].decode(String.self, at: 0)
                )
            }
        }
        XCTAssertEqual(answers.map(\.0), Array(sizes.indices))
        XCTAssertTrue(answers.allSatisfy(\.1), "every pipeline ran on an encrypted connection")
        for (index, answer) in answers.enumerated() {
            let letter = UInt8(ascii: "a") + UInt8(index % 26)
            XCTAssertEqual(answer.2.utf8.count, sizes[index])
            XCTAssertTrue(answer.2.utf8.allSatisfy { $0 == letter }, "answer \(index) is its own")
        }
        XCTAssertEqual(pool.inUse, 0)
        await pool.shutdown()
    }

    func testAnswersInTLSRecordsLargerThanLibpqReadsAtOnceArriveWhole() async throws {
        // libpq reads when at least 8 KB of its buffer is free, so a 16 KB
        // record is often taken in part, and the rest waits in OpenSSL.
        let pool = makePool(size: 3, conninfo: TestDatabase.tlsProxyURL)
        let sizes = (13...20).flatMap { power in stride(from: 0, to: 24_000, by: 997).map { (1 << power) - 11 - $0 } }
            .filter { $0 > 0 }
        let answers = try await finishing(within: 120) {
            try await concurrently(sizes.count) { index in
                let results = try await pool.pipeline([
                    Statement("SELECT repeat('q', $1)", [sizes[index]]),
                    Statement("SELECT $1::int", [index]),
                ])
                return (try results[0][0].decode(String.self, at: 0).utf8.count, try results[1][0].decode(Int.self, at: 0))
            }
        }
        XCTAssertEqual(answers.map(\.0), sizes)
        XCTAssertEqual(answers.map(\.1), Array(sizes.indices))
        await pool.shutdown()
    }

    func testLargeStatementsAndAnswersCrossTLSInPieces() async throws {
        let pool = makePool(size: 2)
        try await finishing(within: 120) { try await sendLargePipelines(on: pool) }
        await pool.shutdown()
    }

    func testAFailingStatementOverTLSUndoesItsPipelineAndTheConnectionIsKept() async throws {
        let pool = makePool(size: 1)
        let pid = try await finishing(within: 60) {
            try await pool.pipeline(["SELECT pg_backend_pid()", "SELECT 1"])[0][0].decode(Int32.self, at: 0)
        }
        let failure = try await finishing(within: 60) { () -> PostgresError? in
            do {
                _ = try await pool.pipeline([
                    "SELECT repeat('x', 100000)", "SELECT 1 / 0", "SELECT 2",
                ])
                return nil
            } catch let error as PostgresError {
                return error
            }
        }
        XCTAssertEqual(failure?.sqlState?.code, "22012", "the division by zero is reported")
        let after = try await finishing(within: 60) {
            try await pool.pipeline(["SELECT pg_backend_pid()", "SELECT 3"])
        }
        XCTAssertEqual(try after[0][0].decode(Int32.self, at: 0), pid, "the connection was kept")
        XCTAssertEqual(try after[1][0].decode(Int.self, at: 0), 3)
        await pool.shutdown()
    }

    func testAKillDuringATLSPipelineFailsItWithoutHanging() async throws {
        let pool = makePool(size: 1)
        let outcome = try await killedWhileSleeping(on: pool)
        let failed = try await finishing(within: 60) { await outcome.result }
        switch failed {
        case .success: XCTFail("the killed pipeline should fail")
        case .failure(let error): XCTAssertTrue((error as? PostgresError)?.isUnavailable ?? false, "\(error)")
        }
        let after = try await pool.pipeline(["SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", "SELECT 4"])
        XCTAssertTrue(try after[0][0].decode(Bool.self, at: 0), "the new connection is encrypted too")
        await pool.shutdown()
    }
}
