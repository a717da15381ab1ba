import Foundation

/// API key tokens: `cfy_test_` (sandbox) or `cfy_live_` (production) followed by
/// 64 lowercase hex characters (32 CSPRNG bytes). Only the SHA-256 digest is stored.
public struct APIToken: Sendable {
    public static let prefixLength = 14
    public let plaintext: String
    public let environment: Environment
    /// SHA-256 of `plaintext`, what the database stores; computed once per token.
    public let digest: Data

    init(plaintext: String, environment: Environment) {
        self.plaintext = plaintext
        self.environment = environment
        self.digest = Crypto.sha256(plaintext)
    }

    public static func generate(_ environment: Environment) -> APIToken {
        let lead = environment == .sandbox ? "cfy_test_" : "cfy_live_"
        return APIToken(plaintext: lead + Crypto.hex(Crypto.randomBytes(32)), environment: environment)
    }

    /// Parses a presented token; nil unless it has exactly the token's shape.
    public static func parse(_ text: Substring) -> APIToken? {
        guard text.utf8.count == 73 else { return nil }
        let environment: Environment
        if text.hasPrefix("cfy_test_") {
            environment = .sandbox
        } else if text.hasPrefix("cfy_live_") {
            environment = .production
        } else {
            return nil
        }
        let hex = text.utf8.dropFirst(9)
        guard hex.allSatisfy({ (48...57).contains($0) || (97...102).contains($0) }) else { return nil }
        return APIToken(plaintext: String(text), environment: environment)
    }

    public var prefix: String { String(plaintext.prefix(APIToken.prefixLength)) }
}
