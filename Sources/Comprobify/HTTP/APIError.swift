import HTTPTypes
import Hummingbird

/// The one error type of the API, turned into an RFC 9457 problem document by
/// `ProblemMiddleware`. Anything else thrown by a handler becomes 500 INTERNAL.
public struct APIError: Error, Sendable {
    public struct FieldError: Sendable, Equatable {
        public let field: String
        public let message: String
    }

    /// Why a request met a state of things (409), for programs: `code` says
    /// CONFLICT, `detail` is for people, `reason` tells the cases apart.
    public enum ConflictReason: String, Sendable, CaseIterable {
        /// A tenant with this email, an issuer with this RUC and branch.
        case alreadyExists = "ALREADY_EXISTS"
        case alreadyVerified = "ALREADY_VERIFIED"
        case alreadyPromoted = "ALREADY_PROMOTED"
        /// The most keys, issuers or webhooks a tenant may have.
        case limitReached = "LIMIT_REACHED"
        /// An Idempotency-Key used with another issuer or body.
        case idempotencyKeyReused = "IDEMPOTENCY_KEY_REUSED"
        /// The counter passed 999999999.
        case sequentialExhausted = "SEQUENTIAL_EXHAUSTED"
        /// The issuer lacks what a comprobante states (head office address, a RUC ending in 001, text a comprobante can carry).
        case issuerNotReady = "ISSUER_NOT_READY"
        case certificateMissing = "CERTIFICATE_MISSING"
        /// Expired, not yet valid, or its key cannot sign.
        case certificateNotValid = "CERTIFICATE_NOT_VALID"
        /// A credit note's factura is not AUTHORIZED.
        case modifiedDocumentNotAuthorized = "MODIFIED_DOCUMENT_NOT_AUTHORIZED"
        /// A credit note's factura has another issue date or buyer.
        case modifiedDocumentMismatch = "MODIFIED_DOCUMENT_MISMATCH"
        case creditExceedsTotal = "CREDIT_EXCEEDS_TOTAL"
        /// The document's authorization is asked for before SRI gave one.
        case notAuthorizedYet = "NOT_AUTHORIZED_YET"
        /// The XML of a document numbered before comprobantes existed.
        case legacyDocument = "LEGACY_DOCUMENT"
    }

    public let status: HTTPResponse.Status
    public let code: String
    public let detail: String
    public var fieldErrors: [FieldError] = []
    public var headers: HTTPFields = [:]
    public var reason: ConflictReason?

    public static func validation(_ errors: [FieldError]) -> APIError {
        let detail = errors.count == 1 ? errors[0].message : "The request has \(errors.count) invalid fields."
        return APIError(status: .badRequest, code: "VALIDATION_ERROR", detail: detail, fieldErrors: errors)
    }

    public static func validation(field: String, _ message: String) -> APIError {
        validation([FieldError(field: field, message: message)])
    }

    public static func badRequest(_ detail: String) -> APIError {
        APIError(status: .badRequest, code: "BAD_REQUEST", detail: detail)
    }

    /// Every authentication failure says the same thing, whatever the cause.
    public static let unauthorized = APIError.unauthorized("A valid API key is required (Authorization: Bearer <api-key>).")

    public static func unauthorized(_ detail: String) -> APIError {
        APIError(status: .unauthorized, code: "UNAUTHORIZED", detail: detail, headers: [.wwwAuthenticate: "Bearer"])
    }

    public static func forbidden(_ detail: String) -> APIError {
        APIError(status: .forbidden, code: "FORBIDDEN", detail: detail)
    }

    public static func notFound(_ detail: String) -> APIError {
        APIError(status: .notFound, code: "NOT_FOUND", detail: detail)
    }

    public static func conflict(_ reason: ConflictReason, _ detail: String) -> APIError {
        APIError(status: .conflict, code: "CONFLICT", detail: detail, reason: reason)
    }

    public static func rateLimited(_ detail: String, retryAfter seconds: Int) -> APIError {
        APIError(
            status: .tooManyRequests, code: "RATE_LIMITED", detail: detail,
            headers: [.retryAfter: String(max(1, seconds))]
        )
    }

    public static let payloadTooLarge = APIError(
        status: .contentTooLarge, code: "PAYLOAD_TOO_LARGE", detail: "The request body is larger than 1 MiB."
    )

    public static let unavailable = APIError(
        status: .serviceUnavailable, code: "SERVICE_UNAVAILABLE",
        detail: "The service cannot reach its database right now. Retry shortly.",
        headers: [.retryAfter: "1"]
    )

    /// A statement the database cancelled (DB_STATEMENT_TIMEOUT_MS ran out, or
    /// an operator cancelled it): the database answers, so "cannot reach" would
    /// mislead; a request that keeps timing out asks for too much at once.
    public static let timedOut = APIError(
        status: .serviceUnavailable, code: "SERVICE_UNAVAILABLE",
        detail: "The database did not finish this request in time. Retry shortly; "
            + "if it keeps happening, ask for less at once (a narrower filter, a smaller limit).",
        headers: [.retryAfter: "1"]
    )

    /// The connection to the database broke once COMMIT was sent
    /// (`PostgresError.commitUncertain`): the change may have been made. No
    /// `Retry-After`: a client that repeats every 503 it is told to, without
    /// an Idempotency-Key, would issue a document twice.
    public static let commitUncertain = APIError(
        status: .serviceUnavailable, code: "SERVICE_UNAVAILABLE",
        detail: "The connection to the database broke while the change was being committed: it may have been made. "
            + "Look before making it again: POST /v1/documents sent again with the same Idempotency-Key answers "
            + "the document if it was issued, and issues it if it was not."
    )

    /// A transaction that kept failing on serialization or deadlock after every
    /// retry, or waited longer than the role's lock_timeout for a row lock.
    public static let contended = APIError(
        status: .serviceUnavailable, code: "SERVICE_UNAVAILABLE",
        detail: "The request kept conflicting with concurrent changes to the same data. Retry shortly.",
        headers: [.retryAfter: "1"]
    )

    /// The process's budget of request bodies being read at once is spent
    /// (`BodyBudget`, `HTTP_BODY_BUDGET_MB`).
    public static let bodiesBusy = APIError(
        status: .serviceUnavailable, code: "SERVICE_UNAVAILABLE",
        detail: "The server is reading too many request bodies at once. Retry shortly.",
        headers: [.retryAfter: "1"]
    )

    public static let internalError = APIError(
        status: .internalServerError, code: "INTERNAL", detail: "An unexpected error occurred."
    )
}
