/// Formats of the fields the API accepts: pure checks, shared by the resources.
enum Format {
    static func digits(_ text: String, count: Int) -> Bool {
        text.utf8.count == count && text.utf8.allSatisfy { (48...57).contains($0) }
    }

    /// A plausible email address: something@domain.tld, no spaces, at most 254
    /// characters. Read scalar by scalar, as the schema's check reads it: an "@"
    /// followed by a combining mark is still an "@".
    static func email(_ text: String) -> Bool {
        let scalars = Array(text.unicodeScalars)
        guard scalars.count <= 254 else { return false }
        guard !scalars.contains(where: { $0.properties.isWhitespace || $0.value < 0x20 || $0.value == 0x7F }) else { return false }
        let ats = scalars.indices.filter { scalars[$0] == "@" }
        guard ats.count == 1, let at = ats.first, at > 0 else { return false }
        // As the schema's check: a dot in the domain with something before and after it.
        return scalars[(at + 1)...].dropFirst().dropLast().contains(".")
    }

    /// A path id: a positive integer, else nil (which routes answer with 404).
    static func pathID(_ text: String?) -> Int64? {
        guard let text, let id = Int64(text), id > 0, Format.digits(text, count: text.utf8.count) else { return nil }
        return id
    }

    /// Establishment and emission point codes: 3 digits, not "000".
    static func branchCode(_ text: String) -> Bool {
        digits(text, count: 3) && text != "000"
    }
}
