import Foundation

/// A value that can be sent as a query parameter, in PostgreSQL's text format
/// (bytea: its binary format).
/// `nil` is SQL NULL. Every parameter travels out of band (`PQexecParams`,
/// `PQexecPrepared`): no value is ever spliced into SQL text.
public protocol PostgresBindable: Sendable {
    var postgresText: String? { get }
    /// The value in PostgreSQL's binary format, when it is sent that way
    /// (`Data`, as bytea: its bytes as they are, no hex to write or parse);
    /// nil sends `postgresText`.
    var postgresBinary: Data? { get }
}

extension PostgresBindable {
    public var postgresBinary: Data? { nil }
}

/// One parameter as it travels: NULL, text, or bytes in binary format.
enum PostgresParameter {
    case null
    case text(String)
    case binary(Data)

    init(_ value: any PostgresBindable) {
        if let bytes = value.postgresBinary {
            self = .binary(bytes)
        } else if let text = value.postgresText {
            self = .text(text)
        } else {
            self = .null
        }
    }
}

extension String: PostgresBindable {
    public var postgresText: String? { self }
}

extension Int: PostgresBindable {
    public var postgresText: String? { String(self) }
}

extension Int64: PostgresBindable {
    public var postgresText: String? { String(self) }
}

extension Int32: PostgresBindable {
    public var postgresText: String? { String(self) }
}

extension Bool: PostgresBindable {
    public var postgresText: String? { self ? "t" : "f" }
}

extension Double: PostgresBindable {
    public var postgresText: String? {
        if isNaN { return "NaN" }
        if isInfinite { return self < 0 ? "-Infinity" : "Infinity" }
        return "\(self)"
    }
}

extension Data: PostgresBindable {
    /// bytea in hex format: `\x0a1b...` (elements of arrays travel this way).
    public var postgresText: String? { Hex.byteaLiteral(self) }
    /// A bytea parameter itself travels in binary format. Its type must be
    /// bytea where it is used (a bytea column or argument, or `::bytea`).
    public var postgresBinary: Data? { self }
}

extension Date: PostgresBindable {
    /// timestamptz with microseconds, in UTC.
    public var postgresText: String? { Timestamp.format(self, fractionDigits: 6, separator: " ", suffix: "+00") }
}

extension Optional: PostgresBindable where Wrapped: PostgresBindable {
    public var postgresText: String? {
        switch self {
        case .none: return nil
        case .some(let value): return value.postgresText
        }
    }

    public var postgresBinary: Data? {
        switch self {
        case .none: return nil
        case .some(let value): return value.postgresBinary
        }
    }
}

enum Hex {
    private static let digits = Array("0123456789abcdef".utf8)

    static func byteaLiteral(_ data: Data) -> String {
        data.withUnsafeBytes { input in
            String(unsafeUninitializedCapacity: 2 + input.count * 2) { output in
                output[0] = UInt8(ascii: "\\")
                output[1] = UInt8(ascii: "x")
                var index = 2
                for byte in input {
                    output[index] = digits[Int(byte >> 4)]
                    output[index + 1] = digits[Int(byte & 0x0f)]
                    index += 2
                }
                return index
            }
        }
    }

    static func value(of char: UInt8) -> UInt8? {
        switch char {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return char - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return char - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return char - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}

/// Conversions between `Date` and the text PostgreSQL uses for timestamptz
/// (`DateStyle=ISO`, `TimeZone=UTC`, which every pooled session sets).
public enum Timestamp {
    /// `2026-03-01 12:00:00.123456+00` (any fraction, offset `+hh`, `+hh:mm` or `+hh:mm:ss`).
    public static func parse(_ bytes: UnsafeBufferPointer<UInt8>) -> Date? {
        // A cursor of its own rather than closures over a local index: the
        // accesses stay statically checked (no exclusivity check at run time
        // per digit; this runs for every timestamp of every row read).
        var cursor = Cursor(bytes: bytes)
        guard let year = cursor.number(4), cursor.expect(45), let month = cursor.number(2), cursor.expect(45),
            let day = cursor.number(2)
        else { return nil }
        guard cursor.expect(32) || cursor.expect(84) else { return nil }
        guard let hour = cursor.number(2), cursor.expect(58), let minute = cursor.number(2), cursor.expect(58),
            let second = cursor.number(2)
        else { return nil }
        var fraction = 0.0
        if cursor.expect(46) {
            var scale = 0.1
            while let digit = cursor.digit() {
                fraction += Double(digit) * scale
                scale /= 10
            }
        }
        var offsetSeconds = 0
        if let designator = cursor.next() {
            let sign: Int
            switch designator {
            case 43: sign = 1
            case 45: sign = -1
            case 90: sign = 0
            default: return nil
            }
            if sign != 0 {
                guard let hours = cursor.number(2) else { return nil }
                var minutes = 0
                var seconds = 0
                if cursor.expect(58) { minutes = cursor.number(2) ?? 0 }
                if cursor.expect(58) { seconds = cursor.number(2) ?? 0 }
                offsetSeconds = sign * (hours * 3600 + minutes * 60 + seconds)
            }
        }
        guard cursor.atEnd else { return nil }
        let days = daysFromCivil(year: year, month: month, day: day)
        let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offsetSeconds
        return Date(timeIntervalSince1970: Double(seconds) + fraction)
    }

    /// The length of `rfc3339Milliseconds`' output: `2026-03-01T12:00:00.123Z`.
    public static let rfc3339MillisecondsLength = 24

    /// PostgreSQL's text for a timestamptz in UTC (`2026-03-01 12:00:00.123456+00`,
    /// with 0 to 6 fraction digits) rewritten as RFC 3339 with milliseconds,
    /// `2026-03-01T12:00:00.123Z`, into the first 24 bytes of `out`. The digits
    /// are copied, the fraction cut to three (as `format` cuts it), with no
    /// arithmetic on a `Double`, which could lose the last microsecond and
    /// with it a millisecond. False, writing nothing, for any other text (a year
    /// before 1 or past 9999, another offset).
    public static func rfc3339Milliseconds(_ text: UnsafeBufferPointer<UInt8>, into out: UnsafeMutableBufferPointer<UInt8>) -> Bool {
        let count = text.count
        guard count >= 22, count <= 29, out.count >= rfc3339MillisecondsLength else { return false }
        func digits(_ range: Range<Int>) -> Bool {
            for index in range where text[index] < 48 || text[index] > 57 { return false }
            return true
        }
        guard digits(0..<4), text[4] == 45, digits(5..<7), text[7] == 45, digits(8..<10), text[10] == 32,
            digits(11..<13), text[13] == 58, digits(14..<16), text[16] == 58, digits(17..<19),
            text[count - 3] == 43, text[count - 2] == 48, text[count - 1] == 48
        else { return false }
        // Between the seconds and the offset: nothing, or "." and 1 to 6 digits.
        let fractionDigits = count - 22 - 1
        if count > 22 {
            guard fractionDigits >= 1, text[19] == 46, digits(20..<(count - 3)) else { return false }
        }
        for index in 0..<10 { out[index] = text[index] }
        out[10] = 84
        for index in 11..<19 { out[index] = text[index] }
        out[19] = 46
        for place in 0..<3 { out[20 + place] = place < fractionDigits ? text[20 + place] : 48 }
        out[23] = 90
        return true
    }

    /// Reads a timestamp's text front to back (also SRI's dates, in Comprobify).
    public struct Cursor {
        let bytes: UnsafeBufferPointer<UInt8>
        var index = 0

        public init(bytes: UnsafeBufferPointer<UInt8>) {
            self.bytes = bytes
        }

        public var atEnd: Bool { index == bytes.count }

        /// `count` decimal digits as a number, or nil (and nothing consumed past the first non-digit).
        public mutating func number(_ count: Int) -> Int? {
            guard index + count <= bytes.count else { return nil }
            var value = 0
            for _ in 0..<count {
                guard let digit = digit() else { return nil }
                value = value * 10 + digit
            }
            return value
        }

        /// The next byte's value when it is a decimal digit, consuming it.
        public mutating func digit() -> Int? {
            guard index < bytes.count, bytes[index] >= 48, bytes[index] <= 57 else { return nil }
            defer { index += 1 }
            return Int(bytes[index] - 48)
        }

        /// Consumes `byte` when it comes next.
        public mutating func expect(_ byte: UInt8) -> Bool {
            guard index < bytes.count, bytes[index] == byte else { return false }
            index += 1
            return true
        }

        public mutating func next() -> UInt8? {
            guard index < bytes.count else { return nil }
            defer { index += 1 }
            return bytes[index]
        }
    }

    /// `2026-03-01T12:00:00.000` followed by `suffix` (a zone designator such
    /// as `Z`, or none), with the given number of fraction digits (0 to 6).
    /// Always UTC. Written into the string's storage in one pass (it runs for
    /// every timestamp of every answer).
    public static func format(_ date: Date, fractionDigits: Int, separator: Character = "T", suffix: String = "") -> String {
        // Clamped well inside Int64's microseconds (about 285,000 years either
        // side of 1970): a date past them, or NaN, would trap in the conversion.
        let scaled = (date.timeIntervalSince1970 * 1_000_000).rounded(.down)
        let micros = scaled.isNaN ? 0 : Int64(min(max(scaled, -9e18), 9e18))
        var seconds = micros / 1_000_000
        var fraction = micros % 1_000_000
        if fraction < 0 {
            fraction += 1_000_000
            seconds -= 1
        }
        var days = seconds / 86_400
        var secondOfDay = seconds % 86_400
        if secondOfDay < 0 {
            secondOfDay += 86_400
            days -= 1
        }
        let (year, month, day) = civilFromDays(Int(days))
        let digits = min(max(fractionDigits, 0), 6)
        var divisor = 1
        for _ in 0..<(6 - digits) { divisor *= 10 }
        // Four digits for the year, more past 9999 (and a sign before year 0).
        var yearWidth = 4
        var limit = 10_000
        while year.magnitude >= limit {
            yearWidth += 1
            limit *= 10
        }
        let length =
            (year < 0 ? 1 : 0) + yearWidth + 15 + separator.utf8.count - 1 + (digits > 0 ? 1 + digits : 0) + suffix.utf8.count
        return String(unsafeUninitializedCapacity: length) { buffer in
            var index = 0
            func put(_ value: Int, _ width: Int) {
                var rest = value
                var position = index + width - 1
                while position >= index {
                    buffer[position] = UInt8(48 + rest % 10)
                    rest /= 10
                    position -= 1
                }
                index += width
            }
            func put(_ byte: UInt8) {
                buffer[index] = byte
                index += 1
            }
            func put<Bytes: Sequence<UInt8>>(_ bytes: Bytes) {
                for byte in bytes { put(byte) }
            }
            if year < 0 { put(UInt8(ascii: "-")) }
            put(Int(year.magnitude), yearWidth)
            put(UInt8(ascii: "-"))
            put(month, 2)
            put(UInt8(ascii: "-"))
            put(day, 2)
            if separator.utf8.count == 1, let ascii = separator.asciiValue { put(ascii) } else { put(separator.utf8) }
            put(Int(secondOfDay / 3600), 2)
            put(UInt8(ascii: ":"))
            put(Int(secondOfDay % 3600 / 60), 2)
            put(UInt8(ascii: ":"))
            put(Int(secondOfDay % 60), 2)
            if digits > 0 {
                put(UInt8(ascii: "."))
                put(Int(fraction) / divisor, digits)
            }
            if !suffix.isEmpty { put(suffix.utf8) }
            return index
        }
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
    public static func daysFromCivil(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = (month + 9) % 12
        let doy = (153 * mp + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    /// The proleptic Gregorian (year, month, day) of a count of days since 1970-01-01.
    public static func civilFromDays(_ days: Int) -> (year: Int, month: Int, day: Int) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }
}

extension Array: PostgresBindable where Element: PostgresBindable {
    /// A one-dimensional array literal: `{"a","b",NULL}`, every element quoted.
    public var postgresText: String? {
        var out = "{"
        for (index, element) in enumerated() {
            if index > 0 { out += "," }
            guard let text = element.postgresText else {
                out += "NULL"
                continue
            }
            out += "\""
            for char in text.unicodeScalars {
                if char == "\"" || char == "\\" { out += "\\" }
                out.unicodeScalars.append(char)
            }
            out += "\""
        }
        return out + "}"
    }
}
