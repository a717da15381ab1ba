import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOConcurrencyHelpers
import NIOCore
import Postgres
import TestSupport
import XCTest

@testable import Comprobify

/// A local endpoint that records every request it gets. What it answers
/// depends on the path: `/ok/...` 200; `/dead/...` 500; `/fail2/...` 500 the
/// first two times, then 200; `/slow/...` waits 3 s, then 200;
/// `/slowonce/...` waits 3 s the first time, then answers at once;
/// `/trickle/...` sends 200 at once and its body a byte every 200 ms for 10 s;
/// `/nostatus/...` answers with 600, which is no HTTP status.
final class WebhookReceiver: Sendable {
    struct Hit: Sendable {
        let path: String
        let signature: String?
        let body: [UInt8]
        let at: ContinuousClock.Instant

        var json: JSONValue? { try? JSONParser.parse(body) }
        var eventID: String? { json?["id"]?.stringValue }
    }

    let hits = NIOLockedValueBox<[Hit]>([])
    private let seen = NIOLockedValueBox<[String: Int]>([:])

    func hits(_ prefix: String) -> [Hit] {
        hits.withLockedValue { $0.filter { $0.path.hasPrefix(prefix) } }
    }

    static func run(_ body: @escaping @Sendable (WebhookReceiver, Int) async throws -> Void) async throws {
        let receiver = WebhookReceiver()
        let router = Router()
        router.post("**") { request, _ -> Response in
            let bytes = Array(try await request.body.collect(upTo: 1 << 20).readableBytesView)
            let path = request.uri.path
            receiver.hits.withLockedValue {
                $0.append(
                    Hit(path: path, signature: request.headers[HTTPField.Name("Comprobify-Signature")!], body: bytes, at: .now))
            }
            let count = receiver.seen.withLockedValue { seen -> Int in
                seen[path, default: 0] += 1
                return seen[path]!
            }
            let kind = path.split(separator: "/").first.map(String.init) ?? ""
            switch kind {
            case "dead": return Response(status: .internalServerError)
            case "fail2" where count <= 2: return Response(status: .internalServerError)
            case "slow": try await Task.sleep(for: .seconds(3))
            case "slowonce" where count == 1: try await Task.sleep(for: .seconds(3))
            case "trickle":
                return Response(
                    status: .ok,
                    body: ResponseBody { writer in
                        for _ in 0..<50 {
                            try await writer.write(ByteBuffer(string: "x"))
                            try await Task.sleep(for: .milliseconds(200))
                        }
                        try await writer.finish(nil)
                    })
            case "nostatus": return Response(status: .init(code: 600, reasonPhrase: "Nothing"))
            default: break
            }
            return Response(status: .ok)
        }
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await app.test(.live) { client in
            try await body(receiver, client.port!)
        }
    }
}

/// The tenants whose deliveries a test server's workers may claim.
final class TenantScope: Sendable {
    private let ids = NIOLockedValueBox<[Int64]>([])

    func add(_ id: Int64) { ids.withLockedValue { $0.append(id) } }
    var current: [Int64] { ids.withLockedValue { $0 } }

    /// Quick delivery settings for tests: workers on, for these tenants only.
    func configure(_ configuration: inout Configuration, timeoutMilliseconds: Int = 1_000, retryForSeconds: Int = 60) {
        configuration.webhooks.workers = 8
        configuration.webhooks.pollMilliseconds = 50
        configuration.webhooks.timeoutMilliseconds = timeoutMilliseconds
        configuration.webhooks.retryBaseMilliseconds = 200
        configuration.webhooks.retryForSeconds = retryForSeconds
        configuration.webhooks.allowHTTP = true
        configuration.webhooks.tenantIDs = { [self] in self.current }
    }
}

/// The test database as the server sees it (comprobify_app), to call stores
/// the way the SRI state machine does.
func withTestDatabase(_ body: (Database) async throws -> Void) async throws {
    let configuration = Configuration(databaseURL: TestDatabase.appURL, secretBox: TestSecrets.box)
    let pool = makePool(configuration: configuration, logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() })
    do {
        try await body(Database(pool: pool))
    } catch {
        await pool.shutdown()
        throw error
    }
    await pool.shutdown()
}

/// Waits until `condition` holds (at most `seconds`), checking every
/// `milliseconds`; when it never does, fails the test and throws, so that
/// the test stops there rather than going on from a state it did not reach.
func eventually(
    _ what: String, within seconds: Double = 15, every milliseconds: Int = 50, file: StaticString = #filePath, line: UInt = #line,
    _ condition: () async throws -> Bool
) async throws {
    let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
    while ContinuousClock.now < deadline {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(milliseconds))
    }
    XCTFail("timed out waiting for \(what)", file: file, line: line)
    throw TimedOut(what: what)
}

/// What `eventually` throws when its condition never held.
struct TimedOut: Error {
    let what: String
}

extension TestServer {
    /// POST /v1/webhooks; the webhook's id and secret.
    func createWebhook(_ key: String, url: String, events: [String]? = nil) async throws -> (id: Int64, secret: String) {
        let eventsJSON = events.map { ", \"events\": [" + $0.map { "\"\($0)\"" }.joined(separator: ", ") + "]" } ?? ""
        let reply = try await call(.post, "/v1/webhooks", key: key, json: #"{"url": "\#(url)"\#(eventsJSON)}"#)
        XCTAssertEqual(reply.status, 201, reply.text)
        return (try reply.int("webhook", "id"), try reply.string("secret"))
    }
}
