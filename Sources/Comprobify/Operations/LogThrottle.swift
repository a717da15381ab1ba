import NIOConcurrencyHelpers

/// At most one line per `interval` for each kind of a warning that every
/// request may meet at once (the database out of reach: thousands a second
/// under load). The first of a burst is written; those of its kind within the
/// interval after it are only counted, and the next line of that kind written
/// says how many were left out. Kinds are few (a SQLSTATE, an error's kind),
/// so one kind's burst never hides another's first line.
final class LogThrottle: Sendable {
    private struct State {
        var nextLine: ContinuousClock.Instant?
        var leftOut = 0
    }

    private let interval: Duration
    private let states = NIOLockedValueBox([String: State]())

    init(interval: Duration = .seconds(1)) {
        self.interval = interval
    }

    /// The lines of `kind` left out since the last one written when this one
    /// is to be written; nil when it is to be left out (and counted).
    func admit(_ kind: String = "", now: ContinuousClock.Instant = .now) -> Int? {
        states.withLockedValue { states in
            var state = states[kind, default: State()]
            defer { states[kind] = state }
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
