import XCTest

@testable import SRI

final class ComprobanteValidatorTests: XCTestCase {
    static let today = ComprobanteDate(year: 2026, month: 12, day: 1)!

    /// SRI.md's example factura.
    static func factura() -> ComprobanteInput {
        ComprobanteInput(
            documentType: "01", issueDate: "2026-12-01",
            buyer: BuyerInput(idType: "05", id: "1712345678", name: "José Núñez", address: "Quito", email: "jose@example.ec"),
            items: [
                ItemInput(
                    code: "A-1", description: "Widget", quantity: "2", unitPrice: "10.75", discount: "0.50",
                    taxes: [TaxInput(code: "2", rateCode: "4")], details: [NameValueInput(name: "Color", value: "Rojo")])
            ],
            payments: [PaymentInput(method: "01", total: "24.15", term: "30", termUnit: "dias")],
            additionalInfo: [NameValueInput(name: "Pedido", value: "PO-77")])
    }

    static func creditNote() -> ComprobanteInput {
        var input = factura()
        input.documentType = "04"
        input.payments = nil
        input.modifiedDocument = ModifiedDocumentInput(documentType: "01", number: "001-001-000000123", issueDate: "2026-11-30")
        input.reason = "Devolución"
        return input
    }

    private func violations(_ input: ComprobanteInput, file: StaticString = #filePath, line: UInt = #line) -> [FieldViolation] {
        do {
            _ = try input.validated(today: Self.today)
            XCTFail("expected violations", file: file, line: line)
            return []
        } catch {
            return error.violations
        }
    }

    private func assertOnly(
        _ field: String, _ input: ComprobanteInput, containing words: String? = nil, file: StaticString = #filePath,
        line: UInt = #line
    ) {
        let found = violations(input, file: file, line: line)
        XCTAssertEqual(found.map(\.field), [field], "\(found)", file: file, line: line)
        if let words, let first = found.first {
            XCTAssertTrue(first.message.contains(words), first.message, file: file, line: line)
        }
    }

    func testTheExamplesAreValid() throws {
        guard case .factura(let factura) = try Self.factura().validated(today: Self.today) else { return XCTFail("not a factura") }
        XCTAssertEqual(factura.totals.total.text(places: 2), "24.15")
        guard case .creditNote(let note) = try Self.creditNote().validated(today: Self.today) else {
            return XCTFail("not a credit note")
        }
        XCTAssertEqual(note.reason, "Devolución")
        XCTAssertEqual(note.modifiedDocument.issueDate, ComprobanteDate(year: 2026, month: 11, day: 30))
    }

    func testReportsEveryViolationAtOnceWithItsPath() {
        var input = Self.factura()
        input.issueDate = "2026-12-02"
        input.buyer?.email = "not an email"
        input.items?.append(
            ItemInput(description: "", quantity: "0", unitPrice: "-1", discount: "0.001", taxes: [TaxInput(code: "2", rateCode: "1")]))
        input.items?.append(ItemInput(description: "B", quantity: "1.1234567", unitPrice: "1", taxes: []))
        input.additionalInfo?.append(NameValueInput(name: "Nota", value: "a\u{7}b"))
        let fields = Set(violations(input).map(\.field))
        XCTAssertEqual(
            fields,
            [
                "issueDate", "buyer.email", "items[1].description", "items[1].quantity", "items[1].unitPrice",
                "items[1].discount", "items[1].taxes[0].rateCode", "items[2].quantity", "items[2].taxes",
                "additionalInfo[1].value",
            ])
    }

    func testDocumentTypes() {
        var input = Self.factura()
        input.documentType = "03"
        assertOnly("documentType", input, containing: "not be issued yet")
        input.documentType = "02"
        assertOnly("documentType", input, containing: "01")
        input.documentType = nil
        assertOnly("documentType", input, containing: "required")
    }

    func testIssueDates() throws {
        var input = Self.factura()
        input.issueDate = nil
        XCTAssertEqual(try input.validated(today: Self.today).issueDate, Self.today)
        for bad in ["2026-13-01", "2026-02-29", "01/12/2026", "2026-1-01", "", "1999-12-31"] {
            input.issueDate = bad
            assertOnly("issueDate", input)
        }
        input.issueDate = "2024-02-29"
        XCTAssertEqual(try input.validated(today: Self.today).issueDate, ComprobanteDate(year: 2024, month: 2, day: 29))
        input.issueDate = "2026-12-02"
        assertOnly("issueDate", input, containing: "after today")
    }

    func testBuyerIdentification() throws {
        let cases: [(String, String, Bool)] = [
            ("04", "1712345678001", true), ("04", "1712345678002", false), ("04", "171234567800", false),
            ("05", "1712345678", true), ("05", "171234567", false), ("05", "17123456A8", false),
            ("06", "AB123456", true), ("06", "ABCDEFGHIJKLM", true), ("06", "ABCDEFGHIJKLMN", false), ("06", "AB-123", false),
            ("07", "9999999999999", true), ("07", "9999999999998", false),
            ("08", "X-12 345/ÑÖ", true), ("08", String(repeating: "9", count: 20), true),
            ("08", String(repeating: "9", count: 21), false), ("08", "", false),
        ]
        for (idType, id, valid) in cases {
            var input = Self.factura()
            input.buyer?.idType = idType
            input.buyer?.id = id
            if valid {
                XCTAssertNoThrow(try input.validated(today: Self.today), "\(idType) \(id)")
            } else {
                assertOnly("buyer.id", input)
            }
        }
        var input = Self.factura()
        input.buyer?.idType = "09"
        assertOnly("buyer.idType", input)
        input.buyer = nil
        assertOnly("buyer", input)
        input = Self.factura()
        input.buyer?.name = nil
        assertOnly("buyer.name", input)
        input.buyer?.name = String(repeating: "ñ", count: 301)
        assertOnly("buyer.name", input, containing: "300")
        input.buyer?.name = String(repeating: "ñ", count: 300)
        input.buyer?.address = ""
        assertOnly("buyer.address", input)
        input.buyer?.address = nil
        input.buyer?.email = nil
        XCTAssertNoThrow(try input.validated(today: Self.today))
    }

    func testEmails() {
        for good in [
            "a@b.co", "jose.nunez+factura@example.ec", "ñandú@correo.ec", "o'brien&co@example.ec", "Ventas@Mail.Example.COM.EC",
            "a@xn--and-6ma2c.ec", "info@ñandú.ec", "jose@x\u{301}.ec", String(repeating: "ñ", count: 32) + "@b.ec",
            String(repeating: "a", count: 64) + "@" + String(repeating: "b", count: 63) + ".ec",
        ] {
            var input = Self.factura()
            input.buyer?.email = good
            XCTAssertNoThrow(try input.validated(today: Self.today), good)
        }
        for bad in [
            "", "jose", "@example.ec", "jose@", "jose@example", "jose@@example.ec", "jo se@example.ec", "a@b.", "a@.b",
            String(repeating: "a", count: 250) + "@b.ec",
            // As for sign-up: invisible characters, C1 controls, an "@" with a
            // combining mark, and what XML cannot carry.
            "jo\u{200B}se@example.ec", "jose@exa\u{202E}mple.ec", "jose@example.ec\u{0085}", "a@b@\u{301}c.ec",
            "jose\u{FFFE}@example.ec",
            // What no mail could reach: empty labels, a hyphen at a label's
            // edge, an underscore in a host name, dots at a local part's edge
            // or doubled, a one-letter or numeric top-level domain, an address
            // literal, a local part over 64 or a label over 63.
            "jose@example..ec", "jose@.example.ec", "jose@example.ec.", "jose@-x.ec", "jose@x-.ec", "jose@x_y.ec",
            ".jose@example.ec", "jose.@example.ec", "jo..se@example.ec", "jose@example.e", "jose@192.0.2.1",
            "jose@[192.0.2.1]", String(repeating: "a", count: 65) + "@b.ec", "a@" + String(repeating: "b", count: 64) + ".ec",
            // A combining mark does not hide a hyphen at a label's end nor
            // start a label; a top-level domain of other digits is digits;
            // 64 is counted in bytes (33 ñ are 66).
            "jose@x-\u{301}.ec", "jose@\u{301}x.ec", "jose@b.\u{661}\u{662}", String(repeating: "ñ", count: 33) + "@b.ec",
        ] {
            var input = Self.factura()
            input.buyer?.email = bad
            assertOnly("buyer.email", input)
        }
    }

    func testItemAmounts() {
        func with(_ change: (inout ItemInput) -> Void) -> ComprobanteInput {
            var input = Self.factura()
            change(&input.items![0])
            input.payments = nil
            return input
        }
        assertOnly("items[0].quantity", with { $0.quantity = "0" }, containing: "greater than 0")
        assertOnly("items[0].quantity", with { $0.quantity = "-1" })
        assertOnly("items[0].quantity", with { $0.quantity = "1.0000001" }, containing: "6 decimals")
        assertOnly("items[0].quantity", with { $0.quantity = "ten" }, containing: "decimal number")
        assertOnly("items[0].quantity", with { $0.quantity = nil }, containing: "required")
        assertOnly("items[0].quantity", with { $0.quantity = "1e131071" })
        assertOnly("items[0].unitPrice", with { $0.unitPrice = "-0.01" }, containing: "negative")
        assertOnly("items[0].unitPrice", with { $0.unitPrice = "1.1234567" })
        assertOnly("items[0].unitPrice", with { $0.unitPrice = "1234567890123" }, containing: "12 integer digits")
        assertOnly("items[0].unitPrice", with { $0.unitPrice = "1e12" }, containing: "12 integer digits")
        assertOnly("items[0].discount", with { $0.discount = "0.001" }, containing: "2 decimals")
        assertOnly("items[0].discount", with { $0.discount = "-0.01" })
        assertOnly("items[0].discount", with { $0.discount = "21.51" }, containing: "21.50")
        XCTAssertNoThrow(try with { $0.discount = "21.50" }.validated(today: Self.today))
        XCTAssertNoThrow(try with { $0.discount = nil }.validated(today: Self.today))
        XCTAssertNoThrow(
            try with {
                $0.unitPrice = "0"; $0.discount = nil
            }.validated(today: Self.today))
        XCTAssertNoThrow(
            try with {
                $0.quantity = "1.123456"; $0.unitPrice = "0.000001"; $0.discount = "0"
            }.validated(today: Self.today))
        XCTAssertNoThrow(try with { $0.quantity = "1.5E1" }.validated(today: Self.today))
        XCTAssertNoThrow(
            try with {
                $0.unitPrice = "999999999999.999999"; $0.quantity = "0.5"; $0.discount = nil
            }.validated(today: Self.today))
        // A line above 12 integer digits, from two amounts within them.
        assertOnly(
            "items[0].quantity",
            with {
                $0.unitPrice = "999999999999"; $0.quantity = "2"
            }, containing: "quantity × unitPrice must have at most 12 integer digits")
    }

    func testTheLargestAmountsAndOneMore() throws {
        var input = Self.factura()
        input.payments = nil
        input.items = [
            ItemInput(description: "Max", quantity: "1", unitPrice: "999999999999.99", taxes: [TaxInput(code: "2", rateCode: "0")])
        ]
        XCTAssertEqual(try input.validated(today: Self.today).totals.total.text(places: 2), "999999999999.99")
        // The same line at 15 % makes a 13-digit total.
        input.items?[0].taxes = [TaxInput(code: "2", rateCode: "4")]
        assertOnly("items", input, containing: "12 integer digits")
        // Two lines whose sum has 13 digits.
        input.items = Array(
            repeating: ItemInput(
                description: "Half", quantity: "1", unitPrice: "500000000000", taxes: [TaxInput(code: "2", rateCode: "0")]),
            count: 2)
        assertOnly("items", input)
    }

    func testTaxes() {
        func taxes(_ taxes: [TaxInput]?) -> ComprobanteInput {
            var input = Self.factura()
            input.items?[0].taxes = taxes
            input.payments = nil
            return input
        }
        assertOnly("items[0].taxes", taxes(nil))
        assertOnly("items[0].taxes", taxes([]))
        assertOnly("items[0].taxes", taxes([TaxInput(code: "2", rateCode: "4"), TaxInput(code: "2", rateCode: "0")]))
        assertOnly("items[0].taxes[0].code", taxes([TaxInput(code: "3", rateCode: "4")]))
        // A wrong or missing code and a wrong rate code are named together.
        for code in ["9", nil] {
            XCTAssertEqual(
                violations(taxes([TaxInput(code: code, rateCode: "99")])).map(\.field),
                ["items[0].taxes[0].code", "items[0].taxes[0].rateCode"], code ?? "no code")
        }
        assertOnly("items[0].taxes[0].code", taxes([TaxInput(code: nil, rateCode: "4")]))
        assertOnly("items[0].taxes[0].rateCode", taxes([TaxInput(code: "2", rateCode: "8")]))
        assertOnly("items[0].taxes[0].rateCode", taxes([TaxInput(code: "2", rateCode: nil)]))
        for code in ["0", "2", "3", "4", "5", "6", "7", "10"] {
            XCTAssertNoThrow(try taxes([TaxInput(code: "2", rateCode: code)]).validated(today: Self.today), code)
        }
    }

    func testItemTextsAndCounts() throws {
        var input = Self.factura()
        input.items?[0].code = String(repeating: "C", count: 26)
        input.items?[0].auxCode = ""
        input.items?[0].description = nil
        input.items?[0].details = Array(repeating: NameValueInput(name: "n", value: "v"), count: 4)
        input.items?[0].details?[1].value = nil
        XCTAssertEqual(
            violations(input).map(\.field),
            ["items[0].code", "items[0].auxCode", "items[0].description", "items[0].details", "items[0].details[1].value"])

        input = Self.factura()
        input.payments = nil
        input.items = []
        assertOnly("items", input)
        input.items = nil
        assertOnly("items", input)
        let line = ItemInput(description: "x", quantity: "1", unitPrice: "1", taxes: [TaxInput(code: "2", rateCode: "0")])
        input.items = Array(repeating: line, count: 1001)
        assertOnly("items", input, containing: "1000")
        // Over the limit, the lines within it are still checked; none past it.
        input.items?[999].quantity = "0"
        input.items?[1000].quantity = "0"
        XCTAssertEqual(violations(input).map(\.field), ["items", "items[999].quantity"])
        input.items = Array(repeating: line, count: 1000)
        XCTAssertEqual(try input.validated(today: Self.today).totals.total.text(places: 2), "1000.00")
    }

    func testControlCharactersAreRefusedEverywhere() {
        for character in ["\u{0}", "\u{9}", "\n", "\r", "\u{1F}", "\u{7F}", "\u{FFFE}", "\u{FFFF}"] {
            var input = Self.factura()
            input.buyer?.name = "A" + character
            input.buyer?.address = character
            input.items?[0].description = character + "B"
            input.items?[0].code = character
            input.items?[0].details?[0].name = character
            input.additionalInfo?[0].value = character
            XCTAssertEqual(
                violations(input).map(\.field),
                [
                    "buyer.name", "buyer.address", "items[0].code", "items[0].description", "items[0].details[0].name",
                    "additionalInfo[0].value",
                ],
                character.unicodeScalars.first!.escaped(asASCII: true))
        }
        var note = Self.creditNote()
        note.reason = "Devolución\n"
        assertOnly("reason", note, containing: "control")
        // The message names the noncharacters XML cannot carry as well.
        note.reason = "Devolución\u{FFFE}"
        assertOnly("reason", note, containing: "U+FFFE")
        // U+0080–U+009F are allowed in XML 1.0 and not in the forbidden range.
        note.reason = "Devolución\u{85}"
        XCTAssertNoThrow(try note.validated(today: Self.today))
    }

    func testPayments() {
        var input = Self.factura()
        input.payments = [
            PaymentInput(method: "02", total: "24.15"),
            PaymentInput(method: "01", total: "0", term: "1.5", termUnit: "semanas"),
            PaymentInput(method: "16", total: "1.001", term: "30"),
            PaymentInput(method: nil, total: nil, termUnit: "dias"),
        ]
        XCTAssertEqual(
            violations(input).map(\.field),
            [
                "payments[0].method", "payments[1].total", "payments[1].term", "payments[1].termUnit", "payments[2].total",
                "payments[2].termUnit", "payments[3].method", "payments[3].total", "payments[3].term",
            ])

        input.payments = [PaymentInput(method: "01", total: "20.00"), PaymentInput(method: "19", total: "4.14")]
        assertOnly("payments", input, containing: "24.14")
        // A bad method or term beside amounts that do not add up: both told at once.
        input.payments = [PaymentInput(method: "99", total: "1.00")]
        XCTAssertEqual(violations(input).map(\.field), ["payments[0].method", "payments"])
        input.payments = [PaymentInput(method: "01", total: "1.00", term: "1", termUnit: "anos")]
        XCTAssertEqual(violations(input).map(\.field), ["payments[0].termUnit", "payments"])
        input.payments = [PaymentInput(method: "99", total: "24.15")]
        XCTAssertEqual(violations(input).map(\.field), ["payments[0].method"])
        input.payments = [
            PaymentInput(method: "01", total: "20.00"), PaymentInput(method: "19", total: "4.15", term: "0", termUnit: "meses"),
        ]
        XCTAssertNoThrow(try input.validated(today: Self.today))
        input.payments = []
        XCTAssertNoThrow(try input.validated(today: Self.today))
        var note = Self.creditNote()
        note.payments = [PaymentInput(method: "01", total: "24.15")]
        assertOnly("payments", note)
    }

    /// A line's bad text (or a bad detail) leaves its amounts valid: the
    /// payments are still checked against the total, so that every
    /// violation is reported at once (SRI.md). A bad amount leaves no total
    /// to check them against.
    func testPaymentsAreCheckedBesideABadTextOfALine() {
        var input = Self.factura()
        input.items?[0].description = ""
        input.items?[0].details = [NameValueInput(name: "", value: "x")]
        input.payments = [PaymentInput(method: "01", total: "1.00")]
        let found = violations(input)
        XCTAssertEqual(found.map(\.field), ["items[0].description", "items[0].details[0].name", "payments"], "\(found)")
        XCTAssertTrue(found.last?.message.contains("the document total is 24.15") ?? false, "\(found)")
        input.payments = [PaymentInput(method: "01", total: "24.15")]
        XCTAssertEqual(violations(input).map(\.field), ["items[0].description", "items[0].details[0].name"])
        input.items?[0].quantity = "0"
        input.payments = [PaymentInput(method: "01", total: "1.00")]
        XCTAssertEqual(violations(input).map(\.field), ["items[0].description", "items[0].quantity", "items[0].details[0].name"])
    }

    func testAdditionalInfoCountsTheEmail() throws {
        var input = Self.factura()
        input.additionalInfo = Array(repeating: NameValueInput(name: "n", value: "v"), count: 14)
        XCTAssertNoThrow(try input.validated(today: Self.today))
        input.additionalInfo?.append(NameValueInput(name: "n", value: "v"))
        assertOnly("additionalInfo", input, containing: "email")
        input.buyer?.email = nil
        XCTAssertNoThrow(try input.validated(today: Self.today))
        input.additionalInfo?.append(NameValueInput(name: "n", value: "v"))
        assertOnly("additionalInfo", input)
        input.additionalInfo = [NameValueInput(name: "", value: String(repeating: "v", count: 301))]
        XCTAssertEqual(violations(input).map(\.field), ["additionalInfo[0].name", "additionalInfo[0].value"])
    }

    func testCreditNoteRules() {
        var note = Self.creditNote()
        note.modifiedDocument = nil
        note.reason = nil
        XCTAssertEqual(violations(note).map(\.field), ["modifiedDocument", "reason"])

        note = Self.creditNote()
        note.modifiedDocument = ModifiedDocumentInput(documentType: "04", number: "001-001-12345", issueDate: "2026-12-02")
        note.reason = String(repeating: "r", count: 301)
        XCTAssertEqual(
            violations(note).map(\.field),
            ["modifiedDocument.documentType", "modifiedDocument.number", "modifiedDocument.issueDate", "reason"])

        // Not after the credit note's own date, which may be earlier than today.
        note = Self.creditNote()
        note.issueDate = "2026-11-15"
        note.modifiedDocument?.issueDate = "2026-11-16"
        assertOnly("modifiedDocument.issueDate", note, containing: "2026-11-15")
        note.modifiedDocument?.issueDate = "2026-11-15"
        XCTAssertNoThrow(try note.validated(today: Self.today))
        // A bad date of its own still leaves today as the limit: both are told at once.
        note.issueDate = "2026-02-30"
        note.modifiedDocument?.issueDate = "2030-01-01"
        let both = violations(note)
        XCTAssertEqual(both.map(\.field), ["issueDate", "modifiedDocument.issueDate"])
        XCTAssertTrue(both.last?.message.contains("today (\(Self.today.iso))") == true, "\(both)")
        note.modifiedDocument?.issueDate = "2026-11-15"
        assertOnly("issueDate", note)
        note.issueDate = "2026-11-15"
        for bad in [
            "001-001-00000012a", "0010-01-000000123", "001-001-0000001234", "001_001_000000123", "000-001-000000123",
            "001-000-000000123", "001-001-000000000",
        ] {
            note.modifiedDocument?.number = bad
            assertOnly("modifiedDocument.number", note)
        }
        note.modifiedDocument?.number = "100-010-000000001"
        XCTAssertNoThrow(try note.validated(today: Self.today))
        note.modifiedDocument?.number = "001-001-000000123"

        var factura = Self.factura()
        factura.reason = "x"
        factura.modifiedDocument = Self.creditNote().modifiedDocument
        XCTAssertEqual(violations(factura).map(\.field), ["modifiedDocument", "reason"])
    }

    /// The largest body the rules take (1000 lines of the longest texts and
    /// amounts) is read whole: every line kept, the totals exact. Expected
    /// values worked out apart (Python's decimal): a line's gross 123.456789 ×
    /// 98765.432109 = 12193263.11, less 1.23, IVA 15 % 1828989.28; times 1000.
    func testTheLargestBodyIsReadWhole() throws {
        var input = Self.factura()
        input.payments = nil
        let long = String(repeating: "é", count: 300)
        input.items = Array(
            repeating: ItemInput(
                code: String(repeating: "c", count: 25), description: long, quantity: "123.456789", unitPrice: "98765.432109",
                discount: "1.23", taxes: [TaxInput(code: "2", rateCode: "4")],
                details: Array(repeating: NameValueInput(name: long, value: long), count: 3)),
            count: 1000)
        let comprobante = try input.validated(today: Self.today)
        XCTAssertEqual(comprobante.items.count, 1000)
        XCTAssertEqual(comprobante.totals.subtotal.text(places: 2), "12193261880.00")
        XCTAssertEqual(comprobante.totals.discount.text(places: 2), "1230.00")
        XCTAssertEqual(comprobante.totals.taxes.map { $0.value.text(places: 2) }, ["1828989280.00"])
        XCTAssertEqual(comprobante.totals.total.text(places: 2), "14022251160.00")
    }
}
