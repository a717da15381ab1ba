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
}
