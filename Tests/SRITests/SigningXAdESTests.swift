import Foundation
import TestSupport
import XCTest

@testable import SRI

final class SigningXAdESTests: XCTestCase {
    private static let setup = Result { () throws -> (TestPKI, String, SigningIdentity) in
        let pki = try TestPKI()
        let name = try pki.leaf("María Ñandú Firmante")
        let identity = try SigningIdentity(pkcs12: try pki.pkcs12(name), password: TestPKI.password, now: Date())
        return (pki, name, identity)
    }

    private static let ds = "http://www.w3.org/2000/09/xmldsig#"
    private static let etsi = "http://uri.etsi.org/01903/v1.3.2#"

    private func fixture() throws -> (pki: TestPKI, name: String, identity: SigningIdentity) {
        try Self.setup.get()
    }

    /// `xmlsec1 --verify`, with the test CA trusted and the id attributes named.
    private func xmlsecVerifies(_ document: [UInt8], _ pki: TestPKI) throws -> (Bool, String) {
        let file = pki.url("signed-\(UUID().uuidString).xml")
        try Data(document).write(to: file)
        let (status, output) = try runTool(
            "xmlsec1",
            [
                "--verify", "--trusted-pem", pki.path("ca.pem"), "--id-attr:id", "factura",
                "--id-attr:Id", "\(Self.etsi):SignedProperties", file.path,
            ])
        return (status == 0, output)
    }

    private func schemaValid(_ document: [UInt8], _ pki: TestPKI) throws -> (Bool, String) {
        let file = pki.url("document-\(UUID().uuidString).xml")
        try Data(document).write(to: file)
        let (status, output) = try runTool("xmllint", ["--noout", "--schema", Schemas.file("factura_V2.1.0.xsd").path, file.path])
        return (status == 0, output)
    }

    private func only(_ element: XMLTree.Element, _ name: String, _ namespace: String, line: UInt = #line) throws -> XMLTree.Element {
        let matches = element.children.filter { $0.localName == name && $0.namespaceURI == namespace }
        XCTAssertEqual(matches.count, 1, "\(name) under \(element.localName)", line: line)
        return try XCTUnwrap(matches.first, line: line)
    }

    func testTheSampleFacturaIsSchemaValidBeforeSigning() throws {
        let (valid, output) = try schemaValid(Fixtures.factura, try fixture().pki)
        XCTAssertTrue(valid, output)
    }

    func testRSASHA256SignatureIsAcceptedByXmlsecAndFollowsTheProfile() throws {
        try checkProfile(.rsaSHA256)
    }

    func testRSASHA1SignatureIsAcceptedByXmlsecAndFollowsTheProfile() throws {
        try checkProfile(.rsaSHA1)
    }

    private func checkProfile(_ algorithm: SignatureAlgorithm) throws {
        let (pki, name, identity) = try fixture()
        let signed = try XAdESSigner.sign(Fixtures.factura, identity: identity, algorithm: algorithm, signingTime: Fixtures.signingTime)

        let (verified, output) = try xmlsecVerifies(signed, pki)
        XCTAssertTrue(verified, output)
        let (valid, schemaOutput) = try schemaValid(signed, pki)
        XCTAssertTrue(valid, schemaOutput)
        let ours = try SignatureVerifier.verify(signed)
        XCTAssertEqual(ours.certificate, identity.certificate)
        XCTAssertEqual(ours.algorithm, algorithm)

        let sha256 = algorithm == .rsaSHA256
        let digestURI = sha256 ? "http://www.w3.org/2001/04/xmlenc#sha256" : "http://www.w3.org/2000/09/xmldsig#sha1"
        let text = String(decoding: signed, as: UTF8.self)
        XCTAssertTrue(text.hasPrefix(#"<?xml version="1.0" encoding="UTF-8"?>"#), text)
        XCTAssertTrue(text.contains(#"<factura id="comprobante" version="2.1.0">"#))
        XCTAssertTrue(text.contains(#"<ds:Signature xmlns:ds="\#(Self.ds)" xmlns:etsi="\#(Self.etsi)" Id="#))

        let tree = try XMLTree(parsing: signed)
        let root = tree.root
        let signature = try XCTUnwrap(root.children.last)
        XCTAssertEqual(signature.localName, "Signature")
        XCTAssertEqual(signature.namespaceURI, Self.ds)
        let signatureID = try XCTUnwrap(signature.attribute("Id"))
        XCTAssertEqual(signature.children.map(\.localName), ["SignedInfo", "SignatureValue", "KeyInfo", "Object"])

        let signedInfo = try only(signature, "SignedInfo", Self.ds)
        XCTAssertEqual(
            try only(signedInfo, "CanonicalizationMethod", Self.ds).attribute("Algorithm"),
            "http://www.w3.org/TR/2001/REC-xml-c14n-20010315")
        XCTAssertEqual(
            try only(signedInfo, "SignatureMethod", Self.ds).attribute("Algorithm"),
            sha256 ? "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256" : "http://www.w3.org/2000/09/xmldsig#rsa-sha1")
        let references = signedInfo.children.filter { $0.localName == "Reference" }
        XCTAssertEqual(references.count, 2)
        let content = references[0]
        let contentID = try XCTUnwrap(content.attribute("Id"))
        XCTAssertEqual(content.attribute("URI"), "#comprobante")
        XCTAssertEqual(
            try only(try only(content, "Transforms", Self.ds), "Transform", Self.ds).attribute("Algorithm"),
            "http://www.w3.org/2000/09/xmldsig#enveloped-signature")
        XCTAssertEqual(try only(content, "DigestMethod", Self.ds).attribute("Algorithm"), digestURI)
        let properties = references[1]
        XCTAssertEqual(properties.attribute("Type"), "http://uri.etsi.org/01903#SignedProperties")
        XCTAssertEqual(try only(properties, "DigestMethod", Self.ds).attribute("Algorithm"), digestURI)

        let der = try pki.der(name)
        let x509 = try only(try only(try only(signature, "KeyInfo", Self.ds), "X509Data", Self.ds), "X509Certificate", Self.ds)
        XCTAssertEqual(Data(base64Encoded: x509.text), Data(der))

        let qualifying = try only(try only(signature, "Object", Self.ds), "QualifyingProperties", Self.etsi)
        XCTAssertEqual(qualifying.attribute("Target"), "#" + signatureID)
        let signedProperties = try only(qualifying, "SignedProperties", Self.etsi)
        XCTAssertEqual(properties.attribute("URI"), "#" + (signedProperties.attribute("Id") ?? "?"))
        let signatureProperties = try only(signedProperties, "SignedSignatureProperties", Self.etsi)
        XCTAssertEqual(try only(signatureProperties, "SigningTime", Self.etsi).text, "2026-12-01T10:00:00-05:00")
        let cert = try only(try only(signatureProperties, "SigningCertificate", Self.etsi), "Cert", Self.etsi)
        let certDigest = try only(cert, "CertDigest", Self.etsi)
        XCTAssertEqual(try only(certDigest, "DigestMethod", Self.ds).attribute("Algorithm"), digestURI)
        // The certificate's digest as openssl computes it from the PEM file.
        let dgst = try pki.openssl([
            "dgst", sha256 ? "-sha256" : "-sha1", "-binary", "-out", pki.path("\(name).digest"), pki.path("\(name).der"),
        ])
        XCTAssertEqual(dgst, "")
        let expectedDigest = try Data(contentsOf: pki.url("\(name).digest"))
        XCTAssertEqual(Data(base64Encoded: try only(certDigest, "DigestValue", Self.ds).text), expectedDigest)
        let issuerSerial = try only(cert, "IssuerSerial", Self.etsi)
        let issuer = try pki.openssl(["x509", "-in", pki.path("\(name).pem"), "-noout", "-issuer", "-nameopt", "RFC2253,-esc_msb"])
        XCTAssertEqual("issuer=" + (try only(issuerSerial, "X509IssuerName", Self.ds).text), issuer.trimmingCharacters(in: .newlines))
        let serialHex = try pki.openssl(["x509", "-in", pki.path("\(name).pem"), "-noout", "-serial"])
        let serial = try XCTUnwrap(UInt64(serialHex.trimmingCharacters(in: .newlines).dropFirst("serial=".count), radix: 16))
        XCTAssertEqual(try only(issuerSerial, "X509SerialNumber", Self.ds).text, String(serial))

        let format = try only(try only(signedProperties, "SignedDataObjectProperties", Self.etsi), "DataObjectFormat", Self.etsi)
        XCTAssertEqual(format.attribute("ObjectReference"), "#" + contentID)
        XCTAssertEqual(try only(format, "Description", Self.etsi).text, "contenido comprobante")
        XCTAssertEqual(try only(format, "MimeType", Self.etsi).text, "text/xml")

        // The hostile text survives, escaped, and reads back as written.
        let original = try XMLTree(parsing: Fixtures.factura)
        for name in ["descripcion", "campoAdicional", "razonSocial", "nombreComercial"] {
            XCTAssertEqual(tree.firstElement(localName: name)?.text, original.firstElement(localName: name)?.text, name)
        }
        XCTAssertEqual(
            tree.firstElement(localName: "descripcion")?.text, #"Widget & <gadget> "quoted" 'single' ]]> 🚀 ñáéíóú"#)
        XCTAssertEqual(tree.firstElement(localName: "detAdicional")?.attribute("valor"), "Rojo 'vivo' ]]>")
    }

    func testEverySignatureHasItsOwnIds() throws {
        let identity = try fixture().identity
        let first = try XMLTree(parsing: try XAdESSigner.sign(Fixtures.factura, identity: identity, signingTime: Fixtures.signingTime))
        let second = try XMLTree(parsing: try XAdESSigner.sign(Fixtures.factura, identity: identity, signingTime: Fixtures.signingTime))
        let ids = { (tree: XMLTree) -> Set<String> in
            var ids = Set<String>()
            tree.root.forEachDescendantOrSelf { element in
                if let id = element.attribute("Id") { ids.insert(id) }
            }
            return ids
        }
        XCTAssertEqual(ids(first).count, 8)
        XCTAssertTrue(ids(first).isDisjoint(with: ids(second)))
    }

    func testAChangedByteOfTheContentFailsBothVerifiers() throws {
        let (pki, _, identity) = try fixture()
        for algorithm in SignatureAlgorithm.allCases {
            let signed = try XAdESSigner.sign(Fixtures.factura, identity: identity, algorithm: algorithm, signingTime: Fixtures.signingTime)
            let tampered = try replacing("<importeTotal>24.15<", with: "<importeTotal>24.16<", in: signed)
            let (verified, output) = try xmlsecVerifies(tampered, pki)
            XCTAssertFalse(verified, output)
            XCTAssertThrowsError(try SignatureVerifier.verify(tampered)) { error in
                XCTAssertEqual(error as? VerificationError, .digestMismatch(reference: "#comprobante"))
            }
            // And the untouched document verifies with both.
            XCTAssertTrue(try xmlsecVerifies(signed, pki).0)
            XCTAssertNoThrow(try SignatureVerifier.verify(signed))
        }
    }

    func testAChangedByteOfTheSignedPropertiesFailsBothVerifiers() throws {
        let (pki, _, identity) = try fixture()
        for algorithm in SignatureAlgorithm.allCases {
            let signed = try XAdESSigner.sign(Fixtures.factura, identity: identity, algorithm: algorithm, signingTime: Fixtures.signingTime)
            let tampered = try replacing("2026-12-01T10:00:00-05:00", with: "2026-12-01T11:00:00-05:00", in: signed)
            let (verified, output) = try xmlsecVerifies(tampered, pki)
            XCTAssertFalse(verified, output)
            XCTAssertThrowsError(try SignatureVerifier.verify(tampered)) { error in
                guard case .digestMismatch(let uri) = error as? VerificationError else { return XCTFail("\(error)") }
                XCTAssertTrue(uri.contains("SignedProperties"), uri)
            }
        }
    }

    func testOurVerifierRejectsOtherForgeries() throws {
        let identity = try fixture().identity
        let signed = try XAdESSigner.sign(Fixtures.factura, identity: identity, signingTime: Fixtures.signingTime)
        let text = String(decoding: signed, as: UTF8.self)

        // A changed SignatureValue.
        let value = try XCTUnwrap(text.range(of: "<ds:SignatureValue"))
        let start = try XCTUnwrap(text.range(of: ">", range: value.upperBound..<text.endIndex)).upperBound
        var forged = text
        let first = forged[start]
        forged.replaceSubrange(start...start, with: first == "A" ? "B" : "A")
        XCTAssertThrowsError(try SignatureVerifier.verify(Array(forged.utf8))) { error in
            XCTAssertEqual(error as? VerificationError, .signatureMismatch)
        }

        // A second element claiming the comprobante's id.
        let duplicated = text.replacingOccurrences(of: "<detalles>", with: #"<detalles id="comprobante">"#)
        XCTAssertThrowsError(try SignatureVerifier.verify(Array(duplicated.utf8))) { error in
            XCTAssertEqual(error as? VerificationError, .referenceNotFound("#comprobante"))
        }

        // The content's Reference repeated (each copy's digest holds, since the
        // enveloped transform leaves the Signature out): refused before any is
        // checked, so a signature cannot ask for thousands of digests.
        let referenceStart = try XCTUnwrap(text.range(of: "<ds:Reference "))
        let referenceEnd = try XCTUnwrap(text.range(of: "</ds:Reference>", range: referenceStart.upperBound..<text.endIndex))
        let reference = String(text[referenceStart.lowerBound..<referenceEnd.upperBound])
        var repeated = text
        repeated.insert(contentsOf: String(repeating: reference, count: 9), at: referenceStart.lowerBound)
        XCTAssertThrowsError(try SignatureVerifier.verify(Array(repeated.utf8))) { error in
            XCTAssertEqual(error as? VerificationError, .malformedSignature("more than 8 References"))
        }

        // No signature at all.
        XCTAssertThrowsError(try SignatureVerifier.verify(Fixtures.factura)) { error in
            XCTAssertEqual(error as? VerificationError, .noSignature)
        }

        // Signed twice is refused by the signer.
        XCTAssertThrowsError(try XAdESSigner.sign(signed, identity: identity, signingTime: Fixtures.signingTime)) { error in
            XCTAssertEqual(error as? SigningError, .alreadySigned)
        }
        XCTAssertThrowsError(
            try XAdESSigner.sign(Array(#"<factura version="2.1.0"/>"#.utf8), identity: identity, signingTime: Fixtures.signingTime)
        ) { error in
            XCTAssertEqual(error as? SigningError, .notAComprobante)
        }
    }

    func testSigningTimeCarriesTheUTCOffset() {
        XCTAssertEqual(XAdES.dateTime(Fixtures.signingTime, utcOffset: -5 * 3600), "2026-12-01T10:00:00-05:00")
        XCTAssertEqual(XAdES.dateTime(Fixtures.signingTime, utcOffset: 0), "2026-12-01T15:00:00+00:00")
        XCTAssertEqual(XAdES.dateTime(Date(timeIntervalSince1970: 951_782_400), utcOffset: -5 * 3600), "2000-02-28T19:00:00-05:00")
        XCTAssertEqual(XAdES.dateTime(Date(timeIntervalSince1970: 0), utcOffset: 5 * 3600 + 1800), "1970-01-01T05:30:00+05:30")
    }

    private func replacing(_ old: String, with new: String, in document: [UInt8]) throws -> [UInt8] {
        let text = String(decoding: document, as: UTF8.self)
        XCTAssertEqual(text.components(separatedBy: old).count, 2, "exactly one \(old)")
        XCTAssertEqual(old.utf8.count, new.utf8.count)
        return Array(text.replacingOccurrences(of: old, with: new).utf8)
    }
}
