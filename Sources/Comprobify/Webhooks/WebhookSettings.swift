/// Delivering webhooks: the WEBHOOK_* settings (read in `Configuration`).
public struct WebhookSettings: Sendable {
    /// A 2xx must arrive within this long (WEBHOOK_TIMEOUT_MS).
    public var timeoutMilliseconds = 10_000
    /// The first retry waits this long, each next one twice as long (WEBHOOK_RETRY_BASE_MS).
    public var retryBaseMilliseconds = 30_000
    /// After this long from the event, a delivery that got no 2xx is failed (WEBHOOK_RETRY_FOR_S).
    public var retryForSeconds = 259_200
    /// http:// URLs to localhost and 127.0.0.1 are accepted, and those hosts
    /// are not refused as loopback (WEBHOOKS_ALLOW_HTTP=1; tests and local development).
    public var allowHTTP = false
    /// Deliveries in flight at once in this process (WEBHOOK_WORKERS); 0 delivers nothing.
    public var workers = 16
    /// How often the queue is looked at when no delivery is due (WEBHOOK_POLL_MS).
    public var pollMilliseconds = 1_000
    /// Deliveries in flight at once to one endpoint, across all processes, so
    /// that a slow endpoint holds at most this many workers.
    public var perEndpoint = 2
    /// Deliveries in flight at once for one tenant, across all processes, so
    /// that a tenant with many slow endpoints holds at most this many workers
    /// (WEBHOOK_PER_TENANT).
    public var perTenant = 8
    /// Events are kept this many days after they happened and their
    /// deliveries ended, then purged with their deliveries and attempts
    /// (WEBHOOK_RETENTION_DAYS; 0 keeps them all).
    public var retentionDays = 30
    /// When set, only these tenants' deliveries are claimed (tests, dedicated workers).
    public var tenantIDs: (@Sendable () -> [Int64])?

    /// How long recording an attempt may wait for a database connection
    /// (DB_POOL_WAIT_MS, set by `Configuration`).
    public var recordWaitMilliseconds = 2_000

    public init() {}

    /// A claimed delivery's lease, stamped again when the delivery is read:
    /// the attempt's timeout, the wait for a connection to record it, and
    /// 5 s more, so a live worker never loses it before its record.
    var leaseMilliseconds: Int { timeoutMilliseconds + recordWaitMilliseconds + 5_000 }
}
