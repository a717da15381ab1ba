import Foundation
import Hummingbird
import NIOCore

/// A request body read and parsed as JSON, with typed accessors that collect
/// field errors; `validated()` throws them all at once as 400 VALIDATION_ERROR.
struct Input {
    let bytes: [UInt8]
    let value: JSONValue
    private(set) var errors: [APIError.FieldError] = []

    /// Reads at most 1 MiB (413 past that). An empty body is `{}` when `allowEmpty`.
    static func read(_ request: Request, from peer: String, allowEmpty: Bool = false) async throws -> Input {
        try parse(try await collect(request, from: peer), of: request, allowEmpty: allowEmpty)
    }

    /// The body's bytes: at most 1 MiB (413 past that). `peer` is whom its
    /// bytes are counted for in `BodyBudget` (the contexts' `bodyPeer`).
    static func collect(_ request: Request, from peer: String) async throws -> [UInt8] {
        if let length = request.headers[.contentLength].flatMap(Int.init), length > RequestBodyLimit.bytes {
            throw APIError.payloadTooLarge
        }
        // Each piece is counted in the process's budget of bodies being read
        // (`BodyBudget`) until the body is read whole or refused.
        var buffer = ByteBuffer()
        var taken = 0
        defer { BodyBudget.shared.give(taken, for: peer) }
        var pieces = request.body.makeAsyncIterator()
        while true {
            let piece: ByteBuffer?
            do {
                piece = try await pieces.next()
            } catch {
                // The client closed or broke the stream before the declared length.
                throw APIError.badRequest("The request body ended before its declared length.")
            }
            guard let piece else { break }
            guard buffer.readableBytes + piece.readableBytes <= RequestBodyLimit.bytes else { throw APIError.payloadTooLarge }
            guard BodyBudget.shared.take(piece.readableBytes, for: peer) else { throw APIError.bodiesBusy }
            taken += piece.readableBytes
            if buffer.readableBytes == 0 {
                buffer = piece
            } else {
                buffer.writeImmutableBuffer(piece)
            }
        }
        return Array(buffer.readableBytesView)
    }

    /// `parse` for the body `request` carried: 400 naming Content-Encoding
    /// when it was sent with one other than identity (read as it is, it would
    /// be another body than the client meant). A body's 400, so routes call it
    /// where they parse, after the credential is looked at.
    static func parse(_ bytes: [UInt8], of request: Request, allowEmpty: Bool) throws -> Input {
        if let encoding = request.headers[.contentEncoding], !isIdentity(encoding) {
            throw APIError.validation(
                field: "Content-Encoding",
                "Request bodies are taken as sent: send the JSON without a Content-Encoding (none but identity is supported).")
        }
        return try parse(bytes, allowEmpty: allowEmpty)
    }

    /// `identity` (in any case, with spaces around), the only content coding taken.
    static func isIdentity(_ encoding: String) -> Bool {
        encoding.trimmingCharacters(in: .whitespaces).lowercased() == "identity"
    }

    /// The body as a JSON object; 400 naming `body` when it is not one. An
    /// empty body is `{}` when `allowEmpty`.
    static func parse(_ bytes: [UInt8], allowEmpty: Bool) throws -> Input {
        if bytes.allSatisfy({ [0x20, 0x09, 0x0a, 0x0d].contains($0) }) {
            guard allowEmpty else { throw APIError.validation(field: "body", "A JSON object is required.") }
            return Input(bytes: bytes, value: .object([]))
        }
        let value: JSONValue
        do {
            value = try JSONParser.parse(bytes)
        } catch {
            if let path = error.repeatedPath {
                throw APIError.validation(field: path, "The body names a member twice: \(error.message).")
            }
            // In a member of the body; the body itself, or an array as the body, is the body's.
            if let path = error.valuePath, path.first != "[" {
                throw APIError.validation(field: path.isEmpty ? "body" : path, "The value is not allowed: \(error.message).")
            }
            throw APIError.validation(field: "body", "The body is not valid JSON: \(error.message).")
        }
        guard case .object = value else {
            throw APIError.validation(field: "body", "The body must be a JSON object, not \(value.typeName).")
        }
        return Input(bytes: bytes, value: value)
    }

    init(bytes: [UInt8], value: JSONValue) {
        self.bytes = bytes
        self.value = value
    }

    mutating func fail(_ field: String, _ message: String) {
        errors.append(.init(field: field, message: message))
    }

    /// A string member. Absent or null gives nil (an error when `required`).
    /// Lengths count Unicode scalars.
    mutating func string(_ field: String, required: Bool, length: ClosedRange<Int>) -> String? {
        switch value[field] {
        case nil, .null?:
            if required { fail(field, "\(field) is required.") }
            return nil
        case .string(let text)?:
            let count = text.unicodeScalars.count
            guard length.contains(count) else {
                fail(field, "\(field) must be \(length.lowerBound) to \(length.upperBound) characters long (got \(count)).")
                return nil
            }
            return text
        case let other?:
            fail(field, "\(field) must be a string, not \(other.typeName).")
            return nil
        }
    }

    /// A string member that must be one of `allowed`; absent is nil (an error
    /// when `required`), and null is refused like any other value.
    mutating func choice(_ field: String, required: Bool, allowed: [String]) -> String? {
        switch value[field] {
        case nil:
            if required { fail(field, "\(field) is required.") }
            return nil
        case .string(let text)? where allowed.contains(text):
            return text
        default:
            fail(field, "\(field) must be one of \(allowed.map { "\"\($0)\"" }.joined(separator: ", ")).")
            return nil
        }
    }

    /// A string member matching `pattern` (checked by `matches`).
    mutating func formatted(_ field: String, required: Bool, rule: String, matches: (String) -> Bool) -> String? {
        switch value[field] {
        case nil, .null?:
            if required { fail(field, "\(field) is required.") }
            return nil
        case .string(let text)? where matches(text):
            return text
        default:
            fail(field, "\(field) must be \(rule).")
            return nil
        }
    }

    /// A boolean member; absent gives nil. Null is refused like any other non-boolean.
    mutating func boolean(_ field: String) -> Bool? {
        switch value[field] {
        case nil: return nil
        case .bool(let flag)?: return flag
        case let other?:
            fail(field, "\(field) must be true or false, not \(other.typeName).")
            return nil
        }
    }

    /// Whether the member is present (null counts as present: it clears a value).
    func has(_ field: String) -> Bool {
        value[field] != nil
    }

    func validated() throws {
        if !errors.isEmpty { throw APIError.validation(errors) }
    }

    /// An integer JSON value (a whole number such as `5` or `5.0`) within `range`.
    static func integer(_ value: JSONValue?, in range: ClosedRange<Int64>) -> Int64? {
        guard case .number(let text)? = value else { return nil }
        if let exact = Int64(text) { return range.contains(exact) ? exact : nil }
        guard let double = Double(text), double.rounded() == double, abs(double) < 9.0e15 else { return nil }
        let whole = Int64(double)
        return range.contains(whole) ? whole : nil
    }
}

extension Database {
    /// The JSON body of a request made with an API key. A body that is not a
    /// JSON object is answered only after the credential has been looked at,
    /// so a revoked or unknown key gets its 401 whatever it sent (the order of
    /// every route: 401, 404, 400); one over 1 MiB is 413 before.
    func input(_ request: Request, _ context: TenantRequestContext, allowEmpty: Bool = false) async throws -> Input {
        let bytes = try await Input.collect(request, from: context.bodyPeer)
        return try await checkAfterAuthenticating(for: context.token, facts: context.facts) {
            try Input.parse(bytes, of: request, allowEmpty: allowEmpty)
        }
    }
}
