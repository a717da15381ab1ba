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
            var limitedRooms: [Int] = []
            var runningLimited = 0
            var mostLimitedAtOnce = 0
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

        /// Up to `limit` items in order, at most `limitedRoom` of them
        /// limited (passed over, as SRI's claim passes sandbox documents
        /// beyond their room).
        func claim(_ limit: Int, limitedRoom: Int, isLimited: (Int) -> Bool) -> [Int] {
            state.withLockedValue { state in
                state.limits.append(limit)
                state.limitedRooms.append(limitedRoom)
                var taken: [Int] = []
                var room = limitedRoom
                for item in state.waiting where taken.count < limit {
                    if isLimited(item) {
                        guard room > 0 else { continue }
                        room -= 1
                    }
                    taken.append(item)
                }
                state.waiting.removeAll { taken.contains($0) }
                return taken
            }
        }

        func add(_ items: [Int]) { state.withLockedValue { $0.waiting += items } }

        func started(limited: Bool = false) {
            state.withLockedValue { state in
                state.running += 1
                state.mostAtOnce = max(state.mostAtOnce, state.running)
                if limited {
                    state.runningLimited += 1
                    state.mostLimitedAtOnce = max(state.mostLimitedAtOnce, state.runningLimited)
                }
            }
        }

        func finished(_ item: Int, limited: Bool = false) {
            state.withLockedValue { state in
                state.running -= 1
                if limited { state.runningLimited -= 1 }
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
                claim: { limit, _ in queue.claim(limit) },
                process: { item in
                    queue.started()
                    await work()
                    queue.finished(item)
                })
        }
    }

    /// The loop over `queue` where the items below `limitedBelow` may hold
    /// at most `places` of the workers (as sandbox documents do), each item
    /// taking as long as `work` says for it.
    private func startLimited(
        _ queue: Queue, workers: Int, places: Int, limitedBelow: Int, pollMilliseconds: Int = 20,
        _ work: @escaping @Sendable (Int) async -> Void
    ) -> Task<Void, Never> {
        let isLimited: @Sendable (Int) -> Bool = { $0 < limitedBelow }
        return Task {
            await ClaimLoop.run(
                workers: workers, pollMilliseconds: pollMilliseconds, what: "test items", logger: Logger(label: "test"),
                limited: .init(places: places, contains: isLimited),
                claim: { limit, room in queue.claim(limit, limitedRoom: room, isLimited: isLimited) },
                process: { item in
                    queue.started(limited: isLimited(item))
                    await work(item)
                    queue.finished(item, limited: isLimited(item))
                })
        }
    }

    /// A backlog of the limited class alone (sandbox documents, SRI's
    /// production idle): its items hold no more than their places, a
    /// quarter of the workers' worth waits claimed ahead, and one claim
    /// serves several items, not one per item finished.
    func testABacklogOfALimitedClassIsClaimedSeveralAtATime() async throws {
        let queue = Queue(120)
        let loop = startLimited(queue, workers: 8, places: 6, limitedBelow: 1_000, pollMilliseconds: 1_000) { _ in
            try? await Task.sleep(for: .milliseconds(3))
        }
        for _ in 0..<500 where queue.state.withLockedValue({ $0.processed.count }) < 120 {
            try await Task.sleep(for: .milliseconds(10))
        }
        loop.cancel()
        await loop.value
        let state = queue.state.withLockedValue { $0 }
        XCTAssertEqual(state.processed.sorted(), Array(0..<120), "every item once")
        XCTAssertEqual(state.mostLimitedAtOnce, 6, "the class's places, all of them and no more")
        XCTAssertEqual(state.limitedRooms.first, 8, "6 places and 8 / 4 ahead")
        XCTAssertTrue(state.limitedRooms.allSatisfy { $0 <= 8 }, "\(state.limitedRooms)")
        // Each claim after the first comes once the items claimed ahead have
        // started: three items a claim; one per item finished would make
        // more than a hundred claims.
        XCTAssertLessThanOrEqual(state.limits.count, 50, "claims: \(state.limitedRooms)")
    }

    /// While the class's places are full and its items claimed ahead wait,
    /// other items still reach the free workers, and pass them.
    func testOtherItemsPassTheLimitedClassesWaitingItems() async throws {
        let queue = Queue(6)  // 0..<6, all limited
        let gate = AsyncStream<Void>.makeStream()
        let loop = startLimited(queue, workers: 4, places: 2, limitedBelow: 1_000) { item in
            if item < 1_000 { for await _ in gate.stream { break } }
        }
        // Two limited items run, one waits claimed ahead (4 / 4), three stay queued.
        for _ in 0..<200 where queue.state.withLockedValue({ $0.runningLimited }) < 2 {
            try await Task.sleep(for: .milliseconds(5))
        }
        try await Task.sleep(for: .milliseconds(50))
        var state = queue.state.withLockedValue { $0 }
        XCTAssertEqual(state.runningLimited, 2)
        XCTAssertEqual(state.waiting, [3, 4, 5], "one claimed ahead of the two places, no more")
        queue.add([1_000, 1_001, 1_002])
        for _ in 0..<200 where queue.state.withLockedValue({ $0.processed.count }) < 3 {
            try await Task.sleep(for: .milliseconds(5))
        }
        state = queue.state.withLockedValue { $0 }
        XCTAssertEqual(state.processed.sorted(), [1_000, 1_001, 1_002], "the other items ran beside the waiting one")
        XCTAssertEqual(state.runningLimited, 2, "the limited places still full")
        loop.cancel()
        for _ in 0..<6 { gate.continuation.yield() }
        gate.continuation.finish()
        await loop.value
        XCTAssertEqual(queue.state.withLockedValue { $0.processed.count }, 6, "what was claimed was processed; nothing more")
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
