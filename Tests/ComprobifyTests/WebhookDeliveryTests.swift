import Foundation
import HTTPTypes
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Postgres
import TestSupport
import XCTest

@testable import Comprobify

/// Issue 16: deliveries, signed, retried, isolated from each other.
final class WebhookDeliveryTests: XCTestCase {
    /// A document's JSON for events recorded without a real document.
    static func document(_ tag: String) -> JSONValue {
        .object([("accessKey", .string(tag)), ("status", .string("AUTHORIZED"))])
    }

    /// Records an event for `tenant` in its own transaction, as the SRI state machine will.
    static func record(
        _ database: Database, tenant: Int64, type: String = "document.authorized", tag: String,
        environment: Environment = .sandbox
    ) async throws -> String {
        try await database.transaction(forTenantID: tenant) { transaction, _ in
            let id = try WebhooksStore.recordEvent(transaction, type: type, document: document(tag), environment: environment)
            try transaction.commit()
            return id
        }
    }

    /// Claims the tenant's one due delivery under a lease of its own and
    /// reads it, as a worker does.
    static func claimAndLoad(_ database: Database, tenant: Int64, leaseMilliseconds: Int) async throws -> (WebhooksStore.Pending, UUID) {
        let lease = UUID()
        let claimed = try await database.claimWebhookDeliveries(
            lease: lease, limit: 1, leaseMilliseconds: leaseMilliseconds, perEndpoint: 2, perTenant: 8, tenants: [tenant])
        let delivery = try XCTUnwrap(claimed.first).deliveryID
        let loaded = try await database.transaction(forTenantID: tenant) { transaction, _ in
            try WebhooksStore.load(transaction, tenantID: tenant, deliveryID: delivery, lease: lease, leaseMilliseconds: leaseMilliseconds)
        }
        return (try XCTUnwrap(loaded), lease)
    }

    /// The hex HMAC-SHA256 of `message` with `key`, computed by the openssl tool,
    /// not by the service's code.
    static func opensslHMAC(key: String, message: [UInt8]) throws -> String {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("hmac-\(UUID().uuidString)")
        try Data(message).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        let (status, output) = try runTool("openssl", ["dgst", "-sha256", "-hmac", key, "-r", file.path])
        XCTAssertEqual(status, 0, output)
        return String(output.prefix(64))
    }

    func testTheDecisionIsDeliveredSignedToSubscribedEndpointsOfItsTenantAndEnvironment() async throws {
        let scope = TenantScope()
        try await WebhookReceiver.run { receiver, port in
            try await TestServer.run(configure: { scope.configure(&$0) }) { server in
                let tenant = try await server.activeTenant()
                scope.add(tenant.id)
                let other = try await server.activeTenant()
                scope.add(other.id)
                let all = try await server.createWebhook(tenant.key, url: "http://127.0.0.1:\(port)/ok/all")
                let returnedOnly = try await server.createWebhook(
                    tenant.key, url: "http://127.0.0.1:\(port)/ok/returned", events: ["document.returned"])
                let others = try await server.createWebhook(other.key, url: "http://127.0.0.1:\(port)/ok/other")
                // Deliveries are written with their event, in its transaction:
                // an endpoint that must not get an event has no row for it.
                func deliveries(to endpoint: Int64) throws -> [String] {
                    try TestDatabase.query("SELECT event_id FROM webhook_deliveries WHERE endpoint_id = $1 ORDER BY id", [endpoint]).rows
                        .map {
                            try $0.decode(String.self, at: 0)
                        }
                }

                // A real document, decided in a transaction of its tenant, as the SRI state machine does.
                let issuer = try await server.createIssuer(tenant.key)
                let issued = try await server.issue(tenant.key, issuer: issuer)
                XCTAssertEqual(issued.status, 201, issued.text)
                let documentID = try issued.int("document", "id")
                let accessKey = try issued.string("document", "accessKey")
                let eventID = try await withTestDatabaseValue { database in
                    try await database.transaction(forTenantID: tenant.id) { transaction, _ -> String? in
                        try transaction.query(
                            """
                            UPDATE document_submissions
                               SET status = 'AUTHORIZED', authorization_number = \(accessKey), authorized_at = now(),
                                   authorization_xml = '\\x3c612f3e'::bytea, next_attempt_at = NULL, updated_at = now()
                             WHERE document_id = \(documentID)
                            """)
                        let id = try WebhooksStore.recordDecision(transaction, documentID: documentID)
                        try transaction.commit()
                        return id
                    }
                }
                let id = try XCTUnwrap(eventID)
                XCTAssertNotNil(id.wholeMatch(of: /evt_[0-9a-f]{32}/))

                try await eventually("the delivery") { !receiver.hits("/ok/all").isEmpty }
                let hit = try XCTUnwrap(receiver.hits("/ok/all").first)
                let body = try XCTUnwrap(hit.json)
                XCTAssertEqual(body["id"], .string(id))
                XCTAssertEqual(body["type"], .string("document.authorized"))
                XCTAssertNotNil(body["createdAt"]?.stringValue)
                XCTAssertEqual(body["data"]?["document"]?["accessKey"], .string(accessKey))
                XCTAssertEqual(body["data"]?["document"]?["status"], .string("AUTHORIZED"), "the document as it reads after the decision")
                XCTAssertEqual(body["data"]?["document"]?["id"]?.intValue, documentID)

                // The signature, checked with openssl's HMAC.
                let signature = try XCTUnwrap(hit.signature)
                let match = try XCTUnwrap(signature.wholeMatch(of: /t=([0-9]+),v1=([0-9a-f]{64})/))
                let timestamp = String(match.1)
                XCTAssertLessThan(abs(Double(timestamp)! - Date().timeIntervalSince1970), 60)
                XCTAssertEqual(
                    String(match.2), try Self.opensslHMAC(key: all.secret, message: Array("\(timestamp).".utf8) + hit.body))
                XCTAssertNotEqual(
                    String(match.2), try Self.opensslHMAC(key: all.secret + "x", message: Array("\(timestamp).".utf8) + hit.body))

                // Not to the endpoint subscribed to other events, nor to the other tenant's.
                XCTAssertEqual(try deliveries(to: returnedOnly.id), [], "the events filter is honoured")
                XCTAssertEqual(try deliveries(to: others.id), [], "another tenant's endpoint gets nothing")
                XCTAssertEqual(try deliveries(to: all.id), [id])
                XCTAssertEqual(receiver.hits("/ok/returned").count, 0, "the events filter is honoured")
                XCTAssertEqual(receiver.hits("/ok/other").count, 0, "another tenant's endpoint receives nothing")
                XCTAssertEqual(receiver.hits("/ok/all").count, 1)

                // An event of the other environment reaches no sandbox endpoint.
                let (production, returned) = try await withTestDatabaseValue { database in
                    (
                        try await Self.record(database, tenant: tenant.id, tag: "production", environment: .production),
                        try await Self.record(database, tenant: tenant.id, type: "document.returned", tag: "returned")
                    )
                }
                XCTAssertEqual(try deliveries(to: all.id), [id, returned], "the returned event, not the production one")
                XCTAssertEqual(try deliveries(to: returnedOnly.id), [returned])
                XCTAssertEqual(
                    try TestDatabase.scalar("SELECT count(*) FROM webhook_deliveries WHERE event_id = $1", [production], as: Int64.self), 0,
                    "no endpoint of the sandbox gets a production event")
                try await eventually("the returned event") { receiver.hits("/ok/returned").count == 1 }
                try await eventually("the returned event at the endpoint for all, recorded as delivered") {
                    try TestDatabase.scalar(
                        "SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $1 AND status = 'delivered'", [all.id],
                        as: Int64.self) == 2
                }
                // Time for a wrongly routed production event to arrive too.
                try await Task.sleep(for: .milliseconds(300))
                XCTAssertEqual(receiver.hits("/ok/all").count, 2, "the returned event, and not the production one")
                XCTAssertFalse(receiver.hits("/").contains { $0.json?["data"]?["document"]?["accessKey"] == .string("production") })

                // The history.
                let history = try await server.call(.get, "/v1/webhooks/\(all.id)/deliveries", key: tenant.key)
                XCTAssertEqual(history.status, 200, history.text)
                let attempts = try history.array("deliveries")
                // One delivered attempt per event; on a machine loaded enough for
                // an answer to miss the 1 s timeout, a timed-out attempt before it
                // (at least once: the retry carries the same event).
                let delivered = attempts.filter { $0["outcome"] == .string("delivered") }
                XCTAssertEqual(delivered.count, 2, history.text)
                XCTAssertTrue(
                    attempts.allSatisfy { $0["outcome"] == .string("delivered") || $0["outcome"] == .string("timeout") }, history.text)
                let authorized = try XCTUnwrap(delivered.first { $0["eventId"] == .string(id) }, history.text)
                XCTAssertEqual(authorized["eventType"], .string("document.authorized"))
                XCTAssertEqual(authorized["status"], .string("delivered"))
                XCTAssertEqual(authorized["responseCode"]?.intValue, 200)
                XCTAssertNotNil(authorized["durationMs"]?.intValue)
                XCTAssertNotNil(authorized["attemptedAt"]?.stringValue)
                try await server.call(.get, "/v1/webhooks/\(all.id)/deliveries", key: other.key).assertProblem(404, "NOT_FOUND")
            }
        }
    }

    /// The `v1=` signatures of a delivery, in the order sent.
    static func signatures(_ hit: WebhookReceiver.Hit) throws -> (timestamp: String, v1: [String]) {
        let header = try XCTUnwrap(hit.signature)
        XCTAssertNotNil(header.wholeMatch(of: /t=[0-9]+(,v1=[0-9a-f]{64})+/), header)
        let parts = header.split(separator: ",").map { $0.split(separator: "=", maxSplits: 1).map(String.init) }
        return (parts[0][1], parts.dropFirst().map { $0[1] })
    }

    /// The HMAC of a delivery's body as its receiver checks it, with openssl.
    static func expected(_ secret: String, _ hit: WebhookReceiver.Hit, timestamp: String) throws -> String {
        try opensslHMAC(key: secret, message: Array("\(timestamp).".utf8) + hit.body)
    }

    /// POST /v1/webhooks/:id/rotate-secret: a new secret shown once; the one
    /// it replaces keeps signing beside it (a second `v1=`) for the time asked,
    /// a day unless told, then stops; each rotation audited; a refused body
    /// changes nothing; another tenant's, a deleted or an unknown webhook 404.
    func testARotatedSecretSignsBesideTheOneItReplacesUntilThatExpires() async throws {
        let scope = TenantScope()
        try await WebhookReceiver.run { receiver, port in
            try await TestServer.run(configure: { scope.configure(&$0) }) { server in
                let tenant = try await server.activeTenant()
                scope.add(tenant.id)
                let hook = try await server.createWebhook(tenant.key, url: "http://127.0.0.1:\(port)/ok/rotated")
                var delivered = 0
                func deliver(_ tag: String) async throws -> WebhookReceiver.Hit {
                    try await withTestDatabase { database in _ = try await Self.record(database, tenant: tenant.id, tag: tag) }
                    delivered += 1
                    try await eventually("the delivery of \(tag)") { receiver.hits("/ok/rotated").count == delivered }
                    return try XCTUnwrap(receiver.hits("/ok/rotated").last)
                }
                func stored() throws -> Data {
                    try TestDatabase.scalar("SELECT sealed_secret FROM webhook_endpoints WHERE id = $1", [hook.id], as: Data.self)
                }

                // Refused bodies: 400 naming the field, nothing changed.
                let before = try stored()
                for body in [
                    #"{"previousSecretExpiresInSeconds": -1}"#, #"{"previousSecretExpiresInSeconds": 604801}"#,
                    #"{"previousSecretExpiresInSeconds": "60"}"#, #"{"previousSecretExpiresInSeconds": 1.5}"#,
                    #"{"previousSecretExpiresInSeconds": null}"#,
                ] {
                    let refused = try await server.call(.post, "/v1/webhooks/\(hook.id)/rotate-secret", key: tenant.key, json: body)
                    refused.assertProblem(400, "VALIDATION_ERROR")
                    XCTAssertEqual(refused.errorFields, ["previousSecretExpiresInSeconds"], body)
                }
                try await server.call(.post, "/v1/webhooks/\(hook.id)/rotate-secret", key: tenant.key, json: "[]")
                    .assertProblem(400, "VALIDATION_ERROR")
                XCTAssertEqual(try stored(), before, "a refused rotation changes nothing")

                // Another tenant's webhook, an unknown id, a path id that is no id: 404, before the body's 400.
                let other = try await server.activeTenant()
                for path in ["/v1/webhooks/\(hook.id)/rotate-secret", "/v1/webhooks/\(hook.id + 1000)/rotate-secret"] {
                    for body in [#"{"previousSecretExpiresInSeconds": -1}"#, "{nope", "[]"] {
                        try await server.call(.post, path, key: other.key, json: body).assertProblem(404, "NOT_FOUND")
                    }
                }
                try await server.call(.post, "/v1/webhooks/\(hook.id)/rotate-secret", key: tenant.key, json: "{nope")
                    .assertProblem(400, "VALIDATION_ERROR")
                try await server.call(.post, "/v1/webhooks/abc/rotate-secret", key: tenant.key).assertProblem(404, "NOT_FOUND")
                try await server.call(.post, "/v1/webhooks/\(hook.id)/rotate-secret", key: "cfy_test_nope")
                    .assertProblem(401, "UNAUTHORIZED")
                XCTAssertEqual(try stored(), before)

                // Rotated with no body: both secrets sign, the new one first, for a day.
                let first = try await server.call(.post, "/v1/webhooks/\(hook.id)/rotate-secret", key: tenant.key)
                XCTAssertEqual(first.status, 200, first.text)
                XCTAssertEqual(first.headers[.cacheControl], "no-store")
                let second = try first.string("secret")
                XCTAssertNotNil(second.wholeMatch(of: /whsec_[0-9a-f]{64}/))
                XCTAssertNotEqual(second, hook.secret)
                XCTAssertEqual(try first.int("webhook", "id"), hook.id)
                let formatter = ISO8601DateFormatter()
                formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
                let expires = try XCTUnwrap(formatter.date(from: try first.string("webhook", "previousSecretExpiresAt")))
                XCTAssertEqual(expires.timeIntervalSinceNow, 86_400, accuracy: 120, "a day unless asked")
                let listed = try await server.call(.get, "/v1/webhooks", key: tenant.key)
                XCTAssertEqual(
                    try listed.string("webhooks", 0, "previousSecretExpiresAt"), try first.string("webhook", "previousSecretExpiresAt"))
                XCTAssertFalse(listed.text.contains("whsec_"), "the secrets are shown once")

                var hit = try await deliver("two secrets")
                var signed = try Self.signatures(hit)
                XCTAssertEqual(
                    signed.v1,
                    [
                        try Self.expected(second, hit, timestamp: signed.timestamp),
                        try Self.expected(hook.secret, hit, timestamp: signed.timestamp),
                    ])

                // Rotated with no time for the previous: the new one alone.
                let third = try await server.call(
                    .post, "/v1/webhooks/\(hook.id)/rotate-secret", key: tenant.key, json: #"{"previousSecretExpiresInSeconds": 0}"#)
                XCTAssertEqual(third.status, 200, third.text)
                XCTAssertTrue(third.isNull("webhook", "previousSecretExpiresAt"), third.text)
                let thirdSecret = try third.string("secret")
                hit = try await deliver("one secret")
                signed = try Self.signatures(hit)
                XCTAssertEqual(signed.v1, [try Self.expected(thirdSecret, hit, timestamp: signed.timestamp)])

                // A previous secret kept for a second: it signs, then it has expired and does not.
                let fourth = try await server.call(
                    .post, "/v1/webhooks/\(hook.id)/rotate-secret", key: tenant.key, json: #"{"previousSecretExpiresInSeconds": 1}"#)
                XCTAssertEqual(fourth.status, 200, fourth.text)
                let fourthSecret = try fourth.string("secret")
                try await Task.sleep(for: .milliseconds(1_500))
                hit = try await deliver("expired")
                signed = try Self.signatures(hit)
                XCTAssertEqual(
                    signed.v1, [try Self.expected(fourthSecret, hit, timestamp: signed.timestamp)], "the expired one signs no more")
                let afterExpiry = try await server.call(.get, "/v1/webhooks", key: tenant.key)
                XCTAssertTrue(afterExpiry.isNull("webhooks", 0, "previousSecretExpiresAt"), afterExpiry.text)

                // A production key does not reach the sandbox's webhook.
                let keyID = try TestDatabase.scalar("SELECT id FROM api_keys WHERE tenant_id = $1", [tenant.id], as: Int64.self)
                let promoted = try await server.call(.post, "/v1/tenants/promote", key: tenant.key)
                XCTAssertEqual(promoted.status, 200, promoted.text)
                let live = try promoted.string("apiKeys", 0, "apiKey")
                try await server.call(.post, "/v1/webhooks/\(hook.id)/rotate-secret", key: live).assertProblem(404, "NOT_FOUND")

                // A deleted webhook's secret is not rotated (deleted by a sandbox
                // key minted after the promotion, which ended the first one).
                let sandbox = try await server.mintKey(live, label: "test rig")
                let deleted = try await server.call(.delete, "/v1/webhooks/\(hook.id)", key: sandbox)
                XCTAssertEqual(deleted.status, 200, deleted.text)
                try await server.call(.post, "/v1/webhooks/\(hook.id)/rotate-secret", key: sandbox).assertProblem(404, "NOT_FOUND")

                // Each rotation audited as done by the key, with when its previous secret expires.
                let audit = try TestDatabase.query(
                    """
                    SELECT actor_key_id, (details->>'webhookId')::bigint, details->>'environment', details->>'previousSecretExpiresAt'
                      FROM audit_events WHERE action = 'webhook.secret_rotated' AND tenant_id IN ($1, $2) ORDER BY id
                    """, [tenant.id, other.id])
                XCTAssertEqual(try audit.rows.map { try $0.decode(Int64.self, at: 0) }, [keyID, keyID, keyID])
                XCTAssertEqual(try audit.rows.map { try $0.decode(Int64.self, at: 1) }, [hook.id, hook.id, hook.id])
                XCTAssertEqual(try audit[0].decode(String.self, at: 2), "sandbox")
                XCTAssertEqual(try audit.rows.map { try $0.decode(String?.self, at: 3) == nil }, [false, true, false])
            }
        }
    }

    /// PATCH /v1/webhooks/:id changes the url and events in place: the id and
    /// secret stay, and a delivery pending on the old url (an endpoint that
    /// answers 500) is retried at the new one, the same event, signed with the
    /// same secret. 401, 404 (another tenant's, unknown, another
    /// environment's, deleted: whatever the body), then 400 naming the field,
    /// changing nothing; each change audited.
    func testAWebhookChangedInPlaceKeepsItsSecretAndItsPendingDeliveries() async throws {
        let scope = TenantScope()
        try await WebhookReceiver.run { receiver, port in
            try await TestServer.run(configure: { scope.configure(&$0) }) { server in
                let tenant = try await server.activeTenant()
                scope.add(tenant.id)
                let hook = try await server.createWebhook(tenant.key, url: "http://127.0.0.1:\(port)/dead/before")
                let path = "/v1/webhooks/\(hook.id)"
                func stored() throws -> String {
                    try TestDatabase.scalar(
                        "SELECT url || ' ' || events::text FROM webhook_endpoints WHERE id = $1", [hook.id], as: String.self)
                }
                let before = try stored()

                // Refused bodies: 400 naming the field, nothing changed.
                for (body, field) in [
                    ("{}", "body"), (#"{"url": null}"#, "url"), (#"{"url": "http://erp.example.com/x"}"#, "url"),
                    (#"{"url": "https://10.0.0.7/x"}"#, "url"), (#"{"events": []}"#, "events"), (#"{"events": null}"#, "events"),
                    (#"{"events": ["document.signed"]}"#, "events"), ("[]", "body"),
                ] {
                    let refused = try await server.call(.patch, path, key: tenant.key, json: body)
                    refused.assertProblem(400, "VALIDATION_ERROR")
                    XCTAssertEqual(refused.errorFields, [field], body)
                }
                try await server.call(.patch, path, key: tenant.key, json: "{nope").assertProblem(400, "VALIDATION_ERROR")
                // A host name that resolves to loopback, looked up as at creation.
                for name in WebhooksTests.loopbackHostNames {
                    let refused = try await server.call(.patch, path, key: tenant.key, json: #"{"url": "https://\#(name)/x"}"#)
                    refused.assertProblem(400, "VALIDATION_ERROR")
                    XCTAssertEqual(refused.errorFields, ["url"], name)
                }
                XCTAssertEqual(try stored(), before, "a refused change changes nothing")

                // 401, then 404 whatever the body.
                try await server.call(.patch, path, key: "cfy_test_nope", json: "{}").assertProblem(401, "UNAUTHORIZED")
                let other = try await server.activeTenant()
                for (key, target) in [(other.key, path), (tenant.key, "/v1/webhooks/\(hook.id + 1000)"), (tenant.key, "/v1/webhooks/abc")] {
                    for body in ["{nope", #"{"url": null}"#] {
                        try await server.call(.patch, target, key: key, json: body).assertProblem(404, "NOT_FOUND")
                    }
                }
                XCTAssertEqual(try stored(), before)

                // A delivery failing at the old url...
                let id = try await withTestDatabaseValue { try await Self.record($0, tenant: tenant.id, tag: "moved") }
                try await eventually("an attempt at the old url") { !receiver.hits("/dead/before").isEmpty }
                // ...is retried at the new one, signed with the same secret.
                let changed = try await server.call(
                    .patch, path, key: tenant.key,
                    json: #"{"url": "http://127.0.0.1:\#(port)/ok/after", "events": ["document.authorized"]}"#)
                XCTAssertEqual(changed.status, 200, changed.text)
                XCTAssertEqual(try changed.int("webhook", "id"), hook.id)
                XCTAssertEqual(try changed.string("webhook", "url"), "http://127.0.0.1:\(port)/ok/after")
                XCTAssertEqual(try changed.array("webhook", "events"), [.string("document.authorized")])
                XCTAssertFalse(changed.text.contains("whsec_"), "no secret in the answer")
                try await eventually("the retry at the new url") { !receiver.hits("/ok/after").isEmpty }
                let hit = try XCTUnwrap(receiver.hits("/ok/after").first)
                XCTAssertEqual(hit.eventID, id, "the same event")
                let signed = try Self.signatures(hit)
                XCTAssertEqual(signed.v1, [try Self.expected(hook.secret, hit, timestamp: signed.timestamp)], "the same secret")
                try await eventually("the delivery recorded as delivered") {
                    try TestDatabase.scalar("SELECT status FROM webhook_deliveries WHERE event_id = $1", [id], as: String.self)
                        == "delivered"
                }

                // The events alone; listed as changed.
                let events = try await server.call(
                    .patch, path, key: tenant.key, json: #"{"events": ["document.returned", "document.returned"]}"#)
                XCTAssertEqual(events.status, 200, events.text)
                let listed = try await server.call(.get, "/v1/webhooks", key: tenant.key)
                XCTAssertEqual(try listed.array("webhooks").first?["events"], .array([.string("document.returned")]))
                XCTAssertEqual(try listed.string("webhooks", 0, "url"), "http://127.0.0.1:\(port)/ok/after")

                // The same values again: no change, nothing audited.
                let same = try await server.call(.patch, path, key: tenant.key, json: #"{"events": ["document.returned"]}"#)
                XCTAssertEqual(same.status, 200, same.text)

                // Each change audited as done by the key, with what changed and from what.
                let keyID = try TestDatabase.scalar("SELECT id FROM api_keys WHERE tenant_id = $1", [tenant.id], as: Int64.self)
                let audit = try TestDatabase.query(
                    """
                    SELECT actor_key_id, (details->>'webhookId')::bigint, details->>'url', details->>'previousUrl',
                           details->>'events', details->>'previousEvents'
                      FROM audit_events WHERE action = 'webhook.updated' AND tenant_id IN ($1, $2) ORDER BY id
                    """, [tenant.id, other.id])
                XCTAssertEqual(try audit.rows.map { try $0.decode(Int64.self, at: 0) }, [keyID, keyID], "two changes, not three")
                XCTAssertEqual(try audit.rows.map { try $0.decode(Int64.self, at: 1) }, [hook.id, hook.id])
                XCTAssertEqual(try audit[0].decode(String?.self, at: 2), "http://127.0.0.1:\(port)/ok/after")
                XCTAssertEqual(try audit[0].decode(String?.self, at: 3), "http://127.0.0.1:\(port)/dead/before")
                XCTAssertEqual(try audit[0].decode(String?.self, at: 4), #"["document.authorized"]"#)
                XCTAssertEqual(
                    try audit[0].decode(String?.self, at: 5), #"["document.authorized", "document.not_authorized", "document.returned"]"#)
                XCTAssertNil(try audit[1].decode(String?.self, at: 2), "the url only when it changed")
                XCTAssertEqual(try audit[1].decode(String?.self, at: 4), #"["document.returned"]"#)
                XCTAssertEqual(try audit[1].decode(String?.self, at: 5), #"["document.authorized"]"#)

                // A production key does not reach the sandbox's webhook; a deleted webhook is not changed.
                let promoted = try await server.call(.post, "/v1/tenants/promote", key: tenant.key)
                let live = try promoted.string("apiKeys", 0, "apiKey")
                try await server.call(.patch, path, key: live, json: #"{"events": ["document.authorized"]}"#).assertProblem(
                    404, "NOT_FOUND")
                let sandbox = try await server.mintKey(live, label: "test rig")
                let deleted = try await server.call(.delete, path, key: sandbox)
                XCTAssertEqual(deleted.status, 200, deleted.text)
                try await server.call(.patch, path, key: sandbox, json: #"{"events": ["document.authorized"]}"#).assertProblem(
                    404, "NOT_FOUND")
            }
        }
    }

    /// End to end: documents issued through the API and decided by the local
    /// SRI (authorized, not authorized, returned) through a sending server;
    /// each decision reaches the endpoint once, signed, with the document as
    /// the API shows it afterwards, and nothing else arrives.
    func testEachSRIDecisionOfAnIssuedDocumentIsDeliveredSigned() async throws {
        let scope = TenantScope()
        try await WebhookReceiver.run { receiver, port in
            try await LocalSRI.run { sri in
                try await TestServer.run(configure: { scope.configure(&$0) }) { server in
                    let tenant = try await server.activeTenant()
                    scope.add(tenant.id)
                    let hook = try await server.createWebhook(tenant.key, url: "http://127.0.0.1:\(port)/ok/decisions")
                    let issuer = try await server.createIssuer(tenant.key)
                    var settings = testSRISettings(url: sri.baseURL, tenants: [tenant.id])
                    settings.workers = 1
                    let decisions: [(fault: SRISimulatorFaults?, status: String, event: String, message: String?)] = [
                        (nil, "AUTHORIZED", "document.authorized", nil),
                        (.init(authorization: .init(refuse: 1)), "NOT_AUTHORIZED", "document.not_authorized", "39"),
                        (.init(reception: .init(returnWith: "45")), "RETURNED", "document.returned", "45"),
                    ]
                    let decided = NIOLockedValueBox<[(accessKey: String, eventID: String, event: String)]>([])
                    try await withSender(settings) { _ in
                        for decision in decisions {
                            if let fault = decision.fault { try await sri.faults(fault) }
                            let issued = try await server.issue(tenant.key, issuer: issuer)
                            XCTAssertEqual(issued.status, 201, issued.text)
                            XCTAssertEqual(try issued.string("document", "status"), "SIGNED")
                            let key = try issued.string("document", "accessKey")
                            func about(_ hit: WebhookReceiver.Hit) -> Bool {
                                hit.json?["data"]?["document"]?["accessKey"] == .string(key)
                            }
                            try await eventually("the \(decision.event) delivery", within: 30) {
                                receiver.hits("/ok/decisions").contains(where: about)
                            }
                            let hit = try XCTUnwrap(receiver.hits("/ok/decisions").first(where: about))
                            let body = try XCTUnwrap(hit.json)
                            let eventID = try XCTUnwrap(hit.eventID)
                            XCTAssertEqual(body["type"], .string(decision.event))
                            let document = try XCTUnwrap(body["data"]?["document"])
                            XCTAssertEqual(document["status"], .string(decision.status))
                            if let identifier = decision.message {
                                var identifiers: [JSONValue?] = []
                                if case .array(let messages)? = document["sri"]?["messages"] {
                                    identifiers = messages.map { $0["identifier"] }
                                }
                                XCTAssertTrue(identifiers.contains(.string(identifier)), "SRI's message \(identifier): \(document)")
                            } else {
                                XCTAssertEqual(document["sri"]?["authorizationNumber"], .string(key))
                            }
                            let shown = try await server.call(.get, "/v1/documents/\(key)", key: tenant.key, issuer: issuer)
                            XCTAssertEqual(shown.status, 200, shown.text)
                            XCTAssertEqual(document, shown.value(["document"]), "the document as the API shows it after the decision")

                            // Signed with the endpoint's secret (openssl's HMAC, not the service's).
                            let signature = try XCTUnwrap(hit.signature)
                            let match = try XCTUnwrap(signature.wholeMatch(of: /t=([0-9]+),v1=([0-9a-f]{64})/))
                            XCTAssertLessThan(abs(Double(String(match.1))! - Date().timeIntervalSince1970), 60)
                            XCTAssertEqual(
                                String(match.2), try Self.opensslHMAC(key: hook.secret, message: Array("\(match.1).".utf8) + hit.body))
                            decided.withLockedValue { $0.append((key, eventID, decision.event)) }
                        }
                    }

                    // One event per decision, the ones in the database, each delivered once.
                    try await eventually("every delivery recorded as delivered") {
                        try TestDatabase.scalar(
                            "SELECT count(*) FROM webhook_deliveries WHERE tenant_id = $1 AND status <> 'delivered'", [tenant.id],
                            as: Int64.self) == 0
                    }
                    let hits = receiver.hits("/ok/decisions")
                    let received = decided.withLockedValue { $0 }
                    XCTAssertEqual(hits.map(\.eventID), received.map { $0.eventID as String? }, "each decision delivered once, in order")
                    let events = try TestDatabase.query(
                        """
                        SELECT e.id, e.type, d.access_key, w.status
                          FROM webhook_events e JOIN documents d ON d.tenant_id = e.tenant_id AND d.id = e.document_id
                          JOIN webhook_deliveries w ON w.tenant_id = e.tenant_id AND w.event_id = e.id
                         WHERE e.tenant_id = $1 ORDER BY e.created_at
                        """, [tenant.id]
                    ).rows.map { try $0.decode((String, String, String, String).self) }
                    XCTAssertEqual(events.map(\.0), received.map(\.eventID))
                    XCTAssertEqual(events.map(\.1), received.map(\.event))
                    XCTAssertEqual(events.map(\.2), received.map(\.accessKey))
                    XCTAssertEqual(events.map(\.3), ["delivered", "delivered", "delivered"])
                }
            }
        }
    }

    func testAnEventRollsBackWithItsTransaction() async throws {
        try await TestServer.run(configure: { $0.webhooks.allowHTTP = true }) { server in
            let tenant = try await server.signUp()
            let hook = try await server.createWebhook(tenant.key, url: "http://127.0.0.1:9/x")
            try await withTestDatabase { database in
                struct Abandon: Error {}
                do {
                    _ = try await database.transaction(forTenantID: tenant.id) { transaction, _ in
                        try WebhooksStore.recordEvent(
                            transaction, type: "document.authorized", document: Self.document("x"), environment: .sandbox)
                        throw Abandon()
                    }
                } catch is Abandon {}
            }
            XCTAssertEqual(
                try TestDatabase.scalar("SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $1", [hook.id], as: Int64.self), 0,
                "an event is never invented: nothing without the change that causes it")
        }
    }

    /// The housekeeping purges an event with its deliveries and attempts once it
    /// is older than WEBHOOK_RETENTION_DAYS and its deliveries ended before
    /// that; a younger event, and an old one whose delivery is still pending, stay.
    func testTheHistoryPastItsRetentionIsPurged() async throws {
        let made = NIOLockedValueBox<(tenant: TestServer.Tenant, hook: Int64, events: [String])?>(nil)
        try await TestServer.run(configure: { $0.webhooks.allowHTTP = true }) { server in
            let tenant = try await server.signUp()
            let hook = try await server.createWebhook(tenant.key, url: "http://127.0.0.1:9/x")
            var events: [String] = []
            try await withTestDatabase { database in
                for tag in ["old", "old-pending", "young"] {
                    events.append(try await Self.record(database, tenant: tenant.id, tag: tag))
                }
            }
            made.withLockedValue { $0 = (tenant, hook.id, events) }
        }
        let (tenant, hook, events) = try XCTUnwrap(made.withLockedValue { $0 })
        let (old, oldPending, young) = (events[0], events[1], events[2])
        // Dated as if they had happened long ago: two events 40 days old, one
        // delivered 35 days ago and one still pending; the young one delivered now.
        try TestDatabase.query(
            "UPDATE webhook_events SET created_at = now() - interval '40 days' WHERE id = ANY($1::text[])", [[old, oldPending]])
        for (event, ago) in [(old, "35 days"), (young, "0 days")] {
            try TestDatabase.query(
                """
                UPDATE webhook_deliveries SET status = 'delivered', next_attempt_at = NULL, attempts = 1,
                       updated_at = now() - interval '\(ago)'
                 WHERE event_id = $1
                """, [event])
            try TestDatabase.query(
                """
                INSERT INTO webhook_delivery_attempts (tenant_id, delivery_id, endpoint_id, event_id, outcome, response_code,
                                                       duration_ms, status_after, worker, attempted_at)
                SELECT tenant_id, id, endpoint_id, event_id, 'delivered', 204, 5, 'delivered', gen_random_uuid(),
                       now() - interval '\(ago)'
                  FROM webhook_deliveries WHERE event_id = $1
                """, [event])
        }
        @Sendable func remaining(_ table: String, _ column: String) throws -> Int64 {
            try TestDatabase.scalar(
                "SELECT count(*) FROM \(table) WHERE tenant_id = $1 AND \(column) = ANY($2::text[])", [tenant.id, events], as: Int64.self)
        }
        // A server with the default retention (30 days) purges at its start
        // (as does every other test server beside it: the purge crosses tenants).
        try await TestServer.run { server in
            try await eventually("the old event purged") {
                try TestDatabase.scalar("SELECT count(*) FROM webhook_events WHERE id = $1", [old], as: Int64.self) == 0
            }
            XCTAssertEqual(
                try TestDatabase.scalar(
                    "SELECT array_agg(id ORDER BY id) FROM webhook_events WHERE tenant_id = $1", [tenant.id], as: [String].self),
                [oldPending, young].sorted())
            XCTAssertEqual(try remaining("webhook_deliveries", "event_id"), 2, "the old event's delivery went with it")
            let history = try await server.call(.get, "/v1/webhooks/\(hook)/deliveries", key: tenant.key)
            XCTAssertEqual(history.status, 200, history.text)
            XCTAssertEqual(try history.array("deliveries").map { $0["eventId"] }, [.string(young)], "and its attempt")
        }
    }

    /// A webhook's URL is judged again before each delivery, not only when it
    /// was created: endpoints made while WEBHOOKS_ALLOW_HTTP=1 allowed
    /// loopback, delivered by a server without it, are `refused_address`
    /// (the http one by its scheme, the https one by the address guard),
    /// nothing reaches them, and the outcome is counted in
    /// webhook_deliveries_total. So is a host name that resolves to a
    /// loopback address by the time of the delivery (a name that pointed
    /// elsewhere when the webhook was made: DNS rebinding), here a name
    /// that resolves to loopback on this machine, written into the
    /// endpoint's row afterwards (`hostNameResolvingToLoopback`).
    func testAnAddressIsJudgedAgainAtEachDelivery() async throws {
        let scope = TenantScope()
        let rebound = Self.hostNameResolvingToLoopback()
        try await WebhookReceiver.run { receiver, port in
            let made = NIOLockedValueBox<(TestServer.Tenant, [Int64])?>(nil)
            try await TestServer.run(configure: {
                scope.configure(&$0)
                $0.webhooks.workers = 0
            }) { server in
                let tenant = try await server.signUp()
                scope.add(tenant.id)
                let plain = try await server.createWebhook(tenant.key, url: "http://127.0.0.1:\(port)/plain")
                let loopback = try await server.createWebhook(tenant.key, url: "https://127.0.0.1:\(port)/loopback")
                var hooks = [plain.id, loopback.id]
                if let rebound {
                    let named = try await server.createWebhook(tenant.key, url: "https://127.0.0.1:\(port)/named")
                    try TestDatabase.owner().query(
                        "UPDATE webhook_endpoints SET url = $1 WHERE id = $2", ["https://\(rebound):\(port)/named", named.id],
                        prepared: false)
                    hooks.append(named.id)
                }
                made.withLockedValue { $0 = (tenant, hooks) }
            }
            let (tenant, hooks) = try XCTUnwrap(made.withLockedValue { $0 })
            try await TestServer.run(configure: {
                scope.configure(&$0)
                $0.webhooks.allowHTTP = false
            }) { server in
                func refusedCount() async throws -> Double {
                    let text = try await server.call(.get, "/metrics").text
                    let series = #"webhook_deliveries_total{outcome="refused_address"}"#
                    let line = text.split(separator: "\n").first { $0.hasPrefix(series + " ") }
                    return line.flatMap { Double($0.dropFirst(series.count + 1)) } ?? 0
                }
                let before = try await refusedCount()
                let event = try await withTestDatabaseValue { try await Self.record($0, tenant: tenant.id, tag: "judged again") }
                try await eventually("every endpoint attempted") {
                    try TestDatabase.scalar(
                        "SELECT count(DISTINCT endpoint_id) FROM webhook_delivery_attempts WHERE event_id = $1", [event], as: Int64.self)
                        == hooks.count
                }
                for hook in hooks {
                    let attempts = try await server.call(.get, "/v1/webhooks/\(hook)/deliveries", key: tenant.key).array("deliveries")
                    XCTAssertEqual(attempts.first?["outcome"], .string("refused_address"), "\(attempts)")
                }
                if rebound != nil, let named = hooks.last {
                    let attempts = try await server.call(.get, "/v1/webhooks/\(named)/deliveries", key: tenant.key).array("deliveries")
                    guard case .string(let error)? = attempts.first?["error"] else { return XCTFail("\(attempts)") }
                    XCTAssertTrue(error.contains("loopback"), error)
                }
                XCTAssertEqual(receiver.hits("/").count, 0, "nothing reached the endpoints")
                let after = try await refusedCount()
                XCTAssertGreaterThanOrEqual(after - before, Double(hooks.count), "counted")
            }
        }
    }

    /// A host name every address of which (IPv4 and IPv6, as the delivery
    /// looks it up) is loopback, 127.0.0.0/8 or ::1: this machine's own name
    /// where /etc/hosts maps it so (most machines and containers), else one
    /// of Debian's loopback names; nil, said on the test's output, when none.
    static func hostNameResolvingToLoopback() -> String? {
        var buffer = [CChar](repeating: 0, count: 256)
        let own =
            gethostname(&buffer, buffer.count) == 0
            ? String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) : ""
        let candidates = [own, "ip6-localhost", "ip6-loopback", "localhost.localdomain"]
        if let name = candidates.first(where: { !$0.isEmpty && $0 != "localhost" && IPAddress($0) == nil && resolvesOnlyToLoopback($0) }) {
            return name
        }
        print(
            "note: no host name here resolves only to loopback; the DNS rebinding case of testAnAddressIsJudgedAgainAtEachDelivery did not run"
        )
        return nil
    }

    private static func resolvesOnlyToLoopback(_ name: String) -> Bool {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(name, nil, &hints, &list) == 0, let first = list else { return false }
        defer { freeaddrinfo(first) }
        var node: UnsafeMutablePointer<addrinfo>? = first
        while let entry = node {
            switch entry.pointee.ai_family {
            case AF_INET:
                let address = entry.pointee.ai_addr.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr.s_addr }
                guard UInt32(bigEndian: address) >> 24 == 127 else { return false }
            case AF_INET6:
                let bytes = entry.pointee.ai_addr.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) {
                    withUnsafeBytes(of: $0.pointee.sin6_addr) { Array($0) }
                }
                guard bytes == Array(repeating: 0, count: 15) + [1] else { return false }
            default:
                return false
            }
            node = entry.pointee.ai_next
        }
        return true
    }

    func testRetriesAfter500sAndTimeoutsWithBackoffAndTheSameEventID() async throws {
        let scope = TenantScope()
        try await WebhookReceiver.run { receiver, port in
            try await TestServer.run(configure: { scope.configure(&$0, timeoutMilliseconds: 700) }) { server in
                let tenant = try await server.signUp()
                scope.add(tenant.id)
                let flaky = try await server.createWebhook(tenant.key, url: "http://127.0.0.1:\(port)/fail2/a")
                let slow = try await server.createWebhook(tenant.key, url: "http://127.0.0.1:\(port)/slowonce/a")
                let id = try await withTestDatabaseValue { try await Self.record($0, tenant: tenant.id, tag: "retried") }
                try await eventually("three attempts at the failing endpoint") { receiver.hits("/fail2/a").count >= 3 }
                try await eventually("two at the slow one") { receiver.hits("/slowonce/a").count >= 2 }
                let hits = receiver.hits("/fail2/a")
                XCTAssertEqual(Set(hits.map(\.eventID)), [id], "every attempt carries the same event id")
                XCTAssertEqual(Set(hits.map { $0.body }).count, 1, "and the same body")
                // Backoff: 200 ms, then 400 ms (the poll adds a little).
                XCTAssertGreaterThanOrEqual(hits[1].at - hits[0].at, .milliseconds(190))
                XCTAssertGreaterThanOrEqual(hits[2].at - hits[1].at, .milliseconds(390))

                try await eventually("both delivered") {
                    try TestDatabase.scalar(
                        "SELECT count(*) FROM webhook_deliveries WHERE event_id = $1 AND status = 'delivered'", [id], as: Int64.self) == 2
                }
                let flakyHistory = try await server.call(.get, "/v1/webhooks/\(flaky.id)/deliveries", key: tenant.key).array("deliveries")
                XCTAssertEqual(flakyHistory.map { $0["outcome"] }, [.string("delivered"), .string("http_status"), .string("http_status")])
                XCTAssertEqual(flakyHistory.map { $0["responseCode"]?.intValue }, [200, 500, 500])
                XCTAssertEqual(flakyHistory.map { $0["status"] }, [.string("delivered"), .string("pending"), .string("pending")])
                let slowHistory = try await server.call(.get, "/v1/webhooks/\(slow.id)/deliveries", key: tenant.key).array("deliveries")
                XCTAssertEqual(slowHistory.map { $0["outcome"] }, [.string("delivered"), .string("timeout")])
                XCTAssertEqual(slowHistory[1]["responseCode"], .null)
                XCTAssertGreaterThanOrEqual(slowHistory[1]["durationMs"]?.intValue ?? 0, 650)
                XCTAssertLessThan(slowHistory[1]["durationMs"]?.intValue ?? .max, 2500, "the attempt is cut at WEBHOOK_TIMEOUT_MS")
            }
        }
    }

    /// A refused connection fails its attempt at once, whether the URL names
    /// an IP address or localhost (AsyncHTTPClient's retries of the connect
    /// held the worker and one of the endpoint's places until
    /// WEBHOOK_TIMEOUT_MS), and each of several deliveries to the same closed
    /// port fails on its own: none waits for another's connection.
    func testARefusedConnectionFailsTheAttemptAtOnce() async throws {
        let scope = TenantScope()
        let listener = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: 0).get()
        let closedPort = try XCTUnwrap(listener.localAddress?.port)
        try await listener.close()
        try await TestServer.run(configure: { scope.configure(&$0, timeoutMilliseconds: 5_000) }) { server in
            let tenant = try await server.signUp()
            scope.add(tenant.id)
            var endpoints: [Int64] = []
            for url in ["http://127.0.0.1:\(closedPort)/a", "http://127.0.0.1:\(closedPort)/b", "http://localhost:\(closedPort)/c"] {
                endpoints.append(try await server.createWebhook(tenant.key, url: url).id)
            }
            _ = try await withTestDatabaseValue { try await Self.record($0, tenant: tenant.id, tag: "refused") }
            try await eventually("an attempt at each endpoint") {
                try TestDatabase.scalar(
                    "SELECT count(DISTINCT endpoint_id) FROM webhook_delivery_attempts WHERE tenant_id = $1", [tenant.id], as: Int64.self)
                    == 3
            }
            for endpoint in endpoints {
                let history = try await server.call(.get, "/v1/webhooks/\(endpoint)/deliveries", key: tenant.key).array("deliveries")
                let first = try XCTUnwrap(history.last, "\(history)")
                XCTAssertEqual(first["outcome"], .string("connection"), "\(first)")
                XCTAssertEqual(first["status"], .string("pending"), "retried later")
                XCTAssertLessThan(first["durationMs"]?.intValue ?? .max, 1_000, "failed at once, not at the 5 s timeout: \(first)")
            }
        }
    }

    /// The answer counts only within WEBHOOK_TIMEOUT_MS, its body included (a
    /// body trickled past it once held a worker as long as the endpoint
    /// liked), and an answer with no HTTP status (600) is a failed attempt,
    /// recorded and retried like any other (its recording once failed, and the
    /// delivery went out again at every lease's end with no attempt counted).
    func testABodyTrickledPastTheTimeoutAndAnAnswerWithNoStatusAreFailedAttempts() async throws {
        let scope = TenantScope()
        try await WebhookReceiver.run { receiver, port in
            try await TestServer.run(configure: { scope.configure(&$0, timeoutMilliseconds: 700) }) { server in
                let tenant = try await server.signUp()
                scope.add(tenant.id)
                let trickle = try await server.createWebhook(tenant.key, url: "http://127.0.0.1:\(port)/trickle/a")
                let noStatus = try await server.createWebhook(tenant.key, url: "http://127.0.0.1:\(port)/nostatus/a")
                _ = try await withTestDatabaseValue { try await Self.record($0, tenant: tenant.id, tag: "odd answers") }
                func attempts(_ endpoint: Int64) throws -> Int64 {
                    try TestDatabase.scalar(
                        "SELECT count(*) FROM webhook_delivery_attempts WHERE endpoint_id = $1", [endpoint], as: Int64.self)
                }
                try await eventually("an attempt at the trickling endpoint, two at the other") {
                    try attempts(trickle.id) >= 1 && attempts(noStatus.id) >= 2
                }
                // The status came in time; the body's read ends with the timeout.
                let trickled = try await server.call(.get, "/v1/webhooks/\(trickle.id)/deliveries", key: tenant.key).array("deliveries")
                XCTAssertEqual(trickled.compactMap { $0["outcome"]?.stringValue }, ["delivered"], "\(trickled)")
                XCTAssertLessThan(trickled.first?["durationMs"]?.intValue ?? .max, 2500, "cut at WEBHOOK_TIMEOUT_MS, body included")
                XCTAssertEqual(receiver.hits("/trickle/a").count, 1, "no second POST after its lease")
                let odd = try await server.call(.get, "/v1/webhooks/\(noStatus.id)/deliveries", key: tenant.key).array("deliveries")
                XCTAssertEqual(Set(odd.compactMap { $0["outcome"]?.stringValue }), ["connection"], "\(odd)")
                XCTAssertTrue(odd.allSatisfy { $0["responseCode"] == .null }, "\(odd)")
                XCTAssertTrue(odd.allSatisfy { $0["status"] == .string("pending") })
                // A retry may be on the wire while this reads; between two
                // POSTs the backoff leaves the counts equal. Had a recording
                // failed, the POSTs would run ahead of the attempts for ever.
                try await eventually("every POST recorded") {
                    receiver.hits("/nostatus/a").count == Int(try attempts(noStatus.id))
                }
            }
        }
    }

    func testFailedAfterTheRetryWindow() async throws {
        try await Self.withFailedDelivery("a") { receiver, server, tenant, dead, id, _ in
            let attempts = try TestDatabase.scalar("SELECT attempts FROM webhook_deliveries WHERE event_id = $1", [id], as: Int64.self)
            // 0 s, 0.2 s, 0.6 s; the next would be at 1.4 s, past the window.
            XCTAssertEqual(attempts, 3)
            XCTAssertEqual(Int64(receiver.hits("/dead/a").count), attempts)
            XCTAssertEqual(
                try TestDatabase.scalar("SELECT next_attempt_at IS NULL FROM webhook_deliveries WHERE event_id = $1", [id], as: Bool.self),
                true, "no next attempt once failed")
            try await Task.sleep(for: .seconds(1))
            XCTAssertEqual(Int64(receiver.hits("/dead/a").count), attempts, "nothing more once failed")
            let history = try await server.call(.get, "/v1/webhooks/\(dead.id)/deliveries", key: tenant.key).array("deliveries")
            XCTAssertEqual(history.first?["status"], .string("failed"))
            XCTAssertEqual(history.first?["deliveryStatus"], .string("failed"))
        }
    }

    /// A server delivering, with a retry window of 1 s, to a webhook at
    /// `/dead/<path>` of a local receiver (always 500), and one event whose
    /// delivery has failed for good; the tenant is active. The retries wait
    /// `retryBaseMilliseconds` doubling (200 ms unless given).
    static func withFailedDelivery(
        _ path: String, retryBaseMilliseconds: Int? = nil,
        _ body:
            @escaping @Sendable (
                _ receiver: WebhookReceiver, _ server: TestServer, _ tenant: TestServer.Tenant, _ hook: (id: Int64, secret: String),
                _ eventID: String, _ port: Int
            ) async throws -> Void
    ) async throws {
        let scope = TenantScope()
        try await WebhookReceiver.run { receiver, port in
            try await TestServer.run(configure: {
                scope.configure(&$0, retryForSeconds: 1)
                if let retryBaseMilliseconds { $0.webhooks.retryBaseMilliseconds = retryBaseMilliseconds }
            }) { server in
                let tenant = try await server.activeTenant()
                scope.add(tenant.id)
                let hook = try await server.createWebhook(tenant.key, url: "http://127.0.0.1:\(port)/dead/\(path)")
                let id = try await withTestDatabaseValue { try await Self.record($0, tenant: tenant.id, tag: path) }
                try await eventually("the delivery to fail") {
                    try TestDatabase.scalar("SELECT status FROM webhook_deliveries WHERE event_id = $1", [id], as: String.self) == "failed"
                }
                try await body(receiver, server, tenant, hook, id, port)
            }
        }
    }

    /// An endpoint that was down past the retry window: once it is fixed
    /// (here, moved with PATCH), each failed event is sent again on request,
    /// the same id and body, signed with the webhook's secret; a delivered one
    /// can be sent again too. 404 for an event the webhook has no delivery
    /// of, another tenant's webhook, another environment's key.
    func testAFailedDeliveryIsSentAgainOnRequest() async throws {
        try await Self.withFailedDelivery("down") { receiver, server, tenant, hook, id, port in
            let failedBody = try XCTUnwrap(receiver.hits("/dead/down").first).body
            let fixed = try await server.call(
                .patch, "/v1/webhooks/\(hook.id)", key: tenant.key, json: #"{"url": "http://127.0.0.1:\#(port)/ok/up"}"#)
            XCTAssertEqual(fixed.status, 200, fixed.text)
            // Failed, with no next attempt: no sender will take it up again.
            XCTAssertEqual(
                try TestDatabase.scalar(
                    "SELECT status || ' ' || coalesce(next_attempt_at::text, 'never') FROM webhook_deliveries WHERE event_id = $1", [id],
                    as: String.self), "failed never")
            try await Task.sleep(for: .milliseconds(300))
            XCTAssertTrue(receiver.hits("/ok/up").isEmpty, "a failed delivery is not tried again by itself")

            let path = "/v1/webhooks/\(hook.id)/deliveries/\(id)/redeliver"
            try await server.call(.post, path, key: "cfy_test_nope").assertProblem(401, "UNAUTHORIZED")
            let other = try await server.activeTenant()
            try await server.call(.post, path, key: other.key).assertProblem(404, "NOT_FOUND")
            try await server.call(.post, "/v1/webhooks/\(hook.id)/deliveries/evt_unknown/redeliver", key: tenant.key)
                .assertProblem(404, "NOT_FOUND")
            XCTAssertEqual(
                try TestDatabase.scalar("SELECT status FROM webhook_deliveries WHERE event_id = $1", [id], as: String.self), "failed",
                "refused requests change nothing")

            let again = try await server.call(.post, path, key: tenant.key)
            XCTAssertEqual(again.status, 200, again.text)
            XCTAssertEqual(try again.string("deliveryStatus"), "pending")
            try await eventually("the event at the fixed endpoint") { !receiver.hits("/ok/up").isEmpty }
            let hit = try XCTUnwrap(receiver.hits("/ok/up").first)
            XCTAssertEqual(hit.eventID, id)
            XCTAssertEqual(hit.body, failedBody, "the same body")
            let signed = try Self.signatures(hit)
            XCTAssertEqual(signed.v1, [try Self.expected(hook.secret, hit, timestamp: signed.timestamp)])
            try await eventually("recorded as delivered") {
                try TestDatabase.scalar("SELECT status FROM webhook_deliveries WHERE event_id = $1", [id], as: String.self)
                    == "delivered"
            }
            // A delivered event, sent again on request.
            let second = try await server.call(.post, path, key: tenant.key)
            XCTAssertEqual(second.status, 200, second.text)
            try await eventually("the event sent a second time") { receiver.hits("/ok/up").count == 2 }
            XCTAssertEqual(receiver.hits("/ok/up").map(\.eventID), [id, id])
            XCTAssertEqual(
                try TestDatabase.scalar("SELECT redeliveries FROM webhook_deliveries WHERE event_id = $1", [id], as: Int64.self), 2,
                "each redelivery of an ended delivery is counted")

            // Another environment's key does not reach it.
            let promoted = try await server.call(.post, "/v1/tenants/promote", key: tenant.key)
            let live = try promoted.string("apiKeys", 0, "apiKey")
            try await server.call(.post, path, key: live).assertProblem(404, "NOT_FOUND")
        }
    }

    /// A delivery with many attempts behind it (each redelivery adds one)
    /// and the longest retry base: its next wait, 2^attempts times the base,
    /// lies past any timestamp PostgreSQL has. A failed attempt is still
    /// recorded, and the delivery fails (past its window) instead of being
    /// posted again at each lease.
    func testAFailedAttemptAfterManyIsRecordedWhateverTheBase() async throws {
        try await Self.withFailedDelivery("many", retryBaseMilliseconds: 86_400_000) { receiver, server, tenant, hook, id, _ in
            try TestDatabase.query("UPDATE webhook_deliveries SET attempts = 45 WHERE event_id = $1", [id])
            let again = try await server.call(.post, "/v1/webhooks/\(hook.id)/deliveries/\(id)/redeliver", key: tenant.key)
            XCTAssertEqual(again.status, 200, again.text)
            try await eventually("the redelivery's failed attempt recorded") {
                try TestDatabase.scalar("SELECT status FROM webhook_deliveries WHERE event_id = $1", [id], as: String.self) == "failed"
            }
            XCTAssertEqual(try TestDatabase.scalar("SELECT attempts FROM webhook_deliveries WHERE event_id = $1", [id], as: Int64.self), 46)
            XCTAssertEqual(receiver.hits("/dead/many").count, 2, "posted once more, for the redelivery")
        }
    }

    /// The events a webhook missed are listed whole, however many attempts
    /// each took (the attempts' list shows the latest 100 only): three events
    /// failed at an endpoint that was down, then one delivered once it was
    /// moved. `status` filters by delivery state; pages go oldest first, as
    /// documents' do. Refusals: 401, then another tenant's webhook or another
    /// environment's key 404 (before the query's 400), then 400 naming each
    /// bad parameter.
    func testTheEventsAWebhookMissedAreListedWholeAndPaged() async throws {
        try await Self.withFailedDelivery("listed") { receiver, server, tenant, hook, first, port in
            let more = try await withTestDatabaseValue { database in
                [
                    try await Self.record(database, tenant: tenant.id, tag: "listed-2"),
                    try await Self.record(database, tenant: tenant.id, tag: "listed-3"),
                ]
            }
            try await eventually("the two more to fail") {
                try TestDatabase.scalar(
                    "SELECT count(*) FROM webhook_deliveries WHERE event_id = ANY($1) AND status = 'failed'", [more], as: Int64.self) == 2
            }
            let fixed = try await server.call(
                .patch, "/v1/webhooks/\(hook.id)", key: tenant.key, json: #"{"url": "http://127.0.0.1:\#(port)/ok/listed"}"#)
            XCTAssertEqual(fixed.status, 200, fixed.text)
            let delivered = try await withTestDatabaseValue { try await Self.record($0, tenant: tenant.id, tag: "listed-4") }
            try await eventually("the fourth delivered") { !receiver.hits("/ok/listed").isEmpty }
            try await eventually("recorded as delivered") {
                try TestDatabase.scalar("SELECT status FROM webhook_deliveries WHERE event_id = $1", [delivered], as: String.self)
                    == "delivered"
            }
            let path = "/v1/webhooks/\(hook.id)/events"
            func ids(_ reply: Reply) -> [String] {
                guard case .array(let events)? = reply.value(["events"]) else { return [] }
                return events.compactMap { $0["eventId"]?.stringValue }
            }
            let failed = try await server.call(.get, path + "?status=failed", key: tenant.key)
            XCTAssertEqual(failed.status, 200, failed.text)
            XCTAssertEqual(ids(failed), [first] + more, "the missed events, oldest first")
            XCTAssertEqual(failed.value(["nextAfter"]), .null)
            XCTAssertEqual(failed.value(["events", 0, "eventType"]), .string("document.authorized"))
            XCTAssertEqual(failed.value(["events", 0, "deliveryStatus"]), .string("failed"))
            XCTAssertEqual(failed.value(["events", 0, "lastResponseCode"]), .number("500"))
            XCTAssertEqual(failed.value(["events", 0, "redeliveries"]), .number("0"))
            XCTAssertEqual(failed.value(["events", 0, "nextAttemptAt"]), .null, "no attempt to come")
            XCTAssertGreaterThanOrEqual(try failed.int("events", 0, "attempts"), 1)
            let deliveredOnly = try await server.call(.get, path + "?status=delivered", key: tenant.key)
            XCTAssertEqual(ids(deliveredOnly), [delivered])
            XCTAssertEqual(deliveredOnly.value(["events", 0, "lastResponseCode"]), .number("200"))
            let pending = try await server.call(.get, path + "?status=pending", key: tenant.key)
            XCTAssertEqual(ids(pending), [])
            // Every event, two at a time.
            let page1 = try await server.call(.get, path + "?limit=2", key: tenant.key)
            XCTAssertEqual(ids(page1), [first, more[0]])
            let cursor = try page1.int("nextAfter")
            let page2 = try await server.call(.get, path + "?limit=2&after=\(cursor)", key: tenant.key)
            XCTAssertEqual(ids(page2), [more[1], delivered])
            let page3 = try await server.call(.get, path + "?limit=2&after=\(try page2.int("nextAfter"))", key: tenant.key)
            XCTAssertEqual(ids(page3), [])
            XCTAssertEqual(page3.value(["nextAfter"]), .null)

            try await server.call(.get, path, key: "cfy_test_nope").assertProblem(401, "UNAUTHORIZED")
            let other = try await server.activeTenant()
            try await server.call(.get, path + "?status=bogus", key: other.key).assertProblem(404, "NOT_FOUND")
            try await server.call(.get, "/v1/webhooks/\(hook.id + 1000)/events?limit=0", key: tenant.key)
                .assertProblem(404, "NOT_FOUND")
            let bad = try await server.call(.get, path + "?status=bogus&limit=0&after=-1&status=failed", key: tenant.key)
            bad.assertProblem(400, "VALIDATION_ERROR")
            XCTAssertEqual(
                bad.value(["errors"]).flatMap { value -> [String]? in
                    guard case .array(let errors) = value else { return nil }
                    return errors.compactMap { $0["field"]?.stringValue }
                }, ["status", "limit", "after"], bad.text)
            let promoted = try await server.call(.post, "/v1/tenants/promote", key: tenant.key)
            let live = try promoted.string("apiKeys", 0, "apiKey")
            try await server.call(.get, path, key: live).assertProblem(404, "NOT_FOUND")
        }
    }

    /// The events' statements keep their indexes in a generic plan (what a
    /// prepared statement may switch to after five runs): every event of an
    /// endpoint read in delivery order through an index, never sorted
    /// (webhook_deliveries_by_endpoint_and_id, or one that starts with the tenant and
    /// the id when the statistics say a tenant has few endpoints), the failed
    /// ones through webhook_deliveries_failed_by_endpoint alone.
    func testTheEventsStatementsKeepTheirIndexesInGenericPlans() throws {
        func plan(status: String?) throws -> String {
            try genericPlan(WebhooksStore.events(endpoint: 1, status: status, after: 0, limit: 50).query, arguments: "1, 0, 50")
        }
        let every = try plan(status: nil)
        let deliveries = every.split(separator: "\n").first { $0.contains(" on webhook_deliveries d") } ?? ""
        XCTAssertTrue(deliveries.contains("Index Scan using webhook_deliveries_"), every)
        XCTAssertFalse(every.contains("Sort"), every)
        let failed = try plan(status: "failed")
        XCTAssertTrue(failed.contains("webhook_deliveries_failed_by_endpoint"), failed)
    }

    /// A purge of old history beside a redelivery of one of its events: the
    /// redelivery, committed after the purge chose the event, keeps it (the
    /// purge failed the whole batch on the event's foreign key), and the purge
    /// removes the rest. Held apart by a lock on the delivery's row.
    func testAPurgeBesideARedeliveryKeepsTheRedeliveredEvent() async throws {
        try await TestServer.run(configure: { $0.webhooks.allowHTTP = true }) { server in
            let tenant = try await server.signUp()
            let hook = try await server.createWebhook(tenant.key, url: "http://127.0.0.1:9/x")
            var events: [String] = []
            try await withTestDatabase { database in
                for tag in ["redelivered", "purged"] { events.append(try await Self.record(database, tenant: tenant.id, tag: tag)) }
            }
            // Both failed three days ago (a purge with a day's retention takes them; the servers' 30 days do not).
            try TestDatabase.query(
                "UPDATE webhook_events SET created_at = now() - interval '3 days' WHERE id = ANY($1::text[])", [events])
            try TestDatabase.query(
                """
                UPDATE webhook_deliveries SET status = 'failed', next_attempt_at = NULL, updated_at = now() - interval '3 days'
                 WHERE event_id = ANY($1::text[])
                """, [events])
            // The redelivered event's delivery held, so that the redelivery and the purge both wait for it.
            let holder = try TestDatabase.owner()
            try holder.query("BEGIN", prepared: false)
            try holder.query("SELECT 1 FROM webhook_deliveries WHERE event_id = \(events[0]) FOR UPDATE", prepared: false)
            let redeliver = "/v1/webhooks/\(hook.id)/deliveries/\(events[0])/redeliver"
            let redelivery = Task { () throws -> (Int, String) in
                let reply = try await server.call(.post, redeliver, key: tenant.key)
                return (reply.status, reply.text)
            }
            // Waiting for a lock, by their statements' text (claims of other tests wait on locks too).
            @Sendable func waiting(_ pattern: String) throws -> Bool {
                try TestDatabase.scalar(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE $1", [pattern], as: Int64.self)
                    > 0
            }
            try await eventually("the redelivery waiting") { try waiting("%redeliveries = d.redeliveries%") }
            let purge = Task.detached { () throws -> Int64 in
                let app = try Connection(conninfo: TestDatabase.appURL)
                return try app.query("SELECT purge_webhook_history(interval '1 day')", prepared: false)[0].decode(Int64.self, at: 0)
            }
            try await eventually("the purge waiting") { try waiting("SELECT purge_webhook_history(interval '1 day')%") }
            try holder.query("COMMIT", prepared: false)
            let (status, text) = try await redelivery.value
            XCTAssertEqual(status, 200, text)
            let purged = try await purge.value
            // At least the other event (old history of tests running beside this one may go too).
            XCTAssertGreaterThanOrEqual(purged, 1, "the batch purged, not failed")
            XCTAssertEqual(try TestDatabase.scalar("SELECT count(*) FROM webhook_events WHERE id = $1", [events[0]], as: Int64.self), 1)
            XCTAssertEqual(try TestDatabase.scalar("SELECT count(*) FROM webhook_events WHERE id = $1", [events[1]], as: Int64.self), 0)
            XCTAssertEqual(
                try TestDatabase.scalar("SELECT status FROM webhook_deliveries WHERE event_id = $1", [events[0]], as: String.self),
                "pending")
        }
    }

    /// A delivery whose endpoint's secret does not open (a master key that
    /// does not match) is not attempted; it is looked at again, and fails
    /// once the retry window is over, as a delivery that never succeeded does.
    func testADeliveryWhoseSecretDoesNotOpenFailsAfterTheRetryWindow() async throws {
        let scope = TenantScope()
        try await WebhookReceiver.run { receiver, port in
            try await TestServer.run(configure: { scope.configure(&$0, retryForSeconds: 1) }) { server in
                let tenant = try await server.signUp()
                let webhook = try await server.createWebhook(tenant.key, url: "http://127.0.0.1:\(port)/sealed/a")
                try TestDatabase.query(
                    "UPDATE webhook_endpoints SET sealed_secret = '\\x00010203'::bytea WHERE id = $1", [webhook.id])
                scope.add(tenant.id)
                let id = try await withTestDatabaseValue { try await Self.record($0, tenant: tenant.id, tag: "sealed") }
                try await eventually("the delivery to fail") {
                    try TestDatabase.scalar("SELECT status FROM webhook_deliveries WHERE event_id = $1", [id], as: String.self) == "failed"
                }
                let error = try TestDatabase.scalar(
                    "SELECT last_error FROM webhook_deliveries WHERE event_id = $1", [id], as: String.self)
                XCTAssertTrue(error.contains("secret cannot be opened"), error)
                XCTAssertTrue(receiver.hits("/sealed/a").isEmpty, "nothing is sent unsigned")
            }
        }
    }

    /// A delivery claimed ahead waits for a worker, leased: its lease is
    /// stamped again when its attempt starts, and one that lapsed meanwhile is
    /// left to the next claim (another process may hold it by then).
    func testTheLeaseIsRenewedWhenTheAttemptStarts() async throws {
        try await TestServer.run { server in
            let tenant = try await server.signUp()
            _ = try await server.createWebhook(tenant.key, url: "https://hooks.example.com/a")
            try await withTestDatabase { database in
                let id = try await Self.record(database, tenant: tenant.id, tag: "lease")
                let lease = UUID()
                let claimed = try await database.claimWebhookDeliveries(
                    lease: lease, limit: 1, leaseMilliseconds: 1_000, perEndpoint: 2, perTenant: 8, tenants: [tenant.id])
                XCTAssertEqual(claimed.count, 1)
                let delivery = try XCTUnwrap(claimed.first).deliveryID
                let loaded = try await database.transaction(forTenantID: tenant.id) { transaction, _ in
                    try WebhooksStore.load(
                        transaction, tenantID: tenant.id, deliveryID: delivery, lease: lease, leaseMilliseconds: 600_000)
                }
                XCTAssertEqual(loaded?.eventID, id)
                let left = try TestDatabase.scalar(
                    "SELECT extract(epoch FROM leased_until - now())::float8 FROM webhook_deliveries WHERE id = $1", [delivery],
                    as: Double.self)
                XCTAssertGreaterThan(left, 500, "the lease runs from the start of the attempt")
                try TestDatabase.query("UPDATE webhook_deliveries SET leased_until = now() - interval '1 second' WHERE id = $1", [delivery])
                let lapsed = try await database.transaction(forTenantID: tenant.id) { transaction, _ in
                    try WebhooksStore.load(
                        transaction, tenantID: tenant.id, deliveryID: delivery, lease: lease, leaseMilliseconds: 600_000)
                }
                XCTAssertNil(lapsed, "a lapsed lease is not taken up again")
            }
        }
    }

    /// A worker whose lease lapsed records its attempt without undoing the
    /// claim that took the delivery over, even one that commits while the
    /// record waits for the row (the record reads the lease again then).
    func testALapsedWorkerDoesNotUndoAClaimThatCommitsWhileItRecords() async throws {
        try await TestServer.run { server in
            let tenant = try await server.signUp()
            _ = try await server.createWebhook(tenant.key, url: "https://hooks.example.com/a")
            try await withTestDatabase { database in
                _ = try await Self.record(database, tenant: tenant.id, tag: "takeover")
                let (pending, lease) = try await Self.claimAndLoad(database, tenant: tenant.id, leaseMilliseconds: 1_000)
                let delivery = pending.id
                // Its lease lapses and another claim takes the delivery; that
                // claim has not committed yet when the first worker records.
                let other = UUID()
                let claimer = try TestDatabase.owner()
                try claimer.query("BEGIN")
                try claimer.query(
                    "UPDATE webhook_deliveries SET leased_by = $1::uuid, leased_until = now() + interval '1 minute' WHERE id = $2",
                    [other.uuidString, delivery], prepared: false)
                let claimerPID = try claimer.query("SELECT pg_backend_pid()")[0].decode(Int32.self, at: 0)
                async let recorded = database.transaction(forTenantID: tenant.id) { transaction, _ in
                    try WebhooksStore.record(
                        transaction, pending,
                        .init(kind: "delivered", responseCode: 200, durationMilliseconds: 5, error: nil),
                        lease: lease, worker: UUID(), retryBaseMilliseconds: 1_000, retryForSeconds: 3_600)
                }
                XCTAssertNotNil(TestDatabase.sessionBlocked(by: claimerPID, timeout: 10), "the record waits for the row")
                try claimer.query("COMMIT")
                _ = try await recorded
                let row = try TestDatabase.query(
                    "SELECT status, leased_by::text, attempts FROM webhook_deliveries WHERE id = $1", [delivery])[0]
                let (status, leasedBy, attempts) = try row.decode((String, String?, Int).self)
                XCTAssertEqual(status, "pending", "the later claim's attempt decides")
                XCTAssertEqual(leasedBy, other.uuidString.lowercased(), "the later claim keeps its lease")
                XCTAssertEqual(attempts, 0)
                let kept = try TestDatabase.scalar(
                    "SELECT count(*) FROM webhook_delivery_attempts WHERE delivery_id = $1", [delivery], as: Int.self)
                XCTAssertEqual(kept, 1, "the lapsed worker's attempt is still kept")
            }
        }
    }

    /// The endpoint's answer is kept while the database refuses its record
    /// for a moment: the record is tried again while the lease lasts, and the
    /// event is posted once, not again when the lease ends.
    func testAnAttemptWhoseRecordFailsIsRecordedLaterAndNotPostedAgain() async throws {
        try await Self.withRecordsRefused("refused") { receiver, server, tenant, hook, id, logs, heal in
            try await eventually("two tries of the record refused") {
                logs.lines.withLockedValue { $0.count(where: { $0.contains("webhook attempt not recorded yet") }) } >= 2
            }
            XCTAssertEqual(receiver.hits("/ok/refused").count, 1)
            let waiting = try TestDatabase.scalar(
                "SELECT status FROM webhook_deliveries WHERE event_id = $1", [id], as: String.self)
            XCTAssertEqual(waiting, "pending", "nothing recorded yet")
            try heal()
            try await eventually("the attempt recorded") {
                try TestDatabase.scalar(
                    "SELECT status FROM webhook_deliveries WHERE event_id = $1", [id], as: String.self) == "delivered"
            }
            XCTAssertEqual(receiver.hits("/ok/refused").count, 1, "the event was posted once")
            let history = try await server.call(.get, "/v1/webhooks/\(hook.id)/deliveries", key: tenant.key).array("deliveries")
            XCTAssertEqual(history.map { $0["outcome"] }, [.string("delivered")], "one attempt, recorded once")
            let text = logs.text
            XCTAssertTrue(text.contains("webhook attempt recorded"), "a line says the record took more than one try")
            XCTAssertFalse(text.contains("cannot record a webhook attempt"), "no record was given up")
        }
    }

    /// An attempt whose record keeps failing until its lease ends is given
    /// up (a warning), and the event is posted again by the next claim, with
    /// the same id and body: at least once, never lost. Once the records go
    /// through, that attempt is the one recorded.
    func testAnAttemptNeverRecordedWithinItsLeaseIsPostedAgain() async throws {
        try await Self.withRecordsRefused("unrecorded") { receiver, server, tenant, hook, id, logs, heal in
            // The lease: WEBHOOK_TIMEOUT_MS (1 s here) + DB_POOL_WAIT_MS (2 s) + 5 s.
            try await eventually("the record given up when the lease ends", within: 20) {
                logs.text.contains("cannot record a webhook attempt")
            }
            try await eventually("the event posted again", within: 10) { receiver.hits("/ok/unrecorded").count >= 2 }
            let hits = receiver.hits("/ok/unrecorded")
            XCTAssertEqual(hits.map(\.eventID), [id, id], "the same event")
            XCTAssertEqual(hits[0].body, hits[1].body, "with the same body")
            try heal()
            try await eventually("the second attempt recorded") {
                try TestDatabase.scalar(
                    "SELECT status FROM webhook_deliveries WHERE event_id = $1", [id], as: String.self) == "delivered"
            }
            XCTAssertEqual(receiver.hits("/ok/unrecorded").count, 2, "posted twice, not more")
            let history = try await server.call(.get, "/v1/webhooks/\(hook.id)/deliveries", key: tenant.key).array("deliveries")
            XCTAssertEqual(history.map { $0["outcome"] }, [.string("delivered")], "the attempt that was recorded")
        }
    }

    /// A server delivering to a webhook at `/ok/<path>` of a local receiver,
    /// one event recorded for it, while the database refuses the tenant's
    /// attempt records until `heal` is called (or the body ends).
    static func withRecordsRefused(
        _ path: String,
        _ body:
            @escaping @Sendable (
                _ receiver: WebhookReceiver, _ server: TestServer, _ tenant: TestServer.Tenant, _ hook: (id: Int64, secret: String),
                _ eventID: String, _ logs: LogCapture, _ heal: () throws -> Void
            ) async throws -> Void
    ) async throws {
        let scope = TenantScope()
        let logs = LogCapture()
        try await WebhookReceiver.run { receiver, port in
            try await TestServer.run(configure: { scope.configure(&$0) }, logs: logs) { server in
                let tenant = try await server.signUp()
                let heal = try refuseInserts(into: "webhook_delivery_attempts", ofTenant: tenant.id)
                defer { try? heal() }
                scope.add(tenant.id)
                let hook = try await server.createWebhook(tenant.key, url: "http://127.0.0.1:\(port)/ok/\(path)")
                let id = try await withTestDatabaseValue { try await Self.record($0, tenant: tenant.id, tag: path) }
                try await body(receiver, server, tenant, hook, id, logs, heal)
            }
        }
    }

    /// A record tried again after a try that did commit (its commit's answer
    /// lost with the connection) finds its attempt under the claim's lease and
    /// does nothing: one attempt, counted once.
    func testARecordTriedAgainAfterItCommittedDoesNothing() async throws {
        try await TestServer.run { server in
            let tenant = try await server.signUp()
            _ = try await server.createWebhook(tenant.key, url: "https://hooks.example.com/a")
            try await withTestDatabase { database in
                _ = try await Self.record(database, tenant: tenant.id, tag: "twice")
                let (pending, lease) = try await Self.claimAndLoad(database, tenant: tenant.id, leaseMilliseconds: 60_000)
                let delivery = pending.id
                let outcome = WebhooksStore.Outcome(kind: "http_status", responseCode: 500, durationMilliseconds: 5, error: "HTTP 500")
                let first = try await database.transaction(forTenantID: tenant.id) { transaction, _ in
                    try WebhooksStore.record(
                        transaction, pending, outcome, lease: lease, worker: UUID(), retryBaseMilliseconds: 1_000, retryForSeconds: 3_600)
                }
                XCTAssertEqual(first, "pending", "retried later")
                let again = try await database.transaction(
                    forTenantID: tenant.id, prologue: [WebhooksStore.lockForRecord(deliveryID: delivery)]
                ) { transaction, _ in
                    try WebhooksStore.record(
                        transaction, pending, outcome, lease: lease, worker: UUID(), retryBaseMilliseconds: 1_000, retryForSeconds: 3_600)
                }
                XCTAssertNil(again, "recorded before: nothing done")
                let row = try TestDatabase.query("SELECT status, attempts FROM webhook_deliveries WHERE id = $1", [delivery])[0]
                let (status, attempts) = try row.decode((String, Int).self)
                XCTAssertEqual(status, "pending")
                XCTAssertEqual(attempts, 1, "counted once")
                let kept = try TestDatabase.scalar(
                    "SELECT count(*) FROM webhook_delivery_attempts WHERE delivery_id = $1", [delivery], as: Int.self)
                XCTAssertEqual(kept, 1, "kept once")
            }
        }
    }

    /// A delete that commits beside the decision that makes a delivery does
    /// not see it, and leaves it pending for a deleted endpoint: the worker
    /// that claims it fails it, as the delete would have, and sends nothing.
    func testADeliveryToAnEndpointDeletedBesideItsEventFails() async throws {
        let scope = TenantScope()
        try await WebhookReceiver.run { receiver, port in
            try await TestServer.run(configure: { scope.configure(&$0) }) { server in
                let tenant = try await server.signUp()
                let webhook = try await server.createWebhook(tenant.key, url: "http://127.0.0.1:\(port)/gone/a")
                let id = try await withTestDatabaseValue { try await Self.record($0, tenant: tenant.id, tag: "gone") }
                // What the delete wrote, without the deliveries it could not see.
                try TestDatabase.query("UPDATE webhook_endpoints SET deleted_at = now() WHERE id = $1", [webhook.id])
                scope.add(tenant.id)
                try await eventually("the delivery to fail") {
                    try TestDatabase.scalar("SELECT status FROM webhook_deliveries WHERE event_id = $1", [id], as: String.self) == "failed"
                }
                let row = try TestDatabase.query(
                    "SELECT last_error, attempts, leased_by IS NULL FROM webhook_deliveries WHERE event_id = $1", [id])[0]
                let (error, attempts, unleased) = try row.decode((String, Int, Bool).self)
                XCTAssertEqual(error, "the webhook was deleted")
                XCTAssertEqual(attempts, 0)
                XCTAssertTrue(unleased)
                XCTAssertTrue(receiver.hits("/gone/a").isEmpty, "nothing is sent to a deleted webhook")
            }
        }
    }

    func testASlowEndpointDoesNotDelayAnother() async throws {
        let scope = TenantScope()
        try await WebhookReceiver.run { receiver, port in
            try await TestServer.run(configure: { scope.configure(&$0, timeoutMilliseconds: 5_000) }) { server in
                let slowTenant = try await server.signUp()
                scope.add(slowTenant.id)
                let liveTenant = try await server.signUp()
                scope.add(liveTenant.id)
                _ = try await server.createWebhook(slowTenant.key, url: "http://127.0.0.1:\(port)/slow/a")
                _ = try await server.createWebhook(liveTenant.key, url: "http://127.0.0.1:\(port)/ok/live")
                try await withTestDatabase { database in
                    for index in 0..<10 { _ = try await Self.record(database, tenant: slowTenant.id, tag: "slow-\(index)") }
                    try await eventually("the slow endpoint to be busy") { receiver.hits("/slow/a").count >= 1 }
                    for index in 0..<5 { _ = try await Self.record(database, tenant: liveTenant.id, tag: "live-\(index)") }
                    try await eventually("the live endpoint's five") { receiver.hits("/ok/live").count == 5 }
                    // In order, not by the clock: all five arrived while the slow
                    // endpoint still held its first deliveries (3 s each), so none
                    // waited for a slow one to end.
                    let slowAttempts = try TestDatabase.scalar(
                        "SELECT count(*) FROM webhook_delivery_attempts WHERE tenant_id = $1", [slowTenant.id], as: Int64.self)
                    XCTAssertEqual(slowAttempts, 0, "not queued behind the slow endpoint")
                }
                XCTAssertLessThanOrEqual(receiver.hits("/slow/a").count, 2, "at most two deliveries in flight per endpoint")
            }
        }
    }

    /// Sixteen workers deliver to eight endpoints of one host at once (two
    /// each): each delivery has a connection of its own. Had they shared a
    /// client with its default of 8 connections per host, half would wait for
    /// the first half (3 s each) and end past the 5 s timeout, never sent.
    func testAsManyDeliveriesToOneHostAsWorkers() async throws {
        let scope = TenantScope()
        try await WebhookReceiver.run { receiver, port in
            try await TestServer.run(configure: {
                scope.configure(&$0, timeoutMilliseconds: 5_000)
                $0.webhooks.workers = 16
            }) { server in
                let tenant = try await server.signUp()
                for endpoint in 0..<8 {
                    _ = try await server.createWebhook(tenant.key, url: "http://127.0.0.1:\(port)/slow/e\(endpoint)")
                }
                try await withTestDatabase { database in
                    _ = try await Self.record(database, tenant: tenant.id, tag: "wide-0")
                    _ = try await Self.record(database, tenant: tenant.id, tag: "wide-1")
                    scope.add(tenant.id)
                    try await eventually("sixteen attempts recorded", within: 30) {
                        try TestDatabase.scalar(
                            "SELECT count(*) FROM webhook_delivery_attempts WHERE tenant_id = $1", [tenant.id], as: Int64.self) >= 16
                    }
                    let outcomes = try TestDatabase.scalar(
                        "SELECT string_agg(outcome || ' ' || n, ', ') FROM (SELECT outcome, count(*) AS n FROM webhook_delivery_attempts WHERE tenant_id = $1 GROUP BY outcome) o",
                        [tenant.id], as: String.self)
                    XCTAssertEqual(outcomes, "delivered 16", "every delivery sent, none timed out waiting for a connection")
                }
                XCTAssertEqual(receiver.hits("/slow/").count, 16)
            }
        }
    }

    /// Two claims at the same moment (two processes, say) keep the limit of
    /// deliveries in flight per endpoint: the second waits for the first to
    /// commit, then counts its leases. Without the wait, each counted none in
    /// flight in its own snapshot and took two.
    func testConcurrentClaimsKeepTheLimitPerEndpoint() async throws {
        let scope = TenantScope()
        try await WebhookReceiver.run { _, port in
            let tenant = try await TestServer.run(returning: scope) { server in
                let tenant = try await server.signUp()
                _ = try await server.createWebhook(tenant.key, url: "http://127.0.0.1:\(port)/ok/claims")
                return tenant
            }
            try await withTestDatabase { database in
                for index in 0..<4 { _ = try await Self.record(database, tenant: tenant.id, tag: "claim-\(index)") }
            }
            let claim = "SELECT count(*) FROM claim_webhook_deliveries(gen_random_uuid(), 10, 60000, 2, 100, ARRAY[$1]::bigint[])"
            let first = try TestDatabase.owner()
            try first.query("BEGIN", prepared: false)
            XCTAssertEqual(try first.query(claim, [tenant.id], prepared: false)[0].decode(Int64.self, at: 0), 2, "the limit of two")
            let firstPID = try first.query("SELECT pg_backend_pid()", prepared: false)[0].decode(Int32.self, at: 0)
            let second = NIOLockedValueBox<Result<Int64, any Error>?>(nil)
            let done = DispatchSemaphore(value: 0)
            Thread.detachNewThread {
                let result = Result { try TestDatabase.owner().query(claim, [tenant.id], prepared: false)[0].decode(Int64.self, at: 0) }
                second.withLockedValue { $0 = result }
                done.signal()
            }
            XCTAssertNotNil(TestDatabase.sessionBlocked(by: firstPID, timeout: 10), "the second claim waits for the first")
            try first.query("COMMIT", prepared: false)
            XCTAssertEqual(done.wait(timeout: .now() + 30), .success)
            XCTAssertEqual(try second.withLockedValue { try $0?.get() }, 0, "two are in flight already")
        }
    }

    func testADeliveryWhoseWorkerDiedIsMadeAgainWithTheSameID() async throws {
        let scope = TenantScope()
        try await WebhookReceiver.run { receiver, port in
            let tenant = try await TestServer.run(returning: scope) { server in
                let tenant = try await server.signUp()
                _ = try await server.createWebhook(tenant.key, url: "http://127.0.0.1:\(port)/ok/crash")
                return tenant
            }
            // A worker claims the delivery, then dies before recording anything:
            // its lease (1 s here) is all that is left of it.
            let id = try await withTestDatabaseValue { database in
                let id = try await Self.record(database, tenant: tenant.id, tag: "crash")
                let claimed = try await database.claimWebhookDeliveries(
                    lease: UUID(), limit: 10, leaseMilliseconds: 1_000, perEndpoint: 2, perTenant: 8, tenants: [tenant.id])
                XCTAssertEqual(claimed.count, 1)
                return id
            }
            try await TestServer.run(configure: { scope.configure(&$0) }) { _ in
                scope.add(tenant.id)
                try await eventually("the delivery after the lease ended") { receiver.hits("/ok/crash").count == 1 }
                XCTAssertEqual(receiver.hits("/ok/crash").first?.eventID, id)
                try await eventually("delivered") {
                    try TestDatabase.scalar("SELECT status FROM webhook_deliveries WHERE event_id = $1", [id], as: String.self)
                        == "delivered"
                }
            }
        }
    }
}

/// `withTestDatabase`, returning what `body` returns.
func withTestDatabaseValue<T: Sendable>(_ body: (Database) async throws -> T) async throws -> T {
    var value: T?
    try await withTestDatabase { value = try await body($0) }
    return value!
}

extension TestServer {
    /// Runs a server with the webhook workers off (local http endpoints allowed)
    /// and returns what `body` returns.
    static func run<T: Sendable>(returning _: TenantScope, _ body: @escaping @Sendable (TestServer) async throws -> T) async throws -> T {
        let box = NIOLockedValueBox<T?>(nil)
        try await run(configure: { $0.webhooks.allowHTTP = true }) { server in
            let value = try await body(server)
            box.withLockedValue { $0 = value }
        }
        return box.withLockedValue { $0 }!
    }
}
