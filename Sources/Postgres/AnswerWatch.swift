import Logging
import NIOConcurrencyHelpers

/// Closes the pool's connections that have waited too long for an answer of
/// the database (`Connection.cutOffIfOverdue`). The server's
/// `statement_timeout` ends a slow statement with an error; this is for a
/// database that holds the connection open and says nothing at all: a frozen
/// process or virtual machine, storage that stalls. Its kernel still
/// acknowledges what is sent, so TCP's keepalives and `tcp_user_timeout`
/// never fire (nor does anything over a Unix socket), and a statement in
/// flight would hold its request, its slot and a graceful stop for as long as
/// the stall lasts. The statement then fails as on a broken connection
/// (`PostgresError.isUnavailable`) and the connection is replaced.
///
/// One task looks at the connections a few times per `limit`; it ends with
/// the pool.
final class AnswerWatch: Sendable {
    /// The longest wait for an answer (since the connection sent, or since
    /// the last answer it read).
    let limit: Duration
    private let connections = NIOLockedValueBox<[Watched]>([])
    private let logger: Logger

    private struct Watched {
        weak var connection: Connection?
    }

    init(limit: Duration, logger: Logger) {
        self.limit = limit
        self.logger = logger
        let interval = max(min(limit / 4, .seconds(1)), .milliseconds(10))
        Task { [weak self] in
            while true {
                try? await Task.sleep(for: interval)
                guard let watch = self else { return }
                watch.look()
            }
        }
    }

    /// Watches `connection` from now until it is gone.
    func watch(_ connection: Connection) {
        connections.withLockedValue { $0.append(Watched(connection: connection)) }
    }

    private func look() {
        let live = connections.withLockedValue { list -> [Connection] in
            list.removeAll { $0.connection == nil }
            return list.compactMap(\.connection)
        }
        let now = Connection.monotonicNanoseconds()
        for connection in live {
            guard let waited = connection.cutOffIfOverdue(limit: limit, now: now) else { continue }
            logger.warning(
                "no answer from the database: the connection was closed",
                metadata: ["waited_ms": "\(waited)", "backend_pid": "\(connection.backendPID)"])
        }
    }
}
