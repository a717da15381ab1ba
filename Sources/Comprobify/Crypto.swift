import COpenSSL
import Foundation

/// SHA-256, CSPRNG bytes and constant-time comparison, from OpenSSL.
enum Crypto {
    static func sha256(_ bytes: some Collection<UInt8>) -> Data {
        var digest = [UInt8](repeating: 0, count: Int(SHA256_DIGEST_LENGTH))
        let input = Array(bytes)
        input.withUnsafeBufferPointer { buffer in
            _ = SHA256(buffer.baseAddress, buffer.count, &digest)
        }
        return Data(digest)
    }

    static func sha256(_ text: String) -> Data {
        sha256(Array(text.utf8))
    }

    /// `count` bytes from OpenSSL's CSPRNG. Traps if the generator fails: the
    /// service must never hand out a predictable token.
    static func randomBytes(_ count: Int) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        let status = bytes.withUnsafeMutableBufferPointer { RAND_bytes($0.baseAddress, Int32(count)) }
        precondition(status == 1, "OpenSSL RAND_bytes failed")
        return bytes
    }

    /// Equal contents, compared in time independent of where they differ.
    static func constantTimeEquals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        // Compare digests so the lengths are always equal and not revealed.
        let da = Array(sha256(a))
        let db = Array(sha256(b))
        return da.withUnsafeBufferPointer { pa in
            db.withUnsafeBufferPointer { pb in CRYPTO_memcmp(pa.baseAddress, pb.baseAddress, pa.count) == 0 }
        }
    }

    static func hex(_ bytes: some Sequence<UInt8>) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// Environments of keys, issuers, counters and documents.
public enum Environment: String, Sendable {
    case sandbox
    case production

    /// The digit the SRI access key uses (tipo de ambiente): 1 pruebas, 2 producción.
    var accessKeyDigit: Character { self == .sandbox ? "1" : "2" }
}

/// API key tokens: `cfy_test_` (sandbox) or `cfy_live_` (production) followed by
/// 64 lowercase hex characters (32 CSPRNG bytes). Only the SHA-256 digest is stored.
public struct APIToken: Sendable {
    public static let prefixLength = 14
    public let plaintext: String
    public let environment: Environment

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

    public var digest: Data { Crypto.sha256(plaintext) }
    public var prefix: String { String(plaintext.prefix(APIToken.prefixLength)) }
}
