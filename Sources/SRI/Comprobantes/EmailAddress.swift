/// The one rule for an email address: a tenant's at sign-up and a buyer's on
/// a comprobante ("`email` as for sign-up", SRI.md).
public enum EmailAddress {
    /// Something@domain.tld: at most 254 characters, read scalar by scalar as
    /// the schema's check of tenants' addresses reads it (an "@" followed by a
    /// combining mark is still an "@"); exactly one "@" with something before
    /// it, and a dot in the domain with something on each side. No whitespace,
    /// no control character (C0, DEL, C1), no invisible formatting character
    /// (zero-width, bidi: an address that looks like another's must not be
    /// another address), and neither U+FFFE nor U+FFFF, which XML cannot carry.
    public static func isPlausible(_ text: String) -> Bool {
        let scalars = Array(text.unicodeScalars.prefix(255))
        guard scalars.count <= 254 else { return false }
        guard
            !scalars.contains(where: {
                $0.properties.isWhitespace || $0.value < 0x20 || (0x7F...0x9F).contains($0.value)
                    || $0.value == 0xFFFE || $0.value == 0xFFFF || $0.properties.generalCategory == .format
            })
        else { return false }
        let ats = scalars.indices.filter { scalars[$0] == "@" }
        guard ats.count == 1, let at = ats.first, at > 0 else { return false }
        return scalars[(at + 1)...].dropFirst().dropLast().contains(".")
    }
}
