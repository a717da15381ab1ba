import COpenSSL
import Foundation
import SRI

/// SHA-256, CSPRNG bytes and constant-time comparison, from OpenSSL.
enum Crypto {
    static func sha256(_ bytes: some Collection<UInt8>) -> Data {
        let input = Array(bytes)
        return Data(input.withUnsafeBytes { DigestAlgorithm.sha256.digest($0) })
    }

    /// The digest of the text's UTF-8, read in place (a token's, each request).
    static func sha256(_ text: String) -> Data {
        var text = text
        return Data(text.withUTF8 { DigestAlgorithm.sha256.digest(UnsafeRawBufferPointer($0)) })
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
        Hex.encode(bytes)
    }
}
