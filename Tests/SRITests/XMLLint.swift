import Foundation
import TestSupport
import XCTest

/// Debian's `xmllint` (libxml2-utils), run as a separate process: the judge
/// that shares no code with ours beyond libxml2 itself.
enum XMLLint {
    static let path = "/usr/bin/xmllint"

    struct Outcome {
        let status: Int32
        let output: String
    }

    static func run(_ arguments: [String], document: [UInt8]) throws -> Outcome {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("comprobante-\(UUID().uuidString).xml")
        try Data(document).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        let (status, output) = try runTool(path, arguments + [file.path])
        return Outcome(status: status, output: output)
    }

    /// `xmllint --noout --nonet --schema <xsd> <file>`.
    static func validate(_ document: [UInt8], schema: URL) throws -> Outcome {
        try run(["--noout", "--nonet", "--schema", schema.path], document: document)
    }

    /// The string value of an XPath expression, as xmllint reads the document.
    static func string(_ expression: String, in document: [UInt8]) throws -> String {
        let outcome = try run(["--nonet", "--xpath", "string(\(expression))"], document: document)
        XCTAssertEqual(outcome.status, 0, outcome.output)
        // xmllint ends what it prints with one newline of its own.
        return outcome.output.hasSuffix("\n") ? String(outcome.output.dropLast()) : outcome.output
    }
}
