import ServiceLifecycle

/// The record of work done under a claim's lease (an exchange with SRI, a
/// webhook attempt), tried again when it fails: the database out of reach for
/// a moment should not throw away an answer that took a round trip to SRI or
/// to a client's endpoint, and have the work done twice once the lease ends.
/// A try whose commit was lost with its answer may have committed: each
/// record finds its own earlier try under the lease and then does nothing.
enum LeasedRecord {
    /// The waits between tries: from the first, doubling, up to the last.
    static let firstRetryMilliseconds = 100
    static let lastRetryMilliseconds = 5_000

    /// Runs `record` (given the try's number, 1 first) until it succeeds, and
    /// after each failure again from `firstRetryMilliseconds`, doubling up to
    /// `lastRetryMilliseconds`, while the next try would start before
    /// `leaseEnds` and the process is not stopping. Each failure is reported
    /// to `failed` with the try's number and the wait before the next try, or
    /// nil when it gives up. Nil when it gave up.
    static func trying<T>(
        until leaseEnds: ContinuousClock.Instant,
        failed: (_ error: any Error, _ tries: Int, _ retryIn: Duration?) -> Void,
        _ record: (_ tries: Int) async throws -> T
    ) async -> (T, tries: Int)? {
        var wait = Duration.milliseconds(firstRetryMilliseconds)
        var tries = 1
        while true {
            do {
                return (try await record(tries), tries)
            } catch {
                if ContinuousClock.now + wait >= leaseEnds || Task.isCancelled || Task.isShuttingDownGracefully {
                    failed(error, tries, nil)
                    return nil
                }
                failed(error, tries, wait)
                try? await cancelWhenGracefulShutdown { [wait] in try await Task.sleep(for: wait) }
                wait = min(wait * 2, .milliseconds(lastRetryMilliseconds))
                tries += 1
            }
        }
    }
}

extension Duration {
    /// In whole milliseconds (for log lines and records).
    var wholeMilliseconds: Int {
        Int(components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000)
    }
}
