import CoreMetrics
import NIOConcurrencyHelpers
import Prometheus

/// The service's own series. Exposed at GET /metrics through swift-prometheus
/// (the database pool's series come from the Postgres module the same way).
enum ServiceMetrics {
    static let inFlight = Meter(label: "http_requests_in_flight")

    private struct RequestSeries {
        let count: CoreMetrics.Counter
        let duration: CoreMetrics.Timer
    }

    /// One counter and timer per method × route pattern × status, made once.
    private static let requestSeries = NIOLockedValueBox<[String: RequestSeries]>([:])

    static func record(method: String, route: String, status: UInt16, nanoseconds: Int64) {
        let key = "\(method) \(status) \(route)"
        let series = requestSeries.withLockedValue { cache in
            if let series = cache[key] { return series }
            let dimensions = [("method", method), ("route", route), ("status", String(status))]
            let series = RequestSeries(
                count: CoreMetrics.Counter(label: "http_requests_total", dimensions: dimensions),
                duration: CoreMetrics.Timer(label: "http_request_duration_seconds", dimensions: dimensions)
            )
            cache[key] = series
            return series
        }
        series.count.increment()
        series.duration.recordNanoseconds(nanoseconds)
    }

    /// One counter per document type × environment, made once; a type that is
    /// not in the table (none is) would still be counted.
    private static let issued: [String: CoreMetrics.Counter] = {
        var counters: [String: CoreMetrics.Counter] = [:]
        for type in DocumentType.codes {
            for environment in [Environment.sandbox, .production] {
                counters[type + environment.rawValue] = issuedCounter(type: type, environment: environment)
            }
        }
        return counters
    }()

    private static func issuedCounter(type: String, environment: Environment) -> CoreMetrics.Counter {
        Counter(label: "documents_issued_total", dimensions: [("document_type", type), ("environment", environment.rawValue)])
    }

    static func documentIssued(type: String, environment: Environment) {
        (issued[type + environment.rawValue] ?? issuedCounter(type: type, environment: environment)).increment()
    }

    private static let signedAheadHit = Counter(label: "documents_signed_ahead_total", dimensions: [("outcome", "hit")])
    private static let signedAheadMiss = Counter(label: "documents_signed_ahead_total", dimensions: [("outcome", "miss")])

    /// A document signed ahead of its counter's lock: the counter gave the number
    /// (hit), or another one (miss: signed again under the lock, or issued again).
    static func signedAhead(hit: Bool) {
        (hit ? signedAheadHit : signedAheadMiss).increment()
    }

    private static let storedTogetherDocuments = Counter(label: "documents_stored_together_total")

    /// Documents one statement stored together (`DocumentsStore.store(together:)`), counted when there are several.
    static func storedTogether(_ count: Int) {
        storedTogetherDocuments.increment(by: Int64(count))
    }

    private static let promotions = Counter(label: "tenant_promotions_total")

    static func promoted() {
        promotions.increment()
    }

    /// The outcomes of a webhook attempt.
    static let webhookOutcomes = ["delivered", "http_status", "timeout", "connection", "refused_address"]

    /// One webhook attempt, by outcome (`webhookOutcomes`).
    static func webhookDelivery(outcome: String) {
        Counter(label: "webhook_deliveries_total", dimensions: [("outcome", outcome)]).increment()
    }

    /// Makes every counter whose series are known in advance, so that
    /// /metrics shows them at 0 from the start: a rate or an alert on a
    /// series that has never moved then reads 0, not "no data".
    static func exportAtZero() {
        _ = issued
        _ = (
            signedAheadHit, signedAheadMiss, storedTogetherDocuments, promotions, ConnectionDeadline.requestTimeouts,
            ConnectionDeadline.writeTimeouts
        )
        for outcome in webhookOutcomes {
            _ = Counter(label: "webhook_deliveries_total", dimensions: [("outcome", outcome)])
        }
        SubmissionMetrics.exportAtZero()
    }
}

/// Bootstraps swift-metrics with a Prometheus registry once per process.
public enum MetricsBootstrap {
    public static let registry: PrometheusCollectorRegistry = {
        let registry = PrometheusCollectorRegistry()
        var factory = DescribedMetricsFactory(
            registry: registry,
            defaultDurationBuckets: [
                .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10),
                .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
                .seconds(1), .seconds(2), .seconds(5),
            ])
        // An exchange with SRI may take up to SRI_TIMEOUT_MS (20 s by default):
        // its slow tail is what an operator watches, so its buckets reach past
        // the default timeout instead of stopping at 5 s.
        factory.durationBuckets["sri_request_duration_seconds"] = [
            .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
            .milliseconds(500), .seconds(1), .seconds(2), .seconds(5), .seconds(10), .seconds(20), .seconds(30),
            .seconds(60), .seconds(120),
        ]
        MetricsSystem.bootstrap(factory)
        return registry
    }()

    /// The Prometheus text exposition of every series.
    static func render() -> String {
        var buffer = [UInt8]()
        registry.emit(into: &buffer)
        return String(decoding: buffer, as: UTF8.self)
    }
}
