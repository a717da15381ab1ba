import AsyncHTTPClient
import NIOConcurrencyHelpers
import NIOCore

extension HTTPClientResponse.Body {
    /// The whole body, at most `limit` bytes, read before `deadline`.
    /// AsyncHTTPClient's deadline ends once the response's head has arrived;
    /// without this, a body trickled a byte at a time would hold its reader,
    /// and the lease of the work it reads for, for as long as the other end
    /// likes. Past the deadline the read is cancelled (which closes the
    /// connection) and `HTTPClientError.deadlineExceeded` is thrown.
    func collect(upTo limit: Int, before deadline: NIODeadline) async throws -> ByteBuffer {
        try await withThrowingTaskGroup(of: ByteBuffer?.self) { group in
            group.addTask { try await self.collect(upTo: limit) }
            group.addTask {
                let remaining = deadline - .now()
                if remaining.nanoseconds > 0 { try await Task.sleep(nanoseconds: UInt64(remaining.nanoseconds)) }
                return nil
            }
            defer { group.cancelAll() }
            guard case let body?? = try await group.next() else { throw HTTPClientError.deadlineExceeded }
            return body
        }
    }
}

/// `work`'s value, or nil when `deadline` comes first. Then only the caller
/// stops waiting: the work runs on to its end unobserved (a name lookup on a
/// thread cannot be interrupted), and its value is dropped.
func firstBefore<T: Sendable>(_ deadline: NIODeadline, _ work: @escaping @Sendable () async -> T) async -> T? {
    let waiting = NIOLockedValueBox<CheckedContinuation<T?, Never>?>(nil)
    return await withCheckedContinuation { continuation in
        waiting.withLockedValue { $0 = continuation }
        let timer = Task {
            let remaining = deadline - .now()
            if remaining.nanoseconds > 0 { try? await Task.sleep(nanoseconds: UInt64(remaining.nanoseconds)) }
            waiting.withLockedValue { $0.take() }?.resume(returning: nil)
        }
        Task {
            let value = await work()
            // The value is handed over before the timer is cancelled: a
            // cancelled timer wakes at once, and could otherwise take the
            // continuation first and answer nil for work that was done in time.
            waiting.withLockedValue { $0.take() }?.resume(returning: value)
            timer.cancel()
        }
    }
}
