import CLibXML2

/// A libxml2 document, owned: the `xmlDocPtr` is freed when the tree goes away.
///
/// Parsing never touches the network, never expands entities and refuses any
/// document that carries a DTD, so external entities (XXE) and entity bombs
/// cannot reach the tree. Elements are handed out as ``XMLTree/Element`` values
/// that keep their tree alive.
///
/// A tree is not thread-safe: use one from one task at a time.
public final class XMLTree {
    let doc: xmlDocPtr

    /// Parses a UTF-8 (or self-declared) XML document.
    public convenience init(parsing bytes: [UInt8]) throws(XMLError) {
        let doc = try bytes.withUnsafeBufferPointer { (buffer) throws(XMLError) -> xmlDocPtr in
            try XMLTree.parse(UnsafeRawBufferPointer(buffer))
        }
        self.init(owning: doc)
    }

    /// A new document whose root element is `rootName`, in no namespace.
    public convenience init(rootName: String) {
        LibXML.initialize()
        let doc = xmlNewDoc("1.0")!
        let root = xmlNewDocNode(doc, nil, rootName, nil)!
        xmlDocSetRootElement(doc, root)
        self.init(owning: doc)
    }

    /// Takes ownership of a document built elsewhere in this module.
    init(owning doc: xmlDocPtr) {
        self.doc = doc
    }

    deinit {
        xmlFreeDoc(doc)
    }

    private static func parse(_ buffer: UnsafeRawBufferPointer) throws(XMLError) -> xmlDocPtr {
        LibXML.initialize()
        guard buffer.count > 0, buffer.count <= Int(Int32.max) else {
            throw XMLError("the document is empty or too large")
        }
        guard let context = xmlNewParserCtxt() else { throw XMLError("libxml2 could not allocate a parser") }
        defer { xmlFreeParserCtxt(context) }
        // A document type declaration stops the parser before its first byte is
        // acted upon: no internal subset, no external subset, no entities.
        context.pointee.sax.pointee.internalSubset = { userData, _, _, _ in
            guard let userData else { return }
            xmlStopParser(userData.assumingMemoryBound(to: xmlParserCtxt.self))
        }
        let options = Int32(bitPattern: XML_PARSE_NONET.rawValue | XML_PARSE_NOERROR.rawValue | XML_PARSE_NOWARNING.rawValue)
        let doc = xmlCtxtReadMemory(
            context, buffer.baseAddress!.assumingMemoryBound(to: CChar.self), Int32(buffer.count), nil, nil, options)
        // Stopping the parser leaves `wellFormed` set: check for the stop first.
        guard context.pointee.errNo != Int32(XML_ERR_USER_STOP.rawValue) else {
            if let doc { xmlFreeDoc(doc) }
            throw XMLError("a document type declaration (DTD) is not accepted")
        }
        guard let doc, context.pointee.wellFormed != 0 else {
            if let doc { xmlFreeDoc(doc) }
            throw XMLError(LibXML.lastError(context) ?? "the document is not well-formed XML")
        }
        guard doc.pointee.intSubset == nil, doc.pointee.extSubset == nil else {
            xmlFreeDoc(doc)
            throw XMLError("a document type declaration (DTD) is not accepted")
        }
        guard xmlDocGetRootElement(doc) != nil else {
            xmlFreeDoc(doc)
            throw XMLError("the document has no root element")
        }
        return doc
    }

    /// The root element.
    public var root: Element {
        Element(tree: self, node: xmlDocGetRootElement(doc)!)
    }

    /// The document as UTF-8 bytes, with its XML declaration, nothing reformatted.
    public func serialized() -> [UInt8] {
        var memory: UnsafeMutablePointer<xmlChar>?
        var size: Int32 = 0
        xmlDocDumpMemoryEnc(doc, &memory, &size, "UTF-8")
        guard let memory else { return [] }
        defer { comprobify_xml_free(memory) }
        return Array(UnsafeBufferPointer(start: memory, count: Int(size)))
    }

    /// The first element, in document order, with this local name (and namespace,
    /// when given).
    public func firstElement(localName: String, namespace: String? = nil) -> Element? {
        root.firstDescendantOrSelf { $0.localName == localName && (namespace == nil || $0.namespaceURI == namespace) }
    }

    /// Every element, in document order, whose attribute `attribute` (in no
    /// namespace) has this value. More than one means the id is ambiguous.
    public func elements(withAttribute attribute: String, value: String) -> [Element] {
        var found: [Element] = []
        root.forEachDescendantOrSelf { element in
            if element.attribute(attribute) == value { found.append(element) }
        }
        return found
    }

    /// The only element whose `attribute` equals `value`; nil when none or several.
    public func element(withID value: String, attribute: String = "id") -> Element? {
        let found = elements(withAttribute: attribute, value: value)
        return found.count == 1 ? found[0] : nil
    }
}

/// Why libxml2 refused a document or an operation. The message never quotes
/// the document.
public struct XMLError: Error, Sendable, Equatable, CustomStringConvertible {
    public let message: String

    public init(_ message: String) {
        self.message = message
    }

    public var description: String { message }
}

enum LibXML {
    private static let initialized: Bool = {
        xmlInitParser()
        return true
    }()

    /// libxml2 must be initialized once, before any thread uses it.
    static func initialize() {
        _ = initialized
    }

    static func lastError(_ context: xmlParserCtxtPtr) -> String? {
        guard let error = xmlCtxtGetLastError(context), let message = error.pointee.message else { return nil }
        let text = String(String(cString: message).filter { $0 != "\n" })
        return "line \(error.pointee.line): \(text)"
    }
}
