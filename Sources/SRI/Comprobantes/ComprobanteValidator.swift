/// One broken rule: the field's path in the request body (`items[2].unitPrice`,
/// indexes from 0) and what the rule is.
public struct FieldViolation: Sendable, Equatable, CustomStringConvertible {
    public let field: String
    public let message: String

    public init(field: String, message: String) {
        self.field = field
        self.message = message
    }

    public var description: String { "\(field): \(message)" }
}

/// Every rule a request body broke, reported at once.
public struct ComprobanteValidationError: Error, Sendable, Equatable {
    public let violations: [FieldViolation]
}

extension ComprobanteInput {
    /// The most integer digits any amount may have, totals included: SRI's
    /// decimals have 14 digits of which 2 are decimals (18 and 6 for quantities
    /// and prices).
    public static let maximumIntegerDigits = 12
    public static let maximumItems = 1000
    public static let maximumDetails = 3
    public static let maximumPayments = 1000
    /// `campoAdicional` entries in all, the buyer's email included.
    public static let maximumAdditionalInfo = 15
    public static let paymentMethods: Set<String> = ["01", "15", "16", "17", "18", "19", "20", "21"]

    /// Whether `text` may be a text field of a comprobante's XML: no control
    /// characters (U+0000–U+001F, U+007F) nor U+FFFE, U+FFFF. For the issuer's
    /// fields, which the XML carries too.
    public static func isComprobanteText(_ text: String) -> Bool {
        !ComprobanteChecker.hasForbiddenCharacter(text)
    }

    /// Checks every rule of SRI.md "Issuing" that needs no database and computes
    /// the document. `today` is today in America/Guayaquil; a missing `issueDate`
    /// means it. Throws every violation found, each naming its field; the work
    /// is linear in the size of the input.
    ///
    /// Lengths count Unicode scalars, the characters of XML Schema's `maxLength`.
    /// Besides the control characters U+0000–U+001F and U+007F, text may not hold
    /// U+FFFE or U+FFFF, which XML cannot carry at all.
    public func validated(today: ComprobanteDate) throws(ComprobanteValidationError) -> Comprobante {
        var checker = ComprobanteChecker()
        let result = checker.check(self, today: today)
        guard checker.violations.isEmpty, let result else {
            throw ComprobanteValidationError(violations: checker.violations)
        }
        return result
    }
}

/// Collects violations while reading an input once.
private struct ComprobanteChecker {
    var violations: [FieldViolation] = []

    mutating func fail(_ field: String, _ message: String) {
        violations.append(FieldViolation(field: field, message: message))
    }

    // MARK: - The document

    mutating func check(_ input: ComprobanteInput, today: ComprobanteDate) -> Comprobante? {
        let kind = documentKind(input.documentType)
        var issueDate = today
        var issueDateValid = true
        if input.issueDate != nil {
            let given = date(input.issueDate, "issueDate", required: true, notAfter: today, limitName: "today")
            issueDate = given ?? today
            issueDateValid = given != nil
        }
        let buyer = self.buyer(input.buyer)
        let (items, amounts) = self.items(input.items)
        let totals = items.map(Totals.init(items:))
        // The amounts' totals, computed even when a line has a bad text field,
        // so that the payments are checked against them too: all violations
        // at once (SRI.md).
        let amountTotals = amounts.map(Totals.init(items:))
        if let amountTotals { checkTotals(amountTotals) }

        var payments: [Payment]? = []
        var modifiedDocument: ModifiedDocument?
        var reason: String?
        switch kind {
        case .factura:
            payments = self.payments(input.payments, documentTotal: amountTotals?.total)
            if input.modifiedDocument != nil { fail("modifiedDocument", "only a credit note (04) modifies a document") }
            if input.reason != nil { fail("reason", "only a credit note (04) has a reason") }
        case .creditNote:
            if let given = input.payments, !given.isEmpty { fail("payments", "a credit note (04) has no payments") }
            // A bad issueDate still leaves today as a limit: a modified
            // document dated after it is wrong whatever the note's date becomes.
            modifiedDocument = self.modifiedDocument(
                input.modifiedDocument, notAfter: issueDateValid ? (issueDate, "the credit note's issueDate") : (today, "today"))
            reason = text(input.reason, "reason", required: true, maximum: 300)
        case nil:
            break
        }
        let additionalInfo = self.additionalInfo(input.additionalInfo, hasEmail: input.buyer?.email != nil)

        guard violations.isEmpty, let kind, let buyer, let items, let totals, let additionalInfo else { return nil }
        switch kind {
        case .factura:
            guard let payments else { return nil }
            return .factura(
                Factura(
                    issueDate: issueDate, buyer: buyer, items: items, totals: totals, payments: payments,
                    additionalInfo: additionalInfo))
        case .creditNote:
            guard let modifiedDocument, let reason else { return nil }
            return .creditNote(
                CreditNote(
                    issueDate: issueDate, buyer: buyer, items: items, totals: totals, additionalInfo: additionalInfo,
                    modifiedDocument: modifiedDocument, reason: reason))
        }
    }

    mutating func documentKind(_ value: String?) -> DocumentKind? {
        guard let value else {
            fail("documentType", "is required")
            return nil
        }
        if let kind = DocumentKind(rawValue: value) { return kind }
        if ["03", "05", "06", "07"].contains(value) {
            fail("documentType", "cannot be issued yet: 01 (factura) and 04 (nota de crédito) can")
        } else {
            fail("documentType", "must be 01 (factura) or 04 (nota de crédito)")
        }
        return nil
    }

    // MARK: - The buyer

    mutating func buyer(_ input: BuyerInput?) -> Buyer? {
        guard let input else {
            fail("buyer", "is required")
            return nil
        }
        let before = violations.count
        let idType = input.idType
        let id = text(input.id, "buyer.id", required: true, maximum: 20)
        switch idType {
        case nil:
            fail("buyer.idType", "is required")
        case "04":
            if let id, !(Self.isDigits(id, count: 13) && id.hasSuffix("001")) {
                fail("buyer.id", "a RUC (04) is 13 digits ending in 001")
            }
        case "05":
            if let id, !Self.isDigits(id, count: 10) { fail("buyer.id", "a cédula (05) is 10 digits") }
        case "06":
            if let id, !(id.utf8.count <= 13 && id.utf8.allSatisfy(Self.isASCIILetterOrDigit)) {
                fail("buyer.id", "a pasaporte (06) is 1 to 13 letters or digits")
            }
        case "07":
            if let id, id != "9999999999999" { fail("buyer.id", "a consumidor final (07) is 9999999999999") }
        case "08":
            break  // 1 to 20 characters, checked above.
        default:
            fail("buyer.idType", "must be 04 (RUC), 05 (cédula), 06 (pasaporte), 07 (consumidor final) or 08 (exterior)")
        }
        let name = text(input.name, "buyer.name", required: true, maximum: 300)
        let address = text(input.address, "buyer.address", required: false, maximum: 300)
        var email: String?
        if let given = input.email {
            if EmailAddress.isPlausible(given) {
                email = given
            } else {
                fail("buyer.email", "must be a plausible email address of at most 254 characters")
            }
        }
        guard violations.count == before, let idType, let id, let name else { return nil }
        return Buyer(idType: idType, id: id, name: name, address: address, email: email)
    }

    // MARK: - The items

    /// The lines when all are valid, and the lines whose amounts are all
    /// valid (a bad text field aside) when those are: what the totals and
    /// the payments' check need.
    mutating func items(_ input: [ItemInput]?) -> (lines: [LineItem]?, amounts: [LineItem]?) {
        guard let input else {
            fail("items", "is required")
            return (nil, nil)
        }
        // Over the limit, the first items are still checked (all violations
        // at once), as many as the limit: the parser read no more of them.
        let tooMany = input.count > ComprobanteInput.maximumItems
        if input.isEmpty || tooMany {
            fail("items", "must hold 1 to \(ComprobanteInput.maximumItems) items")
            if input.isEmpty { return (nil, nil) }
        }
        var items: [LineItem] = []
        var amounts: [LineItem] = []
        items.reserveCapacity(input.count)
        amounts.reserveCapacity(input.count)
        var allValid = true
        var amountsValid = true
        for (index, item) in input.prefix(ComprobanteInput.maximumItems).enumerated() {
            let checked = self.item(item, "items[\(index)]")
            if let line = checked.line { items.append(line) } else { allValid = false }
            if let line = checked.amounts { amounts.append(line) } else { amountsValid = false }
        }
        if tooMany { return (nil, nil) }
        return (allValid ? items : nil, amountsValid ? amounts : nil)
    }

    /// The line when it is valid, and its amounts as a line when they are
    /// (its text then as given, or empty).
    mutating func item(_ input: ItemInput, _ path: String) -> (line: LineItem?, amounts: LineItem?) {
        let before = violations.count
        let code = text(input.code, path + ".code", required: false, maximum: 25)
        let auxCode = text(input.auxCode, path + ".auxCode", required: false, maximum: 25)
        let description = text(input.description, path + ".description", required: true, maximum: 300)
        let beforeAmounts = violations.count
        let quantity = amount(input.quantity, path + ".quantity", required: true, positive: true, places: 6)
        let unitPrice = amount(input.unitPrice, path + ".unitPrice", required: true, positive: false, places: 6)
        let discount = amount(input.discount, path + ".discount", required: false, positive: false, places: 2) ?? .zero
        var gross: ExactDecimal?
        if let quantity, let unitPrice {
            let lineGross = LineItem.gross(quantity: quantity, unitPrice: unitPrice)
            gross = lineGross
            if lineGross.integerDigitCount > ComprobanteInput.maximumIntegerDigits {
                fail(path + ".quantity", "quantity × unitPrice must have at most 12 integer digits")
            } else if discount > lineGross {
                fail(path + ".discount", "must not exceed the line's gross amount, \(lineGross.text(places: 2))")
            }
        }
        let rate = tax(input.taxes, path + ".taxes")
        let amountsValid = violations.count == beforeAmounts
        var details: [NameValue] = []
        if let given = input.details {
            if given.count > ComprobanteInput.maximumDetails {
                fail(path + ".details", "must hold at most \(ComprobanteInput.maximumDetails) entries")
            }
            for (index, detail) in given.prefix(ComprobanteInput.maximumDetails).enumerated() {
                if let pair = nameValue(detail, path + ".details[\(index)]") { details.append(pair) }
            }
        }
        guard let quantity, let unitPrice, gross != nil, let rate, amountsValid else { return (nil, nil) }
        guard violations.count == before, let description else {
            let amounts = LineItem(
                code: nil, auxCode: nil, description: description ?? "", quantity: quantity, unitPrice: unitPrice, discount: discount,
                rate: rate, details: [])
            return (nil, amounts)
        }
        let line = LineItem(
            code: code, auxCode: auxCode, description: description, quantity: quantity, unitPrice: unitPrice,
            discount: discount, rate: rate, details: details)
        return (line, line)
    }

    mutating func tax(_ input: [TaxInput]?, _ path: String) -> TaxRate? {
        guard let input, input.count == 1, let tax = input.first else {
            fail(path, "must hold exactly one entry, the IVA (code \"2\")")
            return nil
        }
        // The code and the rate code are checked each on its own, so that
        // both are named at once: IVA is the only tax taken, so a rate code
        // is read against IVA's table whatever the code says.
        if let code = tax.code {
            if code != TaxTable.ivaCode { fail(path + "[0].code", "must be \"2\" (IVA)") }
        } else {
            fail(path + "[0].code", "is required")
        }
        guard let rateCode = tax.rateCode else {
            fail(path + "[0].rateCode", "is required")
            return nil
        }
        guard let rate = TaxTable.rate(code: TaxTable.ivaCode, rateCode: rateCode) else {
            let codes = TaxTable.iva.map(\.rateCode).joined(separator: ", ")
            fail(path + "[0].rateCode", "must be one of \(codes)")
            return nil
        }
        guard tax.code == TaxTable.ivaCode else { return nil }
        return rate
    }

    /// The computed amounts obey the same 12-digit limit as the given ones.
    mutating func checkTotals(_ totals: Totals) {
        let limit = ComprobanteInput.maximumIntegerDigits
        if totals.total.integerDigitCount > limit || totals.discount.integerDigitCount > limit {
            fail("items", "the document's total and discount must have at most \(limit) integer digits")
        }
    }

    // MARK: - Payments

    mutating func payments(_ input: [PaymentInput]?, documentTotal: ExactDecimal?) -> [Payment]? {
        guard let input, !input.isEmpty else { return [] }
        let before = violations.count
        var payments: [Payment] = []
        // Every total read, even beside a bad method or term: their sum is
        // checked whenever each total is an amount (all violations at once).
        var sum: ExactDecimal? = input.count <= ComprobanteInput.maximumPayments ? .zero : nil
        if input.count > ComprobanteInput.maximumPayments {
            fail("payments", "must hold at most \(ComprobanteInput.maximumPayments) entries")
        }
        for (index, given) in input.prefix(ComprobanteInput.maximumPayments).enumerated() {
            let path = "payments[\(index)]"
            let method = given.method
            if method == nil {
                fail(path + ".method", "is required")
            } else if let method, !ComprobanteInput.paymentMethods.contains(method) {
                fail(path + ".method", "must be one of " + ComprobanteInput.paymentMethods.sorted().joined(separator: ", "))
            }
            let total = amount(given.total, path + ".total", required: true, positive: true, places: 2)
            sum = total.flatMap { total in sum.map { $0 + total } }
            var term: Int?
            if let text = given.term {
                let value = try? ExactDecimal(parsing: text)
                if let value, value.isInteger, !value.isNegative, value.integerDigitCount <= ComprobanteInput.maximumIntegerDigits {
                    term = Int(value.description)
                } else {
                    fail(path + ".term", "must be a whole number from 0, of at most 12 digits")
                }
            }
            var termUnit: String?
            if let unit = given.termUnit {
                if unit == "dias" || unit == "meses" {
                    termUnit = unit
                } else {
                    fail(path + ".termUnit", "must be \"dias\" or \"meses\"")
                }
            }
            if given.term != nil, given.termUnit == nil { fail(path + ".termUnit", "is required with a term") }
            if given.term == nil, given.termUnit != nil { fail(path + ".term", "is required with a termUnit") }
            if let method, let total {
                payments.append(Payment(method: method, total: total, term: term, termUnit: termUnit))
            }
        }
        if let documentTotal, let sum, sum != documentTotal {
            fail(
                "payments",
                "the payments add up to \(sum.text(places: 2)), the document total is \(documentTotal.text(places: 2))")
        }
        return violations.count == before ? payments : nil
    }

    // MARK: - Credit notes

    mutating func modifiedDocument(
        _ input: ModifiedDocumentInput?, notAfter limit: (date: ComprobanteDate, name: String)
    ) -> ModifiedDocument? {
        guard let input else {
            fail("modifiedDocument", "is required for a credit note (04)")
            return nil
        }
        let before = violations.count
        if input.documentType == nil {
            fail("modifiedDocument.documentType", "is required")
        } else if input.documentType != "01" {
            fail("modifiedDocument.documentType", "must be 01 (factura)")
        }
        if let number = input.number {
            if !Self.isDocumentNumber(number) {
                fail("modifiedDocument.number", "must be written NNN-NNN-NNNNNNNNN, none of the three parts all zeros")
            }
        } else {
            fail("modifiedDocument.number", "is required")
        }
        let issueDate = date(
            input.issueDate, "modifiedDocument.issueDate", required: true, notAfter: limit.date, limitName: limit.name)
        guard violations.count == before, let documentType = input.documentType, let number = input.number, let issueDate
        else { return nil }
        return ModifiedDocument(documentType: documentType, number: number, issueDate: issueDate)
    }

    // MARK: - Additional information

    mutating func additionalInfo(_ input: [NameValueInput]?, hasEmail: Bool) -> [NameValue]? {
        guard let input else { return [] }
        let before = violations.count
        let limit = ComprobanteInput.maximumAdditionalInfo - (hasEmail ? 1 : 0)
        if input.count > limit {
            fail(
                "additionalInfo",
                hasEmail
                    ? "must hold at most \(limit) entries: the buyer's email takes one of the \(ComprobanteInput.maximumAdditionalInfo)"
                    : "must hold at most \(limit) entries")
        }
        var entries: [NameValue] = []
        for (index, entry) in input.prefix(limit).enumerated() {
            if let pair = nameValue(entry, "additionalInfo[\(index)]") { entries.append(pair) }
        }
        return violations.count == before ? entries : nil
    }

    mutating func nameValue(_ input: NameValueInput, _ path: String) -> NameValue? {
        let name = text(input.name, path + ".name", required: true, maximum: 300)
        let value = text(input.value, path + ".value", required: true, maximum: 300)
        guard let name, let value else { return nil }
        return NameValue(name: name, value: value)
    }

    // MARK: - Fields

    /// A text field: present when required, 1 to `maximum` characters, no
    /// control characters nor U+FFFE, U+FFFF.
    mutating func text(_ value: String?, _ field: String, required: Bool, maximum: Int) -> String? {
        guard let value else {
            if required { fail(field, "is required") }
            return nil
        }
        if Self.hasForbiddenCharacter(value) {
            fail(field, "must not contain control characters (U+0000 to U+001F, U+007F) nor U+FFFE or U+FFFF")
            return nil
        }
        var count = 0
        for _ in value.unicodeScalars {
            count += 1
            if count > maximum { break }
        }
        guard (1...maximum).contains(count) else {
            fail(field, "must be 1 to \(maximum) characters")
            return nil
        }
        return value
    }

    /// An amount: exact decimal text, at most 12 integer digits and `places`
    /// decimals, greater than zero when `positive`, else at least zero.
    mutating func amount(_ text: String?, _ field: String, required: Bool, positive: Bool, places: Int) -> ExactDecimal? {
        guard let text else {
            if required { fail(field, "is required") }
            return nil
        }
        let value: ExactDecimal
        do {
            value = try ExactDecimal(parsing: text)
        } catch .malformed {
            fail(field, "must be a decimal number such as 10.75")
            return nil
        } catch {
            fail(field, "must have at most \(ComprobanteInput.maximumIntegerDigits) integer digits and \(places) decimals")
            return nil
        }
        if positive, value.isNegative || value.isZero {
            fail(field, "must be greater than 0")
        } else if value.isNegative {
            fail(field, "must not be negative")
        } else if value.integerDigitCount > ComprobanteInput.maximumIntegerDigits {
            fail(field, "must have at most \(ComprobanteInput.maximumIntegerDigits) integer digits")
        } else if value.decimalPlaces > places {
            fail(field, "must have at most \(places) decimals")
        } else {
            return value
        }
        return nil
    }

    /// A `YYYY-MM-DD` date in SRI's years (its schema writes 20yy) and not after `limit`.
    mutating func date(
        _ text: String?, _ field: String, required: Bool, notAfter limit: ComprobanteDate?, limitName: String
    ) -> ComprobanteDate? {
        guard let text else {
            if required { fail(field, "is required") }
            return nil
        }
        guard let date = ComprobanteDate(iso: text) else {
            fail(field, "must be a date written YYYY-MM-DD")
            return nil
        }
        guard (2000...2099).contains(date.year) else {
            fail(field, "must be in the years 2000 to 2099")
            return nil
        }
        if let limit, date > limit {
            fail(field, "must not be after \(limitName) (\(limit.iso))")
            return nil
        }
        return date
    }

    // MARK: - Character classes

    /// U+0000–U+001F, U+007F, and the two scalars XML 1.0 cannot carry.
    static func hasForbiddenCharacter(_ text: String) -> Bool {
        text.unicodeScalars.contains { scalar in
            scalar.value < 0x20 || scalar.value == 0x7F || scalar.value == 0xFFFE || scalar.value == 0xFFFF
        }
    }

    static func isDigits(_ text: String, count: Int) -> Bool {
        text.utf8.count == count && text.utf8.allSatisfy { (0x30...0x39).contains($0) }
    }

    static func isASCIILetterOrDigit(_ byte: UInt8) -> Bool {
        (0x30...0x39).contains(byte) || (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte)
    }

    /// `NNN-NNN-NNNNNNNNN`, none of its three parts all zeros: establishments
    /// and emission points run from 001, sequentials from 1.
    static func isDocumentNumber(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        guard bytes.count == 17 else { return false }
        let written = bytes.indices.allSatisfy { index in
            index == 3 || index == 7 ? bytes[index] == UInt8(ascii: "-") : (0x30...0x39).contains(bytes[index])
        }
        let zero = UInt8(ascii: "0")
        return written && !bytes[0..<3].allSatisfy { $0 == zero } && !bytes[4..<7].allSatisfy { $0 == zero }
            && !bytes[8..<17].allSatisfy { $0 == zero }
    }

}
