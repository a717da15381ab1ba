import CoreMetrics
import Foundation
import Logging
import ServiceLifecycle

/// The loop that refreshes a queue's gauges (`sri_documents_pending`,
/// `webhook_deliveries_pending` and their oldest ages). Each refresh counts
/// every waiting row, so it costs PostgreSQL time in proportion to the queue:
/// milliseconds for thousands of rows, up to `statement_timeout` behind a long
/// SRI outage, and every process counts. So the pause after a count is
/// `interval` or `costFactor` times what PostgreSQL took to count, whichever
/// is longer, and at most `longestPause` (when that is not shorter than
/// `interval`): a gauge then takes at most one part in `costFactor + 1` of a
/// backend per process while a count takes under 1.2 s, it moves every
/// `interval` while the queue is short, and it is never older than a minute
/// and a count. A count that failed is tried again after `interval`.
enum QueueGauge {
    static let costFactor = 50
    static let longestPause = Duration.seconds(60)

    /// The pause after a count that took `took`; nil when it failed.
    static func pause(after took: Duration?, interval: Duration) -> Duration {
        guard let took else { return interval }
        return max(interval, min(took * costFactor, longestPause))
    }

    /// `run` for the queue called `queue`: a count that fails leaves the
    /// queue's gauges at their last values, so it is logged (a warning once
    /// per run of failures, and when counting works again) and
    /// `queue_counted_at_seconds{queue}` holds the Unix time of the last count
    /// that worked (alert when it falls minutes behind: behind a long outage
    /// the oldest age the gauges show is then not moving).
    static func run(every interval: Duration, queue: String, logger: Logger, _ count: () async throws -> Duration) async {
        let countedAt = Gauge(label: "queue_counted_at_seconds", dimensions: [("queue", queue)])
        var failing = false
        await run(every: interval) {
            do {
                let took = try await count()
                if failing { logger.info("counting the \(queue) queue again") }
                failing = false
                countedAt.record(Date().timeIntervalSince1970)
                return took
            } catch {
                if !failing && !isStopping(error) {
                    logger.warning("cannot count the \(queue) queue: its gauges keep their last values", metadata: ["error": "\(error)"])
                }
                failing = true
                return nil
            }
        }
    }

    /// Counts until the task is cancelled or the service shuts down. `count`
    /// records the gauges and returns how long PostgreSQL took to count, or
    /// nil when it could not.
    static func run(every interval: Duration, _ count: () async -> Duration?) async {
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            let wait = pause(after: await count(), interval: interval)
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: wait) }
        }
    }
}
