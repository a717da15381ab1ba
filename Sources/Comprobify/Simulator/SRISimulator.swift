import Foundation
import Postgres
import SRI

/// How the local SRI judges a received comprobante. The real judges are the
/// XSD validator and the XAdES verifier of the `SRI` target; tests may inject
/// others, named for what they really check.
public struct SRIJudges: Sendable {
    /// The schema errors of a comprobante; nil or empty when it passes (35 otherwise).
    public var schemaCheck: @Sendable ([UInt8]) -> [String]?
    /// True when the comprobante's signature verifies (39 at authorization otherwise).
    public var signatureCheck: @Sendable ([UInt8]) -> Bool

    public init(schemaCheck: @escaping @Sendable ([UInt8]) -> [String]?, signatureCheck: @escaping @Sendable ([UInt8]) -> Bool) {
        self.schemaCheck = schemaCheck
        self.signatureCheck = signatureCheck
    }

    /// SRI's own checks: the official XSD of the document type (factura 2.1.0,
    /// nota de crédito 1.1.0; any other root fails), and the XAdES-BES
    /// signature through `SignatureVerifier`.
    public static let sri = SRIJudges(
        schemaCheck: { bytes in
            switch ComprobanteProbe.rootName(of: bytes) {
            case "factura"?: SchemaValidator.factura.validate(bytes)
            case "notaCredito"?: SchemaValidator.creditNote.validate(bytes)
            case let root?: ["the root element \(root) is not a comprobante this SRI accepts"]
            case nil: ["the comprobante is not well-formed XML"]
            }
        },
        signatureCheck: { bytes in
            do {
                _ = try SignatureVerifier.verify(bytes)
                return true
            } catch {
                return false
            }
        }
    )

    /// Checks only that the comprobante is well-formed XML, and verifies no
    /// signature at all: every signature is taken as valid. For tests of the
    /// exchanges, and until the real judges are wired in.
    public static let wellFormednessOnlyNoSignatureCheck = SRIJudges(
        schemaCheck: { ComprobanteProbe.isWellFormed($0) ? nil : ["the comprobante is not well-formed XML"] },
        signatureCheck: { _ in true }
    )
}

/// Failures the local SRI is told to produce (POST /control/faults). Counts
/// are consumed one per request; absent fields leave the current value.
public struct SRISimulatorFaults: Codable, Sendable, Equatable {
    public struct Reception: Codable, Sendable, Equatable {
        /// The next n receptions answer HTTP 500 with a soap:Fault, receiving nothing.
        public var http500: Int?
        /// Each answer is held this long after the document was judged (and,
        /// when received, recorded), so a client that times out has still sent it.
        public var delayMs: Int?
        /// How many answers `delayMs` applies to; nil: every answer until changed.
        public var delayCount: Int?
        /// The next n documents are received and recorded, then the connection
        /// is closed without an answer: a resend gets 43.
        public var loseAnswer: Int?
        /// The next `returns` receptions (default 1) answer DEVUELTA with this
        /// identifier; with 43 or 70 the document is recorded as received.
        public var returnWith: String?
        public var returns: Int?

        public init(
            http500: Int? = nil, delayMs: Int? = nil, delayCount: Int? = nil, loseAnswer: Int? = nil,
            returnWith: String? = nil, returns: Int? = nil
        ) {
            self.http500 = http500
            self.delayMs = delayMs
            self.delayCount = delayCount
            self.loseAnswer = loseAnswer
            self.returnWith = returnWith
            self.returns = returns
        }
    }

    public struct Authorization: Codable, Sendable, Equatable {
        /// The next n queries of a received key answer no decision (numeroComprobantes 0).
        public var pending: Int?
        /// The next n queries of a received key answer one autorizacion EN PROCESO.
        public var inProcess: Int?
        /// The next n queries of a received, undecided key find it lost, as
        /// after a restart: it is forgotten and the answer has no decision
        /// (numeroComprobantes 0); sent again, it is RECIBIDA.
        public var forget: Int?
        /// The next n decisions are NO AUTORIZADO with `refuseWith` (default 39).
        public var refuse: Int?
        public var refuseWith: String?
        /// The next n queries answer HTTP 500 with a soap:Fault.
        public var http500: Int?
        public var delayMs: Int?
        public var delayCount: Int?

        public init(
            pending: Int? = nil, inProcess: Int? = nil, forget: Int? = nil, refuse: Int? = nil, refuseWith: String? = nil,
            http500: Int? = nil, delayMs: Int? = nil, delayCount: Int? = nil
        ) {
            self.pending = pending
            self.inProcess = inProcess
            self.forget = forget
            self.refuse = refuse
            self.refuseWith = refuseWith
            self.http500 = http500
            self.delayMs = delayMs
            self.delayCount = delayCount
        }
    }

    public var reception: Reception?
    public var authorization: Authorization?
    /// Added to every answer (both services), e.g. 20 for the benchmark.
    public var latencyMs: Int?
    /// Namespace prefixes of the answers: "sri" (soap:, ns2:), "jaxws" (S:, ns2:), "unprefixed".
    public var style: String?
    /// The authorized comprobante as escaped text instead of CDATA.
    public var escapedComprobante: Bool?

    public init(
        reception: Reception? = nil, authorization: Authorization? = nil, latencyMs: Int? = nil, style: String? = nil,
        escapedComprobante: Bool? = nil
    ) {
        self.reception = reception
        self.authorization = authorization
        self.latencyMs = latencyMs
        self.style = style
        self.escapedComprobante = escapedComprobante
    }
}

/// What the local SRI knows of one access key (GET /control/received).
public struct SRISimulatorKeyRecord: Codable, Sendable, Equatable {
    /// Reception requests that carried this key, whatever their answer.
    public var receptions: Int
    /// Authorization queries for this key.
    public var authorizationQueries: Int
    /// RECIBIDA (held, undecided), AUTORIZADO, NO AUTORIZADO, or DEVUELTA (never held).
    public var status: String
}

/// The answer the local SRI gives to one request.
enum SimulatorReply: Sendable, Equatable {
    case answer([UInt8], delayMilliseconds: Int)
    case serverError([UInt8], delayMilliseconds: Int)
    /// Close the connection without answering.
    case dropConnection
}

/// The local SRI's state: documents held by access key, decisions, and the
/// failures it was told to produce. In memory only.
public actor SRISimulator {
    private struct Held {
        var comprobante: String
        var signatureValid: Bool
        var decisions: [AuthorizationDraft] = []
    }

    public let judges: SRIJudges
    private let initialLatency: Int
    private var latency: Int
    private var faults = SRISimulatorFaults()
    private var style = SOAPAnswerStyle.sri
    private var escapedComprobante = false
    private var held: [String: Held] = [:]
    private var receptions: [String: Int] = [:]
    private var queries: [String: Int] = [:]
    private let now: @Sendable () -> Date

    /// The longest latency or delay the control API takes.
    static let longestDelayMilliseconds = 86_400_000

    public init(judges: SRIJudges, latencyMilliseconds: Int = 0, now: @escaping @Sendable () -> Date = { Date() }) {
        self.judges = judges
        let latency = min(max(0, latencyMilliseconds), SRISimulator.longestDelayMilliseconds)
        self.initialLatency = latency
        self.latency = latency
        self.now = now
    }

    // MARK: Control

    /// Merges `update` into the current faults (absent fields are kept).
    public func setFaults(_ update: SRISimulatorFaults) throws(SRISimulatorControlError) {
        if let name = update.style {
            switch name {
            case "sri": style = .sri
            case "jaxws": style = .jaxws
            case "unprefixed": style = .unprefixed
            default: throw SRISimulatorControlError(reason: "style must be sri, jaxws or unprefixed")
            }
        }
        let counts = [
            update.reception?.http500, update.reception?.delayMs, update.reception?.delayCount, update.reception?.loseAnswer,
            update.reception?.returns, update.authorization?.pending, update.authorization?.inProcess, update.authorization?.forget,
            update.authorization?.refuse, update.authorization?.http500, update.authorization?.delayMs,
            update.authorization?.delayCount, update.latencyMs,
        ]
        guard counts.allSatisfy({ ($0 ?? 0) >= 0 }) else { throw SRISimulatorControlError(reason: "counts and delays must be ≥ 0") }
        // A latency and a delay are added to each other: a day each at most.
        let delays = [update.reception?.delayMs, update.authorization?.delayMs, update.latencyMs]
        guard delays.allSatisfy({ ($0 ?? 0) <= SRISimulator.longestDelayMilliseconds }) else {
            throw SRISimulatorControlError(reason: "delays and latency must be at most \(SRISimulator.longestDelayMilliseconds) ms (a day)")
        }
        if let value = update.latencyMs { latency = value }
        if let value = update.escapedComprobante { escapedComprobante = value }
        if let change = update.reception {
            var current = faults.reception ?? .init()
            if let value = change.http500 { current.http500 = value }
            if let value = change.delayMs { current.delayMs = value }
            if change.delayMs != nil || change.delayCount != nil { current.delayCount = change.delayCount }
            if let value = change.loseAnswer { current.loseAnswer = value }
            if let value = change.returnWith {
                current.returnWith = value
                current.returns = change.returns ?? 1
            } else if let value = change.returns {
                current.returns = value
            }
            faults.reception = current
        }
        if let change = update.authorization {
            var current = faults.authorization ?? .init()
            if let value = change.pending { current.pending = value }
            if let value = change.inProcess { current.inProcess = value }
            if let value = change.forget { current.forget = value }
            if let value = change.refuse { current.refuse = value }
            if let value = change.refuseWith { current.refuseWith = value }
            if let value = change.http500 { current.http500 = value }
            if let value = change.delayMs { current.delayMs = value }
            if change.delayMs != nil || change.delayCount != nil { current.delayCount = change.delayCount }
            faults.authorization = current
        }
    }

    /// The faults still to be produced.
    public func currentFaults() -> SRISimulatorFaults {
        var current = faults
        current.latencyMs = latency
        current.escapedComprobante = escapedComprobante
        current.style = style == .jaxws ? "jaxws" : style == .unprefixed ? "unprefixed" : "sri"
        return current
    }

    /// Everything known per access key.
    public func received() -> [String: SRISimulatorKeyRecord] {
        var result: [String: SRISimulatorKeyRecord] = [:]
        for key in Set(receptions.keys).union(queries.keys).union(held.keys) {
            let status: String
            if let document = held[key] {
                status = document.decisions.last.map { $0.status.description } ?? "RECIBIDA"
            } else {
                status = "DEVUELTA"
            }
            result[key] = SRISimulatorKeyRecord(receptions: receptions[key] ?? 0, authorizationQueries: queries[key] ?? 0, status: status)
        }
        return result
    }

    /// Reception requests that carried `accessKey`.
    public func receptionCount(_ accessKey: String) -> Int { receptions[accessKey] ?? 0 }

    /// The comprobante held for `accessKey`, as the reception request carried
    /// it (its base64 decoded); nil when none is held.
    public func comprobante(_ accessKey: String) -> String? { held[accessKey]?.comprobante }

    /// Forgets every document and fault; latency returns to its starting value.
    public func reset() {
        held = [:]
        receptions = [:]
        queries = [:]
        faults = SRISimulatorFaults()
        latency = initialLatency
        style = .sri
        escapedComprobante = false
    }

    // MARK: Reception

    /// Judges one reception request the way SRI does: the envelope, the base64,
    /// the schema (35), the access key, its check digit and its agreement with
    /// the comprobante's date, type, RUC, environment and number (58), repeats (43);
    /// the signature is judged now and decided at authorization (39).
    func receive(_ body: [UInt8]) async -> SimulatorReply {
        if take(&faults.reception, \.http500) {
            // Received nothing, but the request carried its key: it counts.
            if let encoded = try? SOAPRequest.readReception(body), let bytes = Self.decoded(encoded),
                let key = ComprobanteProbe.accessKey(in: bytes)
            {
                receptions[key, default: 0] += 1
            }
            return serverError("Simulated server error", delay: receptionDelay())
        }
        let encoded: String
        do {
            encoded = try SOAPRequest.readReception(body)
        } catch {
            return serverError("Malformed request: \(error.reason)", code: "soap:Client", delay: receptionDelay())
        }
        // Judged outside the actor: the judges may take a while on large documents.
        let judgement = await Self.judge(encoded, judges: judges)
        let key = judgement.accessKey
        if let key { receptions[key, default: 0] += 1 }

        if let identifier = faults.reception?.returnWith, take(&faults.reception, \.returns) {
            if let key, AccessKey.isValid(key), ReceptionOutcome.alreadyReceivedIdentifiers.contains(identifier),
                held[key] == nil, let comprobante = judgement.comprobante
            {
                held[key] = Held(comprobante: comprobante, signatureValid: judgement.signatureValid)
            }
            return returned(key, Self.message(identifier, "Devolución simulada"))
        }
        if let errors = judgement.schemaErrors {
            return returned(key, Self.message("35", Self.summary(errors)))
        }
        guard let key, AccessKey.isValid(key), let comprobante = judgement.comprobante else {
            return returned(key, Self.message("58", "La clave de acceso no tiene 49 dígitos o su dígito verificador no corresponde"))
        }
        if !judgement.keyDisagreements.isEmpty {
            return returned(
                key,
                Self.message(
                    "58", "La clave de acceso no corresponde al comprobante: \(judgement.keyDisagreements.joined(separator: ", "))"))
        }
        guard held[key] == nil else {
            return returned(key, Self.message("43", "La clave de acceso \(key) ya fue registrada"))
        }
        held[key] = Held(comprobante: comprobante, signatureValid: judgement.signatureValid)
        if take(&faults.reception, \.loseAnswer) { return .dropConnection }
        return .answer(SOAPAnswerBuilder.reception(ReceptionAnswer(status: .received), style: style), delayMilliseconds: receptionDelay())
    }

    private struct Judgement: Sendable {
        var accessKey: String?
        var comprobante: String?
        var schemaErrors: [String]?
        var signatureValid: Bool
        /// The comprobante's fields its access key disagrees with (date, type, RUC, ...).
        var keyDisagreements: [String] = []
    }

    private nonisolated static func judge(_ encoded: String, judges: SRIJudges) async -> Judgement {
        guard let bytes = decoded(encoded) else {
            return Judgement(schemaErrors: ["the xml element is not base64"], signatureValid: false)
        }
        let key = ComprobanteProbe.accessKey(in: bytes)
        var errors = judges.schemaCheck(bytes)
        if errors?.isEmpty == true { errors = nil }
        let text = String(validating: bytes, as: UTF8.self)
        if text == nil && errors == nil { errors = ["the comprobante is not UTF-8"] }
        let signatureValid = errors == nil ? judges.signatureCheck(bytes) : false
        return Judgement(
            accessKey: key, comprobante: text, schemaErrors: errors, signatureValid: signatureValid,
            keyDisagreements: errors == nil ? ComprobanteProbe.accessKeyDisagreements(in: bytes) ?? [] : [])
    }

    /// The comprobante's bytes from `<xml>`'s base64 (line breaks allowed); nil
    /// when it is not base64 or empty.
    private nonisolated static func decoded(_ encoded: String) -> [UInt8]? {
        guard let data = Data(base64Encoded: encoded, options: .ignoreUnknownCharacters), !data.isEmpty else { return nil }
        return [UInt8](data)
    }

    private func returned(_ key: String?, _ message: SRIMessage) -> SimulatorReply {
        let answer = ReceptionAnswer(status: .returned, comprobantes: [.init(accessKey: key ?? "", messages: [message])])
        return .answer(SOAPAnswerBuilder.reception(answer, style: style), delayMilliseconds: receptionDelay())
    }

    private func receptionDelay() -> Int {
        latency + delay(&faults.reception, delay: \.delayMs, count: \.delayCount)
    }

    // MARK: Authorization

    /// Answers one authorization query: nothing for an unknown key; otherwise
    /// the decision, taken on the first query and kept (AUTORIZADO when the
    /// signature verified, NO AUTORIZADO with 39 when not).
    func authorize(_ body: [UInt8]) -> SimulatorReply {
        if take(&faults.authorization, \.http500) {
            if let key = try? SOAPRequest.readAuthorization(body) { queries[key, default: 0] += 1 }
            return serverError("Simulated server error", delay: authorizationDelay())
        }
        let key: String
        do {
            key = try SOAPRequest.readAuthorization(body)
        } catch {
            return serverError("Malformed request: \(error.reason)", code: "soap:Client", delay: authorizationDelay())
        }
        queries[key, default: 0] += 1
        guard var document = held[key] else { return authorizationAnswer(key, []) }
        if document.decisions.isEmpty {
            if take(&faults.authorization, \.forget) {
                held[key] = nil
                return authorizationAnswer(key, [])
            }
            if take(&faults.authorization, \.pending) { return authorizationAnswer(key, []) }
            if take(&faults.authorization, \.inProcess) {
                return authorizationAnswer(key, [AuthorizationDraft(status: .inProcess, environment: Self.environment(of: key))])
            }
            let refusal: SRIMessage?
            if take(&faults.authorization, \.refuse) {
                refusal = Self.message(faults.authorization?.refuseWith ?? "39", "Rechazo simulado")
            } else if !document.signatureValid {
                refusal = Self.message("39", "La firma del comprobante no es válida")
            } else {
                refusal = nil
            }
            var decision = AuthorizationDraft(
                status: refusal == nil ? .authorized : .notAuthorized,
                date: Self.ecuadorTimestamp(now()),
                environment: Self.environment(of: key),
                comprobante: document.comprobante,
                messages: refusal.map { [$0] } ?? []
            )
            if refusal == nil { decision.number = key }
            document.decisions.append(decision)
            held[key] = document
        }
        return authorizationAnswer(key, document.decisions)
    }

    private func authorizationAnswer(_ key: String, _ decisions: [AuthorizationDraft]) -> SimulatorReply {
        let drafts = decisions.map { draft in
            var draft = draft
            draft.comprobanteAsCDATA = !escapedComprobante
            return draft
        }
        let bytes = SOAPAnswerBuilder.authorization(accessKey: key, authorizations: drafts, style: style)
        return .answer(bytes, delayMilliseconds: authorizationDelay())
    }

    private func authorizationDelay() -> Int {
        latency + delay(&faults.authorization, delay: \.delayMs, count: \.delayCount)
    }

    // MARK: Helpers

    private func serverError(_ message: String, code: String = "soap:Server", delay: Int) -> SimulatorReply {
        .serverError(SOAPAnswerBuilder.fault(SOAPFault(code: code, message: message), style: style), delayMilliseconds: delay)
    }

    /// Consumes one unit of a counted fault; false when none is left.
    private func take<Faults>(_ faults: inout Faults?, _ count: WritableKeyPath<Faults, Int?>) -> Bool {
        guard var current = faults, let left = current[keyPath: count], left > 0 else { return false }
        current[keyPath: count] = left - 1
        faults = current
        return true
    }

    /// The configured delay, consuming one unit of its count when it has one.
    private func delay<Faults>(
        _ faults: inout Faults?, delay: WritableKeyPath<Faults, Int?>, count: WritableKeyPath<Faults, Int?>
    ) -> Int {
        guard var current = faults, let milliseconds = current[keyPath: delay], milliseconds > 0 else { return 0 }
        if let left = current[keyPath: count] {
            guard left > 0 else { return 0 }
            current[keyPath: count] = left - 1
            faults = current
        }
        return milliseconds
    }

    static let messageTexts = [
        "35": "ARCHIVO NO CUMPLE ESTRUCTURA XML",
        "39": "FIRMA INVALIDA",
        "43": "CLAVE ACCESO REGISTRADA",
        "45": "SECUENCIAL REGISTRADO",
        "58": "ERROR EN LA ESTRUCTURA DE CLAVE ACCESO",
        "70": "CLAVE DE ACCESO EN PROCESAMIENTO",
    ]

    static func message(_ identifier: String, _ information: String) -> SRIMessage {
        SRIMessage(
            identifier: identifier, message: messageTexts[identifier] ?? "ERROR SIMULADO", additionalInformation: information,
            type: "ERROR")
    }

    /// The schema errors on one line, bounded.
    static func summary(_ errors: [String]) -> String {
        let text = errors.prefix(5).joined(separator: "; ")
        return text.count > 500 ? String(text.prefix(499)) + "…" : text
    }

    /// PRUEBAS or PRODUCCIÓN, from the environment digit of the key.
    static func environment(of key: String) -> String {
        let digits = Array(key.utf8)
        return digits.count == 49 && digits[23] == UInt8(ascii: "2") ? "PRODUCCIÓN" : "PRUEBAS"
    }

    /// `2026-12-01T10:15:32-05:00`: Ecuador's time (UTC−5, no daylight saving).
    static func ecuadorTimestamp(_ date: Date) -> String {
        Timestamp.format(date.addingTimeInterval(-5 * 3600), fractionDigits: 0, suffix: "-05:00")
    }
}

/// A control request the local SRI cannot apply.
public struct SRISimulatorControlError: Error, Sendable {
    public let reason: String
}
