import CLibXML2

/// The namespace prefixes of an answer: SRI's vary, so the local SRI can
/// answer in several styles and the parser is tested against each.
public struct SOAPAnswerStyle: Sendable, Equatable {
    /// Prefix of the SOAP envelope namespace; nil makes it the default namespace.
    public var envelopePrefix: String?
    /// Prefix of the service namespace on the `…Response` element; nil makes it
    /// the default namespace there (its children then say xmlns="").
    public var servicePrefix: String?

    public init(envelopePrefix: String?, servicePrefix: String?) {
        self.envelopePrefix = envelopePrefix
        self.servicePrefix = servicePrefix
    }

    /// As soap.md shows it: `soap:` and `ns2:`.
    public static let sri = SOAPAnswerStyle(envelopePrefix: "soap", servicePrefix: "ns2")
    /// As JAX-WS often writes it: `S:` and `ns2:`.
    public static let jaxws = SOAPAnswerStyle(envelopePrefix: "S", servicePrefix: "ns2")
    /// No prefixes at all: default namespaces only.
    public static let unprefixed = SOAPAnswerStyle(envelopePrefix: nil, servicePrefix: nil)
}

/// One `autorizacion` for the local SRI to answer with.
public struct AuthorizationDraft: Sendable, Equatable {
    public var status: AuthorizationStatus
    public var number: String?
    public var date: String?
    public var environment: String?
    public var comprobante: String?
    /// CDATA (as SRI usually sends it) or escaped text.
    public var comprobanteAsCDATA: Bool
    public var messages: [SRIMessage]

    public init(
        status: AuthorizationStatus, number: String? = nil, date: String? = nil, environment: String? = nil,
        comprobante: String? = nil, comprobanteAsCDATA: Bool = true, messages: [SRIMessage] = []
    ) {
        self.status = status
        self.number = number
        self.date = date
        self.environment = environment
        self.comprobante = comprobante
        self.comprobanteAsCDATA = comprobanteAsCDATA
        self.messages = messages
    }
}

/// SRI's answers, built with libxml2 (for the local SRI and for tests).
public enum SOAPAnswerBuilder {
    /// `validarComprobanteResponse`: RECIBIDA, or DEVUELTA with its comprobantes.
    public static func reception(_ answer: ReceptionAnswer, style: SOAPAnswerStyle = .sri) -> [UInt8] {
        response(style: style, service: SOAPNamespace.reception, operation: "validarComprobanteResponse") { builder, response in
            let root = builder.element("RespuestaRecepcionComprobante", in: response, namespace: .none)
            _ = builder.element("estado", in: root, text: answer.status.rawValue)
            let list = builder.element("comprobantes", in: root)
            for comprobante in answer.comprobantes {
                let item = builder.element("comprobante", in: list)
                _ = builder.element("claveAcceso", in: item, text: comprobante.accessKey)
                addMessages(comprobante.messages, to: item, builder: builder)
            }
        }
    }

    /// `autorizacionComprobanteResponse` for `accessKey` with these `autorizacion`s
    /// (none: SRI has no decision yet).
    public static func authorization(
        accessKey: String, authorizations: [AuthorizationDraft], style: SOAPAnswerStyle = .sri
    ) -> [UInt8] {
        response(style: style, service: SOAPNamespace.authorization, operation: "autorizacionComprobanteResponse") { builder, response in
            let root = builder.element("RespuestaAutorizacionComprobante", in: response, namespace: .none)
            _ = builder.element("claveAccesoConsultada", in: root, text: accessKey)
            _ = builder.element("numeroComprobantes", in: root, text: String(authorizations.count))
            let list = builder.element("autorizaciones", in: root)
            for draft in authorizations {
                let item = builder.element("autorizacion", in: list)
                _ = builder.element("estado", in: item, text: draft.status.description)
                if let number = draft.number { _ = builder.element("numeroAutorizacion", in: item, text: number) }
                if let date = draft.date { _ = builder.element("fechaAutorizacion", in: item, text: date) }
                if let environment = draft.environment { _ = builder.element("ambiente", in: item, text: environment) }
                if let comprobante = draft.comprobante {
                    // A CDATA section cannot hold "]]>"; such text goes escaped.
                    if draft.comprobanteAsCDATA && !comprobante.contains("]]>") {
                        _ = builder.cdataElement("comprobante", in: item, text: comprobante)
                    } else {
                        _ = builder.element("comprobante", in: item, text: comprobante)
                    }
                }
                addMessages(draft.messages, to: item, builder: builder)
            }
        }
    }

    /// A SOAP 1.1 Fault (sent with HTTP 500). The code's local part (`Server`,
    /// `Client`: whatever prefix `fault.code` has is dropped) is written with
    /// the envelope's prefix; with no envelope prefix, `soap` is declared for it
    /// on `faultcode`, so that the code is always a QName of SOAP's namespace.
    public static func fault(_ fault: SOAPFault, style: SOAPAnswerStyle = .sri) -> [UInt8] {
        let local = fault.code.split(separator: ":", omittingEmptySubsequences: false).last.map(String.init) ?? fault.code
        let prefix = style.envelopePrefix ?? "soap"
        return envelope(style: style) { builder, body in
            let element = builder.element("Fault", in: body)
            // faultcode and faultstring are unqualified, as SOAP 1.1 defines them.
            let code = builder.element("faultcode", in: element, namespace: .none, text: "\(prefix):\(local)")
            if style.envelopePrefix == nil { _ = xmlNewNs(code, SOAPNamespace.envelope, prefix) }
            _ = builder.element("faultstring", in: element, namespace: .none, text: fault.message)
        }
    }

    private static func addMessages(_ messages: [SRIMessage], to parent: xmlNodePtr, builder: SOAPDocumentBuilder) {
        let list = builder.element("mensajes", in: parent)
        for message in messages {
            let item = builder.element("mensaje", in: list)
            _ = builder.element("identificador", in: item, text: message.identifier)
            _ = builder.element("mensaje", in: item, text: message.message)
            if let information = message.additionalInformation {
                _ = builder.element("informacionAdicional", in: item, text: information)
            }
            _ = builder.element("tipo", in: item, text: message.type)
        }
    }

    private static func response(
        style: SOAPAnswerStyle, service: String, operation: String, fill: (SOAPDocumentBuilder, xmlNodePtr) -> Void
    ) -> [UInt8] {
        envelope(style: style) { builder, body in
            let response = builder.element(operation, in: body, namespace: .declare(service, prefix: style.servicePrefix))
            fill(builder, response)
        }
    }

    private static func envelope(style: SOAPAnswerStyle, fill: (SOAPDocumentBuilder, xmlNodePtr) -> Void) -> [UInt8] {
        let builder = SOAPDocumentBuilder()
        let root = builder.root("Envelope", namespace: SOAPNamespace.envelope, prefix: style.envelopePrefix)
        let body = builder.element("Body", in: root)
        fill(builder, body)
        return builder.bytes()
    }
}
