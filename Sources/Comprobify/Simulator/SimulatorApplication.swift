import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore

/// The request context of the local SRI: it keeps the channel, so an answer
/// can be lost on purpose by closing the connection.
public struct SimulatorRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    let channel: any Channel

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }

    /// Comprobantes travel in base64 inside the envelope.
    public var maxUploadSize: Int { 16 << 20 }
}

/// The local SRI's routes: both services (under /comprobantes-electronicos-ws
/// and at the root, so either base URL works) and the control API
/// (docs/sri-simulator.md).
public func buildSimulatorRouter(simulator: SRISimulator) -> Router<SimulatorRequestContext> {
    let router = Router(context: SimulatorRequestContext.self)
    for prefix in ["/comprobantes-electronicos-ws", ""] {
        router.post("\(prefix)/RecepcionComprobantesOffline") { request, context in
            let body = try await request.body.collect(upTo: context.maxUploadSize)
            return try await reply(await simulator.receive(Array(body.readableBytesView)), context: context)
        }
        router.post("\(prefix)/AutorizacionComprobantesOffline") { request, context in
            let body = try await request.body.collect(upTo: context.maxUploadSize)
            return try await reply(await simulator.authorize(Array(body.readableBytesView)), context: context)
        }
    }

    let control = router.group("control")
    control.post("faults") { request, context in
        let body = try await request.body.collect(upTo: 64 << 10)
        let update: SRISimulatorFaults
        do {
            update = try JSONDecoder().decode(SRISimulatorFaults.self, from: Data(body.readableBytesView))
        } catch {
            return jsonResponse(["error": "the body is not a faults object"], status: .badRequest)
        }
        do throws(SRISimulatorControlError) {
            try await simulator.setFaults(update)
        } catch {
            return jsonResponse(["error": error.reason], status: .badRequest)
        }
        return jsonResponse(await simulator.currentFaults())
    }
    control.get("faults") { _, _ in
        jsonResponse(await simulator.currentFaults())
    }
    control.get("received") { _, _ in
        let keys = await simulator.received()
        return jsonResponse(ReceivedReport(totalReceptions: keys.values.reduce(0) { $0 + $1.receptions }, keys: keys))
    }
    control.post("reset") { _, _ in
        await simulator.reset()
        return Response(status: .noContent)
    }
    return router
}

/// The local SRI as an application: `comprobify sri-simulator` runs it, and
/// tests run it on a free port (port 0) with HummingbirdTesting's live mode.
public func buildSimulator(
    simulator: SRISimulator, host: String = "127.0.0.1", port: Int = 8090, logger: Logger
) -> some ApplicationProtocol {
    Application(
        router: buildSimulatorRouter(simulator: simulator),
        configuration: .init(address: .hostname(host, port: port), serverName: "comprobify-sri-simulator"),
        onServerRunning: { channel in
            logger.info("SRI simulator listening", metadata: ["address": "\(channel.localAddress?.description ?? "?")"])
        },
        logger: logger
    )
}

struct ReceivedReport: Encodable {
    var totalReceptions: Int
    var keys: [String: SRISimulatorKeyRecord]
}

private func reply(_ reply: SimulatorReply, context: SimulatorRequestContext) async throws -> Response {
    switch reply {
    case .answer(let bytes, let delay):
        try await pause(delay)
        return xmlResponse(bytes, status: .ok)
    case .serverError(let bytes, let delay):
        try await pause(delay)
        return xmlResponse(bytes, status: .internalServerError)
    case .dropConnection:
        try? await context.channel.close().get()
        throw LostAnswer()
    }
}

/// Thrown after closing the connection on purpose: nothing is written.
struct LostAnswer: Error {}

private func pause(_ milliseconds: Int) async throws {
    if milliseconds > 0 { try await Task.sleep(for: .milliseconds(milliseconds)) }
}

private func xmlResponse(_ bytes: [UInt8], status: HTTPResponse.Status) -> Response {
    Response(
        status: status,
        headers: [.contentType: "text/xml;charset=UTF-8"],
        body: .init(byteBuffer: ByteBuffer(bytes: bytes))
    )
}

private func jsonResponse(_ value: some Encodable, status: HTTPResponse.Status = .ok) -> Response {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    let data = (try? encoder.encode(value)) ?? Data("{}".utf8)
    return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
}
