import NIOConcurrencyHelpers
import XCTest

@testable import Comprobify

/// The queue gauges' refresh waits the interval, or fifty times what the last
/// count took when that is longer (QueueGauge).
final class QueueGaugeTests: XCTestCase {
    func testThePauseIsTheIntervalUntilCountingTakesLong() {
        XCTAssertEqual(QueueGauge.pause(after: .milliseconds(3), interval: .seconds(5)), .seconds(5))
        XCTAssertEqual(QueueGauge.pause(after: .milliseconds(100), interval: .seconds(5)), .seconds(5))
        XCTAssertEqual(QueueGauge.pause(after: .milliseconds(200), interval: .seconds(5)), .seconds(10))
        XCTAssertEqual(QueueGauge.pause(after: .seconds(2), interval: .seconds(5)), .seconds(100))
    }

    /// Counts `refresh` calls for `window`, each taking `takes`.
    private func refreshes(interval: Duration, takes: Duration, window: Duration) async -> Int {
        let count = NIOLockedValueBox(0)
        let loop = Task {
            await QueueGauge.run(every: interval) {
                count.withLockedValue { $0 += 1 }
                try? await Task.sleep(for: takes)
            }
        }
        try? await Task.sleep(for: window)
        loop.cancel()
        await loop.value
        return count.withLockedValue { $0 }
    }

    func testASlowCountIsRepeatedLessOften() async {
        // 40 ms a count: the next waits two seconds, not the 1 ms interval.
        let slow = await refreshes(interval: .milliseconds(1), takes: .milliseconds(40), window: .milliseconds(600))
        XCTAssertEqual(slow, 1, "a count that took 40 ms is not made again within two seconds")
        // A quick count keeps the interval.
        let quick = await refreshes(interval: .milliseconds(50), takes: .zero, window: .seconds(1))
        XCTAssertGreaterThanOrEqual(quick, 4, "quick counts are made every interval")
    }

    func testItStopsWhenCancelled() async {
        let loop = Task { await QueueGauge.run(every: .seconds(60)) {} }
        try? await Task.sleep(for: .milliseconds(20))
        loop.cancel()
        let started = ContinuousClock.now
        await loop.value
        XCTAssertLessThan(ContinuousClock.now - started, .seconds(5), "a pause ends when its task is cancelled")
    }
}
