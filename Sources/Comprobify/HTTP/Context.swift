import Foundation
import Hummingbird
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// Facts about a request gathered while it runs, for its log line and metrics.
/// Shared by reference because contexts are values copied into handlers.
public final class RequestFacts: Sendable {
    private let state = NIOLockedValueBox<(tenantID: Int64?, keyID: Int64?, refused: Bool)>((nil, nil, false))

    public func authenticated(tenantID: Int64, keyID: Int64?) {
        state.withLockedValue { $0 = (tenantID, keyID, false) }
    }

    /// The database found no active key with the presented token's digest.
    public func refused() {
        state.withLockedValue { $0.refused = true }
    }

    public var tenantID: Int64? { state.withLockedValue { $0.tenantID } }
    public var keyID: Int64? { state.withLockedValue { $0.keyID } }
    public var wasRefused: Bool { state.withLockedValue { $0.refused } }
}

/// The context of every request: its id, the client's address and the bearer
/// credential it presented (only its shape is checked here, no database work).
public struct AppRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public var requestID = ""
    /// The connection's peer, formatted only when asked (sign-up's limit,
    /// the request's log line): `inet_ntop` and its formatting cost about a
    /// microsecond. Read when the request arrives: NIO forgets a channel's
    /// addresses once it closes, which a client could make happen before
    /// the route asks.
    public var peerAddress: String? { remoteAddress?.ipAddress }

    /// The client's address: the peer, or with TRUST_PROXY=1 the last
    /// X-Forwarded-For hop, the one the trusted proxy appended (whatever came
    /// before it, the client wrote); nil when there is neither (a Unix socket).
    func clientAddress(_ request: Request, trustProxy: Bool) -> String? {
        if trustProxy, let forwarded = request.headers[.forwardedFor] {
            let last = forwarded.split(separator: ",").last.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
            // At most 255 code points, as the schema counts them.
            if !last.isEmpty { return String(String.UnicodeScalarView(last.unicodeScalars.prefix(255))) }
        }
        return peerAddress
    }
    /// Whom the bytes of a body this request sends are counted for in
    /// `BodyBudget`: its connection's peer, as `ConnectionCounter` counts it.
    var bodyPeer: String { ConnectionCounter.client(of: remoteAddress) }
    fileprivate let remoteAddress: SocketAddress?
    /// The connection, to tell whether it is still there when the answer is
    /// ready (`isConnectionGone`).
    private let channel: any Channel
    /// The connection closed before the answer went out (the request timeout
    /// cut off a request still arriving): no one receives what is answered
    /// then. A client's half-close leaves it open: it may still read.
    var isConnectionGone: Bool { !channel.isActive }
    public let facts = RequestFacts()
    /// The token of `Authorization: Bearer <token>` when it has a token's shape.
    public var presentedToken: APIToken?
    /// The raw bearer value, for the admin routes and /metrics.
    public var bearer: Substring?
    /// The presented key is one the database already refused (`RefusedKeys`):
    /// a route that takes a key answers 401 without asking again.
    public var keyRefused = false

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.remoteAddress = source.channel.remoteAddress
        self.channel = source.channel
    }

    /// Bodies are read through `readJSONBody`, which enforces 1 MiB itself.
    public var maxUploadSize: Int { RequestBodyLimit.bytes }
}

enum RequestBodyLimit {
    static let bytes = 1 << 20
}

/// The context of routes that act for a tenant. It cannot be made without a
/// credential of the right shape, so a handler cannot forget to authenticate;
/// the credential itself is checked by the tenant transaction it must go through.
public struct TenantRequestContext: ChildRequestContext {
    public typealias ParentContext = AppRequestContext
    public var coreContext: CoreRequestContextStorage
    public let requestID: String
    public let facts: RequestFacts
    public let token: APIToken
    private let remoteAddress: SocketAddress?

    public init(context: AppRequestContext) throws {
        guard let token = context.presentedToken, !context.keyRefused else { throw APIError.unauthorized }
        self.coreContext = context.coreContext
        self.requestID = context.requestID
        self.facts = context.facts
        self.token = token
        self.remoteAddress = context.remoteAddress
    }

    /// As `AppRequestContext.bodyPeer`.
    var bodyPeer: String { ConnectionCounter.client(of: remoteAddress) }

    public var maxUploadSize: Int { RequestBodyLimit.bytes }
}

extension AppRequestContext {
    /// Whether the request's bearer is `token` (an operator's: the admin
    /// token, METRICS_TOKEN), compared in constant time.
    func presents(_ token: String) -> Bool {
        guard let bearer else { return false }
        return Crypto.constantTimeEquals(Array(bearer.utf8), Array(token.utf8))
    }
}
