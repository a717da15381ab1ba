import Foundation

/// A validated body: `{}` / no body, or `{"initialSequentials": [...]}`.
/// Validation needs no database and is linear in the body: a list longer than
/// `maximumEntries` is refused before any entry is looked at.
struct PromotionRequest: Sendable {
    let entries: [Promotion.Entry]

    /// Issuers a promotion can seed counters for, times the document types:
    /// one entry per issuer × type is the most a list can say without a
    /// duplicate. A tenant has at most this many issuers (`IssuersStore.limit`).
    static let maximumIssuers = IssuersStore.limit
    static let maximumEntries = maximumIssuers * DocumentType.codes.count

    init(entries: [Promotion.Entry] = []) {
        self.entries = entries
    }

    init(_ input: Input) throws {
        var input = input
        var entries: [Promotion.Entry] = []
        switch input.value["initialSequentials"] {
        case nil:
            // Absent. null is not absent here: API.md answers 400 for anything
            // that is not an array.
            break
        case .array(let items)? where items.count > PromotionRequest.maximumEntries:
            throw APIError.validation(
                field: "initialSequentials",
                "initialSequentials may list at most \(PromotionRequest.maximumEntries) entries "
                    + "(\(PromotionRequest.maximumIssuers) issuers × \(DocumentType.codes.count) document types), not \(items.count).")
        case .array(let items)?:
            var seen = Set<Key>()
            seen.reserveCapacity(items.count)
            for (index, item) in items.enumerated() {
                let field = "initialSequentials[\(index)]"
                guard case .object = item else {
                    input.fail(field, "\(field) must be an object.")
                    continue
                }
                let issuerID = Input.integer(item["issuerId"], in: 1...Int64.max)
                if issuerID == nil { input.fail("\(field).issuerId", "issuerId must be a positive integer.") }
                var documentType: String?
                if case .string(let text)? = item["documentType"] {
                    // Every code is two digits; anything else cannot name a type.
                    if Format.digits(text, count: 2) {
                        documentType = text
                    } else {
                        input.fail("\(field).documentType", "No document type \(JSONValue.string(text).serialized).")
                    }
                } else {
                    input.fail("\(field).documentType", "documentType must be a string such as \"01\".")
                }
                let sequential = Input.integer(item["sequential"], in: 1...999_999_999)
                if sequential == nil {
                    input.fail("\(field).sequential", "sequential must be an integer from 1 to 999999999.")
                }
                guard let issuerID, let documentType, let sequential else { continue }
                if !seen.insert(Key(issuerID: issuerID, documentType: documentType)).inserted {
                    input.fail(field, "issuer \(issuerID) × document type \(documentType) is listed twice.")
                    continue
                }
                entries.append(Promotion.Entry(issuerID: issuerID, documentType: documentType, sequential: sequential))
            }
        case .some(let other):
            input.fail("initialSequentials", "initialSequentials must be an array, not \(other.typeName).")
        }
        try input.validated()
        self.entries = entries
    }

    /// The distinct issuer ids and document types the entries name.
    var issuerIDs: [Int64] { Array(Set(entries.map(\.issuerID))) }
    var documentTypes: [String] { Array(Set(entries.map(\.documentType))) }

    private struct Key: Hashable {
        let issuerID: Int64
        let documentType: String
    }
}
