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
            buyer: reader.object(reader.top("buyer")) { reader, field in
                BuyerInput(
                    idType: reader.string(field["idType"]), id: reader.string(field["id"]), name: reader.string(field["name"]),
                    address: reader.string(field["address"]), email: reader.string(field["email"]))
            },
            items: reader.array(reader.top("items"), limit: ComprobanteInput.maximumItems) { reader, field in
                ItemInput(
                    code: reader.string(field["code"]), auxCode: reader.string(field["auxCode"]),
                    description: reader.string(field["description"]), quantity: reader.amount(field["quantity"]),
                    unitPrice: reader.amount(field["unitPrice"]), discount: reader.amount(field["discount"]),
                    taxes: reader.array(field["taxes"], limit: 1) { reader, field in
                        TaxInput(code: reader.string(field["code"]), rateCode: reader.string(field["rateCode"]))
                    },
                    details: reader.array(field["details"], limit: ComprobanteInput.maximumDetails) { reader, field in
                        reader.nameValue(field)
                    })
            },
            payments: reader.array(reader.top("payments"), limit: ComprobanteInput.maximumPayments) { reader, field in
                PaymentInput(
                    method: reader.string(field["method"]), total: reader.amount(field["total"]), term: reader.wholeNumber(field["term"]),
                    termUnit: reader.string(field["termUnit"]))
            },
            additionalInfo: reader.array(reader.top("additionalInfo"), limit: ComprobanteInput.maximumAdditionalInfo) { reader, field in
                reader.nameValue(field)
            },
            modifiedDocument: reader.object(reader.top("modifiedDocument")) { reader, field in
                ModifiedDocumentInput(
                    documentType: reader.string(field["documentType"]), number: reader.string(field["number"]),
                    issueDate: reader.string(field["issueDate"]))
            },
            reason: reader.string(reader.top("reason"))
        )
        metadata = reader.metadata()
        if input.value["content"] != nil {
            reader.fail("content", "content is now called metadata: send your own object as metadata.")
        }

        var violations = reader.errors
        do {
            comprobante = try comprobanteInput.validated(today: today)
        } catch {
            // A field whose JSON type was wrong reaches the rules as absent (an
            // element of a list as an entry with nothing in it); its type error
            // already names it, and what the rules say of it or of its members
            // would only repeat that. Each violation looks up its own path and
            // the paths it lies under (`items[2].taxes[0].code` under
            // `items[2].taxes[0]`, `items[2].taxes`, `items[2]`, `items`): a
            // few lookups each, however many type errors there are.
            let typed = Set(reader.errors.map(\.field))
            func named(_ field: String) -> Bool {
                if typed.contains(field) { return true }
                var index = field.endIndex
                while let boundary = field[..<index].lastIndex(where: { $0 == "." || $0 == "[" }) {
                    if typed.contains(String(field[..<boundary])) { return true }
                    index = boundary
                }
                return false
            }
            violations += error.violations.filter { !named($0.field) }.map {
                APIError.FieldError(field: $0.field, message: "\($0.field): \($0.message).")
            }
            throw APIError.validation(violations)
        }
        if !violations.isEmpty { throw APIError.validation(violations) }
    }
}

/// A member of the body: its path (`items[2].unitPrice`), for error
/// messages, and its value; nil when it is absent.
private struct Field {
    let path: String
    let value: JSONValue?

    /// The member `name` of this field's object (nil unless this is an object that has it).
    subscript(name: String) -> Field {
        Field(path: path + "." + name, value: value?[name])
    }
}

/// Reads members of the body, recording a field error for each wrong JSON
/// type; absent and null both read as nil (the rules decide what is required).
private struct FieldReader {
    let root: JSONValue
    var errors: [APIError.FieldError] = []

    init(_ root: JSONValue) {
        self.root = root
    }

    mutating func fail(_ field: String, _ message: String) {
        errors.append(.init(field: field, message: message))
    }

    /// A member of the body's top-level object.
    func top(_ name: String) -> Field {
        Field(path: name, value: root[name])
    }

    mutating func string(_ field: Field) -> String? {
        switch field.value {
        case nil, .null?: return nil
        case .string(let text)?: return text
        case let other?:
            fail(field.path, "\(field.path) must be a string, not \(other.typeName).")
            return nil
        }
    }

    /// An amount: a JSON number or a decimal string, as the exact text written.
    mutating func amount(_ field: Field) -> String? {
        switch field.value {
        case nil, .null?: return nil
        case .number(let text)?, .string(let text)?: return text
        case let other?:
            fail(field.path, "\(field.path) must be a number or a decimal string, not \(other.typeName).")
            return nil
        }
    }

    /// A JSON number (SRI.md's integers: a decimal string is not one); the
    /// rules check that it is whole.
    mutating func wholeNumber(_ field: Field) -> String? {
        switch field.value {
        case nil, .null?: return nil
        case .number(let text)?: return text
        case let other?:
            fail(field.path, "\(field.path) must be a whole number, not \(other.typeName).")
            return nil
        }
    }

    mutating func object<T>(_ field: Field, _ read: (inout FieldReader, Field) -> T) -> T? {
        switch field.value {
        case nil, .null?: return nil
        case .object?: return read(&self, field)
        case let other?:
            fail(field.path, "\(field.path) must be an object, not \(other.typeName).")
            return nil
        }
    }

    /// A list of objects. Past the list's `limit` (SRI.md: items 1000, a
    /// line's taxes exactly 1, details 3, ...) the count is refused by the
    /// rules: the first `limit` entries are read (their own faults are real),
    /// one placeholder stands for all the rest, which are not read. So a body
    /// of 1 MiB yields at most a few errors per entry the rules can take, not
    /// one per element of every nested list.
    mutating func array<T>(_ field: Field, limit: Int, _ read: (inout FieldReader, Field) -> T) -> [T]? {
        switch field.value {
        case nil, .null?: return nil
        case .array(let elements)?:
            var values: [T] = []
            values.reserveCapacity(min(elements.count, limit + 1))
            for (index, element) in elements.prefix(limit).enumerated() {
                let elementPath = "\(field.path)[\(index)]"
                if case .object = element {
                    values.append(read(&self, Field(path: elementPath, value: element)))
                } else {
                    fail(elementPath, "\(elementPath) must be an object, not \(element.typeName).")
                    values.append(read(&self, FieldReader.nowhere))
                }
            }
            if elements.count > limit { values.append(read(&self, FieldReader.nowhere)) }
            return values
        case let other?:
            fail(field.path, "\(field.path) must be an array, not \(other.typeName).")
            return nil
        }
    }

    /// A field that names nothing: every read under it is nil, with no error.
    static let nowhere = Field(path: "\u{0}", value: nil)

    mutating func nameValue(_ field: Field) -> NameValueInput {
        NameValueInput(name: string(field["name"]), value: string(field["value"]))
    }

    /// documentType must be a string; which codes can be issued is the rules' business.
    mutating func documentType() -> String? {
        string(top("documentType"))
    }

    /// issueDate: absent or null means today; otherwise it must be a date.
    mutating func issueDate() -> String? {
        string(top("issueDate"))
    }

    /// The client's object, serialized as it came (numbers keep their text).
    mutating func metadata() -> String {
        switch root["metadata"] {
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
