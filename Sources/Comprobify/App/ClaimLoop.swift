import Logging
import ServiceLifecycle

/// The dispatch loop shared by the background services that work from a
/// queue in PostgreSQL (sending to SRI, delivering webhooks): keeps up to
/// `workers` items in flight, claims as many as there are free workers; when
/// fewer are due, looks again after `pollMilliseconds` or as soon as a worker is
/// done. On shutdown it claims nothing more and lets the items in flight finish.
/// A failing claim is logged once, and its recovery once.
enum ClaimLoop {
    private enum Event: Sendable {
        case finished
        case tick
    }

    private static var stopping: Bool { Task.isCancelled || Task.isShuttingDownGracefully }

    static func run<Item: Sendable>(
        workers: Int, pollMilliseconds: Int, what: String, logger: Logger,
        claim: @escaping @Sendable (_ limit: Int) async throws -> [Item],
        process: @escaping @Sendable (Item) async -> Void
    ) async {
        await withTaskGroup(of: Event.self) { group in
            var running = 0
            var ticking = false
            var failing = false
            while !stopping {
                let free = workers - running
                var claimed = 0
                if free > 0 {
                    do {
                        let work = try await claim(free)
                        if failing { logger.info("claiming \(what) again") }
                        failing = false
                        for item in work {
                            running += 1
                            group.addTask {
                                await process(item)
                                return .finished
                            }
                        }
                        claimed = work.count
                    } catch {
                        if !failing { logger.warning("cannot claim \(what)", metadata: ["error": "\(error)"]) }
                        failing = true
                    }
                }
                if claimed < free && !ticking {
                    ticking = true
                    group.addTask {
                        try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .milliseconds(pollMilliseconds)) }
                        return .tick
                    }
                }
                switch await group.next() {
                case .finished?: running -= 1
                case .tick?: ticking = false
                case nil: break
                }
            }
            while await group.next() != nil {}
        }
    }
}
