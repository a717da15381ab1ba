import COpenSSL
import Foundation

/// The two profiles SRI accepts: RSA-SHA256 with SHA-256 digests (the default),
/// and RSA-SHA1 with SHA-1 digests everywhere (the older one most Ecuadorian
/// tools still produce), kept as a fallback.
public enum SignatureAlgorithm: String, Sendable, CaseIterable {
    case rsaSHA256 = "rsa-sha256"
    case rsaSHA1 = "rsa-sha1"

    var digest: DigestAlgorithm {
        self == .rsaSHA256 ? .sha256 : .sha1
    }

    var signatureMethodURI: String {
        self == .rsaSHA256 ? XAdES.rsaSHA256 : XAdES.rsaSHA1
    }

    var digestMethodURI: String {
        self == .rsaSHA256 ? XAdES.sha256 : XAdES.sha1
    }
}

/// Namespaces and algorithm identifiers of XML-DSig and XAdES 1.3.2.
enum XAdES {
    static let ds = "http://www.w3.org/2000/09/xmldsig#"
    static let etsi = "http://uri.etsi.org/01903/v1.3.2#"
    static let c14n = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
    static let c14nWithComments = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments"
    static let envelopedSignature = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
    static let rsaSHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
    static let rsaSHA1 = "http://www.w3.org/2000/09/xmldsig#rsa-sha1"
    static let sha256 = "http://www.w3.org/2001/04/xmlenc#sha256"
    static let sha1 = "http://www.w3.org/2000/09/xmldsig#sha1"
    static let signedPropertiesType = "http://uri.etsi.org/01903#SignedProperties"

    static func digestAlgorithm(_ uri: String) -> DigestAlgorithm? {
        switch uri {
        case sha256: return .sha256
        case sha1: return .sha1
        default: return nil
        }
    }

    static func signatureAlgorithm(_ uri: String) -> SignatureAlgorithm? {
        switch uri {
        case rsaSHA256: return .rsaSHA256
        case rsaSHA1: return .rsaSHA1
        default: return nil
        }
    }

    /// The digest of an element's inclusive C14N in place, streamed.
    static func digest(
        _ tree: XMLTree, _ element: XMLTree.Element, excluding: XMLTree.Element? = nil, _ algorithm: DigestAlgorithm
    ) throws(XMLError) -> [UInt8] {
        guard let context = EVP_MD_CTX_new() else { fatalError("OpenSSL could not allocate a digest context") }
        defer { EVP_MD_CTX_free(context) }
        precondition(EVP_DigestInit_ex(context, algorithm.md, nil) == 1, "OpenSSL EVP_DigestInit_ex failed")
        try tree.canonicalize(element, excluding: excluding) { chunk in
            _ = EVP_DigestUpdate(context, chunk.baseAddress, chunk.count)
        }
        var output = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        precondition(EVP_DigestFinal_ex(context, &output, &length) == 1, "OpenSSL EVP_DigestFinal_ex failed")
        output.removeSubrange(Int(length)...)
        return output
    }

    /// xsd:dateTime with the UTC offset written out, e.g. `2026-12-01T10:00:00-05:00`.
    static func dateTime(_ date: Date, utcOffset: Int) -> String {
        let local = Int(date.timeIntervalSince1970.rounded(.down)) + utcOffset
        let days = local >= 0 ? local / 86_400 : (local - 86_399) / 86_400
        let seconds = local - days * 86_400
        let date = ComprobanteDate(daysSince1970: days)
        let (year, month, day) = (date.year, date.month, date.day)
        let sign = utcOffset < 0 ? "-" : "+"
        let offset = abs(utcOffset) / 60
        return
            "\(pad(year, 4))-\(pad(month, 2))-\(pad(day, 2))T\(pad(seconds / 3600, 2)):\(pad(seconds / 60 % 60, 2)):\(pad(seconds % 60, 2))"
            + "\(sign)\(pad(offset / 60, 2)):\(pad(offset % 60, 2))"
    }

    private static func pad(_ value: Int, _ width: Int) -> String {
        ComprobanteDate.pad(value, width)
    }
}
