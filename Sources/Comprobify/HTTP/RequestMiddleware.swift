import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Metrics
import Postgres
import Synchronization

/// The outermost middleware: request id, bearer parsing, problem documents for
/// every error, one structured log line and the metrics of each request.
struct RequestMiddleware: RouterMiddleware {
    typealias Context = AppRequestContext

    let logger: Logger
    /// Requests per key per second; nil: no limit.
    var keyRateLimiter: KeyRateLimiter? = nil
    /// Keys the database refused, answered 401 from memory.
    var refusedKeys = RefusedKeys()
    /// The longest a request waits, in all, for its places in the tenant
    /// gates and for a connection (`DB_POOL_WAIT_MS`): one `WaitBudget` each.
    var poolWait: Duration = .seconds(2)
    /// TRUST_PROXY=1: the log line's client is the last X-Forwarded-For hop.
    var trustProxy = false
    /// The warnings of errors that every request meets while they last (the
    /// database out of reach, contention past its retries): a line a second
    /// for each SQLSTATE (or kind of error without one).
    var unavailableLog = LogThrottle()
    var contentionLog = LogThrottle()
    /// Requests a tenant's share of connections, or a numbering counter's
    /// places, turned away after `DB_POOL_WAIT_MS`: a line a second for each.
    var shareLog = LogThrottle()

    func handle(
        _ request: Request, context: AppRequestContext,
        next: (Request, AppRequestContext) async throws -> Response
    ) async throws -> Response {
        let start = ContinuousClock.now
        var context = context
        let headers = RequestMiddleware.Headers(request.headers)
        context.requestID = RequestMiddleware.requestID(from: headers.requestID)
        // One request id in every log line: ours, under Hummingbird's own key.
        context.logger[metadataKey: JSONLogHandler.requestIDKey] = .string(context.requestID)
        if let authorization = headers.authorization, let token = RequestMiddleware.bearerToken(authorization) {
            context.bearer = token
            context.presentedToken = APIToken.parse(token)
        }
        ServiceMetrics.inFlight.increment()
        defer { ServiceMetrics.inFlight.decrement() }

        var response: Response
        var request = request
        do {
            // Every route refuses a body over the limit, also those that never read one.
            if let length = headers.contentLength.flatMap({ Int($0) }), length > RequestBodyLimit.bytes {
                throw APIError.payloadTooLarge
            }
            // A body of no declared length (chunked) is read here, up to the
            // limit, so that a route that never reads one cannot act on a request
            // whose body is over it; routes that read it get the bytes read.
            if headers.contentLength == nil, headers.transferEncoding != nil {
                request.body = RequestBody(buffer: ByteBuffer(bytes: try await Comprobify.Input.collect(request, from: context.bodyPeer)))
            }
            if let token = context.presentedToken {
                // A key the database refused is not rate-limited: the routes
                // that take a key answer it 401 from memory (TenantRequestContext),
                // the others (sign-up, health) as if it were not there.
                if refusedKeys.contains(token.digest) {
                    context.keyRefused = true
                } else if let limiter = keyRateLimiter, let wait = limiter.take(token.digest) {
                    throw APIError.rateLimited("Too many requests with this API key; slow down.", retryAfter: wait)
                }
            }
            let forward = request
            response = try await ConnectionPool.$waitBudget.withValue(WaitBudget(poolWait)) {
                try await next(forward, context)
            }
        } catch {
            response = problem(for: error, request: request, context: context)
        }
        // The database found no active key with this digest (not the 401 of a
        // key used with an issuer of the other environment): remembered.
        if response.status == .unauthorized, context.facts.wasRefused, let token = context.presentedToken {
            refusedKeys.insert(token.digest)
        }
        response.headers[.requestID] = context.requestID

        let route = context.endpointPath ?? "unmatched"
        let elapsed = ContinuousClock.now - start
        let nanoseconds = elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000
        // An answer no one can receive (the connection closed before it:
        // HTTP_REQUEST_TIMEOUT_S cut off a body still arriving, or the client
        // closed both ways before its answer) is counted and logged as 499,
        // not as the 400 a body ended early would otherwise be. A client that
        // only ends its half (it may still read) gets its answer, counted as is.
        let status = context.isConnectionGone ? 499 : response.status.code
        ServiceMetrics.record(method: request.method.rawValue, route: route, status: UInt16(status), nanoseconds: nanoseconds)
        if context.logger.logLevel <= .info {
            // In key order, as the line writes them.
            var fields: [(key: String, value: String)] = []
            fields.reserveCapacity(7)
            // The client's address, for tracing abuse to its source (behind a
            // proxy, with TRUST_PROXY=1, the hop that proxy appended): formatted
            // only when the line is written.
            if let client = context.clientAddress(request, trustProxy: trustProxy) { fields.append(("client", client)) }
            fields.append(("duration_ms", (Double(nanoseconds / 10_000) / 100).description))
            if let key = context.facts.keyID { fields.append(("key_id", String(key))) }
            fields.append(("method", request.method.rawValue))
            fields.append(("route", route))
            fields.append(("status", String(status)))
            if let tenant = context.facts.tenantID { fields.append(("tenant_id", String(tenant))) }
            if let handler = context.logger.handler as? JSONLogHandler {
                handler.info("request", sortedFields: fields)
            } else {
                context.logger.info("request", metadata: Logger.Metadata(uniqueKeysWithValues: fields.map { ($0.key, .string($0.value)) }))
            }
        }
        return response
    }

    /// The four fields the middleware reads, found in one pass over the
    /// request's fields (each name looked up in `HTTPFields` costs a search and
    /// a joined string). A name sent more than once is read through the
    /// subscript, which joins its values, as it always was.
    struct Headers {
        var requestID: String?
        var authorization: String?
        var contentLength: String?
        var transferEncoding: String?

        init(_ fields: HTTPFields) {
            var repeated = false
            func take(_ value: String, into slot: inout String?) {
                if slot != nil { repeated = true }
                slot = value
            }
            for field in fields {
                switch field.name {
                case .requestID: take(field.value, into: &requestID)
                case .authorization: take(field.value, into: &authorization)
                case .contentLength: take(field.value, into: &contentLength)
                case .transferEncoding: take(field.value, into: &transferEncoding)
                default: break
                }
            }
            if repeated {
                requestID = fields[.requestID]
                authorization = fields[.authorization]
                contentLength = fields[.contentLength]
                transferEncoding = fields[.transferEncoding]
            }
        }
    }

    /// The credentials of `Bearer` (any case), one or more spaces (RFC 9110's
    /// 1*SP), then the token; nil for any other scheme or no token.
    static func bearerToken(_ authorization: String) -> Substring? {
        let utf8 = authorization.utf8
        var index = utf8.startIndex
        for expected in "bearer".utf8 {
            guard index != utf8.endIndex, utf8[index] | 0x20 == expected else { return nil }
            utf8.formIndex(after: &index)
        }
        guard index != utf8.endIndex, utf8[index] == UInt8(ascii: " ") else { return nil }
        while index != utf8.endIndex, utf8[index] == UInt8(ascii: " ") { utf8.formIndex(after: &index) }
        guard index != utf8.endIndex else { return nil }
        return authorization[index...]
    }

    /// The client's id when it is sane (1 to 128 of [A-Za-z0-9._-]), else a fresh one.
    static func requestID(from header: String?) -> String {
        if let header, (1...128).contains(header.utf8.count),
            header.utf8.allSatisfy({ c in
                (48...57).contains(c) || (65...90).contains(c) || (97...122).contains(c) || c == 46 || c == 95 || c == 45
            })
        {
            return header
        }
        return RequestID.next()
    }

    func problem(for error: any Error, request: Request, context: AppRequestContext) -> Response {
        let apiError: APIError
        switch error {
        case let error as APIError:
            apiError = error
            // A tenant at its share waits with the pool half idle: the pool's
            // warnings never say it.
            for (busy, kind, message) in [
                (APIError.tenantBusy, "tenant", "tenant at its share of database connections"),
                (APIError.counterBusy, "counter", "numbering counter busy with other requests"),
            ] where error.detail == busy.detail {
                if let leftOut = shareLog.admit(kind) {
                    context.logger.warning(
                        "\(message): requests turned away after DB_POOL_WAIT_MS",
                        metadata: ["like_it_left_out": "\(leftOut)"])
                }
            }
        case is CancellationError:
            // The server is stopping and its grace period ran out.
            apiError = .unavailable
        case let error as PostgresError where error.isUnavailable || error.hasCode(SQLState.queryCanceled):
            if error.commitUncertain {
                // Each may be a change made that its client is told may not be:
                // always said (at most a pool's worth when the database goes).
                context.logger.warning("database connection lost while committing", metadata: ["error": .string(error.description)])
                apiError = .commitUncertain
            } else {
                let cancelled = error.hasCode(SQLState.queryCanceled)
                if let leftOut = unavailableLog.admit(error.sqlState?.code ?? error.kind.rawValue) {
                    context.logger.warning(
                        cancelled ? "database statement cancelled" : "database unavailable",
                        metadata: ["error": .string(error.description), "like_it_left_out": "\(leftOut)"])
                }
                apiError = cancelled ? .timedOut : .unavailable
            }
        case let error as PostgresError where error.hasCode(SQLState.checkViolation):
            // Input validation should have caught it first; the database refused it,
            // the transaction rolled back, and nothing changed.
            context.logger.warning("a value passed validation but not the schema", metadata: ["error": .string(error.description)])
            // The constraint's name is logged, never answered (API.md: no internal names).
            apiError = .badRequest("A value in the request is not accepted.")
        case let error as PostgresError where error.isTransactionRetryable || error.hasCode(SQLState.lockNotAvailable):
            if let leftOut = contentionLog.admit(error.sqlState?.code ?? error.kind.rawValue) {
                context.logger.warning(
                    "lock contention: retries exhausted or lock wait timed out",
                    metadata: ["error": .string(error.description), "like_it_left_out": "\(leftOut)"])
            }
            apiError = .contended
        case let error as HTTPResponseError:
            switch error.status {
            case .notFound, .methodNotAllowed:
                apiError = .notFound("No route matches \(request.method.rawValue) \(request.uri.path).")
            case .contentTooLarge: apiError = .payloadTooLarge
            case let status where (400..<500).contains(status.code):
                apiError = .badRequest("The request could not be processed.")
            default:
                context.logger.error("unexpected error", metadata: ["error": .string("\(error)")])
                apiError = .internalError
            }
        default:
            context.logger.error("unexpected error", metadata: ["error": .string("\(error)")])
            apiError = .internalError
        }
        return Problem.response(apiError, instance: request.uri.path, requestID: context.requestID)
    }
}

/// Fresh request ids: 24 hex characters, a random prefix of 6 bytes drawn once
/// per process and a 48-bit counter. Unique within a process and, with a
/// random prefix each, across processes; they only name requests in logs and
/// answers, so they need not be unpredictable, and taking one costs no call
/// into the random number generator.
enum RequestID {
    private static let prefix: [UInt8] = Array(Crypto.hex(Crypto.randomBytes(6)).utf8)
    private static let counter = Atomic<UInt64>(0)
    private static let digits = Array("0123456789abcdef".utf8)

    static func next() -> String {
        let number = counter.wrappingAdd(1, ordering: .relaxed).newValue & 0xFFFF_FFFF_FFFF
        return String(unsafeUninitializedCapacity: 24) { buffer in
            for (index, byte) in prefix.enumerated() { buffer[index] = byte }
            for position in 0..<12 {
                buffer[12 + position] = digits[Int((number >> UInt64(44 - 4 * position)) & 0xF)]
            }
            return 24
        }
    }
}
