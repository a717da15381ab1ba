import CLibXML2
import Foundation

/// The namespaces of SRI's offline web services (SOAP 1.1).
public enum SOAPNamespace {
    public static let envelope = "http://schemas.xmlsoap.org/soap/envelope/"
    public static let reception = "http://ec.gob.sri.ws.recepcion"
    public static let authorization = "http://ec.gob.sri.ws.autorizacion"
}

/// The two requests of SRI's offline scheme (shared/sri/soap.md), built with
/// libxml2, and their reading on the server side (the local SRI).
public enum SOAPRequest {
    /// `validarComprobante`: the signed comprobante's bytes, in base64, in `<xml>`.
    public static func reception(signed: [UInt8]) -> [UInt8] {
        envelope(service: SOAPNamespace.reception, operation: "validarComprobante") { builder, operation in
            _ = builder.element("xml", in: operation, namespace: .none, text: Data(signed).base64EncodedString())
        }
    }

    /// `autorizacionComprobante` for one access key.
    public static func authorization(accessKey: String) -> [UInt8] {
        envelope(service: SOAPNamespace.authorization, operation: "autorizacionComprobante") { builder, operation in
            _ = builder.element("claveAccesoComprobante", in: operation, namespace: .none, text: accessKey)
        }
    }

    /// `soapenv:Envelope` with an empty Header and a Body holding `ec:<operation>`.
    private static func envelope(
        service: String, operation: String, fill: (SOAPDocumentBuilder, xmlNodePtr) -> Void
    ) -> [UInt8] {
        let builder = SOAPDocumentBuilder()
        let root = builder.root("Envelope", namespace: SOAPNamespace.envelope, prefix: "soapenv")
        _ = builder.element("Header", in: root)
        let body = builder.element("Body", in: root)
        let call = builder.element(operation, in: body, namespace: .declare(service, prefix: "ec"))
        fill(builder, call)
        return builder.bytes()
    }

    /// The text of `<xml>` in a `validarComprobante` request: base64, still encoded.
    public static func readReception(_ bytes: [UInt8]) throws(SOAPParseError) -> String {
        try parameter(of: bytes, service: SOAPNamespace.reception, operation: "validarComprobante", named: "xml")
    }

    /// The access key asked for in an `autorizacionComprobante` request.
    public static func readAuthorization(_ bytes: [UInt8]) throws(SOAPParseError) -> String {
        try parameter(
            of: bytes, service: SOAPNamespace.authorization, operation: "autorizacionComprobante", named: "claveAccesoComprobante")
    }

    /// A request's one parameter, read as SRI's services read it: unlike the
    /// client's reading of answers (by local names, whatever the prefixes), a
    /// request is taken only in SOAP 1.1's Envelope and Body, with the
    /// operation in the service's namespace and the parameter unqualified, as
    /// soap.md writes them; anything else is an error (a Fault for the client).
    private static func parameter(
        of bytes: [UInt8], service: String, operation name: String, named parameter: String
    ) throws(SOAPParseError) -> String {
        try SOAPEnvelopeReader.readBody(bytes) { body throws(SOAPParseError) in
            guard body.namespaceURI == SOAPNamespace.envelope, body.parent?.namespaceURI == SOAPNamespace.envelope else {
                throw SOAPParseError("not a SOAP 1.1 envelope: Envelope and Body belong to \(SOAPNamespace.envelope)")
            }
            guard let operation = body.children.first, operation.localName == name else {
                throw SOAPParseError("the Body holds no \(name)")
            }
            guard operation.namespaceURI == service else {
                throw SOAPParseError("cannot find dispatch method for {\(operation.namespaceURI ?? "")}\(name): it belongs to \(service)")
            }
            guard let value = operation.children.first(where: { $0.localName == parameter }) else {
                throw SOAPParseError("\(name) has no \(parameter)")
            }
            guard value.namespaceURI == nil else {
                throw SOAPParseError("\(parameter) must be unqualified (in no namespace), not in \(value.namespaceURI ?? "")")
            }
            return value.trimmedText
        }
    }
}
