import Logging
import NIOConcurrencyHelpers
import Postgres
import ServiceLifecycle

/// Whether `error` is what background work meets when the process stops
/// under it (its task cancelled, its pool closed): not a failure to log.
func isStopping(_ error: any Error) -> Bool {
    error is CancellationError || (error as? PostgresError)?.kind == .poolClosed
}

/// Whether the process has begun to stop (SIGTERM, SIGINT), for the
/// background queues.
///
/// Services stop one after another, in reverse order: the HTTP server first
/// (its requests in flight finish), then the webhook workers, then the SRI
/// workers. A queue that learnt of the stop only at its own turn kept claiming
/// and starting new work while the services before it drained, and what it
/// started then could be cut short by `SHUTDOWN_GRACE_S` (an SRI exchange cut
/// short waits for its lease, a minute, before it is sent again). With this
/// signal every queue stops claiming as soon as the stop begins; what it
/// holds (in flight or claimed) still finishes, and each service still ends
/// at its own turn.
public final class ShutdownSignal: Sendable {
    private let box = NIOLockedValueBox(false)

    public init() {}

    /// Set once the stop has begun; never unset.
    public var requested: Bool { box.withLockedValue { $0 } }

    public func request() { box.withLockedValue { $0 = true } }

    /// The first of the process's services, so the last to be told to stop:
    /// told, every other service has finished its work. Cancelled before
    /// that, the group cut the stop short (SHUTDOWN_GRACE_S ran out, with
    /// requests, SRI exchanges or webhook deliveries still under way), which
    /// the group itself says only at debug.
    public final class Completion: Service, Sendable {
        private let cut = NIOLockedValueBox(false)

        public init() {}

        /// Whether the stop was cut short.
        public var cutShort: Bool { cut.withLockedValue { $0 } }

        public func run() async {
            do {
                try await gracefulShutdown()
            } catch {
                cut.withLockedValue { $0 = true }
            }
        }
    }

    /// The service that sets `signal` when the process begins to stop: the
    /// last of the process's services, so the first to be told. It then
    /// waits `readyDelay` before it returns, and the services before it (the
    /// HTTP server first) are told to stop only then: meanwhile requests are
    /// still served and /readyz answers 503, so that a load balancer takes
    /// the server out of rotation before it stops accepting.
    public struct Notice: Service {
        let signal: ShutdownSignal
        let readyDelay: Duration
        /// Where the stop's beginning is logged (at info), when given.
        let logger: Logger?

        public init(_ signal: ShutdownSignal, readyDelay: Duration = .zero, logger: Logger? = nil) {
            self.signal = signal
            self.readyDelay = readyDelay
            self.logger = logger
        }

        public func run() async throws {
            // Returns when the stop begins, or when cancelled: set either way.
            let stopping: Void? = try? await gracefulShutdown()
            signal.request()
            if stopping != nil {
                logger?.info(
                    "stopping: no new work is claimed, /readyz answers 503; requests and attempts under way finish",
                    metadata: ["ready_delay_ms": "\(readyDelay.wholeMilliseconds)"])
            }
            if readyDelay > .zero { try? await Task.sleep(for: readyDelay) }
        }
    }
}
