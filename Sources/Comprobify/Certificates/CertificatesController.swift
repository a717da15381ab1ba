import Foundation
import Hummingbird
import NIOPosix
import Postgres
import SRI

/// PUT/GET /v1/issuers/:id/certificate: the issuer's signing certificate.
struct CertificatesController {
    let database: Database
    let secretBox: SecretBox

    func addRoutes(to group: RouterGroup<TenantRequestContext>) {
        group.put("issuers/:id/certificate", use: upload)
        group.get("issuers/:id/certificate", use: show)
    }

    /// Answers in the order of every route, 401, then 404 for an issuer that
    /// is not the tenant's, then 400, and opens the PKCS#12 file only once the
    /// key and the issuer are known: opening it is CPU work (bounded by
    /// `PKCS12Limits`), which a stranger must not be able to ask for. A key of
    /// the issuer's other environment is 401, as for documents (a sandbox key
    /// kept for a test rig does not replace a production signing key). It is
    /// opened on the blocking pool, not on a request thread, and holds no
    /// connection. Nothing is stored on any error.
    @Sendable func upload(_ request: Request, context: TenantRequestContext) async throws -> Response {
        let id = Format.pathID(context.parameters.get("id")) ?? 0
        let bytes = try await Input.collect(request, from: context.bodyPeer)
        let (principal, environment) = try await database.read(for: context.token, facts: context.facts, IssuersStore.environment(id))
        guard let environment else { throw IssuersStore.notFound }
        try ResolvedIssuer.checkEnvironment(key: principal.keyEnvironment, issuer: environment)
        // The body, unparseable JSON included, is answered after the issuer's
        // 404, as its fields are.
        let upload = try CertificateUpload(try Input.parse(bytes, of: request, allowEmpty: false))
        let identity = try await NIOThreadPool.singleton.runIfActive { try upload.open(now: Date()) }
        let secretBox = self.secretBox
        let certificate = try await database.transaction(for: context.token, facts: context.facts) { transaction, principal, _ in
            try CertificatesStore.replace(
                transaction, issuer: id, tenant: principal.tenantID, identity: identity, secretBox: secretBox, actorKeyID: principal.keyID)
        }
        return Reply.json([("certificate", certificate)])
    }

    @Sendable func show(_ request: Request, context: TenantRequestContext) async throws -> Response {
        let id = Format.pathID(context.parameters.get("id")) ?? 0
        let (_, exists, certificate) = try await database.read(
            for: context.token, facts: context.facts, IssuersStore.exists(id), CertificatesStore.current(issuer: id))
        guard exists else { throw IssuersStore.notFound }
        guard let certificate else { throw CertificatesStore.noCertificate }
        return Reply.json([("certificate", certificate)])
    }
}

/// The body of PUT /v1/issuers/:id/certificate: `p12` (base64 of a PKCS#12
/// file) and its `password`. Neither is kept, logged or echoed.
struct CertificateUpload: Sendable {
    let p12: String
    let password: String

    init(_ input: Input) throws {
        var input = input
        var p12 = input.string("p12", required: true, length: 0...Int.max)
        if p12?.isEmpty == true {
            input.fail("p12", "p12 must not be empty: the PKCS#12 file (.p12), base64-encoded.")
            p12 = nil
        }
        let password = input.string("password", required: true, length: 0...1024)
        try input.validated()
        self.p12 = p12 ?? ""
        self.password = password ?? ""
    }

    /// The signing identity, chosen by SRI.md's rules; 400 naming `p12` or
    /// `password` when the file cannot give one that is valid at `now`.
    func open(now: Date) throws -> SigningIdentity {
        do {
            return try SigningIdentity(pkcs12Base64: p12, password: password, now: now)
        } catch {
            throw APIError.validation(field: error.field, "\(error.field): \(error.message).")
        }
    }
}
