import Foundation
import NIOConcurrencyHelpers
import Postgres
import SRI

/// The SQL of issuers' signing certificates. The private key is sealed before
/// it reaches a statement and opened only to sign; the PKCS#12 file and its
/// password never reach the database.
enum CertificatesStore {
    static let columns = "subject, issuer_name, serial_number, not_before, not_after, sha256, uploaded_at"

    /// A certificate as SRI.md shows it, from `columns`.
    static func certificate(_ row: Row) throws -> JSONValue {
        .object([
            ("subject", try row.string(at: 0)),
            ("issuer", try row.string(at: 1)),
            ("serialNumber", try row.string(at: 2)),
            ("notBefore", try row.timestamp(at: 3)),
            ("notAfter", try row.timestamp(at: 4)),
            ("sha256", .string(Crypto.hex(try row.decode(Data.self, at: 5)))),
            ("uploadedAt", try row.timestamp(at: 6)),
        ])
    }

    static let noCertificate = APIError.notFound("This issuer has no signing certificate; upload one with PUT /v1/issuers/:id/certificate.")

    /// The issuer's certificate; nil when none was uploaded.
    static func current(issuer: Int64) -> Read<JSONValue?> {
        Read("SELECT \(unescaped: columns) FROM issuer_certificates WHERE issuer_id = \(issuer)") { result in
            try result.first.map(certificate)
        }
    }

    /// Stores `identity` as the issuer's certificate (replacing any earlier one),
    /// its private key sealed under the master key with the tenant and issuer as
    /// associated data, records `issuer.certificate_set` and commits. 404 when the
    /// issuer is not the tenant's.
    static func replace(
        _ transaction: Transaction, issuer: Int64, tenant: Int64, identity: SigningIdentity, secretBox: SecretBox, actorKeyID: Int64
    ) throws -> JSONValue {
        let info = identity.certificate
        var pkcs8: [UInt8]
        do {
            pkcs8 = try identity.privateKeyPKCS8()
        } catch {
            throw APIError.validation(field: error.field, "\(error.field): \(error.message).")
        }
        let sealed = secretBox.seal(pkcs8, associatedData: SecretBox.associatedData(tenantID: tenant, issuerID: issuer))
        pkcs8.withUnsafeMutableBytes { _ = $0.initializeMemory(as: UInt8.self, repeating: 0) }
        let results = try transaction.commit(after: [
            """
            WITH stored AS (
                INSERT INTO issuer_certificates AS c (tenant_id, issuer_id, subject, issuer_name, serial_number, not_before, not_after,
                                                     sha256, certificate, sealed_private_key, master_key_id)
                SELECT i.tenant_id, i.id, \(info.subject), \(info.issuer), \(info.serialNumber), \(info.notBefore), \(info.notAfter),
                       \(Crypto.sha256(info.der)), \(Data(info.der)), \(Data(sealed)), \(secretBox.currentKeyID)
                  FROM issuers i WHERE i.id = \(issuer)
                ON CONFLICT (tenant_id, issuer_id) DO UPDATE
                   SET subject = excluded.subject, issuer_name = excluded.issuer_name, serial_number = excluded.serial_number,
                       not_before = excluded.not_before, not_after = excluded.not_after, sha256 = excluded.sha256,
                       certificate = excluded.certificate, sealed_private_key = excluded.sealed_private_key,
                       master_key_id = excluded.master_key_id, uploaded_at = now()
                RETURNING \(unescaped: columns), tenant_id
            ), audited AS (
                INSERT INTO audit_events (tenant_id, action, actor, actor_key_id, details)
                SELECT tenant_id, 'issuer.certificate_set', 'tenant', \(actorKeyID),
                       jsonb_build_object('issuerId', \(issuer)::bigint, 'sha256', encode(sha256, 'hex'), 'notAfter', not_after)
                  FROM stored
            )
            SELECT \(unescaped: columns) FROM stored
            """
        ])
        guard let row = results[0].first else { throw IssuersStore.notFound }
        return try certificate(row)
    }

    /// The statement that reads what signing needs, for a transaction's
    /// prologue: the certificate's fingerprint and validity, a few bytes.
    static func signingMaterial(issuer: Int64) -> PostgresQuery {
        "SELECT sha256, not_before, not_after FROM issuer_certificates WHERE issuer_id = \(issuer)"
    }

    /// The issuer's signing identity, found by `signingMaterial`'s row (the
    /// certificate's fingerprint and validity): 409 when there is no
    /// certificate or it is not valid at `now`. Only the first document of a
    /// certificate in this process reads the certificate and its sealed key,
    /// in one more statement, and opens the key; the others find it in `cache`.
    static func signingIdentity(
        _ result: QueryResult, transaction: Transaction, tenant: Int64, issuer: Int64, secretBox: SecretBox,
        cache: SigningIdentityCache? = nil, now: Date
    ) throws -> SigningIdentity {
        let fingerprint: Data
        switch try standing(result, now: now) {
        case .missing: throw noSigningCertificate
        case .notValidNow: throw notValidNow
        case .valid(let found): fingerprint = found
        }
        if let cached = cache?.identity(for: .init(tenant: tenant, issuer: issuer, certificate: fingerprint)) { return cached }
        // Read again with the key: a new upload may have committed since, so
        // its validity is checked again and it is cached under its own fingerprint.
        let material = try transaction.query(
            "SELECT certificate, sealed_private_key, not_before, not_after FROM issuer_certificates WHERE issuer_id = \(issuer)")
        guard let stored = material.first else { throw noSigningCertificate }
        let (der, sealed, storedNotBefore, storedNotAfter) = try stored.decode((Data, Data, Date, Date).self)
        guard storedNotBefore <= now, now <= storedNotAfter else { throw notValidNow }
        var pkcs8: [UInt8]
        do {
            pkcs8 = try secretBox.open(Array(sealed), associatedData: SecretBox.associatedData(tenantID: tenant, issuerID: issuer))
        } catch {
            throw SealedKeyUnavailable(tenantID: tenant, issuerID: issuer, reason: error.description)
        }
        defer { pkcs8.withUnsafeMutableBytes { _ = $0.initializeMemory(as: UInt8.self, repeating: 0) } }
        do {
            let identity = try SigningIdentity(privateKeyPKCS8: pkcs8, certificateDER: Array(der))
            cache?.store(identity, for: .init(tenant: tenant, issuer: issuer, certificate: Crypto.sha256(der)))
            return identity
        } catch {
            throw SealedKeyUnavailable(tenantID: tenant, issuerID: issuer, reason: "\(error)")
        }
    }

    /// What `signingMaterial`'s row says of the issuer's certificate at `now`.
    private enum Standing {
        case missing
        case notValidNow
        case valid(fingerprint: Data)
    }

    private static func standing(_ result: QueryResult, now: Date) throws -> Standing {
        guard let row = result.first else { return .missing }
        let (fingerprint, notBefore, notAfter) = try row.decode((Data, Date, Date).self)
        return notBefore <= now && now <= notAfter ? .valid(fingerprint: fingerprint) : .notValidNow
    }

    /// What `signingIdentity` would refuse in `signingMaterial`'s row, as a
    /// clause of an issuer's 409 (`ResolvedIssuer.forXML`); nil when the
    /// certificate is there and valid at `now`.
    static func problem(_ result: QueryResult, now: Date) throws -> String? {
        switch try standing(result, now: now) {
        case .missing: "it has no signing certificate (upload one with PUT /v1/issuers/:id/certificate)"
        case .notValidNow: "its signing certificate is not valid now (upload a current one)"
        case .valid: nil
        }
    }

    static let noSigningCertificate = APIError.conflict(
        .certificateMissing,
        "The issuer has no signing certificate: upload one with PUT /v1/issuers/:id/certificate.")
    static let notValidNow = APIError.conflict(
        .certificateNotValid, "The issuer's signing certificate is not valid now: upload a current one.")
}

/// A stored private key that cannot be used: sealed under a master key that is
/// not configured, or altered. An operator's problem (500, logged with the
/// issuer it concerns), never the client's.
struct SealedKeyUnavailable: Error, CustomStringConvertible {
    let tenantID: Int64
    let issuerID: Int64
    let reason: String
    var description: String {
        "an issuer's sealed private key cannot be opened (tenant \(tenantID), issuer \(issuerID)): \(reason)"
    }
}

/// Signing identities opened from their sealed keys, kept per process so a
/// document does not pay for AES-GCM and OpenSSL's key decoding each time
/// (the decoding costs more than the signature), nor read its sealed key from
/// the database. One entry per issuer, found by the certificate's SHA-256
/// fingerprint: the key was checked against the certificate at upload, so one
/// certificate means one key (uploaded again, the same certificate finds the
/// same entry). A new certificate's identity replaces the issuer's old one, so
/// a replaced key (say, one that leaked) leaves this process's memory with
/// the first document signed after the upload, in every process. Bounded:
/// past `capacity` issuers the cache starts over.
final class SigningIdentityCache: Sendable {
    struct Key: Hashable, Sendable {
        let tenant: Int64
        let issuer: Int64
        /// The SHA-256 of the certificate's DER (issuer_certificates.sha256).
        let certificate: Data

        fileprivate var issuerKey: IssuerKey { IssuerKey(tenant: tenant, issuer: issuer) }
    }

    fileprivate struct IssuerKey: Hashable, Sendable {
        let tenant: Int64
        let issuer: Int64
    }

    let capacity: Int
    private let entries = NIOLockedValueBox<[IssuerKey: (certificate: Data, identity: SigningIdentity)]>([:])

    init(capacity: Int = 1024) {
        self.capacity = capacity
    }

    /// The identity cached for this certificate of the issuer; nil when none
    /// is, or when the issuer's cached identity is of another certificate.
    func identity(for key: Key) -> SigningIdentity? {
        entries.withLockedValue { entries in
            guard let entry = entries[key.issuerKey], entry.certificate == key.certificate else { return nil }
            return entry.identity
        }
    }

    /// Caches `identity` as the issuer's, dropping any identity of another certificate it had.
    func store(_ identity: SigningIdentity, for key: Key) {
        entries.withLockedValue { entries in
            if entries.count >= capacity, entries[key.issuerKey] == nil { entries.removeAll(keepingCapacity: true) }
            entries[key.issuerKey] = (key.certificate, identity)
        }
    }

    var count: Int { entries.withLockedValue { $0.count } }
}
