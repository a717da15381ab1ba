import Foundation
import Postgres

/// POST /v1/tenants/promote: the tenant, all its issuers, a production counter
/// for every issuer × document type and a production key for every active
/// sandbox key, in one SERIALIZABLE transaction (retried on serialization
/// failure, with fresh tokens each try). The statements are set-based, so their
/// number does not grow with the tenant's size.
struct Promotion {
    let database: Database

    struct Entry: Sendable, Equatable {
        let issuerID: Int64
        let documentType: String
        let sequential: Int64
    }

    /// A validated body: `{}` / no body, or `{"initialSequentials": [...]}`.
    struct Request: Sendable {
        let entries: [Entry]

        init(entries: [Entry] = []) {
            self.entries = entries
        }

        init(_ input: Input) throws {
            var input = input
            var entries: [Entry] = []
            switch input.value["initialSequentials"] {
            case nil:
                break
            case .array(let items)?:
                var seen = Set<String>()
                for (index, item) in items.enumerated() {
                    let field = "initialSequentials[\(index)]"
                    guard case .object = item else {
                        input.fail(field, "\(field) must be an object.")
                        continue
                    }
                    let issuerID = Input.integer(item["issuerId"], in: 1...Int64.max)
                    if issuerID == nil { input.fail("\(field).issuerId", "issuerId must be a positive integer.") }
                    var documentType: String?
                    if case .string(let text)? = item["documentType"] {
                        // Every code is two digits; anything else cannot name a type.
                        if Format.digits(text, count: 2) {
                            documentType = text
                        } else {
                            input.fail("\(field).documentType", "No document type \(JSONValue.string(text).serialized).")
                        }
                    } else {
                        input.fail("\(field).documentType", "documentType must be a string such as \"01\".")
                    }
                    let sequential = Input.integer(item["sequential"], in: 1...999_999_999)
                    if sequential == nil {
                        input.fail("\(field).sequential", "sequential must be an integer from 1 to 999999999.")
                    }
                    guard let issuerID, let documentType, let sequential else { continue }
                    if !seen.insert("\(issuerID)/\(documentType)").inserted {
                        input.fail(field, "issuer \(issuerID) × document type \(documentType) is listed twice.")
                        continue
                    }
                    entries.append(Entry(issuerID: issuerID, documentType: documentType, sequential: sequential))
                }
            case .some(let other):
                input.fail("initialSequentials", "initialSequentials must be an array, not \(other.typeName).")
            }
            try input.validated()
            self.entries = entries
        }
    }

    struct IssuedKey: Sendable {
        let label: String?
        let token: APIToken
    }

    /// The tenant's state and the checks of the request that need the database,
    /// read under a lock on the tenant row so concurrent promotions queue, and
    /// so do additions of keys and issuers (`Database.rosterLock`). The lock is
    /// FOR NO KEY UPDATE, not FOR UPDATE: requests that insert rows referencing
    /// the tenant take FOR KEY SHARE on it for their foreign keys, and they may
    /// hold the share lock on a sandbox key this promotion is about to revoke.
    static func stateStatement(_ request: Request) -> Statement {
        Statement(
            """
            SELECT t.status, t.environment,
                   (SELECT count(*) FROM api_keys WHERE environment = 'sandbox' AND revoked_at IS NULL),
                   (SELECT string_agg(r.issuer_id::text, ',' ORDER BY r.issuer_id) FROM unnest($1::bigint[]) AS r(issuer_id)
                     WHERE NOT EXISTS (SELECT 1 FROM issuers i WHERE i.id = r.issuer_id)),
                   (SELECT string_agg(DISTINCT r.code, ',') FROM unnest($2::text[]) AS r(code)
                     WHERE NOT EXISTS (SELECT 1 FROM document_types d WHERE d.code = r.code))
              FROM tenants t
             WHERE t.id = current_tenant_id()
               FOR NO KEY UPDATE
            """,
            [request.entries.map(\.issuerID), request.entries.map(\.documentType)]
        )
    }

    /// Promotes the tenant of `token`.
    func run(token: APIToken, facts: RequestFacts, request: Result<Request, any Error>) async throws -> [IssuedKey] {
        let state = Promotion.stateStatement((try? request.get()) ?? Request())
        return try await database.asTenant(token, facts: facts, isolation: .serializable, lockKey: false, prologue: [state]) {
            transaction, principal, results in
            try Promotion.perform(transaction, state: results[0], request: try request.get(), actorKeyID: principal.keyID)
        }
    }

    /// Promotes a tenant known by id (support tooling and tests: no key needed).
    func run(tenantID: Int64, request: Request) async throws -> [IssuedKey] {
        try await database.asTenantID(tenantID, isolation: .serializable, prologue: [Promotion.stateStatement(request)]) {
            transaction, results in
            guard results[0].count == 1 else { throw APIError.notFound("No tenant with this id.") }
            return try Promotion.perform(transaction, state: results[0], request: request, actorKeyID: nil)
        }
    }

    static func perform(_ transaction: Transaction, state: QueryResult, request: Request, actorKeyID: Int64?) throws -> [IssuedKey] {
        let row = state[0]
        var problems: [APIError.FieldError] = []
        if let unknown = try row.decode(String?.self, at: 3) {
            for (index, entry) in request.entries.enumerated()
            where unknown.split(separator: ",").contains(Substring(String(entry.issuerID))) {
                problems.append(
                    .init(field: "initialSequentials[\(index)].issuerId", message: "No issuer \(entry.issuerID) in this tenant."))
            }
        }
        if let unknown = try row.decode(String?.self, at: 4) {
            for (index, entry) in request.entries.enumerated() where unknown.split(separator: ",").contains(Substring(entry.documentType)) {
                problems.append(
                    .init(field: "initialSequentials[\(index)].documentType", message: "No document type \"\(entry.documentType)\".")
                )
            }
        }
        if !problems.isEmpty { throw APIError.validation(problems) }
        guard try row.decode(String.self, at: 0) == "ACTIVE" else {
            throw APIError.forbidden("Verify the tenant's email address before promoting it to production.")
        }
        guard try row.decode(String.self, at: 1) == "sandbox" else {
            throw APIError.conflict("The tenant is already in production.")
        }

        let tokens = (0..<(try row.decode(Int.self, at: 2))).map { _ in APIToken.generate(.production) }
        let results = try transaction.pipeline([
            Statement(
                """
                UPDATE tenants SET environment = 'production', promoted_at = now(), roster_changed_at = now()
                 WHERE id = current_tenant_id() AND environment = 'sandbox'
                """
            ),
            Statement("UPDATE issuers SET sandbox = false WHERE sandbox"),
            Statement(
                """
                INSERT INTO sequentials (tenant_id, issuer_id, document_type, environment, next_sequential)
                SELECT i.tenant_id, i.id, d.code, 'production', coalesce(r.sequential, 1)
                  FROM issuers i
                 CROSS JOIN document_types d
                  LEFT JOIN unnest($1::bigint[], $2::text[], $3::bigint[]) AS r(issuer_id, document_type, sequential)
                         ON r.issuer_id = i.id AND r.document_type = d.code
                """,
                [request.entries.map(\.issuerID), request.entries.map(\.documentType), request.entries.map(\.sequential)]
            ),
            Statement(
                """
                WITH revoked AS (
                    UPDATE api_keys SET revoked_at = now()
                     WHERE environment = 'sandbox' AND revoked_at IS NULL
                    RETURNING id, label
                ), ordered AS (
                    SELECT id, label, row_number() OVER (ORDER BY id) AS position FROM revoked
                ), minted AS (
                    INSERT INTO api_keys (tenant_id, label, environment, token_digest, token_prefix, replaces_key_id)
                    SELECT current_tenant_id(), o.label, 'production', t.digest, t.prefix, o.id
                      FROM ordered o
                      JOIN unnest($1::bytea[], $2::text[]) WITH ORDINALITY AS t(digest, prefix, position)
                        ON t.position = o.position
                    RETURNING replaces_key_id
                )
                SELECT o.position, o.label, (SELECT count(*) FROM revoked)
                  FROM minted m JOIN ordered o ON o.id = m.replaces_key_id
                 ORDER BY o.position
                """,
                [tokens.map(\.digest), tokens.map(\.prefix)]
            ),
            Statement(
                """
                INSERT INTO audit_events (tenant_id, action, actor, actor_key_id, details)
                SELECT current_tenant_id(), 'tenant.promoted', CASE WHEN $1::bigint IS NULL THEN 'support' ELSE 'tenant' END, $1::bigint,
                       jsonb_build_object('issuers', (SELECT count(*) FROM issuers), 'keysReplaced', $2::int)
                """,
                [actorKeyID, tokens.count]
            ),
        ])
        let swapped = results[3]
        let revokedCount = try swapped.first?.decode(Int.self, at: 2) ?? 0
        guard swapped.count == tokens.count, revokedCount == tokens.count else {
            // Cannot happen under SERIALIZABLE; roll back rather than lose a key.
            throw PostgresError(kind: .server, sqlState: SQLState.serializationFailure, message: "sandbox keys changed during promotion")
        }
        // The transaction commits when this returns.
        return try swapped.rows.map { row in
            IssuedKey(label: try row.decode(String?.self, at: 1), token: tokens[try row.decode(Int.self, at: 0) - 1])
        }
    }
}
