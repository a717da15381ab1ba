import COpenSSL
import Foundation

/// What a client may know about a signing certificate.
public struct CertificateInfo: Sendable, Equatable {
    /// RFC 4514, e.g. `CN=Ana Pérez,O=Ñandú S.A.,C=EC`.
    public let subject: String
    public let issuer: String
    /// Decimal.
    public let serialNumber: String
    public let notBefore: Date
    public let notAfter: Date
    /// Lowercase hex SHA-256 of the DER.
    public let sha256: String
    /// The certificate, DER.
    public let der: [UInt8]

    init?(_ certificate: OpaquePointer) {
        guard let der = OpenSSL.der(of: certificate),
            let subjectName = X509_get_subject_name(certificate),
            let issuerName = X509_get_issuer_name(certificate),
            let notBefore = OpenSSL.date(X509_get0_notBefore(certificate)),
            let notAfter = OpenSSL.date(X509_get0_notAfter(certificate))
        else { return nil }
        self.subject = OpenSSL.rfc4514(subjectName)
        self.issuer = OpenSSL.rfc4514(issuerName)
        self.serialNumber = OpenSSL.decimalSerial(certificate)
        self.notBefore = notBefore
        self.notAfter = notAfter
        self.sha256 = OpenSSL.digest(der, .sha256).hex
        self.der = der
    }

    /// Throws `expired` or `notYetValid` unless `now` lies in the validity window.
    public func checkValidity(at now: Date) throws(CertificateError) {
        if now > notAfter { throw .expired(notAfter: notAfter) }
        if now < notBefore { throw .notYetValid(notBefore: notBefore) }
    }
}

/// An RSA private key and the certificate that goes with it, ready to sign.
///
/// Immutable once made; OpenSSL allows one key to sign from many threads at
/// once. Its descriptions name the certificate, never the key.
public final class SigningIdentity: @unchecked Sendable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    let key: OpaquePointer
    let x509: OpaquePointer
    public let certificate: CertificateInfo
    /// What the signer writes for every signature, computed once.
    let certificateBase64: String
    let certificateDigests: (sha1: String, sha256: String)

    private init(key: OpaquePointer, x509: OpaquePointer, certificate: CertificateInfo) {
        self.key = key
        self.x509 = x509
        self.certificate = certificate
        self.certificateBase64 = Data(certificate.der).base64EncodedString()
        self.certificateDigests = (
            Data(OpenSSL.digest(certificate.der, .sha1)).base64EncodedString(),
            Data(OpenSSL.digest(certificate.der, .sha256)).base64EncodedString()
        )
    }

    deinit {
        EVP_PKEY_free(key)
        X509_free(x509)
    }

    public var description: String {
        "SigningIdentity(subject: \(certificate.subject), serialNumber: \(certificate.serialNumber))"
    }

    public var debugDescription: String { description }

    public var customMirror: Mirror {
        Mirror(self, children: ["certificate": certificate], displayStyle: .class)
    }

    /// The largest RSA key accepted, in bits: the largest that certificate
    /// providers issue (most issue 2048). A 4096-bit signature costs about
    /// seven 2048-bit ones; each doubling beyond costs about eight times more.
    public static let maximumKeyBits = 4096

    /// What a base64 text may hold: its alphabet, padding, spaces, tabs and line breaks.
    private static let base64Bytes = Set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=".utf8 + [0x20, 0x09, 0x0A, 0x0D])

    /// Opens a PKCS#12 file given as base64 (whitespace allowed, as pasted).
    public convenience init(pkcs12Base64: String, password: String, now: Date) throws(CertificateError) {
        guard let bytes = Data(base64Encoded: pkcs12Base64, options: .ignoreUnknownCharacters), !bytes.isEmpty,
            // Bytes, not Characters: "\r\n" is one Character in Swift, and a
            // lone line feed (the wrapping of `base64` and `openssl base64`) is another.
            pkcs12Base64.utf8.allSatisfy({ SigningIdentity.base64Bytes.contains($0) })
        else { throw .notBase64 }
        try self.init(pkcs12: [UInt8](bytes), password: password, now: now)
    }

    /// Opens a PKCS#12 file and picks its signing pair: the certificate whose
    /// public key matches a private key in the file; when several match, the one
    /// that is not a CA and whose key usage allows digitalSignature or
    /// nonRepudiation. Then requires RSA of 2048 to 4096 bits and a certificate
    /// valid at `now`.
    public convenience init(pkcs12: [UInt8], password: String, now: Date) throws(CertificateError) {
        OpenSSL.loadProviders()
        defer { OpenSSL.clearErrors() }
        let contents = try PKCS12Contents(pkcs12, password: password)
        // The pair is borrowed from `contents`, which frees its objects when it
        // goes: our own references are taken while it surely lives.
        let (key, x509) = try withExtendedLifetime(contents) { () throws(CertificateError) in
            let pair = try contents.signingPair(now: now)
            EVP_PKEY_up_ref(pair.key)
            X509_up_ref(pair.certificate)
            return pair
        }
        var kept = false
        defer {
            if !kept {
                EVP_PKEY_free(key)
                X509_free(x509)
            }
        }
        guard OpenSSL.date(X509_get0_notBefore(x509)) != nil, OpenSSL.date(X509_get0_notAfter(x509)) != nil else {
            throw .unusableValidityDates
        }
        guard let info = CertificateInfo(x509) else { throw .notPKCS12 }
        // Written into every signature (X509IssuerName): OpenSSL escapes
        // control characters, not U+FFFE and U+FFFF, and gives no text at
        // all for a name it cannot print.
        guard !info.issuer.isEmpty, ComprobanteInput.isComprobanteText(info.issuer) else { throw .unusableIssuerName }
        guard (1...100).contains(info.serialNumber.utf8.count), info.serialNumber.utf8.allSatisfy({ (0x30...0x39).contains($0) }),
            info.serialNumber.utf8.contains(where: { $0 != 0x30 })
        else { throw .unusableSerialNumber }
        guard EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA else { throw .notRSA }
        let bits = Int(EVP_PKEY_get_bits(key))
        guard bits >= 2048 else { throw .keyTooSmall(bits: bits) }
        guard comprobify_rsa_exponent_is_sound(key) == 1 else { throw .weakExponent }
        // A private-key operation's cost grows with the cube of the size, and
        // OpenSSL bounds only public-key operations: a key of 100,000 bits
        // would hold a core for minutes in the probe below and in every
        // signature after it.
        guard bits <= SigningIdentity.maximumKeyBits else { throw .keyTooLarge(bits: bits) }
        // A key made to sign slowly still signs correctly: the probe below
        // would pass it, and every document after it would pay.
        guard comprobify_rsa_key_is_sound(key) == 1 else { throw .unsoundKey }
        try info.checkValidity(at: now)
        guard SigningIdentity.signsForItsCertificate(key: key, certificate: x509) else { throw .keyCannotSign }
        kept = true
        self.init(key: key, x509: x509, certificate: info)
    }

    /// An identity restored from storage: the private key as PKCS#8 DER (see
    /// ``privateKeyPKCS8()``) and the certificate's DER. Validity is not checked:
    /// the caller decides what `now` means for it.
    public convenience init(privateKeyPKCS8: [UInt8], certificateDER: [UInt8]) throws(CertificateError) {
        OpenSSL.loadProviders()
        defer { OpenSSL.clearErrors() }
        let info = privateKeyPKCS8.withUnsafeBufferPointer { buffer -> OpaquePointer? in
            var cursor = buffer.baseAddress
            return d2i_PKCS8_PRIV_KEY_INFO(nil, &cursor, buffer.count)
        }
        guard let info else { throw .invalidStoredKey }
        let key = EVP_PKCS82PKEY(info)
        PKCS8_PRIV_KEY_INFO_free(info)
        guard let key else { throw .invalidStoredKey }
        guard let x509 = OpenSSL.certificate(fromDER: certificateDER) else {
            EVP_PKEY_free(key)
            throw .invalidStoredKey
        }
        guard EVP_PKEY_eq(X509_get0_pubkey(x509), key) == 1, let certificate = CertificateInfo(x509) else {
            EVP_PKEY_free(key)
            X509_free(x509)
            throw .invalidStoredKey
        }
        guard EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA else {
            EVP_PKEY_free(key)
            X509_free(x509)
            throw .notRSA
        }
        // A key stored before uploads were checked for soundness may still
        // be one made to sign slowly: not used (the cheap half of the check).
        guard comprobify_rsa_exponent_is_sound(key) == 1, comprobify_rsa_key_is_bounded(key) == 1 else {
            EVP_PKEY_free(key)
            X509_free(x509)
            throw .invalidStoredKey
        }
        self.init(key: key, x509: x509, certificate: certificate)
    }

    /// The private key as unencrypted PKCS#8 DER, to be sealed before it is
    /// stored. Throws `keyNotExportable` when OpenSSL cannot write it (nothing
    /// is stored then).
    public func privateKeyPKCS8() throws(CertificateError) -> [UInt8] {
        defer { OpenSSL.clearErrors() }
        guard let info = EVP_PKEY2PKCS8(key) else { throw .keyNotExportable }
        defer { PKCS8_PRIV_KEY_INFO_free(info) }
        let length = i2d_PKCS8_PRIV_KEY_INFO(info, nil)
        guard length > 0 else { throw .keyNotExportable }
        var bytes = [UInt8](repeating: 0, count: Int(length))
        let written = bytes.withUnsafeMutableBufferPointer { buffer in
            var cursor = buffer.baseAddress
            return i2d_PKCS8_PRIV_KEY_INFO(info, &cursor)
        }
        guard written == length else {
            bytes.withUnsafeMutableBytes { _ = $0.initializeMemory(as: UInt8.self, repeating: 0) }
            throw .keyNotExportable
        }
        return bytes
    }

    /// RSA signature (PKCS#1 v1.5) of `data` with the digest `algorithm`.
    /// Throws `keyCannotSign` when OpenSSL refuses: a key can parse and match
    /// its certificate's public key and still be unable to sign (an even
    /// modulus, say); an uploaded one is refused before it is stored.
    func sign(_ data: UnsafeRawBufferPointer, _ algorithm: DigestAlgorithm) throws(SigningError) -> [UInt8] {
        try SigningIdentity.sign(data, algorithm, key: key)
    }

    private static func sign(_ data: UnsafeRawBufferPointer, _ algorithm: DigestAlgorithm, key: OpaquePointer) throws(SigningError)
        -> [UInt8]
    {
        guard let context = EVP_MD_CTX_new() else { throw .keyCannotSign }
        defer { EVP_MD_CTX_free(context) }
        var signature = [UInt8](repeating: 0, count: Int(EVP_PKEY_get_size(key)))
        var length = signature.count
        guard EVP_DigestSignInit(context, nil, algorithm.md, nil, key) == 1,
            EVP_DigestSign(context, &signature, &length, data.baseAddress, data.count) == 1
        else {
            OpenSSL.clearErrors()
            throw .keyCannotSign
        }
        if length < signature.count { signature.removeSubrange(length...) }
        return signature
    }

    /// Whether `key` signs, and its certificate's public key verifies what it
    /// signed: what an uploaded pair must do before it is stored.
    private static func signsForItsCertificate(key: OpaquePointer, certificate: OpaquePointer) -> Bool {
        let probe = Array("comprobify: a signature the certificate verifies".utf8)
        guard let signature = try? probe.withUnsafeBytes({ try sign($0, .sha256, key: key) }) else {
            return false
        }
        return SignatureVerifier.verify(Data(signature), over: probe, key: X509_get0_pubkey(certificate), .sha256)
    }
}

/// How much work a PKCS#12 file may ask for. Its MAC and each of its
/// encryptions derive a key from the password with as many iterations as the
/// file states, all before the password is known to be right; a file that
/// asked for two billion would hold a core for many minutes. Files exported
/// by OpenSSL, Windows and Java ask for 2,000 to 10,000.
///
/// Each derivation is bounded (`iterations`), and so is the whole file's:
/// `totalIterations` over its MAC and every encryption, each counted as the
/// hash computations it runs (`comprobify_pbe_chains`: three chains of its
/// iterations for triple-DES's PKCS#12 PBE, which derives its key and IV
/// apart; two for PBKDF2 with HMAC-SHA256 and AES-256), and `maximumItems`
/// bags, keys and certificates in all, checked before each derivation, so
/// that a file of thousands of encrypted keys asks for no more than a few.
public enum PKCS12Limits {
    public static let iterations = 200_000
    public static let totalIterations = 1_000_000
    public static let maximumItems = 256
    /// The longest private key accepted, in bytes of PKCS#8 DER: a 4096-bit
    /// RSA key takes about 2,400.
    static let maximumKeyLength = 8_192

    static func check(_ count: Int) throws(CertificateError) {
        guard count >= 1 else { throw .unsupportedEncryption }
        guard count <= iterations else { throw .tooManyIterations(count) }
    }
}

/// Every key and certificate of a PKCS#12 file, walked bag by bag (PKCS12_parse
/// would keep only the first key).
private final class PKCS12Contents {
    private(set) var keys: [OpaquePointer] = []
    private(set) var certificates: [OpaquePointer] = []
    /// A key that is not RSA was left undecoded.
    private var skippedKeys = false
    /// An RSA key too long to be decoded was found (and left undecoded).
    private var skippedLongKeys = false
    private var iterationsLeft = PKCS12Limits.totalIterations
    private var itemsLeft = PKCS12Limits.maximumItems

    /// Checks a derivation of `count` iterations against its own bound, and
    /// its work (`count` in each of its `chains`) against what is left of the
    /// file's, and counts it.
    private func spend(_ count: Int, chains: Int = 1) throws(CertificateError) {
        try PKCS12Limits.check(count)
        let (work, overflow) = count.multipliedReportingOverflow(by: max(chains, 1))
        guard !overflow, work <= iterationsLeft else { throw .tooMuchWork }
        iterationsLeft -= work
    }

    /// `spend` for a decryption with `algorithm`.
    private func spend(decrypting algorithm: UnsafePointer<X509_ALGOR>?) throws(CertificateError) {
        try spend(comprobify_pbe_iterations(algorithm), chains: comprobify_pbe_chains(algorithm))
    }

    private func countItem() throws(CertificateError) {
        guard itemsLeft > 0 else { throw .tooMuchWork }
        itemsLeft -= 1
    }

    init(_ bytes: [UInt8], password: String) throws(CertificateError) {
        let file = bytes.withUnsafeBufferPointer { buffer -> OpaquePointer? in
            var cursor = buffer.baseAddress
            return d2i_PKCS12(nil, &cursor, buffer.count)
        }
        guard let file else { throw .notPKCS12 }
        defer { PKCS12_free(file) }
        let macIterations = PKCS12_mac_present(file) == 1 ? comprobify_pkcs12_mac_iterations(file) : 0
        if PKCS12_mac_present(file) == 1 { try PKCS12Limits.check(macIterations) }
        // An empty password may have been encoded as absent; try both forms.
        // OpenSSL before 1.1.0 encoded a password's UTF-8 bytes each as a
        // character of its own: a file it exported with a password beyond
        // ASCII opens with that form (as OpenSSL's own tool retries it).
        var candidates: [String?] = [password]
        if password.isEmpty { candidates.append(nil) }
        if !password.utf8.allSatisfy({ $0 < 0x80 }) {
            candidates.append(String(String.UnicodeScalarView(password.utf8.map { Unicode.Scalar($0) })))
        }
        var opened: String?? = .none
        if PKCS12_mac_present(file) == 1 {
            for candidate in candidates {
                // Each try derives the MAC's key again.
                try spend(macIterations)
                if PKCS12_verify_mac(file, candidate, candidate == nil ? 0 : -1) == 1 {
                    opened = .some(candidate)
                    break
                }
            }
            guard case .some(let pass) = opened else { throw .wrongPassword }
            try read(file, pass)
        } else {
            try read(file, password)
        }
    }

    deinit {
        keys.forEach { EVP_PKEY_free($0) }
        certificates.forEach { X509_free($0) }
    }

    private func read(_ file: OpaquePointer, _ password: String?) throws(CertificateError) {
        guard let safes = PKCS12_unpack_authsafes(file) else { throw .notPKCS12 }
        defer { OPENSSL_sk_pop_free(safes, { PKCS7_free($0?.assumingMemoryBound(to: PKCS7.self)) }) }
        for index in 0..<OPENSSL_sk_num(safes) {
            guard let safe = OPENSSL_sk_value(safes, index)?.assumingMemoryBound(to: PKCS7.self) else { continue }
            try countItem()
            let bags: OpaquePointer?
            switch OBJ_obj2nid(safe.pointee.type) {
            case NID_pkcs7_data: bags = PKCS12_unpack_p7data(safe)
            case NID_pkcs7_encrypted:
                try spend(decrypting: comprobify_pkcs7_encryption(safe))
                bags = PKCS12_unpack_p7encdata(safe, password, password == nil ? 0 : -1)
            default: continue
            }
            // Without a MAC, a failed decryption is the only sign of a wrong password.
            guard let bags else { throw PKCS12_mac_present(file) == 1 ? .notPKCS12 : .wrongPassword }
            defer { OPENSSL_sk_pop_free(bags, { PKCS12_SAFEBAG_free(OpaquePointer($0)) }) }
            try collect(bags, password)
        }
    }

    private func collect(_ bags: OpaquePointer, _ password: String?) throws(CertificateError) {
        for index in 0..<OPENSSL_sk_num(bags) {
            guard let raw = OPENSSL_sk_value(bags, index) else { continue }
            let bag = OpaquePointer(raw)
            try countItem()
            switch PKCS12_SAFEBAG_get_nid(bag) {
            case NID_keyBag:
                if let info = PKCS12_SAFEBAG_get0_p8inf(bag) { decode(info) }
            case NID_pkcs8ShroudedKeyBag:
                try spend(decrypting: comprobify_shrouded_key_encryption(bag))
                guard let info = PKCS12_decrypt_skey(bag, password, password == nil ? 0 : -1) else { throw .wrongPassword }
                decode(info)
                PKCS8_PRIV_KEY_INFO_free(info)
            case NID_certBag:
                if PKCS12_SAFEBAG_get_bag_nid(bag) == NID_x509Certificate, let certificate = PKCS12_SAFEBAG_get1_cert(bag) {
                    certificates.append(certificate)
                }
            case NID_safeContentsBag:
                if let nested = PKCS12_SAFEBAG_get0_safes(bag) { try collect(nested, password) }
            default:
                continue
            }
        }
    }

    /// Keeps a PKCS#8 key when it is RSA of a plausible length; others are
    /// not decoded (see `comprobify_pkcs8_rsa_kind`), only noted.
    private func decode(_ info: OpaquePointer) {
        switch comprobify_pkcs8_rsa_kind(info, Int32(PKCS12Limits.maximumKeyLength)) {
        case 1: if let key = EVP_PKCS82PKEY(info) { keys.append(key) }
        case 2: skippedLongKeys = true
        default: skippedKeys = true
        }
    }

    /// The pair to sign with, by the rules, never by position. Borrowed: the
    /// caller takes its own references.
    func signingPair(now: Date) throws(CertificateError) -> (key: OpaquePointer, certificate: OpaquePointer) {
        var pairs: [(key: OpaquePointer, certificate: OpaquePointer)] = []
        for certificate in certificates {
            guard let publicKey = X509_get0_pubkey(certificate) else { continue }
            if let key = keys.first(where: { EVP_PKEY_eq(publicKey, $0) == 1 }) { pairs.append((key, certificate)) }
        }
        let signs = UInt32(KU_DIGITAL_SIGNATURE | KU_NON_REPUDIATION)
        if pairs.count == 1 {
            // The only pair, a CA's included (self-signed test certificates
            // are), unless its key usage is for encipherment only: SRI refuses
            // documents signed with such a key, so the upload is refused now.
            guard X509_get_key_usage(pairs[0].certificate) & signs != 0 else { throw .notForSigning }
            return pairs[0]
        }
        // The pairs fit to sign: not a CA's, with a key usage for signing;
        // when there is none such, a CA's that may sign, as the only pair of
        // a file would be taken.
        var signing = pairs.filter { pair in
            X509_check_ca(pair.certificate) == 0 && X509_get_key_usage(pair.certificate) & signs != 0
        }
        if signing.isEmpty { signing = pairs.filter { X509_get_key_usage($0.certificate) & signs != 0 } }
        // Several equally fit pairs: prefer one valid at `now` (a renewal
        // bundled before it starts, or an expired one, never wins over a
        // current one), then the one whose usage names both purposes, then the
        // latest to expire, then the latest issued, then by X509_cmp (the
        // certificates' digests): the file's order never decides.
        func validNow(_ certificate: OpaquePointer) -> Bool {
            guard let start = OpenSSL.date(X509_get0_notBefore(certificate)),
                let end = OpenSSL.date(X509_get0_notAfter(certificate))
            else { return false }
            return start <= now && now <= end
        }
        let best = signing.max { a, b in
            let (aValid, bValid) = (validNow(a.certificate), validNow(b.certificate))
            if aValid != bValid { return !aValid }
            let aBoth = X509_get_key_usage(a.certificate) & signs == signs
            let bBoth = X509_get_key_usage(b.certificate) & signs == signs
            if aBoth != bBoth { return !aBoth }
            let aEnd = OpenSSL.date(X509_get0_notAfter(a.certificate)) ?? .distantPast
            let bEnd = OpenSSL.date(X509_get0_notAfter(b.certificate)) ?? .distantPast
            if aEnd != bEnd { return aEnd < bEnd }
            let aStart = OpenSSL.date(X509_get0_notBefore(a.certificate)) ?? .distantPast
            let bStart = OpenSSL.date(X509_get0_notBefore(b.certificate)) ?? .distantPast
            if aStart != bStart { return aStart < bStart }
            return X509_cmp(a.certificate, b.certificate) < 0
        }
        // A file whose only keys are of another kind (EC, DSA) is told so, and
        // one whose only keys are RSA keys too long to decode (their PKCS#8
        // alone is over 8 KiB, a 4096-bit key's about 2.4) that they are too large.
        guard let best else {
            // Pairs, but none whose key usage allows signing.
            guard pairs.isEmpty else { throw .notForSigning }
            // An RSA key of a usable size that matches no certificate is told so first.
            guard keys.isEmpty else { throw .noMatchingKey }
            if skippedLongKeys { throw .keyTooLarge(bits: nil) }
            throw skippedKeys ? .notRSA : .noMatchingKey
        }
        return best
    }
}
