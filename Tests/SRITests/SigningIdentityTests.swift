import COpenSSL
import Foundation
import TestSupport
import XCTest

@testable import SRI

final class SigningIdentityTests: XCTestCase {
    private static let pkiResult = Result { try TestPKI() }
    private var pki: TestPKI { get throws { try Self.pkiResult.get() } }

    private func load(_ file: [UInt8], password: String = TestPKI.password, now: Date = Date()) throws -> SigningIdentity {
        try SigningIdentity(pkcs12: file, password: password, now: now)
    }

    private func assertFails(
        _ expected: (CertificateError) -> Bool, field: String, file: [UInt8], password: String = TestPKI.password,
        line: UInt = #line
    ) {
        do {
            _ = try load(file, password: password)
            XCTFail("loaded", line: line)
        } catch let error as CertificateError {
            XCTAssertTrue(expected(error), "\(error)", line: line)
            XCTAssertEqual(error.field, field, line: line)
            XCTAssertFalse(error.message.isEmpty, line: line)
        } catch {
            XCTFail("\(error)", line: line)
        }
    }

    func testLoadsALeafAndDescribesItsCertificate() throws {
        let pki = try pki
        let name = try pki.leaf("José Núñez Signer")
        let identity = try load(try pki.pkcs12(name))
        let certificate = identity.certificate

        let subject = try pki.openssl(["x509", "-in", pki.path("\(name).pem"), "-noout", "-subject", "-nameopt", "RFC2253,-esc_msb"])
        let issuer = try pki.openssl(["x509", "-in", pki.path("\(name).pem"), "-noout", "-issuer", "-nameopt", "RFC2253,-esc_msb"])
        XCTAssertEqual("subject=" + certificate.subject, subject.trimmingCharacters(in: .newlines))
        XCTAssertEqual("issuer=" + certificate.issuer, issuer.trimmingCharacters(in: .newlines))
        XCTAssertEqual(certificate.subject, #"CN=José Núñez Signer,O=Ñandú & Hijos\, S.A.,C=EC"#)

        let serialHex = try pki.openssl(["x509", "-in", pki.path("\(name).pem"), "-noout", "-serial"])
        let serial = UInt64(serialHex.trimmingCharacters(in: .newlines).dropFirst("serial=".count), radix: 16)
        XCTAssertEqual(certificate.serialNumber, serial.map(String.init))

        let der = try pki.der(name)
        XCTAssertEqual(certificate.der, der)
        let fingerprint = try pki.openssl(["x509", "-in", pki.path("\(name).pem"), "-noout", "-fingerprint", "-sha256"])
        XCTAssertEqual(
            certificate.sha256,
            fingerprint.trimmingCharacters(in: .newlines).split(separator: "=")[1].replacingOccurrences(of: ":", with: "").lowercased())
        XCTAssertEqual(certificate.notBefore, Date(timeIntervalSince1970: 1_735_689_600))  // 2025-01-01T00:00:00Z
        XCTAssertEqual(certificate.notAfter, Date(timeIntervalSince1970: 2_240_611_199))  // 2040-12-31T23:59:59Z
    }

    func testLoadsFromBase64AndRejectsWhatIsNot() throws {
        let pki = try pki
        let file = try pki.pkcs12(try pki.leaf("Base64 Signer"))
        let text = Data(file).base64EncodedString(options: .lineLength76Characters)
        XCTAssertNoThrow(try SigningIdentity(pkcs12Base64: text, password: TestPKI.password, now: Date()))
        // Wrapped with lone line feeds, as `base64` and `openssl base64` write it,
        // with lone carriage returns, and with spaces and tabs as pasted.
        let lineFeeds = Data(file).base64EncodedString(options: [.lineLength64Characters, .endLineWithLineFeed])
        XCTAssertTrue(lineFeeds.contains("\n") && !lineFeeds.contains("\r"))
        let returns = Data(file).base64EncodedString(options: [.lineLength76Characters, .endLineWithCarriageReturn])
        let pasted = "  \t" + Data(file).base64EncodedString() + " \n"
        for wrapped in [lineFeeds, returns, pasted] {
            XCTAssertNoThrow(try SigningIdentity(pkcs12Base64: wrapped, password: TestPKI.password, now: Date()))
        }
        XCTAssertThrowsError(try SigningIdentity(pkcs12Base64: "not base64 at all!", password: "x", now: Date())) { error in
            XCTAssertEqual(error as? CertificateError, .notBase64)
            XCTAssertEqual((error as? CertificateError)?.field, "p12")
        }
    }

    func testRejectsFilesThatAreNotPKCS12() throws {
        let pki = try pki
        let name = try pki.leaf("PEM Not P12")
        assertFails({ $0 == .notPKCS12 }, field: "p12", file: try pki.der(name))
        assertFails({ $0 == .notPKCS12 }, field: "p12", file: Array("hello".utf8))
    }

    func testRejectsAWrongPassword() throws {
        let pki = try pki
        let file = try pki.pkcs12(try pki.leaf("Wrong Password"))
        assertFails({ $0 == .wrongPassword }, field: "password", file: file, password: "not the password")
        assertFails({ $0 == .wrongPassword }, field: "password", file: file, password: "")
    }

    func testRejectsAFileWithoutAKey() throws {
        let pki = try pki
        let file = try pki.pkcs12(try pki.leaf("No Key"), options: ["-nokeys"])
        assertFails({ $0 == .noMatchingKey }, field: "p12", file: file)
    }

    /// Each derivation is bounded, and so is the file's whole, counted in the
    /// hash computations it runs: keys each encrypted with 200,000 iterations
    /// of triple-DES's PKCS#12 PBE, which derives its key (two blocks of
    /// SHA-1) and its IV (one) in three chains of them. Two such keys state
    /// 400,000 iterations, under the million, and run 1.2 million: refused
    /// before the second is derived.
    func testEncryptedKeysCountTheHashComputationsTheirDerivationRuns() throws {
        XCTAssertLessThan(2 * PKCS12Limits.iterations, PKCS12Limits.totalIterations)
        XCTAssertGreaterThan(2 * 3 * PKCS12Limits.iterations, PKCS12Limits.totalIterations)
        assertFails({ $0 == .tooMuchWork }, field: "p12", file: try fileOfEncryptedKeys(2))
        // One such key is within the bound: refused only for want of its certificate.
        assertFails({ $0 == .noMatchingKey }, field: "p12", file: try fileOfEncryptedKeys(1))
    }

    /// Files as `openssl pkcs12 -export` writes them, counted as their
    /// derivations run: by default (PBES2: PBKDF2 with HMAC-SHA256, AES-256,
    /// a SHA-256 MAC) the MAC one chain and each encryption two, so 200,000
    /// iterations make 1,000,000 and open; with `-legacy` (RC2-40 over the
    /// certificates, two chains, triple-DES over the key, three, a SHA-1
    /// MAC) 150,000 make 900,000 and open, 200,000 make 1,200,000: refused.
    func testExportsAreCountedAsTheirDerivationsRun() throws {
        let pki = try pki
        let name = try pki.leaf("Counted")
        XCTAssertNoThrow(try load(try pki.pkcs12(name, options: ["-iter", "200000"])))
        XCTAssertNoThrow(try load(try pki.pkcs12(name, options: ["-legacy", "-iter", "150000"])))
        assertFails({ $0 == .tooMuchWork }, field: "p12", file: try pki.pkcs12(name, options: ["-legacy", "-iter", "200000"]))
    }

    /// A PKCS#12 file of `keys` copies of a leaf's key (no certificate), each
    /// encrypted with `PKCS12Limits.iterations` of triple-DES's PKCS#12 PBE.
    private func fileOfEncryptedKeys(_ keys: Int) throws -> [UInt8] {
        let pki = try pki
        let name = try pki.leaf("Many Keys")
        let pem = try [UInt8](Data(contentsOf: pki.url("\(name).key")))
        let key = try XCTUnwrap(
            pem.withUnsafeBytes { bytes -> OpaquePointer? in
                let bio = BIO_new_mem_buf(bytes.baseAddress, Int32(bytes.count))
                defer { BIO_free(bio) }
                return PEM_read_bio_PrivateKey(bio, nil, nil, nil)
            })
        defer { EVP_PKEY_free(key) }
        var bags: OpaquePointer?
        defer { OPENSSL_sk_pop_free(bags, { PKCS12_SAFEBAG_free(OpaquePointer($0)) }) }
        for _ in 0..<keys {
            XCTAssertNotNil(
                PKCS12_add_key(&bags, key, 0, Int32(PKCS12Limits.iterations), NID_pbe_WithSHA1And3_Key_TripleDES_CBC, TestPKI.password))
        }
        var safes: OpaquePointer?
        defer { OPENSSL_sk_pop_free(safes, { PKCS7_free($0?.assumingMemoryBound(to: PKCS7.self)) }) }
        XCTAssertNotNil(PKCS12_add_safe(&safes, bags, -1, 0, nil))
        let file = try XCTUnwrap(PKCS12_add_safes(safes, 0))
        defer { PKCS12_free(file) }
        XCTAssertEqual(PKCS12_set_mac(file, TestPKI.password, -1, nil, 0, 1, nil), 1)
        var out: UnsafeMutablePointer<UInt8>?
        let length = i2d_PKCS12(file, &out)
        let bytes = Array(UnsafeBufferPointer(start: out, count: Int(length)))
        CRYPTO_free(out, #fileID, #line)
        return bytes
    }

    /// More items than a certificate file holds (a chain of 300 certificates)
    /// is refused as too much work.
    func testAFileOfTooManyItemsIsRefused() throws {
        let pki = try pki
        let name = try pki.leaf("Many Certificates")
        let chain = try String(contentsOf: pki.url("ca.pem"), encoding: .utf8)
        try String(repeating: chain, count: PKCS12Limits.maximumItems + 44).write(
            to: pki.url("\(name)-chain.pem"), atomically: true, encoding: .utf8)
        let output = pki.path("\(name)-many.p12")
        try pki.openssl([
            "pkcs12", "-export", "-in", pki.path("\(name).pem"), "-inkey", pki.path("\(name).key"),
            "-certfile", pki.path("\(name)-chain.pem"), "-passout", "pass:\(TestPKI.password)", "-out", output,
        ])
        assertFails({ $0 == .tooMuchWork }, field: "p12", file: try [UInt8](Data(contentsOf: URL(fileURLWithPath: output))))
    }

    /// With a public exponent of 1 a "signature" is the padded digest
    /// itself, which anyone can make: refused before anything else is tried.
    func testRejectsAnRSAKeyWithAWeakExponent() throws {
        let pki = try pki
        let file = try pki.pkcs12(try pki.leaf("Exponent One", publicExponent: "01"))
        assertFails({ $0 == .weakExponent }, field: "p12", file: file)
    }

    /// Keys that make correct signatures, each many times slower than their
    /// size asks for: CRT values unreduced or wrong (OpenSSL then signs again
    /// with d), a private exponent far longer than the modulus, a 2048-bit
    /// public exponent. Each is refused when its file is opened. Restored
    /// from storage (a key stored before uploads were checked), those whose
    /// values are too long are refused; the wrong CRT value, of the right
    /// length, is used and signs what its certificate verifies, as the
    /// upload's probe would have found: only the pairwise check tells it.
    func testRefusesKeysCraftedToSignSlowly() throws {
        let pki = try pki
        let cases: [(TestPKI.SlowKey, CertificateError, restores: Bool)] = [
            (.unreducedCRTExponent, .unsoundKey, false), (.wrongCRTExponent, .unsoundKey, true),
            (.longPrivateExponent, .unsoundKey, false), (.longPublicExponent, .weakExponent, false),
        ]
        for (slowKey, expected, restores) in cases {
            let name = try pki.leaf("Slow \(slowKey)", slowKey: slowKey)
            assertFails({ $0 == expected }, field: "p12", file: try pki.pkcs12(name))
            try pki.openssl([
                "pkcs8", "-topk8", "-nocrypt", "-in", pki.path("\(name).key"), "-outform", "DER", "-out", pki.path("\(name).p8"),
            ])
            let stored = [UInt8](try Data(contentsOf: pki.url("\(name).p8")))
            guard restores else {
                XCTAssertThrowsError(try SigningIdentity(privateKeyPKCS8: stored, certificateDER: try pki.der(name)), "\(slowKey)") {
                    XCTAssertEqual($0 as? CertificateError, .invalidStoredKey)
                }
                continue
            }
            let restored = try SigningIdentity(privateKeyPKCS8: stored, certificateDER: try pki.der(name))
            let probe = Array("any bytes".utf8)
            let signature = try probe.withUnsafeBytes { try restored.sign($0, .sha256) }
            try Data(probe).write(to: pki.url("\(name).probe"))
            try Data(signature).write(to: pki.url("\(name).sig"))
            let verified = try pki.openssl([
                "dgst", "-sha256", "-verify", pki.path("\(name).pub"), "-signature", pki.path("\(name).sig"), pki.path("\(name).probe"),
            ])
            XCTAssertTrue(verified.contains("Verified OK"), "\(slowKey): \(verified)")
        }
    }

    /// The issuer's name is written into every signature (X509IssuerName):
    /// one holding U+FFFF, which XML cannot carry, is refused when the file is
    /// opened; the same certificate named in plain text opens, and its name
    /// beyond ASCII is kept as UTF-8.
    func testRefusesAnIssuerNameXMLCannotCarry() throws {
        let pki = try pki
        let unusable = try pki.selfSigned("Firma \u{FFFF} Rara")
        assertFails({ $0 == .unusableIssuerName }, field: "p12", file: try pki.pkcs12(unusable))
        let plain = try pki.selfSigned("Firma Ñandú")
        XCTAssertEqual(try load(try pki.pkcs12(plain)).certificate.issuer, "CN=Firma Ñandú,C=EC")
    }

    /// OpenSSL before 1.1.0 encoded each UTF-8 byte of a password as a
    /// character of its own: its export with "clave Ñ s3creta" is what OpenSSL
    /// now writes for "clave Ã\u{91} s3creta". It opens with the password the
    /// user typed, as with OpenSSL's own tool; a wrong password still does not.
    func testOpensAnOldOpenSSLExportOfAPasswordBeyondASCII() throws {
        let pki = try pki
        let name = try pki.leaf("Old Export")
        // "Ñ" is C3 91 in UTF-8: two characters, U+00C3 and U+0091, in the old encoding.
        XCTAssertEqual(TestPKI.password, "clave Ñ s3creta")
        let legacyForm = "clave \u{C3}\u{91} s3creta"
        let file = try pki.pkcs12(name, password: legacyForm)
        XCTAssertEqual(try load(file, password: TestPKI.password).certificate.subject, try load(try pki.pkcs12(name)).certificate.subject)
        assertFails({ $0 == .wrongPassword }, field: "password", file: file, password: "clave Ñ otra")
    }

    func testRejectsAnECKey() throws {
        let pki = try pki
        let file = try pki.pkcs12(try pki.leaf("EC Signer", key: "ec"))
        assertFails({ $0 == .notRSA }, field: "p12", file: file)
    }

    /// A key that matches its certificate but cannot sign (an even modulus,
    /// not the product of its primes) is refused when the file is opened, not
    /// found out when a document is signed, and so is it restored from storage.
    func testRejectsAKeyThatCannotSign() throws {
        let pki = try pki
        let name = try pki.leafWithKeyThatCannotSign("Even Modulus")
        let file = try pki.pkcs12(name)
        assertFails({ $0 == .unsoundKey }, field: "p12", file: file)
        try pki.openssl(["pkcs8", "-topk8", "-nocrypt", "-in", pki.path("\(name).key"), "-outform", "DER", "-out", pki.path("\(name).p8")])
        XCTAssertThrowsError(
            try SigningIdentity(privateKeyPKCS8: [UInt8](try Data(contentsOf: pki.url("\(name).p8"))), certificateDER: try pki.der(name))
        ) { error in
            XCTAssertEqual(error as? CertificateError, .invalidStoredKey)
        }
    }

    func testRejectsA1024BitKey() throws {
        let pki = try pki
        let file = try pki.pkcs12(try pki.leaf("Small Signer", key: "rsa:1024"))
        assertFails({ $0 == .keyTooSmall(bits: 1024) }, field: "p12", file: file)
    }

    /// A key too long to decode (over 8 KiB of PKCS#8) is left undecoded and
    /// told as too large, not as a key of another kind.
    func testRejectsAnOverlongKeyAsTooLarge() throws {
        let pki = try pki
        let file = try pki.pkcs12(try pki.leafWithOverlongKey("Overlong Signer"))
        assertFails({ $0 == .keyTooLarge(bits: nil) }, field: "p12", file: file)
    }

    func testRejectsExpiredAndNotYetValidCertificates() throws {
        let pki = try pki
        let expired = try pki.pkcs12(try pki.leaf("Expired", from: "20200101000000Z", until: "20210101000000Z"))
        assertFails({ if case .expired = $0 { return true } else { return false } }, field: "p12", file: expired)
        let future = try pki.pkcs12(try pki.leaf("Future", from: "20450101000000Z", until: "20460101000000Z"))
        assertFails({ if case .notYetValid = $0 { return true } else { return false } }, field: "p12", file: future)

        // Validity is judged against the `now` given.
        let file = try pki.pkcs12(try pki.leaf("Window"))
        XCTAssertNoThrow(try load(file, now: Date(timeIntervalSince1970: 1_800_000_000)))
        XCTAssertThrowsError(try load(file, now: Date(timeIntervalSince1970: 1_700_000_000))) { error in
            XCTAssertEqual(error as? CertificateError, .notYetValid(notBefore: Date(timeIntervalSince1970: 1_735_689_600)))
        }
        XCTAssertThrowsError(try load(file, now: Date(timeIntervalSince1970: 2_300_000_000))) { error in
            XCTAssertEqual(error as? CertificateError, .expired(notAfter: Date(timeIntervalSince1970: 2_240_611_199)))
        }
    }

    func testLoadsALegacyEncryptedFile() throws {
        let pki = try pki
        let name = try pki.leaf("Legacy Signer")
        let file = try pki.pkcs12(name, options: ["-legacy"])
        try Data(file).write(to: pki.url("legacy-check.p12"))
        let info = try pki.openssl([
            "pkcs12", "-info", "-legacy", "-noout", "-in", pki.path("legacy-check.p12"), "-passin", "pass:\(TestPKI.password)",
        ])
        XCTAssertTrue(info.contains("RC2"), info)
        XCTAssertTrue(info.contains("3DES") || info.contains("TripleDES"), info)
        XCTAssertEqual(try load(file).certificate.der, try pki.der(name))
    }

    func testPicksTheSigningPairNotTheFirstOne() throws {
        let pki = try pki
        let encipherment = try pki.leaf("Cifrado", profile: "encipherment")
        let signing = try pki.leaf("Firma", profile: "signing")
        for order in [[encipherment, signing], [signing, encipherment]] {
            let file = try pki.pkcs12(pairs: order)
            let identity = try load(file)
            XCTAssertEqual(identity.certificate.der, try pki.der(signing), "order \(order)")
        }
        // A file with the encipherment pair alone is refused: SRI refuses
        // documents signed with it (SRI.md), so it is told at the upload.
        assertFails({ $0 == .notForSigning }, field: "p12", file: try pki.pkcs12(pairs: [encipherment]))
    }

    /// Two pairs alike in everything the rules look at (usage, validity): the
    /// same one is picked whichever comes first in the file.
    func testPicksOneOfTwoEquallyFitPairsWhateverTheirOrder() throws {
        let pki = try pki
        let first = try pki.leaf("Firma gemela A")
        let second = try pki.leaf("Firma gemela B")
        let picked = try load(try pki.pkcs12(pairs: [first, second])).certificate.der
        XCTAssertEqual(try load(try pki.pkcs12(pairs: [second, first])).certificate.der, picked)
        XCTAssertTrue([try pki.der(first), try pki.der(second)].contains(picked))
    }

    /// A key with two certificates, a CA's that may sign and a leaf's for
    /// encipherment: the CA's pair is taken, as it is when it is the file's
    /// only pair; a key whose certificates none may sign is told so.
    func testACertifyingPairSignsWhenNoLeafMay() throws {
        let pki = try pki
        let certifying = try pki.leaf("Firma CA", profile: "ca_signing")
        let encipherment = try pki.leaf(certifying, reissuedAs: "encipherment")
        for order in [[certifying, encipherment], [encipherment, certifying]] {
            XCTAssertEqual(try load(try pki.pkcs12(pairs: order)).certificate.der, try pki.der(certifying), "order \(order)")
        }
        let alsoEncipherment = try pki.leaf(encipherment, reissuedAs: "encipherment")
        assertFails({ $0 == .notForSigning }, field: "p12", file: try pki.pkcs12(pairs: [encipherment, alsoEncipherment]))
    }

    /// With several signing pairs, one valid now wins over a renewal bundled
    /// before it starts (which expires later) and over an expired one.
    func testPicksThePairValidNowOverARenewalNotYetValid() throws {
        let pki = try pki
        let current = try pki.leaf("Firma vigente")
        let renewal = try pki.leaf("Firma renovada", from: "20410101000000Z", until: "20451231235959Z")
        let expired = try pki.leaf("Firma vencida", from: "20200101000000Z", until: "20241231235959Z")
        for order in [[renewal, current, expired], [expired, current, renewal], [current, renewal, expired]] {
            let identity = try load(try pki.pkcs12(pairs: order))
            XCTAssertEqual(identity.certificate.der, try pki.der(current), "order \(order)")
        }
        // None valid now: the latest to expire is chosen, and told as not yet valid.
        assertFails({ if case .notYetValid = $0 { true } else { false } }, field: "p12", file: try pki.pkcs12(pairs: [expired, renewal]))
    }

    func testRestoresFromStoredKeyAndKeepsKeyMaterialOutOfDescriptions() throws {
        let pki = try pki
        let name = try pki.leaf("Restored Signer")
        let identity = try load(try pki.pkcs12(name))
        let pkcs8 = try identity.privateKeyPKCS8()
        XCTAssertGreaterThan(pkcs8.count, 1000)

        // The PKCS#8 is the same key openssl holds.
        try pki.openssl(["pkcs8", "-topk8", "-nocrypt", "-in", pki.path("\(name).key"), "-outform", "DER", "-out", pki.path("\(name).p8")])
        XCTAssertEqual(pkcs8, try [UInt8](Data(contentsOf: pki.url("\(name).p8"))))

        let restored = try SigningIdentity(privateKeyPKCS8: pkcs8, certificateDER: identity.certificate.der)
        XCTAssertEqual(restored.certificate, identity.certificate)
        let signed = try XAdESSigner.sign(Fixtures.factura, identity: restored, signingTime: Fixtures.signingTime)
        XCTAssertEqual(try SignatureVerifier.verify(signed).certificate, identity.certificate)

        let other = try load(try pki.pkcs12(try pki.leaf("Other Signer")))
        XCTAssertThrowsError(try SigningIdentity(privateKeyPKCS8: pkcs8, certificateDER: other.certificate.der)) { error in
            XCTAssertEqual(error as? CertificateError, .invalidStoredKey)
        }
        XCTAssertThrowsError(try SigningIdentity(privateKeyPKCS8: [1, 2, 3], certificateDER: identity.certificate.der))

        let texts = [identity.description, identity.debugDescription, String(describing: identity), String(reflecting: identity)]
        let secrets = [Data(pkcs8).base64EncodedString(), pkcs8.hex, String(decoding: pkcs8, as: UTF8.self)]
        for text in texts {
            XCTAssertTrue(text.contains("Restored Signer"), text)
            for secret in secrets { XCTAssertFalse(text.contains(secret)) }
            XCTAssertLessThan(text.count, 300)
        }
    }
}
