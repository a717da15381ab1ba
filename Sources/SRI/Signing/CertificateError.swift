import Foundation

/// Why a PKCS#12 file (or a stored key) cannot become a signing identity. Each
/// case names the request field at fault (`p12` or `password`) and says why in
/// words a client can act on; none carries key material or the password.
public enum CertificateError: Error, Sendable, Equatable, CustomStringConvertible {
    case notBase64
    case notPKCS12
    case wrongPassword
    case noMatchingKey
    case notRSA
    case keyTooSmall(bits: Int)
    /// An RSA key over `SigningIdentity.maximumKeyBits`; `bits` is nil when
    /// the key was too long to be decoded at all.
    case keyTooLarge(bits: Int?)
    case expired(notAfter: Date)
    case notYetValid(notBefore: Date)
    /// The key parses and matches the certificate but cannot make a signature
    /// the certificate verifies.
    case keyCannotSign
    /// A serial number that is not a positive integer of at most 100 digits
    /// (RFC 5280 allows 20 octets, about 49 digits), as XAdES writes it.
    case unusableSerialNumber
    /// The file's MAC or one of its encryptions asks for more iterations of
    /// its password's key derivation than `PKCS12Limits.iterations`.
    case tooManyIterations(Int)
    /// The file asks for more key derivation in all than
    /// `PKCS12Limits.totalIterations`, or holds more than
    /// `PKCS12Limits.maximumItems` items.
    case tooMuchWork
    /// The RSA key's public exponent is even, below 3 or over 256 bits long.
    case weakExponent
    /// The RSA private key's values do not belong together as a two-prime
    /// key's do (`comprobify_rsa_key_is_sound`): such a key may still sign,
    /// many times slower.
    case unsoundKey
    /// An encryption whose key derivation is neither PBES1 nor PBES2 with
    /// PBKDF2, so its cost cannot be told before it is paid.
    case unsupportedEncryption
    /// A stored key and certificate that do not decode, or do not belong
    /// together, or a stored key past the bounds of a sound RSA key.
    case invalidStoredKey
    /// The file's only key pair is for encipherment: its certificate's key
    /// usage allows neither digitalSignature nor nonRepudiation.
    case notForSigning
    /// OpenSSL cannot write the private key as PKCS#8, the form it is stored in.
    case keyNotExportable
    /// An issuer name that is empty or holds what XML cannot carry (U+FFFE,
    /// U+FFFF): it is written into every signature as X509IssuerName.
    case unusableIssuerName
    /// A validity date outside the years 1 to 9999 (GeneralizedTime allows
    /// year 0), which no timestamp of the API or the database can hold.
    case unusableValidityDates

    /// The request field the error is about.
    public var field: String {
        self == .wrongPassword ? "password" : "p12"
    }

    /// One sentence for the client.
    public var message: String {
        switch self {
        case .notBase64: return "must be the PKCS#12 file encoded in base64"
        case .notPKCS12: return "is not a PKCS#12 (.p12) file"
        case .wrongPassword: return "does not open the PKCS#12 file"
        case .noMatchingKey: return "holds no private key matching a signing certificate"
        case .notRSA: return "the signing key must be an RSA key"
        case .keyTooSmall(let bits): return "the signing key has \(bits) bits; at least 2048 are required"
        case .keyTooLarge(let bits):
            let size = bits.map { "\($0)" } ?? "far more than \(SigningIdentity.maximumKeyBits)"
            return "the signing key has \(size) bits; at most \(SigningIdentity.maximumKeyBits) are accepted"
        case .expired(let notAfter): return "the certificate expired on \(CertificateError.format(notAfter))"
        case .notYetValid(let notBefore): return "the certificate is not valid before \(CertificateError.format(notBefore))"
        case .tooManyIterations(let count):
            return "the file asks for \(count) iterations of its password's key derivation; at most \(PKCS12Limits.iterations) are accepted"
        case .tooMuchWork:
            return "the file asks for more than \(PKCS12Limits.totalIterations) iterations of key derivation in all "
                + "(counted once for each chain its encryptions run: three for triple-DES), "
                + "or holds more than \(PKCS12Limits.maximumItems) items"
        case .weakExponent: return "the RSA key's public exponent must be odd, at least 3 and at most 256 bits long"
        case .unsoundKey:
            return "the RSA private key must be a standard two-prime key: its modulus the product of its two primes, "
                + "its CRT exponents and coefficient those of its private exponent, reduced"
        case .unsupportedEncryption:
            return "the file is encrypted with a password-based scheme other than PBES1 or PBES2 with PBKDF2"
        case .unusableSerialNumber: return "the certificate's serial number must be a positive integer of at most 100 digits"
        case .keyCannotSign: return "the private key cannot make a signature its certificate verifies"
        case .invalidStoredKey: return "the stored key does not match its certificate, or is not a sound RSA key"
        case .notForSigning:
            return "the certificate's key usage allows neither digitalSignature nor nonRepudiation: SRI refuses documents signed with it"
        case .keyNotExportable: return "the private key cannot be written as PKCS#8 to be stored"
        case .unusableIssuerName:
            return "the certificate's issuer name must be text without U+FFFE or U+FFFF: every signature carries it in XML, which cannot"
        case .unusableValidityDates: return "the certificate's validity dates must lie in the years 1 to 9999"
        }
    }

    public var description: String { "\(field): \(message)" }

    private static func format(_ date: Date) -> String {
        date.formatted(.iso8601)
    }
}
