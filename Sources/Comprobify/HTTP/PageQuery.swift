import Hummingbird

/// The query of a list route: each parameter given at most once (`limit=2&limit=3`
/// asks two things at once), filters from their lists of values, `limit` from
/// 1 to 200 (50 unless asked) and `after`, the id the page starts after (the
/// previous page's `nextAfter`). Every violation is collected, in the order
/// read, so that one 400 names them all.
struct PageQuery {
    private let query: Parameters
    private var errors: [APIError.FieldError] = []

    init(_ request: Request) {
        query = request.uri.queryParameters
    }

    /// The parameter's one value; nil when absent (or given more than once, an error).
    mutating func single(_ name: String) -> String? {
        let values = query.getAll(name)
        guard values.count <= 1 else {
            errors.append(.init(field: name, message: "\(name) must be given at most once."))
            return nil
        }
        return values.first.map { String($0) }
    }

    /// `single(name)` when it is one of `allowed`; another value is an error.
    mutating func oneOf(_ name: String, _ allowed: [String]) -> String? {
        guard let value = single(name) else { return nil }
        guard allowed.contains(value) else {
            errors.append(.init(field: name, message: "\(name) must be one of \(allowed.joined(separator: ", "))."))
            return nil
        }
        return value
    }

    /// `limit` and `after` (`afterMeaning`: what its id is of, for the message).
    mutating func page(afterMeaning: String) -> (limit: Int, after: Int64) {
        var page = (limit: 50, after: Int64(0))
        if let value = single("limit") {
            // Digits only, as X-Issuer-Id: Int("+5") would take a sign.
            if Format.digits(value), let parsed = Int(value), (1...200).contains(parsed) {
                page.limit = parsed
            } else {
                errors.append(.init(field: "limit", message: "limit must be an integer from 1 to 200."))
            }
        }
        if let value = single("after") {
            if Format.digits(value), let parsed = Int64(value) {
                page.after = parsed
            } else {
                errors.append(.init(field: "after", message: "after must be \(afterMeaning) (a non-negative integer)."))
            }
        }
        return page
    }

    /// Throws the violations collected, if any.
    func validated() throws {
        if !errors.isEmpty { throw APIError.validation(errors) }
    }
}
