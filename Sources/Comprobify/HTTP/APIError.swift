import HTTPTypes
import Hummingbird

/// The one error type of the API, turned into an RFC 9457 problem document by
/// `ProblemMiddleware`. Anything else thrown by a handler becomes 500 INTERNAL.
public struct APIError: Error, Sendable {
    public struct FieldError: Sendable, Equatable {
        public let field: String
        public let message: String
    }

    public let status: HTTPResponse.Status
    public let code: String
    public let detail: String
    public var fieldErrors: [FieldError] = []
    public var headers: HTTPFields = [:]

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

    public static func conflict(_ detail: String) -> APIError {
        APIError(status: .conflict, code: "CONFLICT", detail: detail)
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
