import Postgres

/// JSON written straight from a row's columns into bytes, for the answers
/// read on every request (`GET /v1/keys`): no `JSONValue` tree and no Swift
/// string per value between PostgreSQL's text and the answer. The caller
/// writes punctuation and member names as literals; values are escaped here.
/// The result goes into an answer as `JSONValue.rawUTF8(writer.bytes)`.
struct JSONWriter {
    private(set) var bytes: [UInt8] = []

    init(capacity: Int) {
        bytes.reserveCapacity(capacity)
    }

    /// Punctuation and member names, exactly as given: `{"id":`.
    mutating func literal(_ text: StaticString) {
        text.withUTF8Buffer { bytes.append(contentsOf: $0) }
    }

    mutating func bool(_ value: Bool) {
        literal(value ? "true" : "false")
    }

    /// An int2, int4 or int8 column: PostgreSQL's text of an integer is
    /// already a JSON number.
    mutating func integer(_ row: Row, at column: Int) throws {
        try row.withBytes(at: column, ofType: PostgresType.int8) { text in
            guard let text else { return literal("null") }
            bytes.append(contentsOf: text)
        }
    }

    /// A text column, as a JSON string (null for NULL).
    mutating func string(_ row: Row, at column: Int) throws {
        try row.withBytes(at: column, ofType: PostgresType.text) { text in
            guard let text else { return literal("null") }
            if JSONWriter.isASCII(text) {
                JSONValue.writeString(text, to: &bytes)
            } else {
                // Checked as `String.decodePostgres` does: bytes that are not
                // UTF-8 (a database whose encoding does not check them) are
                // replaced, never passed on.
                JSONValue.writeString(String(decoding: text, as: UTF8.self), to: &bytes)
            }
        }
    }

    /// A timestamptz column as RFC 3339 UTC with milliseconds (null for NULL),
    /// as `Row.rfc3339Milliseconds` writes it.
    mutating func timestamp(_ row: Row, at column: Int) throws {
        let written = try row.withBytes(at: column, ofType: PostgresType.timestamptz) { text -> Bool in
            guard let text else {
                literal("null")
                return true
            }
            let start = bytes.count
            let length = Timestamp.rfc3339MillisecondsLength
            bytes.append(contentsOf: repeatElement(UInt8(ascii: "\""), count: length + 2))
            let rewritten = bytes.withUnsafeMutableBufferPointer { out in
                Timestamp.rfc3339Milliseconds(text, into: UnsafeMutableBufferPointer(rebasing: out[(start + 1)...]))
            }
            if !rewritten { bytes.removeLast(length + 2) }
            return rewritten
        }
        if !written {
            // Text of another shape: `Row.rfc3339Milliseconds` reads it, or refuses it.
            JSONValue.writeString(try row.rfc3339Milliseconds(at: column) ?? "", to: &bytes)
        }
    }

    /// No byte with the high bit set, eight at a time.
    static func isASCII(_ text: UnsafeBufferPointer<UInt8>) -> Bool {
        let raw = UnsafeRawBufferPointer(text)
        var index = 0
        var high: UInt64 = 0
        while index + 8 <= raw.count {
            high |= raw.loadUnaligned(fromByteOffset: index, as: UInt64.self)
            index += 8
        }
        while index < raw.count {
            high |= UInt64(raw[index])
            index += 1
        }
        return high & 0x8080_8080_8080_8080 == 0
    }
}
