import Foundation
import Hummingbird
import Logging
import NIOCore
import Postgres
import ServiceLifecycle

/// Builds the router: the operations routes, the public tenant routes, the
/// authenticated /v1 routes (TenantRequestContext) and, when enabled, admin.
public func buildRouter(configuration: Configuration, database: Database, logger: Logger) -> Router<AppRequestContext> {
    let router = Router(context: AppRequestContext.self)
    router.add(middleware: RequestMiddleware(logger: logger))
    OperationsController(database: database, openAPIDocument: OpenAPIDocument.load()).addRoutes(to: router)
    let tenants = TenantsController(database: database, configuration: configuration)
    tenants.addPublicRoutes(to: router)

    let v1 = router.group("v1", context: TenantRequestContext.self)
    tenants.addRoutes(to: v1)
    KeysController(database: database).addRoutes(to: v1)
    IssuersController(database: database).addRoutes(to: v1)
    DocumentsController(database: database).addRoutes(to: v1)

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
    let database = Database(pool: pool)
    try await RoleCheck.verify(pool: pool)
    let router = buildRouter(configuration: configuration, database: database, logger: logger)
    var app = Application(
        router: router,
        server: .http1(configuration: .init(idleTimeout: .seconds(Int64(configuration.httpIdleTimeoutSeconds)))),
        configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "comprobify"),
        onServerRunning: { channel in
            logger.info("listening", metadata: ["address": "\(channel.localAddress?.description ?? "?")"])
        },
        logger: logger
    )
    app.addServices(PoolService(pool: pool), HousekeepingService(database: database, logger: logger))
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
                let removed = try await database.pool.withConnection { try $0.query("SELECT purge_expired()")[0].decode(Int64.self, at: 0) }
                if removed > 0 { logger.debug("purged expired rows", metadata: ["rows": "\(removed)"]) }
            } catch {
                logger.warning("housekeeping failed", metadata: ["error": "\(error)"])
            }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(300)) }
        }
    }
}

/// Refuses to serve as any role row-level security does not hold to the app's
/// rules: a superuser, a role that bypasses it, a role that owns (or is a member
/// of the owner of) a table of the schema, or a member of comprobify_auth, whose
/// policies see every tenant's keys.
public enum RoleCheck {
    public struct Refused: Error, CustomStringConvertible {
        public let description: String
    }

    static let sql = """
        SELECT r.rolname::text, r.rolsuper, r.rolbypassrls,
               EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm')
                          AND pg_has_role(r.oid, c.relowner, 'MEMBER')),
               EXISTS (SELECT 1 FROM pg_roles a WHERE a.rolname = 'comprobify_auth' AND pg_has_role(r.oid, a.oid, 'MEMBER'))
          FROM pg_roles r WHERE r.rolname = current_user
        """

    public static func verify(pool: ConnectionPool) async throws {
        let row = try await pool.withConnection { try $0.query(RoleCheck.sql)[0] }
        let name = try row.decode(String.self, at: 0)
        let reasons = [
            (try row.decode(Bool.self, at: 1), "it is a superuser"),
            (try row.decode(Bool.self, at: 2), "it bypasses row-level security"),
            (try row.decode(Bool.self, at: 3), "it owns tables of the schema (row-level security does not hold owners by default)"),
            (try row.decode(Bool.self, at: 4), "it is a member of comprobify_auth, whose policies see every tenant's keys"),
        ].filter(\.0).map(\.1)
        if !reasons.isEmpty {
            throw Refused(
                description: "refusing to serve as role \"\(name)\": \(reasons.joined(separator: "; ")). Connect as comprobify_app."
            )
        }
    }
}

enum OpenAPIDocument {
    /// openapi.yaml from the working directory or beside the executable's package, if present.
    static func load() -> String? {
        let candidates = [
            FileManager.default.currentDirectoryPath + "/openapi.yaml",
            URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
                .appendingPathComponent("openapi.yaml").path,
        ]
        return candidates.lazy.compactMap { try? String(contentsOfFile: $0, encoding: .utf8) }.first
    }
}
