import COpenSSL
import Foundation

/// A signature that verified.
public struct VerifiedSignature: Sendable, Equatable {
    /// The certificate embedded in `KeyInfo`, whose key made the signature.
    public let certificate: CertificateInfo
    public let algorithm: SignatureAlgorithm
    /// `SigningTime` as written, when present.
    public let signingTime: String?
}

/// Verifies enveloped XAdES-BES signatures of comprobantes, in both profiles.
///
/// It checks what can be checked from the document alone: every Reference's
/// digest (the comprobante through its `id`, the SignedProperties through their
/// `Id`), the SignatureValue with the embedded certificate's key, and that
/// `CertDigest` and the serial in `IssuerSerial` are that certificate's. It does
/// not judge the certificate's chain of trust.
public enum SignatureVerifier {
    public static func verify(_ document: [UInt8]) throws(VerificationError) -> VerifiedSignature {
        let tree: XMLTree
        do {
            tree = try XMLTree(parsing: document)
        } catch {
            throw .malformedXML(error)
        }
        OpenSSL.loadProviders()
        defer { OpenSSL.clearErrors() }
        let ds = XAdES.ds
        let root = tree.root
        guard let signature = root.firstChild("Signature", namespace: ds) else { throw .noSignature }
        let signedInfo = try child(signature, "SignedInfo", ds)

        let canonicalization = try child(signedInfo, "CanonicalizationMethod", ds).attribute("Algorithm") ?? ""
        guard canonicalization == XAdES.c14n || canonicalization == XAdES.c14nWithComments else {
            throw .unsupportedAlgorithm(canonicalization)
        }
        let method = try child(signedInfo, "SignatureMethod", ds).attribute("Algorithm") ?? ""
        guard let algorithm = XAdES.signatureAlgorithm(method) else { throw .unsupportedAlgorithm(method) }

        var contentSigned = false
        var signedProperties: XMLTree.Element?
        let references = signedInfo.children.filter { $0.localName == "Reference" && $0.namespaceURI == ds }
        // Each Reference walks and digests the document: a signature repeating
        // one valid Reference thousands of times would cost hours of CPU.
        // XAdES-BES as SRI takes it has three.
        guard references.count <= SignatureVerifier.maximumReferences else {
            throw .malformedSignature("more than \(SignatureVerifier.maximumReferences) References")
        }
        for reference in references {
            let (target, enveloped) = try check(reference, in: tree, signature: signature)
            if target == root && enveloped { contentSigned = true }
            if reference.attribute("Type") == XAdES.signedPropertiesType,
                target.localName == "SignedProperties", target.namespaceURI == XAdES.etsi
            {
                signedProperties = target
            }
        }
        guard contentSigned else { throw .contentNotSigned }
        guard let signedProperties else { throw .malformedSignature("no Reference to the SignedProperties") }

        let certificateText = try child(try child(try child(signature, "KeyInfo", ds), "X509Data", ds), "X509Certificate", ds).text
        guard let der = decode(certificateText), let x509 = OpenSSL.certificate(fromDER: [UInt8](der)) else {
            throw .badCertificate
        }
        defer { X509_free(x509) }
        guard let certificate = CertificateInfo(x509) else { throw .badCertificate }

        guard let signatureValue = decode(try child(signature, "SignatureValue", ds).text) else {
            throw .malformedSignature("SignatureValue is not base64")
        }
        let canonicalSignedInfo: [UInt8]
        do {
            canonicalSignedInfo = try tree.canonicalBytes(signedInfo, withComments: canonicalization == XAdES.c14nWithComments)
        } catch {
            throw .malformedXML(error)
        }
        guard verify(signatureValue, over: canonicalSignedInfo, key: X509_get0_pubkey(x509), algorithm.digest) else {
            throw .signatureMismatch
        }

        try checkSigningCertificate(signedProperties, certificate: certificate)
        let signingTime = signedProperties.firstDescendantOrSelf {
            $0.localName == "SigningTime" && $0.namespaceURI == XAdES.etsi
        }
        return VerifiedSignature(certificate: certificate, algorithm: algorithm, signingTime: signingTime?.text)
    }

    /// The most References a signature may carry (XAdES-BES as SRI takes it has three).
    static let maximumReferences = 8

    /// Checks one Reference's digest; returns the element it points at and
    /// whether the enveloped-signature transform applies.
    private static func check(
        _ reference: XMLTree.Element, in tree: XMLTree, signature: XMLTree.Element
    ) throws(VerificationError) -> (XMLTree.Element, Bool) {
        let ds = XAdES.ds
        let uri = reference.attribute("URI") ?? ""
        guard uri.hasPrefix("#"), uri.count > 1 else { throw .referenceNotFound(uri) }
        let id = String(uri.dropFirst())
        // An id must name exactly one element, whether as `id` or `Id`:
        // a second one would let a verifier and a reader see different content.
        let candidates = tree.elements(withAttribute: "id", value: id) + tree.elements(withAttribute: "Id", value: id)
        guard candidates.count == 1 else { throw .referenceNotFound(uri) }
        let target = candidates[0]

        var enveloped = false
        var withComments = false
        if let transforms = reference.firstChild("Transforms", namespace: ds) {
            for transform in transforms.children {
                let algorithm = transform.attribute("Algorithm") ?? ""
                switch algorithm {
                case XAdES.envelopedSignature: enveloped = true
                case XAdES.c14n: withComments = false
                case XAdES.c14nWithComments: withComments = true
                default: throw .unsupportedAlgorithm(algorithm)
                }
            }
        }
        let method = try child(reference, "DigestMethod", ds).attribute("Algorithm") ?? ""
        guard let digestAlgorithm = XAdES.digestAlgorithm(method) else { throw .unsupportedAlgorithm(method) }
        guard let expected = decode(try child(reference, "DigestValue", ds).text) else {
            throw .malformedSignature("a DigestValue is not base64")
        }
        let actual: [UInt8]
        do {
            if withComments {
                let bytes = try tree.canonicalBytes(target, excluding: enveloped ? signature : nil, withComments: true)
                actual = OpenSSL.digest(bytes, digestAlgorithm)
            } else {
                actual = try XAdES.digest(tree, target, excluding: enveloped ? signature : nil, digestAlgorithm)
            }
        } catch {
            throw .malformedXML(error)
        }
        guard actual == [UInt8](expected) else { throw .digestMismatch(reference: uri) }
        return (target, enveloped)
    }

    private static func checkSigningCertificate(
        _ signedProperties: XMLTree.Element, certificate: CertificateInfo
    ) throws(VerificationError) {
        let etsi = XAdES.etsi
        guard
            let cert = signedProperties.firstDescendantOrSelf(where: { $0.localName == "Cert" && $0.namespaceURI == etsi }),
            let certDigest = cert.firstChild("CertDigest", namespace: etsi)
        else { throw .malformedSignature("no SigningCertificate/Cert/CertDigest") }
        let method = try child(certDigest, "DigestMethod", XAdES.ds).attribute("Algorithm") ?? ""
        guard let algorithm = XAdES.digestAlgorithm(method) else { throw .unsupportedAlgorithm(method) }
        guard let expected = decode(try child(certDigest, "DigestValue", XAdES.ds).text),
            [UInt8](expected) == OpenSSL.digest(certificate.der, algorithm)
        else { throw .certificateDigestMismatch }
        if let serial = cert.firstChild("IssuerSerial", namespace: etsi)?.firstChild("X509SerialNumber", namespace: XAdES.ds) {
            guard serial.text.filter({ !$0.isWhitespace }) == certificate.serialNumber else {
                throw .certificateDigestMismatch
            }
        }
    }

    static func verify(_ signature: Data, over data: [UInt8], key: OpaquePointer?, _ algorithm: DigestAlgorithm) -> Bool {
        guard let key, EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA, let context = EVP_MD_CTX_new() else { return false }
        defer { EVP_MD_CTX_free(context) }
        guard EVP_DigestVerifyInit(context, nil, algorithm.md, nil, key) == 1 else { return false }
        let signatureBytes = [UInt8](signature)
        return EVP_DigestVerify(context, signatureBytes, signatureBytes.count, data, data.count) == 1
    }

    private static func child(_ parent: XMLTree.Element, _ name: String, _ namespace: String) throws(VerificationError) -> XMLTree.Element {
        guard let element = parent.firstChild(name, namespace: namespace) else { throw .malformedSignature("no \(name)") }
        return element
    }

    /// base64 as XML-DSig writes it: line breaks and spaces allowed.
    private static func decode(_ text: String) -> Data? {
        let compact = text.filter { !$0.isWhitespace }
        guard !compact.isEmpty else { return nil }
        return Data(base64Encoded: compact)
    }
}

/// Why a signature did not verify.
public enum VerificationError: Error, Sendable, Equatable, CustomStringConvertible {
    case malformedXML(XMLError)
    case noSignature
    case malformedSignature(String)
    case unsupportedAlgorithm(String)
    /// The URI does not name exactly one element of the document.
    case referenceNotFound(String)
    /// No Reference covers the root element with the enveloped-signature transform.
    case contentNotSigned
    case digestMismatch(reference: String)
    case badCertificate
    case signatureMismatch
    case certificateDigestMismatch

    public var description: String {
        switch self {
        case .malformedXML(let error): return "the document is not acceptable XML: \(error.message)"
        case .noSignature: return "the root element carries no ds:Signature"
        case .malformedSignature(let what): return "the signature is malformed: \(what)"
        case .unsupportedAlgorithm(let uri): return "unsupported algorithm \(uri)"
        case .referenceNotFound(let uri): return "the reference \(uri) does not name exactly one element"
        case .contentNotSigned: return "no reference covers the comprobante"
        case .digestMismatch(let uri): return "the digest of \(uri) does not match: the content changed"
        case .badCertificate: return "the embedded certificate cannot be read"
        case .signatureMismatch: return "the SignatureValue does not verify with the embedded certificate"
        case .certificateDigestMismatch: return "SigningCertificate does not describe the embedded certificate"
        }
    }
}
