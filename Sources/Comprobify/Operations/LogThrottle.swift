import NIOConcurrencyHelpers

/// At most one line per `interval` for a warning that every request may meet
/// at once (the database out of reach: thousands a second under load). The
/// first of a burst is written; those within the interval after it are only
/// counted, and the next line written says how many were left out.
final class LogThrottle: Sendable {
    private struct State {
        var nextLine: ContinuousClock.Instant?
        var leftOut = 0
    }

    private let interval: Duration
    private let state = NIOLockedValueBox(State())

    init(interval: Duration = .seconds(1)) {
        self.interval = interval
    }

    /// The lines left out since the last one written when this one is to be
    /// written; nil when it is to be left out (and counted).
    func admit(now: ContinuousClock.Instant = .now) -> Int? {
        state.withLockedValue { state in
            if let next = state.nextLine, now < next {
                state.leftOut += 1
                return nil
            }
            let leftOut = state.leftOut
            state = State(nextLine: now + interval, leftOut: 0)
            return leftOut
        }
    }
}
