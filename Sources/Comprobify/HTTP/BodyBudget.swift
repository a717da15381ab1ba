import NIOConcurrencyHelpers

/// The bytes of request bodies being read at once in this process, across
/// all connections (`HTTP_BODY_BUDGET_MB`, default 256 MiB). A body is read
/// before its key is checked (the check and the work go to the database in
/// one round trip, ADR 002), so without a bound clients that each send most
/// of 1 MiB and then stall held up to a mebibyte per connection for the
/// request clock's 30 s, ten thousand connections at most: gigabytes. Each
/// piece of a body takes its bytes from the budget as it arrives and the
/// whole body gives them back once it is read or refused; a piece that does
/// not fit is answered 503 with Retry-After.
final class BodyBudget: Sendable {
    static let shared = BodyBudget()

    private let state = NIOLockedValueBox((limit: 256 << 20, used: 0))

    func setLimit(_ bytes: Int) {
        state.withLockedValue { $0.limit = bytes }
    }

    /// Takes `bytes` when they fit; false (nothing taken) when they do not.
    func take(_ bytes: Int) -> Bool {
        state.withLockedValue { state in
            guard state.used + bytes <= state.limit else { return false }
            state.used += bytes
            return true
        }
    }

    func give(_ bytes: Int) {
        guard bytes > 0 else { return }
        state.withLockedValue { $0.used -= bytes }
    }

    /// Bytes taken now.
    var used: Int { state.withLockedValue { $0.used } }
}
