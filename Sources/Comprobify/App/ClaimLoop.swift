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
/// A class of items may be `limited` to some of the workers (sandbox
/// documents: `SRISettings.sandboxWorkers`). Its items claimed ahead wait
/// here until one of its places is free, while other items pass them; the
/// claim is told how many more of the class it may take (`limitedRoom`: its
/// places and a quarter of `workers` ahead, less those held). An item of the
/// class that finishes claims only when no item of the class was waiting for
/// its place, so under a backlog of the class alone one claim still serves
/// several items; the workers beyond its places are looked for when one of
/// their items finishes, and else once per poll interval.
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
        /// An item is done; `limited`: one of the limited class.
        case finished(limited: Bool)
        case tick
        case paced
    }

    /// The items of a class that may hold at most `places` workers at once.
    struct Limited<Item>: Sendable {
        let places: Int
        let contains: @Sendable (Item) -> Bool
    }

    /// Cancelled, told to stop as a service, or the process stopping (`shutdown`).
    private static func stopping(_ shutdown: ShutdownSignal?) -> Bool {
        Task.isCancelled || Task.isShuttingDownGracefully || shutdown?.requested == true
    }

    static func run<Item: Sendable>(
        workers: Int, pace: @escaping @Sendable () -> Int? = { nil }, pollMilliseconds: Int, what: String, logger: Logger,
        shutdown: ShutdownSignal? = nil, limited: Limited<Item>? = nil,
        claim: @escaping @Sendable (_ limit: Int, _ limitedRoom: Int) async throws -> [Item],
        process: @escaping @Sendable (Item) async -> Void
    ) async {
        let ahead = workers / 4
        let places = min(max(limited?.places ?? workers, 0), workers)
        await withTaskGroup(of: Event.self) { group in
            var running = 0
            // Of `running`, those of the limited class.
            var runningLimited = 0
            var ticking = false
            var pacing = false
            var failing = false
            // The earliest time of the next claim while paced.
            var nextClaim = ContinuousClock.now
            // Claimed, not started yet, oldest first.
            var ready: [Item] = []
            func startReady() {
                guard running < workers, !ready.isEmpty else { return }
                var waiting: [Item] = []
                for item in ready {
                    let isLimited = limited?.contains(item) ?? false
                    guard running < workers, !isLimited || runningLimited < places else {
                        waiting.append(item)
                        continue
                    }
                    running += 1
                    if isLimited { runningLimited += 1 }
                    group.addTask {
                        await process(item)
                        return .finished(limited: isLimited)
                    }
                }
                ready = waiting
            }
            var woken: Event? = nil
            while !stopping(shutdown) {
                startReady()
                let free = workers - running
                let rate = pace()
                var short = false
                // An item of the limited class that finished claims only if
                // its place is still free: none of the class was waiting for
                // it. Workers free beyond the class's places are for other
                // items, looked for when one of those finished, and else once
                // per poll interval (or at the pace).
                let claiming: Bool
                switch woken {
                case .finished(limited: true)?: claiming = free > 0 && runningLimited < places
                default: claiming = free > 0
                }
                if claiming {
                    let now = ContinuousClock.now
                    if rate == nil || now >= nextClaim {
                        let limit = rate == nil ? free + ahead : 1
                        if let rate { nextClaim = now + .seconds(1) / max(1, rate) }
                        let held = runningLimited + (limited.map { ready.count(where: $0.contains) } ?? 0)
                        let limitedRoom = places == 0 ? 0 : max(0, places + ahead - held)
                        do {
                            let work = try await claim(limit, limitedRoom)
                            if failing { logger.info("claiming \(what) again") }
                            failing = false
                            ready += work
                            startReady()
                            short = work.count < limit
                        } catch {
                            // Cancelled, or a pool closed under it: the process is stopping, not failing.
                            if !failing && !isStopping(error) { logger.warning("cannot claim \(what)", metadata: ["error": "\(error)"]) }
                            failing = true
                            short = true
                        }
                    }
                }
                if (short || (running < workers && !ready.isEmpty)) && !ticking {
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
                woken = await group.next()
                switch woken {
                case .finished(let isLimited)?:
                    running -= 1
                    if isLimited { runningLimited -= 1 }
                case .tick?: ticking = false
                case .paced?: pacing = false
                case nil: break
                }
            }
            // What this process holds is done before it stops, as workers free up.
            while let event = await group.next() {
                if case .finished(let isLimited) = event {
                    running -= 1
                    if isLimited { runningLimited -= 1 }
                    startReady()
                }
            }
        }
    }
}
