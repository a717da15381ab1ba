/// The one rule for an email address: a tenant's at sign-up and a buyer's on
/// a comprobante ("`email` as for sign-up", SRI.md).
public enum EmailAddress {
    /// local@domain.tld, an address mail could reach: at most 254 characters,
    /// read scalar by scalar as the schema's check of tenants' addresses reads
    /// it (an "@" followed by a combining mark is still an "@"), so whatever
    /// passes here passes there.
    ///
    /// - Exactly one "@". The local part has 1 to 64 bytes in UTF-8 (RFC
    ///   5321's octets), neither starts nor ends with a dot and has no two
    ///   dots in a row.
    /// - The domain has two labels or more, each of 1 to 63 characters, of
    ///   ASCII letters, digits and hyphens, or any other letter or digit (an
    ///   internationalized name) with its combining marks; a label starts with
    ///   a letter or digit and does not end with a hyphen (marks after it
    ///   aside); the last (the top-level domain) has two characters or more,
    ///   not all digits of any script. No address literals (`[192.0.2.1]`).
    /// - Nowhere whitespace, a control character (C0, DEL, C1), an invisible
    ///   formatting character (zero-width, bidi: an address that looks like
    ///   another's must not be another address), or U+FFFE / U+FFFF, which XML
    ///   cannot carry.
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
        guard ats.count == 1, let at = ats.first else { return false }
        return isPlausibleLocalPart(scalars[..<at]) && isPlausibleDomain(scalars[(at + 1)...])
    }

    private static func isPlausibleLocalPart(_ local: ArraySlice<Unicode.Scalar>) -> Bool {
        let bytes = local.reduce(0) { $0 + UTF8.width($1) }
        guard (1...64).contains(bytes), local.first != ".", local.last != "." else { return false }
        return !zip(local, local.dropFirst()).contains { $0 == "." && $1 == "." }
    }

    private static func isPlausibleDomain(_ domain: ArraySlice<Unicode.Scalar>) -> Bool {
        let labels = domain.split(separator: ".", omittingEmptySubsequences: false)
        guard labels.count >= 2, let top = labels.last else { return false }
        for label in labels {
            guard (1...63).contains(label.count), let first = label.first, first != "-", !isMark(first),
                label.last(where: { !isMark($0) }) != "-"
            else { return false }
            guard
                label.allSatisfy({
                    $0.isASCII ? isHostCharacter($0) : $0.properties.isAlphabetic || $0.properties.numericType != nil || isMark($0)
                })
            else { return false }
        }
        return top.count >= 2 && !top.allSatisfy { $0.properties.numericType != nil || isMark($0) }
    }

    private static func isHostCharacter(_ scalar: Unicode.Scalar) -> Bool {
        ("a"..."z").contains(scalar) || ("A"..."Z").contains(scalar) || ("0"..."9").contains(scalar) || scalar == "-"
    }

    private static func isMark(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.properties.generalCategory {
        case .nonspacingMark, .spacingMark, .enclosingMark: return true
        default: return false
        }
    }
}
