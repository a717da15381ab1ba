import Hummingbird
import NIOCore

/// An `APIError` as an RFC 9457 problem document (application/problem+json).
enum Problem {
    static func response(_ error: APIError, instance: String, requestID: String) -> Response {
        var headers = error.headers
        headers[.contentType] = "application/problem+json"
        return Response(
            status: error.status, headers: headers,
            body: .init(byteBuffer: ByteBuffer(string: document(error, instance: instance, requestID: requestID)))
        )
    }

    /// The problem document's JSON text.
    static func document(_ error: APIError, instance: String, requestID: String) -> String {
        var members: [(String, JSONValue)] = [
            ("ok", false),
            ("type", "about:blank"),
            ("title", .string(error.status.reasonPhrase)),
            ("status", JSONValue(Int(error.status.code))),
            ("code", .string(error.code)),
            ("detail", .string(error.detail)),
            ("instance", .string(instance)),
            ("requestId", .string(requestID)),
        ]
        if let reason = error.reason {
            members.append(("reason", .string(reason.rawValue)))
        }
        if !error.fieldErrors.isEmpty {
            members.append(
                ("errors", .array(error.fieldErrors.map { .object([("field", .string($0.field)), ("message", .string($0.message))]) }))
            )
        }
        return JSONValue.object(members).serialized
    }
}
