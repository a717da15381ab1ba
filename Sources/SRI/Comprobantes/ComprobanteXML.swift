import CLibXML2
import Foundation

/// Builds a comprobante's XML through libxml2's tree API, in the official
/// schema's element order, optional elements left out when empty. Text goes in
/// as text nodes and attribute values, so libxml2 escapes it when it writes the
/// document; nothing is ever concatenated into markup.
///
/// The result is unsigned (the schemas declare `ds:Signature` with
/// `minOccurs="0"`) and should pass `SchemaValidator`; a failure there is a bug.
public enum ComprobanteXML {
    public enum BuildError: Error, Sendable, Equatable {
        /// The access key is not 49 digits or the sequential not 1…999 999 999.
        case invalidNumbering(String)
        /// A text holds a character XML cannot carry (a control character,
        /// U+FFFE or U+FFFF); the element's name says where.
        case unrepresentableText(element: String)
        /// libxml2 could not allocate or serialize the document.
        case libxml2
    }

    /// `tipoEmision`: normal emission, the only one SRI offers.
    public static let emissionType = "1"

    /// The schema version each document type is written in.
    public static func version(of kind: DocumentKind) -> String {
        switch kind {
        case .factura: "2.1.0"
        case .creditNote: "1.1.0"
        }
    }

    /// The UTF-8 bytes of the unsigned comprobante, beginning with the XML declaration.
    public static func build(
        _ comprobante: Comprobante, issuer: ComprobanteIssuer, numbering: ComprobanteNumbering
    ) throws(BuildError) -> [UInt8] {
        try tree(comprobante, issuer: issuer, numbering: numbering).serialized()
    }

    /// The comprobante built as a tree, for `PreparedComprobante`.
    fileprivate static func tree(
        _ comprobante: Comprobante, issuer: ComprobanteIssuer, numbering: ComprobanteNumbering
    ) throws(BuildError) -> ComprobanteTree {
        try numbering.check()
        ComprobanteLibXML2.setUp()
        let tree = try ComprobanteTree()
        switch comprobante {
        case .factura(let factura):
            try writeFactura(factura, issuer: issuer, numbering: numbering, into: tree)
        case .creditNote(let note):
            try writeCreditNote(note, issuer: issuer, numbering: numbering, into: tree)
        }
        return tree
    }

    // MARK: - Factura 2.1.0

    private static func writeFactura(
        _ factura: Factura, issuer: ComprobanteIssuer, numbering: ComprobanteNumbering, into tree: ComprobanteTree
    ) throws(BuildError) {
        let root = try tree.root("factura", version: version(of: .factura))
        try writeInfoTributaria(issuer: issuer, numbering: numbering, kind: .factura, in: root, tree)

        let info = try tree.element("infoFactura", in: root)
        try tree.text("fechaEmision", factura.issueDate.sri, in: info)
        try tree.text("dirEstablecimiento", issuer.address, in: info)
        try tree.text("contribuyenteEspecial", issuer.specialTaxpayer, in: info)
        try tree.text("obligadoContabilidad", issuer.accountingRequired ? "SI" : "NO", in: info)
        try tree.text("tipoIdentificacionComprador", factura.buyer.idType, in: info)
        try tree.text("razonSocialComprador", factura.buyer.name, in: info)
        try tree.text("identificacionComprador", factura.buyer.id, in: info)
        try tree.text("direccionComprador", factura.buyer.address, in: info)
        try tree.text("totalSinImpuestos", money(factura.totals.subtotal), in: info)
        try tree.text("totalDescuento", money(factura.totals.discount), in: info)
        let totalTaxes = try tree.element("totalConImpuestos", in: info)
        for tax in factura.totals.taxes {
            let node = try tree.element("totalImpuesto", in: totalTaxes)
            try tree.text("codigo", tax.code, in: node)
            try tree.text("codigoPorcentaje", tax.rateCode, in: node)
            try tree.text("baseImponible", money(tax.base), in: node)
            try tree.text("tarifa", rate(tax.rate), in: node)
            try tree.text("valor", money(tax.value), in: node)
        }
        try tree.text("propina", money(factura.totals.tip), in: info)
        try tree.text("importeTotal", money(factura.totals.total), in: info)
        try tree.text("moneda", "DOLAR", in: info)
        if !factura.payments.isEmpty {
            let payments = try tree.element("pagos", in: info)
            for payment in factura.payments {
                let node = try tree.element("pago", in: payments)
                try tree.text("formaPago", payment.method, in: node)
                try tree.text("total", money(payment.total), in: node)
                try tree.text("plazo", payment.term.map { String($0) }, in: node)
                try tree.text("unidadTiempo", payment.termUnit, in: node)
            }
        }

        let details = try tree.element("detalles", in: root)
        for item in factura.items {
            let node = try tree.element("detalle", in: details)
            try tree.text("codigoPrincipal", item.code, in: node)
            try tree.text("codigoAuxiliar", item.auxCode, in: node)
            try writeLineBody(item, in: node, tree)
        }
        try writeInfoAdicional(buyer: factura.buyer, entries: factura.additionalInfo, in: root, tree)
    }

    // MARK: - Nota de crédito 1.1.0

    private static func writeCreditNote(
        _ note: CreditNote, issuer: ComprobanteIssuer, numbering: ComprobanteNumbering, into tree: ComprobanteTree
    ) throws(BuildError) {
        let root = try tree.root("notaCredito", version: version(of: .creditNote))
        try writeInfoTributaria(issuer: issuer, numbering: numbering, kind: .creditNote, in: root, tree)

        let info = try tree.element("infoNotaCredito", in: root)
        try tree.text("fechaEmision", note.issueDate.sri, in: info)
        try tree.text("dirEstablecimiento", issuer.address, in: info)
        try tree.text("tipoIdentificacionComprador", note.buyer.idType, in: info)
        try tree.text("razonSocialComprador", note.buyer.name, in: info)
        try tree.text("identificacionComprador", note.buyer.id, in: info)
        try tree.text("contribuyenteEspecial", issuer.specialTaxpayer, in: info)
        try tree.text("obligadoContabilidad", issuer.accountingRequired ? "SI" : "NO", in: info)
        try tree.text("codDocModificado", note.modifiedDocument.documentType, in: info)
        try tree.text("numDocModificado", note.modifiedDocument.number, in: info)
        try tree.text("fechaEmisionDocSustento", note.modifiedDocument.issueDate.sri, in: info)
        try tree.text("totalSinImpuestos", money(note.totals.subtotal), in: info)
        try tree.text("valorModificacion", money(note.totals.total), in: info)
        try tree.text("moneda", "DOLAR", in: info)
        let totalTaxes = try tree.element("totalConImpuestos", in: info)
        for tax in note.totals.taxes {
            let node = try tree.element("totalImpuesto", in: totalTaxes)
            try tree.text("codigo", tax.code, in: node)
            try tree.text("codigoPorcentaje", tax.rateCode, in: node)
            try tree.text("baseImponible", money(tax.base), in: node)
            try tree.text("valor", money(tax.value), in: node)
        }
        try tree.text("motivo", note.reason, in: info)

        let details = try tree.element("detalles", in: root)
        for item in note.items {
            let node = try tree.element("detalle", in: details)
            try tree.text("codigoInterno", item.code, in: node)
            try tree.text("codigoAdicional", item.auxCode, in: node)
            try writeLineBody(item, in: node, tree)
        }
        try writeInfoAdicional(buyer: note.buyer, entries: note.additionalInfo, in: root, tree)
    }

    // MARK: - Shared blocks

    private static func writeInfoTributaria(
        issuer: ComprobanteIssuer, numbering: ComprobanteNumbering, kind: DocumentKind, in root: xmlNodePtr,
        _ tree: ComprobanteTree
    ) throws(BuildError) {
        let info = try tree.element("infoTributaria", in: root)
        try tree.text("ambiente", String(issuer.environment.rawValue), in: info)
        try tree.text("tipoEmision", emissionType, in: info)
        try tree.text("razonSocial", issuer.legalName, in: info)
        try tree.text("nombreComercial", issuer.tradeName, in: info)
        try tree.text("ruc", issuer.ruc, in: info)
        try tree.text("claveAcceso", numbering.accessKey, in: info)
        try tree.text("codDoc", kind.rawValue, in: info)
        try tree.text("estab", issuer.establishment, in: info)
        try tree.text("ptoEmi", issuer.emissionPoint, in: info)
        try tree.text("secuencial", numbering.secuencial, in: info)
        try tree.text("dirMatriz", issuer.headOfficeAddress, in: info)
        try tree.text("agenteRetencion", issuer.withholdingAgent, in: info)
        try tree.text("contribuyenteRimpe", issuer.rimpe?.legend, in: info)
    }

    /// From `descripcion` to `impuestos`: the same elements in both schemas.
    private static func writeLineBody(_ item: LineItem, in node: xmlNodePtr, _ tree: ComprobanteTree) throws(BuildError) {
        try tree.text("descripcion", item.description, in: node)
        try tree.text("cantidad", item.quantity.text(places: 6), in: node)
        try tree.text("precioUnitario", item.unitPrice.text(places: 6), in: node)
        try tree.text("descuento", money(item.discount), in: node)
        try tree.text("precioTotalSinImpuesto", money(item.subtotal), in: node)
        if !item.details.isEmpty {
            let details = try tree.element("detallesAdicionales", in: node)
            for detail in item.details {
                let entry = try tree.element("detAdicional", in: details)
                try tree.attribute("nombre", detail.name, on: entry)
                try tree.attribute("valor", detail.value, on: entry)
            }
        }
        let taxes = try tree.element("impuestos", in: node)
        for tax in item.taxes {
            let entry = try tree.element("impuesto", in: taxes)
            try tree.text("codigo", tax.code, in: entry)
            try tree.text("codigoPorcentaje", tax.rateCode, in: entry)
            try tree.text("tarifa", rate(tax.rate), in: entry)
            try tree.text("baseImponible", money(tax.base), in: entry)
            try tree.text("valor", money(tax.value), in: entry)
        }
    }

    /// The buyer's email first, as `Email`, then the client's entries; nothing
    /// when there are none.
    private static func writeInfoAdicional(
        buyer: Buyer, entries: [NameValue], in root: xmlNodePtr, _ tree: ComprobanteTree
    ) throws(BuildError) {
        var all: [NameValue] = []
        if let email = buyer.email { all.append(NameValue(name: "Email", value: email)) }
        all += entries
        guard !all.isEmpty else { return }
        let info = try tree.element("infoAdicional", in: root)
        for entry in all {
            guard let node = try tree.text("campoAdicional", entry.value, in: info) else { continue }
            try tree.attribute("nombre", entry.name, on: node)
        }
    }

    private static func money(_ value: ExactDecimal) -> String { value.text(places: 2) }

    private static func rate(_ value: ExactDecimal) -> String { value.text(places: 2) }
}

/// The one-time process setup this file and `SchemaValidator` rely on.
enum ComprobanteLibXML2 {
    private static let done: Bool = {
        xmlInitParser()
        // No network, ever: external entities and schemas with an http:// or
        // ftp:// address are refused. (libxml2's loader is process-wide.)
        xmlSetExternalEntityLoader(xmlNoNetExternalEntityLoader)
        // The schema compiler's built-in types are global tables that libxml2
        // 2.9 sets up, unlocked, on the first xmlSchemaParse: set up here, once,
        // before any schema is compiled.
        xmlSchemaInitTypes()
        return true
    }()

    static func setUp() {
        _ = done
    }
}

extension ComprobanteNumbering {
    /// The access key is 49 digits and the sequential 1 to 999 999 999.
    fileprivate func check() throws(ComprobanteXML.BuildError) {
        guard accessKey.utf8.count == 49, accessKey.utf8.allSatisfy({ (0x30...0x39).contains($0) }) else {
            throw .invalidNumbering("the access key must be 49 digits")
        }
        guard (1...999_999_999).contains(sequential) else {
            throw .invalidNumbering("the sequential must be 1 to 999999999")
        }
    }

    /// `secuencial`: the sequential with 9 digits.
    fileprivate var secuencial: String { ComprobanteDate.pad(sequential, 9) }
}

/// A libxml2 document under construction, freed with its owner unless handed on.
private final class ComprobanteTree {
    let document: xmlDocPtr
    private var owned = true

    init() throws(ComprobanteXML.BuildError) {
        guard let document = xmlNewDoc("1.0") else { throw .libxml2 }
        self.document = document
    }

    deinit {
        if owned { xmlFreeDoc(document) }
    }

    /// The document, now the caller's to free.
    func handOver() -> xmlDocPtr {
        owned = false
        return document
    }

    func root(_ name: String, version: String) throws(ComprobanteXML.BuildError) -> xmlNodePtr {
        guard let node = xmlNewDocNode(document, nil, name, nil) else { throw .libxml2 }
        xmlDocSetRootElement(document, node)
        try attribute("id", "comprobante", on: node)
        try attribute("version", version, on: node)
        return node
    }

    func element(_ name: String, in parent: xmlNodePtr) throws(ComprobanteXML.BuildError) -> xmlNodePtr {
        guard let node = xmlNewChild(parent, nil, name, nil) else { throw .libxml2 }
        return node
    }

    /// A child holding `value` as text (escaped when written); nothing when nil.
    @discardableResult
    func text(_ name: String, _ value: String?, in parent: xmlNodePtr) throws(ComprobanteXML.BuildError) -> xmlNodePtr? {
        guard let value else { return nil }
        try check(value, name)
        guard let node = xmlNewTextChild(parent, nil, name, value) else { throw .libxml2 }
        return node
    }

    func attribute(_ name: String, _ value: String, on node: xmlNodePtr) throws(ComprobanteXML.BuildError) {
        try check(value, name)
        guard xmlNewProp(node, name, value) != nil else { throw .libxml2 }
    }

    /// libxml2 takes C strings: a NUL would cut the text short, and XML 1.0
    /// cannot carry the other control characters at all.
    private func check(_ value: String, _ element: String) throws(ComprobanteXML.BuildError) {
        let allowed = value.unicodeScalars.allSatisfy { scalar in
            switch scalar.value {
            case 0x09, 0x0A, 0x0D: true
            case 0..<0x20, 0xFFFE, 0xFFFF: false
            default: true
            }
        }
        guard allowed else { throw .unrepresentableText(element: element) }
    }

    func serialized() throws(ComprobanteXML.BuildError) -> [UInt8] {
        guard let buffer = xmlBufferCreate() else { throw .libxml2 }
        defer { xmlBufferFree(buffer) }
        guard let context = xmlSaveToBuffer(buffer, "UTF-8", 0) else { throw .libxml2 }
        let written = xmlSaveDoc(context, document)
        guard xmlSaveClose(context) >= 0, written >= 0, let content = xmlBufferContent(buffer) else { throw .libxml2 }
        return Array(UnsafeBufferPointer(start: content, count: Int(xmlBufferLength(buffer))))
    }
}

/// A comprobante built and checked against the official schema before it has a
/// number: issuing prepares it first, then takes the number under the counter's
/// row lock and only writes the number in and signs while the lock is held.
///
/// The number lies in two elements, `claveAcceso` (49 digits) and `secuencial`
/// (9 digits); the schema constrains them by pattern alone, so a placeholder of
/// the same shape validates exactly as the final digits will. One tree is built,
/// validated, signed and serialized: nothing is parsed back.
public final class PreparedComprobante {
    private let tree: XMLTree
    private let accessKeyNode: xmlNodePtr
    private let sequentialNode: xmlNodePtr
    private var used = false

    /// Builds `comprobante` for `issuer` and validates it against its schema;
    /// `SchemaValidator`'s complaints, when there are any, come back as `.invalid`.
    public static func prepare(_ comprobante: Comprobante, issuer: ComprobanteIssuer) throws(PreparationError) -> PreparedComprobante {
        let placeholder = ComprobanteNumbering(accessKey: String(repeating: "0", count: 49), sequential: 1)
        let built: ComprobanteTree
        do {
            built = try ComprobanteXML.tree(comprobante, issuer: issuer, numbering: placeholder)
        } catch {
            throw .build(error)
        }
        let tree = XMLTree(owning: built.handOver())
        let problems = SchemaValidator.forKind(comprobante.kind).validate(tree)
        guard problems.isEmpty else { throw .invalid(problems) }
        guard let info = tree.root.firstChild("infoTributaria"), let key = info.firstChild("claveAcceso"),
            let sequential = info.firstChild("secuencial")
        else { throw .build(.libxml2) }
        return PreparedComprobante(tree: tree, accessKeyNode: key.node, sequentialNode: sequential.node)
    }

    private init(tree: XMLTree, accessKeyNode: xmlNodePtr, sequentialNode: xmlNodePtr) {
        self.tree = tree
        self.accessKeyNode = accessKeyNode
        self.sequentialNode = sequentialNode
    }

    /// Writes the numbering in, signs (XAdES-BES) and serializes. Once only.
    public func signed(
        numbering: ComprobanteNumbering, identity: SigningIdentity, algorithm: SignatureAlgorithm = .rsaSHA256, signingTime: Date,
        utcOffset: Int = XAdESSigner.ecuadorUTCOffset
    ) throws(PreparationError) -> [UInt8] {
        precondition(!used, "a prepared comprobante is signed once")
        used = true
        do {
            try numbering.check()
        } catch {
            throw .build(error)
        }
        // Digits only: nothing to escape.
        xmlNodeSetContent(accessKeyNode, numbering.accessKey)
        xmlNodeSetContent(sequentialNode, numbering.secuencial)
        do {
            try XAdESSigner.sign(tree, identity: identity, algorithm: algorithm, signingTime: signingTime, utcOffset: utcOffset)
        } catch {
            throw .signing(error)
        }
        return tree.serialized()
    }

    public enum PreparationError: Error, Sendable, Equatable, CustomStringConvertible {
        case build(ComprobanteXML.BuildError)
        /// The built document fails the official schema (a bug in the builder).
        case invalid([String])
        case signing(SigningError)

        public var description: String {
            switch self {
            case .build(let error): return "the comprobante could not be built: \(error)"
            case .invalid(let problems):
                return "the built comprobante fails the official XSD: \(problems.prefix(3).joined(separator: "; "))"
            case .signing(let error): return "the comprobante could not be signed: \(error)"
            }
        }
    }
}
