import Logging
import NIOConcurrencyHelpers
import XCTest

@testable import Comprobify

/// The queue gauges' refresh waits the interval, or fifty times what the last
/// count took when that is longer, at most a minute (QueueGauge).
final class QueueGaugeTests: XCTestCase {
    func testThePauseIsTheIntervalUntilCountingTakesLong() {
        XCTAssertEqual(QueueGauge.pause(after: .milliseconds(3), interval: .seconds(5)), .seconds(5))
        XCTAssertEqual(QueueGauge.pause(after: .milliseconds(100), interval: .seconds(5)), .seconds(5))
        XCTAssertEqual(QueueGauge.pause(after: .milliseconds(200), interval: .seconds(5)), .seconds(10))
        XCTAssertEqual(QueueGauge.pause(after: .milliseconds(1200), interval: .seconds(5)), .seconds(60))
        XCTAssertEqual(QueueGauge.pause(after: .seconds(5), interval: .seconds(5)), .seconds(60), "never more than a minute")
        XCTAssertEqual(QueueGauge.pause(after: nil, interval: .seconds(5)), .seconds(5), "a failed count is tried again")
        XCTAssertEqual(QueueGauge.pause(after: .seconds(5), interval: .seconds(120)), .seconds(120), "nor less than the interval")
    }

    /// Counts the calls of `count` in `window`, each reporting `took`.
    private func counts(interval: Duration, took: Duration?, window: Duration) async -> Int {
        let calls = NIOLockedValueBox(0)
        let loop = Task {
            await QueueGauge.run(every: interval) {
                calls.withLockedValue { $0 += 1 }
                return took
            }
        }
        try? await Task.sleep(for: window)
        loop.cancel()
        await loop.value
        return calls.withLockedValue { $0 }
    }

    func testASlowCountIsRepeatedLessOften() async {
        // A count that took 40 ms: the next one waits two seconds, not the 1 ms interval.
        let slow = await counts(interval: .milliseconds(1), took: .milliseconds(40), window: .milliseconds(600))
        XCTAssertEqual(slow, 1, "one count in the 600 ms watched")
        // Quick counts, and failed ones, keep the interval.
        let quick = await counts(interval: .milliseconds(50), took: .zero, window: .seconds(1))
        XCTAssertGreaterThanOrEqual(quick, 3, "quick counts are made every interval")
        let failed = await counts(interval: .milliseconds(50), took: nil, window: .seconds(1))
        XCTAssertGreaterThanOrEqual(failed, 3, "a failed count is tried again after the interval")
    }

    /// A count that fails leaves the gauges as they were: it is logged, once
    /// for a run of failures, and so is the count that works again.
    func testFailedCountsAreLoggedOncePerRun() async {
        let logs = LogCapture()
        var logger = Logger(label: "test") { _ in LogCapture.Handler(capture: logs) }
        logger.logLevel = .info
        struct Refused: Error {}
        let calls = NIOLockedValueBox(0)
        let loop = Task {
            await QueueGauge.run(every: .milliseconds(10), queue: "sri", logger: logger) {
                // Fails on calls 1-3 and 6-7, works on 4-5 and from 8 on.
                let call = calls.withLockedValue {
                    $0 += 1; return $0
                }
                if [1, 2, 3, 6, 7].contains(call) { throw Refused() }
                return .zero
            }
        }
        for _ in 0..<500 where calls.withLockedValue({ $0 }) < 9 { try? await Task.sleep(for: .milliseconds(5)) }
        loop.cancel()
        await loop.value
        XCTAssertGreaterThanOrEqual(calls.withLockedValue { $0 }, 9, "the counts ran")
        let lines = logs.lines.withLockedValue { $0 }
        XCTAssertEqual(lines.filter { $0.contains("cannot count the sri queue") }.count, 2, "\(lines)")
        XCTAssertEqual(lines.filter { $0.contains("counting the sri queue again") }.count, 2, "\(lines)")
        XCTAssertTrue(lines.first?.hasPrefix("warning cannot count the sri queue: its gauges keep their last values") ?? false, "\(lines)")
    }

    func testItStopsWhenCancelled() async {
        let loop = Task { await QueueGauge.run(every: .seconds(60)) { .zero } }
        try? await Task.sleep(for: .milliseconds(20))
        loop.cancel()
        let started = ContinuousClock.now
        await loop.value
        XCTAssertLessThan(ContinuousClock.now - started, .seconds(5), "a pause ends when its task is cancelled")
    }
}
