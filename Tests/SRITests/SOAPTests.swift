import Foundation
import XCTest

@testable import SRI

/// The SOAP exchanges of shared/sri/soap.md: requests built, answers read by
/// local names whatever the prefixes, and the decision rules.
final class SOAPTests: XCTestCase {
    let key = "0112202601179001234500110010010000000011234567811"

    // MARK: Requests

    func testReceptionRequestIsTheEnvelopeOfSoapMd() throws {
        let signed = Array(#"<?xml version="1.0" encoding="UTF-8"?><factura id="comprobante">ñ &amp; <x/></factura>"#.utf8)
        let envelope = SOAPRequest.reception(signed: signed)
        try Parsed(envelope).check { root in
            XCTAssertEqual(root.localName, "Envelope")
            XCTAssertEqual(root.namespaceURI, "http://schemas.xmlsoap.org/soap/envelope/")
            XCTAssertEqual(root.children.map(\.localName), ["Header", "Body"])
            XCTAssertTrue(root.children.allSatisfy { $0.namespaceURI == SOAPNamespace.envelope })
            XCTAssertTrue(root.child("Header")!.children.isEmpty)
            let call = try XCTUnwrap(root.child("Body")?.children.first)
            XCTAssertEqual(call.localName, "validarComprobante")
            XCTAssertEqual(call.namespaceURI, "http://ec.gob.sri.ws.recepcion")
            let xml = try XCTUnwrap(call.child("xml"))
            XCTAssertNil(xml.namespaceURI, "<xml> is unqualified")
            XCTAssertEqual(Data(base64Encoded: xml.text).map { [UInt8]($0) }, signed)
        }
        XCTAssertEqual(try SOAPRequest.readReception(envelope), Data(signed).base64EncodedString())
        let text = String(decoding: envelope, as: UTF8.self)
        XCTAssertTrue(text.hasPrefix(#"<?xml version="1.0" encoding="UTF-8"?>"#), text)
        XCTAssertTrue(text.contains("<soapenv:Envelope"), "the prefixes of soap.md")
        XCTAssertTrue(text.contains("<ec:validarComprobante"))
    }

    func testAuthorizationRequestIsTheEnvelopeOfSoapMd() throws {
        let envelope = SOAPRequest.authorization(accessKey: key)
        try Parsed(envelope).check { root in
            XCTAssertEqual(root.namespaceURI, SOAPNamespace.envelope)
            let call = try XCTUnwrap(root.child("Body")?.children.first)
            XCTAssertEqual(call.localName, "autorizacionComprobante")
            XCTAssertEqual(call.namespaceURI, "http://ec.gob.sri.ws.autorizacion")
            XCTAssertEqual(call.children.map(\.localName), ["claveAccesoComprobante"])
            XCTAssertNil(call.children[0].namespaceURI)
            XCTAssertEqual(call.children[0].text, key)
        }
        XCTAssertEqual(try SOAPRequest.readAuthorization(envelope), key)
        XCTAssertThrowsError(try SOAPRequest.readReception(envelope), "not a reception request")
    }

    // MARK: Reception answers

    func testReceivedAnswerWithSoapMdPrefixes() throws {
        let text = """
            <soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">
              <soap:Body>
                <ns2:validarComprobanteResponse xmlns:ns2="http://ec.gob.sri.ws.recepcion">
                  <RespuestaRecepcionComprobante>
                    <estado>RECIBIDA</estado>
                    <comprobantes/>
                  </RespuestaRecepcionComprobante>
                </ns2:validarComprobanteResponse>
              </soap:Body>
            </soap:Envelope>
            """
        XCTAssertEqual(try ReceptionAnswer.parse(Array(text.utf8)), .answer(ReceptionAnswer(status: .received)))
        // The same answer in UTF-16 (with its byte order mark, or declared) is
        // not read: the limits on markup read the bytes as UTF-8.
        let declared = #"<?xml version="1.0" encoding="UTF-16"?>"# + text
        var littleEndian: [UInt8] = [0xFF, 0xFE]
        for unit in text.utf16 { littleEndian += [UInt8(unit & 0xFF), UInt8(unit >> 8)] }
        var bigEndian: [UInt8] = []
        for unit in declared.utf16 { bigEndian += [UInt8(unit >> 8), UInt8(unit & 0xFF)] }
        XCTAssertThrowsError(try ReceptionAnswer.parse(littleEndian), "UTF-16LE with its mark")
        XCTAssertThrowsError(try ReceptionAnswer.parse(bigEndian), "UTF-16BE, declared")
        XCTAssertEqual(
            try ReceptionAnswer.parse(Array((#"<?xml version="1.0" encoding="utf-8"?>"# + text).utf8)),
            .answer(ReceptionAnswer(status: .received)), "UTF-8 declared is read")
    }

    func testReturnedAnswerInEveryStyle() throws {
        let message = SRIMessage(
            identifier: "43", message: "CLAVE ACCESO REGISTRADA", additionalInformation: "La clave de acceso ya fue registrada",
            type: "ERROR")
        let warning = SRIMessage(identifier: "52", message: "ERROR EN DIFERENCIAS", additionalInformation: nil, type: "ADVERTENCIA")
        let answer = ReceptionAnswer(status: .returned, comprobantes: [.init(accessKey: key, messages: [message, warning])])
        for style in [SOAPAnswerStyle.sri, .jaxws, .unprefixed, SOAPAnswerStyle(envelopePrefix: "env", servicePrefix: nil)] {
            let bytes = SOAPAnswerBuilder.reception(answer, style: style)
            let text = String(decoding: bytes, as: UTF8.self)
            XCTAssertEqual(try ReceptionAnswer.parse(bytes), .answer(answer), text)
            if let prefix = style.envelopePrefix {
                XCTAssertTrue(text.contains("<\(prefix):Envelope"), text)
            } else {
                XCTAssertTrue(text.contains("<Envelope xmlns=\"http://schemas.xmlsoap.org/soap/envelope/\""), text)
            }
            // The answer element is unqualified, as SRI sends it, whatever the default namespace.
            try Parsed(bytes).check { root in
                let response = try XCTUnwrap(root.child("Body")?.children.first)
                XCTAssertEqual(response.namespaceURI, SOAPNamespace.reception)
                XCTAssertNil(response.child("RespuestaRecepcionComprobante")?.namespaceURI, text)
            }
        }
    }

    func testReceptionAnswerWithPrefixesOnEveryElement() throws {
        let text = """
            <?xml version="1.0" encoding="UTF-8"?>
            <S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/"><S:Header/><S:Body>
            <ns2:validarComprobanteResponse xmlns:ns2="http://ec.gob.sri.ws.recepcion">
            <ns2:RespuestaRecepcionComprobante><ns2:estado> DEVUELTA </ns2:estado><ns2:comprobantes><ns2:comprobante>
            <ns2:claveAcceso>\(key)</ns2:claveAcceso><ns2:mensajes><ns2:mensaje><ns2:identificador>35</ns2:identificador>
            <ns2:mensaje>ARCHIVO NO CUMPLE ESTRUCTURA XML</ns2:mensaje><ns2:tipo>ERROR</ns2:tipo></ns2:mensaje>
            </ns2:mensajes></ns2:comprobante></ns2:comprobantes></ns2:RespuestaRecepcionComprobante>
            </ns2:validarComprobanteResponse></S:Body></S:Envelope>
            """
        guard case .answer(let answer) = try ReceptionAnswer.parse(Array(text.utf8)) else { return XCTFail("a fault?") }
        XCTAssertEqual(answer.status, .returned)
        XCTAssertEqual(answer.comprobantes.map(\.accessKey), [key])
        XCTAssertEqual(answer.messages, [SRIMessage(identifier: "35", message: "ARCHIVO NO CUMPLE ESTRUCTURA XML", type: "ERROR")])
        XCTAssertEqual(ReceptionOutcome(answer), .returned(answer.messages))
    }

    func testOnlyErrors43And70CountAsReceived() {
        func outcome(_ messages: [(String, String)]) -> ReceptionOutcome {
            let list = messages.map { SRIMessage(identifier: $0.0, message: "m", type: $0.1) }
            return ReceptionOutcome(ReceptionAnswer(status: .returned, comprobantes: [.init(accessKey: key, messages: list)]))
        }
        XCTAssertEqual(ReceptionOutcome(ReceptionAnswer(status: .received)), .received)
        XCTAssertTrue(outcome([("43", "ERROR")]).countsAsReceived)
        XCTAssertTrue(outcome([("70", "ERROR")]).countsAsReceived)
        XCTAssertTrue(outcome([("43", "ERROR"), ("70", "ERROR"), ("52", "ADVERTENCIA"), ("1", "INFORMATIVO")]).countsAsReceived)
        XCTAssertEqual(outcome([("43", "ERROR")]), .alreadyReceived([SRIMessage(identifier: "43", message: "m", type: "ERROR")]))
        XCTAssertFalse(outcome([("43", "ERROR"), ("45", "ERROR")]).countsAsReceived, "45 is a real return")
        XCTAssertFalse(outcome([("35", "ERROR")]).countsAsReceived)
        XCTAssertTrue(outcome([("43", "")]).countsAsReceived, "a message without tipo counts as an error")
        XCTAssertFalse(outcome([("35", "")]).countsAsReceived)
        XCTAssertFalse(outcome([]).countsAsReceived, "DEVUELTA with no error is still returned")
        XCTAssertFalse(outcome([("52", "ADVERTENCIA")]).countsAsReceived)
    }

    // MARK: Authorization answers

    func testAuthorizedAnswerCDATAAndEscapedGiveTheSameComprobante() throws {
        let comprobante = #"<?xml version="1.0" encoding="UTF-8"?><factura id="comprobante" version="2.1.0"><a>ñ &amp; é</a></factura>"#
        for (style, cdata) in [(SOAPAnswerStyle.sri, true), (.sri, false), (.jaxws, true), (.unprefixed, false)] {
            let draft = AuthorizationDraft(
                status: .authorized, number: key, date: "2026-12-01T10:15:32-05:00", environment: "PRODUCCIÓN",
                comprobante: comprobante, comprobanteAsCDATA: cdata)
            let bytes = SOAPAnswerBuilder.authorization(accessKey: key, authorizations: [draft], style: style)
            let text = String(decoding: bytes, as: UTF8.self)
            XCTAssertEqual(text.contains("<![CDATA["), cdata, text)
            guard case .answer(let answer) = try AuthorizationAnswer.parse(bytes) else { return XCTFail("a fault?") }
            XCTAssertEqual(answer.queriedAccessKey, key)
            XCTAssertEqual(answer.count, 1)
            let authorization = try XCTUnwrap(answer.authorizations.first)
            XCTAssertEqual(authorization.status, .authorized)
            XCTAssertEqual(authorization.number, key)
            XCTAssertEqual(authorization.date, "2026-12-01T10:15:32-05:00")
            XCTAssertEqual(authorization.environment, "PRODUCCIÓN")
            XCTAssertEqual(authorization.comprobante, comprobante, text)
            guard case .authorized(let winner) = AuthorizationOutcome(answer) else { return XCTFail("not authorized") }
            XCTAssertEqual(winner.number, key)
            // The kept element parses on its own and says the same.
            try Parsed(authorization.element).check { element in
                XCTAssertEqual(element.localName, "autorizacion")
                XCTAssertEqual(element.child("comprobante")?.text, comprobante)
                XCTAssertEqual(element.child("ambiente")?.text, "PRODUCCIÓN")
            }
        }
    }

    /// An answer made of markup (8 MiB of empty elements would cost libxml2
    /// hundreds of MB, an element of many attributes minutes of CPU) is
    /// refused before it is parsed; an authorized factura of 1000 lines, in
    /// CDATA, is not.
    func testAnAnswerOfMarkupIsRefusedBeforeItIsParsed() throws {
        let head = #"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>"#
        let tail = "</soap:Body></soap:Envelope>"
        let elements = head + String(repeating: "<a/>", count: 2 << 20) + tail
        let attributes = head + "<a " + (0..<20_000).map { "b\($0)=\"\"" }.joined(separator: " ") + "/>" + tail
        for text in [elements, attributes] {
            XCTAssertThrowsError(try AuthorizationAnswer.parse(Array(text.utf8))) { error in
                XCTAssertTrue("\(error)".contains("attributes"), "\(error)")
            }
            XCTAssertThrowsError(try ReceptionAnswer.parse(Array(text.utf8)))
        }
        let line =
            #"<detalle><codigoPrincipal>A1</codigoPrincipal><descripcion>Café</descripcion><cantidad>1.000000</cantidad>"#
            + #"<precioUnitario>1.000000</precioUnitario><descuento>0.00</descuento><precioTotalSinImpuesto>1.00</precioTotalSinImpuesto>"#
            + #"<impuestos><impuesto><codigo>2</codigo><codigoPorcentaje>4</codigoPorcentaje><tarifa>15.00</tarifa>"#
            + #"<baseImponible>1.00</baseImponible><valor>0.15</valor></impuesto></impuestos></detalle>"#
        let comprobante =
            #"<?xml version="1.0" encoding="UTF-8"?><factura id="comprobante" version="2.1.0"><detalles>"#
            + String(repeating: line, count: 1000) + "</detalles></factura>"
        // A `=` in text is no attribute: a comprobante whose lines say "a=b"
        // many times over, in CDATA or escaped, still parses.
        let equals = comprobante.replacingOccurrences(of: "Café", with: String(repeating: "a=b, \"x='y'\" ", count: 20))
        for (text, cdata) in [(comprobante, true), (equals, true), (equals, false)] {
            let draft = AuthorizationDraft(
                status: .authorized, number: key, date: "2026-12-01T10:15:32-05:00", environment: "PRODUCCIÓN",
                comprobante: text, comprobanteAsCDATA: cdata)
            let bytes = SOAPAnswerBuilder.authorization(accessKey: key, authorizations: [draft], style: .sri)
            guard case .answer(let answer) = try AuthorizationAnswer.parse(bytes) else { return XCTFail("a fault?") }
            XCTAssertEqual(answer.authorizations.first?.comprobante, text)
        }
        // Namespace declarations: a handful parse, more than 100 are refused
        // (each prefixed element is looked up through those in scope).
        func declaring(_ count: Int) -> String {
            head + "<r " + (0..<count).map { "xmlns:p\($0)=\"urn:\($0)\"" }.joined(separator: " ") + ">"
                + String(repeating: "<p0:a/>", count: 10) + "</r>" + tail
        }
        XCTAssertTrue(SOAPParsedDocument.markupFits(Array(declaring(98).utf8)))
        XCTAssertFalse(SOAPParsedDocument.markupFits(Array(declaring(100).utf8)), "the envelope's own declaration makes 101")
        XCTAssertFalse(
            SOAPParsedDocument.markupFits(
                Array((head + "<r xmlns = 'urn:x'>" + String(repeating: "<a xmlns='urn:y'/>", count: 100) + "</r>" + tail).utf8)))
        XCTAssertTrue(SOAPParsedDocument.markupFits(Array((head + "<r xmlnsx='1' axmlns='2'/>" + tail).utf8)), "not declarations")
        // A name is read back to the `=` before it, so a tag of many `=` is
        // read once, not once per `=` (20 thousand attributes, refused).
        XCTAssertTrue(SOAPParsedDocument.namesNamespace(Array("<r a=xmlns:p=".utf8), before: 12), "the name after the first `=`")
        XCTAssertFalse(SOAPParsedDocument.namesNamespace(Array("<r xmlns==".utf8), before: 9), "the name before an `=` is empty")
        XCTAssertFalse(SOAPParsedDocument.markupFits(Array((head + "<r " + String(repeating: "=", count: 20_000) + "/>" + tail).utf8)))
        // Attributes hidden behind a quoted `>`, a comment or a processing
        // instruction still count.
        let many = (0..<20_000).map { "b\($0)=''" }.joined(separator: " ")
        for tag in [#"<!-- " --><a c=">" "# + many + "/>", "<?pi x?><a " + many + "/>"] {
            XCTAssertFalse(SOAPParsedDocument.markupFits(Array((head + tag + tail).utf8)), String(tag.prefix(20)))
        }
    }

    func testTheKeptElementIsTheReceivedOne() throws {
        let element = """
            <autorizacion>
                <estado>AUTORIZADO</estado>
                <numeroAutorizacion>\(key)</numeroAutorizacion>
                <fechaAutorizacion>2026-12-01T10:15:32-05:00</fechaAutorizacion>
                <ambiente>PRUEBAS</ambiente>
                <comprobante><![CDATA[<?xml version="1.0" encoding="UTF-8"?><factura id="comprobante">ñ</factura>]]></comprobante>
                <mensajes/>
              </autorizacion>
            """
        let text = """
            <soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>
            <ns2:autorizacionComprobanteResponse xmlns:ns2="http://ec.gob.sri.ws.autorizacion"><RespuestaAutorizacionComprobante>
            <claveAccesoConsultada>\(key)</claveAccesoConsultada><numeroComprobantes>1</numeroComprobantes>
            <autorizaciones>\(element)</autorizaciones></RespuestaAutorizacionComprobante></ns2:autorizacionComprobanteResponse>
            </soap:Body></soap:Envelope>
            """
        guard case .answer(let answer) = try AuthorizationAnswer.parse(Array(text.utf8)) else { return XCTFail("a fault?") }
        XCTAssertEqual(String(decoding: answer.authorizations[0].element, as: UTF8.self), element)
    }

    func testAPrefixedElementKeepsItsNamespaceDeclaration() throws {
        let text = """
            <S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/"><S:Body>
            <ns2:autorizacionComprobanteResponse xmlns:ns2="http://ec.gob.sri.ws.autorizacion"><ns2:RespuestaAutorizacionComprobante>
            <ns2:numeroComprobantes>1</ns2:numeroComprobantes><ns2:autorizaciones><ns2:autorizacion><ns2:estado>AUTORIZADO</ns2:estado>
            <ns2:comprobante>&lt;factura&gt;x&lt;/factura&gt;</ns2:comprobante></ns2:autorizacion></ns2:autorizaciones>
            </ns2:RespuestaAutorizacionComprobante></ns2:autorizacionComprobanteResponse></S:Body></S:Envelope>
            """
        guard case .answer(let answer) = try AuthorizationAnswer.parse(Array(text.utf8)) else { return XCTFail("a fault?") }
        XCTAssertNil(answer.queriedAccessKey)
        let authorization = try XCTUnwrap(answer.authorizations.first)
        XCTAssertEqual(authorization.comprobante, "<factura>x</factura>")
        try Parsed(authorization.element).check { element in
            XCTAssertEqual(element.namespaceURI, SOAPNamespace.authorization, "the borrowed declaration is copied")
        }
    }

    func testAnyAuthorizedWinsOverEarlierRefusals() throws {
        let refused = AuthorizationDraft(
            status: .notAuthorized, date: "2026-12-01T10:00:00-05:00", environment: "PRUEBAS",
            messages: [SRIMessage(identifier: "39", message: "FIRMA INVALIDA", type: "ERROR")])
        let authorized = AuthorizationDraft(status: .authorized, number: key, date: "2026-12-01T11:00:00-05:00", environment: "PRUEBAS")
        for order in [[refused, authorized, refused], [authorized, refused]] {
            let bytes = SOAPAnswerBuilder.authorization(accessKey: key, authorizations: order, style: .jaxws)
            guard case .answer(let answer) = try AuthorizationAnswer.parse(bytes) else { return XCTFail("a fault?") }
            XCTAssertEqual(answer.count, order.count)
            XCTAssertEqual(answer.authorizations.map(\.status), order.map(\.status))
            guard case .authorized(let winner) = AuthorizationOutcome(answer) else { return XCTFail("AUTORIZADO must win") }
            XCTAssertEqual(winner.date, "2026-12-01T11:00:00-05:00")
        }
    }

    func testRefusedAndPendingAnswers() throws {
        let refused = AuthorizationDraft(
            status: .notAuthorized, environment: "PRUEBAS",
            messages: [SRIMessage(identifier: "39", message: "FIRMA INVALIDA", additionalInformation: "x", type: "ERROR")])
        func outcome(_ drafts: [AuthorizationDraft]) throws -> AuthorizationOutcome {
            let bytes = SOAPAnswerBuilder.authorization(accessKey: key, authorizations: drafts, style: .unprefixed)
            guard case .answer(let answer) = try AuthorizationAnswer.parse(bytes) else { throw SOAPParseError("a fault") }
            return AuthorizationOutcome(answer)
        }
        guard case .refused(let refusal) = try outcome([refused]) else { return XCTFail("NO AUTORIZADO is a refusal") }
        XCTAssertEqual(refusal.messages.map(\.identifier), ["39"])
        XCTAssertEqual(refusal.messages.first?.additionalInformation, "x")
        XCTAssertEqual(try outcome([]), .pending)
        XCTAssertEqual(try outcome([AuthorizationDraft(status: .inProcess)]), .pending)
        XCTAssertEqual(try outcome([refused, AuthorizationDraft(status: .inProcess)]), .pending, "a later attempt is under way")
        XCTAssertEqual(try outcome([AuthorizationDraft(status: .other("DESCONOCIDO"))]), .pending)

        let empty = """
            <soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>
            <ns2:autorizacionComprobanteResponse xmlns:ns2="http://ec.gob.sri.ws.autorizacion"><RespuestaAutorizacionComprobante>
            <claveAccesoConsultada>\(key)</claveAccesoConsultada><numeroComprobantes>0</numeroComprobantes><autorizaciones/>
            </RespuestaAutorizacionComprobante></ns2:autorizacionComprobanteResponse></soap:Body></soap:Envelope>
            """
        XCTAssertEqual(
            try AuthorizationAnswer.parse(Array(empty.utf8)),
            .answer(AuthorizationAnswer(queriedAccessKey: key, count: 0, authorizations: [])))
    }

    // MARK: Faults and garbage

    func testSOAPFaultsInEveryStyle() throws {
        // The code is a QName of SOAP's namespace in every style: written with
        // the envelope's prefix, or with soap declared for it where the
        // envelope has none.
        let envelope = "http://schemas.xmlsoap.org/soap/envelope/"
        let styles: [(SOAPAnswerStyle, code: String, element: String)] = [
            (.sri, "soap:Server", "<soap:Envelope xmlns:soap=\"\(envelope)\">"),
            (.jaxws, "S:Server", "<S:Envelope xmlns:S=\"\(envelope)\">"),
            (.unprefixed, "soap:Server", "<faultcode xmlns=\"\" xmlns:soap=\"\(envelope)\">soap:Server</faultcode>"),
        ]
        for (style, code, element) in styles {
            let bytes = SOAPAnswerBuilder.fault(SOAPFault(code: "soap:Server", message: "Error interno & <temporal>"), style: style)
            let fault = SOAPFault(code: code, message: "Error interno & <temporal>")
            XCTAssertEqual(try ReceptionAnswer.parse(bytes), .fault(fault))
            XCTAssertEqual(try AuthorizationAnswer.parse(bytes), .fault(fault))
            let text = String(decoding: bytes, as: UTF8.self)
            XCTAssertTrue(text.contains(element), text)
        }
        let foreign = """
            <env:Envelope xmlns:env="http://schemas.xmlsoap.org/soap/envelope/"><env:Header/><env:Body><env:Fault>
            <faultcode>env:Client</faultcode><faultstring>Cannot find dispatch method</faultstring></env:Fault></env:Body></env:Envelope>
            """
        XCTAssertEqual(
            try AuthorizationAnswer.parse(Array(foreign.utf8)),
            .fault(SOAPFault(code: "env:Client", message: "Cannot find dispatch method")))
    }

    func testGarbageIsAnError() {
        let soap = #"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">"#
        let cases: [String] = [
            "",
            "not xml at all",
            "<html><body>502 Bad Gateway</body></html>",
            soap + "<soap:Body><x/></soap:Body></soap:Envelope>",
            soap + "</soap:Envelope>",
            soap
                + "<soap:Body><RespuestaRecepcionComprobante><estado>QUIZAS</estado></RespuestaRecepcionComprobante></soap:Body></soap:Envelope>",
            soap + "<soap:Body><RespuestaRecepcionComprobante/></soap:Body></soap:Envelope>",
            soap + "<soap:Body><RespuestaRecepcionComprobante><estado>RECIBIDA</estado>",
            #"<!DOCTYPE x [<!ENTITY a "b">]>"# + soap + "<soap:Body/></soap:Envelope>",
        ]
        XCTAssertTrue(SOAPParsedDocument.declaresDoctype(Array((soap + "<!DOCTYPE").utf8)))
        XCTAssertFalse(SOAPParsedDocument.declaresDoctype(Array((soap + "<!DOCTYP").utf8)))
        XCTAssertFalse(SOAPParsedDocument.declaresDoctype(Array((soap + "&lt;!DOCTYPE x>").utf8)))
        for text in cases {
            XCTAssertThrowsError(try ReceptionAnswer.parse(Array(text.utf8)), text)
            XCTAssertThrowsError(try AuthorizationAnswer.parse(Array(text.utf8)), text)
        }
        let badCount =
            soap
            + "<soap:Body><RespuestaAutorizacionComprobante><numeroComprobantes>uno</numeroComprobantes></RespuestaAutorizacionComprobante></soap:Body></soap:Envelope>"
        XCTAssertThrowsError(try AuthorizationAnswer.parse(Array(badCount.utf8)))
        let noEstado =
            soap
            + "<soap:Body><RespuestaAutorizacionComprobante><autorizaciones><autorizacion/></autorizaciones></RespuestaAutorizacionComprobante></soap:Body></soap:Envelope>"
        XCTAssertThrowsError(try AuthorizationAnswer.parse(Array(noEstado.utf8)))
        // A reception answer is no authorization answer, and the other way round.
        let received = SOAPAnswerBuilder.reception(ReceptionAnswer(status: .received))
        XCTAssertThrowsError(try AuthorizationAnswer.parse(received))
        XCTAssertThrowsError(try ReceptionAnswer.parse(SOAPAnswerBuilder.authorization(accessKey: key, authorizations: [])))
    }

    func testComprobanteProbe() {
        let comprobante =
            "<factura id=\"comprobante\"><infoTributaria><ambiente>1</ambiente><claveAcceso> \(key) </claveAcceso></infoTributaria></factura>"
        XCTAssertEqual(ComprobanteProbe.accessKey(in: Array(comprobante.utf8)), key)
        XCTAssertTrue(ComprobanteProbe.isWellFormed(Array(comprobante.utf8)))
        XCTAssertNil(ComprobanteProbe.accessKey(in: Array("<factura><claveAcceso>1</claveAcceso></factura>".utf8)))
        XCTAssertFalse(ComprobanteProbe.isWellFormed(Array("<factura>".utf8)))
    }
}

/// A document parsed back with libxml2, to look at what was built.
private struct Parsed {
    let document: SOAPParsedDocument

    init(_ bytes: [UInt8]) throws {
        document = try XCTUnwrap(SOAPParsedDocument(bytes), String(decoding: bytes, as: UTF8.self))
    }

    func check(_ body: (SOAPElement) throws -> Void) throws {
        var failure: Error?
        try document.read { root in
            do { try body(root) } catch { failure = error }
        }
        if let failure { throw failure }
    }
}
