import CLibXML2

// The few libxml2 calls the SOAP code needs, kept to this folder: a parsed
// document that frees itself, element lookup by local name, text content, and
// a document built node by node and saved as UTF-8.

/// Initializes libxml2 once before any use from several threads.
let soapLibxml2Ready: Void = { xmlInitParser() }()

/// A document parsed from bytes; owns the libxml2 tree.
final class SOAPParsedDocument {
    let pointer: xmlDocPtr

    /// Parses without network access, DTD loading or entity substitution, and
    /// refuses documents with a DTD (SOAP forbids them). Nil when not well-formed.
    /// Read as UTF-8 whatever a byte order mark or the declaration says (SRI
    /// answers in UTF-8): the limits on markup and the DOCTYPE refusal read the
    /// bytes as UTF-8, and an answer in UTF-16 would pass under them.
    init?(_ bytes: [UInt8]) {
        _ = soapLibxml2Ready
        guard !bytes.isEmpty, bytes.count < Int(Int32.max), !SOAPParsedDocument.declaresDoctype(bytes),
            SOAPParsedDocument.markupFits(bytes)
        else { return nil }
        let options = Int32(XML_PARSE_NONET.rawValue | XML_PARSE_NOERROR.rawValue | XML_PARSE_NOWARNING.rawValue)
        let parsed = bytes.withUnsafeBufferPointer { buffer in
            buffer.baseAddress!.withMemoryRebound(to: CChar.self, capacity: buffer.count) {
                xmlReadMemory($0, Int32(buffer.count), nil, "UTF-8", options)
            }
        }
        guard let parsed else { return nil }
        guard parsed.pointee.intSubset == nil, xmlDocGetRootElement(parsed) != nil else {
            xmlFreeDoc(parsed)
            return nil
        }
        pointer = parsed
    }

    deinit { xmlFreeDoc(pointer) }

    /// The most `<` an answer may hold. libxml2 spends a few hundred bytes on
    /// each element it builds: the 8 MiB an authorization answer may have, all
    /// empty elements, would take about 270 MB per exchange in flight. This
    /// keeps a tree under about 30 MB, and is five times the markup of an
    /// authorized factura of 1000 lines (about 30 thousand `<`, counted
    /// inside its CDATA too).
    static let maximumElements = 150_000
    /// The most attributes an answer's tags may hold: attributes cost as much
    /// as elements, and libxml2 (2.9) compares each attribute of an element
    /// with every one before it, so an element with a million attributes takes
    /// minutes of CPU. An answer of SRI's has a few dozen.
    static let maximumAttributes = 10_000
    /// The most namespace declarations (`xmlns`, `xmlns:p` attributes) an
    /// answer may hold: libxml2 looks each prefixed element's namespace up
    /// through every declaration in scope, so 10 thousand declarations on the
    /// root and 145 thousand elements took 3.5 s of CPU for a 1.7 MB answer.
    /// An answer of SRI's, or a signed comprobante, declares a handful.
    static let maximumNamespaceDeclarations = 100

    private static let commentOpen = Array("!--".utf8)
    private static let commentClose = Array("-->".utf8)
    private static let cdataOpen = Array("![CDATA[".utf8)
    private static let cdataClose = Array("]]>".utf8)
    private static let instructionClose = Array("?>".utf8)

    /// Whether the bytes hold at most `maximumElements` `<`, at most
    /// `maximumAttributes` attributes and at most
    /// `maximumNamespaceDeclarations` of them `xmlns`: a bound on what a
    /// parse could build and cost. An attribute is a `=` inside a tag,
    /// outside its quoted values; one in text, a comment, a CDATA section (an
    /// authorized comprobante's own text) or a processing instruction is none.
    static func markupFits(_ bytes: [UInt8]) -> Bool {
        var elements = 0
        var attributes = 0
        var declarations = 0
        var index = 0
        var inTag = false
        var quote: UInt8 = 0
        func skip(past end: [UInt8]) {
            while index < bytes.count {
                if bytes[index] == end[0], bytes[index...].starts(with: end) {
                    index += end.count
                    return
                }
                index += 1
            }
        }
        while index < bytes.count {
            let byte = bytes[index]
            if byte == 0x3C { elements += 1 }
            if quote != 0 {
                if byte == quote { quote = 0 }
            } else if inTag {
                switch byte {
                case 0x22, 0x27: quote = byte
                case 0x3D:
                    attributes += 1
                    if Self.namesNamespace(bytes, before: index) { declarations += 1 }
                case 0x3E: inTag = false
                default: break
                }
            } else if byte == 0x3C {
                let rest = bytes[(index + 1)...]
                if rest.starts(with: Self.commentOpen) {
                    skip(past: Self.commentClose)
                    continue
                } else if rest.starts(with: Self.cdataOpen) {
                    let start = index
                    skip(past: Self.cdataClose)
                    // Its `<` still count: each is at most an element of the comprobante.
                    elements += bytes[(start + 1)..<index].count(where: { $0 == 0x3C })
                    continue
                } else if rest.first == 0x3F {
                    skip(past: Self.instructionClose)
                    continue
                }
                inTag = true
            }
            index += 1
        }
        return elements <= maximumElements && attributes <= maximumAttributes && declarations <= maximumNamespaceDeclarations
    }

    /// Whether the attribute name that ends before the `=` at `index` (after
    /// any whitespace) is `xmlns` or `xmlns:…`. Reads back over that name
    /// only, to the whitespace, quote, `<` or `=` before it: each byte of a
    /// tag is read back over at most once, however many `=` follow.
    static func namesNamespace(_ bytes: [UInt8], before index: Int) -> Bool {
        func isSpace(_ byte: UInt8) -> Bool { byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D }
        func endsName(_ byte: UInt8) -> Bool { isSpace(byte) || byte == 0x3C || byte == 0x22 || byte == 0x27 || byte == 0x3D }
        var end = index
        while end > 0, isSpace(bytes[end - 1]) { end -= 1 }
        var start = end
        while start > 0, !endsName(bytes[start - 1]) { start -= 1 }
        let name = bytes[start..<end]
        return name.starts(with: Self.xmlns) && (name.count == Self.xmlns.count || name[start + Self.xmlns.count] == 0x3A)
    }

    private static let xmlns = Array("xmlns".utf8)

    /// Whether `<!DOCTYPE` appears anywhere: refused before parsing, since
    /// libxml2 builds a node for each entity reference of a DTD before the
    /// document can be refused for having one.
    static func declaresDoctype(_ bytes: [UInt8]) -> Bool {
        let doctype = Array("<!DOCTYPE".utf8)
        guard bytes.count >= doctype.count else { return false }
        var index = 0
        while index <= bytes.count - doctype.count {
            if bytes[index] == 0x3C, bytes[index + 1] == 0x21, bytes[(index + 2)..<(index + doctype.count)].elementsEqual(doctype[2...]) {
                return true
            }
            index += 1
        }
        return false
    }

    /// Runs `body` on the root element while the document is alive (elements
    /// borrow the tree: none may escape `body`).
    func read<T>(_ body: (SOAPElement) throws(SOAPParseError) -> T) throws(SOAPParseError) -> T {
        try body(SOAPElement(node: xmlDocGetRootElement(pointer)!))
    }
}

/// An element of a document that outlives it (a borrowed pointer).
struct SOAPElement {
    let node: xmlNodePtr

    var localName: String { String(cString: node.pointee.name) }

    var namespaceURI: String? {
        guard let ns = node.pointee.ns, let href = ns.pointee.href else { return nil }
        return String(cString: href)
    }

    /// The element this one is a child of (nil for the root).
    var parent: SOAPElement? {
        guard let up = node.pointee.parent, up.pointee.type == XML_ELEMENT_NODE else { return nil }
        return SOAPElement(node: up)
    }

    var children: [SOAPElement] {
        var result: [SOAPElement] = []
        var child = node.pointee.children
        while let current = child {
            if current.pointee.type == XML_ELEMENT_NODE { result.append(SOAPElement(node: current)) }
            child = current.pointee.next
        }
        return result
    }

    /// The first child element with this local name, whatever its namespace.
    func child(_ name: String) -> SOAPElement? {
        children.first { $0.localName == name }
    }

    func children(_ name: String) -> [SOAPElement] {
        children.filter { $0.localName == name }
    }

    /// The first element with this local name in document order, this one included.
    func descendant(_ name: String) -> SOAPElement? {
        if localName == name { return self }
        for child in children {
            if let found = child.descendant(name) { return found }
        }
        return nil
    }

    /// The text of every text and CDATA node below, as an XML parser reads it:
    /// escaped text comes back unescaped and CDATA comes back as written.
    var text: String {
        guard let buffer = xmlBufferCreate() else { return "" }
        defer { xmlBufferFree(buffer) }
        xmlNodeBufGetContent(buffer, node)
        guard let content = xmlBufferContent(buffer) else { return "" }
        return String(cString: content)
    }

    /// The text with surrounding whitespace removed.
    var trimmedText: String {
        let value = text
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\n" || $0 == "\r" || $0 == "\t" }
        guard let first = value.firstIndex(where: { !isSpace($0) }) else { return "" }
        let last = value.lastIndex(where: { !isSpace($0) })!
        return String(value[first...last])
    }

    /// The element on its own as UTF-8 markup: copied with its subtree into an
    /// empty document (libxml2 adds there the declarations of namespaces the
    /// copy uses but its ancestors declared), then saved without an XML
    /// declaration. Elements, attributes, text and CDATA sections come out as
    /// they were received; only what an XML parser does not keep can differ
    /// (attribute quotes, line ends normalized to LF, character references).
    func serialized() -> [UInt8] {
        guard let document = xmlNewDoc("1.0") else { return [] }
        defer { xmlFreeDoc(document) }
        guard let copy = xmlDocCopyNode(node, document, 1) else { return [] }
        xmlDocSetRootElement(document, copy)
        return SOAPTree.save(node: copy, declaration: false)
    }
}

enum SOAPTree {
    /// Saves a document or one node as UTF-8.
    static func save(node: xmlNodePtr, declaration: Bool) -> [UInt8] {
        guard let buffer = xmlBufferCreate() else { return [] }
        defer { xmlBufferFree(buffer) }
        let options = declaration ? Int32(0) : Int32(XML_SAVE_NO_DECL.rawValue)
        guard let context = xmlSaveToBuffer(buffer, "UTF-8", options) else { return [] }
        if node.pointee.type == XML_DOCUMENT_NODE {
            xmlSaveDoc(context, UnsafeMutablePointer<xmlDoc>(OpaquePointer(node)))
        } else {
            xmlSaveTree(context, node)
        }
        xmlSaveClose(context)
        let length = Int(xmlBufferLength(buffer))
        guard length > 0, let content = xmlBufferContent(buffer) else { return [] }
        return Array(UnsafeBufferPointer(start: content, count: length))
    }
}

/// A document built node by node; text always goes through libxml2's escaping.
final class SOAPDocumentBuilder {
    let document: xmlDocPtr

    init() {
        _ = soapLibxml2Ready
        document = xmlNewDoc("1.0")
    }

    deinit { xmlFreeDoc(document) }

    /// The root element, declaring `namespace` with `prefix` (nil: the default namespace).
    func root(_ name: String, namespace: String, prefix: String?) -> xmlNodePtr {
        let node = xmlNewDocNode(document, nil, name, nil)!
        let ns = xmlNewNs(node, namespace, prefix)
        xmlSetNs(node, ns)
        xmlDocSetRootElement(document, node)
        return node
    }

    /// A child element in the parent's namespace (`inherit`), in a namespace
    /// declared here (`declare`), or in no namespace (`none`).
    func element(_ name: String, in parent: xmlNodePtr, namespace: Namespace = .inherit, text: String? = nil) -> xmlNodePtr {
        let node = xmlNewTextChild(parent, nil, name, text)!
        switch namespace {
        case .inherit:
            xmlSetNs(node, parent.pointee.ns)
        case .declare(let uri, let prefix):
            xmlSetNs(node, xmlNewNs(node, uri, prefix))
        case .none:
            // xmlNewTextChild gave it the parent's namespace; under a default
            // namespace, "no namespace" must also be declared: xmlns="".
            xmlSetNs(node, nil)
            if let inScope = xmlSearchNs(document, parent, nil), let href = inScope.pointee.href, href.pointee != 0 {
                _ = xmlNewNs(node, "", nil)
            }
        }
        return node
    }

    /// A child element holding `text` as one CDATA section.
    func cdataElement(_ name: String, in parent: xmlNodePtr, text: String) -> xmlNodePtr {
        let node = element(name, in: parent, namespace: .inherit)
        let utf8 = Array(text.utf8)
        let section = utf8.withUnsafeBufferPointer { xmlNewCDataBlock(document, $0.baseAddress, Int32($0.count)) }
        xmlAddChild(node, section)
        return node
    }

    enum Namespace {
        case inherit
        case declare(String, prefix: String?)
        case none
    }

    /// The whole document, UTF-8, with its XML declaration.
    func bytes() -> [UInt8] {
        SOAPTree.save(node: UnsafeMutablePointer<xmlNode>(OpaquePointer(document)), declaration: true)
    }
}
