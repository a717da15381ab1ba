/// A JSON value, parsed strictly and without loss: numbers keep their exact
/// text, so `content` is stored as the client wrote it.
///
/// The parser refuses what PostgreSQL cannot store or what would make work
/// unbounded: NUL characters (`\u0000`), lone UTF-16 surrogates in escapes,
/// nesting deeper than `JSONParser.maxDepth`, and invalid UTF-8.
public enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    case number(String)
    case string(String)
    case array([JSONValue])
    case object([(String, JSONValue)])
    /// Already serialized JSON (a jsonb column read back), written out as is.
    case raw(String)
    /// Already serialized JSON as UTF-8 (rows written by `JSONWriter`), written out as is.
    case rawUTF8([UInt8])

    public static func == (lhs: JSONValue, rhs: JSONValue) -> Bool {
        switch (lhs, rhs) {
        case (.null, .null): return true
        case (.bool(let a), .bool(let b)): return a == b
        case (.number(let a), .number(let b)): return a == b
        case (.string(let a), .string(let b)): return a == b
        case (.array(let a), .array(let b)): return a == b
        case (.object(let a), .object(let b)):
            return a.count == b.count && zip(a, b).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        case (.raw(let a), .raw(let b)): return a == b
        case (.rawUTF8(let a), .rawUTF8(let b)): return a == b
        default: return false
        }
    }

    /// The member named `key` of an object.
    public subscript(key: String) -> JSONValue? {
        guard case .object(let members) = self else { return nil }
        return members.first(where: { $0.0 == key })?.1
    }

    /// The JSON type name used in validation messages.
    var typeName: String {
        switch self {
        case .null: return "null"
        case .bool: return "boolean"
        case .number: return "number"
        case .string: return "string"
        case .array: return "array"
        case .object, .raw: return "object"
        case .rawUTF8(let bytes): return bytes.first == UInt8(ascii: "[") ? "array" : "object"
        }
    }

    public var serialized: String {
        String(decoding: utf8, as: UTF8.self)
    }

    /// The serialized value as UTF-8 bytes, written into one growing buffer.
    public var utf8: [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(256)
        write(to: &out)
        return out
    }

    func write(to out: inout [UInt8]) {
        switch self {
        case .null: out.append(contentsOf: "null".utf8)
        case .bool(let value): out.append(contentsOf: value ? "true".utf8 : "false".utf8)
        case .number(let text): out.append(contentsOf: text.utf8)
        case .string(let text): JSONValue.writeString(text, to: &out)
        case .raw(let text): out.append(contentsOf: text.utf8)
        case .rawUTF8(let bytes): out.append(contentsOf: bytes)
        case .array(let items):
            out.append(UInt8(ascii: "["))
            for (index, item) in items.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                item.write(to: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let members):
            out.append(UInt8(ascii: "{"))
            for (index, (key, value)) in members.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                JSONValue.writeString(key, to: &out)
                out.append(UInt8(ascii: ":"))
                value.write(to: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    private static let hexDigits = Array("0123456789abcdef".utf8)

    /// True when no byte is a control character, `"` or `\\`. Eight bytes
    /// at a time: a word has a byte below 0x20 when `(w - 0x20…) & ~w & 0x80…`
    /// is not zero, and a byte equal to `c` when `w ^ c…` has a zero byte (the
    /// same test with 0x01…); both are exact for "some byte", so a word that
    /// passes has none. The tail is checked byte by byte.
    static func needsNoEscaping(_ bytes: UnsafeRawBufferPointer) -> Bool {
        let ones: UInt64 = 0x0101_0101_0101_0101
        let highs: UInt64 = 0x8080_8080_8080_8080
        var index = 0
        while index + 8 <= bytes.count {
            let word = bytes.loadUnaligned(fromByteOffset: index, as: UInt64.self)
            let quote = word ^ (ones &* 0x22)
            let backslash = word ^ (ones &* 0x5C)
            let found =
                ((word &- ones &* 0x20) & ~word) | ((quote &- ones) & ~quote) | ((backslash &- ones) & ~backslash)
            if found & highs != 0 { return false }
            index += 8
        }
        while index < bytes.count {
            let byte = bytes[index]
            if byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") { return false }
            index += 1
        }
        return true
    }

    static func writeString(_ text: String, to out: inout [UInt8]) {
        // Most strings need no escaping: scanned in place and appended whole.
        let written = text.utf8.withContiguousStorageIfAvailable { bytes -> Bool in
            writeString(bytes, to: &out)
            return true
        }
        if written == true { return }
        writeEscaped(text.utf8, to: &out)
    }

    /// A string from its UTF-8 bytes (valid UTF-8: the caller's to ensure).
    static func writeString(_ bytes: UnsafeBufferPointer<UInt8>, to out: inout [UInt8]) {
        guard JSONValue.needsNoEscaping(UnsafeRawBufferPointer(bytes)) else { return writeEscaped(bytes, to: &out) }
        out.append(UInt8(ascii: "\""))
        out.append(contentsOf: bytes)
        out.append(UInt8(ascii: "\""))
    }

    private static func writeEscaped<Bytes: Collection<UInt8>>(_ utf8: Bytes, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for byte in utf8 {
            let escaped: UInt8
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"): escaped = byte
            case UInt8(ascii: "\n"): escaped = UInt8(ascii: "n")
            case UInt8(ascii: "\r"): escaped = UInt8(ascii: "r")
            case UInt8(ascii: "\t"): escaped = UInt8(ascii: "t")
            case 0..<0x20:
                // Other control characters as \u00XX.
                out.append(contentsOf: "\\u00".utf8)
                out.append(hexDigits[Int(byte >> 4)])
                out.append(hexDigits[Int(byte & 0x0f)])
                continue
            default:
                // Every other byte, multi-byte UTF-8 included, as is.
                out.append(byte)
                continue
            }
            out.append(UInt8(ascii: "\\"))
            out.append(escaped)
        }
        out.append(UInt8(ascii: "\""))
    }
}

extension JSONValue: ExpressibleByStringLiteral, ExpressibleByBooleanLiteral, ExpressibleByNilLiteral {
    public init(stringLiteral value: String) { self = .string(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(nilLiteral: ()) { self = .null }

    public init(_ value: Int64) { self = .number(String(value)) }
    public init(_ value: Int) { self = .number(String(value)) }
    public init(_ value: String?) { self = value.map { .string($0) } ?? .null }
}

public struct JSONParseError: Error, Sendable {
    public let message: String
    /// The name an object repeated, when that is the error (at most 100 characters).
    public var repeatedName: String? = nil
    /// Where the repeated name is, from the top: `items[2].quantity` for a
    /// second `quantity` in the third item; the name alone at the top level.
    public var repeatedPath: String? = nil
    /// Where a string value is that the API refuses, from the top, as
    /// `repeatedPath` ("" for the body itself): one JSON allows (a NUL, a
    /// lone surrogate) or one whose bytes are not JSON's (invalid UTF-8, a
    /// raw control character), so that the answer names the field.
    public var valuePath: String? = nil
    /// The error is about a string value's content, not the grammar around it.
    var refusedContent = false
}

extension JSONParseError {
    /// This error as seen from the member `name` that holds the value it is in.
    func within(member name: Substring) -> JSONParseError { within(step: String(name)) }

    /// This error as seen from the array that holds it at `index`.
    func within(index: Int) -> JSONParseError { within(step: "[\(index)]") }

    /// A repeated name's path with `step` in front (`items` + `[2].quantity`,
    /// `[2]` + `.quantity`); any other error as it is.
    private func within(step: String) -> JSONParseError {
        func joined(_ path: String) -> String { path.isEmpty ? step : step + (path.first == "[" ? "" : ".") + path }
        var outer = self
        outer.repeatedPath = repeatedPath.map(joined)
        outer.valuePath = valuePath.map(joined)
        return outer
    }
}

/// A strict RFC 8259 parser over UTF-8 bytes.
public struct JSONParser {
    public static let maxDepth = 64
    /// Objects with fewer members than this find a repeated name by a scan.
    static let scannedMembers = 16

    private let bytes: [UInt8]
    private var index = 0

    public static func parse(_ bytes: [UInt8]) throws(JSONParseError) -> JSONValue {
        var parser = JSONParser(bytes: bytes)
        parser.skipWhitespace()
        let value = try parser.parseValue(depth: 0)
        parser.skipWhitespace()
        guard parser.index == bytes.count else { throw parser.fail("unexpected data after the JSON value") }
        return value
    }

    private init(bytes: [UInt8]) {
        self.bytes = bytes
    }

    private func fail(_ message: String) -> JSONParseError {
        JSONParseError(message: "\(message) at byte \(index)")
    }

    /// A string's content the API refuses (`refusedContent`).
    private func refused(_ message: String) -> JSONParseError {
        var error = fail(message)
        error.refusedContent = true
        return error
    }

    private mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0a, 0x0d: index += 1
            default: return
            }
        }
    }

    private mutating func parseValue(depth: Int) throws(JSONParseError) -> JSONValue {
        guard depth < JSONParser.maxDepth else { throw fail("JSON nested more than \(JSONParser.maxDepth) levels") }
        guard index < bytes.count else { throw fail("unexpected end of JSON") }
        switch bytes[index] {
        case UInt8(ascii: "{"): return try parseObject(depth: depth)
        case UInt8(ascii: "["): return try parseArray(depth: depth)
        case UInt8(ascii: "\""):
            do {
                return .string(try parseString())
            } catch {
                // A string JSON allows but the API refuses is named by where it is.
                var refused = error
                if error.refusedContent { refused.valuePath = "" }
                throw refused
            }
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try parseNumber())
        default: throw fail("unexpected character")
        }
    }

    private mutating func literal(_ word: String) throws(JSONParseError) {
        let expected = Array(word.utf8)
        guard index + expected.count <= bytes.count, Array(bytes[index..<index + expected.count]) == expected else {
            throw fail("invalid literal")
        }
        index += expected.count
    }

    private mutating func parseObject(depth: Int) throws(JSONParseError) -> JSONValue {
        index += 1
        var members: [(String, JSONValue)] = []
        // Position of each name in `members`, so finding a repeat costs no
        // scan once there are more than a few (below that a scan costs less).
        var positions: [MemberName: Int] = [:]
        skipWhitespace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "}") {
            index += 1
            return .object(members)
        }
        while true {
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw fail("expected a member name") }
            let key: String
            do {
                key = try parseString()
            } catch {
                // A name JSON allows but the API refuses (a NUL, a lone
                // surrogate) is named by the object that holds it.
                guard error.refusedContent else { throw error }
                var refused = JSONParseError(message: "a member name: " + error.message, valuePath: "")
                refused.refusedContent = true
                throw refused
            }
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { throw fail("expected ':'") }
            index += 1
            skipWhitespace()
            let value: JSONValue
            do {
                value = try parseValue(depth: depth + 1)
            } catch {
                // A repeat deeper down: its path gains this member's name.
                throw error.within(member: key.prefix(100))
            }
            let existing: Int?
            if members.count < JSONParser.scannedMembers {
                existing = members.firstIndex { MemberName.same($0.0, key) }
            } else {
                if positions.isEmpty {
                    // The names so far are distinct: the scan kept them so.
                    for (position, member) in members.enumerated() { positions[MemberName(member.0)] = position }
                }
                existing = positions[MemberName(key)]
                if existing == nil { positions[MemberName(key)] = members.count }
            }
            // A repeated name is refused: which of its values the client meant
            // (a quantity, an amount) is not ours to guess.
            guard existing == nil else {
                throw JSONParseError(
                    message: "the member \"\(key.prefix(100))\" appears twice in one object at byte \(index)",
                    repeatedName: String(key.prefix(100)), repeatedPath: String(key.prefix(100)))
            }
            members.append((key, value))
            skipWhitespace()
            guard index < bytes.count else { throw fail("unexpected end of JSON") }
            if bytes[index] == UInt8(ascii: ",") {
                index += 1
                continue
            }
            guard bytes[index] == UInt8(ascii: "}") else { throw fail("expected ',' or '}'") }
            index += 1
            return .object(members)
        }
    }

    private mutating func parseArray(depth: Int) throws(JSONParseError) -> JSONValue {
        index += 1
        var items: [JSONValue] = []
        skipWhitespace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "]") {
            index += 1
            return .array(items)
        }
        while true {
            skipWhitespace()
            do {
                items.append(try parseValue(depth: depth + 1))
            } catch {
                throw error.within(index: items.count)
            }
            skipWhitespace()
            guard index < bytes.count else { throw fail("unexpected end of JSON") }
            if bytes[index] == UInt8(ascii: ",") {
                index += 1
                continue
            }
            guard bytes[index] == UInt8(ascii: "]") else { throw fail("expected ',' or ']'") }
            index += 1
            return .array(items)
        }
    }

    private mutating func parseNumber() throws(JSONParseError) -> String {
        let start = index
        func digits() -> Int {
            let begin = index
            while index < bytes.count, bytes[index] >= 48, bytes[index] <= 57 { index += 1 }
            return index - begin
        }
        if bytes[index] == UInt8(ascii: "-") { index += 1 }
        guard index < bytes.count else { throw fail("invalid number") }
        if bytes[index] == UInt8(ascii: "0") {
            index += 1
        } else if digits() == 0 {
            throw fail("invalid number")
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            index += 1
            guard digits() > 0 else { throw fail("invalid number") }
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
            index += 1
            if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") { index += 1 }
            guard digits() > 0 else { throw fail("invalid number") }
        }
        guard index - start <= 1000 else { throw fail("number too long") }
        return bytes.withUnsafeBufferPointer { String(decoding: UnsafeBufferPointer(rebasing: $0[start..<index]), as: UTF8.self) }
    }

    /// The bytes from `start` up to `end` as text; nil unless they are valid UTF-8.
    private func text(from start: Int, to end: Int) -> String? {
        bytes.withUnsafeBufferPointer { String(validating: UnsafeBufferPointer(rebasing: $0[start..<end]), as: UTF8.self) }
    }

    private mutating func hex4() throws(JSONParseError) -> UInt32 {
        guard index + 4 <= bytes.count else { throw fail("invalid \\u escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let c = bytes[index]
            let digit: UInt32
            switch c {
            case 48...57: digit = UInt32(c - 48)
            case 65...70: digit = UInt32(c - 55)
            case 97...102: digit = UInt32(c - 87)
            default: throw fail("invalid \\u escape")
            }
            value = value << 4 | digit
            index += 1
        }
        return value
    }

    private mutating func parseString() throws(JSONParseError) -> String {
        index += 1
        // Most strings have no escape: their bytes are the string.
        var end = index
        var high: UInt8 = 0
        while end < bytes.count, bytes[end] != UInt8(ascii: "\""), bytes[end] != UInt8(ascii: "\\"), bytes[end] >= 0x20 {
            high |= bytes[end]
            end += 1
        }
        if end < bytes.count, bytes[end] == UInt8(ascii: "\"") {
            guard let text = text(from: index, to: end) else {
                index = end
                throw refused("invalid UTF-8")
            }
            // ASCII has no combining marks.
            if high >= 0x80, JSONParser.exceedsCombiningRun(text) {
                index = end
                throw refused(JSONParser.combiningRunMessage)
            }
            index = end + 1
            return text
        }
        // An escape (or an error) at `end`: the bytes before it are one plain run.
        var scalars = String.UnicodeScalarView()
        var runStart = index
        index = end
        func flushRun() throws(JSONParseError) {
            guard runStart < index else { return }
            guard let run = text(from: runStart, to: index) else {
                throw refused("invalid UTF-8")
            }
            scalars.append(contentsOf: run.unicodeScalars)
        }
        while true {
            guard index < bytes.count else { throw fail("unterminated string") }
            let c = bytes[index]
            if c == UInt8(ascii: "\"") {
                try flushRun()
                let text = String(scalars)
                if JSONParser.exceedsCombiningRun(text) { throw refused(JSONParser.combiningRunMessage) }
                index += 1
                return text
            }
            if c < 0x20 { throw refused("control character in string") }
            if c != UInt8(ascii: "\\") {
                index += 1
                continue
            }
            try flushRun()
            index += 1
            guard index < bytes.count else { throw fail("unterminated string") }
            let escape = bytes[index]
            index += 1
            switch escape {
            case UInt8(ascii: "\""): scalars.append("\"")
            case UInt8(ascii: "\\"): scalars.append("\\")
            case UInt8(ascii: "/"): scalars.append("/")
            case UInt8(ascii: "b"): scalars.append("\u{08}")
            case UInt8(ascii: "f"): scalars.append("\u{0C}")
            case UInt8(ascii: "n"): scalars.append("\n")
            case UInt8(ascii: "r"): scalars.append("\r")
            case UInt8(ascii: "t"): scalars.append("\t")
            case UInt8(ascii: "u"):
                var code = try hex4()
                if code >= 0xD800, code <= 0xDBFF {
                    guard index + 2 <= bytes.count, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u") else {
                        throw refused("lone UTF-16 surrogate in \\u escape")
                    }
                    index += 2
                    let low = try hex4()
                    guard low >= 0xDC00, low <= 0xDFFF else { throw refused("lone UTF-16 surrogate in \\u escape") }
                    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                } else if code >= 0xDC00, code <= 0xDFFF {
                    throw refused("lone UTF-16 surrogate in \\u escape")
                }
                guard code != 0 else { throw refused("NUL (\\u0000) is not allowed in strings") }
                scalars.append(Unicode.Scalar(code)!)
            default:
                throw fail("invalid escape")
            }
            runStart = index
        }
    }
}

extension JSONParser {
    /// The most combining marks (scalars of a canonical combining class other
    /// than 0, "non-starters") a string may have in a row: the limit of
    /// Unicode's Stream-Safe Text Format (UAX #15), which no text of any
    /// language comes near. Swift compares and hashes strings by canonical
    /// equivalence, putting each run of marks in canonical order first, at a
    /// cost that grows with the square of the run: one string of 256 KiB of
    /// two alternating marks held a core for 8 s in each comparison with a
    /// member name or a code.
    static let maximumCombiningRun = 30

    static let combiningRunMessage =
        "more than \(maximumCombiningRun) combining marks in a row (Unicode's stream-safe limit)"

    /// Whether `text` has more than `maximumCombiningRun` non-starters in a
    /// row, counting those a scalar decomposes into: U+0344, U+0F73, U+0F75
    /// and U+0F81 decompose into two non-starters each (the last three are
    /// starters themselves).
    static func exceedsCombiningRun(_ text: String) -> Bool {
        var run = 0
        for scalar in text.unicodeScalars {
            // Every scalar below U+0300 is a starter.
            if scalar.value < 0x300 {
                run = 0
            } else if scalar.value == 0x344 || scalar.value == 0xF73 || scalar.value == 0xF75 || scalar.value == 0xF81 {
                run += 2
            } else if scalar.properties.canonicalCombiningClass == .notReordered {
                run = 0
            } else {
                run += 1
            }
            if run > maximumCombiningRun { return true }
        }
        return false
    }
}

/// An object member name compared byte for byte, as PostgreSQL compares jsonb
/// keys. Swift's String equality is canonical equivalence, which would take
/// "\u{E9}" and "e\u{301}" for the same name and refuse two distinct members.
private struct MemberName: Hashable {
    let text: String

    init(_ text: String) {
        self.text = text
    }

    static func == (lhs: MemberName, rhs: MemberName) -> Bool {
        same(lhs.text, rhs.text)
    }

    static func same(_ lhs: String, _ rhs: String) -> Bool {
        lhs.utf8.elementsEqual(rhs.utf8)
    }

    func hash(into hasher: inout Hasher) {
        var text = text
        text.withUTF8 { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
    }
}
