/// What the local SRI reads from a received comprobante before judging it.
public enum ComprobanteProbe {
    /// True when `bytes` are well-formed XML (no DTD). This is no schema check:
    /// the XSD is the schema judge's business.
    public static func isWellFormed(_ bytes: [UInt8]) -> Bool {
        SOAPParsedDocument(bytes) != nil
    }

    /// `infoTributaria/claveAcceso` of the comprobante (any root element), by
    /// local names; nil when the bytes are not XML or hold no key.
    public static func accessKey(in bytes: [UInt8]) -> String? {
        guard let document = SOAPParsedDocument(bytes) else { return nil }
        return try? document.read { root in
            root.child("infoTributaria")?.child("claveAcceso")?.trimmedText
        }
    }

    /// The local name of the root element (`factura`, `notaCredito`, …); nil
    /// when the bytes are not XML.
    public static func rootName(of bytes: [UInt8]) -> String? {
        guard let document = SOAPParsedDocument(bytes) else { return nil }
        return try? document.read { root in root.localName }
    }

    /// The fields of the comprobante that its `claveAcceso` disagrees with, by
    /// their element names: the key is the issue date (`ddmmyyyy`), `codDoc`,
    /// `ruc`, `ambiente`, `estab`, `ptoEmi`, `secuencial`, eight digits of
    /// its own, `tipoEmision` and the check digit. Empty when they agree; nil
    /// when the bytes are not XML or hold no 49-digit key.
    public static func accessKeyDisagreements(in bytes: [UInt8]) -> [String]? {
        guard let document = SOAPParsedDocument(bytes) else { return nil }
        return try? document.read { root -> [String]? in
            guard let tax = root.child("infoTributaria"), let key = tax.child("claveAcceso")?.trimmedText,
                key.utf8.count == 49, key.utf8.allSatisfy({ (0x30...0x39).contains($0) })
            else { return nil }
            let digits = Array(key.utf8)
            func part(_ from: Int, _ count: Int) -> String { String(decoding: digits[from..<(from + count)], as: UTF8.self) }
            // The issue date is in the document's own info element (infoFactura, infoNotaCredito, ...).
            let info = root.children.first {
                $0.localName.hasPrefix("info") && $0.localName != "infoTributaria" && $0.localName != "infoAdicional"
            }
            let date = (info?.child("fechaEmision")?.trimmedText ?? "").split(separator: "/").map(String.init)
            var disagreements: [String] = []
            if date.count != 3 || date.joined() != part(0, 8) { disagreements.append("fechaEmision") }
            for (name, from, count) in [
                ("codDoc", 8, 2), ("ruc", 10, 13), ("ambiente", 23, 1), ("estab", 24, 3), ("ptoEmi", 27, 3), ("secuencial", 30, 9),
                ("tipoEmision", 47, 1),
            ] where tax.child(name)?.trimmedText != part(from, count) {
                disagreements.append(name)
            }
            return disagreements
        }
    }
}
