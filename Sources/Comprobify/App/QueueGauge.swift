import ServiceLifecycle

/// The loop that refreshes a queue's gauges (`sri_documents_pending`,
/// `webhook_deliveries_pending` and their oldest ages). Each refresh counts
/// every waiting row, so it costs PostgreSQL time in proportion to the queue:
/// milliseconds for thousands of rows, seconds behind a long SRI outage, and
/// every process counts. So the pause after a refresh is `interval` or
/// `costFactor` times what the refresh took, whichever is longer: the counts
/// then take at most one part in `costFactor + 1` of one backend per process,
/// however long the queue grows, and the gauges still move every `interval`
/// while it is short.
enum QueueGauge {
    static let costFactor = 50

    /// The pause after a refresh that took `took`.
    static func pause(after took: Duration, interval: Duration) -> Duration {
        max(interval, took * costFactor)
    }

    /// Refreshes until the task is cancelled or the service shuts down.
    static func run(every interval: Duration, _ refresh: () async -> Void) async {
        let clock = ContinuousClock()
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            let took = await clock.measure { await refresh() }
            let wait = pause(after: took, interval: interval)
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: wait) }
        }
    }
}
