import Foundation
import Logging
import SRI

/// Settings of `comprobify serve`, read from the environment here and nowhere
/// else (through `env("NAME")` or `integer("NAME", range)`), so this file lists them all.
public struct Configuration: Sendable {
    /// libpq URI or conninfo string; must name the `comprobify_app` role.
    public var databaseURL: String
    public var host = "0.0.0.0"
    public var port = 8080
    /// Database connections (and the threads that drive them) for requests.
    public var poolSize = 8
    /// Reads in one round trip (pipelines) one request connection may carry
    /// at once, run by PostgreSQL one after the other.
    public var pipelineDepth = 16
    /// Request connections open to sharing by reads at a time; nil: half
    /// of `poolSize`, at least one.
    public var pipelineConnections: Int?
    /// A read goes behind the busiest shared connection with fewer than this
    /// in flight before another is opened (`ConnectionPool.Configuration.pipelinePack`);
    /// 1: the least busy, opening one whenever it may.
    public var pipelinePack = 4
    /// Database connections of the background work (sending to SRI,
    /// delivering webhooks), apart from the requests' pool.
    public var backgroundPoolSize = 4
    /// Items each background queue (SRI, webhooks) of a process may claim a
    /// second while requests keep PostgreSQL busy (RequestPressure).
    public var backgroundBusyRate = 20
    /// How long a request waits for a free connection before 503.
    public var poolWaitMilliseconds = 2_000
    public var statementTimeoutMilliseconds = 5_000
    /// How long a connection waits for an answer of the database before it
    /// is closed (`ConnectionPool.Configuration.answerLimit`):
    /// `statement_timeout` and 5 s more, for the server's own error to come first.
    public var answerLimitMilliseconds: Int { statementTimeoutMilliseconds + 5_000 }
    public var idleInTransactionTimeoutMilliseconds = 10_000
    /// A client connection that sends nothing for this long is closed.
    public var httpIdleTimeoutSeconds = 30
    /// How long in-flight requests may run after SIGTERM before the server stops anyway.
    public var shutdownGraceSeconds = 20
    /// After SIGTERM, how long the server keeps serving with /readyz at 503
    /// before it stops accepting (SHUTDOWN_READY_DELAY_S), so that a load
    /// balancer takes it out of rotation first. Counted within the grace.
    public var shutdownReadyDelaySeconds = 0
    public var logLevel: Logger.Level = .info
    /// Enables the admin routes when set.
    public var adminToken: String?
    /// METRICS_TOKEN: when set, GET /metrics asks for it as a bearer token.
    public var metricsToken: String?
    /// The fewest characters COMPROBIFY_ADMIN_TOKEN may have.
    static let shortestAdminToken = 16
    /// Sign-ups per client address per hour; 0 turns the limit off.
    public var signupRateLimit = 10
    /// Take the client address from X-Forwarded-For.
    public var trustProxy = false
    /// Open client connections in total (also kept under the open-file limit).
    public var httpMaxConnections = 10_000
    /// Open client connections from one address.
    public var httpMaxConnectionsPerAddress = 256
    /// Bytes of request bodies being read at once in this process, in MiB
    /// (`BodyBudget`): past it a body's next piece is answered 503.
    public var httpBodyBudgetMegabytes = 256
    /// Of that budget, the MiB one peer may hold (`ConnectionCounter.client`).
    public var httpBodyBudgetPerAddressMegabytes = 64
    /// From the first byte of a request to its last, headers and body together.
    public var httpRequestTimeoutSeconds = 30
    /// The period in which a client must take 32 KiB of an answer waiting for
    /// it, its connection's buffer full, or be cut off (`WriteStallHandler`).
    public var httpWriteTimeoutSeconds = 30
    /// Connections one tenant may hold at once; nil is half the pool.
    public var tenantMaxConnections: Int?
    /// About how many bytes of documents a list answer holds in memory at once
    /// (`ListBudget`); not read from the environment (tests make it small).
    public var listBytes = ListBudget.bytes
    /// SO_SNDBUF of client connections; nil leaves the kernel to size it.
    /// Not read from the environment (tests make it small, so that an answer
    /// waits in the server rather than in the kernel).
    public var httpSendBufferBytes: Int?
    /// How long an issuing request waits for the requests ahead of it on its
    /// numbering counter before it takes its number first (`NumberForecast`);
    /// not read from the environment (tests make it long).
    public var issuingTurnWait: TimeInterval = NumberForecast.defaultTurnWait
    /// Requests per second per API key (a token bucket); 0 turns the limit off.
    public var rateLimitPerKey = 100
    /// Requests a key may make at once above its rate (the bucket's size).
    public var rateLimitBurst = 200

    /// `tenantMaxConnections`, or half the pool (at least one).
    public var effectiveTenantMaxConnections: Int {
        min(poolSize, tenantMaxConnections ?? max(1, poolSize / 2))
    }
    /// Sending to SRI: the SRI_* settings.
    public var sri = SRISettings()
    /// The master key that seals issuers' private keys (COMPROBIFY_SECRET_KEY),
    /// plus earlier ones that still open (COMPROBIFY_SECRET_KEY_PREVIOUS).
    /// `serve` refuses to start without a valid one.
    public var secretBox: SecretBox
    /// SRI_SIGNATURE_ALGORITHM: rsa-sha256 (SRI.md's profile) or rsa-sha1.
    public var signatureAlgorithm: SignatureAlgorithm = .rsaSHA256
    /// Delivering webhooks: the WEBHOOK_* settings.
    public var webhooks = WebhookSettings()

    public init(databaseURL: String, secretBox: SecretBox) {
        self.databaseURL = databaseURL
        self.secretBox = secretBox
    }

    public struct Invalid: Error, CustomStringConvertible {
        public let description: String
    }

    /// The environment variables `fromEnvironment` reads, grouped as README's
    /// settings table (`serve --help` lists them).
    public static let settingNames = [
        "DATABASE_URL", "COMPROBIFY_SECRET_KEY", "COMPROBIFY_SECRET_KEY_PREVIOUS", "HOST", "PORT", "DB_POOL_SIZE",
        "DB_PIPELINE_DEPTH", "DB_PIPELINE_CONNECTIONS", "DB_PIPELINE_PACK", "DB_BACKGROUND_POOL_SIZE", "BACKGROUND_BUSY_RATE",
        "DB_POOL_WAIT_MS", "DB_STATEMENT_TIMEOUT_MS", "DB_IDLE_IN_TX_TIMEOUT_MS", "DB_TENANT_MAX_CONNECTIONS",
        "HTTP_IDLE_TIMEOUT_S", "HTTP_MAX_CONNECTIONS", "HTTP_MAX_CONNECTIONS_PER_ADDRESS", "HTTP_BODY_BUDGET_MB",
        "HTTP_BODY_BUDGET_PER_ADDRESS_MB",
        "HTTP_REQUEST_TIMEOUT_S", "HTTP_WRITE_TIMEOUT_S", "SHUTDOWN_GRACE_S", "SHUTDOWN_READY_DELAY_S", "LOG_LEVEL",
        "COMPROBIFY_ADMIN_TOKEN", "METRICS_TOKEN", "SIGNUP_RATE_LIMIT", "TRUST_PROXY", "RATE_LIMIT_PER_KEY",
        "RATE_LIMIT_BURST", "SRI_TEST_URL", "SRI_PRODUCTION_URL", "SRI_TIMEOUT_MS", "SRI_RETRY_BASE_MS", "SRI_RETRY_MAX_MS",
        "SRI_AUTHORIZATION_DELAY_MS", "SRI_LEASE_MS", "SRI_WORKERS", "SRI_POLL_MS", "SRI_RESEND_EVERY", "SRI_EXCHANGE_RETENTION_DAYS",
        "SRI_SIGNATURE_ALGORITHM", "WEBHOOK_TIMEOUT_MS", "WEBHOOK_RETRY_BASE_MS", "WEBHOOK_RETRY_FOR_S", "WEBHOOK_WORKERS",
        "WEBHOOK_POLL_MS", "WEBHOOK_PER_TENANT", "WEBHOOK_RETENTION_DAYS", "WEBHOOKS_ALLOW_HTTP",
    ]

    /// Reads every setting from `environment`, refusing malformed values:
    /// every setting refused is named, in one error, so that a start fixes
    /// them all at once.
    public static func fromEnvironment(_ environment: [String: String]) throws -> Configuration {
        var problems: [String] = []
        func env(_ name: String) -> String? {
            guard let value = environment[name], !value.isEmpty else { return nil }
            return value
        }
        /// nil, with the problem noted, when `name` is set to something else.
        func integer(_ name: String, _ range: ClosedRange<Int>) -> Int? {
            guard let text = env(name) else { return nil }
            // Digits only: Int("+8") would take a sign, as it would "-0".
            guard Format.digits(text), let value = Int(text), range.contains(value) else {
                problems.append("\(name) must be an integer from \(range.lowerBound) to \(range.upperBound), got \"\(text)\"")
                return nil
            }
            return value
        }
        let url = env("DATABASE_URL")
        if url == nil { problems.append("DATABASE_URL is not set (a libpq URI or conninfo string for the comprobify_app role)") }
        var secretBox: SecretBox?
        do {
            let previous = (env("COMPROBIFY_SECRET_KEY_PREVIOUS") ?? "").split(separator: ",")
                .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            secretBox = try SecretBox(currentKey: env("COMPROBIFY_SECRET_KEY"), previousKeys: previous)
        } catch {
            problems.append(error.description)
        }
        // Read on with stand-ins when those two are refused, to name every
        // other setting refused too; a configuration with a problem is never returned.
        var configuration = Configuration(
            databaseURL: url ?? "", secretBox: try secretBox ?? SecretBox(currentKey: String(repeating: "A", count: 43) + "="))
        configuration.host = env("HOST") ?? configuration.host
        configuration.port = integer("PORT", 0...65535) ?? configuration.port
        configuration.poolSize = integer("DB_POOL_SIZE", 1...256) ?? configuration.poolSize
        configuration.pipelineDepth = integer("DB_PIPELINE_DEPTH", 1...64) ?? configuration.pipelineDepth
        configuration.pipelineConnections = integer("DB_PIPELINE_CONNECTIONS", 1...256)
        configuration.pipelinePack = integer("DB_PIPELINE_PACK", 1...64) ?? configuration.pipelinePack
        configuration.backgroundPoolSize = integer("DB_BACKGROUND_POOL_SIZE", 1...64) ?? configuration.backgroundPoolSize
        configuration.backgroundBusyRate = integer("BACKGROUND_BUSY_RATE", 1...100_000) ?? configuration.backgroundBusyRate
        configuration.poolWaitMilliseconds = integer("DB_POOL_WAIT_MS", 1...600_000) ?? configuration.poolWaitMilliseconds
        configuration.statementTimeoutMilliseconds =
            integer("DB_STATEMENT_TIMEOUT_MS", 1...3_600_000) ?? configuration.statementTimeoutMilliseconds
        configuration.idleInTransactionTimeoutMilliseconds =
            integer("DB_IDLE_IN_TX_TIMEOUT_MS", 1...3_600_000) ?? configuration.idleInTransactionTimeoutMilliseconds
        configuration.httpIdleTimeoutSeconds = integer("HTTP_IDLE_TIMEOUT_S", 1...3600) ?? configuration.httpIdleTimeoutSeconds
        configuration.shutdownGraceSeconds = integer("SHUTDOWN_GRACE_S", 1...3600) ?? configuration.shutdownGraceSeconds
        configuration.shutdownReadyDelaySeconds =
            integer("SHUTDOWN_READY_DELAY_S", 0...300) ?? configuration.shutdownReadyDelaySeconds
        if configuration.shutdownReadyDelaySeconds != 0 && configuration.shutdownReadyDelaySeconds >= configuration.shutdownGraceSeconds {
            problems.append("SHUTDOWN_READY_DELAY_S must be shorter than SHUTDOWN_GRACE_S")
        }
        if let level = env("LOG_LEVEL") {
            if let parsed = Logger.Level(rawValue: level.lowercased()) {
                configuration.logLevel = parsed
            } else {
                problems.append("LOG_LEVEL must be one of trace, debug, info, notice, warning, error, critical")
            }
        }
        if let token = env("COMPROBIFY_ADMIN_TOKEN") {
            // The admin routes are not rate-limited: a short token could be
            // guessed. Whitespace around it is refused rather than trimmed: a
            // secret file's newline would otherwise make every admin call 401
            // with nothing said.
            if token.unicodeScalars.count < Configuration.shortestAdminToken {
                problems.append(
                    "COMPROBIFY_ADMIN_TOKEN must be at least \(Configuration.shortestAdminToken) characters (openssl rand -hex 32 makes one)"
                )
            } else if token.trimmingCharacters(in: .whitespacesAndNewlines) != token {
                problems.append("COMPROBIFY_ADMIN_TOKEN must not start or end with whitespace or a line break")
            } else {
                configuration.adminToken = token
            }
        }
        if let token = env("METRICS_TOKEN") {
            // As the admin token: long enough not to be guessed, no whitespace around it.
            if token.unicodeScalars.count >= Configuration.shortestAdminToken,
                token.trimmingCharacters(in: .whitespacesAndNewlines) == token
            {
                configuration.metricsToken = token
            } else {
                problems.append(
                    "METRICS_TOKEN must be at least \(Configuration.shortestAdminToken) characters, with no whitespace around them (openssl rand -hex 32 makes one)"
                )
            }
        }
        configuration.signupRateLimit = integer("SIGNUP_RATE_LIMIT", 0...1_000_000) ?? configuration.signupRateLimit
        if let proxy = env("TRUST_PROXY") {
            if proxy == "0" || proxy == "1" {
                configuration.trustProxy = proxy == "1"
            } else {
                problems.append("TRUST_PROXY must be 0 or 1")
            }
        }
        configuration.httpMaxConnections = integer("HTTP_MAX_CONNECTIONS", 1...1_000_000) ?? configuration.httpMaxConnections
        configuration.httpMaxConnectionsPerAddress =
            integer("HTTP_MAX_CONNECTIONS_PER_ADDRESS", 1...1_000_000) ?? configuration.httpMaxConnectionsPerAddress
        configuration.httpBodyBudgetMegabytes = integer("HTTP_BODY_BUDGET_MB", 1...1_048_576) ?? configuration.httpBodyBudgetMegabytes
        configuration.httpBodyBudgetPerAddressMegabytes =
            integer("HTTP_BODY_BUDGET_PER_ADDRESS_MB", 1...1_048_576) ?? configuration.httpBodyBudgetPerAddressMegabytes
        configuration.httpRequestTimeoutSeconds = integer("HTTP_REQUEST_TIMEOUT_S", 1...3600) ?? configuration.httpRequestTimeoutSeconds
        configuration.httpWriteTimeoutSeconds = integer("HTTP_WRITE_TIMEOUT_S", 1...3600) ?? configuration.httpWriteTimeoutSeconds
        configuration.tenantMaxConnections = integer("DB_TENANT_MAX_CONNECTIONS", 1...256)
        configuration.rateLimitPerKey = integer("RATE_LIMIT_PER_KEY", 0...1_000_000) ?? configuration.rateLimitPerKey
        configuration.rateLimitBurst = integer("RATE_LIMIT_BURST", 1...1_000_000) ?? configuration.rateLimitBurst
        configuration.sri.testURL = env("SRI_TEST_URL") ?? configuration.sri.testURL
        configuration.sri.productionURL = env("SRI_PRODUCTION_URL") ?? configuration.sri.productionURL
        for url in [configuration.sri.testURL, configuration.sri.productionURL]
        where !(url.hasPrefix("https://") || url.hasPrefix("http://")) || SRISettings.host(of: url) == nil {
            problems.append("SRI_TEST_URL and SRI_PRODUCTION_URL must be http(s) URLs naming a host, got \"\(url)\"")
        }
        // Production documents sent to SRI's test service would be decided
        // there, for good; sandbox ones sent to production, refused.
        for (name, url, environment) in [
            ("SRI_PRODUCTION_URL", configuration.sri.productionURL, Environment.production),
            ("SRI_TEST_URL", configuration.sri.testURL, Environment.sandbox),
        ] {
            if let other = SRISettings.crossedService(url, for: environment) {
                problems.append("\(name) points at \(other): \(url)")
            }
        }
        configuration.sri.timeoutMilliseconds = integer("SRI_TIMEOUT_MS", 1...3_600_000) ?? configuration.sri.timeoutMilliseconds
        configuration.sri.retryBaseMilliseconds =
            integer("SRI_RETRY_BASE_MS", 1...86_400_000) ?? configuration.sri.retryBaseMilliseconds
        configuration.sri.retryMaxMilliseconds = integer("SRI_RETRY_MAX_MS", 1...86_400_000) ?? configuration.sri.retryMaxMilliseconds
        configuration.sri.authorizationDelayMilliseconds =
            integer("SRI_AUTHORIZATION_DELAY_MS", 0...86_400_000) ?? configuration.sri.authorizationDelayMilliseconds
        configuration.sri.leaseMilliseconds = integer("SRI_LEASE_MS", 1000...86_400_000) ?? configuration.sri.leaseMilliseconds
        configuration.sri.workers = integer("SRI_WORKERS", 0...1024) ?? configuration.sri.workers
        configuration.sri.pollMilliseconds = integer("SRI_POLL_MS", 10...600_000) ?? configuration.sri.pollMilliseconds
        configuration.sri.resendEvery = integer("SRI_RESEND_EVERY", 0...1_000_000) ?? configuration.sri.resendEvery
        if configuration.sri.resendEvery == 1 {
            // Every exchange a resend: SRI's 43 to each, and no authorization asked for ever.
            problems.append("SRI_RESEND_EVERY must be 0 (never) or at least 2: with 1 no authorization would be asked again")
        }
        configuration.sri.exchangeRetentionDays =
            integer("SRI_EXCHANGE_RETENTION_DAYS", 0...36_500) ?? configuration.sri.exchangeRetentionDays
        // A lease, renewed when the document is read, must outlast the
        // exchange and the wait for a connection to record its outcome.
        if configuration.sri.leaseMilliseconds <= configuration.sri.timeoutMilliseconds + configuration.poolWaitMilliseconds {
            problems.append("SRI_LEASE_MS must be longer than SRI_TIMEOUT_MS plus DB_POOL_WAIT_MS")
        }
        if configuration.sri.retryMaxMilliseconds < configuration.sri.retryBaseMilliseconds {
            problems.append("SRI_RETRY_MAX_MS must not be shorter than SRI_RETRY_BASE_MS")
        }
        if let algorithm = env("SRI_SIGNATURE_ALGORITHM") {
            if let parsed = SignatureAlgorithm(rawValue: algorithm) {
                configuration.signatureAlgorithm = parsed
            } else {
                problems.append("SRI_SIGNATURE_ALGORITHM must be rsa-sha256 or rsa-sha1")
            }
        }
        configuration.webhooks.timeoutMilliseconds =
            integer("WEBHOOK_TIMEOUT_MS", 1...600_000) ?? configuration.webhooks.timeoutMilliseconds
        configuration.webhooks.recordWaitMilliseconds = configuration.poolWaitMilliseconds
        configuration.webhooks.retryBaseMilliseconds =
            integer("WEBHOOK_RETRY_BASE_MS", 1...86_400_000) ?? configuration.webhooks.retryBaseMilliseconds
        configuration.webhooks.retryForSeconds =
            integer("WEBHOOK_RETRY_FOR_S", 0...31_536_000) ?? configuration.webhooks.retryForSeconds
        configuration.webhooks.workers = integer("WEBHOOK_WORKERS", 0...1024) ?? configuration.webhooks.workers
        configuration.webhooks.pollMilliseconds = integer("WEBHOOK_POLL_MS", 10...600_000) ?? configuration.webhooks.pollMilliseconds
        configuration.webhooks.perTenant = integer("WEBHOOK_PER_TENANT", 1...10_000) ?? configuration.webhooks.perTenant
        configuration.webhooks.retentionDays =
            integer("WEBHOOK_RETENTION_DAYS", 0...36_500) ?? configuration.webhooks.retentionDays
        if let allow = env("WEBHOOKS_ALLOW_HTTP") {
            if allow == "0" || allow == "1" {
                configuration.webhooks.allowHTTP = allow == "1"
            } else {
                problems.append("WEBHOOKS_ALLOW_HTTP must be 0 or 1")
            }
        }
        guard problems.isEmpty else { throw Invalid(description: problems.joined(separator: "; ")) }
        return configuration
    }
}
