import Foundation
import HTTPTypes
import NIOConcurrencyHelpers
import Postgres
import SRI
import TestSupport
import XCTest

@testable import Comprobify

/// Facturas and credit notes through the API: the XML passes the official
/// schema and the signature an independent verifier, both by tools other than
/// ours; the amounts are the ones worked out by hand; state checks consume no
/// number; credit notes cannot overdraw their factura.
final class ComprobantesTests: XCTestCase {
    static let today = CalendarDate.todayInEcuador(now: Date().timeIntervalSince1970).description

    /// Three lines at three rates, a discount, 6-decimal quantities and prices,
    /// half-up boundaries, payments, every optional field, and hostile text.
    static let richFactura = """
        {"documentType": "01",
         "buyer": {"idType": "05", "id": "1712345678", "name": "José Núñez & Hijos <\\"Cía\\"> ]]> 🧾",
                   "address": "Av. 6 de Diciembre & Colón", "email": "jose@example.ec"},
         "items": [
           {"code": "A-1", "auxCode": "AUX<1>", "description": "Widget 'grande' & <pequeño>", "quantity": "2",
            "unitPrice": "10.75", "discount": "0.50", "taxes": [{"code": "2", "rateCode": "4"}],
            "details": [{"name": "Color", "value": "Rojo ]]>"}]},
           {"description": "Servicio exento", "quantity": 1.5, "unitPrice": 0.015,
            "taxes": [{"code": "2", "rateCode": "7"}]},
           {"description": "Fracción", "quantity": "0.333333", "unitPrice": "3.000003",
            "taxes": [{"code": "2", "rateCode": "5"}]}
         ],
         "payments": [{"method": "01", "total": "25.22"}],
         "additionalInfo": [{"name": "Pedido", "value": "PO-77 & <urgente>"}],
         "metadata": {"erpId": "INV-1001", "n": 1e500}}
        """

    func testAFacturaIsSchemaValidSignedAndComputedExactly() async throws {
        try await TestServer.run { server in
            let tenant = try await server.signUp()
            let issuer = try await server.createIssuer(tenant.key)
            let reply = try await server.issue(tenant.key, issuer: issuer, body: Self.richFactura)
            XCTAssertEqual(reply.status, 201, reply.text)
            XCTAssertEqual(try reply.string("document", "status"), "SIGNED")
            // By hand: line 1: round(2 × 10.75) − 0.50 = 21.00, IVA 15 % = 3.15;
            // line 2: round(1.5 × 0.015 = 0.0225) = 0.02, exento 0 %;
            // line 3: round(0.333333 × 3.000003 = 0.999999999999) = 1.00, 5 % = 0.05.
            XCTAssertEqual(try reply.string("document", "items", 0, "subtotal"), "21.00")
            XCTAssertEqual(try reply.string("document", "items", 0, "taxes", 0, "value"), "3.15")
            XCTAssertEqual(try reply.string("document", "items", 1, "subtotal"), "0.02")
            XCTAssertEqual(try reply.string("document", "items", 1, "taxes", 0, "value"), "0.00")
            XCTAssertEqual(try reply.string("document", "items", 2, "subtotal"), "1.00")
            XCTAssertEqual(try reply.string("document", "items", 2, "taxes", 0, "value"), "0.05")
            XCTAssertEqual(try reply.string("document", "items", 2, "quantity"), "0.333333")
            XCTAssertEqual(try reply.string("document", "totals", "subtotal"), "22.02")
            XCTAssertEqual(try reply.string("document", "totals", "discount"), "0.50")
            XCTAssertEqual(try reply.string("document", "totals", "tip"), "0.00")
            XCTAssertEqual(try reply.string("document", "totals", "total"), "25.22")
            XCTAssertEqual(try reply.array("document", "totals", "taxes").count, 3)
            XCTAssertEqual(reply.value(["document", "metadata", "n"]), .number("1e500"), "metadata comes back as written")
            XCTAssertEqual(try reply.string("document", "buyer", "name"), "José Núñez & Hijos <\"Cía\"> ]]> 🧾")
            XCTAssertEqual(reply.value(["document", "sri", "attempts"]), .number("0"))
        }
    }

    func testTheSignedXMLPassesTheOfficialSchemaAndXmlsec1() async throws {
        try await TestServer.run { server in
            let tenant = try await server.signUp()
            let issuer = try await server.createIssuer(tenant.key)
            let factura = try await server.issue(tenant.key, issuer: issuer, body: Self.richFactura)
            XCTAssertEqual(factura.status, 201, factura.text)
            let note = try await server.issue(tenant.key, issuer: issuer, body: Bodies.creditNote(metadata: #"{"x": "<&>"}"#))
            XCTAssertEqual(note.status, 201, note.text)
            for (reply, root, type) in [(factura, "factura", "01"), (note, "notaCredito", "04")] {
                let key = try reply.string("document", "accessKey")
                let first = try await server.call(.get, "/v1/documents/\(key)/xml", key: tenant.key, issuer: issuer)
                XCTAssertEqual(first.status, 200, first.text)
                XCTAssertEqual(first.headers[.contentType], "application/xml; charset=utf-8")
                let again = try await server.call(.get, "/v1/documents/\(key)/xml", key: tenant.key, issuer: issuer)
                XCTAssertEqual(again.text, first.text, "the same bytes every time")
                let xml = Array(first.text.utf8)
                XCTAssertTrue(first.text.contains("<claveAcceso>\(key)</claveAcceso>"))
                XCTAssertTrue(first.text.contains(#"<\#(root) id="comprobante" version=""#))
                XCTAssertNil(try IndependentCheck.schemaErrors(xml, documentType: type))
                XCTAssertNil(try IndependentCheck.signatureErrors(xml, root: root))
                // One changed byte of the signed content: xmlsec1 refuses it.
                let tampered = Array(first.text.replacingOccurrences(of: "<ruc>1790012345001</ruc>", with: "<ruc>1790012345002</ruc>").utf8)
                XCTAssertNotEqual(tampered, xml)
                XCTAssertNotNil(try IndependentCheck.signatureErrors(tampered, root: root))
            }
            let other = try await server.signUp()
            let otherIssuer = try await server.createIssuer(other.key)
            let key = try factura.string("document", "accessKey")
            let foreign = try await server.call(.get, "/v1/documents/\(key)/xml", key: other.key, issuer: otherIssuer)
            foreign.assertProblem(404, "NOT_FOUND")
        }
    }

    /// With SRI_SIGNATURE_ALGORITHM=rsa-sha1 (the older profile) the server
    /// signs RSA-SHA1 and xmlsec1 verifies what it serves.
    func testTheOlderSHA1ProfileThroughTheAPI() async throws {
        try await TestServer.run(configure: { $0.signatureAlgorithm = .rsaSHA1 }) { server in
            let tenant = try await server.signUp()
            let issuer = try await server.createIssuer(tenant.key)
            let reply = try await server.issue(tenant.key, issuer: issuer)
            XCTAssertEqual(reply.status, 201, reply.text)
            let key = try reply.string("document", "accessKey")
            let xml = try await server.call(.get, "/v1/documents/\(key)/xml", key: tenant.key, issuer: issuer)
            XCTAssertEqual(xml.status, 200, xml.text)
            XCTAssertTrue(xml.text.contains(#"Algorithm="http://www.w3.org/2000/09/xmldsig#rsa-sha1""#), xml.text)
            XCTAssertFalse(xml.text.contains("rsa-sha256"))
            XCTAssertNil(try IndependentCheck.schemaErrors(Array(xml.text.utf8), documentType: "01"))
            XCTAssertNil(try IndependentCheck.signatureErrors(Array(xml.text.utf8), root: "factura"))
        }
    }

    /// The XML of an issued document carries the number and access key of its
    /// reply, passes the official schema and verifies with xmlsec1.
    static func assertSignedAsNumbered(_ server: TestServer, _ key: String, issuer: Int64, _ reply: Reply) async throws {
        let accessKey = try reply.string("document", "accessKey")
        let sequential = try reply.int("document", "sequential")
        let number = try reply.string("document", "number")
        XCTAssertEqual(Int(accessKey.dropFirst(30).prefix(9)), Int(sequential), "the access key carries the sequential")
        XCTAssertEqual(Int(number.suffix(9)), Int(sequential))
        let xml = try await server.call(.get, "/v1/documents/\(accessKey)/xml", key: key, issuer: issuer)
        XCTAssertEqual(xml.status, 200, xml.text)
        XCTAssertTrue(xml.text.contains("<claveAcceso>\(accessKey)</claveAcceso>"), "document \(sequential)")
        XCTAssertTrue(xml.text.contains("<secuencial>\(number.suffix(9))</secuencial>"), "document \(sequential)")
        XCTAssertNil(try IndependentCheck.schemaErrors(Array(xml.text.utf8), documentType: "01"))
        XCTAssertNil(try IndependentCheck.signatureErrors(Array(xml.text.utf8), root: "factura"))
    }

    /// A document is signed ahead of the counter's lock with the number the
    /// process expects; when another process took that number meanwhile, the
    /// document is signed again with the number it really gets.
    func testSigningAheadKeepsOnlyASignatureOfTheNumberTheCounterGave() async throws {
        try await TestServer.run { server in
            let tenant = try await server.signUp()
            let issuer = try await server.createIssuer(tenant.key)
            // 1: nothing foreseen; 2: signed ahead as 2.
            for expected in 1...2 {
                let reply = try await server.issue(tenant.key, issuer: issuer, body: Self.richFactura)
                XCTAssertEqual(reply.status, 201, reply.text)
                XCTAssertEqual(try reply.int("document", "sequential"), Int64(expected))
                try await Self.assertSignedAsNumbered(server, tenant.key, issuer: issuer, reply)
            }
            // The counters of this test process's metrics, read from /metrics.
            func signedAhead(_ outcome: String) async throws -> Double {
                try await server.metric(#"documents_signed_ahead_total{outcome="\#(outcome)"}"#)
            }
            let (missBefore, hitBefore) = (try await signedAhead("miss"), try await signedAhead("hit"))
            // Another process takes 3: this one signs ahead as 3, gets 4, signs again.
            let owner = try Connection(conninfo: TestDatabase.ownerURL)
            try owner.query(
                "UPDATE sequentials SET next_sequential = next_sequential + 1 WHERE issuer_id = \(issuer) AND document_type = '01'")
            for expected in [4, 5, 6] {
                let reply = try await server.issue(tenant.key, issuer: issuer, body: Self.richFactura)
                XCTAssertEqual(reply.status, 201, reply.text)
                XCTAssertEqual(try reply.int("document", "sequential"), Int64(expected))
                try await Self.assertSignedAsNumbered(server, tenant.key, issuer: issuer, reply)
            }
            let (missAfter, hitAfter) = (try await signedAhead("miss"), try await signedAhead("hit"))
            XCTAssertEqual(missAfter - missBefore, 1, "4 was signed ahead as 3, then again")
            // After a miss nothing is guessed until a number is known again: 5 is
            // signed under the lock, 6 ahead as what it got.
            XCTAssertEqual(hitAfter - hitBefore, 1, "6 was signed ahead as what it got")
        }
    }

    /// After enough numbers foreseen right, a document goes with its number in
    /// one round trip; when another process took that number meanwhile, nothing
    /// is stored and the request issues again: it gets the next number, signed
    /// as such, and the forecast starts over from it.
    func testADocumentSentWithAForeseenNumberThatMissedIssuesAgain() async throws {
        let logs = LogCapture()
        try await TestServer.run(logs: logs) { server in
            let tenant = try await server.signUp()
            let issuer = try await server.createIssuer(tenant.key)
            try await server.issueUntilOneTrip(tenant.key, issuer: issuer)
            XCTAssertFalse(logs.text.contains("issuing again"))
            let owner = try Connection(conninfo: TestDatabase.ownerURL)
            try owner.query(
                "UPDATE sequentials SET next_sequential = next_sequential + 1 WHERE issuer_id = \(issuer) AND document_type = '01'")
            // Foreseen as 11 and sent so; the counter gives 12: issued again as 12.
            let reply = try await server.issue(tenant.key, issuer: issuer, body: Self.richFactura)
            XCTAssertEqual(reply.status, 201, reply.text)
            XCTAssertEqual(try reply.int("document", "sequential"), 12)
            try await Self.assertSignedAsNumbered(server, tenant.key, issuer: issuer, reply)
            XCTAssertEqual(logs.text.components(separatedBy: "issuing again").count - 1, 1)
            let stored = try owner.query(
                "SELECT count(*), max(sequential) FROM documents WHERE issuer_id = \(issuer) AND document_type = '01'")
            XCTAssertEqual(try stored[0].decode(Int.self, at: 0), 11, "nothing stored by the attempt that missed")
            XCTAssertEqual(try stored[0].decode(Int.self, at: 1), 12)
            // With an Idempotency-Key the number is taken inside the transaction
            // that holds the key's claim: a miss is signed again there, and the
            // request never issues again in a transaction of its own (where a
            // same-key request could get ahead of it).
            for _ in 13...21 { _ = try await server.issue(tenant.key, issuer: issuer) }
            try owner.query(
                "UPDATE sequentials SET next_sequential = next_sequential + 1 WHERE issuer_id = \(issuer) AND document_type = '01'")
            let keyed = try await server.issue(
                tenant.key, issuer: issuer, headers: [.idempotencyKey: "one-trip-miss"], body: Self.richFactura)
            XCTAssertEqual(keyed.status, 201, keyed.text)
            XCTAssertEqual(try keyed.int("document", "sequential"), 23)
            try await Self.assertSignedAsNumbered(server, tenant.key, issuer: issuer, keyed)
            XCTAssertEqual(logs.text.components(separatedBy: "issuing again").count - 1, 1, "the keyed request issued once")
            let replayed = try await server.issue(
                tenant.key, issuer: issuer, headers: [.idempotencyKey: "one-trip-miss"], body: Self.richFactura)
            XCTAssertEqual(replayed.status, 201, replayed.text)
            XCTAssertEqual(replayed.headers[.idempotentReplayed], "true")
            XCTAssertEqual(try replayed.string("document", "accessKey"), try keyed.string("document", "accessKey"))
        }
    }

    func testTheLastSequentialIsIssuedAndThenTheCounterIsExhausted() async throws {
        try await TestServer.run { server in
            let tenant = try await server.signUp()
            let issuer = try await server.createIssuer(tenant.key)
            let first = try await server.issue(tenant.key, issuer: issuer)
            XCTAssertEqual(first.status, 201, first.text)
            let owner = try Connection(conninfo: TestDatabase.ownerURL)
            try owner.query("UPDATE sequentials SET next_sequential = 999999998 WHERE issuer_id = \(issuer) AND document_type = '01'")
            // 999999998 (a missed guess), then 999999999 (after a miss, nothing is guessed).
            for expected in [999_999_998, 999_999_999] {
                let reply = try await server.issue(tenant.key, issuer: issuer, body: Self.richFactura)
                XCTAssertEqual(reply.status, 201, reply.text)
                XCTAssertEqual(try reply.int("document", "sequential"), Int64(expected))
                try await Self.assertSignedAsNumbered(server, tenant.key, issuer: issuer, reply)
            }
            // Nothing to foresee past it: the counter answers, 409, and the server stays up.
            let past = try await server.issue(tenant.key, issuer: issuer)
            past.assertProblem(409, "CONFLICT", reason: "SEQUENTIAL_EXHAUSTED")
            let health = try await server.call(.get, "/healthz")
            XCTAssertEqual(health.status, 200)
        }
    }

    func testStateChecksAre409AndConsumeNoNumber() async throws {
        try await TestServer.run { server in
            let tenant = try await server.signUp()
            // No head office address.
            let created = try await server.call(
                .post, "/v1/issuers", key: tenant.key,
                json: #"{"ruc": "1790012345001", "legalName": "Sin Matriz", "establishment": "001", "emissionPoint": "001"}"#)
            let issuer = try created.int("issuer", "id")
            let noAddress = try await server.issue(tenant.key, issuer: issuer)
            noAddress.assertProblem(409, "CONFLICT", reason: "ISSUER_NOT_READY")
            XCTAssertTrue(try noAddress.string("detail").contains("headOfficeAddress"))
            // What it lacks to sign is named in the same answer.
            XCTAssertTrue(try noAddress.string("detail").contains("no signing certificate"), noAddress.text)
            // An address, still no certificate.
            _ = try await server.call(.patch, "/v1/issuers/\(issuer)", key: tenant.key, json: #"{"headOfficeAddress": "Quito"}"#)
            let noCertificate = try await server.issue(tenant.key, issuer: issuer)
            noCertificate.assertProblem(409, "CONFLICT", reason: "CERTIFICATE_MISSING")
            XCTAssertTrue(try noCertificate.string("detail").contains("certificate"))
            // A certificate that is no longer valid (its row aged by hand).
            _ = try await server.call(.put, "/v1/issuers/\(issuer)/certificate", key: tenant.key, json: TestSigning.uploadBody)
            try TestDatabase.query(
                "UPDATE issuer_certificates SET not_before = now() - interval '2 years', not_after = now() - interval '1 day' WHERE issuer_id = $1",
                [issuer])
            let expired = try await server.issue(tenant.key, issuer: issuer)
            expired.assertProblem(409, "CONFLICT", reason: "CERTIFICATE_NOT_VALID")
            // With the address gone again, both at once.
            _ = try await server.call(.patch, "/v1/issuers/\(issuer)", key: tenant.key, json: #"{"headOfficeAddress": null}"#)
            let expiredAndNoAddress = try await server.issue(tenant.key, issuer: issuer)
            expiredAndNoAddress.assertProblem(409, "CONFLICT", reason: "ISSUER_NOT_READY")
            for named in ["no headOfficeAddress", "certificate is not valid now"] {
                XCTAssertTrue(try expiredAndNoAddress.string("detail").contains(named), expiredAndNoAddress.text)
            }
            _ = try await server.call(.patch, "/v1/issuers/\(issuer)", key: tenant.key, json: #"{"headOfficeAddress": "Quito"}"#)
            // Validation failures of every kind.
            for body in [
                Bodies.factura(extra: #""payments": [{"method": "01", "total": "1.00"}]"#),
                Bodies.factura().replacingOccurrences(of: #""rateCode": "4""#, with: #""rateCode": "9""#),
                #"{"documentType": "03"}"#,
            ] {
                let refused = try await server.issue(tenant.key, issuer: issuer, body: body)
                refused.assertProblem(400, "VALIDATION_ERROR")
            }
            _ = try await server.call(.put, "/v1/issuers/\(issuer)/certificate", key: tenant.key, json: TestSigning.uploadBody)
            // A trade name XML cannot carry (the issuer's names take any text).
            _ = try await server.call(.patch, "/v1/issuers/\(issuer)", key: tenant.key, json: #"{"tradeName": "Tienda\u0001"}"#)
            let unwritable = try await server.issue(tenant.key, issuer: issuer)
            unwritable.assertProblem(409, "CONFLICT", reason: "ISSUER_NOT_READY")
            XCTAssertTrue(try unwritable.string("detail").contains("tradeName"), unwritable.text)
            // A head office address over two lines: the official XSD takes none.
            _ = try await server.call(
                .patch, "/v1/issuers/\(issuer)", key: tenant.key, json: #"{"tradeName": "Tienda", "headOfficeAddress": "Quito\nCentro"}"#)
            let twoLines = try await server.issue(tenant.key, issuer: issuer)
            twoLines.assertProblem(409, "CONFLICT", reason: "ISSUER_NOT_READY")
            XCTAssertTrue(try twoLines.string("detail").contains("headOfficeAddress"), twoLines.text)
            _ = try await server.call(.patch, "/v1/issuers/\(issuer)", key: tenant.key, json: #"{"headOfficeAddress": "Quito"}"#)
            let first = try await server.issue(tenant.key, issuer: issuer)
            XCTAssertEqual(first.status, 201, first.text)
            XCTAssertEqual(try first.int("document", "sequential"), 1, "nothing before took a number")
            // A RUC the API takes (13 digits) that SRI does not: not ending in 001.
            let branch = try await server.createIssuer(tenant.key, ruc: "1790012345002")
            let wrongRUC = try await server.issue(tenant.key, issuer: branch)
            wrongRUC.assertProblem(409, "CONFLICT", reason: "ISSUER_NOT_READY")
            XCTAssertTrue(try wrongRUC.string("detail").contains("ruc"), wrongRUC.text)
            XCTAssertEqual(
                try TestDatabase.scalar("SELECT count(*) FROM documents WHERE issuer_id = $1", [branch], as: Int.self), 0)
            // Everything an issuer lacks, named in one answer: the RUC, the head
            // office address, a trade name a comprobante cannot carry and a
            // signing certificate.
            let lacking = try await server.call(
                .post, "/v1/issuers", key: tenant.key,
                json:
                    #"{"ruc": "1790012345002", "legalName": "Falta Todo", "tradeName": "Tienda\u0001", "establishment": "009", "emissionPoint": "001"}"#
            )
            XCTAssertEqual(lacking.status, 201, lacking.text)
            let all = try await server.issue(tenant.key, issuer: try lacking.int("issuer", "id"))
            all.assertProblem(409, "CONFLICT", reason: "ISSUER_NOT_READY")
            let detail = try all.string("detail")
            for named in ["ruc 1790012345002", "no headOfficeAddress", "tradeName holds", "no signing certificate"] {
                XCTAssertTrue(detail.contains(named), "\(named): \(detail)")
            }
        }
    }

    func testEveryViolationIsReportedAtOnceByPath() async throws {
        try await TestServer.run { server in
            let tenant = try await server.signUp()
            let issuer = try await server.createIssuer(tenant.key)
            let body = """
                {"documentType": "01", "buyer": {"idType": "05", "id": "123", "name": ""},
                 "items": [{"description": "ok", "quantity": "1", "unitPrice": "1.00", "taxes": [{"code": "2", "rateCode": "4"}]},
                           {"description": "bad", "quantity": "0", "unitPrice": "1.1234567", "discount": true,
                            "taxes": [{"code": "2", "rateCode": "4"}]}],
                 "additionalInfo": [{"name": "a\\u0007b", "value": "x"}]}
                """
            let reply = try await server.issue(tenant.key, issuer: issuer, body: body)
            reply.assertProblem(400, "VALIDATION_ERROR")
            XCTAssertEqual(
                Set(reply.errorFields),
                ["buyer.id", "buyer.name", "items[1].quantity", "items[1].unitPrice", "items[1].discount", "additionalInfo[0].name"])

            // An entry or an object of the wrong JSON type is named once, not
            // again for each member the rules then find missing.
            let mistyped = """
                {"documentType": "01", "buyer": 5,
                 "items": [1, {"description": "ok", "quantity": "1", "unitPrice": "1.00", "taxes": [{"code": "2", "rateCode": "4"}]},
                           {"description": "x", "quantity": "1", "unitPrice": "1.00", "taxes": ["2"]}],
                 "additionalInfo": ["x"]}
                """
            let typed = try await server.issue(tenant.key, issuer: issuer, body: mistyped)
            typed.assertProblem(400, "VALIDATION_ERROR")
            XCTAssertEqual(Set(typed.errorFields), ["buyer", "items[0]", "items[2].taxes[0]", "additionalInfo[0]"], typed.text)
            XCTAssertEqual(typed.errorFields.count, 4, typed.text)
        }
    }

    /// A list past its limit is refused by its count alone, with no false
    /// errors for the entries past it; a payment's term is a JSON number.
    func testListsPastTheirLimitAndPaymentTerms() async throws {
        try await TestServer.run { server in
            let tenant = try await server.signUp()
            let issuer = try await server.createIssuer(tenant.key)
            let payments = Array(repeating: #"{"method": "01", "total": "0.01"}"#, count: 1001).joined(separator: ", ")
            let tooManyPayments = try await server.issue(
                tenant.key, issuer: issuer, body: Bodies.factura(extra: #""payments": [\#(payments)]"#))
            tooManyPayments.assertProblem(400, "VALIDATION_ERROR")
            XCTAssertEqual(tooManyPayments.errorFields, ["payments"], tooManyPayments.text)
            let info = Array(repeating: #"{"name": "n", "value": "v"}"#, count: 1001).joined(separator: ", ")
            let tooMuchInfo = try await server.issue(
                tenant.key, issuer: issuer, body: Bodies.factura(extra: #""additionalInfo": [\#(info)]"#))
            tooMuchInfo.assertProblem(400, "VALIDATION_ERROR")
            XCTAssertEqual(tooMuchInfo.errorFields, ["additionalInfo"], tooMuchInfo.text)
            for term in [#""30""#, #""3e1""#, "true", "30.5", "-1"] {
                let refused = try await server.issue(
                    tenant.key, issuer: issuer,
                    body: Bodies.factura(extra: #""payments": [{"method": "01", "total": "24.15", "term": \#(term), "termUnit": "dias"}]"#))
                refused.assertProblem(400, "VALIDATION_ERROR")
                XCTAssertEqual(refused.errorFields, ["payments[0].term"], "\(term): \(refused.text)")
            }
            let accepted = try await server.issue(
                tenant.key, issuer: issuer,
                body: Bodies.factura(extra: #""payments": [{"method": "01", "total": "24.15", "term": 30, "termUnit": "dias"}]"#))
            XCTAssertEqual(accepted.status, 201, accepted.text)
            XCTAssertEqual(try accepted.int("document", "sequential"), 1, "no refused request took a number")
        }
    }

    /// Marks a factura AUTHORIZED as SRI's answer would (sending comes later).
    static func authorize(_ documentID: Int64) throws {
        try TestDatabase.query(
            """
            UPDATE document_submissions SET status = 'AUTHORIZED', authorization_number = 'test', authorized_at = now(),
                   authorization_xml = '<autorizacion/>', next_attempt_at = NULL
             WHERE document_id = $1
            """, [documentID])
    }

    func testCreditNotesFollowTheirFactura() async throws {
        try await TestServer.run { server in
            let tenant = try await server.signUp()
            let issuer = try await server.createIssuer(tenant.key)
            let buyer = #"{"idType": "05", "id": "1712345678", "name": "José Núñez"}"#
            // A factura of 23.00 (20.00 + 15 %) to that buyer.
            let facturaBody = Bodies.factura(buyer: buyer, even: true)
            let factura = try await server.issue(tenant.key, issuer: issuer, body: facturaBody)
            XCTAssertEqual(try factura.string("document", "totals", "total"), "23.00", factura.text)
            let number = try factura.string("document", "number")
            let date = try factura.string("document", "issueDate")
            func note(_ price: String = "10.00", buyer: String = buyer, date: String = date) async throws -> Reply {
                try await server.issue(
                    tenant.key, issuer: issuer, body: Bodies.creditNote(number: number, facturaDate: date, buyer: buyer, unitPrice: price))
            }
            let early = try await note()
            early.assertProblem(409, "CONFLICT", reason: "MODIFIED_DOCUMENT_NOT_AUTHORIZED")
            XCTAssertTrue(try early.string("detail").contains("AUTHORIZED"))
            try Self.authorize(try factura.int("document", "id"))
            let otherBuyer = try await note(buyer: #"{"idType": "05", "id": "0912345678", "name": "Otra"}"#)
            otherBuyer.assertProblem(409, "CONFLICT", reason: "MODIFIED_DOCUMENT_MISMATCH")
            let otherDate = try await note(date: "2026-01-02")
            otherDate.assertProblem(409, "CONFLICT", reason: "MODIFIED_DOCUMENT_MISMATCH")
            XCTAssertFalse(try otherDate.string("detail").contains("buyer"), otherDate.text)
            // Both told in one answer.
            let both = try await note(buyer: #"{"idType": "05", "id": "0912345678", "name": "Otra"}"#, date: "2026-01-02")
            both.assertProblem(409, "CONFLICT", reason: "MODIFIED_DOCUMENT_MISMATCH")
            XCTAssertTrue(try both.string("detail").contains("not 2026-01-02"), both.text)
            XCTAssertTrue(try both.string("detail").contains("buyer"), both.text)
            let first = try await note()  // 11.50
            XCTAssertEqual(first.status, 201, first.text)
            XCTAssertEqual(try first.string("document", "modifiedDocument", "number"), number)
            let tooMuch = try await note("10.01")  // 11.51 + 11.50 > 23.00
            tooMuch.assertProblem(409, "CONFLICT", reason: "CREDIT_EXCEEDS_TOTAL")
            let rest = try await note()  // exactly the rest
            XCTAssertEqual(rest.status, 201, rest.text)
            let more = try await note("0.01")
            more.assertProblem(409, "CONFLICT", reason: "CREDIT_EXCEEDS_TOTAL")
            XCTAssertEqual(try first.int("document", "sequential"), 1)
            XCTAssertEqual(try rest.int("document", "sequential"), 2, "refused credit notes took no number")
            // A credit note SRI returned, or did not authorize, credits nothing: its amount is free again.
            var latest = rest
            for status in ["RETURNED", "NOT_AUTHORIZED"] {
                try TestDatabase.query(
                    "UPDATE document_submissions SET status = $2, next_attempt_at = NULL WHERE document_id = $1",
                    [try latest.int("document", "id"), status])
                latest = try await note()
                XCTAssertEqual(latest.status, 201, "the \(status) note's 11.50 is free again: \(latest.text)")
            }
            let full = try await note("0.01")
            full.assertProblem(409, "CONFLICT", reason: "CREDIT_EXCEEDS_TOTAL")
            XCTAssertTrue(full.text.contains("23.00 is already credited"), full.text)
            // A factura of another branch, unknown to Comprobify, is taken as given.
            let elsewhere = try await server.issue(tenant.key, issuer: issuer, body: Bodies.creditNote(number: "001-002-000009999"))
            XCTAssertEqual(elsewhere.status, 201, elsewhere.text)
            // One Comprobify numbered before comprobantes existed was never
            // AUTHORIZED (its number came from the counter, now past it).
            try TestDatabase.query(
                "UPDATE sequentials SET next_sequential = 99 WHERE issuer_id = $1 AND document_type = '01' AND environment = 'sandbox'",
                [issuer])
            try TestDatabase.query(
                """
                INSERT INTO documents (tenant_id, issuer_id, document_type, environment, sequential, number, access_key, issue_date, metadata)
                SELECT $1, $2, '01', 'sandbox', 98, '001-001-000000098', k || sri_check_digit(k), '2026-03-01', '{}'
                  FROM (SELECT '010320260117900123450011001001000000098123456781'::text AS k) x
                """, [tenant.id, issuer])
            let legacy = try await server.issue(
                tenant.key, issuer: issuer, body: Bodies.creditNote(number: "001-001-000000098", facturaDate: "2026-03-01"))
            legacy.assertProblem(409, "CONFLICT", reason: "MODIFIED_DOCUMENT_NOT_AUTHORIZED")
            XCTAssertTrue(try legacy.string("detail").contains("LEGACY"), legacy.text)
        }
    }

    /// A number Comprobify does not know is taken as given (SRI.md: a factura
    /// issued before Comprobify), on the issuer's own branch too, at or past
    /// its counter (SRI.md's own example, 001-001-000000123, on a new
    /// 001-001 issuer). Once the issuer issues that number, the notes taken as
    /// given for it with its date and buyer count against its total.
    func testAnUnknownNumberOfTheIssuersOwnBranchIsTakenAsGiven() async throws {
        try await TestServer.run { server in
            let tenant = try await server.activeTenant()
            let issuer = try await server.createIssuer(tenant.key)
            let buyer = #"{"idType": "05", "id": "1712345678", "name": "José Núñez"}"#
            let example = try await server.issue(
                tenant.key, issuer: issuer, body: Bodies.creditNote(number: "001-001-000000123", facturaDate: "2026-11-30"))
            XCTAssertEqual(example.status, 201, example.text)
            XCTAssertEqual(try example.string("document", "modifiedDocument", "number"), "001-001-000000123")
            let first = try await server.issue(tenant.key, issuer: issuer, body: Bodies.factura(buyer: buyer))
            let date = try first.string("document", "issueDate")
            XCTAssertEqual(try first.string("document", "number"), "001-001-000000001")
            // 001-001-000000002, not issued yet: taken as given.
            let early = try await server.issue(
                tenant.key, issuer: issuer, body: Bodies.creditNote(number: "001-001-000000002", facturaDate: date, buyer: buyer))
            XCTAssertEqual(early.status, 201, early.text)
            let credited = try ExactDecimal(parsing: try early.string("document", "totals", "total"))
            // The number once issued (and AUTHORIZED): the early note counts
            // against it, so a note for the rest of its total fits and one
            // cent more does not.
            let second = try await server.issue(tenant.key, issuer: issuer, body: Bodies.factura(buyer: buyer))
            XCTAssertEqual(try second.string("document", "number"), "001-001-000000002")
            try Self.authorize(try second.int("document", "id"))
            let total = try ExactDecimal(parsing: try second.string("document", "totals", "total"))
            XCTAssertGreaterThan(total, credited)
            // At 0 % (rateCode 0) a note's total is its unit price.
            let rest = total - credited
            let over = try await server.issue(
                tenant.key, issuer: issuer,
                body: Bodies.creditNote(
                    number: "001-001-000000002", facturaDate: date, buyer: buyer,
                    unitPrice: (rest + ExactDecimal(parsing: "0.01")).text(places: 2), rateCode: "0"))
            over.assertProblem(409, "CONFLICT", reason: "CREDIT_EXCEEDS_TOTAL")
            let fits = try await server.issue(
                tenant.key, issuer: issuer,
                body: Bodies.creditNote(
                    number: "001-001-000000002", facturaDate: date, buyer: buyer, unitPrice: rest.text(places: 2), rateCode: "0"))
            XCTAssertEqual(fits.status, 201, fits.text)
        }
    }

    /// A credit note an earlier release took as given for a number not issued
    /// yet (stored with no link to a factura) counts toward that factura once
    /// Comprobify issues it: together the notes cannot credit more than its
    /// total. The note is made here by issuing one against another branch and
    /// renaming its factura's number as the owner, the row rules' triggers off.
    func testANoteStoredUnlinkedByAnEarlierReleaseCountsOnceItsFacturaIsIssued() async throws {
        try await TestServer.run { server in
            let tenant = try await server.signUp()
            let issuer = try await server.createIssuer(tenant.key)
            let buyer = #"{"idType": "05", "id": "1712345678", "name": "José Núñez"}"#
            let date = try await server.issue(tenant.key, issuer: issuer, body: Bodies.factura()).string("document", "issueDate")
            let number = "001-001-000000002"
            let given = try await server.issue(
                tenant.key, issuer: issuer,
                body: Bodies.creditNote(number: "999-999-000000002", facturaDate: date, buyer: buyer, unitPrice: "10.00"))
            XCTAssertEqual(given.status, 201, given.text)
            let connection = try Connection(conninfo: TestDatabase.ownerURL)
            try connection.execute(
                script: """
                    SET session_replication_role = replica;
                    UPDATE documents SET modified_number = '\(number)' WHERE id = \(try given.int("document", "id"));
                    RESET session_replication_role
                    """)
            let facturaBody = Bodies.factura(buyer: buyer, even: true)
            let factura = try await server.issue(tenant.key, issuer: issuer, body: facturaBody)
            XCTAssertEqual(try factura.string("document", "number"), number)
            XCTAssertEqual(try factura.string("document", "totals", "total"), "23.00")
            try Self.authorize(try factura.int("document", "id"))
            func note(_ price: String) async throws -> Reply {
                try await server.issue(
                    tenant.key, issuer: issuer, body: Bodies.creditNote(number: number, facturaDate: date, buyer: buyer, unitPrice: price))
            }
            let over = try await note("10.01")  // 11.50 + 11.51 > 23.00
            over.assertProblem(409, "CONFLICT", reason: "CREDIT_EXCEEDS_TOTAL")
            XCTAssertTrue(over.text.contains("11.50 is already credited"), over.text)
            let rest = try await note("10.00")  // 11.50 + 11.50 = 23.00
            XCTAssertEqual(rest.status, 201, rest.text)
        }
    }

    /// A bad Idempotency-Key and a bad body are reported in one answer (SRI.md:
    /// all violations at once), and a bad key alone still names the header, as
    /// does a key sent twice.
    func testAnIdempotencyKeyViolationIsReportedWithTheBodysOwn() async throws {
        try await TestServer.run { server in
            let tenant = try await server.signUp()
            let issuer = try await server.createIssuer(tenant.key)
            let badKey: HTTPFields = [.idempotencyKey: String(repeating: "k", count: 256)]
            let both = try await server.issue(
                tenant.key, issuer: issuer, headers: badKey,
                body: Bodies.factura().replacingOccurrences(of: #""quantity": "2""#, with: #""quantity": "-2""#))
            both.assertProblem(400, "VALIDATION_ERROR")
            XCTAssertEqual(both.errorFields, ["Idempotency-Key", "items[0].quantity"], both.text)
            let twice = try await server.issue(
                tenant.key, issuer: issuer, headers: badKey,
                body: Bodies.factura().replacingOccurrences(of: #""quantity": "2""#, with: #""quantity": "2", "quantity": "3""#))
            XCTAssertEqual(twice.errorFields, ["Idempotency-Key", "items[0].quantity"], "a body that does not parse too")
            let keyOnly = try await server.issue(tenant.key, issuer: issuer, headers: badKey, body: Bodies.factura())
            keyOnly.assertProblem(400, "VALIDATION_ERROR")
            XCTAssertEqual(keyOnly.errorFields, ["Idempotency-Key"])
            // Sent twice, the key is no key: which one would a repeat be compared by?
            for second in ["order-1", "order-2"] {
                var keys = HTTPFields()
                keys.append(HTTPField(name: .idempotencyKey, value: "order-1"))
                keys.append(HTTPField(name: .idempotencyKey, value: second))
                let repeated = try await server.issue(tenant.key, issuer: issuer, headers: keys, body: Bodies.factura())
                repeated.assertProblem(400, "VALIDATION_ERROR")
                XCTAssertEqual(repeated.errorFields, ["Idempotency-Key"], repeated.text)
                XCTAssertTrue(repeated.text.contains("sent once"), repeated.text)
            }
            let ok = try await server.issue(tenant.key, issuer: issuer)
            XCTAssertEqual(try ok.int("document", "sequential"), 1, "the refused requests took no number")
        }
    }

    /// A member named twice is refused: which quantity the ERP meant is not
    /// ours to guess. Nothing is stored, no number taken.
    func testAMemberNamedTwiceIsA400AndTakesNoNumber() async throws {
        try await TestServer.run { server in
            let tenant = try await server.signUp()
            let issuer = try await server.createIssuer(tenant.key)
            let body = Bodies.factura().replacingOccurrences(of: #""quantity": "2""#, with: #""quantity": "2", "quantity": "2000""#)
            XCTAssertNotEqual(body, Bodies.factura())
            let reply = try await server.issue(tenant.key, issuer: issuer, body: body)
            reply.assertProblem(400, "VALIDATION_ERROR")
            XCTAssertEqual(reply.errorFields, ["items[0].quantity"], "the field, as API.md asks")
            XCTAssertTrue(try reply.string("detail").contains(#""quantity" appears twice"#), reply.text)
            let ok = try await server.issue(tenant.key, issuer: issuer)
            XCTAssertEqual(try ok.int("document", "sequential"), 1, "the refused request took no number")
        }
    }

    /// The credit note's buyer is the factura's byte for byte: SRI compares
    /// the two XMLs, where two spellings of one accented letter differ.
    func testACreditNoteBuyerSpelledOtherwiseIsAnotherBuyer() async throws {
        try await TestServer.run { server in
            let tenant = try await server.signUp()
            let issuer = try await server.createIssuer(tenant.key)
            let buyer = #"{"idType": "08", "id": "JOS\u00c91", "name": "José"}"#
            let factura = try await server.issue(
                tenant.key, issuer: issuer,
                body: Bodies.factura(buyer: buyer))
            XCTAssertEqual(factura.status, 201, factura.text)
            try Self.authorize(try factura.int("document", "id"))
            let (number, date) = (try factura.string("document", "number"), try factura.string("document", "issueDate"))
            // É as E and a combining acute accent: the same text to Swift's ==.
            let decomposed = #"{"idType": "08", "id": "JOSE\u03011", "name": "José"}"#
            let other = try await server.issue(
                tenant.key, issuer: issuer, body: Bodies.creditNote(number: number, facturaDate: date, buyer: decomposed, unitPrice: "1.00")
            )
            other.assertProblem(409, "CONFLICT", reason: "MODIFIED_DOCUMENT_MISMATCH")
            let same = try await server.issue(
                tenant.key, issuer: issuer, body: Bodies.creditNote(number: number, facturaDate: date, buyer: buyer, unitPrice: "1.00"))
            XCTAssertEqual(same.status, 201, same.text)
        }
    }

    func testConcurrentCreditNotesCannotOverdrawAFactura() async throws {
        try await TestServer.run(configure: { $0.poolSize = 8 }) { server in
            let tenant = try await server.signUp()
            let issuer = try await server.createIssuer(tenant.key)
            let factura = try await server.issue(tenant.key, issuer: issuer)  // 24.15
            try Self.authorize(try factura.int("document", "id"))
            let number = try factura.string("document", "number")
            let date = try factura.string("document", "issueDate")
            // Each note is 5.75 (5.00 + 15 %): four fit (23.00), the fifth would not.
            let replies = try await concurrently(12) { _ in
                try await server.issue(
                    tenant.key, issuer: issuer,
                    body: Bodies.creditNote(
                        number: number, facturaDate: date, buyer: #"{"idType": "07", "id": "9999999999999", "name": "CONSUMIDOR FINAL"}"#,
                        unitPrice: "5.00"))
            }
            let accepted = replies.filter { $0.status == 201 }
            XCTAssertEqual(accepted.count, 4, replies.map(\.text).joined(separator: "\n"))
            XCTAssertEqual(replies.filter { $0.status == 409 }.count, 8)
            XCTAssertEqual(try accepted.map { try $0.int("document", "sequential") }.sorted(), [1, 2, 3, 4], "gapless")
            let credited = try TestDatabase.scalar(
                "SELECT sum(total)::text FROM documents WHERE tenant_id = $1 AND document_type = '04'", [tenant.id], as: String.self)
            XCTAssertEqual(credited, "23.00")
        }
    }

    func testListFiltersByStatusAndLegacyDocumentsShowWhatTheyAre() async throws {
        try await TestServer.run { server in
            let tenant = try await server.signUp()
            let issuer = try await server.createIssuer(tenant.key)
            let signed = try await server.issue(tenant.key, issuer: issuer)
            let authorized = try await server.issue(tenant.key, issuer: issuer)
            try Self.authorize(try authorized.int("document", "id"))
            // A document numbered before comprobantes existed: no XML, no submission.
            try TestDatabase.query(
                """
                INSERT INTO documents (tenant_id, issuer_id, document_type, environment, sequential, number, access_key, issue_date, metadata)
                SELECT $1, $2, '04', 'sandbox', 99, '001-001-000000099', k || sri_check_digit(k), '2026-03-01', '{"old": true}'
                  FROM (SELECT '010320260417900123450011001001000000099123456781'::text AS k) x
                """, [tenant.id, issuer])
            func ids(_ query: String) async throws -> [Int64] {
                let reply = try await server.call(.get, "/v1/documents\(query)", key: tenant.key, issuer: issuer)
                XCTAssertEqual(reply.status, 200, reply.text)
                return try reply.array("documents").compactMap { $0["id"]?.intValue }
            }
            let signedID = try signed.int("document", "id")
            let authorizedID = try authorized.int("document", "id")
            let signedIDs = try await ids("?status=SIGNED")
            XCTAssertEqual(signedIDs, [signedID])
            let authorizedIDs = try await ids("?status=AUTHORIZED")
            XCTAssertEqual(authorizedIDs, [authorizedID])
            let legacy = try await ids("?status=LEGACY")
            XCTAssertEqual(legacy.count, 1)
            // Both filters at once, in each of the statement's forms.
            let legacyNotes = try await ids("?status=LEGACY&documentType=04")
            XCTAssertEqual(legacyNotes, legacy)
            let signedNotes = try await ids("?status=SIGNED&documentType=04")
            XCTAssertEqual(signedNotes, [])
            let signedFacturas = try await ids("?status=SIGNED&documentType=01")
            XCTAssertEqual(signedFacturas, [signedID])
            let notes = try await ids("?documentType=04")
            XCTAssertEqual(notes, legacy)
            let all = try await ids("")
            XCTAssertEqual(all.sorted(), (legacy + [signedID, authorizedID]).sorted())
            let bad = try await server.call(.get, "/v1/documents?status=DONE", key: tenant.key, issuer: issuer)
            bad.assertProblem(400, "VALIDATION_ERROR")
            XCTAssertEqual(bad.errorFields, ["status"])
            let legacyKey = try TestDatabase.scalar(
                "SELECT access_key FROM documents WHERE tenant_id = $1 AND sequential = 99", [tenant.id], as: String.self)
            let shown = try await server.call(.get, "/v1/documents/\(legacyKey)", key: tenant.key, issuer: issuer)
            XCTAssertEqual(try shown.string("document", "status"), "LEGACY")
            XCTAssertEqual(shown.value(["document", "metadata", "old"]), .bool(true))
            let noXML = try await server.call(.get, "/v1/documents/\(legacyKey)/xml", key: tenant.key, issuer: issuer)
            noXML.assertProblem(409, "CONFLICT", reason: "LEGACY_DOCUMENT")
            // Its authorization: 409 naming the status the document shows.
            let noAuthorization = try await server.call(.get, "/v1/documents/\(legacyKey)/authorization", key: tenant.key, issuer: issuer)
            noAuthorization.assertProblem(409, "CONFLICT", reason: "NOT_AUTHORIZED_YET")
            XCTAssertTrue(noAuthorization.text.contains("LEGACY"), noAuthorization.text)
        }
    }
}
