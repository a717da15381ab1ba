import AsyncHTTPClient
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
