import Foundation
import TestSupport
import XCTest

@testable import SRI

final class SigningXMLTreeTests: XCTestCase {
    private func tree(_ text: String) throws -> XMLTree {
        try XMLTree(parsing: Array(text.utf8))
    }

    /// xmllint's canonical form of a whole document.
    private func xmllintC14N(_ document: [UInt8]) throws -> String {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("c14n-\(UUID().uuidString).xml")
        defer { try? FileManager.default.removeItem(at: file) }
        try Data(document).write(to: file)
        let (status, output) = try runTool("xmllint", ["--c14n", file.path])
        XCTAssertEqual(status, 0, output)
        return output
    }

    private func canonical(_ tree: XMLTree, _ element: XMLTree.Element?, excluding: XMLTree.Element? = nil) throws -> String {
        String(decoding: try tree.canonicalBytes(try XCTUnwrap(element), excluding: excluding), as: UTF8.self)
    }

    func testCanonicalFormOfAnElementInPlaceCarriesTheNamespacesInScope() throws {
        let document = try tree(
            #"""
            <a:root xmlns:a="urn:a" xmlns="urn:default" xmlns:unused="urn:unused" id="r"><!-- note -->
              <a:inner z="2" b='&lt;&amp;&quot;' xmlns:b="urn:b"><leaf b:x="1"/>text &amp; &lt;more&gt; ]]&gt; "q" 'a' 🚀<![CDATA[<raw>&]]></a:inner>
            </a:root>
            """#)
        let inner = document.firstElement(localName: "inner")
        XCTAssertEqual(
            try canonical(document, inner),
            #"<a:inner xmlns="urn:default" xmlns:a="urn:a" xmlns:b="urn:b" xmlns:unused="urn:unused" b="&lt;&amp;&quot;" z="2">"#
                + #"<leaf b:x="1"></leaf>text &amp; &lt;more&gt; ]]&gt; "q" 'a' 🚀&lt;raw&gt;&amp;</a:inner>"#)
        let leaf = document.firstElement(localName: "leaf")
        let before = document.serialized()
        XCTAssertEqual(
            try canonical(document, leaf),
            #"<leaf xmlns="urn:default" xmlns:a="urn:a" xmlns:b="urn:b" xmlns:unused="urn:unused" b:x="1"></leaf>"#)
        XCTAssertEqual(document.serialized(), before, "the siblings set aside for the walk are back in place")
    }

    func testCanonicalFormMatchesXmllintForTheWholeDocument() throws {
        let document = try XMLTree(parsing: Fixtures.factura)
        XCTAssertEqual(try canonical(document, document.root), try xmllintC14N(Fixtures.factura))
    }

    func testExcludedSubtreeIsLeftOut() throws {
        let document = try tree(#"<r id="x"><a>1</a><s:sig xmlns:s="urn:s"><b>2</b></s:sig></r>"#)
        let signature = document.firstElement(localName: "sig")
        XCTAssertEqual(try canonical(document, document.root, excluding: signature), #"<r id="x"><a>1</a></r>"#)
    }

    /// The root, whole or less a subtree, takes libxml2's walk without a
    /// callback; xmllint's `--c14n` is the independent judge of the escaping.
    func testCanonicalFormOfTheRootMatchesXmllint() throws {
        let text = #"""
            <?xml version="1.0" encoding="UTF-8"?>
            <factura z="last" id="comprobante" a="&amp;&lt;&gt;&quot;'&#9;&#10;&#13;x" version="2.1.0">
              <vacío/><e></e>
              <t>Ñandú &amp; Cía. &lt;tag&gt; "q" 'a' ]]&gt; 🦤&#13;
            line</t><c><![CDATA[<raw> & ]] stuff]]></c>
              <d><x nombre="b" valor="&#x20AC;"><y/></x>tail</d>
            </factura>
            """#
        let document = try tree(text)
        let output = try xmllintC14N(Array(text.utf8))
        XCTAssertEqual(try canonical(document, document.root), output)

        let excluded = document.firstElement(localName: "x")
        XCTAssertEqual(
            try canonical(document, document.root, excluding: excluded),
            output.replacingOccurrences(of: #"<x nombre="b" valor="€"><y></y></x>"#, with: ""))
    }

    func testAnExcludedSubtreeInTheMiddleIsLeftOutAndPutBack() throws {
        let document = try tree(#"<r xmlns:p="urn:p" id="x"><a>1</a><p:s><b>2</b></p:s><c a="&#13;">3&#13;</c></r>"#)
        let before = document.serialized()
        let signature = document.firstElement(localName: "s")
        XCTAssertEqual(
            try canonical(document, document.root, excluding: signature), #"<r xmlns:p="urn:p" id="x"><a>1</a><c a="&#xD;">3&#xD;</c></r>"#)
        XCTAssertEqual(document.serialized(), before, "the excluded subtree is back where it was")
    }

    func testOnlyTheRootIsCanonicalizedWhenTheDocumentHoldsMore() throws {
        let document = try tree("<?keep me?><!-- before --><r><a>1</a><s>2</s></r><?after?>")
        let signature = document.firstElement(localName: "s")
        XCTAssertEqual(try canonical(document, document.root, excluding: signature), "<r><a>1</a></r>")
    }

    func testXMLAttributesOfAncestorsAreImportedOntoTheElement() throws {
        let document = try tree(#"<r xml:lang="es" xmlns:q="urn:q"><m xml:space="preserve"><a q:k="v">1</a></m></r>"#)
        XCTAssertEqual(
            try canonical(document, document.firstElement(localName: "a")),
            #"<a xmlns:q="urn:q" xml:lang="es" xml:space="preserve" q:k="v">1</a>"#)
    }

    func testBuildsElementsWithNamespacesAndEscapesText() throws {
        let document = XMLTree(rootName: "doc")
        document.root.setAttribute("id", "comprobante")
        let parent = document.root.addChild("Parent", namespace: "urn:p", prefix: "p")
        parent.declareNamespace(prefix: "q", uri: "urn:q")
        let child = parent.addChild("Child", namespace: "urn:q", text: #"a & b < c > "d" ]]>"#)
        child.setAttribute("attr", #"x & "y" <z>"#)
        parent.addChild("Same", namespace: "urn:p")
        XCTAssertEqual(child.prefix, "q")
        XCTAssertEqual(child.namespaceURI, "urn:q")
        XCTAssertEqual(child.parent, parent)
        let text = String(decoding: document.serialized(), as: UTF8.self)
        XCTAssertEqual(
            text,
            """
            <?xml version="1.0" encoding="UTF-8"?>
            <doc id="comprobante"><p:Parent xmlns:p="urn:p" xmlns:q="urn:q"><q:Child attr="x &amp; &quot;y&quot; &lt;z&gt;">\
            a &amp; b &lt; c &gt; "d" ]]&gt;</q:Child><p:Same/></p:Parent></doc>

            """)
        let reparsed = try XMLTree(parsing: document.serialized())
        XCTAssertEqual(reparsed.firstElement(localName: "Child", namespace: "urn:q")?.text, #"a & b < c > "d" ]]>"#)
        XCTAssertEqual(reparsed.element(withID: "comprobante"), reparsed.root)
    }

    func testFindsElementsByLocalNameAndId() throws {
        let document = try tree(#"<r><x:a xmlns:x="urn:x" Id="one"/><a id="two"/><b id="two"/></r>"#)
        XCTAssertEqual(document.firstElement(localName: "a")?.namespaceURI, "urn:x")
        XCTAssertEqual(document.firstElement(localName: "a", namespace: nil)?.attribute("Id"), "one")
        XCTAssertNil(document.firstElement(localName: "a", namespace: "urn:other"))
        XCTAssertEqual(document.element(withID: "one", attribute: "Id")?.localName, "a")
        XCTAssertNil(document.element(withID: "two"), "an ambiguous id names nothing")
        XCTAssertEqual(document.elements(withAttribute: "id", value: "two").map(\.localName), ["a", "b"])
    }

    func testRefusesDTDsEntitiesAndBrokenDocuments() throws {
        let secret = FileManager.default.temporaryDirectory.appendingPathComponent("secret-\(UUID().uuidString).txt")
        try Data("TOP SECRET".utf8).write(to: secret)
        defer { try? FileManager.default.removeItem(at: secret) }
        let hostile = [
            #"<!DOCTYPE r [<!ENTITY x SYSTEM "file://\#(secret.path)">]><r>&x;</r>"#,
            #"<!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><r>&b;</r>"#,
            #"<!DOCTYPE r SYSTEM "http://example.invalid/r.dtd"><r/>"#,
            #"<?xml version="1.0"?><!DOCTYPE r><r/>"#,
        ]
        for text in hostile {
            XCTAssertThrowsError(try tree(text), text) { error in
                XCTAssertEqual((error as? XMLError)?.message, "a document type declaration (DTD) is not accepted", text)
            }
        }
        for broken in ["", "<r>", "<r></s>", "not xml", "<r>&undefined;</r>"] {
            XCTAssertThrowsError(try tree(broken), broken)
        }
    }
}
