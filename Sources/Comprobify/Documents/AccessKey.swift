import SRI

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
        ComprobanteDate.pad(value, width)
    }
}

/// A calendar date without time or zone (an issue date): the SRI library's,
/// so the API, the access key and the XML agree on what a day is.
public typealias CalendarDate = ComprobanteDate
