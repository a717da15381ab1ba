import CoreMetrics
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ServiceLifecycle

#if canImport(Glibc)
    import Glibc
#endif

/// Where the background services (sending to SRI, delivering webhooks) run, so
/// that requests come first and the queues drain with what the requests leave:
///
/// - their tasks run at `TaskPriority.background`. Swift's global executor
///   hands such jobs to libdispatch's background queue, whose threads run at a
///   higher niceness (10 on Linux) than the threads of the requests' tasks (0);
/// - their HTTP clients run on `eventLoopGroup`, one event loop whose thread
///   runs at the same niceness (the requests' event loops keep theirs). Like
///   NIO's singleton groups it lives as long as the process: no client can
///   outlive it, not even when a shutdown runs out of time and cancels;
/// - their SQL runs on a pool of its own, and while requests keep PostgreSQL
///   busy (`pressure`, from any process) each background queue claims at most
///   `BACKGROUND_BUSY_RATE` items a second: PostgreSQL's backends know no
///   priorities, so the background work asks them for less instead.
///
/// As a Service it samples the pressure until the services added after it
/// have stopped (services stop in reverse order).
final class BackgroundWork: Service, Sendable {
    /// The niceness of the background threads: what libdispatch gives its
    /// background queue on Linux, which this event loop's thread copies.
    static let nice: Int32 = 10

    static let eventLoopGroup: MultiThreadedEventLoopGroup = {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        for loop in group.makeIterator() {
            try? loop.submit { ThreadPriority.lower(to: nice) }.wait()
        }
        return group
    }()

    let pressure: RequestPressure
    /// False when this process has no background workers: nothing to yield.
    let sampling: Bool
    let logger: Logger

    init(pressure: RequestPressure, sampling: Bool, logger: Logger) {
        self.pressure = pressure
        self.sampling = sampling
        self.logger = logger
    }

    /// Runs `body` in a task of background priority and waits for it to end,
    /// also when the caller is cancelled (the task is cancelled with it). The
    /// wait, on a continuation the task resumes, does not raise the task's
    /// priority, as awaiting its value would (a higher-priority waiter
    /// escalates the task it awaits), and is not cut short by the caller's
    /// cancellation, as iterating a stream would be; the task keeps the
    /// caller's task-local values, graceful shutdown included.
    static func run(_ body: @escaping @Sendable () async -> Void) async {
        let started = NIOLockedValueBox<Task<Void, Never>?>(nil)
        await withTaskCancellationHandler {
            await withCheckedContinuation { (ended: CheckedContinuation<Void, Never>) in
                let task = Task(priority: .background) {
                    await body()
                    ended.resume()
                }
                started.withLockedValue { $0 = task }
                // Cancelled before the task could be seen by the handler below.
                if Task.isCancelled { task.cancel() }
            }
        } onCancel: {
            started.withLockedValue { $0 }?.cancel()
        }
    }

    func run() async throws {
        if sampling {
            let pressure = pressure
            let logger = logger
            await Self.run {
                await cancelWhenGracefulShutdown { await pressure.sample(logger: logger) }
            }
        } else {
            try? await gracefulShutdown()
        }
    }
}

/// Whether requests keep PostgreSQL busy, from any process: the sessions of
/// the requests' pools (application_name `comprobify`) that are in a
/// statement or a transaction, counted in `pg_stat_activity` every `interval`
/// and averaged (each sample weighs a quarter). Busy from `busyAt` sessions on
/// average (a fifth of one: a few hundred short requests a second, while the
/// HTTP side of each costs the server more than its SQL costs PostgreSQL), and
/// for `hold` after the last busy sample, so that a load near the threshold
/// does not switch the background work on and off every few samples. While
/// busy each background queue of this process claims at most `busyRate`
/// items a second (`background_yielding` is 1).
final class RequestPressure: Sendable {
    static let requestApplicationName = "comprobify"
    static let backgroundApplicationName = "comprobify-background"
    static let interval = Duration.milliseconds(50)
    static let weight = 0.25
    static let busyAt = 0.2
    static let hold = Duration.seconds(1)

    private struct State {
        var average = 0.0
        var lastBusy: ContinuousClock.Instant?

        /// Within `hold` of the last busy sample.
        func busy(at now: ContinuousClock.Instant) -> Bool {
            lastBusy.map { now - $0 < RequestPressure.hold } ?? false
        }
    }

    private let database: Database
    /// Items a second each background queue may claim while busy.
    let busyRate: Int
    /// The application_name of the sessions counted.
    let requestSessions: String
    private let state = NIOLockedValueBox(State())
    private let yielding = Gauge(label: "background_yielding")

    init(database: Database, busyRate: Int, requestSessions: String = RequestPressure.requestApplicationName) {
        self.database = database
        self.busyRate = busyRate
        self.requestSessions = requestSessions
    }

    /// The average of the requests' busy sessions.
    var busySessions: Double { state.withLockedValue { $0.average } }

    var busy: Bool {
        state.withLockedValue { $0.busy(at: ContinuousClock.now) }
    }

    /// The claims a second a background queue may make now: no limit (nil),
    /// or `busyRate` while requests keep PostgreSQL busy.
    var pace: Int? { busy ? busyRate : nil }

    /// Takes one sample and folds it into the average; returns the sample.
    @discardableResult
    func sampleOnce() async throws -> Int {
        let sessions = try await database.busySessions(applicationName: requestSessions)
        let now = ContinuousClock.now
        let busy = state.withLockedValue { state in
            state.average += Self.weight * (Double(sessions) - state.average)
            if state.average >= Self.busyAt { state.lastBusy = now }
            return state.busy(at: now)
        }
        yielding.record(busy ? 1 : 0)
        return sessions
    }

    /// Samples until the task is cancelled. A failing sample counts as idle
    /// (the background work then goes on at full speed) and is logged once.
    func sample(logger: Logger) async {
        var failing = false
        while !Task.isCancelled {
            do {
                try await sampleOnce()
                if failing { logger.info("sampling the requests' sessions again") }
                failing = false
            } catch {
                if !failing && !isStopping(error) {
                    logger.warning("cannot sample the requests' sessions", metadata: ["error": "\(error)"])
                }
                failing = true
                state.withLockedValue { $0 = State() }
                yielding.record(0)
            }
            try? await Task.sleep(for: Self.interval)
        }
    }
}

/// The calling thread's CPU priority. Linux keeps a niceness per thread, and
/// `PRIO_PROCESS` with 0 names the calling thread (not the whole process).
enum ThreadPriority {
    #if os(Linux)
        private static let which = __priority_which_t(PRIO_PROCESS.rawValue)
    #else
        private static let which = PRIO_PROCESS
    #endif

    /// The calling thread's niceness.
    static var current: Int32 { getpriority(which, 0) }

    /// Raises the calling thread's niceness to `nice` (never lowers it: that
    /// needs privileges). Elsewhere than Linux the niceness is the whole
    /// process's, so this does nothing there.
    static func lower(to nice: Int32) {
        #if os(Linux)
            guard nice > current else { return }
            _ = setpriority(which, 0, nice)
        #endif
    }
}
