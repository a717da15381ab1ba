import COpenSSL
import Foundation

/// The `Comprobify-Signature` header, in Stripe's scheme:
/// `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`, keyed with the
/// whole secret (`whsec_...`) as UTF-8 bytes; after a rotation, one more
/// `v1=` made with the replaced secret while it lasts (the current one first).
enum WebhookSignature {
    static let headerName = "Comprobify-Signature"
    static let secretPrefix = "whsec_"

    /// A new secret: `whsec_` and 64 hex digits (32 random bytes).
    static func generateSecret() -> String {
        secretPrefix + Crypto.hex(Crypto.randomBytes(32))
    }

    /// The header value for `body` sent at `timestamp` (unix seconds): a
    /// `v1=` per secret, in the order given.
    static func header(secrets: [[UInt8]], timestamp: Int64, body: [UInt8]) -> String {
        let message = Array("\(timestamp).".utf8) + body
        return (["t=\(timestamp)"] + secrets.map { "v1=" + Crypto.hex(hmacSHA256(key: $0, message: message)) }).joined(separator: ",")
    }

    static func hmacSHA256(key: [UInt8], message: [UInt8]) -> [UInt8] {
        var output = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        let result = key.withUnsafeBufferPointer { keyBytes in
            message.withUnsafeBufferPointer { messageBytes in
                HMAC(
                    EVP_sha256(), keyBytes.baseAddress, Int32(keyBytes.count), messageBytes.baseAddress, messageBytes.count,
                    &output, &length)
            }
        }
        precondition(result != nil && length == 32, "OpenSSL HMAC-SHA256 failed")
        return Array(output[0..<Int(length)])
    }
}

/// The event types an endpoint can subscribe to.
public enum WebhookEventType: String, Sendable, CaseIterable {
    case documentAuthorized = "document.authorized"
    case documentNotAuthorized = "document.not_authorized"
    case documentReturned = "document.returned"

    /// The event a final SRI status causes, if any.
    init?(finalStatus: String) {
        switch finalStatus {
        case "AUTHORIZED": self = .documentAuthorized
        case "NOT_AUTHORIZED": self = .documentNotAuthorized
        case "RETURNED": self = .documentReturned
        default: return nil
        }
    }
}
