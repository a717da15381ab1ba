import CLibXML2

/// Validates comprobantes against SRI's official schemas (vendored as
/// published in Sources/SRI/Schemas) with libxml2.
///
/// Each schema is compiled once, on first use, and shared: libxml2 allows a
/// compiled `xmlSchema` to be used from several threads as long as each
/// validation has its own context, which `validate` creates and frees per call.
/// Nothing is ever fetched from the network (see `ComprobanteLibXML2`), and a
/// document with a DOCTYPE is refused before validation.
public final class SchemaValidator: @unchecked Sendable {
    // @unchecked: `schema` is written once in `init` and only read afterwards,
    // by libxml2's validation, which does not modify a compiled schema.

    /// Factura, version 2.1.0.
    public static var factura: SchemaValidator { compiled.factura }
    /// Nota de crédito, version 1.1.0.
    public static var creditNote: SchemaValidator { compiled.creditNote }

    /// Both schemas, compiled one after the other on first use of either:
    /// libxml2 2.9's schema compiler is not safe to run on two threads at once.
    private static let compiled = (
        factura: SchemaValidator(file: "factura_V2.1.0.xsd"), creditNote: SchemaValidator(file: "nota_credito_V1.1.0.xsd")
    )

    /// The validator of a document type's schema.
    public static func forKind(_ kind: DocumentKind) -> SchemaValidator {
        switch kind {
        case .factura: factura
        case .creditNote: creditNote
        }
    }

    /// The schema's file name.
    public let file: String
    private let schema: OpaquePointer?
    /// The schema's own XML, kept while the compiled schema lives.
    private let source: xmlDocPtr?
    /// Why the schema did not compile, when it did not (a broken deployment).
    let loadErrors: [String]

    /// The schema file is read by a parser of ours, its errors collected and
    /// its warnings silenced: libxml2's schema compiler, left to read the
    /// file itself, writes the parser's warnings to standard error (the
    /// credit note's schema declares XML 1.1), which would break the
    /// process's one-JSON-object-per-line output.
    init(file: String) {
        self.file = file
        ComprobanteLibXML2.setUp()
        let collector = SchemaErrorCollector()
        let path = Schemas.file(file).path
        var compiled: OpaquePointer?
        var source: xmlDocPtr?
        var readError: String?
        if let reader = xmlNewParserCtxt() {
            let options = Int32(XML_PARSE_NONET.rawValue | XML_PARSE_NOERROR.rawValue | XML_PARSE_NOWARNING.rawValue)
            source = xmlCtxtReadFile(reader, path, nil, options)
            if source == nil { readError = xmlCtxtGetLastError(reader).flatMap { Self.describe($0.pointee) } ?? "unreadable" }
            xmlFreeParserCtxt(reader)
        }
        if let source, let parser = xmlSchemaNewDocParserCtxt(source) {
            xmlSchemaSetParserStructuredErrors(parser, SchemaErrorCollector.callback, Unmanaged.passUnretained(collector).toOpaque())
            compiled = xmlSchemaParse(parser)
            xmlSchemaFreeParserCtxt(parser)
        }
        withExtendedLifetime(collector) {}
        self.schema = compiled
        self.source = source
        self.loadErrors =
            compiled == nil ? ["the schema \(file) did not compile"] + [readError].compactMap { $0 } + collector.messages : []
    }

    deinit {
        if let schema { xmlSchemaFree(schema) }
        if let source { xmlFreeDoc(source) }
    }

    /// The schema's complaints about `bytes`, empty when the document is valid.
    /// A document that is not well-formed XML yields the parser's complaint.
    public func validate(_ bytes: [UInt8]) -> [String] {
        guard schema != nil else { return loadErrors }
        guard let parser = xmlNewParserCtxt() else { return ["libxml2 could not allocate a parser"] }
        defer { xmlFreeParserCtxt(parser) }
        let options = Int32(XML_PARSE_NONET.rawValue | XML_PARSE_NOERROR.rawValue | XML_PARSE_NOWARNING.rawValue)
        let parsed = bytes.withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { chars in
                xmlCtxtReadMemory(parser, chars.baseAddress, Int32(clamping: chars.count), "comprobante.xml", nil, options)
            }
        }
        guard let document = parsed else {
            let detail = xmlCtxtGetLastError(parser).flatMap { Self.describe($0.pointee) } ?? "unknown error"
            return ["not well-formed XML: " + detail]
        }
        defer { xmlFreeDoc(document) }
        guard document.pointee.intSubset == nil else { return ["a comprobante may not have a DOCTYPE"] }
        return validate(document: document)
    }

    /// The schema's complaints about a tree, empty when it is valid.
    public func validate(_ tree: XMLTree) -> [String] {
        guard schema != nil else { return loadErrors }
        return validate(document: tree.doc)
    }

    private func validate(document: xmlDocPtr) -> [String] {
        guard let schema else { return loadErrors }
        guard let context = xmlSchemaNewValidCtxt(schema) else { return ["libxml2 could not allocate a validation context"] }
        defer { xmlSchemaFreeValidCtxt(context) }
        let collector = SchemaErrorCollector()
        xmlSchemaSetValidStructuredErrors(context, SchemaErrorCollector.callback, Unmanaged.passUnretained(collector).toOpaque())
        let result = withExtendedLifetime(collector) { xmlSchemaValidateDoc(context, document) }
        if result == 0 { return [] }
        return collector.messages.isEmpty ? ["the document does not match the schema \(file)"] : collector.messages
    }

    static func describe(_ error: xmlError) -> String? {
        guard let message = error.message else { return nil }
        var text = String(cString: message)
        while text.last == "\n" { text.removeLast() }
        return error.line > 0 ? "line \(error.line): \(text)" : text
    }
}

/// Receives libxml2's structured errors for one parse or validation.
private final class SchemaErrorCollector {
    var messages: [String] = []

    static let callback: xmlStructuredErrorFunc = { userData, error in
        guard let userData, let error else { return }
        let collector = Unmanaged<SchemaErrorCollector>.fromOpaque(userData).takeUnretainedValue()
        guard error.pointee.level.rawValue >= XML_ERR_ERROR.rawValue, collector.messages.count < 100 else { return }
        if let text = SchemaValidator.describe(error.pointee) { collector.messages.append(text) }
    }
}
