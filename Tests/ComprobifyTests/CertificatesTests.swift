import Foundation
import HTTPTypes
import NIOConcurrencyHelpers
import SRI
import TestSupport
import XCTest

@testable import Comprobify

/// PUT/GET /v1/issuers/:id/certificate (SRI.md, "Signing certificates").
final class CertificatesTests: XCTestCase {
    static let pki = TestSigning.pki

    static func upload(_ p12: [UInt8], password: String = TestPKI.password) -> String {
        #"{"p12": "\#(Data(p12).base64EncodedString())", "password": "\#(password)"}"#
    }

    func testUploadShowsTheCertificateAsOpenSSLSeesIt() async throws {
        try await TestServer.run { server in
            let tenant = try await server.signUp()
            let issuer = try await server.createIssuer(tenant.key, signing: false)
            let none = try await server.call(.get, "/v1/issuers/\(issuer)/certificate", key: tenant.key)
            none.assertProblem(404, "NOT_FOUND")

            let name = try Self.pki.leaf("Firma Uno")
            let uploaded = try await server.call(
                .put, "/v1/issuers/\(issuer)/certificate", key: tenant.key, json: Self.upload(try Self.pki.pkcs12(name)))
            XCTAssertEqual(uploaded.status, 200, uploaded.text)
            XCTAssertEqual(uploaded.value(["ok"]), .bool(true))

            let fingerprint = try Self.pki.openssl(["x509", "-in", Self.pki.path("\(name).pem"), "-noout", "-fingerprint", "-sha256"])
            let expectedSHA = fingerprint.split(separator: "=").last!.trimmingCharacters(in: .whitespacesAndNewlines)
                .replacingOccurrences(of: ":", with: "").lowercased()
            XCTAssertEqual(try uploaded.string("certificate", "sha256"), expectedSHA)
            let serialHex = try Self.pki.openssl(["x509", "-in", Self.pki.path("\(name).pem"), "-noout", "-serial"])
                .split(separator: "=").last!.trimmingCharacters(in: .whitespacesAndNewlines)
            XCTAssertEqual(try uploaded.string("certificate", "serialNumber"), String(UInt64(serialHex, radix: 16)!))
            XCTAssertTrue(try uploaded.string("certificate", "subject").contains("CN=Firma Uno"))
            XCTAssertTrue(try uploaded.string("certificate", "issuer").contains("CN=Comprobify Test CA"))
            XCTAssertEqual(try uploaded.string("certificate", "notAfter"), "2040-12-31T23:59:59.000Z")
            XCTAssertNotNil(uploaded.value(["certificate", "uploadedAt"]))

            let shown = try await server.call(.get, "/v1/issuers/\(issuer)/certificate", key: tenant.key)
            XCTAssertEqual(shown.value(["certificate"]), uploaded.value(["certificate"]))

            // A new upload replaces the old one; each is audited without key material.
            let second = try Self.pki.leaf("Firma Dos")
            let replaced = try await server.call(
                .put, "/v1/issuers/\(issuer)/certificate", key: tenant.key, json: Self.upload(try Self.pki.pkcs12(second)))
            XCTAssertEqual(replaced.status, 200, replaced.text)
            XCTAssertTrue(try replaced.string("certificate", "subject").contains("CN=Firma Dos"))
            let audits = try TestDatabase.query(
                "SELECT details::text FROM audit_events WHERE tenant_id = $1 AND action = 'issuer.certificate_set' ORDER BY id", [tenant.id]
            )
            XCTAssertEqual(audits.count, 2)
            for row in audits.rows {
                let details = try row.decode(String.self, at: 0)
                XCTAssertTrue(details.contains("\"issuerId\": \(issuer)"), details)
                XCTAssertFalse(details.contains("BEGIN"), details)
            }
            XCTAssertEqual(
                try TestDatabase.scalar("SELECT count(*) FROM issuer_certificates WHERE tenant_id = $1", [tenant.id], as: Int.self), 1)
        }
    }

    func testRefusedFilesNameTheFieldAndStoreNothing() async throws {
        let pki = Self.pki
        let good = try pki.leaf("Bien")
        let expired = try pki.leaf("Vencido", from: "20200101000000Z", until: "20210101000000Z")
        let future = try pki.leaf("Futuro", from: "20390101000000Z", until: "20400101000000Z")
        // GeneralizedTime's year 0, which no timestamp of ours can hold.
        let yearZero = try pki.leaf("Year zero", from: "00000101000000Z", until: "90001231235959Z")
        let ec = try pki.leaf("Curva", key: "ec")
        let small = try pki.leaf("Corto", key: "rsa:1024")
        // Past 4096 bits: a private key's operations cost the cube of its size.
        let large = try pki.leaf("Enorme", key: "rsa:4160")
        let overlong = try pki.leafWithOverlongKey("Descomunal")
        let cannotSign = try pki.leafWithKeyThatCannotSign("Par")
        let slow = try pki.leaf("Lento", slowKey: .unreducedCRTExponent)
        let longExponent = try pki.leaf("Exponente", slowKey: .longPublicExponent)
        let unusableIssuer = try pki.selfSigned("Emisor \u{FFFE}")
        // 120 bytes: a serial number of 289 decimal digits, which OpenSSL parses.
        let longSerial = try pki.leaf(good, reissuedWithSerial: "0x" + String(repeating: "AB", count: 120))
        // A MAC asking for 8388607 iterations: a file made with 65536, whose
        // last element is the MAC's count (INTEGER 0x010000), patched in place.
        var costlyMAC = try pki.pkcs12(good, options: ["-iter", "65536"])
        XCTAssertEqual(Array(costlyMAC.suffix(5)), [0x02, 0x03, 0x01, 0x00, 0x00])
        costlyMAC.replaceSubrange((costlyMAC.count - 3)..., with: [0x7f, 0xff, 0xff])
        let cases: [(String, String, String)] = [
            (#"{"p12": "not base64 at all!", "password": "x"}"#, "p12", "base64"),
            (#"{"p12": "\#(Data("hello world, not pkcs12".utf8).base64EncodedString())", "password": "x"}"#, "p12", "PKCS#12"),
            (Self.upload(try pki.pkcs12(good), password: "wrong"), "password", "does not open"),
            (Self.upload(try pki.pkcs12(good, options: ["-nokeys"])), "p12", "no private key"),
            (Self.upload(try pki.pkcs12(ec)), "p12", "RSA"),
            (Self.upload(try pki.pkcs12(small)), "p12", "1024 bits"),
            (Self.upload(try pki.pkcs12(large)), "p12", "4160 bits; at most 4096"),
            (Self.upload(try pki.pkcs12(overlong)), "p12", "far more than 4096 bits; at most 4096"),
            // Its modulus is not the product of its primes.
            (Self.upload(try pki.pkcs12(cannotSign)), "p12", "standard two-prime key"),
            (Self.upload(try pki.pkcs12(slow)), "p12", "standard two-prime key"),
            (Self.upload(try pki.pkcs12(longExponent)), "p12", "at most 256 bits long"),
            (Self.upload(try pki.pkcs12(unusableIssuer)), "p12", "issuer name"),
            (Self.upload(try pki.pkcs12(longSerial)), "p12", "serial number"),
            (Self.upload(costlyMAC), "p12", "asks for 8388607 iterations"),
            (Self.upload(try pki.pkcs12(good, options: ["-iter", "300000"])), "p12", "asks for 300000 iterations"),
            // The certificates' encrypted safe, then the shrouded key, with a MAC of one iteration.
            (Self.upload(try pki.pkcs12(good, options: ["-iter", "300000", "-nomaciter"])), "p12", "asks for 300000 iterations"),
            (
                Self.upload(try pki.pkcs12(good, options: ["-iter", "300000", "-nomaciter", "-certpbe", "NONE"])), "p12",
                "asks for 300000 iterations"
            ),
            (Self.upload(try pki.pkcs12(expired)), "p12", "expired"),
            (Self.upload(try pki.pkcs12(future)), "p12", "not valid before"),
            (Self.upload(try pki.pkcs12(yearZero)), "p12", "years 1 to 9999"),
            (#"{"password": "x"}"#, "p12", "required"),
            (#"{"p12": "", "password": "x"}"#, "p12", "must not be empty"),
            (#"{"p12": "AAAA"}"#, "password", "required"),
        ]
        try await TestServer.run { server in
            let tenant = try await server.signUp()
            let issuer = try await server.createIssuer(tenant.key, signing: false)
            for (body, field, words) in cases {
                let reply = try await server.call(.put, "/v1/issuers/\(issuer)/certificate", key: tenant.key, json: body)
                reply.assertProblem(400, "VALIDATION_ERROR")
                XCTAssertEqual(reply.errorFields, [field], "\(field): \(reply.text)")
                XCTAssertTrue(reply.text.contains(words), "\(words) in \(reply.text)")
                XCTAssertFalse(reply.text.contains(TestPKI.password))
            }
            XCTAssertEqual(
                try TestDatabase.scalar("SELECT count(*) FROM issuer_certificates WHERE tenant_id = $1", [tenant.id], as: Int.self), 0)
            XCTAssertEqual(
                try TestDatabase.scalar(
                    "SELECT count(*) FROM audit_events WHERE tenant_id = $1 AND action = 'issuer.certificate_set'", [tenant.id],
                    as: Int.self),
                0)
            // A file in the legacy encryption (RC2-40, 3DES, SHA-1 MAC) loads.
            let legacy = try await server.call(
                .put, "/v1/issuers/\(issuer)/certificate", key: tenant.key, json: Self.upload(try pki.pkcs12(good, options: ["-legacy"])))
            XCTAssertEqual(legacy.status, 200, legacy.text)
        }
    }

    /// Documents are signed with the certificate uploaded last, also when the
    /// process already holds the previous certificate's key: it finds keys by
    /// the certificate's fingerprint, read with every document.
    func testDocumentsAreSignedWithTheCertificateUploadedLast() async throws {
        try await TestServer.run { server in
            let tenant = try await server.signUp()
            let issuer = try await server.createIssuer(tenant.key, signing: false)
            var sequential: Int64 = 0
            for commonName in ["Firma Uno", "Firma Dos", "Firma Uno otra vez"] {
                let name = try Self.pki.leaf(commonName)
                let put = try await server.call(
                    .put, "/v1/issuers/\(issuer)/certificate", key: tenant.key, json: Self.upload(try Self.pki.pkcs12(name)))
                XCTAssertEqual(put.status, 200, put.text)
                let certificate = Data(try Self.pki.der(name)).base64EncodedString()
                // The first document opens the key, the second finds it in the process.
                for _ in 1...2 {
                    let reply = try await server.issue(tenant.key, issuer: issuer)
                    XCTAssertEqual(reply.status, 201, reply.text)
                    sequential += 1
                    XCTAssertEqual(try reply.int("document", "sequential"), sequential)
                    let accessKey = try reply.string("document", "accessKey")
                    let xml = try await server.call(.get, "/v1/documents/\(accessKey)/xml", key: tenant.key, issuer: issuer)
                    XCTAssertEqual(xml.status, 200, xml.text)
                    XCTAssertTrue(
                        xml.text.contains("<ds:X509Certificate>\(certificate)</ds:X509Certificate>"), "\(commonName): \(xml.text)")
                    XCTAssertNil(try IndependentCheck.signatureErrors(Array(xml.text.utf8), root: "factura"), commonName)
                }
            }
        }
    }

    func testAnotherTenantsIssuerIs404AndOrderOfAnswersHolds() async throws {
        try await TestServer.run { server in
            let owner = try await server.signUp()
            let issuer = try await server.createIssuer(owner.key)
            let stranger = try await server.signUp()
            let put = try await server.call(.put, "/v1/issuers/\(issuer)/certificate", key: stranger.key, json: TestSigning.uploadBody)
            put.assertProblem(404, "NOT_FOUND")
            let badFileElsewhere = try await server.call(
                .put, "/v1/issuers/\(issuer)/certificate", key: stranger.key, json: #"{"p12": "!!", "password": "x"}"#)
            badFileElsewhere.assertProblem(404, "NOT_FOUND")
            let notJSONElsewhere = try await server.call(.put, "/v1/issuers/\(issuer)/certificate", key: stranger.key, json: "{")
            notJSONElsewhere.assertProblem(404, "NOT_FOUND")
            let get = try await server.call(.get, "/v1/issuers/\(issuer)/certificate", key: stranger.key)
            get.assertProblem(404, "NOT_FOUND")
            let anonymous = try await server.call(.put, "/v1/issuers/\(issuer)/certificate", json: #"{"p12": "!!", "password": "x"}"#)
            anonymous.assertProblem(401, "UNAUTHORIZED")
            XCTAssertEqual(
                try TestDatabase.scalar("SELECT count(*) FROM issuer_certificates WHERE tenant_id = $1", [stranger.id], as: Int.self), 0)
        }
    }

    /// The private key and the password appear nowhere: not in a dump of the
    /// whole database, not in anything the server logged.
    func testNoKeyMaterialInTheDatabaseOrTheLogs() async throws {
        let pki = Self.pki
        let name = try pki.leaf("Secreto")
        let password = "s3cret-\(UUID().uuidString)"
        let p12 = try pki.pkcs12(name, password: password)
        try pki.openssl(["pkcs8", "-topk8", "-nocrypt", "-in", pki.path("\(name).key"), "-outform", "DER", "-out", pki.path("\(name).p8")])
        let keyDER = try Data(contentsOf: pki.url("\(name).p8"))
        let logs = LogCapture()
        try await TestServer.run(logs: logs) { server in
            let tenant = try await server.signUp()
            let issuer = try await server.createIssuer(tenant.key, signing: false)
            let reply = try await server.call(
                .put, "/v1/issuers/\(issuer)/certificate", key: tenant.key, json: Self.upload(p12, password: password))
            XCTAssertEqual(reply.status, 200, reply.text)
            let issued = try await server.issue(tenant.key, issuer: issuer)
            XCTAssertEqual(issued.status, 201, issued.text)
        }
        let dumpFile = FileManager.default.temporaryDirectory.appendingPathComponent("dump-\(UUID().uuidString).sql")
        defer { try? FileManager.default.removeItem(at: dumpFile) }
        let pgDump =
            FileManager.default.fileExists(atPath: "/usr/lib/postgresql/15/bin/pg_dump") ? "/usr/lib/postgresql/15/bin/pg_dump" : "pg_dump"
        let (status, output) = try runTool(pgDump, ["--data-only", "--file", dumpFile.path, TestDatabase.ownerURL])
        XCTAssertEqual(status, 0, output)
        let dump = try String(contentsOf: dumpFile, encoding: .utf8)
        XCTAssertTrue(dump.contains("issuer_certificates"), "the dump holds the certificates table")
        let hex = keyDER.map { String(format: "%02x", $0) }.joined()
        // A distinctive slice of the key: its DER middle, base64 and hex.
        let middle = keyDER.subdata(in: (keyDER.count / 2)..<(keyDER.count / 2 + 48))
        let needles = [
            password, keyDER.base64EncodedString(), String(middle.base64EncodedString().dropFirst(4).prefix(40)), hex,
            String(hex.dropFirst(keyDER.count).prefix(80)), Data(p12).base64EncodedString().prefix(60).description,
        ]
        for needle in needles {
            XCTAssertFalse(dump.contains(needle), "key material or password in pg_dump")
            XCTAssertFalse(logs.text.contains(needle), "key material or password in the server log")
        }
    }

    /// A server whose master key does not open an issuer's sealed key (a new
    /// COMPROBIFY_SECRET_KEY without the old one in COMPROBIFY_SECRET_KEY_PREVIOUS)
    /// answers 500 INTERNAL, saying nothing of keys, and logs what is wrong for
    /// the operator; the transaction rolls back: no document and no number
    /// used. With the right key configured again, the next factura takes the
    /// next number.
    func testAKeySealedUnderAnotherMasterKeyIs500AndUsesNoNumber() async throws {
        let made = NIOLockedValueBox<(TestServer.Tenant, Int64)?>(nil)
        try await TestServer.run { server in
            let tenant = try await server.signUp()
            let issuer = try await server.createIssuer(tenant.key)
            let first = try await server.issue(tenant.key, issuer: issuer)
            XCTAssertEqual(try first.int("document", "sequential"), 1, first.text)
            made.withLockedValue { $0 = (tenant, issuer) }
        }
        let (tenant, issuer) = try XCTUnwrap(made.withLockedValue { $0 })
        let otherKey = Data((0..<32).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
        let logs = LogCapture()
        try await TestServer.run(configure: { $0.secretBox = try! SecretBox(currentKey: otherKey) }, logs: logs) { server in
            for _ in 0..<2 {
                let refused = try await server.issue(tenant.key, issuer: issuer)
                refused.assertProblem(500, "INTERNAL")
                XCTAssertFalse(refused.text.lowercased().contains("key"), refused.text)
                XCTAssertFalse(refused.text.lowercased().contains("sealed"), refused.text)
            }
        }
        XCTAssertTrue(
            logs.text.contains("sealed private key cannot be opened (tenant \(tenant.id), issuer \(issuer))"),
            "the operator is told which issuer: \(logs.text)")
        XCTAssertEqual(
            try TestDatabase.scalar("SELECT count(*) FROM documents WHERE issuer_id = $1", [issuer], as: Int64.self), 1,
            "nothing stored")
        XCTAssertEqual(
            try TestDatabase.scalar(
                "SELECT next_sequential::bigint FROM sequentials WHERE issuer_id = $1 AND document_type = '01'", [issuer], as: Int64.self),
            2, "no number used")
        try await TestServer.run { server in
            let next = try await server.issue(tenant.key, issuer: issuer)
            XCTAssertEqual(try next.int("document", "sequential"), 2, next.text)
        }
    }
}

final class SigningIdentityCacheTests: XCTestCase {
    func testEntriesAreKeyedByCertificateFingerprintAndBounded() throws {
        let identity = try SigningIdentity(pkcs12: TestSigning.p12, password: TestSigning.password, now: Date())
        let cache = SigningIdentityCache(capacity: 2)
        let first = SigningIdentityCache.Key(tenant: 1, issuer: 1, certificate: Data([1, 2, 3]))
        XCTAssertNil(cache.identity(for: first))
        cache.store(identity, for: first)
        XCTAssertTrue(cache.identity(for: first) === identity)
        // A new upload is a new certificate: a different entry, never the old one.
        XCTAssertNil(cache.identity(for: .init(tenant: 1, issuer: 1, certificate: Data([9]))))
        XCTAssertNil(cache.identity(for: .init(tenant: 2, issuer: 1, certificate: Data([1, 2, 3]))), "another tenant's entry")
        cache.store(identity, for: .init(tenant: 1, issuer: 2, certificate: Data([4])))
        XCTAssertEqual(cache.count, 2)
        cache.store(identity, for: .init(tenant: 1, issuer: 3, certificate: Data([5])))
        XCTAssertLessThanOrEqual(cache.count, 2, "bounded")
    }

    /// A replaced certificate's key (say, one that leaked) does not stay in
    /// memory: the issuer's next identity takes its place.
    func testANewCertificateOfAnIssuerDropsTheOldKey() throws {
        let old = try SigningIdentity(pkcs12: TestSigning.p12, password: TestSigning.password, now: Date())
        let new = try SigningIdentity(pkcs12: TestSigning.p12, password: TestSigning.password, now: Date())
        let cache = SigningIdentityCache()
        let oldKey = SigningIdentityCache.Key(tenant: 1, issuer: 1, certificate: Data([1]))
        let newKey = SigningIdentityCache.Key(tenant: 1, issuer: 1, certificate: Data([2]))
        weak let dropped = old
        cache.store(old, for: oldKey)
        cache.store(new, for: newKey)
        XCTAssertEqual(cache.count, 1, "one entry per issuer")
        XCTAssertNil(cache.identity(for: oldKey))
        XCTAssertTrue(cache.identity(for: newKey) === new)
        _ = consume old
        XCTAssertNil(dropped, "the old identity, and its key, were freed")
    }
}
