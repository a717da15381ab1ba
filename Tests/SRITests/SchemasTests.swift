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
