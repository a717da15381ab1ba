import Foundation
import SRI

/// The computed part of a Document as API.md/SRI.md show it: buyer, items with
/// their subtotals and taxes, totals, payments, additional info and, for a
/// credit note, the modified document and the reason. Money is a decimal string
/// with 2 places; quantities and unit prices keep the places the client gave.
/// Stored once, at issue, as the `body` of the document.
enum DocumentBody {
    static func json(_ comprobante: Comprobante) -> JSONValue {
        var members: [(String, JSONValue)] = [
            ("buyer", buyer(comprobante.buyer)),
            ("items", .array(comprobante.items.map(item))),
            ("totals", totals(comprobante.totals)),
        ]
        switch comprobante {
        case .factura(let factura):
            members.append(("payments", .array(factura.payments.map(payment))))
            members.append(("additionalInfo", .array(factura.additionalInfo.map(nameValue))))
        case .creditNote(let note):
            members.append(("additionalInfo", .array(note.additionalInfo.map(nameValue))))
            members.append(
                (
                    "modifiedDocument",
                    .object([
                        ("documentType", .string(note.modifiedDocument.documentType)),
                        ("number", .string(note.modifiedDocument.number)),
                        ("issueDate", .string(note.modifiedDocument.issueDate.iso)),
                    ])
                ))
            members.append(("reason", .string(note.reason)))
        }
        return .object(members)
    }

    static func money(_ value: ExactDecimal) -> JSONValue {
        .string(value.text(places: 2))
    }

    static func buyer(_ buyer: Buyer) -> JSONValue {
        .object([
            ("idType", .string(buyer.idType)),
            ("id", .string(buyer.id)),
            ("name", .string(buyer.name)),
            ("address", JSONValue(buyer.address)),
            ("email", JSONValue(buyer.email)),
        ])
    }

    static func item(_ item: LineItem) -> JSONValue {
        .object([
            ("code", JSONValue(item.code)),
            ("auxCode", JSONValue(item.auxCode)),
            ("description", .string(item.description)),
            ("quantity", .string(item.quantity.description)),
            ("unitPrice", .string(item.unitPrice.description)),
            ("discount", money(item.discount)),
            ("subtotal", money(item.subtotal)),
            (
                "taxes",
                .array(
                    item.taxes.map { tax in
                        .object([
                            ("code", .string(tax.code)), ("rateCode", .string(tax.rateCode)), ("rate", money(tax.rate)),
                            ("base", money(tax.base)), ("value", money(tax.value)),
                        ])
                    })
            ),
            ("details", .array(item.details.map(nameValue))),
        ])
    }

    static func totals(_ totals: Totals) -> JSONValue {
        .object([
            ("subtotal", money(totals.subtotal)),
            ("discount", money(totals.discount)),
            (
                "taxes",
                .array(
                    totals.taxes.map { tax in
                        .object([
                            ("code", .string(tax.code)), ("rateCode", .string(tax.rateCode)), ("rate", money(tax.rate)),
                            ("base", money(tax.base)), ("value", money(tax.value)),
                        ])
                    })
            ),
            ("tip", money(totals.tip)),
            ("total", money(totals.total)),
        ])
    }

    static func payment(_ payment: Payment) -> JSONValue {
        .object([
            ("method", .string(payment.method)),
            ("total", money(payment.total)),
            ("term", payment.term.map { JSONValue(Int64($0)) } ?? .null),
            ("termUnit", JSONValue(payment.termUnit)),
        ])
    }

    static func nameValue(_ pair: NameValue) -> JSONValue {
        .object([("name", .string(pair.name)), ("value", .string(pair.value))])
    }
}

/// Builds, checks and signs a comprobante's XML. `prepare` builds the tree and
/// checks it against the official schema before the number is taken; `signed`
/// writes the number in and signs, the only XML work done while the counter's
/// row lock is held.
struct DocumentSigning: Sendable {
    let secretBox: SecretBox
    let algorithm: SignatureAlgorithm
    let identities = SigningIdentityCache()

    /// Builds the comprobante and checks it against the official schema. A
    /// failure here or in `signed` is a bug, never the client's fault (500);
    /// the transaction rolls back, so no number is used.
    func prepare(_ comprobante: Comprobante, issuer: ComprobanteIssuer) throws -> PreparedComprobante {
        try PreparedComprobante.prepare(comprobante, issuer: issuer)
    }

    func signed(_ prepared: PreparedComprobante, accessKey: String, sequential: Int, identity: SigningIdentity, now: Date) throws -> [UInt8]
    {
        try prepared.signed(
            numbering: .init(accessKey: accessKey, sequential: sequential), identity: identity, algorithm: algorithm, signingTime: now)
    }
}
