import Logging
import ServiceLifecycle

/// The dispatch loop shared by the background services that work from a
/// queue in PostgreSQL (sending to SRI, delivering webhooks): keeps up to
/// `workers` items in flight. A claim asks for the free workers and a quarter
/// of `workers` more: the extra items wait here, leased to this process, for
/// the next workers to finish, so that under a backlog one claim serves
/// several items instead of one each. When fewer are due, it looks again
/// after `pollMilliseconds` or as soon as a worker is done.
///
/// While `pace` gives a rate (RequestPressure: requests keep PostgreSQL
/// busy), claims are of one item, at most that many a second; items already
/// claimed start at once, and items in flight are not held back, so a slow
/// one delays no other. On shutdown (its own as a service, or the process's
/// through `shutdown`, which comes first) it claims nothing more; the items in
/// flight and those already claimed finish. A failing claim is logged once,
/// and its recovery once.
enum ClaimLoop {
    private enum Event: Sendable {
        case finished
        case tick
        case paced
    }

    /// Cancelled, told to stop as a service, or the process stopping (`shutdown`).
    private static func stopping(_ shutdown: ShutdownSignal?) -> Bool {
        Task.isCancelled || Task.isShuttingDownGracefully || shutdown?.requested == true
    }

    static func run<Item: Sendable>(
        workers: Int, pace: @escaping @Sendable () -> Int? = { nil }, pollMilliseconds: Int, what: String, logger: Logger,
        shutdown: ShutdownSignal? = nil,
        claim: @escaping @Sendable (_ limit: Int) async throws -> [Item],
        process: @escaping @Sendable (Item) async -> Void
    ) async {
        let ahead = workers / 4
        await withTaskGroup(of: Event.self) { group in
            var running = 0
            var ticking = false
            var pacing = false
            var failing = false
            // The earliest time of the next claim while paced.
            var nextClaim = ContinuousClock.now
            // Claimed, not started yet, oldest first.
            var ready: [Item] = []
            var next = 0
            func startReady() {
                while running < workers, next < ready.count {
                    let item = ready[next]
                    next += 1
                    running += 1
                    group.addTask {
                        await process(item)
                        return .finished
                    }
                }
                if next == ready.count {
                    ready.removeAll(keepingCapacity: true)
                    next = 0
                }
            }
            while !stopping(shutdown) {
                startReady()
                let free = workers - running
                let rate = pace()
                var short = false
                if free > 0 {
                    let now = ContinuousClock.now
                    if rate == nil || now >= nextClaim {
                        let limit = rate == nil ? free + ahead : 1
                        if let rate { nextClaim = now + .seconds(1) / max(1, rate) }
                        do {
                            let work = try await claim(limit)
                            if failing { logger.info("claiming \(what) again") }
                            failing = false
                            ready += work
                            startReady()
                            short = work.count < limit
                        } catch {
                            if !failing { logger.warning("cannot claim \(what)", metadata: ["error": "\(error)"]) }
                            failing = true
                            short = true
                        }
                    }
                }
                if short && !ticking {
                    ticking = true
                    group.addTask {
                        try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .milliseconds(pollMilliseconds)) }
                        return .tick
                    }
                }
                // Paced, with work waiting and a worker free: the next claim
                // is due at `nextClaim`, whatever the items in flight take.
                if rate != nil && !short && !pacing && running < workers {
                    pacing = true
                    let wait = nextClaim - ContinuousClock.now
                    group.addTask {
                        try? await cancelWhenGracefulShutdown { try await Task.sleep(for: wait) }
                        return .paced
                    }
                }
                switch await group.next() {
                case .finished?: running -= 1
                case .tick?: ticking = false
                case .paced?: pacing = false
                case nil: break
                }
            }
            // What this process holds is done before it stops, as workers free up.
            while let event = await group.next() {
                if event == .finished {
                    running -= 1
                    startReady()
                }
            }
        }
    }
}
