import Foundation
import XCTest

@testable import SRI

final class SchemasTests: XCTestCase {
    /// The files the library ships are SRI's official schemas byte for byte
    /// (their SHA-256, taken from the copies SRI publishes).
    func testTheOfficialSchemasShipWithTheLibrary() throws {
        let official = [
            "factura_V2.1.0.xsd": "81940fc9dc7030ce446d603eddb5ea43bef5fddebf11753a0219b26758b2639a",
            "nota_credito_V1.1.0.xsd": "00b6b1664adcd876a31996df6cfb8d4709613723e9895a1d7f97d1a06aba0cbc",
            "xmldsig-core-schema.xsd": "35cf8197da812c85e40d57891b35c94187569ed474a2dac813ce5090dafcd35c",
        ]
        for (name, digest) in official {
            let data = try Data(contentsOf: Schemas.file(name))
            XCTAssertEqual(Hex.encode(OpenSSL.digest(Array(data), .sha256)), digest, name)
        }
    }
}

final class SchemaLoadingTests: XCTestCase {
    /// Compiling the schemas writes nothing to standard error (libxml2, left
    /// to read the credit note's schema itself, warned there about its XML
    /// 1.1 declaration: three lines that are not the process's JSON logs),
    /// and each still tells a valid document from an invalid one.
    func testCompilingTheSchemasWritesNothingToStandardError() throws {
        let captured = FileManager.default.temporaryDirectory.appendingPathComponent("stderr-\(UUID().uuidString)")
        XCTAssertTrue(FileManager.default.createFile(atPath: captured.path, contents: nil))
        defer { try? FileManager.default.removeItem(at: captured) }
        let file = open(captured.path, O_WRONLY)
        let saved = dup(STDERR_FILENO)
        XCTAssertGreaterThanOrEqual(file, 0)
        dup2(file, STDERR_FILENO)
        let validators = ["factura_V2.1.0.xsd", "nota_credito_V1.1.0.xsd"].map { SchemaValidator(file: $0) }
        dup2(saved, STDERR_FILENO)
        close(saved)
        close(file)
        let written = try String(contentsOf: captured, encoding: .utf8)
        XCTAssertEqual(written, "", "libxml2 wrote to standard error")
        let creditNote = try ComprobanteXML.build(
            try ComprobanteValidatorTests.creditNote().validated(today: ComprobanteMatrixTests.today),
            issuer: ComprobanteMatrixTests.minimalIssuer,
            numbering: ComprobanteNumbering(accessKey: ComprobanteMatrixTests.accessKey, sequential: 7))
        for (validator, valid) in zip(validators, [Fixtures.factura, creditNote]) {
            XCTAssertEqual(validator.loadErrors, [], validator.file)
            XCTAssertEqual(validator.validate(valid), [], "\(validator.file) takes a valid document")
            XCTAssertFalse(validator.validate(Array("<factura id=\"comprobante\" version=\"2.1.0\"/>".utf8)).isEmpty, validator.file)
        }
    }
}
