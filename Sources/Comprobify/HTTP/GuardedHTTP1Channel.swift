import CoreMetrics
import HTTPTypes
import HummingbirdCore
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// What one server process lets its clients hold (docs/adr/006-hostile-load.md).
public struct ConnectionLimits: Sendable {
    /// Open client connections in total; extras are answered 503 and closed.
    public var maximum: Int
    /// Open client connections from one address.
    public var maximumPerAddress: Int
    /// From the first byte of a request to its last (headers and body together).
    public var requestTimeout: TimeAmount
    /// A connection with no request in progress is closed after this long.
    public var idleTimeout: TimeAmount
    /// The period in which a client must take 32 KiB of an answer waiting
    /// for it (`WriteStallHandler`).
    public var writeTimeout: TimeAmount
    /// SO_SNDBUF of each connection; nil leaves the kernel to size it.
    public var sendBufferBytes: Int?

    public init(
        maximum: Int, maximumPerAddress: Int, requestTimeout: TimeAmount, idleTimeout: TimeAmount, writeTimeout: TimeAmount,
        sendBufferBytes: Int? = nil
    ) {
        self.maximum = maximum
        self.maximumPerAddress = maximumPerAddress
        self.requestTimeout = requestTimeout
        self.idleTimeout = idleTimeout
        self.writeTimeout = writeTimeout
        self.sendBufferBytes = sendBufferBytes
    }
}

/// Counts open client connections, in total and per address.
final class ConnectionCounter: Sendable {
    private struct State {
        var total = 0
        var byAddress: [String: Int] = [:]
    }

    private let state = NIOLockedValueBox(State())
    let maximum: Int
    let maximumPerAddress: Int
    private let openGauge = Gauge(label: "http_connections_open")
    private let refusedCounter = CoreMetrics.Counter(label: "http_connections_refused_total")

    init(maximum: Int, maximumPerAddress: Int) {
        self.maximum = maximum
        self.maximumPerAddress = maximumPerAddress
    }

    /// Whom a connection's place is counted for: an IPv4 address, the IPv4
    /// inside an IPv4-mapped IPv6 one, an IPv6 address's /64
    /// (`IPAddress.clientNetwork`, as the sign-up limit counts): a client
    /// holds a /64 and could otherwise open 256 connections from each of its
    /// addresses.
    static func client(of peer: SocketAddress?) -> String {
        guard let address = peer?.ipAddress else { return "unknown" }
        return IPAddress(address)?.clientNetwork ?? address
    }

    /// Takes a place for a connection from `address`; false when a limit is reached.
    func admit(_ address: String) -> Bool {
        let admitted = state.withLockedValue { state -> Bool in
            let fromAddress = state.byAddress[address, default: 0]
            guard state.total < maximum, fromAddress < maximumPerAddress else { return false }
            state.total += 1
            state.byAddress[address] = fromAddress + 1
            openGauge.record(state.total)
            return true
        }
        if !admitted { refusedCounter.increment() }
        return admitted
    }

    func release(_ address: String) {
        state.withLockedValue { state in
            state.total -= 1
            let left = state.byAddress[address, default: 1] - 1
            state.byAddress[address] = left > 0 ? left : nil
            openGauge.record(state.total)
        }
    }

    var open: Int { state.withLockedValue { $0.total } }
}

/// Hummingbird's HTTP/1 child channel with the limits of `ConnectionLimits`:
/// connections past a cap are refused at once, a request must arrive whole
/// within the request timeout, parser errors become problem documents, and
/// `Expect: 100-continue` is answered. The request handling itself is
/// Hummingbird's (`handleHTTP`).
struct GuardedHTTP1Channel: ServerChildChannel, HTTPChannelHandler {
    struct Value: ServerChildChannelValue {
        let channel: any Channel
        /// Nil for a refused connection, which is answered and closed by its pipeline.
        let http: NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>?
    }

    let responder: HTTPChannelHandler.Responder
    let limits: ConnectionLimits
    let counter: ConnectionCounter

    init(responder: @escaping HTTPChannelHandler.Responder, limits: ConnectionLimits) {
        self.responder = responder
        self.limits = limits
        self.counter = ConnectionCounter(maximum: limits.maximum, maximumPerAddress: limits.maximumPerAddress)
    }

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            let address = ConnectionCounter.client(of: channel.remoteAddress)
            let pipeline = channel.pipeline.syncOperations
            guard counter.admit(address) else {
                try pipeline.addHandler(RefusingHandler())
                return Value(channel: channel, http: nil)
            }
            let counter = self.counter
            channel.closeFuture.whenComplete { _ in counter.release(address) }

            if let bytes = limits.sendBufferBytes {
                try channel.syncOptions?.setOption(.socketOption(.so_sndbuf), value: SocketOptionValue(bytes))
            }
            let deadline = ConnectionDeadline.request(timeout: limits.requestTimeout, logger: logger)
            try pipeline.addHandler(WriteStallHandler(timeout: limits.writeTimeout, logger: logger))
            try pipeline.addHandler(RequestStartHandler(deadline: deadline))
            var decoderLimits = NIOHTTPDecoderLimitConfiguration()
            decoderLimits.maxHeaderFieldSize = 16 * 1024
            decoderLimits.maxHeaderListSize = 64 * 1024
            decoderLimits.maxHeaderFieldCount = RequestGuardHandler.maxHeaderFields
            try pipeline.configureHTTPServerPipeline(
                withPipeliningAssistance: false,
                withErrorHandling: false,
                withOutboundHeaderValidation: false,
                withEncoderConfiguration: .init(),
                withDecoderLimitConfiguration: decoderLimits
            )
            try pipeline.addHandler(ConnectionCloseHandler())
            try pipeline.addHandler(HTTP1ToHTTPServerCodec(secure: false))
            try pipeline.addHandler(RequestGuardHandler(deadline: deadline, logger: logger))
            try pipeline.addHandler(HTTPConnectionStateHandler(idleTimeout: .init(limits.idleTimeout), logger: logger))
            let http = try NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>(
                wrappingChannelSynchronously: channel,
                configuration: .init(isOutboundHalfClosureEnabled: true)
            )
            return Value(channel: channel, http: http)
        }
    }

    func handle(value: Value, logger: Logger) async {
        guard let http = value.http else { return }
        await handleHTTP(asyncChannel: http, logger: logger)
    }
}

/// A whole HTTP response as bytes, for the pipeline's own answers (no router).
enum RawResponse {
    static func bytes(_ error: APIError, allocator: ByteBufferAllocator) -> ByteBuffer {
        let requestID = RequestMiddleware.requestID(from: nil)
        let body = Problem.document(error, instance: "", requestID: requestID)
        var head = "HTTP/1.1 \(error.status.code) \(error.status.reasonPhrase)\r\n"
        head += "Content-Type: application/problem+json\r\n"
        head += "Content-Length: \(body.utf8.count)\r\n"
        head += "Connection: close\r\n"
        head += "X-Request-Id: \(requestID)\r\n"
        for field in error.headers { head += "\(field.name.canonicalName): \(field.value)\r\n" }
        return allocator.buffer(string: head + "\r\n" + body)
    }
}

extension APIError {
    static let tooManyConnections = APIError(
        status: .serviceUnavailable, code: "SERVICE_UNAVAILABLE",
        detail: "Too many open connections from this address or in total. Retry shortly.",
        headers: [.retryAfter: "1"]
    )
}

/// A connection over a limit: answered 503 as soon as it is active, then closed.
final class RefusingHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    func channelActive(context: ChannelHandlerContext) {
        let bytes = RawResponse.bytes(.tooManyConnections, allocator: context.channel.allocator)
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.writeAndFlush(NIOAny(bytes)).whenComplete { _ in loopBound.value.close(promise: nil) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // The request is not read.
    }
}

/// A clock on a connection: started, it closes the connection after
/// `timeout` unless stopped first, and counts and logs the closing.
final class ConnectionDeadline {
    let timeout: TimeAmount
    let logger: Logger
    let message: Logger.Message
    let counter: CoreMetrics.Counter
    private var scheduled: Scheduled<Void>?

    init(timeout: TimeAmount, logger: Logger, message: Logger.Message, counter: CoreMetrics.Counter) {
        self.timeout = timeout
        self.logger = logger
        self.message = message
        self.counter = counter
    }

    /// The clock of the request being received: it starts at the request's
    /// first byte and stops at its end. The idle timeout alone cannot do
    /// this: every trickled body byte resets it.
    static func request(timeout: TimeAmount, logger: Logger) -> ConnectionDeadline {
        ConnectionDeadline(
            timeout: timeout, logger: logger, message: "request not received within the request timeout; closing the connection",
            counter: requestTimeouts)
    }

    /// Starts the clock, unless it runs. When it runs out, `renew` (when
    /// given) may grant another period by answering true; otherwise the
    /// connection is closed.
    func start(_ context: ChannelHandlerContext, renew: ((ChannelHandlerContext) -> Bool)? = nil) {
        guard scheduled == nil else { return }
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        scheduled = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) {
            let (deadline, context) = loopBound.value
            deadline.scheduled = nil
            if let renew, renew(context) {
                deadline.start(context, renew: renew)
                return
            }
            deadline.logger.debug(deadline.message)
            deadline.counter.increment()
            context.close(promise: nil)
        }
    }

    func stop() {
        scheduled?.cancel()
        scheduled = nil
    }

    var isRunning: Bool { scheduled != nil }

    static let requestTimeouts = CoreMetrics.Counter(label: "http_request_timeouts_total")
    static let writeTimeouts = CoreMetrics.Counter(label: "http_write_timeouts_total")
}

/// A client that stops taking its answer. While more of an answer waits for
/// the client than NIO's high-water mark (64 KiB beyond what the kernel's
/// send buffer holds), the client must take `leastProgress` bytes in each
/// `HTTP_WRITE_TIMEOUT_S` (32 KiB in 30 s by default, about 1 KiB/s), on
/// average: what it took beyond that counts for later periods, up to
/// `mostCredit` (8 periods' worth), so a client may pause after reading
/// ahead. A client whose credit runs out is cut off: the connection is
/// closed and what NIO holds for it dropped. The other clocks do not see
/// this: the request was received whole, and a connection is idle only
/// between answers. Without it a client that stops reading a documents page
/// holds the page's first read, or its pieces in flight, for as long as it
/// keeps the connection open.
///
/// What the client took is what TCP says it acknowledged (Linux's
/// `tcpi_bytes_acked`): the kernel's send buffer, megabytes on a fast link,
/// hands NIO more room only in large steps, and the client's window opens in
/// steps too.
/// Where TCP_INFO cannot say (another system), what NIO holds is read
/// instead: while the connection is not writable the answer's writer waits,
/// so it only falls as the client reads.
///
/// A close asked for while NIO still holds some of an answer (the idle
/// timeout, which starts when the answer's end is handed to NIO, or
/// `Connection: close`) waits until NIO has handed the rest to the kernel,
/// under the same clock: closing at once would drop the end of a large
/// answer that a slow client is still reading.
final class WriteStallHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny
    typealias OutboundIn = NIOAny
    /// The least a client must take of its waiting answer in each period, on average.
    static let leastProgress = 32 * 1024
    /// The most a client's takes beyond `leastProgress` count for.
    static let mostCredit = 8 * leastProgress
    let deadline: ConnectionDeadline
    /// Where the client stood when it was last looked at.
    private var last: Progress?
    /// What the client took beyond `leastProgress` a period, up to `mostCredit`.
    private var credit = 0
    /// Whether a close waits for NIO to hand the rest of the answer to the kernel.
    private var closing = false

    struct Progress {
        /// Bytes TCP saw the client acknowledge on this connection, when known.
        var acknowledged: UInt64?
        /// Bytes NIO holds for the client.
        var held: Int

        /// What the client took between `self` and `later`.
        func taken(until later: Progress) -> Int {
            if let before = acknowledged, let after = later.acknowledged, after >= before {
                return Int(clamping: after - before)
            }
            return max(0, held - later.held)
        }
    }

    init(timeout: TimeAmount, logger: Logger) {
        deadline = ConnectionDeadline(
            timeout: timeout, logger: logger,
            message: "the client took too little of its answer within the write timeout; closing the connection",
            counter: ConnectionDeadline.writeTimeouts)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if !context.channel.isWritable {
            startClock(context)
        } else if !closing {
            deadline.stop()
        }
        context.fireChannelWritabilityChanged()
    }

    private func startClock(_ context: ChannelHandlerContext) {
        guard !deadline.isRunning else { return }
        credit = min(WriteStallHandler.mostCredit, credit + taken(context))
        deadline.start(context) { [self] context in
            credit = min(WriteStallHandler.mostCredit, credit + taken(context)) - WriteStallHandler.leastProgress
            return credit >= 0
        }
    }

    /// What the client took since it was last looked at (nothing the first time).
    private func taken(_ context: ChannelHandlerContext) -> Int {
        let now = WriteStallHandler.progress(context)
        defer { last = now }
        return last?.taken(until: now) ?? 0
    }

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        guard mode == .all, !closing, context.channel.isActive, WriteStallHandler.held(context) > 0 else {
            context.close(mode: mode, promise: promise)
            return
        }
        closing = true
        startClock(context)
        // An empty write completes once everything written before it has
        // gone to the kernel; then the connection closes. If the clock runs
        // out first, it closes the connection, and this close follows it.
        let handedOver = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(NIOAny(context.channel.allocator.buffer(capacity: 0)), promise: handedOver)
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        handedOver.futureResult.whenComplete { _ in
            let (handler, context) = loopBound.value
            handler.deadline.stop()
            context.close(mode: .all, promise: promise)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        deadline.stop()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline.stop()
    }

    static func progress(_ context: ChannelHandlerContext) -> Progress {
        Progress(acknowledged: acknowledged(context), held: held(context))
    }

    /// The bytes NIO holds for the client (0 where it cannot say).
    static func held(_ context: ChannelHandlerContext) -> Int {
        (try? context.channel.syncOptions?.getOption(.bufferedWritableBytes)) ?? 0
    }

    /// Linux's `struct tcp_info` up to `tcpi_bytes_acked` (bytes 120-127,
    /// there since Linux 4.1).
    struct TCPInfoPrefix: Sendable {
        var words = InlineArray<16, UInt64>(repeating: 0)
    }

    /// `tcpi_bytes_acked` of the connection's socket; nil where TCP_INFO
    /// cannot say. Read on the channel's event loop, where the socket option
    /// is read at once.
    static func acknowledged(_ context: ChannelHandlerContext) -> UInt64? {
        #if os(Linux)
            guard let provider = context.channel as? any SocketOptionProvider else { return nil }
            let info: EventLoopFuture<TCPInfoPrefix> = provider.unsafeGetSocketOption(
                level: NIOBSDSocket.OptionLevel.tcp, name: NIOBSDSocket.Option.tcp_info)
            var acknowledged: UInt64?
            info.assumeIsolated().whenSuccess { acknowledged = $0.words[15] }
            return acknowledged
        #else
            return nil
        #endif
    }
}

/// First in the pipeline: a byte arriving while no request is being received starts the clock.
final class RequestStartHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    let deadline: ConnectionDeadline

    init(deadline: ConnectionDeadline) {
        self.deadline = deadline
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        deadline.start(context)
        context.fireChannelRead(data)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline.stop()
    }

    func channelInactive(context: ChannelHandlerContext) {
        deadline.stop()
        context.fireChannelInactive()
    }
}

/// Between the HTTP/1 decoder and the conversion to HTTP types, which drops
/// the request's version: a request that does not keep its connection
/// (HTTP/1.0 without `Connection: keep-alive`, or a `close` among the
/// `Connection` header's tokens, in any case) goes on with `Connection:
/// close` alone, the one form after which Hummingbird closes the connection
/// once the answer is written. Without it such a client's connection stayed
/// open until the idle timeout.
///
/// Once the server is stopping (the quiesce event of a SIGTERM), an answer
/// still to be written says `Connection: close`: the connection closes after
/// it, and a client told so opens a new one for its next request rather than
/// sending it on a socket about to close.
final class ConnectionCloseHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private var stopping = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head(var head) = unwrapInboundIn(data), !head.isKeepAlive, head.headers["connection"] != ["close"] {
            head.headers.replaceOrAdd(name: "Connection", value: "close")
            context.fireChannelRead(wrapInboundOut(.head(head)))
            return
        }
        context.fireChannelRead(data)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent { stopping = true }
        context.fireUserInboundEventTriggered(event)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        // A final answer only: an interim one (100 Continue) is no place for it.
        if stopping, case .head(var head) = unwrapOutboundIn(data), head.status.code >= 200, head.headers["connection"] != ["close"] {
            head.headers.replaceOrAdd(name: "Connection", value: "close")
            context.write(wrapOutboundOut(.head(head)), promise: promise)
            return
        }
        context.write(data, promise: promise)
    }
}

/// After the HTTP codec: stops the request clock at each request's end,
/// answers `Expect: 100-continue`, and turns a parser error between requests
/// into a problem document with X-Request-Id, written once the answers to the
/// requests before it have ended (a parser error inside a request whose
/// handler is running is left to Hummingbird, which owns that response).
final class RequestGuardHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    let deadline: ConnectionDeadline
    let logger: Logger
    /// Requests whose head was read and whose response has not ended.
    private var open = 0
    /// A request's head was read and its end not yet.
    private var reading = false
    /// The request being read asked for `100 Continue` while an earlier
    /// answer was still being written: sent once that answer has ended.
    private var continueOwed = false
    /// A parser error between pipelined requests, to be answered once the
    /// answers before it have ended.
    private var owedAnswer: HTTPParserError?
    private var failed = false

    init(deadline: ConnectionDeadline, logger: Logger) {
        self.deadline = deadline
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            open += 1
            reading = true
            // A request whose first bytes came in the read that ended the one
            // before it started no clock there: it starts now.
            deadline.start(context)
            if RequestGuardHandler.expectsContinue(head) && RequestGuardHandler.acceptableLength(head) {
                // An interim head in the middle of another answer would end
                // that answer's framing (the encoder starts over on it).
                if open == 1 {
                    context.writeAndFlush(wrapOutboundOut(.head(HTTPResponse(status: .continue))), promise: nil)
                } else {
                    continueOwed = true
                }
            }
        case .body:
            break
        case .end:
            reading = false
            continueOwed = false
            deadline.stop()
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard case .end = unwrapOutboundIn(data) else {
            context.write(data, promise: promise)
            return
        }
        open -= 1
        context.write(data, promise: promise)
        if open == 1, continueOwed {
            continueOwed = false
            context.writeAndFlush(wrapOutboundOut(.head(HTTPResponse(status: .continue))), promise: nil)
        }
        if open == 0, let owed = owedAnswer {
            owedAnswer = nil
            answer(owed, context: context)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if failed {
            // Once a malformed request is answered, the decoder refuses every
            // later read (its error state): those bytes are dropped until the
            // connection closes, so the client reads the answer, not a reset.
            if error is HTTPParserError || error is ByteToMessageDecoderError { return }
            context.fireErrorCaught(error)
            return
        }
        guard let parserError = error as? HTTPParserError, !reading else {
            context.fireErrorCaught(error)
            return
        }
        failed = true
        deadline.stop()
        logger.debug("malformed HTTP request", metadata: ["error": "\(parserError)"])
        // Behind answers still being written (pipelined requests): after them.
        if open > 0 {
            owedAnswer = parserError
        } else {
            answer(parserError, context: context)
        }
    }

    /// Writes the problem document for `parserError` and closes the connection.
    private func answer(_ parserError: HTTPParserError, context: ChannelHandlerContext) {
        let apiError = RequestGuardHandler.problem(for: parserError)
        let bytes = RawResponse.bytes(apiError, allocator: context.channel.allocator)
        // Written below the codec, as bytes, from the first handler's place. Then
        // the output closes and the rest of the request is read and dropped for
        // a moment, so the client sees the answer rather than a reset.
        guard let first = try? context.pipeline.syncOperations.context(handlerType: RequestStartHandler.self) else {
            context.close(promise: nil)
            return
        }
        let channel = context.channel
        first.writeAndFlush(NIOAny(bytes)).whenComplete { _ in
            channel.close(mode: .output, promise: nil)
            channel.eventLoop.scheduleTask(in: .seconds(1)) { channel.close(promise: nil) }
        }
    }

    /// The most header fields a request may have.
    static let maxHeaderFields = 200

    static func problem(for error: HTTPParserError) -> APIError {
        switch error {
        case .headerOverflow:
            // 400 BAD_REQUEST, as nginx answers it: API.md's codes have no 431.
            // The parser counts the request line (its target: path and query)
            // with the headers, and reports too many fields the same way.
            return .badRequest(
                "The request's target or headers are too large or too many (at most \(maxHeaderFields) header fields, "
                    + "16 KiB for the target or a header field, 64 KiB in all).")
        case .invalidMethod:
            return .badRequest("The request is not valid HTTP/1.1: unknown method or malformed request line.")
        default:
            return .badRequest("The request is not valid HTTP/1.1: \(reason(for: error)).")
        }
    }

    /// What is wrong, in the client's terms: the parser's own descriptions
    /// name the library (API.md: no internal names reach a client).
    static func reason(for error: HTTPParserError) -> String {
        switch error {
        case .invalidCharactersUsed: "illegal characters in the request target or a header"
        case .trailingGarbage: "bytes after the end of the request"
        case .invalidEOFState: "the request ended before it was complete"
        case .closedConnection: "data after a request that closed the connection"
        case .invalidVersion: "the HTTP version is not 1.1 or 1.0"
        // The parser stops at an HTTP/2 preface or a protocol upgrade.
        case .paused: "HTTP/2 or a protocol upgrade, which this server does not serve (send HTTP/1.1)"
        case .invalidURL: "a malformed request target"
        case .lfExpected, .invalidConstant: "a malformed request line or line ending"
        case .invalidHeaderToken: "an invalid character in a header"
        case .invalidContentLength: "a malformed Content-Length"
        case .unexpectedContentLength: "a Content-Length beside Transfer-Encoding, or sent twice"
        case .invalidChunkSize: "a malformed chunk size in the chunked body"
        // What the parser reports without a kind of its own: a Transfer-Encoding
        // it does not take (chunked must come last), a CR where none belongs.
        case .unknown: "an unsupported Transfer-Encoding or a malformed line"
        default: "a malformed request"
        }
    }

    static func expectsContinue(_ head: HTTPRequest) -> Bool {
        head.headerFields[.expect]?.lowercased() == "100-continue"
    }

    /// Whether the declared body fits the body limit (a chunked body is judged as it arrives).
    static func acceptableLength(_ head: HTTPRequest) -> Bool {
        guard let text = head.headerFields[.contentLength] else { return true }
        guard let length = Int(text) else { return false }
        return length <= RequestBodyLimit.bytes
    }
}

/// On the listening socket: an accept that fails for want of file descriptors
/// or memory pauses accepting for a moment instead of reaching Hummingbird's
/// accept loop, which would end on any error and leave the server deaf.
final class AcceptErrorHandler: ChannelDuplexHandler {
    typealias InboundIn = NIOAny
    typealias OutboundIn = NIOAny

    let logger: Logger
    private var paused = false
    private var readPending = false
    private var lastLogged: NIODeadline = .distantPast

    init(logger: Logger) {
        self.logger = logger
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let ioError = error as? IOError, [EMFILE, ENFILE, ENOBUFS, ENOMEM, ECONNABORTED].contains(ioError.errnoCode) else {
            context.fireErrorCaught(error)
            return
        }
        if NIODeadline.now() - lastLogged > .seconds(10) {
            lastLogged = .now()
            logger.warning("accept failed; pausing accepts for 100 ms", metadata: ["error": "\(ioError)"])
        }
        guard !paused else { return }
        paused = true
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        context.eventLoop.scheduleTask(in: .milliseconds(100)) {
            let (handler, context) = loopBound.value
            handler.paused = false
            if handler.readPending {
                handler.readPending = false
                context.read()
            }
        }
    }

    func read(context: ChannelHandlerContext) {
        if paused {
            readPending = true
        } else {
            context.read()
        }
    }
}

/// The process's limit on open files: the soft limit is raised to the hard one
/// (at most 1,048,576) at start-up.
public enum FileLimits {
    public static func raiseSoftLimit() -> (soft: Int, hard: Int) {
        var limit = rlimit()
        #if canImport(Glibc)
            let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
        #else
            let resource = RLIMIT_NOFILE
        #endif
        guard getrlimit(resource, &limit) == 0 else { return (1024, 1024) }
        let wanted = min(limit.rlim_max, 1 << 20)
        if limit.rlim_cur < wanted {
            var raised = limit
            raised.rlim_cur = wanted
            if setrlimit(resource, &raised) == 0 { limit = raised }
        }
        return (Int(clamping: limit.rlim_cur), Int(clamping: limit.rlim_max))
    }

    /// Client connections that fit under `softLimit` with room left for the
    /// database connections, the event loops, logs and the runtime's own descriptors.
    public static func connectionBudget(softLimit: Int, poolSize: Int) -> Int {
        max(1, softLimit - reserved(softLimit: softLimit) - poolSize)
    }

    /// Descriptors kept for the event loops, logs and the runtime's own.
    public static func reserved(softLimit: Int) -> Int { max(128, softLimit / 8) }

    /// The limit cannot hold the database connections and the process's own
    /// descriptors: the server does not start.
    public struct TooLow: Error, CustomStringConvertible {
        public let description: String
    }
}
