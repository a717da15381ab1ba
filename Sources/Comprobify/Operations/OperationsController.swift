import Foundation
import Hummingbird
import NIOConcurrencyHelpers
import Postgres

/// /healthz, /readyz, /metrics and /openapi.yaml.
struct OperationsController {
    let database: Database
    let openAPIDocument: String?
    /// Set once the process begins to stop: /readyz answers 503 from then on.
    var shutdown: ShutdownSignal? = nil

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

    /// The answer of /readyz once the process is stopping.
    static let stopping = APIError(
        status: .serviceUnavailable, code: "SERVICE_UNAVAILABLE", detail: "The server is stopping.", headers: [:])

    /// 503 once the process is stopping (`shutdown`); otherwise
    /// 200 when the database answers a query within a second, else 503 after
    /// that second. The probe runs on its own: a blocking libpq call cannot be
    /// cancelled, and the answer must not wait for it (a database host that
    /// drops packets would otherwise hold it for minutes).
    @Sendable func ready(_ request: Request, context: AppRequestContext) async throws -> Response {
        if shutdown?.requested == true { throw OperationsController.stopping }
        let pending = NIOLockedValueBox<CheckedContinuation<Bool, Never>?>(nil)
        let answered = await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            pending.withLockedValue { $0 = continuation }
            let finish: @Sendable (Bool) -> Void = { ok in
                pending.withLockedValue { waiting in
                    waiting?.resume(returning: ok)
                    waiting = nil
                }
            }
            Task { finish((try? await database.ping()) != nil) }
            Task {
                try? await Task.sleep(for: .seconds(1))
                finish(false)
            }
        }
        guard answered else { throw APIError.unavailable }
        return Reply.json([])
    }
}
