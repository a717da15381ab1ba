import Foundation

/// Signs comprobantes XAdES-BES, enveloped, in the profile SRI accepts.
///
/// The Signature subtree is built in the document first; then each digest is
/// taken over libxml2's inclusive C14N of its element where it stands, so the
/// namespaces in scope are exactly those a verifier sees.
public enum XAdESSigner {
    /// Ecuador's offset from UTC (America/Guayaquil keeps no daylight saving time).
    public static let ecuadorUTCOffset = ComprobanteDate.ecuadorUTCOffset

    /// The comprobante (root with `id="comprobante"`), signed: `ds:Signature` is
    /// appended as the root's last child. `utcOffset` (seconds) is how
    /// `signingTime` is written in `SigningTime`.
    public static func sign(
        _ comprobante: [UInt8], identity: SigningIdentity, algorithm: SignatureAlgorithm = .rsaSHA256,
        signingTime: Date, utcOffset: Int = ecuadorUTCOffset
    ) throws(SigningError) -> [UInt8] {
        let tree: XMLTree
        do {
            tree = try XMLTree(parsing: comprobante)
        } catch {
            throw .malformedXML(error)
        }
        try sign(tree, identity: identity, algorithm: algorithm, signingTime: signingTime, utcOffset: utcOffset)
        return tree.serialized()
    }

    /// Signs a tree in place (for callers that built it and will serialize it).
    public static func sign(
        _ tree: XMLTree, identity: SigningIdentity, algorithm: SignatureAlgorithm = .rsaSHA256,
        signingTime: Date, utcOffset: Int = ecuadorUTCOffset
    ) throws(SigningError) {
        let root = tree.root
        guard root.attribute("id") == "comprobante" else { throw .notAComprobante }
        guard root.firstChild("Signature", namespace: XAdES.ds) == nil else { throw .alreadySigned }
        let ids = Identifiers()
        let ds = XAdES.ds
        let etsi = XAdES.etsi
        let digestMethod = algorithm.digestMethodURI

        let signature = root.addChild("Signature", namespace: ds, prefix: "ds")
        signature.declareNamespace(prefix: "etsi", uri: etsi)
        signature.setAttribute("Id", ids.signature)

        let signedInfo = signature.addChild("SignedInfo", namespace: ds)
        signedInfo.setAttribute("Id", ids.signedInfo)
        signedInfo.addChild("CanonicalizationMethod", namespace: ds).setAttribute("Algorithm", XAdES.c14n)
        signedInfo.addChild("SignatureMethod", namespace: ds).setAttribute("Algorithm", algorithm.signatureMethodURI)

        let contentReference = signedInfo.addChild("Reference", namespace: ds)
        contentReference.setAttribute("Id", ids.contentReference)
        contentReference.setAttribute("URI", "#comprobante")
        contentReference.addChild("Transforms", namespace: ds)
            .addChild("Transform", namespace: ds).setAttribute("Algorithm", XAdES.envelopedSignature)
        contentReference.addChild("DigestMethod", namespace: ds).setAttribute("Algorithm", digestMethod)
        let contentDigest = contentReference.addChild("DigestValue", namespace: ds)

        let propertiesReference = signedInfo.addChild("Reference", namespace: ds)
        propertiesReference.setAttribute("Id", ids.propertiesReference)
        propertiesReference.setAttribute("Type", XAdES.signedPropertiesType)
        propertiesReference.setAttribute("URI", "#" + ids.signedProperties)
        propertiesReference.addChild("DigestMethod", namespace: ds).setAttribute("Algorithm", digestMethod)
        let propertiesDigest = propertiesReference.addChild("DigestValue", namespace: ds)

        let signatureValue = signature.addChild("SignatureValue", namespace: ds)
        signatureValue.setAttribute("Id", ids.signatureValue)

        let keyInfo = signature.addChild("KeyInfo", namespace: ds)
        keyInfo.setAttribute("Id", ids.keyInfo)
        keyInfo.addChild("X509Data", namespace: ds).addChild("X509Certificate", namespace: ds, text: identity.certificateBase64)

        let object = signature.addChild("Object", namespace: ds)
        object.setAttribute("Id", ids.object)
        let qualifying = object.addChild("QualifyingProperties", namespace: etsi)
        qualifying.setAttribute("Target", "#" + ids.signature)
        let signedProperties = qualifying.addChild("SignedProperties", namespace: etsi)
        signedProperties.setAttribute("Id", ids.signedProperties)

        let signatureProperties = signedProperties.addChild("SignedSignatureProperties", namespace: etsi)
        signatureProperties.addChild("SigningTime", namespace: etsi, text: XAdES.dateTime(signingTime, utcOffset: utcOffset))
        let cert = signatureProperties.addChild("SigningCertificate", namespace: etsi).addChild("Cert", namespace: etsi)
        let certDigest = cert.addChild("CertDigest", namespace: etsi)
        certDigest.addChild("DigestMethod", namespace: ds).setAttribute("Algorithm", digestMethod)
        let certificateDigest = algorithm == .rsaSHA256 ? identity.certificateDigests.sha256 : identity.certificateDigests.sha1
        certDigest.addChild("DigestValue", namespace: ds, text: certificateDigest)
        let issuerSerial = cert.addChild("IssuerSerial", namespace: etsi)
        issuerSerial.addChild("X509IssuerName", namespace: ds, text: identity.certificate.issuer)
        issuerSerial.addChild("X509SerialNumber", namespace: ds, text: identity.certificate.serialNumber)

        let format = signedProperties.addChild("SignedDataObjectProperties", namespace: etsi)
            .addChild("DataObjectFormat", namespace: etsi)
        format.setAttribute("ObjectReference", "#" + ids.contentReference)
        format.addChild("Description", namespace: etsi, text: "contenido comprobante")
        format.addChild("MimeType", namespace: etsi, text: "text/xml")

        let canonicalSignedInfo: [UInt8]
        do {
            // The enveloped-signature transform: the root without the Signature.
            contentDigest.appendText(base64(try XAdES.digest(tree, root, excluding: signature, algorithm.digest)))
            propertiesDigest.appendText(base64(try XAdES.digest(tree, signedProperties, algorithm.digest)))
            canonicalSignedInfo = try tree.canonicalBytes(signedInfo)
        } catch {
            throw .canonicalization(error)
        }
        let value: [UInt8]
        do {
            value = try canonicalSignedInfo.withUnsafeBytes { try identity.sign($0, algorithm.digest) }
        } catch {
            throw .keyCannotSign
        }
        signatureValue.appendText(base64(value))
    }

    private static func base64(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString()
    }

    /// Ids unique to one signature.
    private struct Identifiers {
        let signature: String
        let signedInfo: String
        let contentReference: String
        let propertiesReference: String
        let signedProperties: String
        let signatureValue: String
        let keyInfo: String
        let object: String

        init() {
            let n = Int.random(in: 100_000...999_999)
            let m = Int.random(in: 100_000...999_999)
            signature = "Signature\(n)"
            signedInfo = "Signature\(n)-SignedInfo\(m)"
            contentReference = "Reference-ID-\(m)"
            propertiesReference = "SignedPropertiesID\(m)"
            signedProperties = "Signature\(n)-SignedProperties\(m)"
            signatureValue = "SignatureValue\(n)"
            keyInfo = "Certificate\(n)"
            object = "Signature\(n)-Object\(m)"
        }
    }
}

/// Why a comprobante could not be signed.
public enum SigningError: Error, Sendable, Equatable, CustomStringConvertible {
    case malformedXML(XMLError)
    /// The root element has no `id="comprobante"`.
    case notAComprobante
    case alreadySigned
    case canonicalization(XMLError)
    /// OpenSSL refused to sign with the identity's key.
    case keyCannotSign

    public var description: String {
        switch self {
        case .malformedXML(let error): return "the comprobante is not acceptable XML: \(error.message)"
        case .notAComprobante: return "the root element must carry id=\"comprobante\""
        case .alreadySigned: return "the comprobante already carries a signature"
        case .canonicalization(let error): return "canonicalization failed: \(error.message)"
        case .keyCannotSign: return "the private key could not sign"
        }
    }
}
