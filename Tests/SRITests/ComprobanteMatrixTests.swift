import Foundation
import TestSupport
import XCTest

@testable import SRI

/// Bodies whose totals were worked out by hand (the arithmetic is in the
/// comments), each computed, built into XML and checked by our schema
/// validator and by xmllint.
final class ComprobanteMatrixTests: XCTestCase {
    static let today = ComprobanteDate(year: 2026, month: 12, day: 1)!
    static let accessKey = "0112202601179001234500110010010000001231234567811"

    static let minimalIssuer = ComprobanteIssuer(
        ruc: "1790012345001", legalName: "Comercial Andina S.A.", headOfficeAddress: "Av. Amazonas N34-451",
        establishment: "001", emissionPoint: "001", environment: .test)

    static let fullIssuer = ComprobanteIssuer(
        ruc: "0992345678001", legalName: "Ñandú & Cía. <Importadores> \"Los 'Andes'\" ]]>",
        tradeName: "El Ñandú 🦤", headOfficeAddress: "Guayaquil, Av. 9 de Octubre & Malecón", address: "Quito, Calle Ñ",
        accountingRequired: true, specialTaxpayer: "12345", withholdingAgent: "1", rimpe: .negocioPopular,
        establishment: "002", emissionPoint: "103", environment: .production)

    static func line(
        _ quantity: String, _ price: String, rate: String, discount: String? = nil, description: String = "Artículo"
    ) -> ItemInput {
        ItemInput(
            description: description, quantity: quantity, unitPrice: price, discount: discount, taxes: [TaxInput(code: "2", rateCode: rate)]
        )
    }

    static func body(_ items: [ItemInput], payment: String? = nil) -> ComprobanteInput {
        ComprobanteInput(
            documentType: "01", issueDate: "2026-12-01",
            buyer: BuyerInput(idType: "07", id: "9999999999999", name: "CONSUMIDOR FINAL"), items: items,
            payments: payment.map { [PaymentInput(method: "01", total: $0)] })
    }

    /// What a body must come to, written by hand.
    struct Expected {
        var subtotal: String
        var discount: String
        /// (rateCode, base, value) in the order the lines first name them.
        var taxes: [(String, String, String)]
        var total: String
        /// Each line's (subtotal, tax value).
        var lines: [(String, String)]
    }

    struct Case {
        var name: String
        var input: ComprobanteInput
        var issuer: ComprobanteIssuer = ComprobanteMatrixTests.minimalIssuer
        var expected: Expected
    }

    static var cases: [Case] {
        var cases: [Case] = []

        // SRI.md's example: 2 × 10.75 = 21.50 − 0.50 = 21.00; 15 % = 3.15; 24.15.
        cases.append(
            Case(
                name: "example", input: ComprobanteValidatorTests.factura(), issuer: fullIssuer,
                expected: Expected(
                    subtotal: "21.00", discount: "0.50", taxes: [("4", "21.00", "3.15")], total: "24.15", lines: [("21.00", "3.15")])))

        // Every rate code on 100.00: 0, 12, 14, 15, 5, 0, 0, 13 → 59.00 of tax.
        let codes = ["0", "2", "3", "4", "5", "6", "7", "10"]
        let values = ["0.00", "12.00", "14.00", "15.00", "5.00", "0.00", "0.00", "13.00"]
        cases.append(
            Case(
                name: "every rate", input: body(codes.map { line("1", "100", rate: $0) }, payment: "859.00"),
                expected: Expected(
                    subtotal: "800.00", discount: "0.00", taxes: zip(codes, values).map { ($0, "100.00", $1) }, total: "859.00",
                    lines: values.map { ("100.00", $0) })))

        // Half-up boundaries.
        // 0.125 → 0.13, tax 0.0195 → 0.02; 1.005 → 1.01, tax 0.1515 → 0.15;
        // 0.015 → 0.02, tax 0.003 → 0.00; 0.10 at 15 % = 0.015 → 0.02;
        // 10.50 at 5 % = 0.525 → 0.53.
        // 15 %: base 0.13 + 1.01 + 0.02 + 0.10 = 1.26, tax 0.19; 5 %: 10.50, 0.53.
        // Subtotal 11.76; total 11.76 + 0.19 + 0.53 = 12.48.
        cases.append(
            Case(
                name: "half up",
                input: body([
                    line("1", "0.125", rate: "4"), line("1", "1.005", rate: "4"), line("1", "0.015", rate: "4"),
                    line("1", "0.10", rate: "4"), line("1", "10.50", rate: "5"),
                ]),
                expected: Expected(
                    subtotal: "11.76", discount: "0.00", taxes: [("4", "1.26", "0.19"), ("5", "10.50", "0.53")], total: "12.48",
                    lines: [("0.13", "0.02"), ("1.01", "0.15"), ("0.02", "0.00"), ("0.10", "0.02"), ("10.50", "0.53")])))

        // Six decimals. 1.123456 × 2.654321 = 2.982012853376 → 2.98 − 0.01 = 2.97; 12 % = 0.3564 → 0.36.
        // 0.000001 × 999999.999999 = 0.999999999999 → 1.00; 14 % = 0.14.
        // Subtotal 3.97, total 3.97 + 0.36 + 0.14 = 4.47.
        cases.append(
            Case(
                name: "six decimals",
                input: body(
                    [line("1.123456", "2.654321", rate: "2", discount: "0.01"), line("0.000001", "999999.999999", rate: "3")],
                    payment: "4.47"),
                expected: Expected(
                    subtotal: "3.97", discount: "0.01", taxes: [("2", "2.97", "0.36"), ("3", "1.00", "0.14")], total: "4.47",
                    lines: [("2.97", "0.36"), ("1.00", "0.14")])))

        // Discounts, exponents and the same rate twice: 3 × 19.99 = 59.97 − 9.97 = 50.00, 15 % = 7.50;
        // 1.5E1 × 2 = 30.00 − 30.00 = 0.00, tax 0.00; 4 × 2.5 = 10.00 − 0.05 = 9.95, 15 % = 1.4925 → 1.49.
        // 15 %: base 50.00 + 0.00 + 9.95 = 59.95, tax 8.99. Discount 40.02. Total 68.94.
        cases.append(
            Case(
                name: "discounts",
                input: body(
                    [
                        line("3", "19.99", rate: "4", discount: "9.97"), line("1.5E1", "2", rate: "4", discount: "30"),
                        line("4", "2.5", rate: "4", discount: "5e-2"),
                    ], payment: "68.94"),
                expected: Expected(
                    subtotal: "59.95", discount: "40.02", taxes: [("4", "59.95", "8.99")], total: "68.94",
                    lines: [("50.00", "7.50"), ("0.00", "0.00"), ("9.95", "1.49")])))

        // The largest amounts: 12 integer digits in the total, and a quantity with
        // 12 integer digits and 6 decimals:
        // 999999999999.999999 × 0.000001 = 999999.999999999999 → 1000000.00;
        // 999998999999.99 + 1000000.00 = 999999999999.99.
        cases.append(
            Case(
                name: "largest",
                input: body([line("1", "999998999999.99", rate: "0"), line("999999999999.999999", "0.000001", rate: "0")]),
                expected: Expected(
                    subtotal: "999999999999.99", discount: "0.00", taxes: [("0", "999999999999.99", "0.00")], total: "999999999999.99",
                    lines: [("999998999999.99", "0.00"), ("1000000.00", "0.00")])))

        // Every optional field present, at its longest; hostile text everywhere.
        let hostile = "& < > \" ' ]]> <!-- --> &amp; 🇪🇨 👩‍💻 ñÑáéíóúü"
        var full = ComprobanteValidatorTests.factura()
        full.buyer = BuyerInput(
            idType: "08", id: String(repeating: "Ñ", count: 20),
            name: String((hostile + String(repeating: "x", count: 300)).unicodeScalars.prefix(300)),
            address: hostile, email: "o'brien&co@example.ec")
        full.items = [
            ItemInput(
                code: String(repeating: "<", count: 25), auxCode: String(repeating: "é", count: 25),
                description: String(repeating: "🦤", count: 300), quantity: "2", unitPrice: "10.75", discount: "0.50",
                taxes: [TaxInput(code: "2", rateCode: "4")],
                details: [
                    NameValueInput(name: hostile, value: hostile), NameValueInput(name: "\"", value: "'"),
                    NameValueInput(name: String(repeating: "ñ", count: 300), value: String(repeating: "&", count: 300)),
                ])
        ]
        full.payments = [
            PaymentInput(method: "01", total: "4.15"), PaymentInput(method: "19", total: "20.00", term: "12", termUnit: "meses"),
        ]
        full.additionalInfo = (0..<14).map { NameValueInput(name: "Campo \($0) " + hostile, value: hostile + String($0)) }
        cases.append(
            Case(
                name: "everything", input: full, issuer: fullIssuer,
                expected: Expected(
                    subtotal: "21.00", discount: "0.50", taxes: [("4", "21.00", "3.15")], total: "24.15", lines: [("21.00", "3.15")])))

        // Every optional field absent: no discount, codes, details, payments, info; 04 with a RUC buyer.
        var bare = body([ItemInput(description: "x", quantity: "1", unitPrice: "0", taxes: [TaxInput(code: "2", rateCode: "7")])])
        bare.issueDate = nil
        bare.buyer = BuyerInput(idType: "04", id: "1790012345001", name: "B")
        cases.append(
            Case(
                name: "bare", input: bare,
                expected: Expected(
                    subtotal: "0.00", discount: "0.00", taxes: [("7", "0.00", "0.00")], total: "0.00", lines: [("0.00", "0.00")])))

        return cases
    }

    /// The factura case as a credit note: no payments, a modified document and a reason.
    static func asCreditNote(_ input: ComprobanteInput, reason: String = "Devolución") -> ComprobanteInput {
        var note = input
        note.documentType = "04"
        note.payments = nil
        note.modifiedDocument = ModifiedDocumentInput(documentType: "01", number: "001-001-000000123", issueDate: "2026-11-30")
        note.reason = reason
        return note
    }

    func testEveryBodyComputesAsWorkedOutByHandAndPassesBothSchemaChecks() throws {
        for testCase in Self.cases {
            for input in [testCase.input, Self.asCreditNote(testCase.input)] {
                let label = "\(testCase.name) \(input.documentType ?? "")"
                let comprobante: Comprobante
                do {
                    comprobante = try input.validated(today: Self.today)
                } catch {
                    XCTFail("\(label): \(error.violations)")
                    continue
                }
                check(comprobante.totals, comprobante.items, testCase.expected, label)

                let xml = try ComprobanteXML.build(
                    comprobante, issuer: testCase.issuer, numbering: ComprobanteNumbering(accessKey: Self.accessKey, sequential: 123))
                try assertValid(xml, kind: comprobante.kind, label)
                try assertSignedAndVerified(xml, kind: comprobante.kind, label)
                try assertPreparedMatchesBuilt(comprobante, issuer: testCase.issuer, built: xml, label)
                let root = comprobante.kind == .factura ? "/factura" : "/notaCredito"
                let info = comprobante.kind == .factura ? "/infoFactura" : "/infoNotaCredito"
                let totalElement = comprobante.kind == .factura ? "importeTotal" : "valorModificacion"
                XCTAssertEqual(try XMLLint.string(root + info + "/" + totalElement, in: xml), testCase.expected.total, label)
                XCTAssertEqual(try XMLLint.string(root + info + "/totalSinImpuestos", in: xml), testCase.expected.subtotal, label)
                XCTAssertEqual(
                    try XMLLint.string(root + "/detalles/detalle[1]/precioTotalSinImpuesto", in: xml), testCase.expected.lines[0].0, label)
            }
        }
    }

    private func check(_ totals: Totals, _ items: [LineItem], _ expected: Expected, _ label: String) {
        XCTAssertEqual(totals.subtotal.text(places: 2), expected.subtotal, label)
        XCTAssertEqual(totals.discount.text(places: 2), expected.discount, label)
        XCTAssertEqual(totals.total.text(places: 2), expected.total, label)
        XCTAssertEqual(totals.tip.text(places: 2), "0.00", label)
        XCTAssertEqual(totals.taxes.map(\.code), Array(repeating: "2", count: expected.taxes.count), label)
        XCTAssertEqual(totals.taxes.map(\.rateCode), expected.taxes.map(\.0), label)
        XCTAssertEqual(totals.taxes.map { $0.base.text(places: 2) }, expected.taxes.map(\.1), label)
        XCTAssertEqual(totals.taxes.map { $0.value.text(places: 2) }, expected.taxes.map(\.2), label)
        XCTAssertEqual(items.map { $0.subtotal.text(places: 2) }, expected.lines.map(\.0), label)
        XCTAssertEqual(items.map { $0.taxes[0].value.text(places: 2) }, expected.lines.map(\.1), label)
        XCTAssertEqual(items.map { $0.taxes[0].base }, items.map(\.subtotal), label)
    }

    private func assertValid(_ xml: [UInt8], kind: DocumentKind, _ label: String, file: StaticString = #filePath, line: UInt = #line)
        throws
    {
        XCTAssertEqual(SchemaValidator.forKind(kind).validate(xml), [], label, file: file, line: line)
        let schema = Schemas.file(kind == .factura ? "factura_V2.1.0.xsd" : "nota_credito_V1.1.0.xsd")
        let outcome = try XMLLint.validate(xml, schema: schema)
        XCTAssertEqual(outcome.status, 0, "\(label): \(outcome.output)", file: file, line: line)
    }

    private static let signer = Result { () throws -> (TestPKI, SigningIdentity) in
        let pki = try TestPKI()
        let name = try pki.leaf("Matriz Firmante")
        return (pki, try SigningIdentity(pkcs12: try pki.pkcs12(name), password: TestPKI.password, now: Date()))
    }

    /// Signs the built comprobante and has `xmlsec1 --verify` judge it, with the
    /// test CA trusted; the signed document still passes the official schema.
    private func assertSignedAndVerified(_ xml: [UInt8], kind: DocumentKind, _ label: String) throws {
        let (_, identity) = try Self.signer.get()
        try assertVerified(try XAdESSigner.sign(xml, identity: identity, signingTime: Date()), kind: kind, label)
    }

    /// The path issuing takes: built and validated with a placeholder number,
    /// then numbered and signed in the same tree. Apart from its signature the
    /// result is the comprobante `ComprobanteXML.build` writes with that number
    /// (the same canonical bytes), and it passes the schema and xmlsec1.
    private func assertPreparedMatchesBuilt(_ comprobante: Comprobante, issuer: ComprobanteIssuer, built: [UInt8], _ label: String) throws {
        let (_, identity) = try Self.signer.get()
        let prepared = try PreparedComprobante.prepare(comprobante, issuer: issuer)
        let signed = try prepared.signed(
            numbering: ComprobanteNumbering(accessKey: Self.accessKey, sequential: 123), identity: identity, signingTime: Date())
        try assertVerified(signed, kind: comprobante.kind, label + " (prepared)")
        let tree = try XMLTree(parsing: signed)
        let signature = try XCTUnwrap(tree.root.firstChild("Signature", namespace: "http://www.w3.org/2000/09/xmldsig#"), label)
        let reference = try XMLTree(parsing: built)
        XCTAssertEqual(
            String(decoding: try tree.canonicalBytes(tree.root, excluding: signature), as: UTF8.self),
            String(decoding: try reference.canonicalBytes(reference.root), as: UTF8.self), label)
        XCTAssertEqual(try XMLLint.string("//infoTributaria/secuencial", in: signed), "000000123", label)
        XCTAssertEqual(try XMLLint.string("//infoTributaria/claveAcceso", in: signed), Self.accessKey, label)
    }

    /// `xmlsec1 --verify` judges a signed comprobante, with the test CA
    /// trusted; it still passes the official schema.
    private func assertVerified(_ signed: [UInt8], kind: DocumentKind, _ label: String) throws {
        let (pki, _) = try Self.signer.get()
        try assertValid(signed, kind: kind, label + " (signed)")
        let file = pki.url("matrix-\(UUID().uuidString).xml")
        try Data(signed).write(to: file)
        let root = kind == .factura ? "factura" : "notaCredito"
        let (status, output) = try runTool(
            "xmlsec1",
            [
                "--verify", "--trusted-pem", pki.path("ca.pem"), "--id-attr:id", root,
                "--id-attr:Id", "http://uri.etsi.org/01903/v1.3.2#:SignedProperties", file.path,
            ])
        XCTAssertEqual(status, 0, "\(label): \(output)")
    }

    // MARK: - The XML itself

    func testTheXMLHasTheContractsShape() throws {
        let comprobante = try ComprobanteValidatorTests.factura().validated(today: Self.today)
        let xml = try ComprobanteXML.build(
            comprobante, issuer: Self.fullIssuer, numbering: ComprobanteNumbering(accessKey: Self.accessKey, sequential: 123))
        let text = String(decoding: xml, as: UTF8.self)
        XCTAssertTrue(text.hasPrefix("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<factura id=\"comprobante\" version=\"2.1.0\">"), text)
        XCTAssertFalse(text.contains("xmlns"))
        let values: [(String, String)] = [
            ("/factura/infoTributaria/ambiente", "2"),
            ("/factura/infoTributaria/tipoEmision", "1"),
            ("/factura/infoTributaria/razonSocial", Self.fullIssuer.legalName),
            ("/factura/infoTributaria/nombreComercial", "El Ñandú 🦤"),
            ("/factura/infoTributaria/claveAcceso", Self.accessKey),
            ("/factura/infoTributaria/codDoc", "01"),
            ("/factura/infoTributaria/estab", "002"),
            ("/factura/infoTributaria/ptoEmi", "103"),
            ("/factura/infoTributaria/secuencial", "000000123"),
            ("/factura/infoTributaria/agenteRetencion", "1"),
            ("/factura/infoTributaria/contribuyenteRimpe", "CONTRIBUYENTE NEGOCIO POPULAR - RÉGIMEN RIMPE"),
            ("/factura/infoFactura/fechaEmision", "01/12/2026"),
            ("/factura/infoFactura/dirEstablecimiento", "Quito, Calle Ñ"),
            ("/factura/infoFactura/contribuyenteEspecial", "12345"),
            ("/factura/infoFactura/obligadoContabilidad", "SI"),
            ("/factura/infoFactura/tipoIdentificacionComprador", "05"),
            ("/factura/infoFactura/identificacionComprador", "1712345678"),
            ("/factura/infoFactura/razonSocialComprador", "José Núñez"),
            ("/factura/infoFactura/totalDescuento", "0.50"),
            ("/factura/infoFactura/totalConImpuestos/totalImpuesto/codigoPorcentaje", "4"),
            ("/factura/infoFactura/totalConImpuestos/totalImpuesto/valor", "3.15"),
            ("/factura/infoFactura/propina", "0.00"),
            ("/factura/infoFactura/moneda", "DOLAR"),
            ("/factura/infoFactura/pagos/pago/formaPago", "01"),
            ("/factura/infoFactura/pagos/pago/total", "24.15"),
            ("/factura/infoFactura/pagos/pago/plazo", "30"),
            ("/factura/infoFactura/pagos/pago/unidadTiempo", "dias"),
            ("/factura/detalles/detalle/codigoPrincipal", "A-1"),
            ("/factura/detalles/detalle/cantidad", "2.000000"),
            ("/factura/detalles/detalle/precioUnitario", "10.750000"),
            ("/factura/detalles/detalle/descuento", "0.50"),
            ("/factura/detalles/detalle/detallesAdicionales/detAdicional/@nombre", "Color"),
            ("/factura/detalles/detalle/detallesAdicionales/detAdicional/@valor", "Rojo"),
            ("/factura/detalles/detalle/impuestos/impuesto/tarifa", "15.00"),
            ("/factura/detalles/detalle/impuestos/impuesto/baseImponible", "21.00"),
            ("/factura/infoAdicional/campoAdicional[1]/@nombre", "Email"),
            ("/factura/infoAdicional/campoAdicional[1]", "jose@example.ec"),
            ("/factura/infoAdicional/campoAdicional[2]/@nombre", "Pedido"),
            ("/factura/infoAdicional/campoAdicional[2]", "PO-77"),
            ("count(/factura/infoAdicional/campoAdicional)", "2"),
            ("count(/factura/*)", "4"),
        ]
        for (path, expected) in values {
            XCTAssertEqual(try XMLLint.string(path, in: xml), expected, path)
        }
    }

    func testOptionalElementsAreLeftOut() throws {
        let bare = Self.cases.first { $0.name == "bare" }!
        for input in [bare.input, Self.asCreditNote(bare.input)] {
            let comprobante = try input.validated(today: Self.today)
            let xml = try ComprobanteXML.build(
                comprobante, issuer: Self.minimalIssuer, numbering: ComprobanteNumbering(accessKey: Self.accessKey, sequential: 999_999_999)
            )
            let text = String(decoding: xml, as: UTF8.self)
            for absent in [
                "nombreComercial", "agenteRetencion", "contribuyenteRimpe", "dirEstablecimiento", "contribuyenteEspecial",
                "direccionComprador", "pagos", "codigoPrincipal", "codigoAuxiliar", "codigoInterno", "codigoAdicional",
                "detallesAdicionales", "infoAdicional",
            ] {
                XCTAssertFalse(text.contains("<" + absent), absent)
            }
            XCTAssertTrue(text.contains("<secuencial>999999999</secuencial>"))
            XCTAssertTrue(text.contains("<obligadoContabilidad>NO</obligadoContabilidad>"))
            XCTAssertTrue(text.contains("<fechaEmision>01/12/2026</fechaEmision>"), "a missing issueDate is today")
        }
    }

    func testTheCreditNoteUsesItsOwnElements() throws {
        let comprobante = try ComprobanteValidatorTests.creditNote().validated(today: Self.today)
        let xml = try ComprobanteXML.build(
            comprobante, issuer: Self.minimalIssuer, numbering: ComprobanteNumbering(accessKey: Self.accessKey, sequential: 7))
        XCTAssertTrue(String(decoding: xml, as: UTF8.self).contains("<notaCredito id=\"comprobante\" version=\"1.1.0\">"))
        let values: [(String, String)] = [
            ("/notaCredito/infoTributaria/codDoc", "04"),
            ("/notaCredito/infoTributaria/secuencial", "000000007"),
            ("/notaCredito/infoNotaCredito/codDocModificado", "01"),
            ("/notaCredito/infoNotaCredito/numDocModificado", "001-001-000000123"),
            ("/notaCredito/infoNotaCredito/fechaEmisionDocSustento", "30/11/2026"),
            ("/notaCredito/infoNotaCredito/valorModificacion", "24.15"),
            ("/notaCredito/infoNotaCredito/motivo", "Devolución"),
            ("/notaCredito/detalles/detalle/codigoInterno", "A-1"),
            ("count(/notaCredito/detalles/detalle/codigoPrincipal)", "0"),
            ("count(/notaCredito/infoNotaCredito/direccionComprador)", "0"),
            ("/notaCredito/infoAdicional/campoAdicional[1]/@nombre", "Email"),
        ]
        for (path, expected) in values {
            XCTAssertEqual(try XMLLint.string(path, in: xml), expected, path)
        }
    }

    func testHostileTextRoundTripsThroughTheXML() throws {
        let everything = Self.cases.first { $0.name == "everything" }!
        let comprobante = try everything.input.validated(today: Self.today)
        let xml = try ComprobanteXML.build(
            comprobante, issuer: Self.fullIssuer, numbering: ComprobanteNumbering(accessKey: Self.accessKey, sequential: 1))
        let text = String(decoding: xml, as: UTF8.self)
        XCTAssertFalse(text.contains("]]> <!--"), "unescaped text")
        let buyer = everything.input.buyer!
        let item = everything.input.items![0]
        let checks: [(String, String)] = [
            ("/factura/infoTributaria/razonSocial", Self.fullIssuer.legalName),
            ("/factura/infoTributaria/dirMatriz", Self.fullIssuer.headOfficeAddress),
            ("/factura/infoFactura/razonSocialComprador", buyer.name!),
            ("/factura/infoFactura/identificacionComprador", buyer.id!),
            ("/factura/infoFactura/direccionComprador", buyer.address!),
            ("/factura/detalles/detalle/codigoPrincipal", item.code!),
            ("/factura/detalles/detalle/codigoAuxiliar", item.auxCode!),
            ("/factura/detalles/detalle/descripcion", item.description!),
            ("/factura/detalles/detalle/detallesAdicionales/detAdicional[1]/@nombre", item.details![0].name!),
            ("/factura/detalles/detalle/detallesAdicionales/detAdicional[1]/@valor", item.details![0].value!),
            ("/factura/detalles/detalle/detallesAdicionales/detAdicional[2]/@nombre", "\""),
            ("/factura/detalles/detalle/detallesAdicionales/detAdicional[2]/@valor", "'"),
            ("/factura/detalles/detalle/detallesAdicionales/detAdicional[3]/@valor", String(repeating: "&", count: 300)),
            ("/factura/infoAdicional/campoAdicional[1]", "o'brien&co@example.ec"),
            ("/factura/infoAdicional/campoAdicional[15]/@nombre", everything.input.additionalInfo![13].name!),
            ("/factura/infoAdicional/campoAdicional[15]", everything.input.additionalInfo![13].value!),
        ]
        for (path, expected) in checks {
            XCTAssertEqual(try XMLLint.string(path, in: xml), expected, path)
        }
    }

    func testAThousandLinesPassTheSchema() throws {
        var input = ComprobanteValidatorTests.factura()
        input.payments = nil
        input.items = (0..<1000).map {
            Self.line("1", "0.01", rate: ["0", "2", "3", "4", "5", "6", "7", "10"][$0 % 8], description: "L\($0)")
        }
        let comprobante = try input.validated(today: Self.today)
        // 1000 × 0.01 = 10.00; each taxed line's tax rounds to 0.00 (at most 0.0015).
        XCTAssertEqual(comprobante.totals.total.text(places: 2), "10.00")
        XCTAssertEqual(comprobante.totals.taxes.count, 8)
        let xml = try ComprobanteXML.build(
            comprobante, issuer: Self.minimalIssuer, numbering: ComprobanteNumbering(accessKey: Self.accessKey, sequential: 1))
        try assertValid(xml, kind: .factura, "1000 lines")
        XCTAssertEqual(try XMLLint.string("count(/factura/detalles/detalle)", in: xml), "1000")
    }

    func testEveryBuyerTypeAndRimpeRegimePassesBothJudges() throws {
        let buyers = [
            BuyerInput(idType: "04", id: "0912345678001", name: "Empresa S.A."),
            BuyerInput(idType: "05", id: "0912345678", name: "Ana"),
            BuyerInput(idType: "06", id: "P1234567", name: "Anne", address: "Lyon"),
            BuyerInput(idType: "07", id: "9999999999999", name: "CONSUMIDOR FINAL"),
            BuyerInput(idType: "08", id: "DE-123 456/7", name: "Jörg", email: "j@example.de"),
        ]
        let regimes: [ComprobanteIssuer.Rimpe?] = [nil, .emprendedor, .negocioPopular]
        for (index, buyer) in buyers.enumerated() {
            var input = ComprobanteValidatorTests.factura()
            input.buyer = buyer
            var issuer = Self.minimalIssuer
            issuer.rimpe = regimes[index % regimes.count]
            for body in [input, Self.asCreditNote(input)] {
                let comprobante = try body.validated(today: Self.today)
                let xml = try ComprobanteXML.build(
                    comprobante, issuer: issuer, numbering: ComprobanteNumbering(accessKey: Self.accessKey, sequential: index + 1))
                try assertValid(xml, kind: comprobante.kind, "\(buyer.idType ?? "") \(body.documentType ?? "")")
                let root = comprobante.kind == .factura ? "/factura" : "/notaCredito"
                // SRI.md's legends, written out here, not read from the builder.
                let legend: String =
                    switch issuer.rimpe {
                    case nil: ""
                    case .emprendedor?: "CONTRIBUYENTE RÉGIMEN RIMPE"
                    case .negocioPopular?: "CONTRIBUYENTE NEGOCIO POPULAR - RÉGIMEN RIMPE"
                    }
                XCTAssertEqual(try XMLLint.string(root + "/infoTributaria/contribuyenteRimpe", in: xml), legend)
            }
        }
    }

    // MARK: - The judges can fail

    func testBothJudgesRefuseBrokenDocuments() throws {
        let comprobante = try ComprobanteValidatorTests.factura().validated(today: Self.today)
        let xml = try ComprobanteXML.build(
            comprobante, issuer: Self.minimalIssuer, numbering: ComprobanteNumbering(accessKey: Self.accessKey, sequential: 1))
        let text = String(decoding: xml, as: UTF8.self)
        let broken = [
            text.replacingOccurrences(of: "<propina>0.00</propina>", with: "<propina>-1.00</propina>"),
            text.replacingOccurrences(of: "<importeTotal>24.15</importeTotal>", with: "<importeTotal>1234567890123.45</importeTotal>"),
            text.replacingOccurrences(of: "<cantidad>2.000000</cantidad>", with: "<cantidad>2.0000001</cantidad>"),
            text.replacingOccurrences(of: "<moneda>DOLAR</moneda>", with: "").replacingOccurrences(
                of: "<propina>0.00</propina>", with: "<propina>0.00</propina><moneda>DOLAR</moneda>"),
            text.replacingOccurrences(of: "<secuencial>000000001</secuencial>", with: "<secuencial>1</secuencial>"),
            text.replacingOccurrences(of: "<factura id=\"comprobante\"", with: "<factura xmlns=\"urn:x\" id=\"comprobante\""),
        ]
        for document in broken {
            XCTAssertNotEqual(document, text)
            let bytes = Array(document.utf8)
            XCTAssertFalse(SchemaValidator.factura.validate(bytes).isEmpty, document)
            XCTAssertNotEqual(try XMLLint.validate(bytes, schema: Schemas.file("factura_V2.1.0.xsd")).status, 0, document)
        }
        // A factura is not a credit note.
        XCTAssertFalse(SchemaValidator.creditNote.validate(xml).isEmpty)
        XCTAssertEqual(SchemaValidator.factura.validate(Array("<factura".utf8)).first?.hasPrefix("not well-formed XML"), true)
        let doctype = "<?xml version=\"1.0\"?><!DOCTYPE factura [<!ENTITY e \"x\">]>" + text.drop { $0 != "\n" }
        XCTAssertEqual(SchemaValidator.factura.validate(Array(doctype.utf8)), ["a comprobante may not have a DOCTYPE"])
    }

    func testTheBuilderRefusesBadNumbering() throws {
        let comprobante = try ComprobanteValidatorTests.factura().validated(today: Self.today)
        for numbering in [
            ComprobanteNumbering(accessKey: "123", sequential: 1), ComprobanteNumbering(accessKey: Self.accessKey, sequential: 0),
            ComprobanteNumbering(accessKey: Self.accessKey, sequential: 1_000_000_000),
        ] {
            XCTAssertThrowsError(try ComprobanteXML.build(comprobante, issuer: Self.minimalIssuer, numbering: numbering)) { error in
                guard case .invalidNumbering? = error as? ComprobanteXML.BuildError else {
                    return XCTFail("\(numbering): \(error)")
                }
            }
        }
        var issuer = Self.minimalIssuer
        issuer.legalName = "A\u{0}B"
        XCTAssertThrowsError(
            try ComprobanteXML.build(comprobante, issuer: issuer, numbering: ComprobanteNumbering(accessKey: Self.accessKey, sequential: 1))
        ) { error in
            XCTAssertEqual(error as? ComprobanteXML.BuildError, .unrepresentableText(element: "razonSocial"))
        }
    }

    func testValidationIsSafeFromManyThreads() throws {
        let comprobante = try ComprobanteValidatorTests.factura().validated(today: Self.today)
        let xml = try ComprobanteXML.build(
            comprobante, issuer: Self.minimalIssuer, numbering: ComprobanteNumbering(accessKey: Self.accessKey, sequential: 1))
        let bad = Array(
            String(decoding: xml, as: UTF8.self).replacingOccurrences(of: "DOLAR", with: String(repeating: "D", count: 16)).utf8)
        DispatchQueue.concurrentPerform(iterations: 64) { index in
            if index % 2 == 0 {
                XCTAssertEqual(SchemaValidator.factura.validate(xml), [])
            } else {
                XCTAssertFalse(SchemaValidator.factura.validate(bad).isEmpty)
            }
        }
    }
}
