/// A request body for `POST /v1/documents` as the HTTP layer hands it over:
/// plain values, nil for a field that was absent or null, and every amount as
/// the decimal text the client wrote (a JSON number's own text, or a string), so
/// nothing passes through floating point. Nothing here is checked yet; see
/// `validated(today:)`.
public struct ComprobanteInput: Sendable, Equatable {
    /// `"01"` factura, `"04"` nota de crédito.
    public var documentType: String?
    /// `YYYY-MM-DD`; nil means today.
    public var issueDate: String?
    public var buyer: BuyerInput?
    public var items: [ItemInput]?
    /// Factura only.
    public var payments: [PaymentInput]?
    public var additionalInfo: [NameValueInput]?
    /// Nota de crédito only.
    public var modifiedDocument: ModifiedDocumentInput?
    /// Nota de crédito only.
    public var reason: String?

    public init(
        documentType: String?, issueDate: String? = nil, buyer: BuyerInput?, items: [ItemInput]?,
        payments: [PaymentInput]? = nil, additionalInfo: [NameValueInput]? = nil,
        modifiedDocument: ModifiedDocumentInput? = nil, reason: String? = nil
    ) {
        self.documentType = documentType
        self.issueDate = issueDate
        self.buyer = buyer
        self.items = items
        self.payments = payments
        self.additionalInfo = additionalInfo
        self.modifiedDocument = modifiedDocument
        self.reason = reason
    }
}

public struct BuyerInput: Sendable, Equatable {
    /// `04` RUC, `05` cédula, `06` pasaporte, `07` consumidor final, `08` exterior.
    public var idType: String?
    public var id: String?
    public var name: String?
    public var address: String?
    public var email: String?

    public init(idType: String?, id: String?, name: String?, address: String? = nil, email: String? = nil) {
        self.idType = idType
        self.id = id
        self.name = name
        self.address = address
        self.email = email
    }
}

public struct ItemInput: Sendable, Equatable {
    public var code: String?
    public var auxCode: String?
    public var description: String?
    /// Decimal text.
    public var quantity: String?
    /// Decimal text.
    public var unitPrice: String?
    /// Decimal text; nil means 0.
    public var discount: String?
    public var taxes: [TaxInput]?
    public var details: [NameValueInput]?

    public init(
        code: String? = nil, auxCode: String? = nil, description: String?, quantity: String?, unitPrice: String?,
        discount: String? = nil, taxes: [TaxInput]?, details: [NameValueInput]? = nil
    ) {
        self.code = code
        self.auxCode = auxCode
        self.description = description
        self.quantity = quantity
        self.unitPrice = unitPrice
        self.discount = discount
        self.taxes = taxes
        self.details = details
    }
}

public struct TaxInput: Sendable, Equatable {
    public var code: String?
    public var rateCode: String?

    public init(code: String?, rateCode: String?) {
        self.code = code
        self.rateCode = rateCode
    }
}

/// An item's detail or an additional-information entry.
public struct NameValueInput: Sendable, Equatable {
    public var name: String?
    public var value: String?

    public init(name: String?, value: String?) {
        self.name = name
        self.value = value
    }
}

public struct PaymentInput: Sendable, Equatable {
    /// SRI's `formaPago`: `01`, `15`–`21`.
    public var method: String?
    /// Decimal text.
    public var total: String?
    /// Decimal text of a whole number (`30`).
    public var term: String?
    /// `"dias"` or `"meses"`.
    public var termUnit: String?

    public init(method: String?, total: String?, term: String? = nil, termUnit: String? = nil) {
        self.method = method
        self.total = total
        self.term = term
        self.termUnit = termUnit
    }
}

public struct ModifiedDocumentInput: Sendable, Equatable {
    public var documentType: String?
    /// `NNN-NNN-NNNNNNNNN`.
    public var number: String?
    /// `YYYY-MM-DD`.
    public var issueDate: String?

    public init(documentType: String?, number: String?, issueDate: String?) {
        self.documentType = documentType
        self.number = number
        self.issueDate = issueDate
    }
}
