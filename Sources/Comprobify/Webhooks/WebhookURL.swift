import Foundation

/// The rules for a webhook URL that need no network: https (or http to
/// localhost / 127.0.0.1 with `WEBHOOKS_ALLOW_HTTP=1`), a host, no user
/// information, no fragment, and no literal address that is loopback, private,
/// link-local or a cloud metadata address (unless the allowance covers it).
/// `AddressGuard` checks what a host name resolves to, at creation and again
/// at each delivery.
struct WebhookURL: Sendable, Equatable {
    let text: String
    let host: String
    let port: Int
    let isHTTPS: Bool

    static let maximumLength = 2048

    /// Whether `host` is one of the two names the allowance covers.
    static func isAllowedLoopbackHost(_ host: String) -> Bool {
        host == "localhost" || host == "127.0.0.1"
    }

    /// Why `text` is not acceptable, or the parsed URL.
    static func parse(_ text: String, allowHTTP: Bool) -> Result<WebhookURL, Refusal> {
        guard text.utf8.count <= maximumLength else { return .failure(.init("url must be at most \(maximumLength) bytes long.")) }
        guard !text.unicodeScalars.contains(where: { $0.properties.isWhitespace || $0.value < 0x20 || $0.value == 0x7f }),
            let components = URLComponents(string: text), let scheme = components.scheme?.lowercased(),
            let rawHost = components.host, !rawHost.isEmpty
        else {
            return .failure(.init("url must be an absolute https URL, such as https://erp.example.ec/comprobify."))
        }
        if components.user != nil || components.password != nil {
            return .failure(.init("url must not carry a user name or password."))
        }
        if components.fragment != nil {
            return .failure(.init("url must not have a fragment (#...)."))
        }
        var host = rawHost.lowercased().trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        // "localhost." is "localhost": a trailing dot only roots the name.
        while host.hasSuffix(".") { host.removeLast() }
        guard !host.isEmpty else { return .failure(.init("url must name a host.")) }
        // The host as decoded from its %-escapes must still be one: a NUL
        // (%00) would end it early for inet_pton and getaddrinfo, which would
        // judge a shorter host than the one kept.
        guard
            !host.unicodeScalars.contains(where: {
                $0.value <= 0x20 || (0x7F...0x9F).contains($0.value) || $0.properties.isWhitespace
                    || "%/\\@?#[]".unicodeScalars.contains($0)
            })
        else {
            return .failure(.init("url's host must be a name or an address, with no escaped control character, space or delimiter."))
        }
        // An internationalized name is looked up, and named to the server, in
        // its ASCII (xn--) form, which URLComponents decodes: Foundation's URL
        // gives that form back (getaddrinfo takes no other).
        if !host.unicodeScalars.allSatisfy(\.isASCII) {
            var ascii = (URL(string: text)?.host ?? "").lowercased()
            while ascii.hasSuffix(".") { ascii.removeLast() }
            guard !ascii.isEmpty, ascii.unicodeScalars.allSatisfy(\.isASCII), !ascii.contains("%") else {
                return .failure(.init("url's host must be written as it is or in its xn-- form, not %-escaped."))
            }
            host = ascii
        }
        let loopbackAllowed = allowHTTP && isAllowedLoopbackHost(host)
        // http names its host plainly, as the table's rule reads it
        // (webhook_endpoints_http_only_to_localhost): not `[127.0.0.1]`, not
        // `%6cocalhost`, which URLComponents decodes to the same host.
        let writtenPlainly = isAllowedLoopbackHost(
            String((components.percentEncodedHost ?? "").lowercased().reversed().drop { $0 == "." }.reversed()))
        switch scheme {
        case "https": break
        case "http" where loopbackAllowed && writtenPlainly: break
        case "http":
            return .failure(
                .init(
                    allowHTTP
                        ? "url must be https; http is allowed only for localhost and 127.0.0.1."
                        : "url must be https."))
        default:
            return .failure(.init("url must be https."))
        }
        if let address = IPAddress(host), !loopbackAllowed, let reason = address.forbiddenReason {
            return .failure(
                .init("url must not point at \(reason).")
            )
        }
        if !loopbackAllowed, host == "localhost" || host.hasSuffix(".localhost") {
            return .failure(.init("url must not point at a loopback address."))
        }
        let port = components.port ?? (scheme == "https" ? 443 : 80)
        guard (1...65535).contains(port) else { return .failure(.init("url has an invalid port.")) }
        // The scheme in lower case (it is case-insensitive: "HTTPS://" is
        // https), as the endpoint's row keeps it; the rest as written.
        let written = text.unicodeScalars.prefix { $0 != ":" }.count
        let stored = scheme + String(text.unicodeScalars.dropFirst(written))
        return .success(WebhookURL(text: stored, host: host, port: port, isHTTPS: scheme == "https"))
    }

    struct Refusal: Error, Sendable, Equatable {
        let message: String
        init(_ message: String) { self.message = message }
    }
}

/// An IPv4 or IPv6 address, parsed with inet_pton, and whether a webhook may
/// be sent to it.
struct IPAddress: Sendable, Equatable, CustomStringConvertible {
    /// 4 bytes for IPv4, 16 for IPv6.
    let bytes: [UInt8]

    init?(_ text: String) {
        // inet_pton reads up to a NUL: "8.8.8.8\0.internal" is no address.
        guard !text.utf8.contains(0) else { return nil }
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            bytes = withUnsafeBytes(of: &v4) { Array($0) }
            return
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 {
            bytes = withUnsafeBytes(of: &v6) { Array($0) }
            return
        }
        return nil
    }

    init(bytes: [UInt8]) {
        self.bytes = bytes
    }

    var description: String {
        if bytes.count == 4 { return bytes.map(String.init).joined(separator: ".") }
        return stride(from: 0, to: 16, by: 2).map { String(UInt16(bytes[$0]) << 8 | UInt16(bytes[$0 + 1]), radix: 16) }
            .joined(separator: ":")
    }

    var isLoopback: Bool {
        if bytes.count == 4 { return bytes[0] == 127 }
        if let mapped = ipv4Mapped { return mapped.isLoopback }
        return bytes == [UInt8](repeating: 0, count: 15) + [1]
    }

    /// Who is behind the address, for limits per client: an IPv4 address
    /// itself (the IPv4 inside an IPv4-mapped one), an IPv6 address's /64, the
    /// one network a single client is given (RFC 6177), written
    /// "2001:db8:1:2::/64". A client rotating through its /64 stays one client.
    var clientNetwork: String {
        if let mapped = ipv4Mapped { return mapped.description }
        guard bytes.count == 16 else { return description }
        let prefix = stride(from: 0, to: 8, by: 2).map { String(UInt16(bytes[$0]) << 8 | UInt16(bytes[$0 + 1]), radix: 16) }
        return prefix.joined(separator: ":") + "::/64"
    }

    /// For an IPv4-mapped (::ffff:a.b.c.d) or IPv4-compatible (::a.b.c.d) IPv6 address, the IPv4 inside.
    private var ipv4Mapped: IPAddress? {
        guard bytes.count == 16 else { return nil }
        let head = Array(bytes[0..<12])
        if head == [UInt8](repeating: 0, count: 10) + [0xff, 0xff] || (head == [UInt8](repeating: 0, count: 12) && bytes[12] != 0) {
            return IPAddress(bytes: Array(bytes[12...]))
        }
        return nil
    }

    /// Why a webhook may not go here ("a private address", ...), or nil when it may.
    var forbiddenReason: String? {
        if let mapped = ipv4Mapped { return mapped.forbiddenReason }
        if bytes.count == 4 {
            let (a, b) = (bytes[0], bytes[1])
            switch (a, b) {
            case (127, _): return "a loopback address"
            case (10, _), (172, 16...31), (192, 168): return "a private address"
            case (169, 254): return "a link-local or metadata address"
            case (100, 64...127): return "a shared (carrier-grade NAT) address"
            case (0, _): return "an unspecified address"
            case (224...255, _): return "a multicast or reserved address"
            case (192, 0) where bytes[2] == 0: return "a reserved address"
            case (198, 18...19): return "a reserved address"
            default: return nil
            }
        }
        if isLoopback { return "a loopback address" }
        if bytes.allSatisfy({ $0 == 0 }) { return "an unspecified address" }
        switch bytes[0] {
        case 0xfc, 0xfd: return "a private address"
        case 0xfe where bytes[1] & 0xc0 == 0x80: return "a link-local address"
        case 0xfe where bytes[1] & 0xc0 == 0xc0: return "a site-local address"
        case 0xff: return "a multicast address"
        default: break
        }
        // fd00:ec2::254, AWS's IPv6 metadata address, is inside fc00::/7 above.
        // Forms that carry an IPv4 address a gateway may reach: the embedded
        // address decides. NAT64's well-known prefix (64:ff9b::/96) and
        // IPv4-translated addresses (::ffff:0:a.b.c.d) carry it in the last four
        // bytes, 6to4 (2002::/16) in bytes 2–5, Teredo (2001::/32) its server in
        // bytes 4–7 and its client, inverted, in the last four.
        let head = Array(bytes[0..<12])
        if head == [0x00, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0] || head == [0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0] {
            return IPAddress(bytes: Array(bytes[12...])).forbiddenReason
        }
        if bytes[0] == 0x20, bytes[1] == 0x02 {
            return IPAddress(bytes: Array(bytes[2..<6])).forbiddenReason
        }
        if bytes[0..<4] == [0x20, 0x01, 0x00, 0x00] {
            return IPAddress(bytes: Array(bytes[4..<8])).forbiddenReason
                ?? IPAddress(bytes: bytes[12...].map { ~$0 }).forbiddenReason
        }
        // Local-use NAT64 (64:ff9b:1::/48, RFC 8215) only leads inside a network.
        if bytes[0..<6] == [0x00, 0x64, 0xff, 0x9b, 0x00, 0x01] { return "a local NAT64 address" }
        return nil
    }
}
