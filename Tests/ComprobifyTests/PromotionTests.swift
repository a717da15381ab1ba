import Foundation
import HTTPTypes
import NIOConcurrencyHelpers
import Postgres
import TestSupport
import XCTest

@testable import Comprobify

/// seeds/promote-tenant.txt and the promotion paragraph of API.md.
final class PromotionTests: XCTestCase {
    /// What a tenant looks like in the database, to prove that refused requests changed nothing.
    static func snapshot(_ tenantID: Int64) throws -> String {
        try TestDatabase.scalar(
            """
            SELECT concat_ws(' | ',
                (SELECT environment || '/' || coalesce(promoted_at::text, '-') FROM tenants WHERE id = $1),
                (SELECT string_agg(id || ':' || sandbox, ',' ORDER BY id) FROM issuers WHERE tenant_id = $1),
                (SELECT string_agg(id || ':' || environment || ':' || (revoked_at IS NULL), ',' ORDER BY id) FROM api_keys WHERE tenant_id = $1),
                (SELECT count(*) FROM sequentials WHERE tenant_id = $1 AND environment = 'production'),
                (SELECT count(*) FROM audit_events WHERE tenant_id = $1 AND action = 'tenant.promoted'))
            """,
            [tenantID], as: String.self
        )
    }

    func testTheFullFlowOfThePublishedDocumentation() async throws {
        try await TestServer.run { server in
            let tenant = try await server.activeTenant()
            let first = try await server.createIssuer(tenant.key, emissionPoint: "001")
            let second = try await server.createIssuer(tenant.key, emissionPoint: "002")
            let erp = try await server.mintKey(tenant.key, label: "erp-integration")
            let unnamed = try await server.mintKey(tenant.key)
            _ = try await server.issue(tenant.key, issuer: first)

            let reply = try await server.call(
                .post, "/v1/tenants/promote", key: tenant.key,
                json:
                    #"{"initialSequentials": [{"issuerId": \#(first), "documentType": "01", "sequential": 100}, {"issuerId": \#(second), "documentType": "07", "sequential": 5.0}]}"#
            )
            XCTAssertEqual(reply.status, 200, reply.text)
            XCTAssertEqual(reply.headers[.cacheControl], "no-store")
            let issued = try reply.array("apiKeys")
            XCTAssertEqual(issued.map { $0["label"] }, [.string("Initial sandbox key"), .string("erp-integration"), .null])
            let tokens = issued.compactMap { $0["apiKey"]?.stringValue }
            XCTAssertEqual(tokens.count, 3)
            for token in tokens { XCTAssertNotNil(token.wholeMatch(of: /cfy_live_[0-9a-f]{64}/)) }

            for old in [tenant.key, erp, unnamed] {
                let refused = try await server.call(.get, "/v1/keys", key: old)
                refused.assertProblem(401, "UNAUTHORIZED")
            }
            let me = try await server.call(.get, "/v1/tenants/me", key: tokens[1])
            XCTAssertEqual(try me.string("tenant", "environment"), "production")
            XCTAssertFalse(me.isNull("tenant", "promotedAt"))
            let keys = try await server.call(.get, "/v1/keys", key: tokens[0])
            XCTAssertEqual(try keys.array("keys").map { $0["environment"] }, Array(repeating: .string("production"), count: 3))

            let issuers = try await server.call(.get, "/v1/issuers", key: tokens[0])
            XCTAssertEqual(try issuers.array("issuers").map { $0["sandbox"] }, [.bool(false), .bool(false)])
            for (issuer, special) in [(first, ("01", Int64(100))), (second, ("07", Int64(5)))] {
                let counters = try await server.call(.get, "/v1/issuers/\(issuer)/sequentials", key: tokens[0])
                let production = try counters.array("sequentials").filter { $0["environment"] == .string("production") }
                XCTAssertEqual(production.compactMap { $0["documentType"]?.stringValue }, DocumentType.codes)
                for counter in production {
                    let expected: Int64 = counter["documentType"] == .string(special.0) ? special.1 : 1
                    XCTAssertEqual(counter["next"]?.intValue, expected)
                }
            }
            let document = try await server.issue(tokens[2], issuer: first)
            XCTAssertEqual(try document.int("document", "sequential"), 100)
            XCTAssertEqual(try document.string("document", "number"), "001-001-000000100")

            let audit = try TestDatabase.query(
                "SELECT actor, actor_key_id, details->>'keysReplaced' FROM audit_events WHERE tenant_id = $1 AND action = 'tenant.promoted'",
                [tenant.id]
            )
            XCTAssertEqual(audit.count, 1)
            XCTAssertEqual(try audit[0].decode(String.self, at: 2), "3")
            // Each sandbox key revoked and each production key minted has its own event.
            let keyEvents = try TestDatabase.query(
                """
                SELECT e.action, k.environment FROM audit_events e JOIN api_keys k ON k.id = (e.details->>'keyId')::bigint
                 WHERE e.tenant_id = $1 AND e.action IN ('api_key.revoked', 'api_key.minted')
                   AND e.created_at >= (SELECT promoted_at FROM tenants WHERE id = $1)
                 ORDER BY e.id
                """, [tenant.id])
            XCTAssertEqual(
                try keyEvents.rows.map { "\(try $0.decode(String.self, at: 0)) \(try $0.decode(String.self, at: 1))" },
                Array(repeating: ["api_key.revoked sandbox", "api_key.minted production"], count: 3).flatMap { $0 })

            // Once in production: 409, whatever key asks.
            let again = try await server.call(.post, "/v1/tenants/promote", key: tokens[0])
            again.assertProblem(409, "CONFLICT", reason: "ALREADY_PROMOTED")
            let rig = try await server.mintKey(tokens[0], label: "rig")
            let fromSandbox = try await server.call(.post, "/v1/tenants/promote", key: rig, json: "{}")
            fromSandbox.assertProblem(409, "CONFLICT", reason: "ALREADY_PROMOTED")
            // A sandbox key changes neither what a production issuer's
            // comprobantes say nor the key that signs them; a production key does.
            let rigPatch = try await server.call(.patch, "/v1/issuers/\(first)", key: rig, json: #"{"tradeName": "Rig"}"#)
            rigPatch.assertProblem(401, "UNAUTHORIZED")
            let rigUpload = try await server.call(.put, "/v1/issuers/\(first)/certificate", key: rig, json: TestSigning.uploadBody)
            rigUpload.assertProblem(401, "UNAUTHORIZED")
            let patch = try await server.call(.patch, "/v1/issuers/\(first)", key: tokens[0], json: #"{"tradeName": "Tienda"}"#)
            XCTAssertEqual(patch.status, 200, patch.text)
            let upload = try await server.call(.put, "/v1/issuers/\(first)/certificate", key: tokens[0], json: TestSigning.uploadBody)
            XCTAssertEqual(upload.status, 200, upload.text)
            // New issuers are born production with their counters.
            let born = try await server.createIssuer(tokens[0], emissionPoint: "003")
            let bornCounters = try await server.call(.get, "/v1/issuers/\(born)/sequentials", key: tokens[0])
            XCTAssertEqual(try bornCounters.array("sequentials").count, 6)
            let bornIssuer = try await server.call(.get, "/v1/issuers/\(born)", key: tokens[0])
            XCTAssertEqual(bornIssuer.value(["issuer", "sandbox"]), .bool(false))
        }
    }

    /// An Idempotency-Key used in sandbox and repeated with a production key
    /// after the promotion (an ERP that tested, then went live the same day)
    /// issues a production document; it never replays the sandbox one. With
    /// another body or issuer it is 409.
    func testAnIdempotencyKeyFromSandboxIssuesAfreshInProduction() async throws {
        try await TestServer.run { server in
            let tenant = try await server.activeTenant()
            let issuer = try await server.createIssuer(tenant.key)
            let body = Bodies.factura(metadata: #"{"order": "INV-1001"}"#)
            let sandbox = try await server.issue(tenant.key, issuer: issuer, headers: [.idempotencyKey: "INV-1001"], body: body)
            XCTAssertEqual(sandbox.status, 201, sandbox.text)
            XCTAssertEqual(try sandbox.string("document", "environment"), "sandbox")
            let promoted = try await server.call(.post, "/v1/tenants/promote", key: tenant.key)
            XCTAssertEqual(promoted.status, 200, promoted.text)
            let live = try XCTUnwrap(try promoted.array("apiKeys").first?["apiKey"]?.stringValue)
            // With another body, or another issuer, the key is 409 as always (API.md).
            let otherBody = try await server.issue(
                live, issuer: issuer, headers: [.idempotencyKey: "INV-1001"], body: Bodies.factura(metadata: #"{"order": "INV-1002"}"#))
            otherBody.assertProblem(409, "CONFLICT", reason: "IDEMPOTENCY_KEY_REUSED")
            let otherIssuer = try await server.createIssuer(live, establishment: "002", emissionPoint: "001")
            let elsewhere = try await server.issue(live, issuer: otherIssuer, headers: [.idempotencyKey: "INV-1001"], body: body)
            elsewhere.assertProblem(409, "CONFLICT", reason: "IDEMPOTENCY_KEY_REUSED")
            let first = try await server.issue(live, issuer: issuer, headers: [.idempotencyKey: "INV-1001"], body: body)
            XCTAssertEqual(first.status, 201, first.text)
            XCTAssertNil(first.headers[.idempotentReplayed], "not a replay of the sandbox document")
            XCTAssertEqual(try first.string("document", "environment"), "production")
            XCTAssertEqual(Array(try first.string("document", "accessKey"))[23], "2", "ambiente 2 in the access key")
            XCTAssertNotEqual(try first.int("document", "id"), try sandbox.int("document", "id"))
            // From then on the key replays the production document.
            let again = try await server.issue(live, issuer: issuer, headers: [.idempotencyKey: "INV-1001"], body: body)
            XCTAssertEqual(again.headers[.idempotentReplayed], "true")
            XCTAssertEqual(again.value(["document"]), first.value(["document"]))
        }
    }

    func testRefusalsChangeNothing() async throws {
        try await TestServer.run { server in
            let pending = try await server.signUp()
            _ = try await server.createIssuer(pending.key)
            let before = try PromotionTests.snapshot(pending.id)
            let forbidden = try await server.call(.post, "/v1/tenants/promote", key: pending.key)
            forbidden.assertProblem(403, "FORBIDDEN")
            XCTAssertEqual(try PromotionTests.snapshot(pending.id), before)

            let tenant = try await server.activeTenant()
            let issuer = try await server.createIssuer(tenant.key)
            let foreign = try await server.createIssuer(pending.key, emissionPoint: "002")
            let snapshot = try PromotionTests.snapshot(tenant.id)
            let entry = { (issuer: String, type: String, sequential: String) in
                #"{"issuerId": \#(issuer), "documentType": \#(type), "sequential": \#(sequential)}"#
            }
            for (body, field) in [
                (#"{"initialSequentials": "all"}"#, "initialSequentials"),
                (#"{"initialSequentials": {"issuerId": 1}}"#, "initialSequentials"),
                (#"{"initialSequentials": [5]}"#, "initialSequentials[0]"),
                (#"{"initialSequentials": [\#(entry(String(foreign), "\"01\"", "1"))]}"#, "initialSequentials[0].issuerId"),
                (#"{"initialSequentials": [\#(entry("999999999", "\"01\"", "1"))]}"#, "initialSequentials[0].issuerId"),
                (#"{"initialSequentials": [\#(entry(String(issuer), "\"02\"", "1"))]}"#, "initialSequentials[0].documentType"),
                (#"{"initialSequentials": [\#(entry(String(issuer), "1", "1"))]}"#, "initialSequentials[0].documentType"),
                (#"{"initialSequentials": [\#(entry(String(issuer), "\"01\"", "0"))]}"#, "initialSequentials[0].sequential"),
                (#"{"initialSequentials": [\#(entry(String(issuer), "\"01\"", "1000000000"))]}"#, "initialSequentials[0].sequential"),
                (#"{"initialSequentials": [\#(entry(String(issuer), "\"01\"", "1.5"))]}"#, "initialSequentials[0].sequential"),
                (#"{"initialSequentials": [\#(entry(String(issuer), "\"01\"", "\"7\""))]}"#, "initialSequentials[0].sequential"),
                (
                    #"{"initialSequentials": [\#(entry(String(issuer), "\"01\"", "1")), \#(entry(String(issuer), "\"01\"", "2"))]}"#,
                    "initialSequentials[1]"
                ),
                (#"{"initialSequentials": [{"documentType": "01", "sequential": 1}]}"#, "initialSequentials[0].issuerId"),
                (#"{"initialSequentials": null}"#, "initialSequentials"),
                (#"{"initialSequentials": [\#(entry(String(issuer), "\"\"", "1"))]}"#, "initialSequentials[0].documentType"),
                (#"{"initialSequentials": [\#(entry(String(issuer), "\"01,03\"", "1"))]}"#, "initialSequentials[0].documentType"),
            ] {
                let reply = try await server.call(.post, "/v1/tenants/promote", key: tenant.key, json: body)
                reply.assertProblem(400, "VALIDATION_ERROR")
                XCTAssertEqual(reply.errorFields, [field], body)
                XCTAssertEqual(try PromotionTests.snapshot(tenant.id), snapshot, body)
            }
            // All of a body's faults at once: those the database finds (an issuer
            // not the tenant's, a type that does not exist) beside the others,
            // also in an entry whose other fields failed.
            for (body, fields) in [
                (
                    #"{"initialSequentials": [\#(entry("999999999", "\"01\"", "1")), \#(entry(String(issuer), "\"01\"", "0"))]}"#,
                    ["initialSequentials[1].sequential", "initialSequentials[0].issuerId"]
                ),
                (
                    #"{"initialSequentials": [\#(entry(String(foreign), "\"02\"", "0"))]}"#,
                    ["initialSequentials[0].sequential", "initialSequentials[0].issuerId", "initialSequentials[0].documentType"]
                ),
            ] {
                let reply = try await server.call(.post, "/v1/tenants/promote", key: tenant.key, json: body)
                reply.assertProblem(400, "VALIDATION_ERROR")
                XCTAssertEqual(reply.errorFields, fields, body)
                XCTAssertEqual(try PromotionTests.snapshot(tenant.id), snapshot, body)
            }
            // Still 401 before any of it.
            let stranger = try await server.call(
                .post, "/v1/tenants/promote", key: "cfy_test_" + String(repeating: "0", count: 64),
                json: #"{"initialSequentials": [\#(entry("999999999", "\"01\"", "0"))]}"#)
            XCTAssertEqual(stranger.status, 401, stranger.text)
            let empty = try await server.call(.post, "/v1/tenants/promote", key: tenant.key, json: "{}")
            XCTAssertEqual(empty.status, 200, empty.text)
        }
    }

    func testConcurrentPromotionsHaveExactlyOneWinner() async throws {
        try await TestServer.run(configure: { $0.poolSize = 8 }) { server in
            for _ in 0..<4 {
                let tenant = try await server.activeTenant()
                _ = try await server.createIssuer(tenant.key)
                var keys = [tenant.key]
                for index in 0..<5 { keys.append(try await server.mintKey(tenant.key, label: "k\(index)")) }
                let allKeys = keys
                let replies = try await concurrently(12) { index in
                    try await server.call(.post, "/v1/tenants/promote", key: allKeys[index % allKeys.count])
                }
                let statuses = replies.map(\.status)
                XCTAssertEqual(statuses.filter { $0 == 200 }.count, 1, "\(statuses)")
                XCTAssertTrue(statuses.allSatisfy { [200, 409, 401].contains($0) }, "\(statuses)")
                let winner = try XCTUnwrap(replies.first { $0.status == 200 })
                XCTAssertEqual(
                    try winner.array("apiKeys").map { $0["label"] },
                    [.string("Initial sandbox key")] + (0..<5).map { .string("k\($0)") }
                )
                try PromotionTests.assertFullyPromoted(tenant.id)
            }
        }
    }

    /// Production, every issuer production with six production counters, no
    /// active sandbox key, and one production key per revoked sandbox key.
    static func assertFullyPromoted(_ tenantID: Int64, file: StaticString = #filePath, line: UInt = #line) throws {
        let row = try TestDatabase.query(
            """
            SELECT (SELECT environment FROM tenants WHERE id = $1),
                   (SELECT count(*) FROM issuers WHERE tenant_id = $1 AND sandbox),
                   (SELECT count(*) FROM issuers i WHERE tenant_id = $1
                      AND (SELECT count(*) FROM sequentials s WHERE s.tenant_id = i.tenant_id AND s.issuer_id = i.id AND s.environment = 'production') <> 6),
                   (SELECT count(*) FROM api_keys WHERE tenant_id = $1 AND environment = 'sandbox' AND revoked_at IS NULL AND replaces_key_id IS NULL
                      AND created_at <= (SELECT promoted_at FROM tenants WHERE id = $1)),
                   (SELECT count(*) FROM api_keys s WHERE tenant_id = $1 AND environment = 'sandbox' AND revoked_at IS NOT NULL
                      AND revoked_at = (SELECT promoted_at FROM tenants WHERE id = $1)
                      AND NOT EXISTS (SELECT 1 FROM api_keys p WHERE p.tenant_id = s.tenant_id AND p.replaces_key_id = s.id AND p.label IS NOT DISTINCT FROM s.label))
            """,
            [tenantID]
        )[0]
        XCTAssertEqual(try row.decode(String.self, at: 0), "production", file: file, line: line)
        XCTAssertEqual(try row.decode(Int.self, at: 1), 0, "sandbox issuers left", file: file, line: line)
        XCTAssertEqual(try row.decode(Int.self, at: 2), 0, "issuers without their six production counters", file: file, line: line)
        XCTAssertEqual(try row.decode(Int.self, at: 3), 0, "sandbox keys from before the promotion still active", file: file, line: line)
        XCTAssertEqual(try row.decode(Int.self, at: 4), 0, "revoked sandbox keys without their production twin", file: file, line: line)
    }

    /// A mint that holds the tenant row while a promotion queues behind it: the
    /// promotion's snapshot predates the mint's commit, so it must fail on the
    /// tenant row, retry, and swap the new key with the others.
    func testAKeyMintedWhileThePromotionWaitsIsSwappedToo() async throws {
        try await TestServer.run { server in
            let tenant = try await server.activeTenant()
            _ = try await server.createIssuer(tenant.key)
            let pool = ConnectionPool(configuration: .init(conninfo: TestDatabase.appURL, size: 1))
            let database = Database(pool: pool)
            let holding = AsyncStream<Int32>.makeStream()
            let mint = Task {
                try await database.transactionAddingToRoster(
                    for: APIToken.parse(Substring(tenant.key))!, facts: RequestFacts(), count: KeysStore.activeCount(.sandbox)
                ) { transaction, principal, _ in
                    let backend = try transaction.query("SELECT pg_backend_pid()")[0].decode(Int32.self, at: 0)
                    holding.continuation.yield(backend)
                    // Keep the tenant row until the promotion is queued behind it.
                    XCTAssertNotNil(TestDatabase.sessionBlocked(by: backend), "the promotion queued behind the mint")
                    return try KeysStore.insertKey(
                        transaction, label: "held", environment: .sandbox, actor: "tenant", actorKeyID: principal.keyID)
                }
            }
            var iterator = holding.stream.makeAsyncIterator()
            _ = await iterator.next()
            let promotion = try await server.call(.post, "/v1/tenants/promote", key: tenant.key)
            let held = try await mint.value
            await pool.shutdown()

            XCTAssertEqual(promotion.status, 200, promotion.text)
            let labels = try promotion.array("apiKeys").map { $0["label"]?.stringValue }
            XCTAssertEqual(Set(labels), ["Initial sandbox key", "held"])
            let refused = try await server.call(.get, "/v1/keys", key: held.plaintext)
            refused.assertProblem(401, "UNAUTHORIZED")
            try PromotionTests.assertFullyPromoted(tenant.id)
        }
    }

    /// A session (as the owner) inside a transaction holding `lock` on the
    /// tenant's active keys (those labelled `label`, or all), so a request
    /// that needs those rows waits until it ends; and its backend pid.
    static func lockingKeys(of tenantID: Int64, label: String?, _ lock: String) throws -> (Connection, Int32) {
        let session = try TestDatabase.owner()
        try session.query("BEGIN", prepared: false)
        try session.query(
            "SELECT 1 FROM api_keys WHERE tenant_id = $1 AND revoked_at IS NULL AND ($2::text IS NULL OR label = $2) \(lock)",
            [tenantID, label], prepared: false)
        return (session, try session.query("SELECT pg_backend_pid()", prepared: false)[0].decode(Int32.self, at: 0))
    }

    /// A request in flight holds the share lock of a sandbox key and inserts a
    /// row referencing its tenant (as issuing a document does) while a promotion
    /// holds the tenant row and waits for that key. The promotion's lock must
    /// not block the insert's foreign-key check: that would be a deadlock.
    func testAPromotionWaitingForAKeyDoesNotBlockForeignKeysToItsTenant() async throws {
        try await TestServer.run { server in
            let tenant = try await server.activeTenant()
            let (inFlight, pid) = try PromotionTests.lockingKeys(of: tenant.id, label: nil, "FOR SHARE")
            // This session, not the promotion, would be the one to detect a deadlock.
            try inFlight.query("SET LOCAL deadlock_timeout = '10ms'", prepared: false)
            async let promotion = server.call(.post, "/v1/tenants/promote", key: tenant.key)
            XCTAssertNotNil(TestDatabase.sessionBlocked(by: pid), "the promotion waits for the key in flight")
            XCTAssertNoThrow(
                try inFlight.query(
                    "INSERT INTO audit_events (tenant_id, action, actor) VALUES ($1, 'tenant.verification_resent', 'system')", [tenant.id],
                    prepared: false)
            )
            try inFlight.query("ROLLBACK", prepared: false)
            let reply = try await promotion
            XCTAssertEqual(reply.status, 200, reply.text)
            try PromotionTests.assertFullyPromoted(tenant.id)
        }
    }

    /// An issuer whose creation holds the tenant row when a promotion arrives:
    /// the creation commits first, and the promotion, retried, promotes it with
    /// its six counters. The creation is paused after taking the tenant row by
    /// a lock on its key, which its second look at the key has to wait for.
    func testAnIssuerCreatedBeforeAWaitingPromotionIsPromotedWithIt() async throws {
        try await TestServer.run { server in
            let tenant = try await server.activeTenant()
            _ = try await server.createIssuer(tenant.key)
            let builder = try await server.mintKey(tenant.key, label: "builder")
            let (pause, pausePID) = try PromotionTests.lockingKeys(of: tenant.id, label: "builder", "FOR UPDATE")
            async let created = server.call(
                .post, "/v1/issuers", key: builder,
                json: #"{"ruc": "1790012345001", "legalName": "Held", "establishment": "002", "emissionPoint": "001"}"#)
            let creation = try XCTUnwrap(TestDatabase.sessionBlocked(by: pausePID), "the creation waits on its key")
            async let promotion = server.call(.post, "/v1/tenants/promote", key: tenant.key)
            XCTAssertNotNil(TestDatabase.sessionBlocked(by: creation), "the promotion waits for the tenant row")
            try pause.query("ROLLBACK", prepared: false)

            let (issuerReply, promotionReply) = try await (created, promotion)
            XCTAssertEqual(issuerReply.status, 201, issuerReply.text)
            XCTAssertEqual(promotionReply.status, 200, promotionReply.text)
            XCTAssertEqual(Set(try promotionReply.array("apiKeys").map { $0["label"]?.stringValue }), ["Initial sandbox key", "builder"])
            let issuerID = try issuerReply.int("issuer", "id")
            let sequentials = try await server.call(
                .get, "/v1/issuers/\(issuerID)/sequentials", key: try promotionReply.string("apiKeys", 0, "apiKey"))
            XCTAssertEqual(sequentials.status, 200, sequentials.text)
            let production = try sequentials.array("sequentials").filter { $0["environment"] == .string("production") }
            XCTAssertEqual(production.count, 6, sequentials.text)
            try PromotionTests.assertFullyPromoted(tenant.id)
        }
    }

    /// The other order: the promotion holds the tenant row when an issuer's
    /// creation arrives. The creation waits, then finds its sandbox key revoked
    /// (401) and creates nothing. The promotion is paused after taking the tenant
    /// row by a lock on a sandbox key, which its key swap has to wait for.
    ///
    /// Promotions are SERIALIZABLE, and other tests promote their own tenants at
    /// the same time: a serialization failure caused by them makes this promotion
    /// roll back (releasing the row) and run again, and then the creation is
    /// first. That order is also correct (the issuer is promoted with the rest),
    /// so the round is checked for it and the scenario is run again, until the
    /// order under test has happened.
    func testAnIssuerCreationThatWaitedForAPromotionIsRefused() async throws {
        try await TestServer.run { server in
            var refusedOnce = false
            for _ in 0..<5 where !refusedOnce {
                let tenant = try await server.activeTenant()
                _ = try await server.createIssuer(tenant.key)
                let builder = try await server.mintKey(tenant.key, label: "builder")
                let (pause, pausePID) = try PromotionTests.lockingKeys(of: tenant.id, label: "builder", "FOR SHARE")
                async let promotion = server.call(.post, "/v1/tenants/promote", key: tenant.key)
                let promoting = try XCTUnwrap(TestDatabase.sessionBlocked(by: pausePID), "the promotion waits to revoke the key")
                async let created = server.call(
                    .post, "/v1/issuers", key: builder,
                    json: #"{"ruc": "1790012345001", "legalName": "Late", "establishment": "002", "emissionPoint": "001"}"#)
                XCTAssertNotNil(TestDatabase.sessionBlocked(by: promoting), "the creation waits for the tenant row")
                try pause.query("ROLLBACK", prepared: false)

                let (issuerReply, promotionReply) = try await (created, promotion)
                XCTAssertEqual(promotionReply.status, 200, promotionReply.text)
                let late = try TestDatabase.scalar(
                    "SELECT count(*) FROM issuers WHERE tenant_id = $1 AND legal_name = 'Late' AND NOT sandbox", [tenant.id], as: Int.self)
                if issuerReply.status == 201 {
                    // The promotion was rolled back and run again after the creation.
                    XCTAssertEqual(late, 1, "an issuer created first is promoted with the others")
                } else {
                    issuerReply.assertProblem(401, "UNAUTHORIZED")
                    XCTAssertEqual(
                        try TestDatabase.scalar(
                            "SELECT count(*) FROM issuers WHERE tenant_id = $1 AND legal_name = 'Late'", [tenant.id], as: Int.self),
                        0, "a refused creation created nothing")
                    refusedOnce = true
                }
                try PromotionTests.assertFullyPromoted(tenant.id)
            }
            XCTAssertTrue(refusedOnce, "a creation that waited for a promotion was refused at least once")
        }
    }

    func testMintIssuerAndDocumentRacingAPromotion() async throws {
        try await TestServer.run(configure: { $0.poolSize = 8 }) { server in
            for round in 0..<8 {
                let tenant = try await server.activeTenant()
                let issuer = try await server.createIssuer(tenant.key)
                let minter = try await server.mintKey(tenant.key, label: "minter")
                let builder = try await server.mintKey(tenant.key, label: "builder")
                let issuerKey = try await server.mintKey(tenant.key, label: "issuer")
                let replies = try await concurrently(4) { index -> Reply in
                    switch index {
                    case 0: return try await server.call(.post, "/v1/tenants/promote", key: tenant.key)
                    case 1: return try await server.call(.post, "/v1/keys", key: minter, json: #"{"label": "raced-\#(round)"}"#)
                    case 2:
                        return try await server.call(
                            .post, "/v1/issuers", key: builder,
                            json: #"{"ruc": "1790012345001", "legalName": "Raced", "establishment": "001", "emissionPoint": "009"}"#
                        )
                    default: return try await server.issue(issuerKey, issuer: issuer)
                    }
                }
                XCTAssertEqual(replies[0].status, 200, replies[0].text)
                let labels = try replies[0].array("apiKeys").compactMap { $0["label"]?.stringValue }
                switch replies[1].status {
                case 201:
                    // The mint committed first: its key was swapped like the others.
                    XCTAssertTrue(labels.contains("raced-\(round)"), "\(labels)")
                    let minted = try replies[1].string("apiKey")
                    let refused = try await server.call(.get, "/v1/keys", key: minted)
                    refused.assertProblem(401, "UNAUTHORIZED")
                case 401:
                    XCTAssertFalse(labels.contains("raced-\(round)"))
                    XCTAssertEqual(
                        try TestDatabase.scalar(
                            "SELECT count(*) FROM api_keys WHERE tenant_id = $1 AND label = $2", [tenant.id, "raced-\(round)"], as: Int.self
                        ),
                        0, "a refused mint created nothing"
                    )
                default:
                    XCTFail("mint racing a promotion: \(replies[1].status) \(replies[1].text)")
                }
                XCTAssertTrue([201, 401].contains(replies[2].status), replies[2].text)
                XCTAssertTrue([201, 401].contains(replies[3].status), replies[3].text)
                if replies[3].status == 201 {
                    XCTAssertEqual(try replies[3].string("document", "environment"), "sandbox")
                    XCTAssertEqual(Array(try replies[3].string("document", "accessKey"))[23], "1")
                }
                XCTAssertEqual(
                    try TestDatabase.scalar(
                        "SELECT count(*) FROM documents WHERE tenant_id = $1 AND environment = 'production'", [tenant.id], as: Int.self
                    ), 0, "no production number taken with a sandbox key"
                )
                try PromotionTests.assertFullyPromoted(tenant.id)
            }
        }
    }

    func testStatementCountDoesNotGrowWithTheTenant() async throws {
        let ids = try await Self.makeSmallAndLargeTenants()
        try await Self.checkStatementCount(small: ids.0, large: ids.1)
    }

    static func makeSmallAndLargeTenants() async throws -> (Int64, Int64) {
        let ids = NIOLockedValueBox<(Int64, Int64)>((0, 0))
        // 249 requests with one key: more than the default burst, and the
        // rate limit is not what this test is about.
        try await TestServer.run(configure: {
            $0.poolSize = 8
            $0.rateLimitBurst = 1_000
        }) { server in
            let smallTenant = try await server.activeTenant()
            for point in 1...2 { _ = try await server.createIssuer(smallTenant.key, emissionPoint: String(format: "%03d", point)) }
            let largeTenant = try await server.activeTenant()
            _ = try await concurrently(200) { point in
                try await server.createIssuer(
                    largeTenant.key, establishment: String(format: "%03d", point / 100 + 1),
                    emissionPoint: String(format: "%03d", point % 100 + 1), signing: false)
            }
            _ = try await concurrently(49) { index in try await server.mintKey(largeTenant.key, label: "key-\(index)") }
            ids.withLockedValue { $0 = (smallTenant.id, largeTenant.id) }
        }
        return ids.withLockedValue { $0 }
    }

    static func checkStatementCount(small: Int64, large: Int64) async throws {
        let pool = ConnectionPool(configuration: .init(conninfo: TestDatabase.appURL, size: 1))
        let database = Database(pool: pool)
        /// Statements of the attempt that committed (a serialization failure
        /// caused by other tests' traffic may make it run more than once).
        func statements(_ tenantID: Int64) async throws -> (Int, [Promotion.IssuedKey]) {
            try await database.transaction(forTenantID: tenantID, isolation: .serializable, prologue: [PromotionStore.state(.init())]) {
                transaction, results in
                let keys = try PromotionStore.perform(transaction, state: results[0], request: .init(), actorKeyID: nil)
                return (transaction.statementCount + 1, keys)  // + the COMMIT the pool sends
            }
        }
        let (smallCount, smallKeys) = try await statements(small)
        let (largeCount, largeKeys) = try await statements(large)
        await pool.shutdown()
        XCTAssertEqual(smallCount, largeCount, "the same statements for 2 issuers × 1 key and 200 issuers × 50 keys")
        XCTAssertEqual(smallKeys.count, 1)
        XCTAssertEqual(largeKeys.count, 50)
        XCTAssertEqual(
            try TestDatabase.scalar(
                "SELECT count(*) FROM sequentials WHERE tenant_id = $1 AND environment = 'production' AND next_sequential = 1", [large],
                as: Int.self),
            1200
        )
        XCTAssertEqual(
            try TestDatabase.scalar(
                "SELECT count(*) FROM api_keys WHERE tenant_id = $1 AND environment = 'production' AND revoked_at IS NULL", [large],
                as: Int.self),
            50
        )
        try PromotionTests.assertFullyPromoted(large)
        try PromotionTests.assertFullyPromoted(small)
    }

    func testATenantWithNoSandboxKeysGetsAnEmptyList() async throws {
        let box = NIOLockedValueBox<Int64>(0)
        try await TestServer.run { server in
            let tenant = try await server.activeTenant()
            _ = try await server.createIssuer(tenant.key)
            box.withLockedValue { $0 = tenant.id }
        }
        let tenantID = box.withLockedValue { $0 }
        try TestDatabase.query("UPDATE api_keys SET revoked_at = now() WHERE tenant_id = $1", [tenantID])
        let pool = ConnectionPool(configuration: .init(conninfo: TestDatabase.appURL, size: 1))
        let keys = try await Promotion(database: Database(pool: pool)).run(tenantID: tenantID, request: .init())
        await pool.shutdown()
        XCTAssertEqual(keys.count, 0)
        XCTAssertEqual(try TestDatabase.scalar("SELECT environment FROM tenants WHERE id = $1", [tenantID], as: String.self), "production")
        XCTAssertEqual(
            try TestDatabase.scalar(
                "SELECT count(*) FROM sequentials WHERE tenant_id = $1 AND environment = 'production'", [tenantID], as: Int.self), 6
        )
    }
}
