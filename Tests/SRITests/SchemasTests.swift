import Foundation
import XCTest

@testable import SRI

final class SchemasTests: XCTestCase {
    func testTheOfficialSchemasShipWithTheLibrary() throws {
        for name in ["factura_V2.1.0.xsd", "nota_credito_V1.1.0.xsd", "xmldsig-core-schema.xsd"] {
            let data = try Data(contentsOf: Schemas.file(name))
            XCTAssertTrue(String(decoding: data, as: UTF8.self).contains("schema"), name)
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
        for validator in validators {
            XCTAssertEqual(validator.loadErrors, [], validator.file)
            XCTAssertFalse(validator.validate(Array("<factura id=\"comprobante\" version=\"2.1.0\"/>".utf8)).isEmpty, validator.file)
        }
    }
}
