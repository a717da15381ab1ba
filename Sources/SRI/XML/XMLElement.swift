import CLibXML2

extension XMLTree {
    /// An element of a tree. It keeps the tree alive; it is only valid while the
    /// element stays in that tree.
    public struct Element {
        public let tree: XMLTree
        let node: xmlNodePtr

        init(tree: XMLTree, node: xmlNodePtr) {
            self.tree = tree
            self.node = node
        }

        /// The name without its prefix.
        public var localName: String {
            String(cString: node.pointee.name)
        }

        /// The namespace name (URI), nil when the element is in no namespace.
        public var namespaceURI: String? {
            node.pointee.ns.flatMap { $0.pointee.href.map { String(cString: $0) } }
        }

        /// The prefix used in the document, nil for none.
        public var prefix: String? {
            node.pointee.ns.flatMap { $0.pointee.prefix.map { String(cString: $0) } }
        }

        /// The value of an attribute in no namespace.
        public func attribute(_ name: String) -> String? {
            guard let value = xmlGetNoNsProp(node, name) else { return nil }
            defer { comprobify_xml_free(value) }
            return String(cString: value)
        }

        /// Sets (or replaces) an attribute in no namespace. The value is text: it
        /// is escaped when written, never parsed for entities.
        public func setAttribute(_ name: String, _ value: String) {
            xmlSetProp(node, name, value)
        }

        /// The concatenated text of the element and its descendants.
        public var text: String {
            guard let content = xmlNodeGetContent(node) else { return "" }
            defer { comprobify_xml_free(content) }
            return String(cString: content)
        }

        /// Appends a text node (escaped when written, never parsed for entities).
        public func appendText(_ text: String) {
            xmlAddChild(node, xmlNewDocText(tree.doc, text))
        }

        /// The parent element, nil for the root.
        public var parent: Element? {
            guard let parent = node.pointee.parent, parent.pointee.type == XML_ELEMENT_NODE else { return nil }
            return Element(tree: tree, node: parent)
        }

        /// The child elements, in order.
        public var children: [Element] {
            var result: [Element] = []
            var child = node.pointee.children
            while let current = child {
                if current.pointee.type == XML_ELEMENT_NODE { result.append(Element(tree: tree, node: current)) }
                child = current.pointee.next
            }
            return result
        }

        /// The first child element with this local name (and namespace, when given).
        public func firstChild(_ localName: String, namespace: String? = nil) -> Element? {
            var child = node.pointee.children
            while let current = child {
                if current.pointee.type == XML_ELEMENT_NODE {
                    let element = Element(tree: tree, node: current)
                    if element.localName == localName && (namespace == nil || element.namespaceURI == namespace) {
                        return element
                    }
                }
                child = current.pointee.next
            }
            return nil
        }

        /// The first element in document order, this one included, that matches.
        public func firstDescendantOrSelf(where matches: (Element) -> Bool) -> Element? {
            var found: Element?
            walk { element in
                if matches(element) {
                    found = element
                    return false
                }
                return true
            }
            return found
        }

        /// Calls `body` on this element and every descendant element, in document order.
        public func forEachDescendantOrSelf(_ body: (Element) -> Void) {
            walk { element in
                body(element)
                return true
            }
        }

        /// Depth-first, document order, without recursion; stops when `visit` returns false.
        private func walk(_ visit: (Element) -> Bool) {
            var current: xmlNodePtr? = node
            while let here = current {
                if here.pointee.type == XML_ELEMENT_NODE {
                    if !visit(Element(tree: tree, node: here)) { return }
                    if let first = here.pointee.children {
                        current = first
                        continue
                    }
                }
                // Next sibling, or the next sibling of the nearest ancestor that has one.
                var climb: xmlNodePtr? = here
                current = nil
                while let step = climb, step != node {
                    if let next = step.pointee.next {
                        current = next
                        break
                    }
                    climb = step.pointee.parent
                }
            }
        }

        /// Appends a child element. With a namespace, the element uses the
        /// declaration already in scope for it, or declares it on itself with
        /// `prefix` (nil: as the default namespace).
        @discardableResult
        public func addChild(_ localName: String, namespace: String? = nil, prefix: String? = nil, text: String? = nil) -> Element {
            let child = xmlNewDocNode(tree.doc, nil, localName, nil)!
            xmlAddChild(node, child)
            if let namespace {
                let ns = xmlSearchNsByHref(tree.doc, child, namespace) ?? xmlNewNs(child, namespace, prefix)
                xmlSetNs(child, ns)
            }
            let element = Element(tree: tree, node: child)
            if let text { element.appendText(text) }
            return element
        }

        /// Declares a namespace on this element (`xmlns:prefix="uri"`), so that
        /// descendants added later in that namespace use it.
        public func declareNamespace(prefix: String?, uri: String) {
            xmlNewNs(node, uri, prefix)
        }
    }
}

extension XMLTree.Element: Equatable {
    public static func == (lhs: XMLTree.Element, rhs: XMLTree.Element) -> Bool {
        lhs.node == rhs.node
    }
}
