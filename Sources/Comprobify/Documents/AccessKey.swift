import Postgres

/// The SRI clave de acceso: 49 digits.
///
///     ddmmyyyy  issue date                 (8)
///     tt        document type              (2)
///     rrrrrrrrrrrrr RUC                    (13)
///     a         environment: 1 sandbox, 2 production (1)
///     eeeppp    establishment + emission point (6)
///     sssssssss sequential, zero-padded    (9)
///     cccccccc  numeric code               (8)
///     1         emission type (normal)     (1)
///     v         modulo-11 check digit      (1)
public enum AccessKey {
    /// What a document's key says of its issuer, type, date and environment.
    public struct Parts: Sendable {
        public var issueDate: CalendarDate
        public var documentType: String
        public var ruc: String
        public var environment: Environment
        public var establishment: String
        public var emissionPoint: String

        public init(
            issueDate: CalendarDate, documentType: String, ruc: String, environment: Environment,
            establishment: String, emissionPoint: String
        ) {
            self.issueDate = issueDate
            self.documentType = documentType
            self.ruc = ruc
            self.environment = environment
            self.establishment = establishment
            self.emissionPoint = emissionPoint
        }
    }

    /// The 49-digit key of the document `sequential` with `numericCode`.
    public static func make(_ parts: Parts, sequential: Int, numericCode: String) -> String {
        let digits = leadingDigits(parts) + pad(sequential, 9) + trailingDigits(numericCode: numericCode)
        precondition(digits.utf8.count == 48 && digits.utf8.allSatisfy { (48...57).contains($0) }, "malformed access key parts")
        return digits + String(checkDigit(digits))
    }

    /// The 30 digits before the sequential: date, type, RUC, environment,
    /// establishment and emission point. (The sequential is only known inside the
    /// transaction that takes it, where `sri_check_digit()` completes the key.)
    static func leadingDigits(_ parts: Parts) -> String {
        let date = parts.issueDate
        var digits = pad(date.day, 2) + pad(date.month, 2) + pad(date.year, 4)
        digits += parts.documentType + parts.ruc
        digits.append(parts.environment.accessKeyDigit)
        return digits + parts.establishment + parts.emissionPoint
    }

    /// The 9 digits after the sequential: the numeric code and emission type 1.
    static func trailingDigits(numericCode: String) -> String {
        numericCode + "1"
    }

    /// Modulo 11 over the digits with weights 2, 3, 4, 5, 6, 7 from the right,
    /// repeating: check = 11 − (sum mod 11), where 11 gives 0 and 10 gives 1.
    public static func checkDigit(_ digits: String) -> Int {
        var sum = 0
        var weight = 2
        for byte in digits.utf8.reversed() {
            sum += Int(byte - 48) * weight
            weight = weight == 7 ? 2 : weight + 1
        }
        let check = 11 - sum % 11
        switch check {
        case 11: return 0
        case 10: return 1
        default: return check
        }
    }

    /// True for 49 digits whose last one is the check digit of the other 48.
    public static func isValid(_ key: String) -> Bool {
        guard key.utf8.count == 49, key.utf8.allSatisfy({ (48...57).contains($0) }) else { return false }
        return checkDigit(String(key.prefix(48))) == Int(key.utf8.last! - 48)
    }

    /// Eight random digits for the numeric code, uniformly distributed (bytes
    /// of 250 and above are drawn again, so `% 10` has no bias).
    static func randomNumericCode() -> String {
        var digits = ""
        while digits.count < 8 {
            for byte in Crypto.randomBytes(8) where byte < 250 && digits.count < 8 {
                digits.append(Character(String(byte % 10)))
            }
        }
        return digits
    }

    static func pad(_ value: Int, _ width: Int) -> String {
        let text = String(value)
        return text.count >= width ? text : String(repeating: "0", count: width - text.count) + text
    }
}

/// A calendar date without time or zone (an issue date).
public struct CalendarDate: Sendable, Equatable, CustomStringConvertible {
    public let year: Int
    public let month: Int
    public let day: Int

    public init?(year: Int, month: Int, day: Int) {
        guard (1...9999).contains(year), (1...12).contains(month), day >= 1 else { return nil }
        let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
        let lengths = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
        guard day <= lengths[month - 1] else { return nil }
        self.year = year
        self.month = month
        self.day = day
    }

    /// Parses `YYYY-MM-DD`.
    public init?(iso text: String) {
        let utf8 = Array(text.utf8)
        guard utf8.count == 10, utf8[4] == 45, utf8[7] == 45 else { return nil }
        func number(_ range: Range<Int>) -> Int? {
            var value = 0
            for i in range {
                guard (48...57).contains(utf8[i]) else { return nil }
                value = value * 10 + Int(utf8[i] - 48)
            }
            return value
        }
        guard let y = number(0..<4), let m = number(5..<7), let d = number(8..<10) else { return nil }
        self.init(year: y, month: m, day: d)
    }

    public var description: String {
        AccessKey.pad(year, 4) + "-" + AccessKey.pad(month, 2) + "-" + AccessKey.pad(day, 2)
    }

    /// Today in America/Guayaquil (UTC−5 all year: Ecuador observes no daylight saving).
    public static func todayInEcuador(now: Double) -> CalendarDate {
        let seconds = Int((now - 5 * 3600).rounded(.down))
        let days = seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400
        let (y, m, d) = Timestamp.civilFromDays(days)
        return CalendarDate(year: y, month: m, day: d)!
    }
}
