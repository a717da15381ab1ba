import COpenSSL
import Foundation
import SRI

/// Seals private keys at rest with AES-256-GCM (OpenSSL EVP) under the
/// deployment's master key, `COMPROBIFY_SECRET_KEY`.
///
/// A sealed value is `version (1) | key id (4) | nonce (12) | ciphertext | tag (16)`.
/// The key id is the first 4 bytes of a SHA-256 over the master key, so the box
/// knows which key sealed a value: after a rotation the new key seals, and the
/// keys listed in `COMPROBIFY_SECRET_KEY_PREVIOUS` still open older values. The
/// associated data (the tenant and issuer ids) and the header are authenticated,
/// so a ciphertext copied to another row, or re-labelled, does not open.
///
/// Descriptions show key ids only, never key material.
public struct SecretBox: Sendable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public static let currentKeyVariable = "COMPROBIFY_SECRET_KEY"
    public static let previousKeysVariable = "COMPROBIFY_SECRET_KEY_PREVIOUS"

    static let version: UInt8 = 1
    static let keyIDLength = 4
    static let nonceLength = 12
    static let tagLength = 16
    static let headerLength = 1 + keyIDLength + nonceLength

    private let current: MasterKey
    private let previous: [MasterKey]

    /// `current` and each of `previous` are base64 of 32 bytes.
    public init(currentKey: String?, previousKeys: [String] = []) throws(SecretKeyError) {
        current = try MasterKey(parsing: currentKey, variable: SecretBox.currentKeyVariable)
        var keys: [MasterKey] = []
        for text in previousKeys {
            keys.append(try MasterKey(parsing: text, variable: SecretBox.previousKeysVariable))
        }
        previous = keys
    }

    /// Reads `COMPROBIFY_SECRET_KEY` and the optional comma-separated
    /// `COMPROBIFY_SECRET_KEY_PREVIOUS`.
    public init(environment: [String: String]) throws(SecretKeyError) {
        let previous = (environment[SecretBox.previousKeysVariable] ?? "")
            .split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        try self.init(currentKey: environment[SecretBox.currentKeyVariable], previousKeys: previous)
    }

    /// The id of the key that seals, as 8 hex characters.
    public var currentKeyID: String { current.idText }

    /// Whether the sealing key does not look drawn at random: 32 random bytes
    /// hold about 30 different values, and fewer than 16 (all zeros, a
    /// repeated pattern) is a key a person typed, which an attacker may guess.
    /// A warning at start, not a refusal: the key may already seal data.
    public var currentKeyLooksWeak: Bool { Set(current.bytes).count < 16 }

    public var description: String {
        "SecretBox(current: \(current.idText), previous: [\(previous.map(\.idText).joined(separator: ", "))])"
    }

    public var debugDescription: String { description }

    /// `dump` and debuggers see the key ids, not the keys.
    public var customMirror: Mirror {
        Mirror(self, children: ["currentKeyID": currentKeyID, "previousKeyIDs": previous.map(\.idText)])
    }

    /// The associated data binding a sealed key to its tenant and issuer.
    public static func associatedData(tenantID: Int64, issuerID: Int64) -> [UInt8] {
        Array("comprobify/issuer-key/v1 tenant=\(tenantID) issuer=\(issuerID)".utf8)
    }

    /// Encrypts under the current key with a fresh random nonce.
    public func seal(_ plaintext: [UInt8], associatedData: [UInt8]) -> [UInt8] {
        var nonce = [UInt8](repeating: 0, count: SecretBox.nonceLength)
        precondition(RAND_bytes(&nonce, Int32(nonce.count)) == 1, "OpenSSL RAND_bytes failed")
        let header = [SecretBox.version] + current.id + nonce
        guard let context = EVP_CIPHER_CTX_new() else { fatalError("OpenSSL could not allocate a cipher context") }
        defer { EVP_CIPHER_CTX_free(context) }
        var output = header
        output.reserveCapacity(header.count + plaintext.count + SecretBox.tagLength)
        var ciphertext = [UInt8](repeating: 0, count: plaintext.count + 16)
        var tag = [UInt8](repeating: 0, count: SecretBox.tagLength)
        var length: Int32 = 0
        var total = 0
        let ok = current.bytes.withUnsafeBufferPointer { key in
            EVP_EncryptInit_ex(context, EVP_aes_256_gcm(), nil, key.baseAddress, nonce) == 1
                && SecretBox.authenticate(context, header + associatedData, encrypting: true)
                && EVP_EncryptUpdate(context, &ciphertext, &length, plaintext, Int32(plaintext.count)) == 1
                && {
                    total = Int(length)
                    return ciphertext.withUnsafeMutableBufferPointer { buffer in
                        EVP_EncryptFinal_ex(context, buffer.baseAddress! + total, &length) == 1
                    }
                }()
                && EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_GCM_GET_TAG, Int32(SecretBox.tagLength), &tag) == 1
        }
        precondition(ok, "OpenSSL AES-256-GCM encryption failed")
        total += Int(length)
        output.append(contentsOf: ciphertext[0..<total])
        output.append(contentsOf: tag)
        return output
    }

    /// A sealed value opened and sealed again under the current key, with the
    /// same associated data; the plaintext is wiped before returning.
    public func resealed(_ sealed: [UInt8], associatedData: [UInt8]) throws(SecretBoxError) -> [UInt8] {
        var plaintext = try open(sealed, associatedData: associatedData)
        defer { plaintext.withUnsafeMutableBytes { _ = $0.initializeMemory(as: UInt8.self, repeating: 0) } }
        return seal(plaintext, associatedData: associatedData)
    }

    /// Decrypts a value sealed by `seal` under the current key or a previous one.
    public func open(_ sealed: [UInt8], associatedData: [UInt8]) throws(SecretBoxError) -> [UInt8] {
        guard sealed.count >= SecretBox.headerLength + SecretBox.tagLength, sealed[0] == SecretBox.version else {
            throw .malformed
        }
        let id = Array(sealed[1..<(1 + SecretBox.keyIDLength)])
        guard let key = ([current] + previous).first(where: { $0.id == id }) else {
            throw .unknownKey(id: Hex.encode(id))
        }
        let header = Array(sealed[0..<SecretBox.headerLength])
        let nonce = Array(header[(1 + SecretBox.keyIDLength)...])
        var ciphertext = Array(sealed[SecretBox.headerLength..<(sealed.count - SecretBox.tagLength)])
        var tag = Array(sealed[(sealed.count - SecretBox.tagLength)...])
        guard let context = EVP_CIPHER_CTX_new() else { fatalError("OpenSSL could not allocate a cipher context") }
        defer { EVP_CIPHER_CTX_free(context) }
        var plaintext = [UInt8](repeating: 0, count: ciphertext.count + 16)
        var length: Int32 = 0
        var total = 0
        let ok = key.bytes.withUnsafeBufferPointer { keyBytes in
            EVP_DecryptInit_ex(context, EVP_aes_256_gcm(), nil, keyBytes.baseAddress, nonce) == 1
                && SecretBox.authenticate(context, header + associatedData, encrypting: false)
                && EVP_DecryptUpdate(context, &plaintext, &length, &ciphertext, Int32(ciphertext.count)) == 1
                && EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_GCM_SET_TAG, Int32(SecretBox.tagLength), &tag) == 1
                && {
                    total = Int(length)
                    return plaintext.withUnsafeMutableBufferPointer { buffer in
                        EVP_DecryptFinal_ex(context, buffer.baseAddress! + total, &length) > 0
                    }
                }()
        }
        ERR_clear_error()
        guard ok else {
            plaintext.withUnsafeMutableBytes { _ = $0.initializeMemory(as: UInt8.self, repeating: 0) }
            throw .authenticationFailed
        }
        total += Int(length)
        plaintext.removeSubrange(total...)
        return plaintext
    }

    private static func authenticate(_ context: OpaquePointer, _ data: [UInt8], encrypting: Bool) -> Bool {
        var length: Int32 = 0
        return encrypting
            ? EVP_EncryptUpdate(context, nil, &length, data, Int32(data.count)) == 1
            : EVP_DecryptUpdate(context, nil, &length, data, Int32(data.count)) == 1
    }
}

/// One master key and its id. Never printed.
private struct MasterKey: Sendable {
    let bytes: [UInt8]
    let id: [UInt8]

    var idText: String { Hex.encode(id) }

    init(parsing text: String?, variable: String) throws(SecretKeyError) {
        guard let text = text?.trimmingCharacters(in: .whitespacesAndNewlines), !text.isEmpty else {
            throw .missing(variable: variable)
        }
        guard let data = Data(base64Encoded: text) else { throw .notBase64(variable: variable) }
        guard data.count == 32 else { throw .wrongLength(variable: variable, bytes: data.count) }
        bytes = [UInt8](data)
        var digest = [UInt8](repeating: 0, count: Int(SHA256_DIGEST_LENGTH))
        let labelled = Array("comprobify secret key id".utf8) + bytes
        _ = SHA256(labelled, labelled.count, &digest)
        id = Array(digest[0..<SecretBox.keyIDLength])
    }
}

/// Why a master key setting is unusable; one line naming the variable, never its value.
public enum SecretKeyError: Error, Sendable, Equatable, CustomStringConvertible {
    case missing(variable: String)
    case notBase64(variable: String)
    case wrongLength(variable: String, bytes: Int)

    public var description: String {
        switch self {
        case .missing(let variable):
            return "\(variable) is not set: generate one with `openssl rand -base64 32`"
        case .notBase64(let variable):
            return "\(variable) is not valid base64: generate one with `openssl rand -base64 32`"
        case .wrongLength(let variable, let bytes):
            return "\(variable) must be base64 of 32 bytes, it decodes to \(bytes): generate one with `openssl rand -base64 32`"
        }
    }
}

/// Why a sealed value does not open.
public enum SecretBoxError: Error, Sendable, Equatable, CustomStringConvertible {
    case malformed
    /// Sealed under a key that is neither the current nor a listed previous one.
    case unknownKey(id: String)
    /// Wrong associated data, a changed byte, or the wrong key.
    case authenticationFailed

    public var description: String {
        switch self {
        case .malformed: return "the sealed value is malformed"
        case .unknownKey(let id): return "the sealed value was made under key \(id), which is not configured"
        case .authenticationFailed: return "the sealed value does not open: it was altered or belongs elsewhere"
        }
    }
}
