/// List responses are bounded in bytes as well as in rows: a page stops early
/// once its items pass `bytes`, and its `nextAfter` says where to continue.
/// A page always holds at least one item, so a client always moves forward.
/// API.md has a page shorter than `limit` end the list, so the bound sits
/// far above any page of ordinary documents (200 of 40 KiB each fit): only
/// documents near their limits (1000 lines of long texts) are cut short,
/// rather than a page of them taking hundreds of MiB.
enum ListBudget {
    static let bytes = 8 << 20

    /// How many of `items`, from the first, fit in `bytes` (at least one when there is one).
    static func fitting<Item>(_ items: [Item], bytes budget: Int = bytes, size: (Item) -> Int) -> Int {
        var used = 0
        for (index, item) in items.enumerated() {
            used += size(item) + 1
            if used > budget { return max(1, index) }
        }
        return items.count
    }
}
