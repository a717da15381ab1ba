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
        // siblings of the element and of its ancestors are not in the subset
        // and cannot change it (namespaces and `xml:` attributes come from
        // ancestors alone), nor can the excluded subtree: they are spliced out
        // of the tree for the walk and put back after it, untouched.
        let isolation = Isolation(element.node, excluding: excluding?.node)
        defer { isolation.restore() }
        // The root less a descendant, in a document that holds nothing else:
        // the whole document is then exactly the subset, and libxml2 needs no
        // callback (C14N writes no XML declaration).
        if !withComments, isolation.excludedSplicedOut || excluding == nil, element.node == xmlDocGetRootElement(doc),
            doc.pointee.children == element.node, element.node.pointee.next == nil
        {
            try Self.canonicalizeWholeDocument(doc, into: sink)
            return
        }
        try canonicalizeWithCallback(element, excluding: excluding, withComments: withComments, into: sink)
    }

    private static func canonicalizeWholeDocument(
        _ document: xmlDocPtr, into sink: (UnsafeRawBufferPointer) -> Void
    ) throws(XMLError) {
        try streaming(into: sink) { buffer in
            xmlC14NExecute(document, nil, nil, Int32(XML_C14N_1_0.rawValue), nil, 0, buffer)
        }
    }

    /// The general way: libxml2's walk with a visibility callback.
    private func canonicalizeWithCallback(
        _ element: Element, excluding: Element?, withComments: Bool, into sink: (UnsafeRawBufferPointer) -> Void
    ) throws(XMLError) {
        var scope = C14NScope(target: element.node, excluded: excluding?.node)
        try Self.streaming(into: sink) { buffer in
            withUnsafeMutablePointer(to: &scope) { scopePointer in
                xmlC14NExecute(doc, c14nIsVisible, scopePointer, Int32(XML_C14N_1_0.rawValue), nil, withComments ? 1 : 0, buffer)
            }
        }
    }

    /// Runs `execute` with an output buffer that hands libxml2's chunks to
    /// `sink`, then closes it; a negative result from either is an error.
    private static func streaming(
        into sink: (UnsafeRawBufferPointer) -> Void, _ execute: (xmlOutputBufferPtr) -> Int32
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
            let written = execute(buffer)
            let closed = xmlOutputBufferClose(buffer)
            withExtendedLifetime(output) {}
            guard written >= 0, closed >= 0 else { throw XMLError("libxml2 could not canonicalize the element") }
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

/// Sibling links set aside for one canonicalization: along the path from the
/// root to the element each ancestor keeps only the child on the path, and the
/// excluded subtree (a strict descendant) is unlinked from its siblings. Only
/// `children`, `last`, `prev` and `next` pointers change, and `restore` sets
/// them back; nothing is freed, copied or merged.
private final class Isolation {
    /// A child made its parent's only child, with the links it had.
    private struct Link {
        let parent: xmlNodePtr
        let child: xmlNodePtr
        let children: xmlNodePtr?
        let last: xmlNodePtr?
        let prev: xmlNodePtr?
        let next: xmlNodePtr?

        init(_ child: xmlNodePtr, in parent: xmlNodePtr) {
            self.parent = parent
            self.child = child
            children = parent.pointee.children
            last = parent.pointee.last
            prev = child.pointee.prev
            next = child.pointee.next
        }

        func restore() {
            parent.pointee.children = children
            parent.pointee.last = last
            child.pointee.prev = prev
            child.pointee.next = next
        }
    }

    private var path: [Link] = []
    private var excluded: Link?

    var excludedSplicedOut: Bool { excluded != nil }

    init(_ element: xmlNodePtr, excluding: xmlNodePtr?) {
        var child = element
        while let parent = child.pointee.parent, parent.pointee.type == XML_ELEMENT_NODE {
            path.append(Link(child, in: parent))
            parent.pointee.children = child
            parent.pointee.last = child
            child.pointee.prev = nil
            child.pointee.next = nil
            child = parent
        }
        guard let node = excluding, node != element, Self.isDescendant(node, of: element), let parent = node.pointee.parent else { return }
        let link = Link(node, in: parent)
        if let prev = link.prev { prev.pointee.next = link.next } else { parent.pointee.children = link.next }
        if let next = link.next { next.pointee.prev = link.prev } else { parent.pointee.last = link.prev }
        excluded = link
    }

    func restore() {
        if let link = excluded {
            link.prev?.pointee.next = link.child
            link.next?.pointee.prev = link.child
            link.restore()
            excluded = nil
        }
        for link in path.reversed() { link.restore() }
        path.removeAll()
    }

    private static func isDescendant(_ node: xmlNodePtr, of ancestor: xmlNodePtr) -> Bool {
        var current = node.pointee.parent
        while let here = current {
            if here == ancestor { return true }
            current = here.pointee.parent
        }
        return false
    }
}
