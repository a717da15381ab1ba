/// An exact decimal number: a sign, a magnitude of decimal digits and a scale,
/// worth `(-1)^negative × magnitude × 10^-scale`. Money, quantities and rates
/// travel as this type from the text the client wrote to the text in the XML;
/// nothing on the way is ever binary floating point.
///
/// The representation is canonical (no leading zeros in the magnitude, no
/// trailing zeros in the fraction, zero is never negative), so `==` and hashing
/// compare values: `0.5 == 0.50`.
///
/// Rounding happens in exactly one place, `rounded(places:)`, half up: a dropped
/// part of one half or more moves the value away from zero.
public struct ExactDecimal: Sendable, Hashable {
    /// Why a text is not a decimal this type accepts.
    public enum ParseError: Error, Sendable, Equatable {
        /// Not in JSON number syntax (see `init(parsing:)`).
        case malformed
        /// Needs more than `maximumIntegerDigits` integer digits or more than
        /// `maximumDecimalPlaces` decimal places to be written out.
        case outOfRange
    }

    /// The largest number of integer digits `init(parsing:)` accepts. Far above
    /// any amount SRI allows (12), low enough that an exponent cannot make the
    /// parser expand a number into a huge one.
    public static let maximumIntegerDigits = 40
    /// The largest number of decimal places `init(parsing:)` accepts.
    public static let maximumDecimalPlaces = 40

    /// The digits of the magnitude, least significant first; empty for zero.
    private var digits: [UInt8]
    /// How many of `digits` are decimals; 0 when the value is an integer.
    private var scale: Int
    private var negative: Bool

    public static let zero = ExactDecimal(digits: [], scale: 0, negative: false)

    private init(digits: [UInt8], scale: Int, negative: Bool) {
        self.digits = digits
        self.scale = scale
        self.negative = negative
        normalize()
    }

    /// An integer value.
    public init(_ integer: Int) {
        var magnitude = integer.magnitude
        var digits: [UInt8] = []
        while magnitude > 0 {
            digits.append(UInt8(magnitude % 10))
            magnitude /= 10
        }
        self.init(digits: digits, scale: 0, negative: integer < 0)
    }

    /// Parses a number in JSON number syntax, exactly: `-? (0 | [1-9][0-9]*)
    /// (. [0-9]+)? ([eE] [+-]? [0-9]+)?`. So `"0.1"` is one tenth, `"1e2"` is
    /// 100 and `"1.5E-3"` is 0.0015. Refused as `.malformed`: a leading `+`,
    /// leading zeros (`"01"`), a bare `"."` or `".5"` or `"5."`, whitespace,
    /// `NaN`, `Infinity`, hexadecimal, anything else. Refused as `.outOfRange`: a
    /// value needing more than 40 integer digits or 40 decimal places, decided
    /// from the exponent without expanding it (`1e131071` costs nothing).
    /// Zero with any exponent is zero.
    public init(parsing text: String) throws(ParseError) {
        let bytes = Array(text.utf8)
        var index = 0
        func digit(_ at: Int) -> UInt8? {
            guard at < bytes.count, (0x30...0x39).contains(bytes[at]) else { return nil }
            return bytes[at] - 0x30
        }

        var negative = false
        if index < bytes.count, bytes[index] == UInt8(ascii: "-") {
            negative = true
            index += 1
        }
        // The mantissa's digits, most significant first, and how many are decimals.
        var mantissa: [UInt8] = []
        guard let first = digit(index) else { throw .malformed }
        mantissa.append(first)
        index += 1
        if first != 0 {
            while let next = digit(index) {
                mantissa.append(next)
                index += 1
            }
        }
        var fractionCount = 0
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            index += 1
            guard digit(index) != nil else { throw .malformed }
            while let next = digit(index) {
                mantissa.append(next)
                fractionCount += 1
                index += 1
            }
        }
        // The exponent, saturated: beyond ±1_000_000 the limits reject the value anyway.
        var exponent = 0
        if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
            index += 1
            var exponentNegative = false
            if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") {
                exponentNegative = bytes[index] == UInt8(ascii: "-")
                index += 1
            }
            guard digit(index) != nil else { throw .malformed }
            while let next = digit(index) {
                if exponent < 1_000_000 { exponent = exponent * 10 + Int(next) }
                index += 1
            }
            if exponentNegative { exponent = -exponent }
        }
        guard index == bytes.count else { throw .malformed }

        // Significant digits only: drop leading zeros, then trailing ones into the scale.
        let leadingZeros = mantissa.prefix(while: { $0 == 0 }).count
        var significant = mantissa[leadingZeros...]
        guard !significant.isEmpty else {
            self = .zero
            return
        }
        var scale = fractionCount - exponent
        while significant.last == 0 {
            significant.removeLast()
            scale -= 1
        }
        let integerDigits = significant.count - scale
        guard integerDigits <= Self.maximumIntegerDigits, scale <= Self.maximumDecimalPlaces else { throw .outOfRange }
        var digits = Array(significant.reversed())
        if scale < 0 {
            digits.insert(contentsOf: repeatElement(0, count: -scale), at: 0)
            scale = 0
        }
        self.init(digits: digits, scale: scale, negative: negative)
    }

    /// Restores the canonical form.
    private mutating func normalize() {
        while digits.last == 0 { digits.removeLast() }
        var trailing = 0
        while trailing < scale, trailing < digits.count, digits[trailing] == 0 { trailing += 1 }
        if trailing > 0 {
            digits.removeFirst(trailing)
            scale -= trailing
        }
        if digits.isEmpty {
            scale = 0
            negative = false
        }
    }

    // MARK: - What a value is

    public var isZero: Bool { digits.isEmpty }
    public var isNegative: Bool { negative }

    /// How many decimals the value needs: 2 for 24.15 and for "24.150", 0 for 2.
    public var decimalPlaces: Int { scale }

    /// How many digits its integer part has: 3 for 123.45, 0 for 0.5 and for 0.
    public var integerDigitCount: Int { max(0, digits.count - scale) }

    /// Whether it is a whole number.
    public var isInteger: Bool { scale == 0 }

    // MARK: - Rounding, the one place

    /// Rounded half up to `places` decimals: a dropped part of exactly one half or
    /// more moves the value away from zero (0.125 → 0.13, 1.005 → 1.01).
    public func rounded(places: Int) -> ExactDecimal {
        precondition(places >= 0, "negative decimal places")
        guard scale > places else { return self }
        let drop = scale - places
        let roundsUp = drop - 1 < digits.count && digits[drop - 1] >= 5
        var kept = drop < digits.count ? Array(digits[drop...]) : []
        if roundsUp { Self.increment(&kept) }
        return ExactDecimal(digits: kept, scale: places, negative: negative)
    }

    /// The value divided by 10^`power`, exactly (a percentage becomes a fraction).
    public func dividedByPowerOfTen(_ power: Int) -> ExactDecimal {
        precondition(power >= 0, "negative power of ten")
        return ExactDecimal(digits: digits, scale: scale + power, negative: negative)
    }

    // MARK: - Text

    /// The value written with exactly `places` decimals, rounding half up first
    /// if it has more: "24.15", "2.000000", "0.00", "-3.10". No exponent, no
    /// grouping, a leading "0" before the point when the integer part is zero.
    public func text(places: Int) -> String {
        let value = rounded(places: places)
        var padded = [UInt8](repeating: 0, count: places - value.scale) + value.digits
        while padded.count < places + 1 { padded.append(0) }
        var out = value.negative ? "-" : ""
        out.reserveCapacity(padded.count + 2)
        for position in stride(from: padded.count - 1, through: 0, by: -1) {
            if position == places - 1 { out.append(".") }
            out.append(Character(Unicode.Scalar(padded[position] + 0x30)))
        }
        return out
    }

    // MARK: - Magnitude helpers (digits least significant first)

    private static func increment(_ digits: inout [UInt8]) {
        for i in digits.indices {
            if digits[i] == 9 {
                digits[i] = 0
            } else {
                digits[i] += 1
                return
            }
        }
        digits.append(1)
    }

    /// The magnitude written at `scale` (which is at least the value's own).
    private func magnitude(atScale target: Int) -> [UInt8] {
        [UInt8](repeating: 0, count: target - scale) + digits
    }

    private static func compareMagnitudes(_ lhs: [UInt8], _ rhs: [UInt8]) -> Int {
        // Most significant first, high zeros skipped.
        let a = lhs.reversed().drop(while: { $0 == 0 })
        let b = rhs.reversed().drop(while: { $0 == 0 })
        if a.count != b.count { return a.count < b.count ? -1 : 1 }
        for (x, y) in zip(a, b) where x != y { return x < y ? -1 : 1 }
        return 0
    }

    private static func addMagnitudes(_ a: [UInt8], _ b: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(max(a.count, b.count) + 1)
        var carry: UInt8 = 0
        for i in 0..<max(a.count, b.count) {
            let sum = (i < a.count ? a[i] : 0) + (i < b.count ? b[i] : 0) + carry
            out.append(sum % 10)
            carry = sum / 10
        }
        if carry > 0 { out.append(carry) }
        return out
    }

    /// `a − b` for `a ≥ b`.
    private static func subtractMagnitudes(_ a: [UInt8], _ b: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(a.count)
        var borrow: Int = 0
        for i in 0..<a.count {
            var difference = Int(a[i]) - (i < b.count ? Int(b[i]) : 0) - borrow
            borrow = difference < 0 ? 1 : 0
            if difference < 0 { difference += 10 }
            out.append(UInt8(difference))
        }
        return out
    }

    private static func multiplyMagnitudes(_ a: [UInt8], _ b: [UInt8]) -> [UInt8] {
        guard !a.isEmpty, !b.isEmpty else { return [] }
        var columns = [Int](repeating: 0, count: a.count + b.count)
        for (i, x) in a.enumerated() where x != 0 {
            for (j, y) in b.enumerated() { columns[i + j] += Int(x) * Int(y) }
        }
        var out: [UInt8] = []
        out.reserveCapacity(columns.count + 1)
        var carry = 0
        for column in columns {
            let total = column + carry
            out.append(UInt8(total % 10))
            carry = total / 10
        }
        while carry > 0 {
            out.append(UInt8(carry % 10))
            carry /= 10
        }
        return out
    }

    // MARK: - Arithmetic

    public static func + (lhs: ExactDecimal, rhs: ExactDecimal) -> ExactDecimal {
        let scale = max(lhs.scale, rhs.scale)
        let a = lhs.magnitude(atScale: scale)
        let b = rhs.magnitude(atScale: scale)
        if lhs.negative == rhs.negative {
            return ExactDecimal(digits: addMagnitudes(a, b), scale: scale, negative: lhs.negative)
        }
        switch compareMagnitudes(a, b) {
        case 0: return .zero
        case 1: return ExactDecimal(digits: subtractMagnitudes(a, b), scale: scale, negative: lhs.negative)
        default: return ExactDecimal(digits: subtractMagnitudes(b, a), scale: scale, negative: rhs.negative)
        }
    }

    public static prefix func - (value: ExactDecimal) -> ExactDecimal {
        ExactDecimal(digits: value.digits, scale: value.scale, negative: !value.negative)
    }

    public static func - (lhs: ExactDecimal, rhs: ExactDecimal) -> ExactDecimal {
        lhs + (-rhs)
    }

    public static func * (lhs: ExactDecimal, rhs: ExactDecimal) -> ExactDecimal {
        ExactDecimal(
            digits: multiplyMagnitudes(lhs.digits, rhs.digits), scale: lhs.scale + rhs.scale,
            negative: lhs.negative != rhs.negative)
    }

    public static func += (lhs: inout ExactDecimal, rhs: ExactDecimal) {
        lhs = lhs + rhs
    }
}

extension ExactDecimal: Comparable {
    public static func < (lhs: ExactDecimal, rhs: ExactDecimal) -> Bool {
        if lhs.negative != rhs.negative { return lhs.negative }
        let scale = max(lhs.scale, rhs.scale)
        let order = compareMagnitudes(lhs.magnitude(atScale: scale), rhs.magnitude(atScale: scale))
        return lhs.negative ? order > 0 : order < 0
    }
}

extension ExactDecimal: CustomStringConvertible {
    /// The shortest exact text: "24.15", "2", "0.0015", "-3.1".
    public var description: String { text(places: scale) }
}
