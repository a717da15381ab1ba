import Hummingbird
import NIOCore

/// GET /v1/documents/:accessKey/authorization: SRI's `<autorizacion>` element,
/// exactly as it was received, once the document is AUTHORIZED.
struct SubmissionsController: Sendable {
    let database: Database

    func addRoutes(to group: RouterGroup<TenantRequestContext>) {
        group.get("documents/:accessKey/authorization", use: authorization)
    }

    @Sendable func authorization(_ request: Request, context: TenantRequestContext) async throws -> Response {
        let issuerID = try await database.checkAfterAuthenticating(for: context.token, facts: context.facts) {
            try ResolvedIssuer.requestedID(request)
        }
        let accessKey = context.parameters.get("accessKey") ?? ""
        let (principal, found, lookup) = try await database.read(
            for: context.token, facts: context.facts, ResolvedIssuer.lookup(issuerID),
            SubmissionsStore.authorization(issuer: issuerID, accessKey: accessKey)
        )
        _ = try ResolvedIssuer.resolve(found, keyEnvironment: principal.keyEnvironment)
        switch lookup {
        case .noDocument:
            throw APIError.notFound("No document of this issuer has this access key.")
        case .notYet(let status):
            throw APIError.conflict("The document is not authorized by SRI (status \(status)); its authorization is not available.")
        case .authorized(let element):
            return Response(
                status: .ok,
                headers: [.contentType: "application/xml; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(bytes: element))
            )
        }
    }
}
