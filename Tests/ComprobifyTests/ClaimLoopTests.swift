import Logging
import NIOConcurrencyHelpers
import XCTest

@testable import Comprobify

final class ClaimLoopTests: XCTestCase {
    /// A queue of numbered items, claimed as the loop asks, with what the loop did.
    final class Queue: Sendable {
        struct State {
            var waiting: [Int]
            var limits: [Int] = []
            var processed: [Int] = []
            var running = 0
            var mostAtOnce = 0
        }
        let state: NIOLockedValueBox<State>

        init(_ count: Int) { state = NIOLockedValueBox(State(waiting: Array(0..<count))) }

        func claim(_ limit: Int) -> [Int] {
            state.withLockedValue { state in
                state.limits.append(limit)
                let taken = Array(state.waiting.prefix(limit))
                state.waiting.removeFirst(taken.count)
                return taken
            }
        }

        func started() {
            state.withLockedValue { state in
                state.running += 1
                state.mostAtOnce = max(state.mostAtOnce, state.running)
            }
        }

        func finished(_ item: Int) {
            state.withLockedValue { state in
                state.running -= 1
                state.processed.append(item)
            }
        }
    }

    /// The loop over `queue`, each item taking as long as `work`.
    private func start(
        _ queue: Queue, workers: Int, pace: @escaping @Sendable () -> Int? = { nil }, shutdown: ShutdownSignal? = nil,
        _ work: @escaping @Sendable () async -> Void
    ) -> Task<Void, Never> {
        Task {
            await ClaimLoop.run(
                workers: workers, pace: pace, pollMilliseconds: 20, what: "test items", logger: Logger(label: "test"), shutdown: shutdown,
                claim: { queue.claim($0) },
                process: { item in
                    queue.started()
                    await work()
                    queue.finished(item)
                })
        }
    }

    func testAClaimTakesAQuarterMoreThanTheFreeWorkersAndNeverRunsMoreThanTheWorkers() async throws {
        let queue = Queue(40)
        let loop = start(queue, workers: 8) { try? await Task.sleep(for: .milliseconds(5)) }
        for _ in 0..<200 where queue.state.withLockedValue({ $0.processed.count }) < 40 {
            try await Task.sleep(for: .milliseconds(10))
        }
        loop.cancel()
        await loop.value
        let state = queue.state.withLockedValue { $0 }
        XCTAssertEqual(state.processed.sorted(), Array(0..<40), "every item once")
        XCTAssertLessThanOrEqual(state.mostAtOnce, 8)
        XCTAssertEqual(state.limits.first, 10, "8 free workers and 8 / 4 ahead")
        XCTAssertLessThan(state.limits.count, 40, "claims served several items each")
    }

    func testItemsClaimedAheadAreProcessedWhenTheLoopStops() async throws {
        let queue = Queue(5)
        let gate = AsyncStream<Void>.makeStream()
        let loop = start(queue, workers: 4) { for await _ in gate.stream { break } }
        // 4 items start, the fifth is claimed ahead and waits.
        for _ in 0..<200 where queue.state.withLockedValue({ $0.running }) < 4 {
            try await Task.sleep(for: .milliseconds(5))
        }
        loop.cancel()
        for _ in 0..<5 { gate.continuation.yield() }
        gate.continuation.finish()
        await loop.value
        let state = queue.state.withLockedValue { $0 }
        XCTAssertEqual(state.limits, [5], "one claim, none after the stop")
        XCTAssertEqual(state.processed.sorted(), Array(0..<5), "the item claimed ahead was processed too")
    }

    /// The process's stop (ShutdownSignal) ends the claims before the
    /// service's own turn comes: the loop claims nothing more, finishes what
    /// it holds, and returns while its task is neither cancelled nor told to
    /// stop (services stop one after another: the queue's turn comes after
    /// the HTTP server has drained).
    func testTheProcessStoppingEndsTheClaimsBeforeTheServiceIsTold() async throws {
        let queue = Queue(10_000)
        let shutdown = ShutdownSignal()
        let loop = start(queue, workers: 4, shutdown: shutdown) { try? await Task.sleep(for: .milliseconds(10)) }
        for _ in 0..<500 where queue.state.withLockedValue({ $0.processed.count }) < 8 {
            try await Task.sleep(for: .milliseconds(5))
        }
        shutdown.request()
        let returned = AsyncStream<Void>.makeStream()
        Task {
            await loop.value
            returned.continuation.yield()
        }
        let waiter = Task {
            try await Task.sleep(for: .seconds(20))
            returned.continuation.finish()
        }
        var iterator = returned.stream.makeAsyncIterator()
        let ended: Void? = await iterator.next()
        waiter.cancel()
        XCTAssertNotNil(ended, "the loop returned by itself, without being cancelled")
        loop.cancel()
        let state = queue.state.withLockedValue { $0 }
        XCTAssertEqual(state.processed.count, 10_000 - state.waiting.count, "everything claimed was processed")
        XCTAssertGreaterThan(state.waiting.count, 9_000, "and nothing more was claimed")
        XCTAssertEqual(state.running, 0)
    }

    /// While paced (requests keep PostgreSQL busy) claims are of one item and
    /// at most `rate` a second, and items in flight overlap: a slow one holds
    /// no other back. Unpaced again, claims fill every worker.
    func testAPaceBoundsTheClaimsAndASlowItemHoldsNoOtherBack() async throws {
        let queue = Queue(400)
        let paced = NIOLockedValueBox(true)
        let rate = 40
        let began = ContinuousClock.now
        let loop = start(queue, workers: 8, pace: { paced.withLockedValue { $0 } ? rate : nil }) {
            try? await Task.sleep(for: .milliseconds(paced.withLockedValue { $0 } ? 100 : 5))
        }
        try await Task.sleep(for: .milliseconds(500))
        let narrow = queue.state.withLockedValue { $0 }
        let elapsed = ContinuousClock.now - began
        let bound = Int(Double(rate) * (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)) + 1
        XCTAssertEqual(Set(narrow.limits), [1], "one item per claim: \(narrow.limits)")
        XCTAssertLessThanOrEqual(narrow.limits.count, bound, "at most \(rate) claims a second")
        XCTAssertGreaterThanOrEqual(narrow.limits.count, 4, "paced, not stopped")
        XCTAssertGreaterThan(narrow.mostAtOnce, 1, "items of 100 ms claimed every 25 ms run side by side")

        paced.withLockedValue { $0 = false }
        for _ in 0..<300 where queue.state.withLockedValue({ $0.processed.count }) < 400 {
            try await Task.sleep(for: .milliseconds(10))
        }
        loop.cancel()
        await loop.value
        let wide = queue.state.withLockedValue { $0 }
        XCTAssertEqual(wide.processed.sorted(), Array(0..<400), "every item once")
        XCTAssertEqual(wide.mostAtOnce, 8, "all the workers once unpaced")
        // Unpaced, a claim asks for the free workers (how many are free when
        // it runs depends on the timing) and 8 / 4 ahead: 3 to 10 items.
        let unpaced = wide.limits.drop { $0 == 1 }
        XCTAssertFalse(unpaced.isEmpty, "claims after the pace lifted: \(wide.limits)")
        XCTAssertTrue(unpaced.allSatisfy { (3...10).contains($0) }, "free workers and 8 / 4 ahead: \(wide.limits)")
    }
}
