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
    /// Read as bytes in place: it runs for every authenticated request.
    public static func parse(_ text: Substring) -> APIToken? {
        guard text.utf8.count == 73 else { return nil }
        let environment =
            text.utf8.withContiguousStorageIfAvailable(environment(ofToken:))
            ?? Array(text.utf8).withUnsafeBufferPointer(environment(ofToken:))
        guard let environment else { return nil }
        return APIToken(plaintext: String(text), environment: environment)
    }

    /// The environment a token's 73 bytes name (`cfy_test_` or `cfy_live_`,
    /// then 64 lowercase hex digits), or nil.
    private static func environment(ofToken bytes: UnsafeBufferPointer<UInt8>) -> Environment? {
        guard bytes.count == 73 else { return nil }
        let environment: Environment
        if bytes[0..<9].elementsEqual("cfy_test_".utf8) {
            environment = .sandbox
        } else if bytes[0..<9].elementsEqual("cfy_live_".utf8) {
            environment = .production
        } else {
            return nil
        }
        for byte in bytes[9...] where !((48...57).contains(byte) || (97...102).contains(byte)) { return nil }
        return environment
    }

    public var prefix: String { String(plaintext.prefix(APIToken.prefixLength)) }
}
