import Foundation
import NIOCore
import Postgres
import XCTest

@testable import Comprobify

/// The pure parts of issue 12's limits; scripts/load drives them against live servers.
final class LoadLimitsTests: XCTestCase {
    func testConnectionCounterCapsPerAddressAndInTotal() {
        let counter = ConnectionCounter(maximum: 3, maximumPerAddress: 2)
        XCTAssertTrue(counter.admit("127.0.0.1"))
        XCTAssertTrue(counter.admit("127.0.0.1"))
        XCTAssertFalse(counter.admit("127.0.0.1"), "a third connection from one address")
        XCTAssertTrue(counter.admit("127.0.0.2"))
        XCTAssertFalse(counter.admit("127.0.0.3"), "the total is reached")
        counter.release("127.0.0.1")
        XCTAssertTrue(counter.admit("127.0.0.3"))
        XCTAssertEqual(counter.open, 3)
    }

    /// Connections are counted per client: an IPv6 /64 is one client, an
    /// IPv4-mapped address is its IPv4 address.
    func testConnectionsAreCountedPerIPv4AddressAndIPv6Network() throws {
        func client(_ address: String) throws -> String { ConnectionCounter.client(of: try SocketAddress(ipAddress: address, port: 443)) }
        XCTAssertEqual(try client("192.0.2.7"), "192.0.2.7")
        XCTAssertEqual(try client("::ffff:192.0.2.7"), "192.0.2.7")
        XCTAssertEqual(try client("2001:db8:1:2::1"), "2001:db8:1:2::/64")
        XCTAssertEqual(try client("2001:db8:1:2:ffff:eeee:dddd:cccc"), "2001:db8:1:2::/64")
        XCTAssertEqual(try client("2001:db8:1:3::1"), "2001:db8:1:3::/64")
        XCTAssertEqual(ConnectionCounter.client(of: nil), "unknown")
        let counter = ConnectionCounter(maximum: 10, maximumPerAddress: 2)
        XCTAssertTrue(counter.admit(try client("2001:db8:1:2::1")))
        XCTAssertTrue(counter.admit(try client("2001:db8:1:2::2")))
        XCTAssertFalse(counter.admit(try client("2001:db8:1:2::3")), "a third connection from one /64")
        XCTAssertTrue(counter.admit(try client("2001:db8:1:3::1")))
    }

    func testConnectionBudgetLeavesRoomUnderTheFileLimit() {
        XCTAssertEqual(FileLimits.connectionBudget(softLimit: 4096, poolSize: 8), 4096 - 512 - 8)
        XCTAssertEqual(FileLimits.connectionBudget(softLimit: 512, poolSize: 8), 512 - 128 - 8)
        XCTAssertEqual(FileLimits.connectionBudget(softLimit: 64, poolSize: 8), 1)
    }

    func testRateLimiterRefillsAtItsRateUpToItsBurst() {
        let limiter = KeyRateLimiter(rate: 2, burst: 3)
        let key = Data([1, 2, 3])
        let start = ContinuousClock.now
        for _ in 0..<3 { XCTAssertNil(limiter.take(key, now: start)) }
        XCTAssertEqual(limiter.take(key, now: start), 1, "the bucket is empty: retry in a second")
        XCTAssertNil(limiter.take(Data([9]), now: start), "another key has its own bucket")
        XCTAssertNil(limiter.take(key, now: start + .milliseconds(500)), "one token back after half a second")
        XCTAssertNotNil(limiter.take(key, now: start + .milliseconds(500)))
        for _ in 0..<3 { XCTAssertNil(limiter.take(key, now: start + .seconds(60))) }
        XCTAssertNotNil(limiter.take(key, now: start + .seconds(60)), "never more than the burst")
        XCTAssertNil(KeyRateLimiter(rate: 0, burst: 1).take(key), "rate 0 is no limit")
    }

    /// Takes a place in each of `lanes` and keeps it until `release` yields once per place.
    private func hold(_ gate: TenantGate, lanes: [TenantGate.Lane]) async -> (Task<Void, any Error>, AsyncStream<Void>.Continuation) {
        let held = AsyncStream<Void>.makeStream()
        let release = AsyncStream<Void>.makeStream()
        let holders = Task {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for lane in lanes {
                    group.addTask {
                        try await gate.run(lane: lane) {
                            held.continuation.yield()
                            for await _ in release.stream { break }
                        }
                    }
                }
                try await group.waitForAll()
            }
        }
        var iterator = held.stream.makeAsyncIterator()
        for _ in lanes { _ = await iterator.next() }
        return (holders, release.continuation)
    }

    func testTenantGateHoldsALaneToItsShareAndTimesOut() async throws {
        let gate = TenantGate(perTenant: 2, wait: .milliseconds(200))
        let (holders, release) = await hold(gate, lanes: [.tenant(1), .tenant(1)])
        let started = ContinuousClock.now
        do {
            try await gate.run(lane: .tenant(1)) {}
            XCTFail("a third request of the same tenant got in")
        } catch let error as APIError {
            XCTAssertEqual(error.status, .serviceUnavailable)
            XCTAssertGreaterThanOrEqual(ContinuousClock.now - started, .milliseconds(150))
        }
        try await gate.run(lane: .tenant(2)) {}  // another tenant is not held up
        release.yield()
        release.yield()
        release.finish()
        try await holders.value
        try await gate.run(lane: .tenant(1)) {}
    }

    /// A key's tenant is remembered while the key is used, however long, and
    /// forgotten once it is not: a key in use never falls back to a lane of
    /// its own, beside its tenant's.
    func testTenantGateRemembersAKeyInUseAndForgetsAnIdleOne() async throws {
        let gate = TenantGate(perTenant: 1, wait: .milliseconds(50), memory: .milliseconds(300))
        let digest = Data(repeating: 7, count: 32)
        XCTAssertEqual(gate.lane(for: digest), .key(digest), "not known yet")
        gate.learn(digest: digest, tenantID: 42)
        let started = ContinuousClock.now
        while ContinuousClock.now - started < .milliseconds(1200) {
            XCTAssertEqual(gate.lane(for: digest), .tenant(42), "used every 20 ms, four times its memory")
            try await Task.sleep(for: .milliseconds(20))
        }
        try await Task.sleep(for: .milliseconds(400))
        XCTAssertEqual(gate.lane(for: digest), .key(digest), "idle for longer than its memory")
    }

    func testTenantGateTimesOutTheOverdueWaitersOfEveryLaneAndNoOthers() async throws {
        let gate = TenantGate(perTenant: 1, wait: .milliseconds(150))
        // One holder per lane, for longer than the wait.
        let (holders, release) = await hold(gate, lanes: [.tenant(1), .tenant(2)])
        // Three waiters in each lane: every one of them gets 503 once its wait is over.
        let outcomes = await withTaskGroup(of: Bool.self) { group in
            for lane in [TenantGate.Lane.tenant(1), .tenant(2), .tenant(1), .tenant(2), .tenant(1), .tenant(2)] {
                group.addTask {
                    do {
                        try await gate.run(lane: lane) {}
                        return true
                    } catch {
                        return (error as? APIError)?.status == .serviceUnavailable ? false : true
                    }
                }
            }
            return await group.reduce(into: [Bool]()) { $0.append($1) }
        }
        XCTAssertEqual(outcomes, Array(repeating: false, count: 6), "every waiter timed out with 503")
        // A waiter that gets a place in time is not failed later by the sweeper.
        let late = Task { try await gate.run(lane: .tenant(1)) { try await Task.sleep(for: .milliseconds(300)) } }
        try await Task.sleep(for: .milliseconds(50))
        release.yield()
        release.yield()
        release.finish()
        try await holders.value
        try await late.value
        try await gate.run(lane: .tenant(2)) {}
    }

    func testACounterLaneBelongsToTheKeysTenantAndItsBusyAnswerNamesTheCounter() async throws {
        let pool = ConnectionPool(configuration: .init(conninfo: "postgresql://nobody@127.0.0.1:1/none", size: 2))
        let database = Database(pool: pool)
        let mine = APIToken.generate(.sandbox)
        let other = APIToken.generate(.sandbox)
        let lane = database.counterLane(for: mine, issuer: 7, documentType: "01")
        XCTAssertEqual(lane, database.counterLane(for: mine, issuer: 7, documentType: "01"))
        XCTAssertNotEqual(lane, database.counterLane(for: mine, issuer: 7, documentType: "04"), "one lane per counter")
        XCTAssertNotEqual(
            lane, database.counterLane(for: other, issuer: 7, documentType: "01"), "another key naming the issuer waits elsewhere")
        await pool.shutdown()

        let gate = TenantGate(perTenant: 1, wait: .milliseconds(50), busy: .counterBusy)
        let (holder, release) = await hold(gate, lanes: [lane])
        do {
            try await gate.run(lane: lane) {}
            XCTFail("a second request of a full counter lane got in")
        } catch let error as APIError {
            XCTAssertEqual(error.status, .serviceUnavailable)
            XCTAssertEqual(error.detail, APIError.counterBusy.detail)
        }
        release.yield()
        release.finish()
        try await holder.value
    }

    /// A request that found no free place is timed (`db_tenant_gate_wait_seconds`),
    /// and one that waited in vain counted (`db_tenant_gate_timeouts_total`),
    /// by the gate's name: the pool's own metrics show neither.
    func testTenantGateWaitsAndTimeoutsAreMeasured() async throws {
        _ = MetricsBootstrap.registry
        let name = "test_\(UInt32.random(in: 0...UInt32.max))"
        let gate = TenantGate(perTenant: 1, wait: .milliseconds(100), name: name)
        func metric(_ line: String) -> Double? {
            MetricsBootstrap.render().split(separator: "\n").first { $0.hasPrefix(line + " ") }
                .flatMap { Double($0.split(separator: " ").last ?? "") }
        }
        try await gate.run(lane: .tenant(1)) {}
        XCTAssertEqual(metric("db_tenant_gate_wait_seconds_count{gate=\"\(name)\",pool=\"requests\"}") ?? 0, 0, "a free place is no wait")
        let (holder, release) = await hold(gate, lanes: [.tenant(1)])
        do {
            try await gate.run(lane: .tenant(1)) {}
            XCTFail("a second request of a full lane got in")
        } catch let error as APIError {
            XCTAssertEqual(error.detail, APIError.tenantBusy.detail)
        }
        release.yield()
        release.finish()
        try await holder.value
        XCTAssertEqual(metric("db_tenant_gate_timeouts_total{gate=\"\(name)\",pool=\"requests\"}"), 1)
        XCTAssertEqual(metric("db_tenant_gate_wait_seconds_count{gate=\"\(name)\",pool=\"requests\"}"), 1)
        XCTAssertGreaterThanOrEqual(metric("db_tenant_gate_wait_seconds_sum{gate=\"\(name)\",pool=\"requests\"}") ?? 0, 0.09)
    }

    func testTenantGateLearnsTheTenantOfAKey() {
        let gate = TenantGate(perTenant: 1, wait: .milliseconds(10))
        let digest = Data([7, 7])
        XCTAssertEqual(gate.lane(for: digest), .key(digest))
        gate.learn(digest: digest, tenantID: 42)
        XCTAssertEqual(gate.lane(for: digest), .tenant(42))
    }

    func testListChunksStayWithinTheBudgetAndAlwaysMoveForward() {
        XCTAssertEqual(ListBudget.chunks([10, 10, 10], bytes: 25), [0..<2, 2..<3])
        XCTAssertEqual(ListBudget.chunks([100, 10], bytes: 25), [0..<1, 1..<2], "an item alone over the budget is a chunk of its own")
        XCTAssertEqual(ListBudget.chunks([10, 100, 10], bytes: 25), [0..<1, 1..<2, 2..<3])
        XCTAssertEqual(ListBudget.chunks([1, 1], bytes: 25), [0..<2])
        XCTAssertEqual(ListBudget.chunks([], bytes: 25), [])
    }

    func testPromotionListOverTheMaximumIsRefusedBeforeItsEntriesAreRead() throws {
        let entry = #"{"issuerId": "not even a number"}"#
        let body =
            #"{"initialSequentials": ["# + Array(repeating: entry, count: PromotionRequest.maximumEntries + 1).joined(separator: ",")
            + "]}"
        let input = Input(bytes: Array(body.utf8), value: try JSONParser.parse(Array(body.utf8)))
        XCTAssertThrowsError(try PromotionRequest(input)) { error in
            let fields = (error as? APIError)?.fieldErrors ?? []
            XCTAssertEqual(fields.map(\.field), ["initialSequentials"], "one error, not one per entry")
        }
    }

    func testParserErrorsBecomeProblems() {
        XCTAssertEqual(RequestGuardHandler.problem(for: .headerOverflow).status.code, 400)
        XCTAssertEqual(RequestGuardHandler.problem(for: .headerOverflow).code, "BAD_REQUEST")
        XCTAssertEqual(APIError.tooManyConnections.code, "SERVICE_UNAVAILABLE")
        XCTAssertEqual(RequestGuardHandler.problem(for: .invalidMethod).status.code, 400)
        let document = Problem.document(.badRequest("x"), instance: "", requestID: "abc")
        XCTAssertTrue(document.contains(#""requestId":"abc""#) || document.contains(#""requestId": "abc""#))
    }

    /// `{"k0": 1e131071, ...}`: 8 bytes a number in the request. Stored as
    /// json, each comes back as written, and neither the answer nor the list
    /// is much larger than the request.
    func testAnExponentBombComesBackAsWrittenAndSmall() async throws {
        try await TestServer.run { server in
            let tenant = try await server.signUp()
            let issuer = try await server.createIssuer(tenant.key)
            let metadata = "{" + (0..<50).map { #""k\#($0)": 1e131071"# }.joined(separator: ", ") + "}"
            let body = Bodies.factura(metadata: metadata)
            let issued = try await server.issue(tenant.key, issuer: issuer, body: body)
            XCTAssertEqual(issued.status, 201, issued.text)
            XCTAssertEqual(issued.value(["document", "metadata", "k49"]), .number("1e131071"))
            XCTAssertLessThan(issued.text.utf8.count, 4 * body.utf8.count + 16_384)
            let listed = try await server.call(.get, "/v1/documents?limit=200", key: tenant.key, issuer: issuer)
            XCTAssertEqual(listed.status, 200, listed.text)
            XCTAssertLessThan(listed.text.utf8.count, 4 * body.utf8.count + 16_384)
            XCTAssertTrue(
                listed.text.contains(#""k0":1e131071"#) || listed.text.contains(#""k0": 1e131071"#), listed.text.prefix(300).description)
        }
    }
}
