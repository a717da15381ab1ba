import CoreMetrics
import Prometheus

/// The swift-metrics factory behind GET /metrics: PrometheusMetricsFactory's
/// mapping (counters, gauges for meters and plain recorders, histograms for
/// timers and aggregating recorders), with each series' `# HELP` line taken
/// from `MetricHelp` (PrometheusMetricsFactory gives every series an empty
/// one, which the exposition leaves out and `promtool check metrics` flags).
/// Every series of a name gets the same text, as the registry requires.
struct DescribedMetricsFactory: CoreMetrics.MetricsFactory {
    let registry: PrometheusCollectorRegistry
    /// Histogram buckets of a timer with no entry in `durationBuckets`.
    var defaultDurationBuckets: [Duration]
    var durationBuckets: [String: [Duration]] = [:]
    /// Buckets of an aggregating recorder (none of the service's is).
    var valueBuckets: [Double] = [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000]

    /// The series' name with its `# HELP` text.
    private func descriptor(_ label: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: label, unitName: "", helpText: MetricHelp.text(label))
    }

    func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        registry.makeCounter(descriptor: descriptor(label), labels: dimensions)
    }

    func makeFloatingPointCounter(label: String, dimensions: [(String, String)]) -> any FloatingPointCounterHandler {
        registry.makeCounter(descriptor: descriptor(label), labels: dimensions)
    }

    func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        guard aggregate else { return registry.makeGauge(descriptor: descriptor(label), labels: dimensions) }
        return registry.makeValueHistogram(descriptor: descriptor(label), labels: dimensions, buckets: valueBuckets)
    }

    func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler {
        registry.makeGauge(descriptor: descriptor(label), labels: dimensions)
    }

    func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
        registry.makeDurationHistogram(
            descriptor: descriptor(label), labels: dimensions, buckets: durationBuckets[label] ?? defaultDurationBuckets)
    }

    func destroyCounter(_ handler: any CounterHandler) {
        if let counter = handler as? Prometheus.Counter { registry.unregisterCounter(counter) }
    }

    func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) {
        if let counter = handler as? Prometheus.Counter { registry.unregisterCounter(counter) }
    }

    func destroyRecorder(_ handler: any RecorderHandler) {
        if let gauge = handler as? Prometheus.Gauge {
            registry.unregisterGauge(gauge)
        } else if let histogram = handler as? Histogram<Double> {
            registry.unregisterValueHistogram(histogram)
        }
    }

    func destroyMeter(_ handler: any MeterHandler) {
        if let gauge = handler as? Prometheus.Gauge { registry.unregisterGauge(gauge) }
    }

    func destroyTimer(_ handler: any TimerHandler) {
        if let histogram = handler as? Histogram<Duration> { registry.unregisterDurationHistogram(histogram) }
    }
}

/// What each series of GET /metrics counts, in one line (README, "Operations",
/// says more). A series made under a name missing here has no `# HELP` line; a
/// test requires one for every series the service exports.
enum MetricHelp {
    static func text(_ name: String) -> String { texts[name] ?? "" }

    static let texts: [String: String] = [
        "http_requests_total":
            "Requests answered, by method, route pattern and status (499: the connection closed before the answer).",
        "http_request_duration_seconds":
            "Time from a request's head to its answer, by method, route pattern and status.",
        "http_requests_in_flight": "Requests being handled now.",
        "http_connections_open": "HTTP connections open now.",
        "http_connections_refused_total":
            "Connections closed at once for being over HTTP_MAX_CONNECTIONS or the per-address limit.",
        "http_request_timeouts_total": "Requests cut off for passing HTTP_REQUEST_TIMEOUT_S.",
        "http_write_timeouts_total":
            "Connections cut off for taking too little of their answer within HTTP_WRITE_TIMEOUT_S.",
        "db_pool_size": "Connections the pool may open, by pool (requests, background, probe).",
        "db_pool_connections_in_use": "Connections of the pool held by work now, by pool.",
        "db_pool_wait_seconds": "Time work waited for a connection of the pool, by pool.",
        "db_transaction_retries_total":
            "Transactions run again after a serialization failure or deadlock, by pool.",
        "db_connections_discarded_total":
            "Connections closed instead of reused (broken, or left mid-transaction), by pool.",
        "db_tenant_gate_wait_seconds":
            "Time work waited because its tenant's share of connections (or its numbering counter's places) was taken, by gate and pool.",
        "db_tenant_gate_timeouts_total":
            "Waits at a tenant's or a numbering counter's gate that ran out after DB_POOL_WAIT_MS, by gate and pool.",
        "documents_issued_total": "Documents issued (not replays), by document type and environment.",
        "documents_signed_ahead_total":
            "Documents signed before their counter's lock with the number foreseen, by outcome (hit: the counter gave it; miss: signed again).",
        "documents_stored_together_total":
            "Facturas one statement stored together with others of their numbering counter.",
        "tenant_promotions_total": "Tenants promoted to production.",
        "sri_requests_total": "Exchanges with SRI's web services, by service (reception, authorization) and outcome.",
        "sri_request_duration_seconds": "Time of one exchange with SRI's web services, by service.",
        "sri_documents_pending": "Documents waiting for SRI (SIGNED or RECEIVED), all tenants, at the last count.",
        "sri_oldest_pending_seconds": "Age of the oldest document waiting for SRI, at the last count.",
        "webhook_deliveries_total": "Webhook delivery attempts, by outcome.",
        "webhook_deliveries_pending": "Webhook deliveries waiting, all tenants, at the last count.",
        "webhook_oldest_pending_seconds": "Age of the oldest webhook delivery waiting, at the last count.",
        "queue_counted_at_seconds": "Unix time of the last count of a queue that worked, by queue (sri, webhook).",
        "background_yielding":
            "1 while requests keep PostgreSQL busy and the background queues claim at BACKGROUND_BUSY_RATE, else 0.",
    ]
}
