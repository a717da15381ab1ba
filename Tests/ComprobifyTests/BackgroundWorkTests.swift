import Foundation
import Logging
import NIOConcurrencyHelpers
import Postgres
import ServiceLifecycle
import TestSupport
import XCTest

@testable import Comprobify

/// Sending to SRI and delivering webhooks run on threads of lower CPU priority
/// than the requests' (BackgroundWork), through every kind of await they make.
final class BackgroundWorkTests: XCTestCase {
    /// Where each step of a background task ran: its thread's niceness and the task's priority.
    final class Steps: Sendable {
        let seen = NIOLockedValueBox<[(step: String, nice: Int32, priority: TaskPriority)]>([])
        func note(_ step: String) {
            let entry = (step, ThreadPriority.current, Task.currentPriority)
            seen.withLockedValue { $0.append(entry) }
        }
    }

    func testBackgroundTasksRunBelowTheRequestsThroughEveryAwait() async throws {
        #if !os(Linux)
            throw XCTSkip("thread niceness is per thread on Linux only")
        #endif
        // A request's task: default priority, on the global executor.
        let requestNice = await Task.detached(priority: .medium) { ThreadPriority.current }.value
        let pool = ConnectionPool(configuration: .init(conninfo: TestDatabase.appURL, size: 1))
        let steps = Steps()
        try await LocalSRI.run { sri in
            let client = SRIClient(settings: .init(timeoutMilliseconds: 5_000), eventLoopGroup: BackgroundWork.eventLoopGroup)
            await BackgroundWork.run {
                steps.note("start")
                try? await Task.sleep(for: .milliseconds(20))
                steps.note("after a sleep")
                await withTaskGroup(of: Void.self) { group in
                    for _ in 0..<4 {
                        group.addTask {
                            try? await Task.sleep(for: .milliseconds(5))
                            steps.note("in a child task")
                        }
                    }
                }
                steps.note("after the children")
                let answer = try? await client.authorize(
                    accessKey: TestSigner.accessKey(sequential: 1, environment: .sandbox), baseURL: sri.baseURL)
                XCTAssertNotNil(answer, "the local SRI answered")
                steps.note("after an exchange with SRI")
                let one = try? await pool.withConnection { try $0.query("SELECT 1")[0].decode(Int.self, at: 0) }
                XCTAssertEqual(one, 1)
                steps.note("after a query")
            }
            try await client.shutdown()
        }
        let loopNice = try await BackgroundWork.eventLoopGroup.next().submit { ThreadPriority.current }.get()
        await pool.shutdown()

        let seen = steps.seen.withLockedValue { $0 }
        XCTAssertEqual(seen.count, 9)
        for entry in seen {
            XCTAssertGreaterThan(entry.nice, requestNice, "\(entry.step): niceness \(entry.nice), requests' \(requestNice)")
            XCTAssertEqual(entry.priority, .background, entry.step)
        }
        XCTAssertGreaterThanOrEqual(loopNice, BackgroundWork.nice, "the background HTTP clients' event loop")
        XCTAssertGreaterThan(loopNice, requestNice)
    }

    /// The caller's cancellation reaches the background task, and the caller's
    /// wait ends when the task has ended, not before.
    func testCancellingTheCallerCancelsTheBackgroundTask() async throws {
        let sawCancellation = NIOLockedValueBox(false)
        let caller = Task {
            await BackgroundWork.run {
                while !Task.isCancelled { try? await Task.sleep(for: .milliseconds(5)) }
                // Work that still takes a moment once cancelled (a cancelled
                // task's sleep would not wait): the caller waits for it too.
                usleep(50_000)
                sawCancellation.withLockedValue { $0 = true }
            }
        }
        try await Task.sleep(for: .milliseconds(50))
        caller.cancel()
        try await assertEnds(within: 10, "the cancelled caller") { await caller.value }
        XCTAssertTrue(sawCancellation.withLockedValue { $0 }, "the background task saw the cancellation")
    }

    /// A service whose work runs in the background still sees the service
    /// group's graceful shutdown (a task-local value), so the group can stop.
    func testAServiceInTheBackgroundStopsOnGracefulShutdown() async throws {
        struct Waiting: Service {
            let started: NIOLockedValueBox<Bool>
            func run() async throws {
                await BackgroundWork.run {
                    started.withLockedValue { $0 = true }
                    try? await gracefulShutdown()
                }
            }
        }
        let started = NIOLockedValueBox(false)
        let group = ServiceGroup(configuration: .init(services: [Waiting(started: started)], logger: Logger(label: "test")))
        let running = Task { try await group.run() }
        try await assertEnds(within: 10, "the service's start") {
            while !started.withLockedValue({ $0 }) { try? await Task.sleep(for: .milliseconds(5)) }
        }
        await group.triggerGracefulShutdown()
        try await assertEnds(within: 10, "the service group after its graceful shutdown") { _ = try? await running.value }
        let outcome = await running.result
        XCTAssertNoThrow(try outcome.get(), "the group stopped without an error")
    }

    /// Fails the test when `work` has not ended within `seconds`, without
    /// waiting for it: a hang fails here instead of holding the run for ever.
    private func assertEnds(
        within seconds: Double, _ what: String, file: StaticString = #filePath, line: UInt = #line,
        _ work: @escaping @Sendable () async -> Void
    ) async throws {
        let ended = NIOLockedValueBox(false)
        let task = Task {
            await work()
            ended.withLockedValue { $0 = true }
        }
        do {
            try await eventually("\(what) to end", within: seconds, every: 5, file: file, line: line) { ended.withLockedValue { $0 } }
        } catch {
            task.cancel()
            throw error
        }
    }

    /// Busy requests' sessions, from any process, make the background work
    /// yield; its own sessions and other applications' do not count.
    func testRequestsKeepingPostgreSQLBusyMakeTheBackgroundYield() async throws {
        let pool = ConnectionPool(
            configuration: .init(
                conninfo: TestDatabase.appURL, size: 1,
                sessionSettings: [("application_name", RequestPressure.backgroundApplicationName)]))
        // The requests' sessions of this test only: other tests' servers may
        // still have sessions named `comprobify` now and then.
        let requests = "comprobify-test-\(UUID().uuidString.prefix(8))"
        let pressure = RequestPressure(database: Database(pool: pool), busyRate: 7, requestSessions: requests)
        func settle(busy: Bool) async throws {
            for _ in 0..<200 where pressure.busy != busy {
                try await pressure.sampleOnce()
                try await Task.sleep(for: .milliseconds(20))
            }
        }
        /// A session named `name` that runs `sql` on its own thread.
        func session(_ name: String, _ sql: String) -> Thread {
            let thread = Thread {
                let url = TestDatabase.appURL
                let connection = try! Connection(conninfo: url + (url.contains("?") ? "&" : "?") + "application_name=\(name)")
                _ = try? connection.query(PostgresQuery(sql, []), prepared: false)
            }
            thread.start()
            return thread
        }

        try await settle(busy: false)
        XCTAssertFalse(pressure.busy)
        XCTAssertNil(pressure.pace)

        // Other sessions at work: the background's own and another application's.
        _ = session(RequestPressure.backgroundApplicationName, "SELECT pg_sleep(3)")
        _ = session("psql", "SELECT pg_sleep(3)")
        // Sampled once both are in their statement, so the 0 below means something.
        try await eventually("both sessions at work") {
            try TestDatabase.scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(3)' AND state = 'active'", [], as: Int64.self) == 2
        }
        let others = try await pressure.sampleOnce()
        XCTAssertEqual(others, 0, "neither counts as a request")

        // Two requests' sessions in a statement.
        let working = [session(requests, "SELECT pg_sleep(1.5)"), session(requests, "SELECT pg_sleep(1.5)")]
        try await settle(busy: true)
        XCTAssertTrue(pressure.busy, "average \(pressure.busySessions)")
        XCTAssertEqual(pressure.pace, 7)

        // Sampled on after they are done: busy for a while more
        // (RequestPressure.hold), then the average falls and it is not.
        while working.contains(where: { !$0.isFinished }) {
            try await pressure.sampleOnce()
            try await Task.sleep(for: .milliseconds(20))
        }
        let ended = ContinuousClock.now
        while ContinuousClock.now - ended < .milliseconds(500) {
            try await pressure.sampleOnce()
            XCTAssertTrue(pressure.busy, "still within the hold, average \(pressure.busySessions)")
            try await Task.sleep(for: .milliseconds(20))
        }
        try await settle(busy: false)
        XCTAssertFalse(pressure.busy, "average \(pressure.busySessions)")
        XCTAssertLessThan(pressure.busySessions, RequestPressure.busyAt)
        XCTAssertNil(pressure.pace)
        await pool.shutdown()
    }

    /// The background work's sessions are named apart from the requests' and
    /// commit without waiting for the WAL flush; the requests' wait for it.
    func testTheBackgroundPoolsSessionsAreNamedApartAndCommitAsynchronously() async throws {
        let configuration = Configuration(databaseURL: TestDatabase.appURL, secretBox: TestSecrets.box)
        for (background, name, synchronous) in [(false, "comprobify", "on"), (true, "comprobify-background", "off")] {
            let pool = makePool(configuration: configuration, logger: Logger(label: "test"), background: background)
            let (seenName, seenSynchronous, size) = try await pool.withConnection { connection in
                let row = try connection.query("SELECT current_setting('application_name'), current_setting('synchronous_commit')")[0]
                let (name, synchronous) = try row.decode((String, String).self)
                return (name, synchronous, pool.configuration.size)
            }
            XCTAssertEqual(seenName, name)
            XCTAssertEqual(seenSynchronous, synchronous)
            XCTAssertEqual(size, background ? configuration.backgroundPoolSize : configuration.poolSize)
            await pool.shutdown()
        }
    }
}
