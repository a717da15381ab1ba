import Foundation
import Hummingbird
import Postgres

/// The SRI document types; the `document_types` table holds the same rows
/// (a test keeps the two in step).
enum DocumentType {
    static let codes = ["01", "03", "04", "05", "06", "07"]
}

/// An issuer resolved for a document route: the tenant's, and of the key's environment.
struct ResolvedIssuer: Sendable {
    let id: Int64
    let ruc: String
    let establishment: String
    let emissionPoint: String
    let environment: Environment

    static let columns = "id, ruc, establishment, emission_point, sandbox"

    /// The `X-Issuer-Id` header: 400 when missing or not a number; a number that
    /// cannot be an id (0, too large) resolves to no issuer, hence 404.
    static func requestedID(_ request: Request) throws -> Int64 {
        guard let text = request.headers[.issuerID], !text.isEmpty, Format.digits(text, count: text.utf8.count) else {
            throw APIError.validation(field: "X-Issuer-Id", "The X-Issuer-Id header must be the numeric id of one of your issuers.")
        }
        return Int64(text) ?? 0
    }

    /// The statement that reads the requested issuer, pipelined with authentication.
    static func lookup(_ requested: Result<Int64, any Error>) -> Statement {
        Statement("SELECT \(columns) FROM issuers WHERE id = $1", [(try? requested.get()) ?? 0])
    }

    /// resolveIssuer for a request: the header's own error first (400), then the lookup's row.
    static func resolve(_ requested: Result<Int64, any Error>, _ result: QueryResult, keyEnvironment: Environment) throws
        -> ResolvedIssuer
    {
        _ = try requested.get()
        return try resolve(result, keyEnvironment: keyEnvironment)
    }

    /// resolveIssuer: the issuer row read under the tenant's row-level security
    /// (none: 404, the same for another tenant's), then the environment check.
    static func resolve(_ result: QueryResult, keyEnvironment: Environment) throws -> ResolvedIssuer {
        guard let row = result.first else { throw APIError.notFound("No issuer with this id.") }
        let issuer = ResolvedIssuer(
            id: try row.decode(at: 0), ruc: try row.decode(at: 1), establishment: try row.decode(at: 2),
            emissionPoint: try row.decode(at: 3), environment: try row.decode(Bool.self, at: 4) ? .sandbox : .production
        )
        try checkEnvironment(key: keyEnvironment, issuer: issuer.environment)
        return issuer
    }

    /// The "Key environment + targeted issuer" table of the API keys documentation.
    static func checkEnvironment(key: Environment, issuer: Environment) throws {
        switch (key, issuer) {
        case (.sandbox, .sandbox), (.production, .production):
            return
        case (.sandbox, .production):
            throw APIError.unauthorized("A sandbox key cannot address a production issuer; use a production key.")
        case (.production, .sandbox):
            throw APIError.unauthorized("A production key cannot address a sandbox issuer; use a sandbox key.")
        }
    }
}

/// POST/GET /v1/documents and GET /v1/documents/:accessKey.
struct DocumentsController {
    let database: Database

    func addRoutes(to group: RouterGroup<TenantRequestContext>) {
        group.post("documents", use: issue)
        group.get("documents", use: list)
        group.get("documents/:accessKey", use: show)
    }

    struct IssueRequest: Sendable {
        let documentType: String
        let issueDate: CalendarDate
        let content: String

        init(_ input: Input, today: CalendarDate) throws {
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

    static let idempotencyKeyError = APIError.validation(
        field: "Idempotency-Key", "The Idempotency-Key header must be 1 to 255 printable ASCII characters."
    )

    /// Issues a document: the counter row is taken with its lock in the
    /// transaction that inserts the document, so numbers are gapless and unique.
    @Sendable func issue(_ request: Request, context: TenantRequestContext) async throws -> Response {
        let issuerID = Result { try ResolvedIssuer.requestedID(request) }
        let idempotencyKey = request.headers[.idempotencyKey]
        let input = try await Input.read(request)
        let parsed = Result { () throws -> IssueRequest in
            if let key = idempotencyKey, !(1...255).contains(key.utf8.count) || !key.utf8.allSatisfy({ (0x20...0x7e).contains($0) }) {
                throw DocumentsController.idempotencyKeyError
            }
            return try IssueRequest(input, today: .todayInEcuador(now: Date().timeIntervalSince1970))
        }
        let bodyDigest = Crypto.sha256(input.bytes)

        let (document, replayed, issued) = try await database.asTenant(
            context.token, facts: context.facts,
            prologue: [ResolvedIssuer.lookup(issuerID)]
        ) { transaction, principal, results -> (JSONValue, Bool, IssueRequest) in
            let issuer = try ResolvedIssuer.resolve(issuerID, results[0], keyEnvironment: principal.keyEnvironment)
            let document = try parsed.get()
            if let key = idempotencyKey,
                let replay = try DocumentsController.claim(transaction, key: key, issuer: issuer.id, digest: bodyDigest)
            {
                return (replay, true, document)
            }
            // The counter's row lock is held from here to COMMIT, one round trip:
            // take the number, build the access key around it, store the document.
            let parts = AccessKey.Parts(
                issueDate: document.issueDate, documentType: document.documentType, ruc: issuer.ruc,
                environment: issuer.environment, establishment: issuer.establishment, emissionPoint: issuer.emissionPoint
            )
            var statements = [
                Statement(
                    DocumentsController.issueSQL,
                    [
                        issuer.id, document.documentType, issuer.environment.rawValue, AccessKey.leadingDigits(parts),
                        AccessKey.trailingDigits(numericCode: AccessKey.randomNumericCode()),
                        "\(issuer.establishment)-\(issuer.emissionPoint)-", document.issueDate.description, document.content,
                    ]
                )
            ]
            if let key = idempotencyKey {
                statements.append(
                    Statement(
                        "UPDATE idempotency_keys SET document_id = currval(pg_get_serial_sequence('documents', 'id')) WHERE key = $1",
                        [key]
                    )
                )
            }
            do {
                let inserted = try transaction.commit(after: statements)
                return (try Representation.document(inserted[0][0]), false, document)
            } catch let error as PostgresError where error.constraint == "sequentials_next_in_range" {
                throw APIError.conflict("The counter of this issuer and document type is exhausted (999999999 reached).")
            } catch let error as PostgresError where error.hasClass("22") {
                // A value valid JSON but beyond what jsonb holds (e.g. a number past numeric's range).
                throw APIError.validation(
                    field: "content", "content holds a value the service cannot store (a number or string out of range).")
            }
        }
        if !replayed {
            ServiceMetrics.documentIssued(type: issued.documentType, environment: context.token.environment)
        }
        var response = Reply.json(.created, [("document", document)])
        if replayed { response.headers[.idempotentReplayed] = "true" }
        return response
    }

    /// Takes the next number of the counter (creating it at 1) and inserts the
    /// document with its number and access key, in one statement.
    static let issueSQL = """
        WITH counter AS (
            INSERT INTO sequentials AS s (tenant_id, issuer_id, document_type, environment, next_sequential)
            VALUES (current_tenant_id(), $1, $2, $3, 2)
            ON CONFLICT (tenant_id, issuer_id, document_type, environment)
            DO UPDATE SET next_sequential = s.next_sequential + 1
            RETURNING next_sequential - 1 AS sequential
        ), keyed AS (
            SELECT sequential, $4 || lpad(sequential::text, 9, '0') || $5 AS digits FROM counter
        )
        INSERT INTO documents (tenant_id, issuer_id, document_type, environment, sequential, number, access_key, issue_date, content)
        SELECT current_tenant_id(), $1, $2, $3, sequential, $6 || lpad(sequential::text, 9, '0'),
               digits || sri_check_digit(digits), $7::date, $8::jsonb
          FROM keyed
        RETURNING \(Representation.documentColumns)
        """

    /// Claims an Idempotency-Key for this request, or returns the document of the
    /// earlier request that holds it. A concurrent request with the same key
    /// waits on the primary key until the first commits (then replays it) or
    /// rolls back (then claims the key itself).
    static func claim(_ transaction: Transaction, key: String, issuer: Int64, digest: Data) throws -> JSONValue? {
        let claimed = try transaction.query(
            """
            INSERT INTO idempotency_keys AS k (tenant_id, key, issuer_id, request_digest)
            VALUES (current_tenant_id(), $1, $2, $3)
            ON CONFLICT (tenant_id, key) DO UPDATE
               SET issuer_id = excluded.issuer_id, request_digest = excluded.request_digest, document_id = NULL,
                   created_at = now(), expires_at = now() + interval '24 hours'
             WHERE k.expires_at < now()
            RETURNING 1
            """,
            [key, issuer, digest]
        )
        if claimed.count == 1 { return nil }
        let earlier = try transaction.query(
            """
            SELECT k.issuer_id, k.request_digest, d.*
              FROM idempotency_keys k,
                   LATERAL (SELECT \(Representation.documentColumns) FROM documents WHERE id = k.document_id) AS d
             WHERE k.key = $1
            """,
            [key]
        )
        guard let row = earlier.first, try row.decode(Int64.self, at: 0) == issuer, try row.decode(Data.self, at: 1) == digest else {
            throw APIError.conflict("This Idempotency-Key was already used with another issuer or another request body.")
        }
        return try Representation.document(row, offset: 2)
    }

    @Sendable func list(_ request: Request, context: TenantRequestContext) async throws -> Response {
        let issuerID = Result { try ResolvedIssuer.requestedID(request) }
        var errors: [APIError.FieldError] = []
        let query = request.uri.queryParameters
        var documentType: String?
        if let value = query["documentType"].map(String.init) {
            if DocumentType.codes.contains(value) {
                documentType = value
            } else {
                errors.append(
                    .init(field: "documentType", message: "documentType must be one of \(DocumentType.codes.joined(separator: ", "))."))
            }
        }
        var limit = 50
        if let value = query["limit"].map(String.init) {
            if let parsed = Int(value), (1...200).contains(parsed) {
                limit = parsed
            } else {
                errors.append(.init(field: "limit", message: "limit must be an integer from 1 to 200."))
            }
        }
        var after: Int64 = 0
        if let value = query["after"].map(String.init) {
            if let parsed = Int64(value), parsed >= 0 {
                after = parsed
            } else {
                errors.append(.init(field: "after", message: "after must be a document id (a non-negative integer)."))
            }
        }
        let filter = documentType == nil ? "" : " AND document_type = $4"
        var parameters: [any PostgresBindable] = [(try? issuerID.get()) ?? 0, after, limit]
        if let documentType { parameters.append(documentType) }
        let (principal, results) = try await database.readAsTenant(
            context.token, facts: context.facts,
            [
                ResolvedIssuer.lookup(issuerID),
                Statement(
                    "SELECT \(Representation.documentColumns) FROM documents WHERE issuer_id = $1 AND id > $2\(filter) ORDER BY id LIMIT $3",
                    parameters
                ),
            ]
        )
        _ = try ResolvedIssuer.resolve(issuerID, results[0], keyEnvironment: principal.keyEnvironment)
        if !errors.isEmpty { throw APIError.validation(errors) }
        let rows = results[1].rows
        let nextAfter: JSONValue = rows.count == limit ? try rows[rows.count - 1].int(at: 0) : .null
        return Reply.json([("documents", .array(try rows.map { try Representation.document($0) })), ("nextAfter", nextAfter)])
    }

    @Sendable func show(_ request: Request, context: TenantRequestContext) async throws -> Response {
        let issuerID = Result { try ResolvedIssuer.requestedID(request) }
        let accessKey = context.parameters.get("accessKey") ?? ""
        let (principal, results) = try await database.readAsTenant(
            context.token, facts: context.facts,
            [
                ResolvedIssuer.lookup(issuerID),
                Statement(
                    "SELECT \(Representation.documentColumns) FROM documents WHERE issuer_id = $1 AND access_key = $2",
                    [(try? issuerID.get()) ?? 0, accessKey]
                ),
            ]
        )
        _ = try ResolvedIssuer.resolve(issuerID, results[0], keyEnvironment: principal.keyEnvironment)
        guard let row = results[1].first else { throw APIError.notFound("No document of this issuer has this access key.") }
        return Reply.json([("document", try Representation.document(row))])
    }
}
