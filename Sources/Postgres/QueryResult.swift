import CLibPQ
import Foundation

/// Type OIDs of the built-in types the wrapper decodes (pg_type.oid).
public enum PostgresType {
    public static let bool: Oid = 16
    public static let bytea: Oid = 17
    public static let name: Oid = 19
    public static let int8: Oid = 20
    public static let int2: Oid = 21
    public static let int4: Oid = 23
    public static let text: Oid = 25
    public static let oid: Oid = 26
    public static let json: Oid = 114
    public static let float4: Oid = 700
    public static let float8: Oid = 701
    public static let unknown: Oid = 705
    public static let bpchar: Oid = 1042
    public static let varchar: Oid = 1043
    public static let date: Oid = 1082
    public static let timestamp: Oid = 1114
    public static let timestamptz: Oid = 1184
    public static let numeric: Oid = 1700
    public static let jsonb: Oid = 3802
    public static let int2Array: Oid = 1005
    public static let int4Array: Oid = 1007
    public static let textArray: Oid = 1009
    public static let bpcharArray: Oid = 1014
    public static let varcharArray: Oid = 1015
    public static let int8Array: Oid = 1016
}

/// The rows of one statement. Owns the `PGresult` and frees it when released.
public final class QueryResult: @unchecked Sendable {
    @usableFromInline let handle: OpaquePointer

    /// Number of rows returned.
    public let count: Int
    /// Number of rows the statement inserted, updated or deleted (or returned, for SELECT).
    public let affectedRows: Int

    init(handle: OpaquePointer) {
        self.handle = handle
        self.count = Int(PQntuples(handle))
        self.affectedRows = Int(String(cString: PQcmdTuples(handle))) ?? 0
    }

    deinit {
        PQclear(handle)
    }

    public var columnCount: Int { Int(PQnfields(handle)) }

    /// The column's name ("?" for a column the result does not have).
    public func columnName(_ column: Int) -> String {
        guard column >= 0, column < columnCount, let name = PQfname(handle, Int32(column)) else { return "?" }
        return String(cString: name)
    }

    /// The position of the column called `name`.
    public func columnIndex(_ name: String) throws -> Int {
        let index = Int(PQfnumber(handle, quotedIdentifier(name)))
        guard index >= 0 else {
            throw PostgresError(kind: .decoding, message: "no column named \(name) in the result")
        }
        return index
    }

    public var rows: [Row] {
        (0..<count).map { Row(result: self, index: $0) }
    }

    public var first: Row? {
        count > 0 ? Row(result: self, index: 0) : nil
    }

    /// The row at `row`. One the result does not have (`results[0][0]` on no
    /// rows) throws when read, a decoding error, rather than stopping the process.
    public subscript(row: Int) -> Row {
        Row(result: self, index: row)
    }
}

/// One row of a `QueryResult`. Values are decoded by column position, with the
/// Swift type stating the expected type and nullness: `String?` accepts NULL,
/// `String` refuses it with a clear error.
public struct Row: Sendable {
    @usableFromInline let result: QueryResult
    @usableFromInline let index: Int

    /// Inlinable, so that callers get it specialized for each type they read
    /// (no generic metadata looked up at run time per value).
    @inlinable
    public func decode<T: PostgresDecodable>(_ type: T.Type = T.self, at column: Int) throws -> T {
        // The bytes read below belong to the PGresult, which `result` frees.
        try withExtendedLifetime(result) { try decodeValue(T.self, at: column) }
    }

    /// Throws unless the result has this row.
    @inlinable
    func requireRow() throws {
        guard index >= 0, index < result.count else {
            throw PostgresError(kind: .decoding, message: "row \(index) does not exist (the result has \(result.count))")
        }
    }

    @inlinable
    func decodeValue<T: PostgresDecodable>(_ type: T.Type, at column: Int) throws -> T {
        try requireRow()
        let handle = result.handle
        guard column >= 0, column < Int(PQnfields(handle)) else {
            throw PostgresError(kind: .decoding, message: "column \(column) does not exist (the row has \(PQnfields(handle)))")
        }
        let col = Int32(column)
        let oid = PQftype(handle, col)
        if PQgetisnull(handle, Int32(index), col) == 1 {
            guard let value = T.postgresNull else {
                throw PostgresError(
                    kind: .decoding,
                    message: "column \(column) (\(result.columnName(column))) is NULL but \(T.self) cannot hold NULL"
                )
            }
            return value
        }
        let length = Int(PQgetlength(handle, Int32(index), col))
        let pointer = PQgetvalue(handle, Int32(index), col)!
        return try pointer.withMemoryRebound(to: UInt8.self, capacity: length) { base in
            let bytes = UnsafeBufferPointer(start: base, count: length)
            guard let value = try T.decodePostgres(bytes, type: oid) else {
                throw PostgresError(
                    kind: .decoding,
                    message: "column \(column) (\(result.columnName(column))) of type oid \(oid) cannot be decoded as \(T.self)"
                )
            }
            return value
        }
    }

    /// Consecutive columns from `offset` as a tuple, each checked like `decode(_:at:)`:
    /// `let (id, label, createdAt) = try row.decode((Int64, String?, Date).self)`.
    @inlinable
    public func decode<each Column: PostgresDecodable>(
        _ types: (repeat each Column).Type, from offset: Int = 0
    ) throws -> (repeat each Column) {
        var column = offset
        return (repeat try decode((each Column).self, advancing: &column))
    }

    /// The value at `column`, then `column` moves to the next. An `inout`
    /// counter rather than a closure capturing it: its accesses are checked
    /// when compiling, not at run time.
    @inlinable
    func decode<Value: PostgresDecodable>(_ type: Value.Type, advancing column: inout Int) throws -> Value {
        defer { column += 1 }
        return try decode(Value.self, at: column)
    }

    /// The column called `name` (the first, when several share it).
    public func decode<T: PostgresDecodable>(_ type: T.Type = T.self, named name: String) throws -> T {
        try decode(T.self, at: result.columnIndex(name))
    }

    /// Whether the column is SQL NULL (true too for a row or column the result
    /// does not have, which `decode` refuses).
    @inlinable
    public func isNull(at column: Int) -> Bool {
        guard index >= 0, index < result.count, column >= 0, column < result.columnCount else { return true }
        return PQgetisnull(result.handle, Int32(index), Int32(column)) == 1
    }

    /// The column's value as PostgreSQL sent it (text format), or nil for
    /// NULL, to read without making a Swift value of it first: the bytes are
    /// valid only inside `body`. Throws unless the column's type is `type`
    /// (the base type, for a column of a domain).
    @inlinable
    public func withBytes<R>(at column: Int, ofType type: Oid, _ body: (UnsafeBufferPointer<UInt8>?) throws -> R) throws -> R {
        try requireRow()
        let handle = result.handle
        // In range before it is made an Int32, which would trap past Int32.max.
        guard column >= 0, column < Int(PQnfields(handle)), PQftype(handle, Int32(column)) == type else {
            throw PostgresError(kind: .decoding, message: "column \(column) is not of type oid \(type)")
        }
        let col = Int32(column)
        if PQgetisnull(handle, Int32(index), col) == 1 { return try body(nil) }
        let length = Int(PQgetlength(handle, Int32(index), col))
        // The bytes belong to the PGresult, which `result` frees: kept alive until `body` returns.
        return try withExtendedLifetime(result) {
            try PQgetvalue(handle, Int32(index), col)!.withMemoryRebound(to: UInt8.self, capacity: length) { base in
                try body(UnsafeBufferPointer(start: base, count: length))
            }
        }
    }

    /// A timestamptz column as RFC 3339 UTC with milliseconds
    /// (`2026-03-01T12:00:00.123Z`), or nil for NULL. The digits are copied
    /// from PostgreSQL's text (`Timestamp.rfc3339Milliseconds`); text of
    /// another shape (a session in another time zone) goes through `Date`.
    /// A year past 9999 or BC is refused, as decoding it as a `Date` refuses it.
    public func rfc3339Milliseconds(at column: Int) throws -> String? {
        try withBytes(at: column, ofType: PostgresType.timestamptz) { bytes -> String? in
            guard let bytes else { return nil }
            let text = String(unsafeUninitializedCapacity: Timestamp.rfc3339MillisecondsLength) { out in
                Timestamp.rfc3339Milliseconds(bytes, into: out) ? Timestamp.rfc3339MillisecondsLength : 0
            }
            if !text.isEmpty { return text }
            guard let date = Timestamp.parse(bytes) else {
                throw PostgresError(kind: .decoding, message: "column \(column) holds a timestamp that cannot be read")
            }
            return Timestamp.format(date, fractionDigits: 3, suffix: "Z")
        }
    }
}

/// A Swift type that a column value (text format) can be decoded into.
public protocol PostgresDecodable {
    /// The value for SQL NULL, or nil when the type cannot hold NULL.
    static var postgresNull: Self? { get }
    /// Decodes a non-NULL value; nil when the column's type does not fit.
    static func decodePostgres(_ bytes: UnsafeBufferPointer<UInt8>, type: Oid) throws -> Self?
}

extension PostgresDecodable {
    @inlinable
    public static var postgresNull: Self? { nil }
}

extension Optional: PostgresDecodable where Wrapped: PostgresDecodable {
    @inlinable
    public static var postgresNull: Self? { .some(.none) }

    @inlinable
    public static func decodePostgres(_ bytes: UnsafeBufferPointer<UInt8>, type: Oid) throws -> Self? {
        try Wrapped.decodePostgres(bytes, type: type).map { .some($0) }
    }
}

private func parseInteger(_ bytes: UnsafeBufferPointer<UInt8>) -> Int64? {
    guard !bytes.isEmpty else { return nil }
    var index = 0
    var negative = false
    if bytes[0] == UInt8(ascii: "-") {
        negative = true
        index = 1
    }
    guard index < bytes.count else { return nil }
    var value: Int64 = 0
    while index < bytes.count {
        let c = bytes[index]
        guard c >= 48, c <= 57 else { return nil }
        let (m, o1) = value.multipliedReportingOverflow(by: 10)
        let (s, o2) = negative ? m.subtractingReportingOverflow(Int64(c - 48)) : m.addingReportingOverflow(Int64(c - 48))
        guard !o1, !o2 else { return nil }
        value = s
        index += 1
    }
    return value
}

/// int2, int4, int8 and oid. A switch, not a `Set`: it runs for every value
/// decoded, and a set hashes the type each time.
@usableFromInline
func isIntegerType(_ type: Oid) -> Bool {
    switch type {
    case PostgresType.int2, PostgresType.int4, PostgresType.int8, PostgresType.oid: return true
    default: return false
    }
}

/// text, varchar, char, name, unknown, json and jsonb.
@usableFromInline
func isTextType(_ type: Oid) -> Bool {
    switch type {
    case PostgresType.text, PostgresType.varchar, PostgresType.bpchar, PostgresType.name, PostgresType.unknown,
        PostgresType.json, PostgresType.jsonb:
        return true
    default: return false
    }
}

extension Int64: PostgresDecodable {
    public static func decodePostgres(_ bytes: UnsafeBufferPointer<UInt8>, type: Oid) throws -> Int64? {
        guard isIntegerType(type) else { return nil }
        return parseInteger(bytes)
    }
}

extension Int: PostgresDecodable {
    public static func decodePostgres(_ bytes: UnsafeBufferPointer<UInt8>, type: Oid) throws -> Int? {
        try Int64.decodePostgres(bytes, type: type).map { Int($0) }
    }
}

extension Int32: PostgresDecodable {
    public static func decodePostgres(_ bytes: UnsafeBufferPointer<UInt8>, type: Oid) throws -> Int32? {
        guard let value = try Int64.decodePostgres(bytes, type: type) else { return nil }
        return Int32(exactly: value)
    }
}

extension String: PostgresDecodable {
    /// text, varchar, char, name, json and jsonb (JSON as its text).
    public static func decodePostgres(_ bytes: UnsafeBufferPointer<UInt8>, type: Oid) throws -> String? {
        guard isTextType(type) else { return nil }
        return String(decoding: bytes, as: UTF8.self)
    }
}

extension Bool: PostgresDecodable {
    public static func decodePostgres(_ bytes: UnsafeBufferPointer<UInt8>, type: Oid) throws -> Bool? {
        guard type == PostgresType.bool, bytes.count == 1 else { return nil }
        switch bytes[0] {
        case UInt8(ascii: "t"): return true
        case UInt8(ascii: "f"): return false
        default: return nil
        }
    }
}

extension Double: PostgresDecodable {
    /// float4, float8, numeric and the integer types.
    public static func decodePostgres(_ bytes: UnsafeBufferPointer<UInt8>, type: Oid) throws -> Double? {
        let numeric: Set<Oid> = [PostgresType.float4, PostgresType.float8, PostgresType.numeric]
        guard numeric.contains(type) || isIntegerType(type) else { return nil }
        return Double(String(decoding: bytes, as: UTF8.self))
    }
}

extension Data: PostgresDecodable {
    /// bytea in hex output format (`\x...`, the default since PostgreSQL 9.0).
    public static func decodePostgres(_ bytes: UnsafeBufferPointer<UInt8>, type: Oid) throws -> Data? {
        guard type == PostgresType.bytea, bytes.count >= 2, bytes[0] == UInt8(ascii: "\\"), bytes[1] == UInt8(ascii: "x"),
            bytes.count % 2 == 0
        else { return nil }
        // Written through one buffer: Data's per-byte append costs a call and
        // checks per byte, which made this a tenth of a signed document's CPU.
        var data = Data(count: (bytes.count - 2) / 2)
        let valid = data.withUnsafeMutableBytes { output -> Bool in
            var index = 2
            for position in 0..<output.count {
                guard let high = Hex.value(of: bytes[index]), let low = Hex.value(of: bytes[index + 1]) else { return false }
                output[position] = high << 4 | low
                index += 2
            }
            return true
        }
        return valid ? data : nil
    }
}

extension Date: PostgresDecodable {
    /// timestamptz (and timestamp, taken as UTC).
    public static func decodePostgres(_ bytes: UnsafeBufferPointer<UInt8>, type: Oid) throws -> Date? {
        guard type == PostgresType.timestamptz || type == PostgresType.timestamp else { return nil }
        return Timestamp.parse(bytes)
    }
}

extension Array: PostgresDecodable where Element: PostgresDecodable {
    /// One-dimensional arrays of the integer and text types (`bigint[]`,
    /// `text[]`), from PostgreSQL's array text form: `{1,2}`, `{"a b",NULL}`.
    /// Elements that are NULL need an optional element type.
    public static func decodePostgres(_ bytes: UnsafeBufferPointer<UInt8>, type: Oid) throws -> [Element]? {
        let elementType: Oid
        switch type {
        case PostgresType.int2Array: elementType = PostgresType.int2
        case PostgresType.int4Array: elementType = PostgresType.int4
        case PostgresType.int8Array: elementType = PostgresType.int8
        case PostgresType.textArray: elementType = PostgresType.text
        case PostgresType.varcharArray: elementType = PostgresType.varchar
        case PostgresType.bpcharArray: elementType = PostgresType.bpchar
        default: return nil
        }
        guard let items = ArrayLiteral.split(bytes) else { return nil }
        var values: [Element] = []
        values.reserveCapacity(items.count)
        for item in items {
            guard let item else {
                guard let null = Element.postgresNull else { return nil }
                values.append(null)
                continue
            }
            let decoded = try item.withUnsafeBufferPointer { try Element.decodePostgres($0, type: elementType) }
            guard let decoded else { return nil }
            values.append(decoded)
        }
        return values
    }
}

/// The text form of a one-dimensional array: `{a,"b c",NULL}`.
enum ArrayLiteral {
    /// The elements' bytes, unquoted and unescaped; nil for SQL NULL. Nil for
    /// anything that is not a one-dimensional array literal.
    static func split(_ bytes: UnsafeBufferPointer<UInt8>) -> [[UInt8]?]? {
        let open = UInt8(ascii: "{"), close = UInt8(ascii: "}"), comma = UInt8(ascii: ",")
        let quote = UInt8(ascii: "\""), backslash = UInt8(ascii: "\\")
        guard bytes.count >= 2, bytes.first == open, bytes.last == close else { return nil }
        var items: [[UInt8]?] = []
        var index = 1
        let end = bytes.count - 1
        if index == end { return [] }
        while index <= end {
            var item: [UInt8] = []
            var quoted = false
            if bytes[index] == quote {
                quoted = true
                index += 1
                while true {
                    guard index < end else { return nil }
                    let c = bytes[index]
                    if c == backslash {
                        guard index + 1 < end else { return nil }
                        item.append(bytes[index + 1])
                        index += 2
                    } else if c == quote {
                        index += 1
                        break
                    } else {
                        item.append(c)
                        index += 1
                    }
                }
            } else {
                while index < end, bytes[index] != comma {
                    guard bytes[index] != open, bytes[index] != quote else { return nil }
                    item.append(bytes[index])
                    index += 1
                }
            }
            let isNull = !quoted && item == Array("NULL".utf8)
            items.append(isNull ? nil : item)
            if index == end { break }
            guard bytes[index] == comma else { return nil }
            index += 1
        }
        return items
    }
}
