import Foundation
import Postgres

/// The SRI document types; the `document_types` table holds the same rows
/// (a test keeps the two in step).
enum DocumentType {
    static let codes = ["01", "03", "04", "05", "06", "07"]
}

/// The SQL of documents, their numbering and their idempotency keys.
enum DocumentsStore {
    static let columns =
        "id, issuer_id, document_type, environment, sequential, number, access_key, issue_date::text, content::text, created_at"

    /// A document as API.md shows it, from `columns` starting at column `offset`.
    static func document(_ row: Row, offset o: Int = 0) throws -> JSONValue {
        .object([
            ("id", try row.int(at: o)),
            ("issuerId", try row.int(at: o + 1)),
            ("documentType", try row.string(at: o + 2)),
            ("environment", try row.string(at: o + 3)),
            ("sequential", try row.int(at: o + 4)),
            ("number", try row.string(at: o + 5)),
            ("accessKey", try row.string(at: o + 6)),
            ("issueDate", try row.string(at: o + 7)),
            ("content", .raw(try row.decode(String.self, at: o + 8))),
            ("createdAt", try row.timestamp(at: o + 9)),
        ])
    }

    /// A page of the issuer's documents after `after`, by id.
    static func page(issuer: Int64, after: Int64, limit: Int, documentType: String?) -> Read<[(id: Int64, json: JSONValue)]> {
        Read(
            """
            SELECT \(unescaped: columns) FROM documents
             WHERE issuer_id = \(issuer) AND id > \(after) AND (\(documentType)::text IS NULL OR document_type = \(documentType))
             ORDER BY id LIMIT \(limit)
            """
        ) { result in
            try result.rows.map { (try $0.decode(Int64.self, at: 0), try document($0)) }
        }
    }

    /// One document of the issuer by its access key; nil when there is none.
    static func byAccessKey(issuer: Int64, accessKey: String) -> Read<JSONValue?> {
        Read("SELECT \(unescaped: columns) FROM documents WHERE issuer_id = \(issuer) AND access_key = \(accessKey)") { result in
            try result.first.map { try document($0) }
        }
    }

    /// Takes the next number of the counter (creating it at 1), builds the access
    /// key around it and inserts the document, with the Idempotency-Key pointing
    /// at it, then commits: the counter's row lock is held from the first
    /// statement to COMMIT, one round trip, so numbers are gapless and unique.
    static func issue(
        _ transaction: Transaction, issuer: ResolvedIssuer, documentType: String, issueDate: CalendarDate, content: String,
        idempotencyKey: String?
    ) throws -> JSONValue {
        let parts = AccessKey.Parts(
            issueDate: issueDate, documentType: documentType, ruc: issuer.ruc, environment: issuer.environment,
            establishment: issuer.establishment, emissionPoint: issuer.emissionPoint
        )
        let leading = AccessKey.leadingDigits(parts)
        let trailing = AccessKey.trailingDigits(numericCode: AccessKey.randomNumericCode())
        let prefix = "\(issuer.establishment)-\(issuer.emissionPoint)-"
        var statements: [PostgresQuery] = [
            """
            WITH counter AS (
                INSERT INTO sequentials AS s (tenant_id, issuer_id, document_type, environment, next_sequential)
                VALUES (current_tenant_id(), \(issuer.id), \(documentType), \(issuer.environment.rawValue), 2)
                ON CONFLICT (tenant_id, issuer_id, document_type, environment)
                DO UPDATE SET next_sequential = s.next_sequential + 1
                RETURNING issuer_id, document_type, environment, next_sequential - 1 AS sequential
            ), keyed AS (
                SELECT *, \(leading) || lpad(sequential::text, 9, '0') || \(trailing) AS digits FROM counter
            )
            INSERT INTO documents (tenant_id, issuer_id, document_type, environment, sequential, number, access_key, issue_date, content)
            SELECT current_tenant_id(), issuer_id, document_type, environment, sequential, \(prefix) || lpad(sequential::text, 9, '0'),
                   digits || sri_check_digit(digits), \(issueDate.description)::date, \(content)::jsonb
              FROM keyed
            RETURNING \(unescaped: columns)
            """
        ]
        if let idempotencyKey {
            statements.append(
                """
                UPDATE idempotency_keys SET document_id = currval(pg_get_serial_sequence('documents', 'id'))
                 WHERE key = \(idempotencyKey)
                """
            )
        }
        do {
            let inserted = try transaction.commit(after: statements)
            return try document(inserted[0][0])
        } catch let error as PostgresError where error.constraint == "sequentials_next_in_range" {
            throw APIError.conflict("The counter of this issuer and document type is exhausted (999999999 reached).")
        } catch let error as PostgresError where SQLState.dataException ~= error.sqlState {
            // A value valid JSON but beyond what jsonb holds (e.g. a number past numeric's range).
            throw APIError.validation(
                field: "content", "content holds a value the service cannot store (a number or string out of range).")
        }
    }

    /// Claims an Idempotency-Key for this request, or returns the document of the
    /// earlier request that holds it. A concurrent request with the same key
    /// waits on the primary key until the first commits (then replays it) or
    /// rolls back (then claims the key itself).
    static func claim(_ transaction: Transaction, key: String, issuer: Int64, digest: Data) throws -> JSONValue? {
        let claimed = try transaction.query(
            """
            INSERT INTO idempotency_keys AS k (tenant_id, key, issuer_id, request_digest)
            VALUES (current_tenant_id(), \(key), \(issuer), \(digest))
            ON CONFLICT (tenant_id, key) DO UPDATE
               SET issuer_id = excluded.issuer_id, request_digest = excluded.request_digest, document_id = NULL,
                   created_at = now(), expires_at = now() + interval '24 hours'
             WHERE k.expires_at < now()
            RETURNING 1
            """
        )
        if claimed.count == 1 { return nil }
        let earlier = try transaction.query(
            """
            SELECT k.issuer_id, k.request_digest, d.*
              FROM idempotency_keys k,
                   LATERAL (SELECT \(unescaped: columns) FROM documents WHERE id = k.document_id) AS d
             WHERE k.key = \(key)
            """
        )
        guard let row = earlier.first, try row.decode((Int64, Data).self) == (issuer, digest) else {
            throw APIError.conflict("This Idempotency-Key was already used with another issuer or another request body.")
        }
        return try document(row, offset: 2)
    }
}
