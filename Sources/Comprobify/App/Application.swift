import Foundation
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import Postgres
import ServiceLifecycle

/// Builds the router: the operations routes, the public tenant routes, the
/// authenticated /v1 routes (TenantRequestContext) and, when enabled, admin.
public func buildRouter(configuration: Configuration, database: Database, logger: Logger) -> Router<AppRequestContext> {
    let router = Router(context: AppRequestContext.self)
    router.add(
        middleware: RequestMiddleware(
            logger: logger, keyRateLimiter: KeyRateLimiter(rate: configuration.rateLimitPerKey, burst: configuration.rateLimitBurst)))
    OperationsController(database: database, openAPIDocument: OpenAPIDocument.load()).addRoutes(to: router)
    let tenants = TenantsController(database: database, configuration: configuration)
    tenants.addPublicRoutes(to: router)

    let v1 = router.group("v1", context: TenantRequestContext.self)
    tenants.addRoutes(to: v1)
    KeysController(database: database).addRoutes(to: v1)
    IssuersController(database: database).addRoutes(to: v1)
    CertificatesController(database: database, secretBox: configuration.secretBox).addRoutes(to: v1)
    DocumentsController(
        database: database, signing: DocumentSigning(secretBox: configuration.secretBox, algorithm: configuration.signatureAlgorithm)
    ).addRoutes(to: v1)
    WebhooksController(database: database, secretBox: configuration.secretBox, settings: configuration.webhooks).addRoutes(to: v1)

    if let adminToken = configuration.adminToken {
        AdminController(database: database, adminToken: adminToken).addRoutes(to: router)
    }
    return router
}

/// The connection pool for `configuration`, with the app role's session timeouts.
public func makePool(configuration: Configuration, logger: Logger) -> ConnectionPool {
    ConnectionPool(
        configuration: .init(
            conninfo: configuration.databaseURL,
            size: configuration.poolSize,
            waitTimeout: .milliseconds(configuration.poolWaitMilliseconds),
            sessionSettings: [
                ("statement_timeout", "\(configuration.statementTimeoutMilliseconds)ms"),
                ("idle_in_transaction_session_timeout", "\(configuration.idleInTransactionTimeoutMilliseconds)ms"),
                ("application_name", "comprobify"),
            ]
        ),
        logger: logger
    )
}

/// The whole service: HTTP server, database pool and housekeeping, as services
/// under one ServiceGroup that shuts down gracefully on SIGTERM and SIGINT.
public func buildApplication(configuration: Configuration, logger: Logger) async throws -> some ApplicationProtocol {
    _ = MetricsBootstrap.registry
    let pool = makePool(configuration: configuration, logger: logger)
    let database = Database(pool: pool, tenantMaxConnections: configuration.effectiveTenantMaxConnections)
    try await RoleCheck.verify(pool: pool)
    let router = buildRouter(configuration: configuration, database: database, logger: logger)
    let files = FileLimits.raiseSoftLimit()
    let limits = ConnectionLimits(
        maximum: min(
            configuration.httpMaxConnections, FileLimits.connectionBudget(softLimit: files.soft, poolSize: configuration.poolSize)),
        maximumPerAddress: configuration.httpMaxConnectionsPerAddress,
        requestTimeout: .seconds(Int64(configuration.httpRequestTimeoutSeconds)),
        idleTimeout: .seconds(Int64(configuration.httpIdleTimeoutSeconds))
    )
    logger.info(
        "connection limits",
        metadata: [
            "open_files_soft": "\(files.soft)", "open_files_hard": "\(files.hard)",
            "max_connections": "\(limits.maximum)", "max_connections_per_address": "\(limits.maximumPerAddress)",
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
            logger.info("listening", metadata: ["address": "\(channel.localAddress?.description ?? "?")"])
        },
        logger: logger
    )
    app.addServices(PoolService(pool: pool), HousekeepingService(database: database, logger: logger))
    app.addServices(
        WebhookService(database: database, settings: configuration.webhooks, secretBox: configuration.secretBox, logger: logger))
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

/// Purges expired idempotency keys and old sign-up attempts every few minutes.
struct HousekeepingService: Service {
    let database: Database
    let logger: Logger

    func run() async throws {
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            do {
                let removed = try await database.purgeExpired()
                if removed > 0 { logger.debug("purged expired rows", metadata: ["rows": "\(removed)"]) }
            } catch {
                logger.warning("housekeeping failed", metadata: ["error": "\(error)"])
            }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(300)) }
        }
    }
}
