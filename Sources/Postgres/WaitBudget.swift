import Synchronization

/// How long one unit of work (an HTTP request) may wait, in all, for
/// connections and for its places in the gates in front of them. Each wait
/// ends at the earlier of its own timeout and what the budget has left, and
/// what it waited is taken from the budget, so that a request that waits
/// in turn for its tenant's place, its counter's place and a free
/// connection still gives up once it has waited `total`, not three times
/// that. Bound for the work's task in `ConnectionPool.waitBudget`; work
/// with none bound (background work) gives each wait its own timeout.
public final class WaitBudget: Sendable {
    private let remainingNanoseconds: Atomic<Int64>

    public init(_ total: Duration) {
        remainingNanoseconds = Atomic(WaitBudget.nanoseconds(total))
    }

    /// What is left to wait.
    public var remaining: Duration {
        .nanoseconds(max(0, remainingNanoseconds.load(ordering: .relaxed)))
    }

    /// The end of a wait that starts at `start` and may last at most `longest` of its own.
    public func deadline(startingAt start: ContinuousClock.Instant, atMost longest: Duration) -> ContinuousClock.Instant {
        start + min(longest, remaining)
    }

    /// Takes a wait's length from what is left.
    public func spend(_ waited: Duration) {
        remainingNanoseconds.subtract(WaitBudget.nanoseconds(waited), ordering: .relaxed)
    }

    private static func nanoseconds(_ duration: Duration) -> Int64 {
        duration.components.seconds * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000
    }
}

extension ConnectionPool {
    /// The budget the current task's waits share (`WaitBudget`); nil: each wait has its own timeout.
    @TaskLocal public static var waitBudget: WaitBudget?

    /// A wait of the current task that starts at `start` and may last at most
    /// `longest` of its own: when it ends, and the budget to take its length
    /// from once it is over (nil when the task has none).
    public static func budgetedWait(
        startingAt start: ContinuousClock.Instant, atMost longest: Duration
    ) -> (deadline: ContinuousClock.Instant, budget: WaitBudget?) {
        let budget = waitBudget
        return (budget?.deadline(startingAt: start, atMost: longest) ?? start + longest, budget)
    }
}
