/// How much of a list is held in memory at once. A page is always as long as
/// API.md says (`limit` items, or fewer only at the end of the list), but a
/// page of 200 documents near their limits is hundreds of MiB of JSON. So the
/// documents are read and written in chunks of about `bytes`: the first chunk
/// with the page's ids, each further one with its own read while the answer is
/// streamed. Ordinary documents (a few KiB) fit a whole page in one chunk.
enum ListBudget {
    static let bytes = 8 << 20

    /// The most each further chunk of a streamed page holds. The response
    /// writer hands a chunk to NIO and returns; it waits only when NIO's
    /// buffer for the socket is full, so a reader that takes the answer
    /// slowly (or not at all) holds the first read and about two further
    /// chunks in memory: these are kept small.
    static let streamedBytes = 1 << 20

    /// Reckoned on top of a document's stored body, metadata and SRI
    /// messages: its other fields, their names and the JSON around them.
    static let perDocument = 1024

    /// `sizes` split into consecutive chunks of at most `bytes` each, as ranges
    /// of indexes; a chunk holds at least one item, so a larger item is a chunk
    /// of its own.
    static func chunks(_ sizes: [Int], bytes budget: Int = bytes) -> [Range<Int>] {
        var chunks: [Range<Int>] = []
        var start = 0
        var used = 0
        for (index, size) in sizes.enumerated() {
            if index > start, used + size > budget {
                chunks.append(start..<index)
                start = index
                used = 0
            }
            used += size
        }
        if start < sizes.count { chunks.append(start..<sizes.count) }
        return chunks
    }
}
