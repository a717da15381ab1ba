import Foundation
import SRI

/// The body of POST /v1/documents (SRI.md, "Issuing"), read from JSON into the
/// SRI library's input and validated there. JSON types are checked here, where
/// the JSON is: amounts may be numbers or decimal strings and keep the exact
/// text the client wrote (never a Double); every other field must have its
/// JSON type. All violations, of types and of rules, are reported at once.
struct ComprobanteRequest: Sendable {
    let comprobante: Comprobante
    /// The client's `metadata` object as the exact JSON text it sent.
    let metadata: String

    static let maxMetadataKeys = 50
    static let maxMetadataBytes = 16 * 1024

    init(_ input: Input, today: CalendarDate) throws {
        var reader = FieldReader(input.value)
        let comprobanteInput = ComprobanteInput(
            documentType: reader.documentType(),
            issueDate: reader.issueDate(),
            buyer: reader.object("buyer") { reader, path in
                BuyerInput(
                    idType: reader.string(path + ".idType"), id: reader.string(path + ".id"), name: reader.string(path + ".name"),
                    address: reader.string(path + ".address"), email: reader.string(path + ".email"))
            },
            items: reader.array("items") { reader, path in
                ItemInput(
                    code: reader.string(path + ".code"), auxCode: reader.string(path + ".auxCode"),
                    description: reader.string(path + ".description"), quantity: reader.amount(path + ".quantity"),
                    unitPrice: reader.amount(path + ".unitPrice"), discount: reader.amount(path + ".discount"),
                    taxes: reader.array(path + ".taxes") { reader, path in
                        TaxInput(code: reader.string(path + ".code"), rateCode: reader.string(path + ".rateCode"))
                    },
                    details: reader.array(path + ".details") { reader, path in reader.nameValue(path) })
            },
            payments: reader.array("payments") { reader, path in
                PaymentInput(
                    method: reader.string(path + ".method"), total: reader.amount(path + ".total"), term: reader.amount(path + ".term"),
                    termUnit: reader.string(path + ".termUnit"))
            },
            additionalInfo: reader.array("additionalInfo") { reader, path in reader.nameValue(path) },
            modifiedDocument: reader.object("modifiedDocument") { reader, path in
                ModifiedDocumentInput(
                    documentType: reader.string(path + ".documentType"), number: reader.string(path + ".number"),
                    issueDate: reader.string(path + ".issueDate"))
            },
            reason: reader.string("reason")
        )
        metadata = reader.metadata()
        if input.value["content"] != nil {
            reader.fail("content", "content is now called metadata (SRI.md): send your own object as metadata.")
        }

        var violations = reader.errors
        do {
            comprobante = try comprobanteInput.validated(today: today)
        } catch {
            // A field whose JSON type was wrong reaches the rules as absent; its
            // type error already names it.
            let typed = Set(reader.errors.map(\.field))
            violations += error.violations.filter { !typed.contains($0.field) }.map {
                APIError.FieldError(field: $0.field, message: "\($0.field): \($0.message).")
            }
            throw APIError.validation(violations)
        }
        if !violations.isEmpty { throw APIError.validation(violations) }
    }
}

/// Reads members of the body by path, recording a field error for each wrong
/// JSON type; absent and null both read as nil (the rules decide what is required).
private struct FieldReader {
    let root: JSONValue
    var errors: [APIError.FieldError] = []

    init(_ root: JSONValue) {
        self.root = root
    }

    mutating func fail(_ field: String, _ message: String) {
        errors.append(.init(field: field, message: message))
    }

    /// The value at a dotted path with indexes (`items[2].unitPrice`).
    func value(_ path: String) -> JSONValue? {
        var current: JSONValue? = root
        for part in path.split(separator: ".") {
            var name = Substring(part)
            var indexes: [Int] = []
            while name.hasSuffix("]"), let open = name.lastIndex(of: "[") {
                guard let index = Int(name[name.index(after: open)..<name.index(before: name.endIndex)]) else { return nil }
                indexes.insert(index, at: 0)
                name = name[..<open]
            }
            current = current?[String(name)]
            for index in indexes {
                guard case .array(let elements)? = current, elements.indices.contains(index) else { return nil }
                current = elements[index]
            }
        }
        return current
    }

    mutating func string(_ path: String) -> String? {
        switch value(path) {
        case nil, .null?: return nil
        case .string(let text)?: return text
        case let other?:
            fail(path, "\(path) must be a string, not \(other.typeName).")
            return nil
        }
    }

    /// An amount: a JSON number or a decimal string, as the exact text written.
    mutating func amount(_ path: String) -> String? {
        switch value(path) {
        case nil, .null?: return nil
        case .number(let text)?, .string(let text)?: return text
        case let other?:
            fail(path, "\(path) must be a number or a decimal string, not \(other.typeName).")
            return nil
        }
    }

    mutating func object<T>(_ path: String, _ read: (inout FieldReader, String) -> T) -> T? {
        switch value(path) {
        case nil, .null?: return nil
        case .object?: return read(&self, path)
        case let other?:
            fail(path, "\(path) must be an object, not \(other.typeName).")
            return nil
        }
    }

    mutating func array<T>(_ path: String, _ read: (inout FieldReader, String) -> T) -> [T]? {
        switch value(path) {
        case nil, .null?: return nil
        case .array(let elements)?:
            // Past every list's limit (items: 1000) the count alone is refused
            // by the rules: placeholders stand in, nothing of them is read.
            guard elements.count <= 1000 else { return (0...1000).map { _ in read(&self, FieldReader.nowhere) } }
            var values: [T] = []
            values.reserveCapacity(elements.count)
            for (index, element) in elements.enumerated() {
                let elementPath = "\(path)[\(index)]"
                if case .object = element {
                    values.append(read(&self, elementPath))
                } else {
                    fail(elementPath, "\(elementPath) must be an object, not \(element.typeName).")
                    values.append(read(&self, FieldReader.nowhere))
                }
            }
            return values
        case let other?:
            fail(path, "\(path) must be an array, not \(other.typeName).")
            return nil
        }
    }

    /// A path that names nothing: every read under it is nil, with no error.
    static let nowhere = "\u{0}"

    mutating func nameValue(_ path: String) -> NameValueInput {
        NameValueInput(name: string(path + ".name"), value: string(path + ".value"))
    }

    /// documentType must be a string; which codes can be issued is the rules' business.
    mutating func documentType() -> String? {
        string("documentType")
    }

    /// issueDate: absent means today; present, it must be a date (null is not).
    mutating func issueDate() -> String? {
        if case .null? = value("issueDate") {
            fail("issueDate", "issueDate must be a date as YYYY-MM-DD, not null.")
            return nil
        }
        return string("issueDate")
    }

    /// The client's object, serialized as it came (numbers keep their text).
    mutating func metadata() -> String {
        switch value("metadata") {
        case nil, .null?:
            return "{}"
        case .object(let members)?:
            let text = JSONValue.object(members).serialized
            if members.count > ComprobanteRequest.maxMetadataKeys {
                fail("metadata", "metadata may have at most \(ComprobanteRequest.maxMetadataKeys) keys (it has \(members.count)).")
            } else if text.utf8.count > ComprobanteRequest.maxMetadataBytes {
                fail("metadata", "metadata may be at most 16 KiB as JSON (it is \(text.utf8.count) bytes).")
            }
            return text
        case let other?:
            fail("metadata", "metadata must be a JSON object, not \(other.typeName).")
            return "{}"
        }
    }
}
