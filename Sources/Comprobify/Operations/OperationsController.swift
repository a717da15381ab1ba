import Foundation
import Hummingbird
import NIOConcurrencyHelpers
import Postgres

/// /healthz, /readyz, /metrics and /openapi.yaml.
struct OperationsController {
    let openAPIDocument: String?
    /// Set once the process begins to stop: /readyz answers 503 from then on.
    let shutdown: ShutdownSignal?
    /// /readyz's question to the database, shared by the probes that ask at once.
    let ping: SharedPing
    /// METRICS_TOKEN: when set, /metrics answers only to it as a bearer token.
    let metricsToken: String?

    init(database: Database, openAPIDocument: String?, shutdown: ShutdownSignal? = nil, metricsToken: String? = nil) {
        self.openAPIDocument = openAPIDocument
        self.shutdown = shutdown
        self.ping = SharedPing { (try? await database.ping()) != nil }
        self.metricsToken = metricsToken
    }

    func addRoutes(to router: Router<AppRequestContext>) {
        router.get("healthz") { _, _ in Reply.json([]) }
        router.get("readyz", use: ready)
        router.get("metrics") { [metricsToken] _, context in
            if let metricsToken {
                guard context.presents(metricsToken) else {
                    throw APIError.unauthorized("A valid metrics token is required (Authorization: Bearer <METRICS_TOKEN>).")
                }
            }
            return Response(
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
            let ping = self.ping
            Task { finish(await ping.answer()) }
            Task {
                try? await Task.sleep(for: .seconds(1))
                finish(false)
            }
        }
        guard answered else { throw APIError.unavailable }
        return Reply.json([])
    }
}

/// One question to the database at a time, whatever the number of callers:
/// a caller that comes while a ping is in flight waits for that ping's answer.
/// /readyz is open to anyone, and its pool has one connection: a flood of
/// probes, each with a ping of its own, would queue on it past their second
/// and answer 503 while the database was fine.
final class SharedPing: Sendable {
    private let ping: @Sendable () async -> Bool
    private let inFlight = NIOLockedValueBox<Task<Bool, Never>?>(nil)

    init(_ ping: @escaping @Sendable () async -> Bool) {
        self.ping = ping
    }

    /// Whether the database answered: the ping in flight's answer, or a new ping's.
    func answer() async -> Bool {
        let task = inFlight.withLockedValue { current in
            if let current { return current }
            let ping = self.ping
            let started = Task { await ping() }
            current = started
            return started
        }
        let answered = await task.value
        inFlight.withLockedValue { current in
            if current == task { current = nil }
        }
        return answered
    }
}
