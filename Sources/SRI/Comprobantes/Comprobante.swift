/// The document types that can be issued.
public enum DocumentKind: String, Sendable, Hashable {
    case factura = "01"
    case creditNote = "04"
}

/// A validated, computed comprobante: everything its XML and its JSON
/// representation need, amounts already rounded as SRI.md "Arithmetic" says.
public enum Comprobante: Sendable, Equatable {
    case factura(Factura)
    case creditNote(CreditNote)

    public var kind: DocumentKind {
        switch self {
        case .factura: .factura
        case .creditNote: .creditNote
        }
    }

    public var issueDate: ComprobanteDate {
        switch self {
        case .factura(let factura): factura.issueDate
        case .creditNote(let note): note.issueDate
        }
    }

    public var buyer: Buyer {
        switch self {
        case .factura(let factura): factura.buyer
        case .creditNote(let note): note.buyer
        }
    }

    public var items: [LineItem] {
        switch self {
        case .factura(let factura): factura.items
        case .creditNote(let note): note.items
        }
    }

    public var totals: Totals {
        switch self {
        case .factura(let factura): factura.totals
        case .creditNote(let note): note.totals
        }
    }

    public var additionalInfo: [NameValue] {
        switch self {
        case .factura(let factura): factura.additionalInfo
        case .creditNote(let note): note.additionalInfo
        }
    }
}

public struct Factura: Sendable, Equatable {
    public var issueDate: ComprobanteDate
    public var buyer: Buyer
    public var items: [LineItem]
    public var totals: Totals
    /// Possibly empty: payments are optional.
    public var payments: [Payment]
    /// The client's entries, without the buyer's email (the XML writes that first).
    public var additionalInfo: [NameValue]
}

public struct CreditNote: Sendable, Equatable {
    public var issueDate: ComprobanteDate
    public var buyer: Buyer
    public var items: [LineItem]
    public var totals: Totals
    public var additionalInfo: [NameValue]
    public var modifiedDocument: ModifiedDocument
    public var reason: String
}

public struct Buyer: Sendable, Equatable {
    public var idType: String
    public var id: String
    public var name: String
    public var address: String?
    public var email: String?
}

public struct NameValue: Sendable, Equatable {
    public var name: String
    public var value: String
}

/// One line, with its amounts computed.
public struct LineItem: Sendable, Equatable {
    public var code: String?
    public var auxCode: String?
    public var description: String
    public var quantity: ExactDecimal
    public var unitPrice: ExactDecimal
    public var discount: ExactDecimal
    /// round2(quantity × unitPrice) − discount.
    public var subtotal: ExactDecimal
    /// Exactly one entry today (the IVA).
    public var taxes: [LineTax]
    public var details: [NameValue]

    /// The line with its subtotal and tax computed from the table's rate.
    public init(
        code: String?, auxCode: String?, description: String, quantity: ExactDecimal, unitPrice: ExactDecimal,
        discount: ExactDecimal, rate: TaxRate, details: [NameValue]
    ) {
        self.code = code
        self.auxCode = auxCode
        self.description = description
        self.quantity = quantity
        self.unitPrice = unitPrice
        self.discount = discount
        self.subtotal = LineItem.gross(quantity: quantity, unitPrice: unitPrice) - discount
        self.taxes = [LineTax(rate: rate, base: subtotal)]
        self.details = details
    }

    /// round2(quantity × unitPrice), the amount a discount may not exceed.
    public static func gross(quantity: ExactDecimal, unitPrice: ExactDecimal) -> ExactDecimal {
        (quantity * unitPrice).rounded(places: 2)
    }
}

/// A tax on one line: `value` = round2(base × rate / 100).
public struct LineTax: Sendable, Equatable {
    public var code: String
    public var rateCode: String
    /// In percent, from `TaxTable`.
    public var rate: ExactDecimal
    public var base: ExactDecimal
    public var value: ExactDecimal

    public init(rate: TaxRate, base: ExactDecimal) {
        self.code = rate.code
        self.rateCode = rate.rateCode
        self.rate = rate.percent
        self.base = base
        self.value = (base * rate.percent).dividedByPowerOfTen(2).rounded(places: 2)
    }
}

/// The sums of a document's lines.
public struct Totals: Sendable, Equatable {
    /// Σ line subtotals (`totalSinImpuestos`).
    public var subtotal: ExactDecimal
    /// Σ line discounts (`totalDescuento`).
    public var discount: ExactDecimal
    /// One entry per (code, rateCode), in the order the lines first name them.
    public var taxes: [TaxTotal]
    /// Always 0 (`propina`).
    public var tip: ExactDecimal
    /// subtotal + Σ tax values (`importeTotal`, `valorModificacion`).
    public var total: ExactDecimal

    public init(items: [LineItem]) {
        var subtotal = ExactDecimal.zero
        var discount = ExactDecimal.zero
        var taxes: [TaxTotal] = []
        var position: [String: Int] = [:]
        for item in items {
            subtotal += item.subtotal
            discount += item.discount
            for tax in item.taxes {
                let key = tax.code + "/" + tax.rateCode
                if let index = position[key] {
                    taxes[index].base += tax.base
                    taxes[index].value += tax.value
                } else {
                    position[key] = taxes.count
                    taxes.append(TaxTotal(code: tax.code, rateCode: tax.rateCode, rate: tax.rate, base: tax.base, value: tax.value))
                }
            }
        }
        self.subtotal = subtotal
        self.discount = discount
        self.taxes = taxes
        self.tip = .zero
        self.total = taxes.reduce(subtotal) { $0 + $1.value }
    }
}

public struct TaxTotal: Sendable, Equatable {
    public var code: String
    public var rateCode: String
    /// In percent.
    public var rate: ExactDecimal
    public var base: ExactDecimal
    public var value: ExactDecimal
}

public struct Payment: Sendable, Equatable {
    public var method: String
    public var total: ExactDecimal
    public var term: Int?
    public var termUnit: String?
}

/// The factura a credit note modifies.
public struct ModifiedDocument: Sendable, Equatable {
    /// `"01"`.
    public var documentType: String
    /// `NNN-NNN-NNNNNNNNN`.
    public var number: String
    public var issueDate: ComprobanteDate
}
