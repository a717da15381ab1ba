import AsyncHTTPClient
import Foundation
import NIOCore
import NIOPosix
import SRI
import ServiceLifecycle

/// Why an exchange with SRI failed. Every case is retried with backoff; the
/// description is short, fit for a document's `lastError`, and never holds XML.
public enum SRITransportError: Error, Sendable, Equatable, CustomStringConvertible {
    /// No connection, or the connection failed before a whole answer arrived.
    case connection(String)
    /// No whole answer within the timeout.
    case timeout(milliseconds: Int)
    /// An HTTP status other than 200 (and no SOAP Fault in the body).
    case httpStatus(Int)
    /// A SOAP Fault (SRI's server errors come as HTTP 500 with one), with
    /// the HTTP status it came with.
    case soapFault(code: String, message: String, httpStatus: Int)
    /// An answer that is not SRI's: not XML, not SOAP, missing elements, too large.
    case unparseable(String)

    public var description: String {
        switch self {
        case .connection(let reason): "connection failed: \(reason)"
        case .timeout(let milliseconds): "no answer within \(milliseconds) ms"
        case .httpStatus(let status): "HTTP \(status)"
        case .soapFault(let code, let message, _): "SOAP fault \(code): \(message)"
        case .unparseable(let reason): "unparseable answer: \(reason)"
        }
    }
}

/// The SOAP client of SRI's offline web services (shared/sri/soap.md) over
/// AsyncHTTPClient; TLS through swift-nio-ssl with the system's trust roots.
/// One client serves the whole process: create it once, and call `shutdown()`
/// (or run it as a Service, which shuts it down on graceful shutdown).
public final class SRIClient: Service, Sendable {
    public struct Settings: Sendable, Equatable {
        /// A whole exchange, connection included (`SRI_TIMEOUT_MS`, default 20000).
        public var timeoutMilliseconds: Int
        /// The largest authorization answer read; larger ones are unparseable.
        /// It carries the whole comprobante, so this is generous.
        public var maximumAnswerBytes: Int
        /// The largest reception answer read: a state and messages, a few
        /// kilobytes. Parsed, every element of an answer costs libxml2 a few
        /// hundred bytes, so an answer of 8 MiB of empty elements would take
        /// about 300 MB.
        public var maximumReceptionAnswerBytes: Int
        /// Connections kept open to each of SRI's hosts at most: one per
        /// worker (`SRI_WORKERS`), as each has one exchange in flight at a
        /// time. Fewer would leave the rest waiting inside the client for a
        /// free connection, an exchange that never reached SRI.
        public var connectionsPerHost: Int

        public init(
            timeoutMilliseconds: Int = 20_000, maximumAnswerBytes: Int = 8 << 20, maximumReceptionAnswerBytes: Int = 1 << 20,
            connectionsPerHost: Int = 8
        ) {
            self.timeoutMilliseconds = timeoutMilliseconds
            self.maximumAnswerBytes = maximumAnswerBytes
            self.maximumReceptionAnswerBytes = maximumReceptionAnswerBytes
            self.connectionsPerHost = connectionsPerHost
        }
    }

    /// The path appended to a base URL for each service.
    public static let receptionPath = "/RecepcionComprobantesOffline"
    public static let authorizationPath = "/AutorizacionComprobantesOffline"

    public let settings: Settings
    private let http: HTTPClient

    /// `eventLoopGroup`: where the client's connections run (the caller shuts it down).
    public init(settings: Settings = Settings(), eventLoopGroup: any EventLoopGroup = HTTPClient.defaultEventLoopGroup) {
        self.settings = settings
        let timeout = TimeAmount.milliseconds(Int64(settings.timeoutMilliseconds))
        var configuration = HTTPClient.Configuration(
            redirectConfiguration: .disallow,
            timeout: .init(connect: timeout, read: timeout)
        )
        configuration.decompression = .disabled
        configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = max(settings.connectionsPerHost, 1)
        // A connection SRI refuses (its host down, nothing listening) fails the
        // exchange at once: AsyncHTTPClient would otherwise try again until the
        // whole timeout passed, holding the worker (and a stop) for
        // `SRI_TIMEOUT_MS` per document. The exchanges queued for a connection
        // that could not be made fail with it; each worker has a connection of
        // its own (`connectionsPerHost`), so few ever wait for one.
        configuration.connectionPool.retryConnectionEstablishment = false
        http = HTTPClient(eventLoopGroup: eventLoopGroup, configuration: configuration)
    }

    /// Closes the connections; the client cannot be used afterwards.
    public func shutdown() async throws {
        try await http.shutdown()
    }

    /// As a Service: waits for graceful shutdown, then shuts the client down.
    public func run() async throws {
        try? await gracefulShutdown()
        try await shutdown()
    }

    /// Sends the signed comprobante to reception (`validarComprobante`). With
    /// `accessKey` (the comprobante's), an answer naming another key is
    /// unparseable, as for authorization (`checkKey`).
    public func validate(signed: [UInt8], accessKey: String? = nil, baseURL: String) async throws(SRITransportError)
        -> ReceptionAnswer
    {
        let body = try await exchange(
            SOAPRequest.reception(signed: signed), url: Self.join(baseURL, Self.receptionPath),
            limit: settings.maximumReceptionAnswerBytes)
        let result: SOAPResult<ReceptionAnswer>
        do {
            result = try ReceptionAnswer.parse(body.bytes)
        } catch {
            throw body.status == 200 ? .unparseable(error.reason) : .httpStatus(body.status)
        }
        let answer = try Self.answer(result, status: body.status)
        if let accessKey { try Self.checkKey(of: answer, sent: accessKey) }
        return answer
    }

    /// Asks for the authorization of one access key (`autorizacionComprobante`).
    /// The answer's `queriedAccessKey` is `accessKey`: an answer about another
    /// key is unparseable (`checkKey`), and one that does not say is taken as
    /// being about the key asked.
    public func authorize(accessKey: String, baseURL: String) async throws(SRITransportError) -> AuthorizationAnswer {
        let body = try await exchange(
            SOAPRequest.authorization(accessKey: accessKey), url: Self.join(baseURL, Self.authorizationPath),
            limit: settings.maximumAnswerBytes)
        let result: SOAPResult<AuthorizationAnswer>
        do {
            result = try AuthorizationAnswer.parse(body.bytes)
        } catch {
            throw body.status == 200 ? .unparseable(error.reason) : .httpStatus(body.status)
        }
        var answer = try Self.answer(result, status: body.status)
        try Self.checkKey(of: answer, asked: accessKey)
        answer.queriedAccessKey = accessKey
        return answer
    }

    /// Refuses an answer about another document (a proxy or cache between the
    /// server and SRI that mixed answers up): `claveAccesoConsultada`, and the
    /// `numeroAutorizacion` of each authorization (the access key itself in the
    /// offline scheme), must be the key asked when present. A decision is
    /// final, so it is taken only from SRI's word about this document. The
    /// error does not repeat the other key, which may be another tenant's.
    ///
    /// A decision (AUTORIZADO, NO AUTORIZADO) must also be of the key's
    /// environment when it names one (`ambiente`: the key's 24th digit, 1
    /// PRUEBAS, 2 PRODUCCIÓN): SRI's test service answering for a production
    /// document, through a misconfigured URL, decides nothing. And the
    /// comprobante an AUTORIZADO carries must not be another document's (its
    /// `claveAcceso`, when it has one, is this key), and its `<autorizacion>`
    /// element must have been kept, for GET /authorization.
    static func checkKey(of answer: AuthorizationAnswer, asked accessKey: String) throws(SRITransportError) {
        if let queried = answer.queriedAccessKey, !queried.isEmpty, queried != accessKey {
            throw .unparseable("an answer about another access key")
        }
        for authorization in answer.authorizations {
            if let number = authorization.number, !number.isEmpty, number != accessKey {
                throw .unparseable("an authorization number that is not the access key")
            }
            guard authorization.status == .authorized || authorization.status == .notAuthorized else { continue }
            if let environment = authorization.environment, !environment.isEmpty,
                !Self.environment(environment, isThatOf: accessKey)
            {
                throw .unparseable("an authorization of another environment (\(Format.oneLine(environment, atMost: 20)))")
            }
            if authorization.status == .authorized {
                // Read as XML: every claveAcceso it has must be this
                // document's (a comment spelling the tag is none); one that
                // names none (SRI's sample abbreviates it) or no comprobante
                // at all is not another document's.
                if authorization.comprobante != nil {
                    guard let named = authorization.comprobanteAccessKeys else {
                        throw .unparseable("an authorization whose comprobante is not XML")
                    }
                    guard named.allSatisfy({ $0 == accessKey }) else {
                        throw .unparseable("an authorization of another document's comprobante")
                    }
                }
                // A day's grace: a document dated just after midnight in Quito by
                // a clock seconds ahead of SRI's is authorized "the day before",
                // and SRI answers that same date every time it is asked.
                if let text = authorization.date, let date = Transition.parseDate(text), let issued = Self.issueDay(of: accessKey),
                    ComprobanteDate.todayInEcuador(now: date.timeIntervalSince1970 + 86_400) < issued
                {
                    throw .unparseable("an authorization dated more than a day before the document's issue date")
                }
                guard !authorization.element.isEmpty else { throw .unparseable("an authorization that could not be kept") }
            }
        }
    }

    /// The issue date an access key carries (its first eight digits,
    /// ddMMyyyy); nil when it is not one.
    static func issueDay(of accessKey: String) -> ComprobanteDate? {
        let digits = Array(accessKey.utf8)
        guard digits.count == 49, digits.allSatisfy({ (0x30...0x39).contains($0) }) else { return nil }
        func number(_ range: Range<Int>) -> Int { digits[range].reduce(0) { $0 * 10 + Int($1 - 0x30) } }
        return ComprobanteDate(year: number(4..<8), month: number(2..<4), day: number(0..<2))
    }

    /// Whether SRI's `ambiente` (PRUEBAS, PRODUCCIÓN; PRODUCCION, any case)
    /// is the environment the access key names in its 24th digit.
    static func environment(_ ambiente: String, isThatOf accessKey: String) -> Bool {
        let digits = Array(accessKey.utf8)
        guard digits.count == 49 else { return false }
        let name = ambiente.trimmingCharacters(in: .whitespaces).uppercased()
        switch digits[23] {
        case UInt8(ascii: "1"): return name == "PRUEBAS"
        case UInt8(ascii: "2"): return name == "PRODUCCIÓN" || name == "PRODUCCION"
        default: return false
        }
    }

    /// A reception answer's `comprobante` entries must name the key sent:
    /// DEVUELTA about another document would end this one (RETURNED is final)
    /// with another document's, maybe another tenant's, messages.
    static func checkKey(of answer: ReceptionAnswer, sent accessKey: String) throws(SRITransportError) {
        if answer.comprobantes.contains(where: { !$0.accessKey.isEmpty && $0.accessKey != accessKey }) {
            throw .unparseable("an answer about another access key")
        }
    }

    /// A fault wins over the status; an answer counts only with HTTP 200.
    private static func answer<Answer>(_ result: SOAPResult<Answer>, status: Int) throws(SRITransportError) -> Answer {
        switch result {
        case .fault(let fault):
            throw .soapFault(code: short(fault.code), message: short(fault.message), httpStatus: status)
        case .answer(let answer):
            guard status == 200 else { throw .httpStatus(status) }
            return answer
        }
    }

    static func join(_ base: String, _ path: String) -> String {
        base.hasSuffix("/") ? String(base.dropLast()) + path : base + path
    }

    private struct Received {
        var status: Int
        var bytes: [UInt8]
    }

    /// One POST; the whole exchange, body included, within the timeout.
    private func exchange(_ envelope: [UInt8], url: String, limit: Int) async throws(SRITransportError) -> Received {
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "text/xml; charset=utf-8")
        request.headers.add(name: "SOAPAction", value: "")
        request.body = .bytes(ByteBuffer(bytes: envelope))
        let deadline = NIODeadline.now() + .milliseconds(Int64(settings.timeoutMilliseconds))
        do {
            let response = try await http.execute(request, deadline: deadline)
            // HTTP/1.1's parser takes any three digits; outside 100-599 there is
            // no status to record, and the answer is a broken one.
            let status = Int(response.status.code)
            guard (100...599).contains(status) else { throw SRITransportError.connection("answered with \(status), not an HTTP status") }
            // The deadline covers the body too (AsyncHTTPClient's ends with the head).
            let buffer: ByteBuffer
            do {
                buffer = try await response.body.collect(upTo: limit, before: deadline)
            } catch is NIOTooManyBytesError {
                // Too large to read: an error page is still its status (and
                // recorded with it), an answer of 200 is no answer of SRI's.
                throw status == 200 ? SRITransportError.unparseable("answer larger than \(limit) bytes") : .httpStatus(status)
            }
            return Received(status: status, bytes: Array(buffer.readableBytesView))
        } catch let error as HTTPClientError {
            switch error {
            case .deadlineExceeded, .readTimeout, .writeTimeout:
                throw .timeout(milliseconds: settings.timeoutMilliseconds)
            case .getConnectionFromPoolTimeout:
                // No connection to this host came free or was made in time:
                // the request never left the process.
                throw .connection("no connection to SRI free or made within \(settings.timeoutMilliseconds) ms")
            case .connectTimeout:
                throw .connection("connect timeout")
            case .remoteConnectionClosed:
                throw .connection("closed by SRI before the answer was complete")
            default:
                throw .connection(Self.short("\(error)"))
            }
        } catch let error as SRITransportError {
            throw error
        } catch let error as NIOConnectionError {
            // Each address tried (IPv4 and IPv6) failed: the last one's reason.
            throw .connection(Self.short(error.connectionErrors.last.map { "\($0.error)" } ?? "cannot connect to \(error.host)"))
        } catch {
            throw .connection(Self.short("\(error)"))
        }
    }

    /// At most 200 code points on one line.
    static func short(_ text: String) -> String { Format.oneLine(text) }
}
