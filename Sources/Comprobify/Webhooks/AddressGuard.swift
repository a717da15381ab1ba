import Foundation
import NIOPosix

/// Refuses webhook hosts that are or resolve to loopback, private, link-local
/// or metadata addresses (SSRF), at creation and again before each delivery.
/// With `WEBHOOKS_ALLOW_HTTP=1`, `localhost` and `127.0.0.1` themselves are allowed.
///
/// The check resolves the name and the HTTP client resolves it again to
/// connect, so a name whose answers change in between (DNS rebinding) can
/// slip through once; docs/webhooks in the README says so.
enum AddressGuard {
    /// Why `url` may not be used right now, or nil. A name that does not
    /// resolve is refused only when `requireAddress` (before a delivery): at
    /// creation the endpoint may not be in DNS yet, and every delivery is
    /// checked again.
    static func refusal(for url: WebhookURL, allowHTTP: Bool, requireAddress: Bool = true) async -> String? {
        await refusal(for: url, allowHTTP: allowHTTP, requireAddress: requireAddress) { host in
            try await NIOThreadPool.singleton.runIfActive { resolve(host) }
        }
    }

    /// The same, with the name lookup given (tests).
    static func refusal(
        for url: WebhookURL, allowHTTP: Bool, requireAddress: Bool = true, lookup: @Sendable (String) async throws -> [IPAddress]?
    ) async -> String? {
        if allowHTTP && WebhookURL.isAllowedLoopbackHost(url.host) { return nil }
        if let address = IPAddress(url.host) {
            return address.forbiddenReason.map { "url must not point at \($0)." }
        }
        let host = url.host
        let addresses: [IPAddress]?
        do {
            addresses = try await lookup(host)
        } catch {
            addresses = nil
        }
        guard let addresses, !addresses.isEmpty else { return requireAddress ? "url's host name does not resolve." : nil }
        for address in addresses {
            if let reason = address.forbiddenReason { return "url's host name resolves to \(reason)." }
        }
        return nil
    }

    /// Every address `host` resolves to, or nil.
    private static func resolve(_ host: String) -> [IPAddress]? {
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
