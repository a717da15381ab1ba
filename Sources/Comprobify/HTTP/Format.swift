import SRI

/// Formats of the fields the API accepts: pure checks, shared by the resources.
enum Format {
    static func digits(_ text: String, count: Int) -> Bool {
        text.utf8.count == count && text.utf8.allSatisfy { (48...57).contains($0) }
    }

    /// ASCII digits only, of any length (no sign, space or other numerals:
    /// `Int("+5")` would take a sign).
    static func digits(_ text: String) -> Bool {
        digits(text, count: text.utf8.count)
    }

    /// A plausible email address (`EmailAddress.isPlausible`, the buyer's rule too).
    static func email(_ text: String) -> Bool {
        EmailAddress.isPlausible(text)
    }

    /// A path id: a positive integer, else nil (which routes answer with 404).
    static func pathID(_ text: String?) -> Int64? {
        guard let text, let id = Int64(text), id > 0, Format.digits(text) else { return nil }
        return id
    }

    /// Establishment and emission point codes: 3 digits, not "000".
    static func branchCode(_ text: String) -> Bool {
        digits(text, count: 3) && text != "000"
    }

    /// `text` on one line (each line break and tab a space, any other control
    /// character, C0, DEL or C1, U+FFFD: PostgreSQL's text cannot hold a NUL, and an error
    /// quoting a peer's bytes may carry one), `clipped` to at most `limit` scalars.
    static func oneLine(_ text: String, atMost limit: Int = 200) -> String {
        let spaces: Set<UInt32> = [0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x85, 0x2028, 0x2029]
        return clipped(
            text.unicodeScalars.lazy.map { scalar -> Unicode.Scalar in
                if spaces.contains(scalar.value) { return " " }
                if scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value) { return "\u{FFFD}" }
                return scalar
            }, atMost: limit)
    }

    /// At most `limit` Unicode scalars, the last an ellipsis when cut. Counted
    /// as PostgreSQL's char_length and JSON Schema's maxLength count (code
    /// points): String.count counts grapheme clusters, and one of them may
    /// hold any number of scalars.
    static func clipped(_ text: String, atMost limit: Int) -> String {
        clipped(text.unicodeScalars, atMost: limit)
    }

    private static func clipped(_ scalars: some Sequence<Unicode.Scalar>, atMost limit: Int) -> String {
        var kept = String.UnicodeScalarView()
        kept.append(contentsOf: scalars.prefix(limit + 1))
        guard kept.count > limit else { return String(kept) }
        var cut = String.UnicodeScalarView(kept.prefix(limit - 1))
        cut.append("…")
        return String(cut)
    }
}
