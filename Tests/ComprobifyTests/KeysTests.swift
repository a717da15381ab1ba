import HTTPTypes
import Postgres
import TestSupport
import XCTest

@testable import Comprobify

/// seeds/api-keys.txt and the "API keys" section of API.md.
final class KeysTests: XCTestCase {
    /// Two keys revoking each other at once, and a verification beside a
    /// resend, queue on the tenant row instead of deadlocking (each deadlock
    /// cost a second before PostgreSQL broke it and the transaction was
    /// tried again, counted in db_transaction_retries_total). One of each
    /// pair of revocations wins; the other key is revoked before it acts: 401.
    func testKeysRevokingEachOtherQueueInsteadOfDeadlocking() async throws {
        try await TestServer.run { server in
            func retries() async throws -> Double {
                let metrics = try await server.call(.get, "/metrics").text
                // The pool makes the series when it starts: a missing line is a
                // renamed metric, not zero retries.
                let line = try XCTUnwrap(
                    metrics.split(separator: "\n").first { $0.hasPrefix(#"db_transaction_retries_total{pool="requests"} "#) }, metrics)
                return try XCTUnwrap(line.split(separator: " ").last.flatMap { Double($0) }, String(line))
            }
            let tenant = try await server.activeTenant()
            let before = try await retries()
            for round in 0..<12 {
                let first = try await server.mintKey(tenant.key, label: "a\(round)")
                let second = try await server.mintKey(tenant.key, label: "b\(round)")
                let keys = try await server.call(.get, "/v1/keys", key: tenant.key).array("keys")
                func id(_ label: String) throws -> Int64 {
                    try XCTUnwrap(keys.first { $0["label"] == .string(label) }?["id"]?.intValue)
                }
                let (firstID, secondID) = (try id("a\(round)"), try id("b\(round)"))
                async let one = server.call(.delete, "/v1/keys/\(secondID)", key: first)
                async let other = server.call(.delete, "/v1/keys/\(firstID)", key: second)
                let statuses = [try await one.status, try await other.status].sorted()
                XCTAssertEqual(statuses, [200, 401], "round \(round)")
            }
            for _ in 0..<8 {
                let verifying = try await server.signUp()
                let token = try XCTUnwrap(
                    try TestDatabase.scalar(
                        "SELECT substring(body FROM ': ([^ ]+)$') FROM email_outbox WHERE tenant_id = $1 ORDER BY id DESC LIMIT 1",
                        [verifying.id], as: String?.self))
                async let resent = server.call(.post, "/v1/tenants/resend-verification", key: verifying.key)
                async let verified = server.call(.post, "/v1/tenants/verify-email", json: #"{"token": "\#(token)"}"#)
                let statuses = (try await resent.status, try await verified.status)
                XCTAssertTrue(statuses == (200, 400) || statuses == (409, 200), "\(statuses)")
            }
            let after = try await retries()
            XCTAssertEqual(after - before, 0, "no transaction was tried again after a deadlock")
        }
    }

    /// The admin mint answers in the order of every route: the tenant it
    /// addresses (404) before the body and its fields (400).
    func testAdminMintAnswersTheTenantBeforeTheFields() async throws {
        try await TestServer.run { server in
            for body in [#"{"label": ""}"#, "{", "[]"] {
                let missing = try await server.call(.post, "/admin/v1/tenants/999999999/keys", key: adminToken, json: body)
                missing.assertProblem(404, "NOT_FOUND")
            }
            let tenant = try await server.activeTenant()
            let bad = try await server.call(.post, "/admin/v1/tenants/\(tenant.id)/keys", key: adminToken, json: #"{"label": ""}"#)
            bad.assertProblem(400, "VALIDATION_ERROR")
            XCTAssertEqual(bad.errorFields, ["label"])
            // Revoking for a tenant that does not exist (or whose id is none) is
            // the tenant's 404, before the key's.
            for path in ["/admin/v1/tenants/999999999/keys/1", "/admin/v1/tenants/x/keys/1", "/admin/v1/tenants/999999999/keys/x"] {
                let revoked = try await server.call(.delete, path, key: adminToken)
                revoked.assertProblem(404, "NOT_FOUND")
                XCTAssertEqual(try revoked.string("detail"), "No tenant with this id.", path)
            }
            let ownKey = try await server.call(.delete, "/admin/v1/tenants/\(tenant.id)/keys/999999999", key: adminToken)
            ownKey.assertProblem(404, "NOT_FOUND")
            XCTAssertNotEqual(try ownKey.string("detail"), "No tenant with this id.", "a known tenant's unknown key is the key's 404")
        }
    }

    /// A revoked or unknown key is told 401 however often it comes (API.md),
    /// never 429: once the database has refused it, the server refuses it
    /// again from memory, before the per-key rate limit. A live key past its
    /// rate still gets 429.
    func testARefusedKeyIs401PastTheRateLimit() async throws {
        try await TestServer.run(configure: {
            $0.rateLimitPerKey = 1
            $0.rateLimitBurst = 3
        }) { server in
            let tenant = try await server.activeTenant()
            let token = try await server.mintKey(tenant.key, label: "revoked")
            let list = try await server.call(.get, "/v1/keys", key: tenant.key)
            let keyID = try XCTUnwrap(try list.array("keys").first { $0["label"] == .string("revoked") }?["id"]?.intValue)
            let revoke = try await server.call(.delete, "/v1/keys/\(keyID)", key: tenant.key)
            XCTAssertEqual(revoke.status, 200, revoke.text)
            let unknown = "cfy_test_" + String(repeating: "cd", count: 32)
            for key in [token, unknown] {
                for attempt in 1...8 {
                    let reply = try await server.call(.get, "/v1/keys", key: key)
                    reply.assertProblem(401, "UNAUTHORIZED")
                    XCTAssertEqual(reply.headers[.wwwAuthenticate], "Bearer", "attempt \(attempt)")
                }
            }
            // A route that takes no key answers as if the refused one were not sent.
            let signUp = try await server.call(
                .post, "/v1/tenants", key: token, json: #"{"email": "\#(TestServer.uniqueEmail())", "name": "Otra S.A."}"#)
            XCTAssertEqual(signUp.status, 201, signUp.text)
            let health = try await server.call(.get, "/healthz", key: token)
            XCTAssertEqual(health.status, 200)
            // The live key has used its burst above (mint, list, delete): it is limited.
            var statuses: [Int] = []
            for _ in 1...3 { statuses.append(try await server.call(.get, "/v1/keys", key: tenant.key).status) }
            XCTAssertTrue(statuses.contains(429), "\(statuses)")
        }
    }

    /// A revoked or unknown key gets 401 on every route that takes a body,
    /// whatever the body: an empty one, one that is not JSON, one that is not
    /// an object (API.md: the credential is answered first).
    func testARevokedOrUnknownKeyIs401WhateverTheBody() async throws {
        try await TestServer.run { server in
            let tenant = try await server.activeTenant()
            let issuer = try await server.createIssuer(tenant.key, signing: false)
            let token = try await server.mintKey(tenant.key, label: "revoked")
            let list = try await server.call(.get, "/v1/keys", key: tenant.key)
            let keyID = try XCTUnwrap(try list.array("keys").first { $0["label"] == .string("revoked") }?["id"]?.intValue)
            let revoke = try await server.call(.delete, "/v1/keys/\(keyID)", key: tenant.key)
            XCTAssertEqual(revoke.status, 200, revoke.text)
            let unknown = "cfy_test_" + String(repeating: "ab", count: 32)
            let routes: [(HTTPRequest.Method, String)] = [
                (.post, "/v1/keys"), (.post, "/v1/issuers"), (.patch, "/v1/issuers/\(issuer)"),
                (.put, "/v1/issuers/\(issuer)/certificate"), (.post, "/v1/documents"), (.post, "/v1/webhooks"),
                (.post, "/v1/tenants/promote"),
            ]
            for key in [token, unknown] {
                for (method, path) in routes {
                    for body in ["", "{", "[1, 2]", #"{"ruc": 5, "url": "http://127.0.0.1/"}"#] {
                        let reply = try await server.call(method, path, key: key, issuer: issuer, json: body)
                        XCTAssertEqual(reply.status, 401, "\(method) \(path) \(body): \(reply.text)")
                        reply.assertProblem(401, "UNAUTHORIZED")
                    }
                }
            }
        }
    }

    func testMintListAndRevoke() async throws {
        let logs = LogCapture()
        try await TestServer.run(logs: logs) { server in
            let tenant = try await server.activeTenant()
            let minted = try await server.call(
                .post, "/v1/keys", key: tenant.key, json: #"{"label": "mobile-app", "environment": "sandbox"}"#)
            XCTAssertEqual(minted.status, 201, minted.text)
            XCTAssertEqual(minted.headers[.cacheControl], "no-store")
            let token = try minted.string("apiKey")
            XCTAssertNotNil(token.wholeMatch(of: /cfy_test_[0-9a-f]{64}/))

            let defaults = try await server.call(.post, "/v1/keys", key: tenant.key)
            XCTAssertEqual(defaults.status, 201, "no body: label null, environment sandbox")

            let list = try await server.call(.get, "/v1/keys", key: token)
            XCTAssertEqual(list.status, 200)
            let keys = try list.array("keys")
            XCTAssertEqual(keys.count, 3)
            XCTAssertEqual(keys[1]["label"], .string("mobile-app"))
            XCTAssertEqual(keys[1]["active"], .bool(true))
            XCTAssertEqual(keys[1]["revokedAt"], .null)
            XCTAssertEqual(keys[2]["label"], .null)
            XCTAssertEqual(keys[2]["environment"], .string("sandbox"))
            XCTAssertFalse(list.text.contains(token) || list.text.contains(tenant.key), "no plaintext in lists")
            // Every member of every key, against the database's own rendering
            // (to_char for the timestamps), in the order API.md lists them.
            let stored = try TestDatabase.query(
                #"""
                SELECT id, label, environment, token_prefix,
                       to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
                  FROM api_keys WHERE tenant_id = $1 AND revoked_at IS NULL ORDER BY id
                """#, [tenant.id])
            XCTAssertEqual(stored.count, keys.count)
            for (key, row) in zip(keys, stored.rows) {
                let (id, label, environment, prefix, createdAt) = try row.decode((Int64, String?, String, String, String).self)
                XCTAssertEqual(
                    key,
                    .object([
                        ("id", JSONValue(id)), ("label", JSONValue(label)), ("environment", .string(environment)),
                        ("prefix", .string(prefix)), ("active", true), ("createdAt", .string(createdAt)), ("revokedAt", .null),
                    ]))
            }

            let mintedID = try XCTUnwrap(keys[1]["id"]?.intValue)
            let revoked = try await server.call(.delete, "/v1/keys/\(mintedID)", key: tenant.key)
            XCTAssertEqual(revoked.status, 200, revoked.text)
            XCTAssertEqual(revoked.json?["ok"], .bool(true))
            // Refused at once.
            let refused = try await server.call(.get, "/v1/keys", key: token)
            refused.assertProblem(401, "UNAUTHORIZED")
            let again = try await server.call(.delete, "/v1/keys/\(mintedID)", key: tenant.key)
            again.assertProblem(404, "NOT_FOUND")
            let after = try await server.call(.get, "/v1/keys", key: tenant.key)
            XCTAssertEqual(try after.array("keys").count, 2)

            let audit = try TestDatabase.query(
                "SELECT action, actor, actor_key_id, details->>'keyId' FROM audit_events WHERE tenant_id = $1 AND action LIKE 'api_key.%' ORDER BY id",
                [tenant.id]
            )
            // The sign-up's key first, minted by the system.
            XCTAssertEqual(
                try audit.rows.map { try $0.decode(String.self, at: 0) },
                ["api_key.minted", "api_key.minted", "api_key.minted", "api_key.revoked"])
            XCTAssertEqual(try audit[0].decode(String.self, at: 1), "system")
            XCTAssertNil(try audit[0].decode(Int64?.self, at: 2))
            XCTAssertEqual(try audit[0].decode(String.self, at: 3), try XCTUnwrap(keys[0]["id"]?.intValue).description)
            XCTAssertEqual(try audit[3].decode(String.self, at: 3), String(mintedID))
            XCTAssertEqual(try audit[3].decode(String.self, at: 1), "tenant")
            XCTAssertNotNil(try audit[3].decode(Int64?.self, at: 2))

            XCTAssertFalse(logs.text.isEmpty)
            XCTAssertFalse(logs.text.contains(token), "the plaintext never reaches the logs")
            XCTAssertFalse(logs.text.contains(String(token.dropFirst(9))))
            XCTAssertFalse(logs.text.contains(Crypto.hex(Crypto.sha256(token))), "nor its digest")
        }
    }

    func testLabelAndEnvironmentValidation() async throws {
        try await TestServer.run { server in
            let tenant = try await server.activeTenant()
            let hundred = String(repeating: "é", count: 100)
            let ok = try await server.call(.post, "/v1/keys", key: tenant.key, json: #"{"label": "\#(hundred)"}"#)
            XCTAssertEqual(ok.status, 201, ok.text)
            for (body, field) in [
                (#"{"label": "\#(hundred)x"}"#, "label"),
                (#"{"label": ""}"#, "label"),
                (#"{"label": 12}"#, "label"),
                (#"{"label": ["a"]}"#, "label"),
                (#"{"environment": "staging"}"#, "environment"),
                (#"{"environment": 1}"#, "environment"),
                (#"{"environment": "Sandbox"}"#, "environment"),
                (#"{"environment": null}"#, "environment"),
            ] {
                let reply = try await server.call(.post, "/v1/keys", key: tenant.key, json: body)
                reply.assertProblem(400, "VALIDATION_ERROR")
                XCTAssertEqual(reply.errorFields, [field], body)
            }
            let strange = [
                "'; DROP TABLE api_keys; --", "\u{202E}tfel-ot-thgir", "👩🏽‍💻 ERP", "1 OR 1=1", "<b>x</b>", #"say "hi" \ back\"#,
            ]
            for label in strange {
                let reply = try await server.call(
                    .post, "/v1/keys", key: tenant.key, json: #"{"label": \#(JSONValue.string(label).serialized)}"#)
                XCTAssertEqual(reply.status, 201, reply.text)
            }
            let list = try await server.call(.get, "/v1/keys", key: tenant.key)
            let labels = try list.array("keys").compactMap { $0["label"]?.stringValue }
            for label in strange { XCTAssertTrue(labels.contains(label), "stored verbatim: \(label)") }
            XCTAssertEqual(try TestDatabase.scalar("SELECT count(*) FROM api_keys WHERE tenant_id = $1", [tenant.id], as: Int.self), 8)
        }
    }

    func testForbiddenCases() async throws {
        try await TestServer.run { server in
            let pending = try await server.signUp()
            let unverified = try await server.call(.post, "/v1/keys", key: pending.key, json: #"{"label": "x"}"#)
            unverified.assertProblem(403, "FORBIDDEN")
            let active = try await server.activeTenant()
            let production = try await server.call(.post, "/v1/keys", key: active.key, json: #"{"environment": "production"}"#)
            production.assertProblem(403, "FORBIDDEN")
            for tenant in [pending, active] {
                XCTAssertEqual(try TestDatabase.scalar("SELECT count(*) FROM api_keys WHERE tenant_id = $1", [tenant.id], as: Int.self), 1)
            }
            // A pending tenant may still list and revoke keys.
            let list = try await server.call(.get, "/v1/keys", key: pending.key)
            XCTAssertEqual(list.status, 200)
        }
    }

    /// "403 ... attempting to mint a production key before any issuer has been
    /// promoted": a tenant promoted with no issuer gets its production keys
    /// from the promotion, but mints more only once it has a production issuer.
    func testProductionKeysNeedAPromotedIssuer() async throws {
        try await TestServer.run { server in
            let tenant = try await server.activeTenant()
            let promoted = try await server.call(.post, "/v1/tenants/promote", key: tenant.key)
            XCTAssertEqual(promoted.status, 200, promoted.text)
            let live = try promoted.string("apiKeys", 0, "apiKey")
            let early = try await server.call(.post, "/v1/keys", key: live, json: #"{"environment": "production"}"#)
            early.assertProblem(403, "FORBIDDEN")
            let support = try await server.call(
                .post, "/admin/v1/tenants/\(tenant.id)/keys", key: adminToken, json: #"{"environment": "production"}"#)
            support.assertProblem(403, "FORBIDDEN")
            XCTAssertEqual(
                try TestDatabase.scalar(
                    "SELECT count(*) FROM api_keys WHERE tenant_id = $1 AND environment = 'production'", [tenant.id], as: Int.self), 1)
            _ = try await server.createIssuer(live)
            let minted = try await server.mintKey(live, label: "second", environment: "production")
            XCTAssertTrue(minted.hasPrefix("cfy_live_"), minted)
        }
    }

    func testAKeyCannotRevokeItselfOrOtherTenantsKeys() async throws {
        try await TestServer.run { server in
            let alice = try await server.activeTenant()
            let bob = try await server.activeTenant()
            let aliceKeys = try await server.call(.get, "/v1/keys", key: alice.key)
            let aliceKeyID = try XCTUnwrap(try aliceKeys.array("keys").first?["id"]?.intValue)
            let itself = try await server.call(.delete, "/v1/keys/\(aliceKeyID)", key: alice.key)
            itself.assertProblem(400, "BAD_REQUEST")

            let crossTenant = try await server.call(.delete, "/v1/keys/\(aliceKeyID)", key: bob.key)
            crossTenant.assertProblem(404, "NOT_FOUND")
            let unknown = try await server.call(.delete, "/v1/keys/999999999", key: bob.key)
            unknown.assertProblem(404, "NOT_FOUND")
            XCTAssertEqual(try crossTenant.string("detail"), try unknown.string("detail"), "never reveal which")
            for path in ["/v1/keys/0", "/v1/keys/-1", "/v1/keys/abc", "/v1/keys/99999999999999999999999"] {
                let reply = try await server.call(.delete, path, key: bob.key)
                reply.assertProblem(404, "NOT_FOUND")
            }
            let stillActive = try await server.call(.get, "/v1/keys", key: alice.key)
            XCTAssertEqual(stillActive.status, 200, "nothing changed for the other tenant")
            XCTAssertEqual(
                try TestDatabase.scalar(
                    "SELECT count(*) FROM api_keys WHERE tenant_id = $1 AND revoked_at IS NULL", [alice.id], as: Int.self), 1
            )
        }
    }

    func testARevocationThatCommittedFirstStopsTheRevokedKeysChanges() async throws {
        try await TestServer.run { server in
            let tenant = try await server.activeTenant()
            // Two keys revoke each other at the same time, many times: never both.
            for _ in 0..<10 {
                let a = try await server.mintKey(tenant.key, label: "a")
                let b = try await server.mintKey(tenant.key, label: "b")
                let keys = try await server.call(.get, "/v1/keys", key: tenant.key)
                let ids = try keys.array("keys").suffix(2).compactMap { $0["id"]?.intValue }
                let replies = try await concurrently(2) { index in
                    try await server.call(.delete, "/v1/keys/\(ids[1 - index])", key: index == 0 ? a : b)
                }
                let statuses = replies.map(\.status).sorted()
                XCTAssertTrue(statuses == [200, 401], "one revocation wins, the other key is refused: \(statuses)")
                let active = try TestDatabase.scalar(
                    "SELECT count(*) FROM api_keys WHERE tenant_id = $1 AND id = ANY($2::bigint[]) AND revoked_at IS NULL",
                    [tenant.id, ids], as: Int.self
                )
                XCTAssertEqual(active, 1)
            }
        }
    }

    func testAdminRoutes() async throws {
        try await TestServer.run { server in
            let tenant = try await server.signUp()
            let wrong = try await server.call(.post, "/admin/v1/tenants/\(tenant.id)/verify-email", key: "not-the-admin-token")
            wrong.assertProblem(401, "UNAUTHORIZED")
            let tenantKey = try await server.call(.post, "/admin/v1/tenants/\(tenant.id)/verify-email", key: tenant.key)
            tenantKey.assertProblem(401, "UNAUTHORIZED")
            let missing = try await server.call(.post, "/admin/v1/tenants/999999999/verify-email", key: adminToken)
            missing.assertProblem(404, "NOT_FOUND")

            for _ in 0..<2 {
                let verified = try await server.call(.post, "/admin/v1/tenants/\(tenant.id)/verify-email", key: adminToken)
                XCTAssertEqual(verified.status, 200, verified.text)
                XCTAssertEqual(try verified.string("tenant", "status"), "ACTIVE")
            }
            let minted = try await server.call(
                .post, "/admin/v1/tenants/\(tenant.id)/keys", key: adminToken, json: #"{"label": "recovery"}"#)
            XCTAssertEqual(minted.status, 201, minted.text)
            XCTAssertEqual(minted.headers[.cacheControl], "no-store")
            let recovery = try minted.string("apiKey")
            let production = try await server.call(
                .post, "/admin/v1/tenants/\(tenant.id)/keys", key: adminToken, json: #"{"environment": "production"}"#)
            production.assertProblem(403, "FORBIDDEN")

            let keys = try await server.call(.get, "/v1/keys", key: recovery)
            let initialID = try XCTUnwrap(try keys.array("keys").first?["id"]?.intValue)
            let revoked = try await server.call(.delete, "/admin/v1/tenants/\(tenant.id)/keys/\(initialID)", key: adminToken)
            XCTAssertEqual(revoked.status, 200, revoked.text)
            let gone = try await server.call(.get, "/v1/keys", key: tenant.key)
            gone.assertProblem(401, "UNAUTHORIZED")
            let twice = try await server.call(.delete, "/admin/v1/tenants/\(tenant.id)/keys/\(initialID)", key: adminToken)
            twice.assertProblem(404, "NOT_FOUND")

            let actors = try TestDatabase.query(
                "SELECT action FROM audit_events WHERE tenant_id = $1 AND actor = 'support' ORDER BY id", [tenant.id]
            )
            XCTAssertEqual(
                try actors.rows.map { try $0.decode(String.self, at: 0) }, ["tenant.email_verified", "api_key.minted", "api_key.revoked"])
        }
        try await TestServer.run(configure: { $0.adminToken = nil }) { server in
            let disabled = try await server.call(.post, "/admin/v1/tenants/1/verify-email", key: adminToken)
            disabled.assertProblem(404, "NOT_FOUND")
        }
    }

    /// GET /v1/keys returns every active key, unpaged, so a tenant has at most
    /// `KeysStore.limit` of them per environment: the next mint is 409 and
    /// changes nothing, concurrent mints never pass the limit, a revocation
    /// frees a place, and promotion's production keys stay within it.
    func testAtMostAHundredActiveKeysPerEnvironment() async throws {
        try await TestServer.run { server in
            let tenant = try await server.activeTenant()
            _ = try await server.createIssuer(tenant.key, signing: false)
            // With the sign-up key, one short of the limit; revoked keys do not count.
            try KeysTests.fillKeys(tenant.id, active: KeysStore.limit - 2, revoked: 20)
            let statuses = try await concurrently(6) { index in
                try await server.call(.post, "/v1/keys", key: tenant.key, json: #"{"label": "race-\#(index)"}"#).status
            }
            XCTAssertEqual(statuses.sorted(), [201, 409, 409, 409, 409, 409], "concurrent mints never pass the limit")
            XCTAssertEqual(try KeysTests.activeKeys(tenant.id, "sandbox"), 100)
            let minted = try KeysTests.mintedEvents(tenant.id)

            let refused = try await server.call(.post, "/v1/keys", key: tenant.key, json: #"{"label": "one-too-many"}"#)
            refused.assertProblem(409, "CONFLICT", reason: "LIMIT_REACHED")
            XCTAssertTrue(refused.text.contains("100 active sandbox keys"), refused.text)
            let support = try await server.call(.post, "/admin/v1/tenants/\(tenant.id)/keys", key: adminToken)
            support.assertProblem(409, "CONFLICT", reason: "LIMIT_REACHED")
            let invalid = try await server.call(.post, "/v1/keys", key: tenant.key, json: #"{"environment": "staging"}"#)
            invalid.assertProblem(400, "VALIDATION_ERROR")
            XCTAssertEqual(try KeysTests.activeKeys(tenant.id, "sandbox"), 100, "nothing stored")
            XCTAssertEqual(try KeysTests.mintedEvents(tenant.id), minted, "nothing audited")
            let list = try await server.call(.get, "/v1/keys", key: tenant.key)
            XCTAssertEqual(try list.array("keys").count, 100)

            let last = try XCTUnwrap(try list.array("keys").last?["id"]?.intValue)
            let revoked = try await server.call(.delete, "/v1/keys/\(last)", key: tenant.key)
            XCTAssertEqual(revoked.status, 200, revoked.text)
            let again = try await server.call(.post, "/v1/keys", key: tenant.key)
            XCTAssertEqual(again.status, 201, "a revoked key frees its place: \(again.text)")

            // Promotion swaps each active sandbox key for a production one: at
            // most as many as the sandbox had, so production starts full here.
            let promoted = try await server.call(.post, "/v1/tenants/promote", key: tenant.key)
            XCTAssertEqual(promoted.status, 200, promoted.text)
            XCTAssertEqual(try promoted.array("apiKeys").count, 100)
            XCTAssertEqual(try KeysTests.activeKeys(tenant.id, "production"), 100)
            let live = try promoted.string("apiKeys", 0, "apiKey")
            let production = try await server.call(.post, "/v1/keys", key: live, json: #"{"environment": "production"}"#)
            production.assertProblem(409, "CONFLICT", reason: "LIMIT_REACHED")
            XCTAssertTrue(production.text.contains("100 active production keys"), production.text)
            let sandbox = try await server.call(.post, "/v1/keys", key: live, json: #"{"environment": "sandbox"}"#)
            XCTAssertEqual(sandbox.status, 201, "each environment has its own limit: \(sandbox.text)")
            XCTAssertEqual(try KeysTests.activeKeys(tenant.id, "production"), 100)
        }
    }

    /// Sandbox keys made as the database owner, `active` of them active and
    /// `revoked` revoked, faster than minting them one by one.
    static func fillKeys(_ tenantID: Int64, active: Int, revoked: Int) throws {
        try TestDatabase.query(
            """
            INSERT INTO api_keys (tenant_id, label, environment, token_digest, token_prefix, revoked_at)
            SELECT $1, 'filler-' || g, 'sandbox', sha256(convert_to(gen_random_uuid()::text, 'UTF8')), 'cfy_test_00000',
                   CASE WHEN g > $2::int THEN now() END
              FROM generate_series(1, $2::int + $3::int) AS g
            """, [tenantID, active, revoked])
    }

    static func activeKeys(_ tenantID: Int64, _ environment: String) throws -> Int {
        try TestDatabase.scalar(
            "SELECT count(*) FROM api_keys WHERE tenant_id = $1 AND environment = $2 AND revoked_at IS NULL", [tenantID, environment])
    }

    static func mintedEvents(_ tenantID: Int64) throws -> Int {
        try TestDatabase.scalar("SELECT count(*) FROM audit_events WHERE tenant_id = $1 AND action = 'api_key.minted'", [tenantID])
    }
}
