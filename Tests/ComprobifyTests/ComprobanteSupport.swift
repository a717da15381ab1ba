import Comprobify
import Foundation
import TestSupport
import XCTest

/// The master key of the test servers: scripts/test's key for its run
/// (COMPROBIFY_TEST_SECRET_KEY), which its live server uses too, so every
/// process that shares the database can open what the others sealed (the
/// webhook workers of any of them may take any tenant's deliveries);
/// otherwise random per test process. Nothing sealed in one run opens in another.
enum TestSecrets {
    static let keyText =
        ProcessInfo.processInfo.environment["COMPROBIFY_TEST_SECRET_KEY"].flatMap { $0.isEmpty ? nil : $0 }
        ?? Data((0..<32).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
    static let box = try! SecretBox(currentKey: keyText)
}

/// One test CA and one signing certificate (digitalSignature, nonRepudiation)
/// for every issuer the tests create, made once per process with the openssl CLI.
enum TestSigning {
    static let pki = try! TestPKI()
    static let leafName = try! pki.leaf("Empresa de Pruebas S.A.")
    static let p12 = try! pki.pkcs12(leafName)
    static var p12Base64: String { Data(p12).base64EncodedString() }
    static let password = TestPKI.password
    static var caPath: String { pki.path("ca.pem") }

    static var uploadBody: String {
        #"{"p12": "\#(p12Base64)", "password": "\#(password)"}"#
    }
}

/// Request bodies of real comprobantes (SRI.md, "Issuing").
enum Bodies {
    /// A factura for a final consumer: one line of 2 × 10.75 with 0.50 off at
    /// 15 % IVA: subtotal 21.00, IVA 3.15, total 24.15. With `buyer`, to that
    /// buyer; with `even`, the line 2 × 10.00 with nothing off: total 23.00.
    static func factura(
        metadata: String? = nil, issueDate: String? = nil, extra: String = "",
        buyer: String = #"{"idType": "07", "id": "9999999999999", "name": "CONSUMIDOR FINAL"}"#, even: Bool = false
    ) -> String {
        let price = even ? #""unitPrice": "10.00""# : #""unitPrice": "10.75", "discount": "0.50""#
        var members = [
            #""documentType": "01""#,
            #""buyer": \#(buyer)"#,
            #""items": [{"code": "A-1", "description": "Widget", "quantity": "2", \#(price), "taxes": [{"code": "2", "rateCode": "4"}]}]"#,
        ]
        if let issueDate { members.append(#""issueDate": "\#(issueDate)""#) }
        if let metadata { members.append(#""metadata": \#(metadata)"#) }
        if !extra.isEmpty { members.append(extra) }
        return "{" + members.joined(separator: ", ") + "}"
    }

    /// A credit note of 11.50 (10.00 + 15 %; `unitPrice` at rateCode 0)
    /// against `number`, a factura issued elsewhere unless the test issued it
    /// here. The default number is of a branch (999-999) the tests never
    /// create, so no factura they issue ever takes it.
    static func creditNote(
        number: String = "999-999-000000123", facturaDate: String = "2026-11-30",
        buyer: String = #"{"idType": "05", "id": "1712345678", "name": "José Núñez"}"#,
        unitPrice: String = "10.00", rateCode: String = "4", metadata: String? = nil
    ) -> String {
        var members = [
            #""documentType": "04""#,
            #""buyer": \#(buyer)"#,
            #""items": [{"description": "Devolución", "quantity": "1", "unitPrice": "\#(unitPrice)", "taxes": [{"code": "2", "rateCode": "\#(rateCode)"}]}]"#,
            #""modifiedDocument": {"documentType": "01", "number": "\#(number)", "issueDate": "\#(facturaDate)"}"#,
            #""reason": "Devolución""#,
        ]
        if let metadata { members.append(#""metadata": \#(metadata)"#) }
        return "{" + members.joined(separator: ", ") + "}"
    }

    static func body(for type: String) -> String {
        switch type {
        case "04": return creditNote()
        case "01": return factura()
        default: return #"{"documentType": "\#(type)"}"#
        }
    }
}

/// Checks made by independent tools, not by our own code.
enum IndependentCheck {
    /// `xmllint --schema` with the vendored official XSD.
    static func schemaErrors(_ xml: [UInt8], documentType: String) throws -> String? {
        let schema = documentType == "04" ? "nota_credito_V1.1.0.xsd" : "factura_V2.1.0.xsd"
        let file = try temporaryFile(xml)
        defer { try? FileManager.default.removeItem(at: file) }
        let (status, output) = try runTool("xmllint", ["--noout", "--nonet", "--schema", schemaPath(schema), file.path])
        return status == 0 ? nil : output
    }

    /// `xmlsec1 --verify` with the test CA trusted.
    static func signatureErrors(_ xml: [UInt8], root: String) throws -> String? {
        let file = try temporaryFile(xml)
        defer { try? FileManager.default.removeItem(at: file) }
        let (status, output) = try runTool(
            "xmlsec1",
            [
                "--verify", "--trusted-pem", TestSigning.caPath, "--id-attr:id", root,
                "--id-attr:Id", "http://uri.etsi.org/01903/v1.3.2#:SignedProperties", file.path,
            ])
        return status == 0 ? nil : output
    }

    static func schemaPath(_ name: String) -> String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Sources/SRI/Schemas/\(name)").path
    }

    static func temporaryFile(_ bytes: [UInt8]) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("comprobante-\(UUID().uuidString).xml")
        try Data(bytes).write(to: url)
        return url
    }
}
