import Foundation
import Hummingbird
import Postgres

/// POST/GET /v1/documents and GET /v1/documents/:accessKey.
struct DocumentsController {
    let database: Database

    func addRoutes(to group: RouterGroup<TenantRequestContext>) {
        group.post("documents", use: issue)
        group.get("documents", use: list)
        group.get("documents/:accessKey", use: show)
    }

    /// Issues a document: the counter row is taken with its lock in the
    /// transaction that inserts the document, so numbers are gapless and unique.
    @Sendable func issue(_ request: Request, context: TenantRequestContext) async throws -> Response {
        let input = try await Input.read(request)
        let issuerID = try await database.checkAfterAuthenticating(for: context.token, facts: context.facts) {
            try ResolvedIssuer.requestedID(request)
        }
        let idempotencyKey = request.headers[.idempotencyKey]
        let document: IssueRequest
        do {
            document = try IssueRequest(input, idempotencyKey: idempotencyKey, today: .todayInEcuador(now: Date().timeIntervalSince1970))
        } catch {
            try await resolve(issuerID, context)
            throw error
        }
        let bodyDigest = Crypto.sha256(input.bytes)

        let (json, replayed) = try await database.transaction(
            for: context.token, facts: context.facts, prologue: [ResolvedIssuer.lookup(issuerID).query]
        ) { transaction, principal, results -> (JSONValue, Bool) in
            let issuer = try ResolvedIssuer.resolve(
                try ResolvedIssuer.lookup(issuerID).decode(results[0]), keyEnvironment: principal.keyEnvironment)
            if let key = idempotencyKey, let replay = try DocumentsStore.claim(transaction, key: key, issuer: issuer.id, digest: bodyDigest)
            {
                return (replay, true)
            }
            let json = try DocumentsStore.issue(
                transaction, issuer: issuer, documentType: document.documentType, issueDate: document.issueDate,
                content: document.content, idempotencyKey: idempotencyKey
            )
            return (json, false)
        }
        if !replayed {
            ServiceMetrics.documentIssued(type: document.documentType, environment: context.token.environment)
        }
        var response = Reply.json(.created, [("document", json)])
        if replayed { response.headers[.idempotentReplayed] = "true" }
        return response
    }

    @Sendable func list(_ request: Request, context: TenantRequestContext) async throws -> Response {
        let issuerID = try await database.checkAfterAuthenticating(for: context.token, facts: context.facts) {
            try ResolvedIssuer.requestedID(request)
        }
        let page: ListRequest
        do {
            page = try ListRequest(request)
        } catch {
            try await resolve(issuerID, context)
            throw error
        }
        let (principal, found, rows) = try await database.read(
            for: context.token, facts: context.facts, ResolvedIssuer.lookup(issuerID),
            DocumentsStore.page(issuer: issuerID, after: page.after, limit: page.limit, documentType: page.documentType)
        )
        _ = try ResolvedIssuer.resolve(found, keyEnvironment: principal.keyEnvironment)
        let kept = ListBudget.fitting(rows) { $0.json.serialized.utf8.count }
        let more = kept < rows.count || rows.count == page.limit
        let nextAfter: JSONValue = more && kept > 0 ? JSONValue(rows[kept - 1].id) : .null
        return Reply.json([("documents", .array(rows.prefix(kept).map(\.json))), ("nextAfter", nextAfter)])
    }

    @Sendable func show(_ request: Request, context: TenantRequestContext) async throws -> Response {
        let issuerID = try await database.checkAfterAuthenticating(for: context.token, facts: context.facts) {
            try ResolvedIssuer.requestedID(request)
        }
        let accessKey = context.parameters.get("accessKey") ?? ""
        let (principal, found, document) = try await database.read(
            for: context.token, facts: context.facts, ResolvedIssuer.lookup(issuerID),
            DocumentsStore.byAccessKey(issuer: issuerID, accessKey: accessKey)
        )
        _ = try ResolvedIssuer.resolve(found, keyEnvironment: principal.keyEnvironment)
        guard let document else { throw APIError.notFound("No document of this issuer has this access key.") }
        return Reply.json([("document", document)])
    }

    /// resolveIssuer alone, for a request refused for its fields: the answer is
    /// 401 or 404 when those come first.
    private func resolve(_ issuerID: Int64, _ context: TenantRequestContext) async throws {
        let (principal, found) = try await database.read(for: context.token, facts: context.facts, ResolvedIssuer.lookup(issuerID))
        _ = try ResolvedIssuer.resolve(found, keyEnvironment: principal.keyEnvironment)
    }
}

/// The body of POST /v1/documents and its Idempotency-Key header.
struct IssueRequest: Sendable {
    let documentType: String
    let issueDate: CalendarDate
    let content: String

    static let idempotencyKeyError = APIError.validation(
        field: "Idempotency-Key", "The Idempotency-Key header must be 1 to 255 printable ASCII characters."
    )

    init(_ input: Input, idempotencyKey: String?, today: CalendarDate) throws {
        if let key = idempotencyKey, !(1...255).contains(key.utf8.count) || !key.utf8.allSatisfy({ (0x20...0x7e).contains($0) }) {
            throw IssueRequest.idempotencyKeyError
        }
        var input = input
        let documentType = input.choice("documentType", required: true, allowed: DocumentType.codes)
        // Optional, but when present a date (null is not a date).
        if case .null? = input.value["issueDate"] { input.fail("issueDate", "issueDate must be a date as YYYY-MM-DD, not null.") }
        let issueDate = input.formatted("issueDate", required: false, rule: "a date as YYYY-MM-DD") { CalendarDate(iso: $0) != nil }
        var content = "{}"
        switch input.value["content"] {
        case nil: break
        case .object(let members)?: content = JSONValue.object(members).serialized
        case let other?: input.fail("content", "content must be a JSON object, not \(other.typeName).")
        }
        try input.validated()
        self.documentType = documentType!
        self.issueDate = issueDate.flatMap(CalendarDate.init(iso:)) ?? today
        self.content = content
    }
}

/// The query of GET /v1/documents: `documentType`, `limit` (1–200, default 50), `after`.
struct ListRequest: Sendable {
    var documentType: String?
    var limit = 50
    var after: Int64 = 0

    init(_ request: Request) throws {
        let query = request.uri.queryParameters
        var errors: [APIError.FieldError] = []
        if let value = query["documentType"].map(String.init) {
            if DocumentType.codes.contains(value) {
                documentType = value
            } else {
                errors.append(
                    .init(field: "documentType", message: "documentType must be one of \(DocumentType.codes.joined(separator: ", "))."))
            }
        }
        if let value = query["limit"].map(String.init) {
            if let parsed = Int(value), (1...200).contains(parsed) {
                limit = parsed
            } else {
                errors.append(.init(field: "limit", message: "limit must be an integer from 1 to 200."))
            }
        }
        if let value = query["after"].map(String.init) {
            if let parsed = Int64(value), parsed >= 0 {
                after = parsed
            } else {
                errors.append(.init(field: "after", message: "after must be a document id (a non-negative integer)."))
            }
        }
        if !errors.isEmpty { throw APIError.validation(errors) }
    }
}
