import Foundation

/// How this process talks to SRI (shared/SRI.md, "Sending to SRI"). Read from
/// the environment in `Configuration.fromEnvironment`.
public struct SRISettings: Sendable, Equatable {
    /// Base URL for sandbox documents (ambiente 1): `SRI_TEST_URL`.
    public var testURL = "https://celcer.sri.gob.ec/comprobantes-electronicos-ws"
    /// Base URL for production documents (ambiente 2): `SRI_PRODUCTION_URL`.
    public var productionURL = "https://cel.sri.gob.ec/comprobantes-electronicos-ws"
    /// A whole exchange, connection included: `SRI_TIMEOUT_MS`.
    public var timeoutMilliseconds = 20_000
    /// The first retry wait after a failed exchange: `SRI_RETRY_BASE_MS`.
    public var retryBaseMilliseconds = 1_000
    /// The longest retry wait: `SRI_RETRY_MAX_MS`.
    public var retryMaxMilliseconds = 300_000
    /// From reception to the first authorization request: `SRI_AUTHORIZATION_DELAY_MS`.
    public var authorizationDelayMilliseconds = 3_000
    /// How long a claimed document stays with its worker: `SRI_LEASE_MS` (> timeout).
    public var leaseMilliseconds = 60_000
    /// Concurrent exchanges of this process; 0 sends nothing: `SRI_WORKERS`.
    public var workers = 4
    /// Of `workers`, how many sandbox documents may hold at once: a quarter,
    /// rounded up, is kept for production, so that SRI's test service, slow or
    /// down, never holds production documents back. All of them when there is
    /// only one.
    var sandboxWorkers: Int { workers <= 1 ? workers : workers - (workers + 3) / 4 }
    /// Exchanges are kept this many days, then purged; the document keeps its
    /// status, SRI's messages, its authorization and its count of attempts
    /// (`SRI_EXCHANGE_RETENTION_DAYS`; 0 keeps them all).
    public var exchangeRetentionDays = 90
    /// A `RECEIVED` document is sent again at every this many exchanges in a
    /// row without a decision (`SRI_RESEND_EVERY`; 0 never): SRI answers 43 or
    /// 70 when it has it, and receives it again when it lost it.
    public var resendEvery = 8
    /// How often an idle process looks for due documents: `SRI_POLL_MS`.
    public var pollMilliseconds = 500
    /// How often the queue gauges are refreshed (less often while counting
    /// the queue takes long: QueueGauge).
    public var gaugeIntervalMilliseconds = 5_000
    /// Only these tenants' documents are sent from this process; nil: every
    /// tenant's. Not read from the environment: for tests and dedicated workers.
    public var tenantIDs: [Int64]?

    public init() {}

    /// Whether `url` is one of SRI's own services (HTTPS on a host under
    /// sri.gob.ec).
    static func isSRI(_ url: String) -> Bool {
        guard URLComponents(string: url)?.scheme?.lowercased() == "https", let host = host(of: url) else { return false }
        return host == "sri.gob.ec" || host.hasSuffix(".sri.gob.ec")
    }

    /// The host `url` names, lower-cased and without the trailing dots that
    /// only root a name (`celcer.sri.gob.ec.` is `celcer.sri.gob.ec`); nil
    /// when it names none.
    static func host(of url: String) -> String? {
        guard var host = URLComponents(string: url)?.host?.lowercased() else { return nil }
        while host.hasSuffix(".") { host.removeLast() }
        return host.isEmpty ? nil : host
    }

    /// SRI's service for the other environment than `environment` names: the
    /// test service (celcer.sri.gob.ec) as SRI_PRODUCTION_URL, or the
    /// production one (cel.sri.gob.ec) as SRI_TEST_URL. Nil when it is not.
    static func crossedService(_ url: String, for environment: Environment) -> String? {
        guard let host = host(of: url) else { return nil }
        switch (environment, host) {
        case (.production, "celcer.sri.gob.ec"): return "SRI's test service"
        case (.sandbox, "cel.sri.gob.ec"): return "SRI's production service"
        default: return nil
        }
    }

    /// The base URL for a document's environment.
    func baseURL(for environment: Environment) -> String {
        environment == .production ? productionURL : testURL
    }

    /// The service of a document's next exchange, `streak` exchanges into a
    /// run without progress: reception while `SIGNED`; authorization once
    /// `RECEIVED`, but reception again at every `resendEvery`-th exchange of
    /// the run. SRI answers "no autorizacion" alike for a document still in
    /// its queue and for one it lost (a restart of its services): only a
    /// resend tells them apart, and it is harmless (43, 70) when SRI has it.
    func service(for status: SubmissionStatus, streak: Int) -> SRIService {
        if status == .signed { return .reception }
        return resendEvery > 0 && streak > 0 && streak % resendEvery == 0 ? .reception : .authorization
    }

    /// The wait before the next exchange after `streak` exchanges in a row
    /// without progress: base × 2^(streak − 1), at most the maximum.
    func backoffMilliseconds(streak: Int) -> Int {
        guard streak > 0 else { return 0 }
        let doublings = min(streak - 1, 30)
        let wait = retryBaseMilliseconds.multipliedReportingOverflow(by: 1 << doublings)
        return wait.overflow ? retryMaxMilliseconds : min(wait.partialValue, retryMaxMilliseconds)
    }
}
