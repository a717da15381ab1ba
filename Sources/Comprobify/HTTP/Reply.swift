import Foundation
import Hummingbird
import NIOCore

/// JSON responses.
enum Reply {
    static func json(_ members: [(String, JSONValue)], noStore: Bool = false) -> Response {
        json(.ok, members, noStore: noStore)
    }

    static func json(_ status: HTTPResponse.Status, _ members: [(String, JSONValue)], noStore: Bool = false) -> Response {
        var headers: HTTPFields = [.contentType: "application/json; charset=utf-8"]
        if noStore { headers[.cacheControl] = "no-store" }
        let body = JSONValue.object([("ok", true)] + members).utf8
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }

    /// An XML document, as stored (application/xml; its declaration says UTF-8).
    static func xml(_ bytes: Data) -> Response {
        Response(
            status: .ok, headers: [.contentType: "application/xml; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }
}
