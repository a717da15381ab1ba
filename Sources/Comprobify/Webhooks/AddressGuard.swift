import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// Refuses webhook hosts that are or resolve to loopback, private, link-local
/// or metadata addresses (SSRF), at creation and again before each delivery.
/// With `WEBHOOKS_ALLOW_HTTP=1`, `localhost` and `127.0.0.1` themselves are allowed.
///
/// A delivery connects to the very addresses this check approved (the HTTP
/// client is told to use one of them for the name, and still sends the name
/// for TLS and checks the certificate against it), so a name whose answers
/// change between the check and the connection (DNS rebinding) gains nothing.
enum AddressGuard {
    /// What the check decided: refused, or allowed, with the addresses to
    /// connect to when the host is a name, in the resolver's order (none for
    /// an IP literal or the test allowance).
    enum Verdict: Equatable {
        case refused(String)
        case allowed(pins: [IPAddress])

        var refusal: String? {
            if case .refused(let reason) = self { return reason }
            return nil
        }
    }

    /// Why `url` may not be used right now, or nil. A name that does not
    /// resolve is refused only when `requireAddress` (before a delivery): at
    /// creation the endpoint may not be in DNS yet, and every delivery is
    /// checked again.
    static func refusal(
        for url: WebhookURL, tenantID: Int64, allowHTTP: Bool, requireAddress: Bool = true, deadline: NIODeadline = .distantFuture
    ) async -> String? {
        await verdict(for: url, tenantID: tenantID, allowHTTP: allowHTTP, requireAddress: requireAddress, deadline: deadline).refusal
    }

    /// The same, with the name lookup given (tests).
    static func refusal(
        for url: WebhookURL, allowHTTP: Bool, requireAddress: Bool = true, lookup: @Sendable (String) async throws -> [IPAddress]?
    ) async -> String? {
        await verdict(for: url, allowHTTP: allowHTTP, requireAddress: requireAddress, lookup: lookup).refusal
    }

    /// Whether `verdict` has to ask DNS: not for an address written in the
    /// URL, nor for the loopback names allowed with `allowHTTP`.
    static func needsLookup(_ url: WebhookURL, allowHTTP: Bool) -> Bool {
        !(allowHTTP && WebhookURL.isAllowedLoopbackHost(url.host)) && IPAddress(url.host) == nil
    }

    /// For `tenantID`'s webhook: its lookups count toward its own bound, and
    /// one still waiting for a place at `deadline` (its caller gone) is not made.
    static func verdict(
        for url: WebhookURL, tenantID: Int64, allowHTTP: Bool, requireAddress: Bool = true, deadline: NIODeadline = .distantFuture
    ) async -> Verdict {
        await verdict(for: url, allowHTTP: allowHTTP, requireAddress: requireAddress) { host in
            try await boundedLookup(host, tenantID: tenantID, deadline: deadline, resolve)
        }
    }

    /// Threads of their own for name lookups: `getaddrinfo` blocks its thread
    /// for as long as the resolver waits (tens of seconds for a name whose
    /// server never answers), so slow names must not take the shared blocking
    /// pool's threads, which open certificate files.
    private static let lookupThreads: NIOThreadPool = {
        let pool = NIOThreadPool(numberOfThreads: lookupThreadCount)
        pool.start()
        return pool
    }()

    static let lookupThreadCount = 32

    /// Lookups running or queued on `lookupThreads` (in all, and by tenant),
    /// and the lookups of tenants whose places are all taken, waiting for one.
    struct Waiting: Sendable {
        var total = 0
        var byTenant: [Int64: Int] = [:]
        var queued: [Int64: [Queued]] = [:]
    }

    /// A lookup waiting for one of its tenant's places, until `deadline`.
    struct Queued: Sendable {
        let continuation: CheckedContinuation<Bool, Never>
        let deadline: NIODeadline
    }

    static let lookupsWaiting = NIOLockedValueBox(Waiting())

    /// At most this many lookups run or wait for a thread at once; past it a
    /// lookup is not made and the name counts as not resolving (allowed at
    /// creation, a failed attempt before a delivery, which is retried), so a
    /// flood of slow names holds at most `lookupThreads` and this many queued lookups.
    static let maximumLookupsWaiting = 64

    /// At most this many of them for one tenant: its further lookups wait,
    /// without a thread, for one of its own to end. A name whose DNS server
    /// never answers holds its thread until the resolver gives up (tens of
    /// seconds, whatever the caller's deadline), so one tenant's such names
    /// hold at most this many of the `lookupThreadCount` threads, and the
    /// other tenants' lookups still run at once.
    static let maximumLookupsPerTenant = 4

    /// At most this many of a tenant's lookups wait for its places; past it
    /// a lookup is not made.
    static let maximumQueuedPerTenant = 64

    /// `resolve(host)` on the lookup threads, once one of `tenantID`'s places
    /// is free; nil when `maximumLookupsWaiting` already run or wait, or
    /// `maximumQueuedPerTenant` of the tenant's wait for a place.
    /// A lookup still waiting for a place at `deadline` is not made: its
    /// caller has given up, and the place goes to the next.
    static func boundedLookup(
        _ host: String, tenantID: Int64, deadline: NIODeadline = .distantFuture,
        _ resolve: @escaping @Sendable (String) -> [IPAddress]?
    ) async throws -> [IPAddress]? {
        let admitted = await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            let decided = lookupsWaiting.withLockedValue { waiting -> Bool? in
                guard waiting.total < maximumLookupsWaiting else { return false }
                if waiting.byTenant[tenantID, default: 0] < maximumLookupsPerTenant {
                    waiting.total += 1
                    waiting.byTenant[tenantID, default: 0] += 1
                    return true
                }
                guard waiting.queued[tenantID, default: []].count < maximumQueuedPerTenant else { return false }
                // Resumed by the end of one of the tenant's lookups, which hands
                // its place over (or, past `deadline`, says it is too late).
                waiting.queued[tenantID, default: []].append(Queued(continuation: continuation, deadline: deadline))
                return nil
            }
            if let decided { continuation.resume(returning: decided) }
        }
        guard admitted else { return nil }
        defer { endLookup(of: tenantID) }
        return try await lookupThreads.runIfActive { resolve(host) }
    }

    /// Gives the place of a lookup that ended to the tenant's oldest waiting
    /// one still within its deadline, or frees it; those past theirs are
    /// told no.
    private static func endLookup(of tenantID: Int64) {
        let now = NIODeadline.now()
        let (next, late) = lookupsWaiting.withLockedValue { waiting -> (CheckedContinuation<Bool, Never>?, [Queued]) in
            var queue = waiting.queued[tenantID] ?? []
            let late = Array(queue.prefix { $0.deadline <= now })
            queue.removeFirst(late.count)
            if !queue.isEmpty {
                let first = queue.removeFirst()
                waiting.queued[tenantID] = queue.isEmpty ? nil : queue
                return (first.continuation, late)
            }
            waiting.queued[tenantID] = nil
            waiting.total -= 1
            let left = waiting.byTenant[tenantID, default: 1] - 1
            waiting.byTenant[tenantID] = left > 0 ? left : nil
            return (nil, late)
        }
        for waiter in late { waiter.continuation.resume(returning: false) }
        next?.resume(returning: true)
    }

    /// Every address a name resolves to must be allowed; they are the ones
    /// to connect to, the first first.
    static func verdict(
        for url: WebhookURL, allowHTTP: Bool, requireAddress: Bool = true, lookup: @Sendable (String) async throws -> [IPAddress]?
    ) async -> Verdict {
        if allowHTTP && WebhookURL.isAllowedLoopbackHost(url.host) { return .allowed(pins: []) }
        if let address = IPAddress(url.host) {
            return address.forbiddenReason.map { .refused("url must not point at \($0).") } ?? .allowed(pins: [])
        }
        let addresses: [IPAddress]?
        do {
            addresses = try await lookup(url.host)
        } catch {
            addresses = nil
        }
        guard let addresses, !addresses.isEmpty else {
            return requireAddress ? .refused("url's host name does not resolve.") : .allowed(pins: [])
        }
        var pins: [IPAddress] = []
        for address in addresses {
            if let reason = address.forbiddenReason { return .refused("url's host name resolves to \(reason).") }
            if !pins.contains(address) { pins.append(address) }
        }
        return .allowed(pins: pins)
    }

    /// Every address `host` resolves to, or nil.
    @Sendable private static func resolve(_ host: String) -> [IPAddress]? {
        // getaddrinfo reads up to a NUL: a name holding one is not the name asked.
        guard !host.utf8.contains(0) else { return nil }
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        #if canImport(Glibc)
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        #else
            hints.ai_socktype = SOCK_STREAM
        #endif
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &list) == 0, let first = list else { return nil }
        defer { freeaddrinfo(list) }
        var addresses: [IPAddress] = []
        var current: UnsafeMutablePointer<addrinfo>? = first
        while let entry = current {
            if let socketAddress = entry.pointee.ai_addr {
                switch Int32(socketAddress.pointee.sa_family) {
                case AF_INET:
                    var address = socketAddress.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr }
                    addresses.append(IPAddress(bytes: withUnsafeBytes(of: &address) { Array($0) }))
                case AF_INET6:
                    var address = socketAddress.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { $0.pointee.sin6_addr }
                    addresses.append(IPAddress(bytes: withUnsafeBytes(of: &address) { Array($0) }))
                default: break
                }
            }
            current = entry.pointee.ai_next
        }
        return addresses
    }
}
