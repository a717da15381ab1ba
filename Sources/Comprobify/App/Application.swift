import Foundation
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import Postgres
import ServiceLifecycle

/// Builds the router: the operations routes, the public tenant routes, the
/// authenticated /v1 routes (TenantRequestContext) and, when enabled, admin.
/// `shutdown`, when given, makes /readyz answer 503 once the process begins to stop.
/// Every GET route also answers HEAD (RFC 9110, 9.3.2): the GET's status and
/// headers, its Content-Length included, and no body (NIO sends none for a
/// HEAD, so its errors have none either). The documents list, which may be
/// streamed, has a HEAD of its own (`Reply.head(of:)`).
public func buildRouter(
    configuration: Configuration, database: Database, logger: Logger, shutdown: ShutdownSignal? = nil, probe: Database? = nil
) -> Router<AppRequestContext> {
    let router = Router(context: AppRequestContext.self, options: .autoGenerateHeadEndpoints)
    router.add(
        middleware: RequestMiddleware(
            logger: logger, keyRateLimiter: KeyRateLimiter(rate: configuration.rateLimitPerKey, burst: configuration.rateLimitBurst),
            poolWait: .milliseconds(configuration.poolWaitMilliseconds), trustProxy: configuration.trustProxy))
    OperationsController(
        database: probe ?? database, openAPIDocument: OpenAPIDocument.load(), shutdown: shutdown,
        metricsToken: configuration.metricsToken
    ).addRoutes(to: router)
    let tenants = TenantsController(database: database, configuration: configuration)
    tenants.addPublicRoutes(to: router)

    let v1 = router.group("v1", context: TenantRequestContext.self)
    tenants.addRoutes(to: v1)
    KeysController(database: database).addRoutes(to: v1)
    IssuersController(database: database).addRoutes(to: v1)
    CertificatesController(database: database, secretBox: configuration.secretBox).addRoutes(to: v1)
    DocumentsController(
        database: database,
        signing: DocumentSigning(
            secretBox: configuration.secretBox, algorithm: configuration.signatureAlgorithm,
            numbers: NumberForecast(turnWait: configuration.issuingTurnWait)),
        listBytes: max(1, configuration.listBytes),
        streamPatience: .seconds(configuration.httpRequestTimeoutSeconds)
    ).addRoutes(to: v1)
    SubmissionsController(database: database).addRoutes(to: v1)
    WebhooksController(database: database, secretBox: configuration.secretBox, settings: configuration.webhooks).addRoutes(to: v1)

    if let adminToken = configuration.adminToken {
        AdminController(database: database, adminToken: adminToken).addRoutes(to: router)
    }
    return router
}

/// The requests' connection pool for `configuration`, with the app role's
/// session timeouts; with `background`, the background work's pool, whose
/// sessions are named apart (RequestPressure counts the requests' sessions)
/// and commit without waiting for the WAL flush: a record lost to a database
/// crash is made again (a resent comprobante gets 43, a webhook is delivered
/// at least once), and the issuing transactions, which hold a counter's row
/// lock through their commit, do not queue behind the background's flushes.
/// `size` and `name`, when given, override the pool's (the readiness probe's
/// pool: `makeProbePool`).
public func makePool(
    configuration: Configuration, logger: Logger, background: Bool = false, size: Int? = nil, name: String? = nil
) -> ConnectionPool {
    var settings = [
        // What migration 0029 gives the role and every definer function pins,
        // set again here: the role can change its own defaults (ALTER ROLE ...
        // SET), and the server's statements must not find a temporary table
        // in the place of one of the schema's.
        ("search_path", "pg_catalog, public, pg_temp"),
        ("statement_timeout", "\(configuration.statementTimeoutMilliseconds)ms"),
        ("idle_in_transaction_session_timeout", "\(configuration.idleInTransactionTimeoutMilliseconds)ms"),
        ("application_name", background ? RequestPressure.backgroundApplicationName : RequestPressure.requestApplicationName),
        // The isolation the server's code is written for, for the same reason:
        // read committed where no level is asked (promotion asks for
        // serializable). Not the defaults an operator sets on purpose: a
        // database made read-only (default_transaction_read_only) stops writes
        // with 503s, and synchronous_commit stays as replication wants it.
        ("default_transaction_isolation", "read committed"),
    ]
    if background { settings.append(("synchronous_commit", "off")) }
    return ConnectionPool(
        configuration: .init(
            conninfo: configuration.databaseURL,
            size: size ?? (background ? configuration.backgroundPoolSize : configuration.poolSize),
            waitTimeout: .milliseconds(configuration.poolWaitMilliseconds),
            sessionSettings: settings,
            name: name ?? (background ? "background" : "requests"),
            pipelineDepth: configuration.pipelineDepth,
            pipelineConnections: background ? nil : configuration.pipelineConnections,
            pipelinePack: configuration.pipelinePack,
            answerLimit: .milliseconds(configuration.answerLimitMilliseconds)
        ),
        logger: logger
    )
}

/// The readiness probe's pool: one connection of its own, so that /readyz
/// asks whether the database answers, not whether a request connection is
/// free (requests that keep every one busy for a second would otherwise take
/// every instance out of a balancer's rotation at once).
func makeProbePool(configuration: Configuration, logger: Logger) -> ConnectionPool {
    makePool(configuration: configuration, logger: logger, size: 1, name: "probe")
}

/// The whole service: HTTP server, database pool and housekeeping, as services
/// under one ServiceGroup that shuts down gracefully on SIGTERM and SIGINT.
/// `shutdown`, when given, is set as the process begins to stop (the caller
/// runs `ShutdownSignal.Notice` after the application): the queues then stop
/// claiming at once, not at their turn.
public func buildApplication(
    configuration: Configuration, logger: Logger, shutdown: ShutdownSignal? = nil
) async throws -> some ApplicationProtocol {
    _ = MetricsBootstrap.registry
    ServiceMetrics.exportAtZero()
    let pool = makePool(configuration: configuration, logger: logger)
    let database = Database(pool: pool, tenantMaxConnections: configuration.effectiveTenantMaxConnections)
    try await RoleCheck.verify(pool: pool)
    try await SchemaCheck.verify(pool: pool)
    let probePool = makeProbePool(configuration: configuration, logger: logger)
    let router = buildRouter(
        configuration: configuration, database: database, logger: logger, shutdown: shutdown, probe: Database(pool: probePool))
    let files = FileLimits.raiseSoftLimit()
    let databaseConnections = configuration.poolSize + configuration.backgroundPoolSize + 1
    guard FileLimits.reserved(softLimit: files.soft) + databaseConnections < files.soft else {
        throw FileLimits.TooLow(
            description:
                "the open-file limit (\(files.soft), hard \(files.hard)) does not hold the \(databaseConnections) database connections "
                + "(DB_POOL_SIZE, DB_BACKGROUND_POOL_SIZE and the probe's) and the process's own files, let alone clients: "
                + "raise it (ulimit -n, systemd's LimitNOFILE, docker's --ulimit nofile) or lower the pools")
    }
    let budget = FileLimits.connectionBudget(softLimit: files.soft, poolSize: databaseConnections)
    if budget < configuration.httpMaxConnections {
        logger.warning(
            "the open-file limit leaves room for fewer client connections than HTTP_MAX_CONNECTIONS: raise it (ulimit -n, systemd's LimitNOFILE, docker's --ulimit nofile) to serve that many",
            metadata: [
                "open_files_soft": "\(files.soft)", "open_files_hard": "\(files.hard)", "max_connections": "\(budget)",
                "http_max_connections": "\(configuration.httpMaxConnections)",
            ])
    }
    let limits = ConnectionLimits(
        maximum: min(configuration.httpMaxConnections, budget),
        maximumPerAddress: configuration.httpMaxConnectionsPerAddress,
        requestTimeout: .seconds(Int64(configuration.httpRequestTimeoutSeconds)),
        idleTimeout: .seconds(Int64(configuration.httpIdleTimeoutSeconds)),
        writeTimeout: .seconds(Int64(configuration.httpWriteTimeoutSeconds)),
        sendBufferBytes: configuration.httpSendBufferBytes
    )
    BodyBudget.shared.setLimits(
        total: configuration.httpBodyBudgetMegabytes << 20, perPeer: configuration.httpBodyBudgetPerAddressMegabytes << 20)
    logger.info(
        "connection limits",
        metadata: [
            "open_files_soft": "\(files.soft)", "open_files_hard": "\(files.hard)",
            "max_connections": "\(limits.maximum)", "max_connections_per_address": "\(limits.maximumPerAddress)",
            "body_budget_mb": "\(configuration.httpBodyBudgetMegabytes)",
            "body_budget_per_address_mb": "\(configuration.httpBodyBudgetPerAddressMegabytes)",
        ])
    var app = Application(
        router: router,
        server: HTTPServerBuilder { responder in GuardedHTTP1Channel(responder: responder, limits: limits) },
        configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "comprobify"),
        onServerRunning: { channel in
            // Accept errors (no file descriptors left) pause accepting rather than end the server.
            try? await channel.eventLoop.submit {
                try channel.pipeline.syncOperations.addHandler(AcceptErrorHandler(logger: logger), position: .first)
            }.get()
            logger.info(
                "listening", metadata: ["address": "\(channel.localAddress?.description ?? "?")", "allocator": "\(Allocator.description)"])
        },
        logger: logger
    )
    // The background work has its own pool: it never takes a connection a
    // request is waiting for, and its sessions are not counted as requests'.
    let backgroundPool = makePool(configuration: configuration, logger: logger, background: true)
    let backgroundDatabase = Database(pool: backgroundPool, tenantMaxConnections: configuration.backgroundPoolSize)
    let background = BackgroundWork(
        pressure: RequestPressure(database: backgroundDatabase, busyRate: configuration.backgroundBusyRate),
        sampling: configuration.sri.workers > 0 || configuration.webhooks.workers > 0, logger: logger)
    // Services stop in reverse order: the webhook and SRI workers first (their
    // exchanges in flight finish), then the SOAP client, then the pressure
    // sampling, then the pools.
    let sri = SRIClient(
        settings: .init(timeoutMilliseconds: configuration.sri.timeoutMilliseconds, connectionsPerHost: configuration.sri.workers),
        eventLoopGroup: BackgroundWork.eventLoopGroup)
    app.addServices(
        PoolService(pool: pool), PoolService(pool: backgroundPool), PoolService(pool: probePool),
        HousekeepingService(
            database: database, webhookRetentionDays: configuration.webhooks.retentionDays,
            exchangeRetentionDays: configuration.sri.exchangeRetentionDays, logger: logger),
        background, sri,
        SubmissionService(
            database: backgroundDatabase, client: sri, settings: configuration.sri, logger: logger, pressure: background.pressure,
            shutdown: shutdown)
    )
    app.addServices(
        WebhookService(
            database: backgroundDatabase, settings: configuration.webhooks, secretBox: configuration.secretBox, logger: logger,
            eventLoopGroup: BackgroundWork.eventLoopGroup, pressure: background.pressure, shutdown: shutdown))
    return app
}

/// Closes the pool after the HTTP server has stopped (services stop in reverse order).
struct PoolService: Service {
    let pool: ConnectionPool

    func run() async throws {
        try? await gracefulShutdown()
        await pool.shutdown()
    }
}

/// Every few minutes: purges expired idempotency keys and old sign-up
/// attempts, webhook events past their retention with their deliveries
/// and attempts, and SRI exchanges past theirs.
struct HousekeepingService: Service {
    let database: Database
    /// WEBHOOK_RETENTION_DAYS; 0 keeps the webhook history.
    let webhookRetentionDays: Int
    /// SRI_EXCHANGE_RETENTION_DAYS; 0 keeps every exchange.
    let exchangeRetentionDays: Int
    let logger: Logger

    func run() async throws {
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            // A call removes at most a batch: a backlog is taken a batch at a
            // time, each inside the statement timeout.
            await purge("purged expired rows", batch: Database.purgeBatch) { try await database.purgeExpired() }
            if webhookRetentionDays > 0 {
                let days = webhookRetentionDays
                await purge("purged webhook events past their retention", batch: Database.webhookPurgeBatch) {
                    try await database.purgeWebhookHistory(days: days)
                }
            }
            if exchangeRetentionDays > 0 {
                let days = exchangeRetentionDays
                await purge("purged SRI exchanges past their retention", batch: Database.exchangePurgeBatch) {
                    try await database.purgeSRIExchanges(days: days)
                }
            }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(300)) }
        }
    }

    /// Calls `step` until it removes less than a full batch.
    private func purge(_ message: Logger.Message, batch: Int64, _ step: () async throws -> Int64) async {
        do {
            var removed: Int64 = 0
            var last: Int64
            repeat {
                last = try await step()
                removed += last
            } while last >= batch && !Task.isCancelled && !Task.isShuttingDownGracefully
            if removed > 0 { logger.debug(message, metadata: ["rows": "\(removed)"]) }
        } catch  where isStopping(error) {
            // The process is stopping (a start that failed, say): nothing went wrong here.
        } catch {
            logger.warning("housekeeping failed", metadata: ["error": "\(error)"])
        }
    }
}
