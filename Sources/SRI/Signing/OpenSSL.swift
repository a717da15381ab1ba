import COpenSSL
import Foundation

/// The few OpenSSL services signing needs, wrapped once.
enum OpenSSL {
    private static let providersLoaded: Bool = {
        // Loading any provider explicitly stops OpenSSL from loading the default
        // one implicitly, so both are named. The legacy provider brings RC2-40,
        // which PKCS#12 files from Ecuadorian providers still use; it may be
        // missing from a stripped-down system, and modern files load without it.
        _ = OSSL_PROVIDER_load(nil, "default")
        _ = OSSL_PROVIDER_load(nil, "legacy")
        ERR_clear_error()
        return true
    }()

    /// Loads OpenSSL 3's default and legacy providers, once per process.
    static func loadProviders() {
        _ = providersLoaded
    }

    /// A message digest over contiguous bytes.
    static func digest(_ bytes: UnsafeRawBufferPointer, _ algorithm: DigestAlgorithm) -> [UInt8] {
        var output = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        let status = EVP_Digest(bytes.baseAddress, bytes.count, &output, &length, algorithm.md, nil)
        precondition(status == 1, "OpenSSL EVP_Digest failed")
        output.removeSubrange(Int(length)...)
        return output
    }

    static func digest(_ bytes: [UInt8], _ algorithm: DigestAlgorithm) -> [UInt8] {
        bytes.withUnsafeBytes { digest($0, algorithm) }
    }

    /// The DER encoding of a certificate.
    static func der(of certificate: OpaquePointer) -> [UInt8]? {
        let length = i2d_X509(certificate, nil)
        guard length > 0 else { return nil }
        var bytes = [UInt8](repeating: 0, count: Int(length))
        let written = bytes.withUnsafeMutableBufferPointer { buffer -> Int32 in
            var cursor = buffer.baseAddress
            return i2d_X509(certificate, &cursor)
        }
        return written == length ? bytes : nil
    }

    static func certificate(fromDER der: [UInt8]) -> OpaquePointer? {
        der.withUnsafeBufferPointer { buffer in
            var cursor = buffer.baseAddress
            return d2i_X509(nil, &cursor, buffer.count)
        }
    }

    /// RFC 4514 text of a distinguished name: RFC 2253 order and escaping, with
    /// characters beyond ASCII kept as UTF-8 (RFC 4514 section 2.4) rather than
    /// hex-escaped.
    static func rfc4514(_ name: OpaquePointer) -> String {
        guard let bio = BIO_new(BIO_s_mem()) else { return "" }
        defer { BIO_free(bio) }
        // XN_FLAG_RFC2253 without ASN1_STRFLGS_ESC_MSB (Swift cannot import the
        // compound macro, so it is spelled out).
        let strings =
            UInt(ASN1_STRFLGS_ESC_2253) | UInt(ASN1_STRFLGS_ESC_CTRL) | UInt(ASN1_STRFLGS_UTF8_CONVERT)
            | UInt(ASN1_STRFLGS_DUMP_UNKNOWN) | UInt(ASN1_STRFLGS_DUMP_DER)
        let flags = strings | UInt(XN_FLAG_SEP_COMMA_PLUS) | UInt(XN_FLAG_DN_REV) | UInt(XN_FLAG_FN_SN) | UInt(XN_FLAG_DUMP_UNKNOWN_FIELDS)
        guard X509_NAME_print_ex(bio, name, 0, flags) >= 0 else { return "" }
        return readAll(bio)
    }

    static func readAll(_ bio: OpaquePointer) -> String {
        var pointer: UnsafeMutablePointer<CChar>?
        let length = BIO_ctrl(bio, BIO_CTRL_INFO, 0, &pointer)
        guard length > 0, let pointer else { return "" }
        return String(decoding: UnsafeRawBufferPointer(start: pointer, count: length), as: UTF8.self)
    }

    /// The certificate's serial number in decimal.
    /// The serial in decimal; empty when it is longer than 42 bytes (more
    /// than 101 digits: no certificate's, and the conversion to decimal is
    /// quadratic in the length).
    static func decimalSerial(_ certificate: OpaquePointer) -> String {
        guard let serial = X509_get0_serialNumber(certificate), ASN1_STRING_length(serial) <= 42,
            let number = ASN1_INTEGER_to_BN(serial, nil)
        else { return "" }
        defer { BN_free(number) }
        guard let text = BN_bn2dec(number) else { return "" }
        defer { CRYPTO_free(text, #fileID, #line) }
        return String(cString: text)
    }

    /// A certificate time; nil unless it is a time of the years 1 to 9999,
    /// the ones a timestamp of ours is written in (GeneralizedTime allows year
    /// 0, which neither ISO 8601 dates nor PostgreSQL know).
    static func date(_ time: UnsafePointer<ASN1_TIME>?) -> Date? {
        guard let time else { return nil }
        var parts = tm()
        guard ASN1_TIME_to_tm(time, &parts) == 1, (1...9999).contains(Int(parts.tm_year) + 1900) else { return nil }
        return Date(timeIntervalSince1970: TimeInterval(timegm(&parts)))
    }

    /// Throws away whatever OpenSSL queued on this thread, so a failure here
    /// never surfaces in someone else's error report.
    static func clearErrors() {
        ERR_clear_error()
    }
}

/// The digest algorithms the XAdES profiles use.
public enum DigestAlgorithm: Sendable {
    case sha1
    case sha256

    /// The algorithm's implementation, fetched from the default provider once
    /// per process. OpenSSL 3 looks a digest up by name on every use of the
    /// legacy `EVP_sha256()` handle (an "implicit fetch"); a fetched one skips
    /// that lookup, and is immutable and safe to share across threads.
    var md: OpaquePointer {
        switch self {
        case .sha1: return DigestAlgorithm.fetchedSHA1
        case .sha256: return DigestAlgorithm.fetchedSHA256
        }
    }

    /// The digest of `bytes` with this algorithm.
    public func digest(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
        OpenSSL.digest(bytes, self)
    }

    nonisolated(unsafe) private static let fetchedSHA1: OpaquePointer = fetch("SHA1") ?? EVP_sha1()
    nonisolated(unsafe) private static let fetchedSHA256: OpaquePointer = fetch("SHA256") ?? EVP_sha256()

    private static func fetch(_ name: String) -> OpaquePointer? {
        OpenSSL.loadProviders()
        let md = EVP_MD_fetch(nil, name, nil)
        if md == nil { OpenSSL.clearErrors() }
        return md
    }
}

/// Lowercase hexadecimal, the one encoder of the SRI library and the service.
public enum Hex {
    private static let digits = Array("0123456789abcdef".utf8)

    public static func encode(_ bytes: some Sequence<UInt8>) -> String {
        var out = [UInt8]()
        out.reserveCapacity(bytes.underestimatedCount * 2)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}

extension [UInt8] {
    /// Lowercase hexadecimal.
    var hex: String { Hex.encode(self) }
}
