import Foundation
import Hummingbird
import Logging
import NIOCore

/// JSON responses.
enum Reply {
    static func json(_ members: [(String, JSONValue)], noStore: Bool = false) -> Response {
        json(.ok, members, noStore: noStore)
    }

    static func json(_ status: HTTPResponse.Status, _ members: [(String, JSONValue)], noStore: Bool = false) -> Response {
        var headers: HTTPFields = [.contentType: "application/json; charset=utf-8"]
        if noStore { headers[.cacheControl] = "no-store" }
        // `{"ok":true` and the members, written into one buffer (no array of
        // members made again with `ok` in front).
        var body: [UInt8] = []
        body.reserveCapacity(256)
        body.append(contentsOf: #"{"ok":true"#.utf8)
        for (name, value) in members {
            body.append(UInt8(ascii: ","))
            JSONValue.writeString(name, to: &body)
            body.append(UInt8(ascii: ":"))
            value.write(to: &body)
        }
        body.append(UInt8(ascii: "}"))
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }

    /// A JSON answer written as it is made: `write` hands each piece to the
    /// writer (the first one should come soon, as the status is sent with it).
    /// When `write` fails the answer ends short (the connection closes before
    /// the chunked body's end) and the failure is logged on `logger`: the
    /// request's own log line already said 200.
    static func jsonStream(
        logger: Logger, _ write: @escaping @Sendable (inout any ResponseBodyWriter) async throws -> Void
    ) -> Response {
        Response(
            status: .ok, headers: [.contentType: "application/json; charset=utf-8"],
            body: ResponseBody { writer in
                do {
                    try await write(&writer)
                } catch let error as ChannelError {
                    // The connection closed under the answer: the client went,
                    // or was cut off for not reading it (WriteStallHandler).
                    logger.info("a streamed answer ended short: its connection closed", metadata: ["error": "\(error)"])
                    throw error
                } catch {
                    logger.error("a streamed answer ended short", metadata: ["error": "\(error)"])
                    throw error
                }
                try await writer.finish(nil)
            })
    }

    /// The answer to a HEAD: `response`'s status and headers, its
    /// Content-Length when it has one and none when it was to be streamed,
    /// and no body (NIO sends none after a HEAD's headers anyway).
    static func head(of response: Response) -> Response {
        Response(status: response.status, headers: response.headers, body: ResponseBody(contentLength: nil) { try await $0.finish(nil) })
    }

    /// An XML document, as stored (application/xml; its declaration says UTF-8).
    static func xml(_ bytes: Data) -> Response {
        Response(
            status: .ok, headers: [.contentType: "application/xml; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }
}
