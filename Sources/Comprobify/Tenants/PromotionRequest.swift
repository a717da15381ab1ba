import Foundation

/// A validated body: `{}` / no body, or `{"initialSequentials": [...]}`.
/// Validation needs no database and is linear in the body: a list longer than
/// `maximumEntries` is refused before any entry is looked at.
struct PromotionRequest: Sendable {
    let entries: [Promotion.Entry]
    /// Every issuer id and document type the list names in a well-formed
    /// value, with the entry's place in the list: what the database checks
    /// (`problems(unknownIssuers:unknownTypes:)`), also in an entry whose
    /// other fields failed, so that a body's faults are all reported at once.
    private(set) var issuers: [(index: Int, id: Int64)] = []
    private(set) var types: [(index: Int, code: String)] = []

    /// A body whose fields failed the checks that need no database: those
    /// faults, and what the database must still check (`request`).
    struct Invalid: Error {
        let problems: [APIError.FieldError]
        let request: PromotionRequest
    }

    /// Issuers a promotion can seed counters for, times the document types:
    /// one entry per issuer × type is the most a list can say without a
    /// duplicate. A tenant has at most this many issuers (`IssuersStore.limit`).
    static let maximumIssuers = IssuersStore.limit
    static let maximumEntries = maximumIssuers * DocumentType.codes.count

    init(entries: [Promotion.Entry] = []) {
        self.entries = entries
        issuers = entries.enumerated().map { ($0.offset, $0.element.issuerID) }
        types = entries.enumerated().map { ($0.offset, $0.element.documentType) }
    }

    init(_ input: Input) throws {
        var input = input
        var entries: [Promotion.Entry] = []
        var issuers: [(index: Int, id: Int64)] = []
        var types: [(index: Int, code: String)] = []
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
                if let issuerID {
                    issuers.append((index, issuerID))
                } else {
                    input.fail("\(field).issuerId", "issuerId must be a positive integer.")
                }
                var documentType: String?
                if case .string(let text)? = item["documentType"] {
                    // Every code is two digits; anything else cannot name a type.
                    if Format.digits(text, count: 2) {
                        documentType = text
                        types.append((index, text))
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
        self.entries = entries
        self.issuers = issuers
        self.types = types
        if !input.errors.isEmpty { throw Invalid(problems: input.errors, request: self) }
    }

    /// The distinct issuer ids and document types the list names.
    var issuerIDs: [Int64] { Array(Set(issuers.map(\.id))) }
    var documentTypes: [String] { Array(Set(types.map(\.code))) }

    /// The faults the database found: each entry naming an issuer that is not
    /// the tenant's, or a document type that does not exist.
    func problems(unknownIssuers: [Int64], unknownTypes: [String]) -> [APIError.FieldError] {
        let unknownIssuers = Set(unknownIssuers)
        let unknownTypes = Set(unknownTypes)
        return issuers.filter { unknownIssuers.contains($0.id) }.map {
            .init(field: "initialSequentials[\($0.index)].issuerId", message: "No issuer \($0.id) in this tenant.")
        }
            + types.filter { unknownTypes.contains($0.code) }.map {
                .init(field: "initialSequentials[\($0.index)].documentType", message: "No document type \"\($0.code)\".")
            }
    }

    private struct Key: Hashable {
        let issuerID: Int64
        let documentType: String
    }
}
