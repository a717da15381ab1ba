import HTTPTypes

/// The header names the service reads or writes beyond the standard ones.
extension HTTPField.Name {
    static let requestID = HTTPField.Name("X-Request-Id")!
    static let idempotencyKey = HTTPField.Name("Idempotency-Key")!
    static let idempotentReplayed = HTTPField.Name("Idempotent-Replayed")!
    static let issuerID = HTTPField.Name("X-Issuer-Id")!
    static let forwardedFor = HTTPField.Name("X-Forwarded-For")!
}
