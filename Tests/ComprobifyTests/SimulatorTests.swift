import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import NIOPosix
import SRI
import TestSupport
import XCTest

@testable import Comprobify

/// The local SRI driven by the real SRIClient over a loopback port. No database.
final class SimulatorTests: XCTestCase {
    /// A live simulator on a free port, a client, and the control API.
    struct Harness: Sendable {
        let sri: SRIClient
        let simulator: SRISimulator
        let control: any TestClientProtocol
        let port: Int

        var baseURL: String { "http://127.0.0.1:\(port)/comprobantes-electronicos-ws" }

        /// POST /control/faults with a JSON object; fails the test unless 200.
        func faults(_ json: String, file: StaticString = #filePath, line: UInt = #line) async throws {
            let response = try await control.execute(
                uri: "/control/faults", method: .post, headers: [.contentType: "application/json"], body: ByteBuffer(string: json))
            XCTAssertEqual(response.status, .ok, String(buffer: response.body), file: file, line: line)
        }

        func received() async throws -> [String: Any] {
            let response = try await control.execute(uri: "/control/received", method: .get)
            XCTAssertEqual(response.status, .ok)
            return try XCTUnwrap(JSONSerialization.jsonObject(with: Data(buffer: response.body)) as? [String: Any])
        }
    }

    func run(
        judges: SRIJudges = .wellFormednessOnlyNoSignatureCheck, timeoutMilliseconds: Int = 5000, connectionsPerHost: Int = 8,
        _ body: @escaping @Sendable (Harness) async throws -> Void
    ) async throws {
        let simulator = SRISimulator(judges: judges)
        let app = buildSimulator(simulator: simulator, port: 0, logger: Logger(label: "sri-simulator-test"))
        try await app.test(.live) { client in
            let sri = SRIClient(settings: .init(timeoutMilliseconds: timeoutMilliseconds, connectionsPerHost: connectionsPerHost))
            do {
                try await body(Harness(sri: sri, simulator: simulator, control: client, port: client.port!))
            } catch {
                try await sri.shutdown()
                throw error
            }
            try await sri.shutdown()
        }
    }

    /// A fresh, valid access key (sandbox, random sequential and code).
    static func newKey(environment: Character = "1") -> String {
        let sequential = String(format: "%09d", Int.random(in: 1...999_999_999))
        let code = String(format: "%08d", Int.random(in: 0...99_999_999))
        let digits = "01122026" + "01" + "1790012345001" + String(environment) + "001001" + sequential + code + "1"
        return digits + String(AccessKey.checkDigit(digits))
    }

    /// A comprobante whose fields agree with `key` (date, type, RUC,
    /// environment, number, emission type), or with `fieldsOf` when given.
    static func comprobante(_ key: String, fieldsOf source: String? = nil) -> [UInt8] {
        let digits = Array(source ?? key)
        func part(_ from: Int, _ count: Int) -> String { String(digits[from..<(from + count)]) }
        let text = """
            <?xml version="1.0" encoding="UTF-8"?>
            <factura id="comprobante" version="2.1.0"><infoTributaria><ambiente>\(part(23, 1))</ambiente>\
            <tipoEmision>\(part(47, 1))</tipoEmision><ruc>\(part(10, 13))</ruc><claveAcceso>\(key)</claveAcceso>\
            <codDoc>\(part(8, 2))</codDoc><estab>\(part(24, 3))</estab><ptoEmi>\(part(27, 3))</ptoEmi>\
            <secuencial>\(part(30, 9))</secuencial></infoTributaria>\
            <infoFactura><fechaEmision>\(part(0, 2))/\(part(2, 2))/\(part(4, 4))</fechaEmision></infoFactura>\
            <detalle>Ñandú &amp; café</detalle></factura>
            """
        return Array(text.utf8)
    }

    // MARK: The happy path

    /// The client against an answer SRI would never give: a status outside
    /// HTTP's 100-599 is a failed exchange (it once reached a CHECK constraint
    /// and the exchange could not be recorded), and SRI_TIMEOUT_MS covers the
    /// answer's body too (a body trickled after the head held the worker past
    /// its lease), and a reception answer past 1 MiB is not read.
    func testAnAnswerWithNoStatusAndABodyTrickledPastTheTimeoutAreFailures() async throws {
        let router = Router()
        router.post("nostatus/**") { _, _ in Response(status: .init(code: 600, reasonPhrase: "Nothing")) }
        router.post("large/**") { _, _ in
            Response(status: .ok, body: .init(byteBuffer: ByteBuffer(repeating: UInt8(ascii: " "), count: (1 << 20) + 1)))
        }
        router.post("largeerror/**") { _, _ in
            Response(
                status: .serviceUnavailable,
                body: .init(byteBuffer: ByteBuffer(repeating: UInt8(ascii: " "), count: (1 << 20) + 1)))
        }
        router.post("trickle/**") { _, _ in
            Response(
                status: .ok,
                body: ResponseBody { writer in
                    for _ in 0..<50 {
                        try await writer.write(ByteBuffer(string: " "))
                        try await Task.sleep(for: .milliseconds(200))
                    }
                    try await writer.finish(nil)
                })
        }
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await app.test(.live) { client in
            let sri = SRIClient(settings: .init(timeoutMilliseconds: 700))
            let base = "http://127.0.0.1:\(client.port!)"
            do {
                _ = try await sri.authorize(accessKey: Self.newKey(), baseURL: base + "/nostatus")
                XCTFail("an answer with no HTTP status was taken")
            } catch {
                XCTAssertEqual(error as? SRITransportError, .connection("answered with 600, not an HTTP status"))
            }
            // A reception answer is a state and messages: past 1 MiB it is not read.
            do {
                _ = try await sri.validate(signed: Array("<factura/>".utf8), baseURL: base + "/large")
                XCTFail("a reception answer of more than 1 MiB was read")
            } catch {
                XCTAssertEqual(error as? SRITransportError, .unparseable("answer larger than 1048576 bytes"))
                XCTAssertEqual((error as? SRITransportError)?.httpStatus, 200)
            }
            // An error page too large to read is still its status, and the
            // exchange is recorded with it (it once was recorded as a 200).
            do {
                _ = try await sri.validate(signed: Array("<factura/>".utf8), baseURL: base + "/largeerror")
                XCTFail("a 503 answer was taken")
            } catch {
                XCTAssertEqual(error as? SRITransportError, .httpStatus(503))
                XCTAssertEqual((error as? SRITransportError)?.httpStatus, 503)
            }
            let started = ContinuousClock.now
            do {
                _ = try await sri.authorize(accessKey: Self.newKey(), baseURL: base + "/trickle")
                XCTFail("a trickled answer was taken")
            } catch {
                XCTAssertEqual(error as? SRITransportError, .timeout(milliseconds: 700))
            }
            XCTAssertLessThan(ContinuousClock.now - started, .seconds(5), "cut at SRI_TIMEOUT_MS, not at the body's end (10 s)")
            try await sri.shutdown()
        }
    }

    func testReceivedThenAuthorized() async throws {
        try await run { sri in
            let key = Self.newKey()
            let signed = Self.comprobante(key)
            let reception = try await sri.sri.validate(signed: signed, baseURL: sri.baseURL)
            XCTAssertEqual(reception, ReceptionAnswer(status: .received))
            XCTAssertEqual(ReceptionOutcome(reception), .received)

            let answer = try await sri.sri.authorize(accessKey: key, baseURL: sri.baseURL)
            XCTAssertEqual(answer.queriedAccessKey, key)
            XCTAssertEqual(answer.count, 1)
            guard case .authorized(let authorization) = AuthorizationOutcome(answer) else { return XCTFail("\(answer)") }
            XCTAssertEqual(authorization.number, key)
            XCTAssertEqual(authorization.environment, "PRUEBAS")
            XCTAssertEqual(authorization.comprobante.map { Array($0.utf8) }, signed, "the comprobante comes back as sent")
            let date = try XCTUnwrap(authorization.date)
            XCTAssertTrue(date.hasSuffix("-05:00"), date)
            XCTAssertTrue(String(decoding: authorization.element, as: UTF8.self).hasPrefix("<autorizacion>"))
            // Asked again: the same decision.
            let again = try await sri.sri.authorize(accessKey: key, baseURL: sri.baseURL)
            XCTAssertEqual(again.authorizations.map(\.status), [.authorized])
            let count = await sri.simulator.receptionCount(key)
            XCTAssertEqual(count, 1)
        }
    }

    func testRepeatIs43AndCountsAsReceived() async throws {
        try await run { sri in
            let key = Self.newKey()
            _ = try await sri.sri.validate(signed: Self.comprobante(key), baseURL: sri.baseURL)
            let repeated = try await sri.sri.validate(signed: Self.comprobante(key), baseURL: sri.baseURL)
            XCTAssertEqual(repeated.status, .returned)
            XCTAssertEqual(repeated.comprobantes.map(\.accessKey), [key])
            XCTAssertEqual(repeated.messages.map(\.identifier), ["43"])
            XCTAssertEqual(repeated.messages.first?.message, "CLAVE ACCESO REGISTRADA")
            XCTAssertTrue(ReceptionOutcome(repeated).countsAsReceived)
            let received = try await sri.received()
            let keys = try XCTUnwrap(received["keys"] as? [String: [String: Any]])
            XCTAssertEqual(keys[key]?["receptions"] as? Int, 2)
            XCTAssertEqual(keys[key]?["status"] as? String, "RECIBIDA")
            XCTAssertEqual(received["totalReceptions"] as? Int, 2)
        }
    }

    func testTheRootBaseURLWorksToo() async throws {
        try await run { sri in
            let key = Self.newKey(environment: "2")
            let root = "http://127.0.0.1:\(sri.port)/"
            let reception = try await sri.sri.validate(signed: Self.comprobante(key), baseURL: root)
            XCTAssertEqual(reception.status, .received)
            let answer = try await sri.sri.authorize(accessKey: key, baseURL: root)
            XCTAssertEqual(answer.authorizations.first?.environment, "PRODUCCIÓN")
        }
    }

    // MARK: Judging

    func testSchemaFailureIs35AndNothingIsHeld() async throws {
        let judges = SRIJudges(schemaCheck: { _ in ["cvc-complex-type: element detalle is not expected"] }, signatureCheck: { _ in true })
        try await run(judges: judges) { sri in
            let key = Self.newKey()
            let reception = try await sri.sri.validate(signed: Self.comprobante(key), baseURL: sri.baseURL)
            XCTAssertEqual(reception.status, .returned)
            XCTAssertEqual(reception.messages.map(\.identifier), ["35"])
            XCTAssertEqual(reception.messages.first?.additionalInformation, "cvc-complex-type: element detalle is not expected")
            XCTAssertEqual(ReceptionOutcome(reception), .returned(reception.messages))
            let answer = try await sri.sri.authorize(accessKey: key, baseURL: sri.baseURL)
            XCTAssertEqual(answer.count, 0, "a returned document is not held")
            XCTAssertEqual(AuthorizationOutcome(answer), .pending)
        }
    }

    func testNotWellFormedAndBadKeysAreReturned() async throws {
        try await run { sri in
            let garbage = try await sri.sri.validate(signed: Array("<factura>".utf8), baseURL: sri.baseURL)
            XCTAssertEqual(garbage.messages.map(\.identifier), ["35"])
            var key = Self.newKey()
            let last = key.removeLast()
            key.append(last == "9" ? "0" : "9")
            let badCheckDigit = try await sri.sri.validate(signed: Self.comprobante(key), baseURL: sri.baseURL)
            XCTAssertEqual(badCheckDigit.status, .returned)
            XCTAssertEqual(badCheckDigit.messages.map(\.identifier), ["58"])
            XCTAssertFalse(ReceptionOutcome(badCheckDigit).countsAsReceived)
            // A sound key that names another document: its number, or its date.
            let other = Self.newKey()
            let anotherNumber = try await sri.sri.validate(signed: Self.comprobante(other, fieldsOf: Self.newKey()), baseURL: sri.baseURL)
            XCTAssertEqual(anotherNumber.status, .returned)
            XCTAssertEqual(anotherNumber.messages.map(\.identifier), ["58"])
            XCTAssertEqual(anotherNumber.messages.first?.additionalInformation?.hasSuffix("secuencial"), true, "\(anotherNumber.messages)")
            let body = "02122026" + other.dropFirst(8).dropLast()
            let anotherDay = body + String(AccessKey.checkDigit(body))
            let dated = try await sri.sri.validate(signed: Self.comprobante(anotherDay, fieldsOf: other), baseURL: sri.baseURL)
            XCTAssertEqual(dated.messages.map(\.identifier), ["58"])
            XCTAssertEqual(dated.messages.first?.additionalInformation?.hasSuffix(": fechaEmision"), true, "\(dated.messages)")
            let sound = try await sri.sri.validate(signed: Self.comprobante(other), baseURL: sri.baseURL)
            XCTAssertEqual(sound.status, .received, "the same key on a comprobante it agrees with")
        }
    }

    func testInvalidSignatureIsRefusedWith39() async throws {
        try await run(judges: SRIJudges(schemaCheck: { _ in nil }, signatureCheck: { _ in false })) { sri in
            let key = Self.newKey()
            let reception = try await sri.sri.validate(signed: Self.comprobante(key), baseURL: sri.baseURL)
            XCTAssertEqual(reception.status, .received, "the signature is decided at authorization")
            let answer = try await sri.sri.authorize(accessKey: key, baseURL: sri.baseURL)
            guard case .refused(let refusal) = AuthorizationOutcome(answer) else { return XCTFail("\(answer)") }
            XCTAssertEqual(refusal.status, .notAuthorized)
            XCTAssertNil(refusal.number)
            XCTAssertEqual(refusal.messages.map(\.identifier), ["39"])
            XCTAssertEqual(refusal.messages.first?.message, "FIRMA INVALIDA")
        }
    }

    // MARK: Faults

    /// An injected 500 receives nothing, but the request counts among the
    /// key's receptions (or authorization queries), as any request carrying it.
    func testInjectedHTTP500IsASOAPFaultAndReceivesNothing() async throws {
        try await run { sri in
            let key = Self.newKey()
            try await sri.faults(#"{"reception": {"http500": 1}, "authorization": {"http500": 1}}"#)
            do throws(SRITransportError) {
                _ = try await sri.sri.validate(signed: Self.comprobante(key), baseURL: sri.baseURL)
                XCTFail("expected a fault")
            } catch {
                guard case .soapFault(let code, _, let status) = error else { return XCTFail("\(error)") }
                XCTAssertEqual(code, "soap:Server")
                XCTAssertEqual(status, 500)
                XCTAssertEqual(error.description, "SOAP fault soap:Server: Simulated server error")
            }
            let count = await sri.simulator.receptionCount(key)
            XCTAssertEqual(count, 1, "the request that got the 500 carried the key")
            let reception = try await sri.sri.validate(signed: Self.comprobante(key), baseURL: sri.baseURL)
            XCTAssertEqual(reception.status, .received, "the 500 received nothing")
            let again = await sri.simulator.receptionCount(key)
            XCTAssertEqual(again, 2)
            do throws(SRITransportError) {
                _ = try await sri.sri.authorize(accessKey: key, baseURL: sri.baseURL)
                XCTFail("expected a fault")
            } catch {
                guard case .soapFault = error else { return XCTFail("\(error)") }
            }
            let answer = try await sri.sri.authorize(accessKey: key, baseURL: sri.baseURL)
            XCTAssertEqual(answer.authorizations.map(\.status), [.authorized])
            let record = try await sri.received()
            let known = try XCTUnwrap(record["keys"] as? [String: [String: Any]])
            XCTAssertEqual(known[key]?["authorizationQueries"] as? Int, 2)
            XCTAssertEqual(known[key]?["receptions"] as? Int, 2)
        }
    }

    /// Requests are read as SRI's services read them: soap.md's SOAP 1.1
    /// namespaces, the operation in the service's namespace, its parameter
    /// unqualified. Anything else is a soap:Client Fault (HTTP 500) that
    /// receives nothing.
    func testRequestsOutsideSoapMdsNamespacesAreClientFaults() async throws {
        try await run { sri in
            let key = Self.newKey()
            let encoded = Data(Self.comprobante(key)).base64EncodedString()
            let soap11 = "http://schemas.xmlsoap.org/soap/envelope/"
            let soap12 = "http://www.w3.org/2003/05/soap-envelope"
            let receptionNS = "http://ec.gob.sri.ws.recepcion"
            let authorizationNS = "http://ec.gob.sri.ws.autorizacion"
            func envelope(_ namespace: String, _ body: String) -> String {
                #"<e:Envelope xmlns:e="\#(namespace)"><e:Header/><e:Body>\#(body)</e:Body></e:Envelope>"#
            }
            func operation(_ name: String, in namespace: String, _ inner: String) -> String {
                #"<op:\#(name) xmlns:op="\#(namespace)">\#(inner)</op:\#(name)>"#
            }
            let reception = "/comprobantes-electronicos-ws/RecepcionComprobantesOffline"
            let authorization = "/comprobantes-electronicos-ws/AutorizacionComprobantesOffline"
            let xml = "<xml>\(encoded)</xml>"
            let claveAcceso = "<claveAccesoComprobante>\(key)</claveAccesoComprobante>"
            let cases: [(path: String, body: String, reason: String)] = [
                (reception, "<Envelope><Body><validarComprobante>\(xml)</validarComprobante></Body></Envelope>", "not a SOAP 1.1 envelope"),
                (reception, envelope(soap12, operation("validarComprobante", in: receptionNS, xml)), "not a SOAP 1.1 envelope"),
                (
                    reception, envelope(soap11, operation("validarComprobante", in: "urn:not-sri", xml)),
                    "cannot find dispatch method for {urn:not-sri}validarComprobante"
                ),
                (
                    reception, envelope(soap11, operation("validarComprobante", in: receptionNS, "<op:xml>\(encoded)</op:xml>")),
                    "xml must be unqualified"
                ),
                (
                    authorization, envelope(soap11, operation("autorizacionComprobante", in: receptionNS, claveAcceso)),
                    "cannot find dispatch method for {\(receptionNS)}autorizacionComprobante"
                ),
                (
                    authorization,
                    envelope(
                        soap11,
                        operation(
                            "autorizacionComprobante", in: authorizationNS, "<op:claveAccesoComprobante>\(key)</op:claveAccesoComprobante>")
                    ),
                    "claveAccesoComprobante must be unqualified"
                ),
            ]
            for (path, body, reason) in cases {
                let response = try await sri.control.execute(
                    uri: path, method: .post, headers: [.contentType: "text/xml; charset=utf-8"], body: ByteBuffer(string: body))
                XCTAssertEqual(response.status, .internalServerError, body)
                let answer = try ReceptionAnswer.parse(Array(buffer: response.body))
                guard case .fault(let fault) = answer else { return XCTFail("\(answer)") }
                XCTAssertEqual(fault.code, "soap:Client", body)
                XCTAssertTrue(fault.message.contains(reason), "\(fault.message) for \(body)")
            }
            let received = await sri.simulator.receptionCount(key)
            XCTAssertEqual(received, 0, "nothing was received")
            // soap.md's own request, with prefixes of its own, is read.
            let good = envelope(soap11, operation("validarComprobante", in: receptionNS, xml))
            let response = try await sri.control.execute(
                uri: reception, method: .post, headers: [.contentType: "text/xml; charset=utf-8"], body: ByteBuffer(string: good))
            XCTAssertEqual(response.status, .ok)
            XCTAssertEqual(try ReceptionAnswer.parse(Array(buffer: response.body)), .answer(ReceptionAnswer(status: .received)))
        }
    }

    func testDelayBeyondTheTimeoutIsATimeoutAndTheDocumentWasReceived() async throws {
        try await run(timeoutMilliseconds: 300) { sri in
            let key = Self.newKey()
            try await sri.faults(#"{"reception": {"delayMs": 1500, "delayCount": 1}}"#)
            let started = ContinuousClock.now
            do throws(SRITransportError) {
                _ = try await sri.sri.validate(signed: Self.comprobante(key), baseURL: sri.baseURL)
                XCTFail("expected a timeout")
            } catch {
                XCTAssertEqual(error, .timeout(milliseconds: 300))
                XCTAssertEqual(error.description, "no answer within 300 ms")
            }
            XCTAssertLessThan(ContinuousClock.now - started, .milliseconds(1200), "the client gave up on time")
            let repeated = try await sri.sri.validate(signed: Self.comprobante(key), baseURL: sri.baseURL)
            XCTAssertEqual(repeated.messages.map(\.identifier), ["43"])
            XCTAssertEqual(ReceptionOutcome(repeated), .alreadyReceived(repeated.messages))
        }
    }

    /// A reception answer must be about the comprobante sent: DEVUELTA is
    /// final, and another document's messages must not end this one.
    func testAReceptionAnswerAboutAnotherKeyIsNotTaken() async throws {
        try await run { sri in
            let key = Self.newKey()
            let other = Self.newKey()
            _ = try await sri.sri.validate(signed: Self.comprobante(other), accessKey: other, baseURL: sri.baseURL)
            // SRI answers 43 about `other`; taken as about `key`, it would be wrong.
            do throws(SRITransportError) {
                _ = try await sri.sri.validate(signed: Self.comprobante(other), accessKey: key, baseURL: sri.baseURL)
                XCTFail("an answer about another key was taken")
            } catch {
                XCTAssertEqual(error, .unparseable("an answer about another access key"))
                XCTAssertFalse(error.description.contains(other), "the other key is not repeated")
            }
            let own = try await sri.sri.validate(signed: Self.comprobante(other), accessKey: other, baseURL: sri.baseURL)
            XCTAssertEqual(own.comprobantes.map(\.accessKey), [other])
            XCTAssertEqual(own.messages.map(\.identifier), ["43"])
        }
    }

    /// What a proxy or a failing SRI may answer instead of SRI's SOAP: an HTML
    /// page with 200 is unparseable, with another status that status; SRI's
    /// own answer (RECIBIDA, or a decision) counts only with HTTP 200, so the
    /// same answer with 500 or 503 is that status. Either way the exchange
    /// decides nothing (the document is tried again later).
    func testAnswersThatAreNotSRIsOrComeWithAnErrorStatusDecideNothing() async throws {
        let key = Self.newKey()
        @Sendable func reply(_ status: HTTPResponse.Status, _ bytes: [UInt8], html: Bool = false) -> Response {
            var headers = HTTPFields()
            headers[.contentType] = html ? "text/html" : "text/xml; charset=utf-8"
            return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
        }
        let page = Array("<html><body><h1>Servicio no disponible</h1></body></html>".utf8)
        let received = SOAPAnswerBuilder.reception(ReceptionAnswer(status: .received, comprobantes: []))
        let decided = SOAPAnswerBuilder.authorization(
            accessKey: key,
            authorizations: [
                AuthorizationDraft(
                    status: .authorized, number: key, date: "2026-12-01T10:15:32-05:00", environment: "PRUEBAS",
                    comprobante: "<factura/>", comprobanteAsCDATA: true, messages: [])
            ])
        let router = Router()
        for (name, status, bytes, html) in [
            ("html-200", HTTPResponse.Status.ok, page, true), ("html-502", .badGateway, page, true),
            ("soap-500", .internalServerError, received, false), ("soap-503", .serviceUnavailable, decided, false),
        ] {
            router.post("\(name)/**") { _, _ in reply(status, bytes, html: html) }
        }
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await app.test(.live) { client in
            let sri = SRIClient(settings: .init(timeoutMilliseconds: 5000))
            let base = "http://127.0.0.1:\(client.port!)"
            /// The error matches `expected` (any unparseable answer for `.unparseable`).
            func check(_ error: SRITransportError, _ expected: SRITransportError, _ path: String) {
                if case .unparseable = expected {
                    if case .unparseable = error {} else { XCTFail("\(path): \(error)") }
                } else {
                    XCTAssertEqual(error, expected, path)
                }
            }
            for (path, expected) in [
                ("/html-200", SRITransportError.unparseable("")), ("/html-502", .httpStatus(502)), ("/soap-500", .httpStatus(500)),
            ] {
                do throws(SRITransportError) {
                    _ = try await sri.validate(signed: Self.comprobante(key), accessKey: key, baseURL: base + path)
                    XCTFail("\(path): taken as SRI's reception")
                } catch { check(error, expected, path) }
            }
            for (path, expected) in [("/html-200", SRITransportError.unparseable("")), ("/soap-503", .httpStatus(503))] {
                do throws(SRITransportError) {
                    _ = try await sri.authorize(accessKey: key, baseURL: base + path)
                    XCTFail("\(path): taken as SRI's decision")
                } catch { check(error, expected, path) }
            }
            // What the queue makes of them: no decision, tried again.
            let transition = Transition.after(
                .failed(SRITransportError.httpStatus(503)), from: .received, streak: 0, settings: SRISettings(), now: Date())
            XCTAssertEqual(transition.status, .received)
            XCTAssertNotNil(transition.nextAttemptMilliseconds)
            try await sri.shutdown()
        }
    }

    /// An authorization answer must be about the key asked: a proxy or cache
    /// in between that mixed answers up must not decide a document (for good).
    func testAnAuthorizationAboutAnotherKeyIsNotTaken() async throws {
        let asked = Self.newKey()
        let other = Self.newKey()
        @Sendable func answer(
            queried: String?, number: String?, status: String = "AUTORIZADO", ambiente: String = "PRUEBAS",
            date: String = "2026-12-01T10:15:32-05:00",
            comprobante: String? = "<factura><infoTributaria><claveAcceso>\(asked)</claveAcceso></infoTributaria></factura>"
        ) -> Response {
            let text = """
                <soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>\
                <ns2:autorizacionComprobanteResponse xmlns:ns2="http://ec.gob.sri.ws.autorizacion">\
                <RespuestaAutorizacionComprobante>\(queried.map { "<claveAccesoConsultada>\($0)</claveAccesoConsultada>" } ?? "")\
                <numeroComprobantes>1</numeroComprobantes><autorizaciones><autorizacion><estado>\(status)</estado>\
                \(number.map { "<numeroAutorizacion>\($0)</numeroAutorizacion>" } ?? "")\
                <fechaAutorizacion>\(date)</fechaAutorizacion><ambiente>\(ambiente)</ambiente>\
                \(comprobante.map { "<comprobante><![CDATA[\($0)]]></comprobante>" } ?? "")<mensajes/></autorizacion></autorizaciones>\
                </RespuestaAutorizacionComprobante></ns2:autorizacionComprobanteResponse></soap:Body></soap:Envelope>
                """
            return Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: text)))
        }
        let router = Router()
        router.post("other-query/**") { _, _ in answer(queried: other, number: other) }
        router.post("other-number/**") { _, _ in answer(queried: asked, number: other) }
        router.post("other-refusal/**") { _, _ in answer(queried: nil, number: other, status: "NO AUTORIZADO") }
        router.post("silent/**") { _, _ in answer(queried: nil, number: nil) }
        router.post("right/**") { _, _ in answer(queried: asked, number: asked) }
        router.post("no-comprobante/**") { _, _ in answer(queried: asked, number: asked, comprobante: nil) }
        router.post("bare-comprobante/**") { _, _ in answer(queried: asked, number: asked, comprobante: "<factura/>") }
        router.post("foreign-comprobante/**") { _, _ in
            answer(queried: nil, number: nil, comprobante: "<factura><claveAcceso>\(other)</claveAcceso></factura>")
        }
        // Read as XML: a comment that spells the tag is none, a tag with a space is one.
        router.post("commented-comprobante/**") { _, _ in
            answer(
                queried: nil, number: nil,
                comprobante: "<!-- <claveAcceso>\(asked)</claveAcceso> --><factura><infoTributaria><claveAcceso >\(other)</claveAcceso>"
                    + "</infoTributaria></factura>")
        }
        router.post("second-key/**") { _, _ in
            answer(
                queried: nil, number: nil,
                comprobante: "<factura><infoTributaria><claveAcceso>\(asked)</claveAcceso></infoTributaria>"
                    + "<infoAdicional><claveAcceso>\(other)</claveAcceso></infoAdicional></factura>")
        }
        router.post("not-xml-comprobante/**") { _, _ in answer(queried: asked, number: asked, comprobante: "<factura><claveAcceso>") }
        // The key dates the document 1 December 2026 (Ecuador): SRI cannot have
        // authorized it before, but for clocks seconds apart around midnight.
        router.post("early-date/**") { _, _ in answer(queried: asked, number: asked, date: "2026-11-29T23:59:59-05:00") }
        router.post("clock-behind/**") { _, _ in answer(queried: asked, number: asked, date: "2026-11-30T23:59:56-05:00") }
        router.post("same-day/**") { _, _ in answer(queried: asked, number: asked, date: "2026-12-01T00:00:00-05:00") }
        router.post("production-answer/**") { _, _ in answer(queried: asked, number: asked, ambiente: "PRODUCCIÓN") }
        router.post("production-refusal/**") { _, _ in
            answer(queried: asked, number: nil, status: "NO AUTORIZADO", ambiente: "PRODUCCION")
        }
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await app.test(.live) { client in
            let sri = SRIClient(settings: .init(timeoutMilliseconds: 5000))
            let base = "http://127.0.0.1:\(client.port!)"
            for (path, reason) in [
                ("/other-query", "an answer about another access key"),
                ("/other-number", "an authorization number that is not the access key"),
                ("/other-refusal", "an authorization number that is not the access key"),
                // AUTORIZADO with another document's comprobante decides nothing.
                ("/foreign-comprobante", "an authorization of another document's comprobante"),
                ("/commented-comprobante", "an authorization of another document's comprobante"),
                ("/second-key", "an authorization of another document's comprobante"),
                ("/not-xml-comprobante", "an authorization whose comprobante is not XML"),
                ("/early-date", "an authorization dated more than a day before the document's issue date"),
                // Nor does a decision of the other environment (the key is a test one).
                ("/production-answer", "an authorization of another environment (PRODUCCIÓN)"),
                ("/production-refusal", "an authorization of another environment (PRODUCCION)"),
            ] {
                do throws(SRITransportError) {
                    _ = try await sri.authorize(accessKey: asked, baseURL: base + path)
                    XCTFail("\(path): an answer about another key was taken")
                } catch {
                    XCTAssertEqual(error, .unparseable(reason), path)
                    XCTAssertFalse(error.description.contains(other), "the other key is not repeated")
                }
            }
            let silent = try await sri.authorize(accessKey: asked, baseURL: base + "/silent")
            XCTAssertEqual(silent.queriedAccessKey, asked)
            let right = try await sri.authorize(accessKey: asked, baseURL: base + "/right")
            XCTAssertEqual(right.authorizations.first?.number, asked)
            // A comprobante that names no key (SRI's sample abbreviates it), or none at all, is not another document's.
            for path in ["/bare-comprobante", "/no-comprobante", "/same-day", "/clock-behind"] {
                let taken = try await sri.authorize(accessKey: asked, baseURL: base + path)
                XCTAssertEqual(taken.authorizations.first?.status, .authorized, path)
            }
            // Stored, the silent answer's authorization number is the access key.
            let transition = Transition.after(
                .authorization(silent), from: .received, streak: 0, settings: SRISettings(), now: Date())
            XCTAssertEqual(transition.status, .authorized)
            XCTAssertEqual(transition.authorization?.number, asked)
            try await sri.shutdown()
        }
    }

    /// Each worker has one exchange in flight; with a connection per worker,
    /// 20 slow exchanges at once all reach SRI together, where AsyncHTTPClient's
    /// default of 8 connections would keep 12 waiting past the timeout.
    func testAsManyExchangesAtOnceAsConnectionsPerHost() async throws {
        try await run(timeoutMilliseconds: 1500, connectionsPerHost: 20) { sri in
            try await sri.faults(#"{"reception": {"delayMs": 900, "delayCount": 20}}"#)
            let outcomes = try await concurrently(20) { _ in
                do throws(SRITransportError) {
                    return try await sri.sri.validate(signed: Self.comprobante(Self.newKey()), baseURL: sri.baseURL).status.rawValue
                } catch {
                    return error.description
                }
            }
            // A second wave would end after 1800 ms, past the timeout.
            XCTAssertEqual(outcomes, Array(repeating: "RECIBIDA", count: 20), "the exchanges ran side by side")
        }
    }

    func testLostAnswerThenResendIs43ThenAuthorized() async throws {
        try await run { sri in
            let key = Self.newKey()
            try await sri.faults(#"{"reception": {"loseAnswer": 1}}"#)
            do throws(SRITransportError) {
                _ = try await sri.sri.validate(signed: Self.comprobante(key), baseURL: sri.baseURL)
                XCTFail("expected a lost answer")
            } catch {
                guard case .connection = error else { return XCTFail("\(error)") }
            }
            let repeated = try await sri.sri.validate(signed: Self.comprobante(key), baseURL: sri.baseURL)
            XCTAssertTrue(ReceptionOutcome(repeated).countsAsReceived)
            XCTAssertEqual(repeated.messages.map(\.identifier), ["43"])
            let answer = try await sri.sri.authorize(accessKey: key, baseURL: sri.baseURL)
            guard case .authorized = AuthorizationOutcome(answer) else { return XCTFail("\(answer)") }
            let count = await sri.simulator.receptionCount(key)
            XCTAssertEqual(count, 2)
        }
    }

    func testReturnWith70CountsAsReceived() async throws {
        try await run { sri in
            let key = Self.newKey()
            try await sri.faults(#"{"reception": {"returnWith": "70"}}"#)
            let first = try await sri.sri.validate(signed: Self.comprobante(key), baseURL: sri.baseURL)
            XCTAssertEqual(first.messages.map(\.identifier), ["70"])
            XCTAssertEqual(ReceptionOutcome(first), .alreadyReceived(first.messages))
            let answer = try await sri.sri.authorize(accessKey: key, baseURL: sri.baseURL)
            XCTAssertEqual(answer.authorizations.map(\.status), [.authorized])
        }
    }

    func testPendingThenInProcessThenAuthorized() async throws {
        try await run { sri in
            let key = Self.newKey()
            let unknown = try await sri.sri.authorize(accessKey: key, baseURL: sri.baseURL)
            XCTAssertEqual(unknown, AuthorizationAnswer(queriedAccessKey: key, count: 0, authorizations: []))
            _ = try await sri.sri.validate(signed: Self.comprobante(key), baseURL: sri.baseURL)
            try await sri.faults(#"{"authorization": {"pending": 1, "inProcess": 1}, "style": "unprefixed", "escapedComprobante": true}"#)
            let pending = try await sri.sri.authorize(accessKey: key, baseURL: sri.baseURL)
            XCTAssertEqual(pending.count, 0)
            XCTAssertEqual(AuthorizationOutcome(pending), .pending)
            let inProcess = try await sri.sri.authorize(accessKey: key, baseURL: sri.baseURL)
            XCTAssertEqual(inProcess.authorizations.map(\.status), [.inProcess])
            XCTAssertEqual(AuthorizationOutcome(inProcess), .pending)
            let decided = try await sri.sri.authorize(accessKey: key, baseURL: sri.baseURL)
            guard case .authorized(let authorization) = AuthorizationOutcome(decided) else { return XCTFail("\(decided)") }
            XCTAssertEqual(authorization.comprobante.map { Array($0.utf8) }, Self.comprobante(key), "escaped text reads the same")
        }
    }

    func testInjectedRefusal() async throws {
        try await run { sri in
            let key = Self.newKey()
            _ = try await sri.sri.validate(signed: Self.comprobante(key), baseURL: sri.baseURL)
            try await sri.faults(#"{"authorization": {"refuse": 1, "refuseWith": "56"}}"#)
            let answer = try await sri.sri.authorize(accessKey: key, baseURL: sri.baseURL)
            guard case .refused(let refusal) = AuthorizationOutcome(answer) else { return XCTFail("\(answer)") }
            XCTAssertEqual(refusal.messages.map(\.identifier), ["56"])
            let again = try await sri.sri.authorize(accessKey: key, baseURL: sri.baseURL)
            XCTAssertEqual(again.authorizations.map(\.status), [.notAuthorized], "a decision is kept")
        }
    }

    // MARK: Transport errors and the control API

    func testConnectionRefusedAndWrongPathAreTypedErrors() async throws {
        try await run(timeoutMilliseconds: 2000) { sri in
            do throws(SRITransportError) {
                _ = try await sri.sri.authorize(accessKey: Self.newKey(), baseURL: "http://127.0.0.1:\(sri.port)/nothing")
                XCTFail("expected an HTTP status error")
            } catch {
                XCTAssertEqual(error, .httpStatus(404))
            }
            // A port that was just free: bound, then closed, so connecting is refused.
            let listener = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .bind(host: "127.0.0.1", port: 0).get()
            let closedPort = try XCTUnwrap(listener.localAddress?.port)
            try await listener.close()
            do throws(SRITransportError) {
                _ = try await sri.sri.authorize(accessKey: Self.newKey(), baseURL: "http://127.0.0.1:\(closedPort)")
                XCTFail("expected a connection error")
            } catch {
                guard case .connection(let reason) = error else { return XCTFail("\(error)") }
                XCTAssertTrue(reason.localizedCaseInsensitiveContains("refused"), reason)
            }
        }
    }

    func testControlAPIRejectsNonsenseAndResets() async throws {
        try await run { sri in
            let bad = try await sri.control.execute(uri: "/control/faults", method: .post, body: ByteBuffer(string: #"{"reception": 5}"#))
            XCTAssertEqual(bad.status, .badRequest)
            let negative = try await sri.control.execute(
                uri: "/control/faults", method: .post, body: ByteBuffer(string: #"{"reception": {"http500": -1}}"#))
            XCTAssertEqual(negative.status, .badRequest)
            let negativeForget = try await sri.control.execute(
                uri: "/control/faults", method: .post, body: ByteBuffer(string: #"{"authorization": {"forget": -1}}"#))
            XCTAssertEqual(negativeForget.status, .badRequest)
            // A latency and a delay that would overflow when added are refused;
            // the simulator keeps answering.
            let huge = try await sri.control.execute(
                uri: "/control/faults", method: .post,
                body: ByteBuffer(string: #"{"latencyMs": 9223372036854775807, "reception": {"delayMs": 1}}"#))
            XCTAssertEqual(huge.status, .badRequest)
            let day = try await sri.control.execute(
                uri: "/control/faults", method: .post, body: ByteBuffer(string: #"{"authorization": {"delayMs": 86400001}}"#))
            XCTAssertEqual(day.status, .badRequest)
            let key = Self.newKey()
            _ = try await sri.sri.validate(signed: Self.comprobante(key), baseURL: sri.baseURL)
            try await sri.faults(#"{"reception": {"http500": 3}, "latencyMs": 5}"#)
            let current = try await sri.control.execute(uri: "/control/faults", method: .get)
            let faults = try JSONDecoder().decode(SRISimulatorFaults.self, from: Data(buffer: current.body))
            XCTAssertEqual(faults.reception?.http500, 3)
            XCTAssertEqual(faults.latencyMs, 5)
            let reset = try await sri.control.execute(uri: "/control/reset", method: .post)
            XCTAssertEqual(reset.status, .noContent)
            let received = try await sri.received()
            XCTAssertEqual(received["totalReceptions"] as? Int, 0)
            let again = try await sri.sri.validate(signed: Self.comprobante(key), baseURL: sri.baseURL)
            XCTAssertEqual(again.status, .received, "reset forgot the key and the faults")
        }
    }
}
