/// An answer that could not be read: not XML, not a SOAP envelope, or missing
/// what SRI always sends. `reason` is short and never quotes the document.
public struct SOAPParseError: Error, Sendable, Equatable, CustomStringConvertible {
    public let reason: String

    public init(_ reason: String) { self.reason = reason }

    public var description: String { reason }
}

/// A SOAP 1.1 Fault: what SRI answers for a server error (with HTTP 500).
public struct SOAPFault: Error, Sendable, Equatable {
    /// `faultcode`, as written (e.g. `soap:Server`).
    public var code: String
    /// `faultstring`.
    public var message: String

    public init(code: String, message: String) {
        self.code = code
        self.message = message
    }
}

/// What an answer says: SRI's answer, or a SOAP Fault instead of it.
public enum SOAPResult<Answer: Sendable>: Sendable {
    case answer(Answer)
    case fault(SOAPFault)
}

extension SOAPResult: Equatable where Answer: Equatable {}

/// One `mensaje` of SRI: `identificador`, `mensaje`, `informacionAdicional`, `tipo`.
public struct SRIMessage: Sendable, Equatable, Codable {
    /// `identificador`, e.g. "43" (a string: SRI's identifiers are codes).
    public var identifier: String
    /// `mensaje`, e.g. "CLAVE ACCESO REGISTRADA".
    public var message: String
    /// `informacionAdicional`, when present.
    public var additionalInformation: String?
    /// `tipo`: ERROR, ADVERTENCIA or INFORMATIVO.
    public var type: String

    public init(identifier: String, message: String, additionalInformation: String? = nil, type: String = "ERROR") {
        self.identifier = identifier
        self.message = message
        self.additionalInformation = additionalInformation
        self.type = type
    }

    public var isError: Bool { type == "ERROR" }
}

/// `RespuestaRecepcionComprobante`: the answer of `validarComprobante`.
public struct ReceptionAnswer: Sendable, Equatable {
    public enum Status: String, Sendable {
        case received = "RECIBIDA"
        case returned = "DEVUELTA"
    }

    /// One `comprobante` of the answer: its key and SRI's messages about it.
    public struct Comprobante: Sendable, Equatable {
        public var accessKey: String
        public var messages: [SRIMessage]

        public init(accessKey: String, messages: [SRIMessage]) {
            self.accessKey = accessKey
            self.messages = messages
        }
    }

    /// `estado`.
    public var status: Status
    /// `comprobantes` (empty for RECIBIDA).
    public var comprobantes: [Comprobante]

    public init(status: Status, comprobantes: [Comprobante] = []) {
        self.status = status
        self.comprobantes = comprobantes
    }

    /// Every message of every comprobante, in order.
    public var messages: [SRIMessage] { comprobantes.flatMap(\.messages) }
}

/// `estado` of one `autorizacion`.
public enum AuthorizationStatus: Sendable, Equatable, CustomStringConvertible {
    case authorized  // AUTORIZADO
    case notAuthorized  // NO AUTORIZADO
    case inProcess  // EN PROCESO
    case other(String)

    public init(_ text: String) {
        switch text {
        case "AUTORIZADO": self = .authorized
        case "NO AUTORIZADO": self = .notAuthorized
        case "EN PROCESO": self = .inProcess
        default: self = .other(text)
        }
    }

    /// The text SRI writes.
    public var description: String {
        switch self {
        case .authorized: "AUTORIZADO"
        case .notAuthorized: "NO AUTORIZADO"
        case .inProcess: "EN PROCESO"
        case .other(let text): text
        }
    }
}

/// `RespuestaAutorizacionComprobante`: the answer of `autorizacionComprobante`.
public struct AuthorizationAnswer: Sendable, Equatable {
    /// One `autorizacion` element.
    public struct Authorization: Sendable, Equatable {
        /// `estado`.
        public var status: AuthorizationStatus
        /// `numeroAutorizacion` (the access key in the offline scheme).
        public var number: String?
        /// `fechaAutorizacion`, as written (e.g. `2026-12-01T10:15:32-05:00`).
        public var date: String?
        /// `ambiente`: PRUEBAS or PRODUCCIÓN.
        public var environment: String?
        /// `comprobante`: the authorized XML as text, whether SRI sent it as
        /// CDATA or as escaped text.
        public var comprobante: String?
        /// `mensajes`.
        public var messages: [SRIMessage]
        /// The `<autorizacion>` element as received, UTF-8, for keeping: see
        /// `SOAPElement.serialized()` (libxml2 copies the element into a
        /// document of its own, declaring any namespace it borrowed from the
        /// envelope, and saves it without an XML declaration).
        public var element: [UInt8]

        public init(
            status: AuthorizationStatus, number: String? = nil, date: String? = nil, environment: String? = nil,
            comprobante: String? = nil, messages: [SRIMessage] = [], element: [UInt8] = []
        ) {
            self.status = status
            self.number = number
            self.date = date
            self.environment = environment
            self.comprobante = comprobante
            self.messages = messages
            self.element = element
        }
    }

    /// `claveAccesoConsultada`, when present.
    public var queriedAccessKey: String?
    /// `numeroComprobantes` (0 when SRI has no decision yet).
    public var count: Int
    /// The `autorizacion` elements, in order.
    public var authorizations: [Authorization]

    public init(queriedAccessKey: String?, count: Int, authorizations: [Authorization]) {
        self.queriedAccessKey = queriedAccessKey
        self.count = count
        self.authorizations = authorizations
    }
}

// MARK: - Reading answers by local element names

enum SOAPEnvelopeReader {
    /// Parses `bytes` and runs `read` on the SOAP Body while the tree lives.
    static func readBody<T>(_ bytes: [UInt8], _ read: (SOAPElement) throws(SOAPParseError) -> T) throws(SOAPParseError) -> T {
        guard let document = SOAPParsedDocument(bytes) else {
            // Why, read again only for a document refused.
            guard SOAPParsedDocument.markupFits(bytes) else {
                throw SOAPParseError(
                    "more than \(SOAPParsedDocument.maximumElements) elements or \(SOAPParsedDocument.maximumAttributes) attributes")
            }
            throw SOAPParseError("not well-formed XML")
        }
        return try document.read { root throws(SOAPParseError) in
            guard root.localName == "Envelope" else { throw SOAPParseError("not a SOAP envelope") }
            guard let body = root.child("Body") else { throw SOAPParseError("the envelope has no Body") }
            return try read(body)
        }
    }

    /// The Fault in `body`, if that is what it holds.
    static func fault(in body: SOAPElement) -> SOAPFault? {
        guard let fault = body.children.first(where: { $0.localName == "Fault" }) else { return nil }
        return SOAPFault(code: fault.child("faultcode")?.trimmedText ?? "", message: fault.child("faultstring")?.trimmedText ?? "")
    }

    static func messages(in parent: SOAPElement) throws(SOAPParseError) -> [SRIMessage] {
        guard let list = parent.child("mensajes") else { return [] }
        var messages: [SRIMessage] = []
        for item in list.children("mensaje") {
            guard let identifier = item.child("identificador")?.trimmedText, !identifier.isEmpty else {
                throw SOAPParseError("a mensaje has no identificador")
            }
            messages.append(
                SRIMessage(
                    identifier: identifier,
                    message: item.child("mensaje")?.trimmedText ?? "",
                    additionalInformation: item.child("informacionAdicional")?.trimmedText,
                    type: item.child("tipo")?.trimmedText ?? ""
                )
            )
        }
        return messages
    }
}

extension ReceptionAnswer {
    /// Reads a `validarComprobanteResponse` envelope (or a Fault), by local names.
    public static func parse(_ bytes: [UInt8]) throws(SOAPParseError) -> SOAPResult<ReceptionAnswer> {
        try SOAPEnvelopeReader.readBody(bytes) { body throws(SOAPParseError) in
            if let fault = SOAPEnvelopeReader.fault(in: body) { return .fault(fault) }
            guard let answer = body.descendant("RespuestaRecepcionComprobante") else {
                throw SOAPParseError("no RespuestaRecepcionComprobante")
            }
            guard let estado = answer.child("estado")?.trimmedText else { throw SOAPParseError("no estado") }
            guard let status = Status(rawValue: estado) else { throw SOAPParseError("unknown reception estado") }
            var comprobantes: [Comprobante] = []
            for item in answer.child("comprobantes")?.children("comprobante") ?? [] {
                comprobantes.append(
                    Comprobante(
                        accessKey: item.child("claveAcceso")?.trimmedText ?? "",
                        messages: try SOAPEnvelopeReader.messages(in: item)
                    )
                )
            }
            return .answer(ReceptionAnswer(status: status, comprobantes: comprobantes))
        }
    }
}

extension AuthorizationAnswer {
    /// Reads an `autorizacionComprobanteResponse` envelope (or a Fault), by local names.
    public static func parse(_ bytes: [UInt8]) throws(SOAPParseError) -> SOAPResult<AuthorizationAnswer> {
        try SOAPEnvelopeReader.readBody(bytes) { body throws(SOAPParseError) in
            if let fault = SOAPEnvelopeReader.fault(in: body) { return .fault(fault) }
            guard let answer = body.descendant("RespuestaAutorizacionComprobante") else {
                throw SOAPParseError("no RespuestaAutorizacionComprobante")
            }
            var authorizations: [Authorization] = []
            for item in answer.child("autorizaciones")?.children("autorizacion") ?? [] {
                guard let estado = item.child("estado")?.trimmedText, !estado.isEmpty else {
                    throw SOAPParseError("an autorizacion has no estado")
                }
                authorizations.append(
                    Authorization(
                        status: AuthorizationStatus(estado),
                        number: item.child("numeroAutorizacion")?.trimmedText,
                        date: item.child("fechaAutorizacion")?.trimmedText,
                        environment: item.child("ambiente")?.trimmedText,
                        comprobante: item.child("comprobante")?.text,
                        messages: try SOAPEnvelopeReader.messages(in: item),
                        element: item.serialized()
                    )
                )
            }
            let count: Int
            if let text = answer.child("numeroComprobantes")?.trimmedText {
                guard let number = Int(text), number >= 0 else { throw SOAPParseError("numeroComprobantes is not a number") }
                count = number
            } else {
                count = authorizations.count
            }
            return .answer(
                AuthorizationAnswer(
                    queriedAccessKey: answer.child("claveAccesoConsultada")?.trimmedText,
                    count: count,
                    authorizations: authorizations
                )
            )
        }
    }
}

extension AuthorizationAnswer.Authorization {
    /// The text of every `claveAcceso` element of `comprobante`, in document
    /// order, read by an XML parser (a comment or a CDATA section that spells
    /// the tag names none, `<claveAcceso >` is one); empty when it names
    /// none; nil when there is no comprobante or it is not well-formed XML.
    public var comprobanteAccessKeys: [String]? {
        guard let comprobante, let document = SOAPParsedDocument(Array(comprobante.utf8)) else { return nil }
        func collect(_ element: SOAPElement, into keys: inout [String]) {
            if element.localName == "claveAcceso" {
                keys.append(element.trimmedText)
                return
            }
            for child in element.children { collect(child, into: &keys) }
        }
        var keys: [String] = []
        do {
            try document.read { root in collect(root, into: &keys) }
        } catch {
            return nil
        }
        return keys
    }
}
