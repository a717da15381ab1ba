import Foundation
import Hummingbird
import Postgres

/// /healthz, /readyz, /metrics and /openapi.yaml.
struct OperationsController {
    let database: Database
    let openAPIDocument: String?

    func addRoutes(to router: Router<AppRequestContext>) {
        router.get("healthz") { _, _ in Reply.json([]) }
        router.get("readyz", use: ready)
        router.get("metrics") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(string: MetricsBootstrap.render()))
            )
        }
        if let openAPIDocument {
            router.get("openapi.yaml") { _, _ in
                Response(
                    status: .ok, headers: [.contentType: "application/yaml"],
                    body: .init(byteBuffer: ByteBuffer(string: openAPIDocument))
                )
            }
        }
    }

    /// 200 when the database answers a query within a second, else 503.
    @Sendable func ready(_ request: Request, context: AppRequestContext) async throws -> Response {
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { _ = try await database.pool.withConnection { try $0.query("SELECT 1") } }
                group.addTask {
                    try await Task.sleep(for: .seconds(1))
                    throw PostgresError(kind: .poolTimeout, message: "readiness check timed out")
                }
                try await group.next()
                group.cancelAll()
            }
        } catch {
            throw APIError.unavailable
        }
        return Reply.json([])
    }
}
