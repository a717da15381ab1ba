import NIOConcurrencyHelpers

/// The bytes of request bodies being read at once in this process, across
/// all connections (`HTTP_BODY_BUDGET_MB`, default 256 MiB), and from one
/// peer (`HTTP_BODY_BUDGET_PER_ADDRESS_MB`, default 64 MiB). A body is read
/// before its key is checked (the check and the work go to the database in
/// one round trip, ADR 002), so without a bound clients that each send most
/// of 1 MiB and then stall held up to a mebibyte per connection for the
/// request clock's 30 s, ten thousand connections at most: gigabytes. Each
/// piece of a body takes its bytes from the budget as it arrives and the
/// whole body gives them back once it is read or refused; a piece that does
/// not fit is answered 503 with Retry-After. The peer's share keeps one
/// address (with its `HTTP_MAX_CONNECTIONS_PER_ADDRESS` connections) from
/// holding the whole budget and stalling every other client's bodies.
final class BodyBudget: Sendable {
    static let shared = BodyBudget()

    private struct State {
        var limit = 256 << 20
        var peerLimit = 64 << 20
        var used = 0
        /// Bytes held by each peer that holds any (`ConnectionCounter.client`).
        var byPeer: [String: Int] = [:]
    }

    private let state = NIOLockedValueBox(State())

    func setLimits(total: Int, perPeer: Int) {
        state.withLockedValue {
            $0.limit = total
            $0.peerLimit = perPeer
        }
    }

    /// Takes `bytes` for `peer` when they fit in the whole budget and in the
    /// peer's share; false (nothing taken) when they do not.
    func take(_ bytes: Int, for peer: String) -> Bool {
        state.withLockedValue { state in
            let held = state.byPeer[peer, default: 0]
            guard state.used + bytes <= state.limit, held + bytes <= state.peerLimit else { return false }
            state.used += bytes
            state.byPeer[peer] = held + bytes
            return true
        }
    }

    func give(_ bytes: Int, for peer: String) {
        guard bytes > 0 else { return }
        state.withLockedValue { state in
            state.used -= bytes
            let left = state.byPeer[peer, default: bytes] - bytes
            state.byPeer[peer] = left > 0 ? left : nil
        }
    }

    /// Bytes taken now.
    var used: Int { state.withLockedValue { $0.used } }

    /// Bytes `peer` holds now.
    func held(by peer: String) -> Int { state.withLockedValue { $0.byPeer[peer, default: 0] } }
}
