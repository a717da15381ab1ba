import CLibXML2

extension XMLTree {
    /// Inclusive Canonical XML 1.0 (http://www.w3.org/TR/2001/REC-xml-c14n-20010315)
    /// of `element` where it stands in the document: the namespaces in scope from
    /// its ancestors are rendered on it, as XML-DSig requires for a same-document
    /// reference. `excluding` (a descendant, e.g. an enveloped signature) is left
    /// out with everything below it.
    ///
    /// The canonical bytes are streamed to `sink` in chunks, so a digest needs no
    /// copy of them.
    public func canonicalize(
        _ element: Element, excluding: Element? = nil, withComments: Bool = false,
        into sink: (UnsafeRawBufferPointer) -> Void
    ) throws(XMLError) {
        precondition(element.tree === self && (excluding == nil || excluding!.tree === self), "the element belongs to another tree")
        // libxml2 walks the whole document and asks the visibility callback
        // about every node, attribute and namespace, whatever the subset. The
        // two shapes a signature needs take shorter ways with the same output.
        if !withComments, element.node == xmlDocGetRootElement(doc),
            let bytes = PlainC14N.canonical(element.node, excluding: excluding?.node)
        {
            bytes.withUnsafeBytes { sink($0) }
            return
        }
        if !withComments, let fast = fastPath(element, excluding: excluding) {
            try fast(sink)
            return
        }
        try canonicalizeWithCallback(element, excluding: excluding, withComments: withComments, into: sink)
    }

    /// A shorter way to the same canonical bytes, when there is one:
    /// - the root element, less one of its descendants, in a document that
    ///   holds nothing but the root: that descendant is unlinked for the moment
    ///   and the whole document canonicalized, which is the root's canonical form
    ///   (nothing outside it, no XML declaration in C14N);
    /// - an element without descendants to leave out, whose ancestors carry no
    ///   `xml:` attribute (inclusive C14N would import those): a copy of it in a
    ///   document of its own, with every namespace in scope declared on the copy,
    ///   which is what inclusive C14N renders on the apex of a document subset.
    private func fastPath(
        _ element: Element, excluding: Element?
    ) -> ((_ sink: (UnsafeRawBufferPointer) -> Void) throws(XMLError) -> Void)? {
        let node = element.node
        if let excluded = excluding?.node {
            guard node == xmlDocGetRootElement(doc), doc.pointee.children == node, node.pointee.next == nil, excluded != node
            else { return nil }
            return { (sink) throws(XMLError) in
                let parent = excluded.pointee.parent!
                let next = excluded.pointee.next
                xmlUnlinkNode(excluded)
                defer {
                    if let next { xmlAddPrevSibling(next, excluded) } else { xmlAddChild(parent, excluded) }
                }
                try Self.canonicalizeWholeDocument(self.doc, into: sink)
            }
        }
        var ancestor = node.pointee.parent
        while let here = ancestor, here.pointee.type == XML_ELEMENT_NODE {
            var property = here.pointee.properties
            while let attribute = property {
                if let ns = attribute.pointee.ns, let href = ns.pointee.href, String(cString: href) == Self.xmlNamespace { return nil }
                property = attribute.pointee.next
            }
            ancestor = here.pointee.parent
        }
        return { (sink) throws(XMLError) in
            guard let copyDoc = xmlNewDoc("1.0") else { throw XMLError("libxml2 could not allocate a document") }
            defer { xmlFreeDoc(copyDoc) }
            guard let copy = xmlDocCopyNode(node, copyDoc, 1) else { throw XMLError("libxml2 could not copy the element") }
            xmlDocSetRootElement(copyDoc, copy)
            if let inScope = xmlGetNsList(self.doc, node) {
                defer { comprobify_xml_free(inScope) }
                var index = 0
                while let ns = inScope[index] {
                    index += 1
                    guard let href = ns.pointee.href, href.pointee != 0 else { continue }
                    if !Self.declares(copy, prefix: ns.pointee.prefix) { xmlNewNs(copy, href, ns.pointee.prefix) }
                }
            }
            try Self.canonicalizeWholeDocument(copyDoc, into: sink)
        }
    }

    private static let xmlNamespace = "http://www.w3.org/XML/1998/namespace"

    private static func declares(_ node: xmlNodePtr, prefix: UnsafePointer<xmlChar>?) -> Bool {
        var declaration = node.pointee.nsDef
        while let ns = declaration {
            switch (ns.pointee.prefix, prefix) {
            case (nil, nil): return true
            case (let a?, let b?) where xmlStrEqual(a, b) != 0: return true
            default: break
            }
            declaration = ns.pointee.next
        }
        return false
    }

    private static func canonicalizeWholeDocument(
        _ document: xmlDocPtr, into sink: (UnsafeRawBufferPointer) -> Void
    ) throws(XMLError) {
        try withoutActuallyEscaping(sink) { (escapable) throws(XMLError) in
            let output = C14NOutput(sink: escapable)
            let buffer = xmlOutputBufferCreateIO(
                { context, bytes, length in
                    guard let context, let bytes, length > 0 else { return 0 }
                    let output = Unmanaged<C14NOutput>.fromOpaque(context).takeUnretainedValue()
                    output.sink(UnsafeRawBufferPointer(start: bytes, count: Int(length)))
                    return length
                }, nil, Unmanaged.passUnretained(output).toOpaque(), nil)
            guard let buffer else { throw XMLError("libxml2 could not canonicalize the element") }
            let written = xmlC14NExecute(document, nil, nil, Int32(XML_C14N_1_0.rawValue), nil, 0, buffer)
            let closed = xmlOutputBufferClose(buffer)
            withExtendedLifetime(output) {}
            guard written >= 0, closed >= 0 else { throw XMLError("libxml2 could not canonicalize the element") }
        }
    }

    /// The general way: libxml2's walk with a visibility callback.
    private func canonicalizeWithCallback(
        _ element: Element, excluding: Element?, withComments: Bool, into sink: (UnsafeRawBufferPointer) -> Void
    ) throws(XMLError) {
        try withoutActuallyEscaping(sink) { (escapable) throws(XMLError) in
            let output = C14NOutput(sink: escapable)
            var scope = C14NScope(target: element.node, excluded: excluding?.node)
            let status = withUnsafeMutablePointer(to: &scope) { scopePointer -> Int32 in
                let buffer = xmlOutputBufferCreateIO(
                    { context, bytes, length in
                        guard let context, let bytes, length > 0 else { return 0 }
                        let output = Unmanaged<C14NOutput>.fromOpaque(context).takeUnretainedValue()
                        output.sink(UnsafeRawBufferPointer(start: bytes, count: Int(length)))
                        return length
                    }, nil, Unmanaged.passUnretained(output).toOpaque(), nil)
                guard let buffer else { return -1 }
                let written = xmlC14NExecute(
                    doc, c14nIsVisible, scopePointer, Int32(XML_C14N_1_0.rawValue), nil, withComments ? 1 : 0, buffer)
                let closed = xmlOutputBufferClose(buffer)
                return written < 0 ? written : closed
            }
            withExtendedLifetime(output) {}
            guard status >= 0 else { throw XMLError("libxml2 could not canonicalize the element") }
        }
    }

    /// The inclusive C14N 1.0 of `element` in place, as bytes.
    public func canonicalBytes(_ element: Element, excluding: Element? = nil, withComments: Bool = false) throws(XMLError) -> [UInt8] {
        var bytes: [UInt8] = []
        try canonicalize(element, excluding: excluding, withComments: withComments) { chunk in
            bytes.append(contentsOf: chunk)
        }
        return bytes
    }
}

private final class C14NOutput {
    let sink: (UnsafeRawBufferPointer) -> Void

    init(sink: @escaping (UnsafeRawBufferPointer) -> Void) {
        self.sink = sink
    }
}

/// What the visibility callback needs, computed once per canonicalization
/// (the field offsets too: a global would cost a lazy-initialization check per node).
private struct C14NScope {
    let target: xmlNodePtr
    let excluded: xmlNodePtr?
    // Every node kind libxml2 hands the callback (element, text, attribute,
    // namespace, document) starts with `_private` then `type`, and all but the
    // namespace have `parent` where xmlNode has it; only those fields are read.
    let typeOffset = MemoryLayout<xmlNode>.offset(of: \xmlNode.type)!
    let parentOffset = MemoryLayout<xmlNode>.offset(of: \xmlNode.parent)!
}

/// A node is visible when it lies in the target's subtree and not in the
/// excluded one. An attribute or a namespace node is judged by the element
/// that carries it (libxml2 passes it as `parent`), so the namespaces an
/// ancestor declares are rendered on the target, as inclusive C14N requires.
private let c14nIsVisible: xmlC14NIsVisibleCallback = { userData, node, parent in
    guard let userData, let node else { return 0 }
    let scope = userData.assumingMemoryBound(to: C14NScope.self)
    let parentOffset = scope.pointee.parentOffset
    let type = UnsafeRawPointer(node).load(fromByteOffset: scope.pointee.typeOffset, as: xmlElementType.self)
    var current: xmlNodePtr? = (type == XML_NAMESPACE_DECL || type == XML_ATTRIBUTE_NODE) ? parent : node
    let target = scope.pointee.target
    let excluded = scope.pointee.excluded
    while let here = current {
        if here == excluded { return 0 }
        if here == target { return 1 }
        current = UnsafeRawPointer(here).load(fromByteOffset: parentOffset, as: xmlNodePtr?.self)
    }
    return 0
}

/// Inclusive C14N 1.0 without comments, written directly, for the one shape a
/// comprobante has: elements in no namespace, declaring none, with plain
/// attributes (ASCII names), text and CDATA. The root of a document has no
/// ancestors to inherit namespaces or `xml:` attributes from, so its canonical
/// form needs nothing but its subtree. Anything else (a namespace, a comment, a
/// processing instruction, an entity reference) returns nil and libxml2 does it.
enum PlainC14N {
    static func canonical(_ root: xmlNodePtr, excluding: xmlNodePtr?) -> [UInt8]? {
        guard root != excluding else { return nil }
        var output: [UInt8] = []
        output.reserveCapacity(8192)
        return write(root, excluding: excluding, into: &output) ? output : nil
    }

    /// Depth-first without recursion; false as soon as the subtree leaves the shape.
    private static func write(_ root: xmlNodePtr, excluding: xmlNodePtr?, into output: inout [UInt8]) -> Bool {
        var node: xmlNodePtr? = root
        while let here = node {
            switch here.pointee.type {
            case XML_ELEMENT_NODE:
                guard here.pointee.ns == nil, here.pointee.nsDef == nil, startTag(here, into: &output) else { return false }
                if let first = firstIncluded(here.pointee.children, excluding: excluding) {
                    node = first
                    continue
                }
                endTag(here, into: &output)
            case XML_TEXT_NODE, XML_CDATA_SECTION_NODE:
                if let content = here.pointee.content { escapeText(content, into: &output) }
            default:
                return false
            }
            // Next: the sibling, or close ancestors until one has a sibling.
            var climb = here
            node = nil
            while climb != root {
                if let next = firstIncluded(climb.pointee.next, excluding: excluding) {
                    node = next
                    break
                }
                guard let parent = climb.pointee.parent else { return false }
                endTag(parent, into: &output)
                climb = parent
            }
        }
        return true
    }

    private static func firstIncluded(_ node: xmlNodePtr?, excluding: xmlNodePtr?) -> xmlNodePtr? {
        var candidate = node
        while let here = candidate, here == excluding { candidate = here.pointee.next }
        return candidate
    }

    private static func startTag(_ element: xmlNodePtr, into output: inout [UInt8]) -> Bool {
        output.append(UInt8(ascii: "<"))
        append(element.pointee.name, into: &output)
        var attributes: [(name: UnsafePointer<xmlChar>, node: xmlAttrPtr)] = []
        var property = element.pointee.properties
        while let attribute = property {
            guard attribute.pointee.ns == nil, let name = attribute.pointee.name else { return false }
            var cursor = name
            while cursor.pointee != 0 {
                guard cursor.pointee < 0x80 else { return false }
                cursor += 1
            }
            attributes.append((name, attribute))
            property = attribute.pointee.next
        }
        // No namespaces: ordered by name, byte order (ASCII names).
        if attributes.count > 1 { attributes.sort { xmlStrcmp($0.name, $1.name) < 0 } }
        for (name, attribute) in attributes {
            output.append(UInt8(ascii: " "))
            append(name, into: &output)
            output.append(contentsOf: [UInt8(ascii: "="), UInt8(ascii: "\"")])
            var child = attribute.pointee.children
            while let text = child {
                guard text.pointee.type == XML_TEXT_NODE else { return false }
                if let content = text.pointee.content { escapeAttribute(content, into: &output) }
                child = text.pointee.next
            }
            output.append(UInt8(ascii: "\""))
        }
        output.append(UInt8(ascii: ">"))
        return true
    }

    private static func endTag(_ element: xmlNodePtr, into output: inout [UInt8]) {
        output.append(contentsOf: [UInt8(ascii: "<"), UInt8(ascii: "/")])
        append(element.pointee.name, into: &output)
        output.append(UInt8(ascii: ">"))
    }

    private static func append(_ string: UnsafePointer<xmlChar>?, into output: inout [UInt8]) {
        guard var cursor = string else { return }
        while cursor.pointee != 0 {
            output.append(cursor.pointee)
            cursor += 1
        }
    }

    /// Text: &, <, > and carriage return are escaped.
    private static func escapeText(_ text: UnsafePointer<xmlChar>, into output: inout [UInt8]) {
        escape(text, inAttribute: false, into: &output)
    }

    /// Attribute values: &, <, ", tab, line feed and carriage return are escaped.
    private static func escapeAttribute(_ text: UnsafePointer<xmlChar>, into output: inout [UInt8]) {
        escape(text, inAttribute: true, into: &output)
    }

    private static func escape(_ text: UnsafePointer<xmlChar>, inAttribute: Bool, into output: inout [UInt8]) {
        func reference(_ byte: UInt8) -> StaticString? {
            switch byte {
            case UInt8(ascii: "&"): "&amp;"
            case UInt8(ascii: "<"): "&lt;"
            case UInt8(ascii: ">") where !inAttribute: "&gt;"
            case UInt8(ascii: "\"") where inAttribute: "&quot;"
            case 0x09 where inAttribute: "&#x9;"
            case 0x0A where inAttribute: "&#xA;"
            case 0x0D: "&#xD;"
            default: nil
            }
        }
        var cursor = text
        while cursor.pointee != 0 {
            if let replacement = reference(cursor.pointee) {
                replacement.withUTF8Buffer { output.append(contentsOf: $0) }
            } else {
                output.append(cursor.pointee)
            }
            cursor += 1
        }
    }
}
