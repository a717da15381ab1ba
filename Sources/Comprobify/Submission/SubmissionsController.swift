import Foundation
import Hummingbird

/// GET /v1/documents/:accessKey/authorization: SRI's `<autorizacion>` element,
/// exactly as it was received, once the document is AUTHORIZED.
struct SubmissionsController: Sendable {
    let database: Database

    func addRoutes(to group: RouterGroup<TenantRequestContext>) {
        group.get("documents/:accessKey/authorization", use: authorization)
    }

    @Sendable func authorization(_ request: Request, context: TenantRequestContext) async throws -> Response {
        let accessKey = context.parameters.get("accessKey") ?? ""
        let lookup = try await database.readOfIssuer(request, context) {
            SubmissionsStore.authorization(issuer: $0, accessKey: accessKey)
        }
        switch lookup {
        case .noDocument:
            throw APIError.notFound("No document of this issuer has this access key.")
        case .notYet(let status):
            throw APIError.conflict(
                .notAuthorizedYet, "The document is not authorized by SRI (status \(status)); its authorization is not available.")
        case .authorized(let element):
            return Reply.xml(Data(element))
        }
    }
}
