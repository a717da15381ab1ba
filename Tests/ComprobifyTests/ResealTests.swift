import Foundation
import NIOConcurrencyHelpers
import Postgres
import TestSupport
import XCTest

@testable import Comprobify

/// `comprobify reseal`: secrets sealed under an old master key move to the
/// current one, so the old key can be retired without any tenant acting.
final class ResealTests: XCTestCase {
    private static func newKey() -> String {
        Data((0..<32).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
    }

    /// A tenant with a signing certificate and a webhook, both sealed under `box`.
    private static func tenantSealed(under box: SecretBox) async throws -> (
        tenant: TestServer.Tenant, issuer: Int64, hook: Int64, secret: String
    ) {
        let made = NIOLockedValueBox<(TestServer.Tenant, Int64, Int64, String)?>(nil)
        try await TestServer.run(configure: {
            $0.secretBox = box
            $0.webhooks.allowHTTP = true
        }) { server in
            let tenant = try await server.signUp()
            let issuer = try await server.createIssuer(tenant.key)
            let hook = try await server.createWebhook(tenant.key, url: "http://127.0.0.1:9/x")
            made.withLockedValue { $0 = (tenant, issuer, hook.id, hook.secret) }
        }
        let (tenant, issuer, hook, secret) = try XCTUnwrap(made.withLockedValue { $0 })
        return (tenant, issuer, hook, secret)
    }

    /// The master key ids of the tenant's certificate and webhook.
    private static func keyIDs(_ tenant: Int64) throws -> [String] {
        [
            try TestDatabase.scalar("SELECT master_key_id FROM issuer_certificates WHERE tenant_id = $1", [tenant], as: String.self),
            try TestDatabase.scalar("SELECT master_key_id FROM webhook_endpoints WHERE tenant_id = $1", [tenant], as: String.self),
        ]
    }

    private static func reseal(_ tenants: [Int64], current: String, previous: String?) throws -> (status: Int32, output: String) {
        var environment = ["DATABASE_URL": TestDatabase.ownerURL, "COMPROBIFY_SECRET_KEY": current]
        if let previous { environment["COMPROBIFY_SECRET_KEY_PREVIOUS"] = previous }
        return try Executable.run(
            try Executable.url(), ["reseal"] + tenants.flatMap { ["--tenant", String($0)] }, environment: environment)
    }

    func testResealMovesSecretsToTheCurrentKeyAndTheOldKeyCanGo() async throws {
        let oldKey = Self.newKey()
        let old = try SecretBox(currentKey: oldKey)
        let made = try await Self.tenantSealed(under: old)
        XCTAssertEqual(try Self.keyIDs(made.tenant.id), [old.currentKeyID, old.currentKeyID])

        // The tests' key current, the old one previous.
        let run = try Self.reseal([made.tenant.id], current: TestSecrets.keyText, previous: oldKey)
        XCTAssertEqual(run.status, 0, run.output)
        XCTAssertTrue(run.output.contains("reseal: 1 issuer keys and 1 webhook secrets sealed again"), run.output)
        let current = TestSecrets.box.currentKeyID
        XCTAssertEqual(try Self.keyIDs(made.tenant.id), [current, current])

        // The webhook's secret opens under the current key alone, as it was.
        let sealed = try TestDatabase.scalar("SELECT sealed_secret FROM webhook_endpoints WHERE id = $1", [made.hook], as: Data.self)
        let opened = try TestSecrets.box.open(
            Array(sealed), associatedData: WebhooksStore.associatedData(tenantID: made.tenant.id, webhookID: made.hook))
        XCTAssertEqual(String(decoding: opened, as: UTF8.self), made.secret)
        // A server with the current key alone signs with the issuer's resealed key.
        try await TestServer.run { server in
            let reply = try await server.issue(made.tenant.key, issuer: made.issuer)
            XCTAssertEqual(reply.status, 201, reply.text)
            try await ComprobantesTests.assertSignedAsNumbered(server, made.tenant.key, issuer: made.issuer, reply)
        }

        // Again: nothing more to do.
        let again = try Self.reseal([made.tenant.id], current: TestSecrets.keyText, previous: oldKey)
        XCTAssertEqual(again.status, 0, again.output)
        XCTAssertTrue(again.output.contains("reseal: 0 issuer keys and 0 webhook secrets"), again.output)
    }

    /// A webhook's previous secret (a rotation's, still signing) moves with
    /// its secret, keeping its expiry; one that has expired is dropped.
    func testAWebhooksPreviousSecretMovesWithItsSecret() async throws {
        let oldKey = Self.newKey()
        let old = try SecretBox(currentKey: oldKey)
        let kept = try await Self.tenantSealed(under: old)
        let lapsed = try await Self.tenantSealed(under: old)
        let rotatedSecrets = NIOLockedValueBox<[Int64: String]>([:])
        try await TestServer.run(configure: { $0.secretBox = old }) { server in
            for made in [kept, lapsed] {
                let rotated = try await server.call(.post, "/v1/webhooks/\(made.hook)/rotate-secret", key: made.tenant.key)
                XCTAssertEqual(rotated.status, 200, rotated.text)
                let secret = try rotated.string("secret")
                rotatedSecrets.withLockedValue { $0[made.hook] = secret }
            }
        }
        let secrets = rotatedSecrets.withLockedValue { $0 }
        _ = try TestDatabase.query(
            "UPDATE webhook_endpoints SET previous_secret_expires_at = now() - interval '1 second' WHERE id = $1", [lapsed.hook])
        let expiry = "SELECT previous_secret_expires_at FROM webhook_endpoints WHERE id = $1"
        let expiresBefore = try TestDatabase.scalar(expiry, [kept.hook], as: Date.self)

        let run = try Self.reseal([kept.tenant.id, lapsed.tenant.id], current: TestSecrets.keyText, previous: oldKey)
        XCTAssertEqual(run.status, 0, run.output)
        XCTAssertTrue(run.output.contains("2 webhook secrets sealed again"), run.output)
        for made in [kept, lapsed] {
            let row = try TestDatabase.query(
                "SELECT master_key_id, sealed_secret, previous_sealed_secret FROM webhook_endpoints WHERE id = $1", [made.hook])
            XCTAssertEqual(try row[0].decode(String.self, at: 0), TestSecrets.box.currentKeyID)
            let associatedData = WebhooksStore.associatedData(tenantID: made.tenant.id, webhookID: made.hook)
            let current = try TestSecrets.box.open(Array(try row[0].decode(Data.self, at: 1)), associatedData: associatedData)
            XCTAssertEqual(String(decoding: current, as: UTF8.self), secrets[made.hook])
            let previous = try row[0].decode(Data?.self, at: 2)
            if made.hook == kept.hook {
                let opened = try TestSecrets.box.open(Array(try XCTUnwrap(previous)), associatedData: associatedData)
                XCTAssertEqual(String(decoding: opened, as: UTF8.self), made.secret, "the replaced secret, under the current key")
                XCTAssertEqual(try TestDatabase.scalar(expiry, [made.hook], as: Date.self), expiresBefore, "its expiry kept")
            } else {
                XCTAssertNil(previous, "an expired previous secret is dropped")
                XCTAssertTrue(try TestDatabase.query(expiry, [made.hook])[0].isNull(at: 0))
            }
        }
    }

    /// A row changed while the resealer waits for its lock (a new upload, a
    /// rotation, sealed under the current key) is left as that change wrote
    /// it: the resealer reads it again once the lock is its, and finds
    /// nothing to do. The other secret of the tenant is resealed.
    func testARowChangedWhileTheResealerWaitsIsLeftAsItWasWritten() async throws {
        let oldKey = Self.newKey()
        let made = try await Self.tenantSealed(under: try SecretBox(currentKey: oldKey))
        let associatedData = WebhooksStore.associatedData(tenantID: made.tenant.id, webhookID: made.hook)
        let written = Data(TestSecrets.box.seal(Array("whsec_written_meanwhile".utf8), associatedData: associatedData))

        // A change under way: the webhook's row locked, its new secret not committed yet.
        let holder = try TestDatabase.owner()
        try holder.query("BEGIN", prepared: false)
        try holder.query(
            """
            UPDATE webhook_endpoints SET sealed_secret = \(written), master_key_id = \(TestSecrets.box.currentKeyID)
             WHERE id = \(made.hook)
            """, prepared: false)
        let tenant = made.tenant.id
        let running = Task.detached { () throws -> Resealer.Report in
            var resealer = Resealer(
                connection: try TestDatabase.owner(), secretBox: try SecretBox(currentKey: TestSecrets.keyText, previousKeys: [oldKey]))
            resealer.tenants = [tenant]
            return resealer.run()
        }
        // The resealer reaches the webhook's row and waits for its lock.
        try await eventually("the resealer waiting for the row's lock") {
            try TestDatabase.scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%FROM webhook_endpoints%'",
                as: Int64.self) == 1
        }
        try holder.query("COMMIT", prepared: false)
        let report = try await running.value
        XCTAssertNil(report.stopped)
        XCTAssertEqual([report.certificates, report.webhooks], [1, 0], "the certificate resealed, the webhook left")
        XCTAssertEqual(report.failures, [])
        let stored = try TestDatabase.scalar("SELECT sealed_secret FROM webhook_endpoints WHERE id = $1", [made.hook], as: Data.self)
        XCTAssertEqual(stored, written, "the secret as the change wrote it, not the old one resealed over it")
        XCTAssertEqual(try Self.keyIDs(tenant), [TestSecrets.box.currentKeyID, TestSecrets.box.currentKeyID])
    }

    /// Rows that cannot be opened do not hide the ones after them: the run
    /// pages past them, one row a page here.
    func testRowsThatCannotBeOpenedDoNotStopTheRest() async throws {
        let lost = try SecretBox(currentKey: Self.newKey())
        let oldKey = Self.newKey()
        let first = try await Self.tenantSealed(under: lost)
        let second = try await Self.tenantSealed(under: lost)
        let last = try await Self.tenantSealed(under: try SecretBox(currentKey: oldKey))
        var resealer = Resealer(
            connection: try TestDatabase.owner(), secretBox: try SecretBox(currentKey: TestSecrets.keyText, previousKeys: [oldKey]))
        resealer.batch = 1
        resealer.tenants = [first.tenant.id, second.tenant.id, last.tenant.id]
        let report = resealer.run()
        XCTAssertEqual([report.certificates, report.webhooks], [1, 1])
        XCTAssertEqual(report.failures.count, 4, "\(report.failures)")
        XCTAssertNil(report.stopped)
        XCTAssertEqual(try Self.keyIDs(last.tenant.id), [TestSecrets.box.currentKeyID, TestSecrets.box.currentKeyID])
    }

    /// A row whose master key is in neither variable is named and left as it
    /// is; the command fails, and no secret is printed.
    func testARowUnderAnUnknownKeyIsReportedAndLeft() async throws {
        let lostKey = Self.newKey()
        let lost = try SecretBox(currentKey: lostKey)
        let made = try await Self.tenantSealed(under: lost)
        let run = try Self.reseal([made.tenant.id], current: TestSecrets.keyText, previous: nil)
        XCTAssertEqual(run.status, 1, run.output)
        XCTAssertTrue(run.output.contains("cannot open tenant \(made.tenant.id) issuer_certificate \(made.issuer)"), run.output)
        XCTAssertTrue(run.output.contains("cannot open tenant \(made.tenant.id) webhook_endpoint \(made.hook)"), run.output)
        XCTAssertFalse(run.output.contains(made.secret))
        XCTAssertEqual(try Self.keyIDs(made.tenant.id), [lost.currentKeyID, lost.currentKeyID])
        // Without DATABASE_URL or a current key it does nothing, naming what is missing.
        let unset = try Executable.run(try Executable.url(), ["reseal"], environment: ["COMPROBIFY_SECRET_KEY": TestSecrets.keyText])
        XCTAssertEqual(unset.status, 2)
        XCTAssertTrue(unset.output.contains("DATABASE_URL is not set"), unset.output)
    }
}
