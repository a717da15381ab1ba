import Foundation
import Postgres
import SRI

/// The SRI document types; the `document_types` table holds the same rows
/// (a test keeps the two in step).
enum DocumentType {
    static let codes = ["01", "03", "04", "05", "06", "07"]
}

/// The SQL of documents: numbering, the signed comprobante, where it stands
/// with SRI, credit notes against their facturas, and Idempotency-Keys.
enum DocumentsStore {
    /// A document with where it stands with SRI; read `FROM \(from)`.
    static let columns = """
        d.id, d.issuer_id, d.document_type, d.environment, d.sequential, d.number, d.access_key, d.issue_date::text, \
        d.metadata::text, d.created_at, d.body::text, s.status, s.attempts, s.last_error, s.next_attempt_at, s.messages::text, \
        s.authorization_number, s.authorized_at
        """
    /// `columns` of a document just stored, in the same places: the body is
    /// the one the request computed, not read back (a NULL in its place), and
    /// neither it nor the XML is copied through the statement's CTEs.
    static let storedColumns = columns.replacingOccurrences(of: "d.body::text", with: "NULL::text")
    /// `columns` as the document's first response showed it: where it stood
    /// with SRI when it was stored (SIGNED, due at once, no attempts), for an
    /// Idempotency-Key's replay, whatever SRI has decided since.
    static let firstResponseColumns = columns.replacingOccurrences(
        of: """
            s.status, s.attempts, s.last_error, s.next_attempt_at, s.messages::text, \
            s.authorization_number, s.authorized_at
            """,
        with: """
            CASE WHEN s.document_id IS NOT NULL THEN 'SIGNED' END, CASE WHEN s.document_id IS NOT NULL THEN 0 END, NULL::text, \
            CASE WHEN s.document_id IS NOT NULL THEN d.created_at END, CASE WHEN s.document_id IS NOT NULL THEN '[]' END, \
            NULL::text, NULL::timestamptz
            """)
    static let from = "documents d LEFT JOIN document_submissions s ON s.tenant_id = d.tenant_id AND s.document_id = d.id"
    /// `from` for documents that have a submission (every one but LEGACY's).
    static let innerFrom = "documents d JOIN document_submissions s ON s.tenant_id = d.tenant_id AND s.document_id = d.id"

    /// The status of a document numbered before comprobantes existed: it has
    /// no XML and was never sent to SRI.
    static let legacyStatus = "LEGACY"

    /// A document as SRI.md shows it, from `columns` starting at column `offset`.
    /// `body`: the computed body when the caller has it (the row's `body` column
    /// holds the same JSON, serialized; reading it back costs a parse).
    static func document(_ row: Row, offset o: Int = 0, body known: JSONValue? = nil) throws -> JSONValue {
        var members = try head(row, offset: o)
        if case .object(let computed) = known {
            members += computed
        } else if let body = try row.decode(String?.self, at: o + 10),
            case .object(let computed) = try JSONParser.parse(Array(body.utf8))
        {
            members += computed
        }
        return .object(members + (try tail(row, offset: o)))
    }

    /// A document for a list page, the same JSON as `document(_:)`, with its
    /// stored body's members written as they are stored instead of parsed and
    /// written again: a page of large facturas (200 of about 1 MB) cost over
    /// a second of CPU for that alone. The body is the server's own
    /// serialization of an object (`DocumentBody`), kept as text (a `json`
    /// column); its members go between the document's first ones and its
    /// metadata, where `document(_:)` puts them.
    static func listed(_ row: Row) throws -> JSONValue {
        guard let body = try row.decode(String?.self, at: 10) else { return try document(row) }
        let inner = Array(body.utf8)[...].trimmingJSONWhitespace()
        guard inner.first == UInt8(ascii: "{"), inner.last == UInt8(ascii: "}") else { return try document(row) }
        let members = inner.dropFirst().dropLast().trimmingJSONWhitespace()
        var out = JSONValue.object(try head(row, offset: 0)).utf8
        out.removeLast()  // the head's "}"
        if !members.isEmpty {
            out.append(UInt8(ascii: ","))
            out.append(contentsOf: members)
        }
        let tail = JSONValue.object(try tail(row, offset: 0)).utf8
        out.append(UInt8(ascii: ","))
        out.append(contentsOf: tail.dropFirst())  // without the tail's "{"
        return .rawUTF8(out)
    }

    /// A document's members before its body's: what every document has.
    private static func head(_ row: Row, offset o: Int) throws -> [(String, JSONValue)] {
        [
            ("id", try row.int(at: o)),
            ("issuerId", try row.int(at: o + 1)),
            ("documentType", try row.string(at: o + 2)),
            ("environment", try row.string(at: o + 3)),
            ("sequential", try row.int(at: o + 4)),
            ("number", try row.string(at: o + 5)),
            ("accessKey", try row.string(at: o + 6)),
            ("issueDate", try row.string(at: o + 7)),
            ("status", .string(try row.decode(String?.self, at: o + 11) ?? legacyStatus)),
        ]
    }

    /// A document's members after its body's: the client's metadata, SRI's part, when it was made.
    private static func tail(_ row: Row, offset o: Int) throws -> [(String, JSONValue)] {
        let messages = try row.decode(String?.self, at: o + 15)
        return [
            ("metadata", .raw(try row.decode(String.self, at: o + 8))),
            (
                "sri",
                .object([
                    ("authorizationNumber", try row.string(at: o + 16)),
                    ("authorizedAt", try row.timestamp(at: o + 17)),
                    ("messages", messages.map { .raw($0) } ?? .array([])),
                    ("attempts", JSONValue(Int64(try row.decode(Int?.self, at: o + 12) ?? 0))),
                    ("lastError", try row.string(at: o + 13)),
                    ("nextAttemptAt", try row.timestamp(at: o + 14)),
                ])
            ),
            ("createdAt", try row.timestamp(at: o + 9)),
        ]
    }

    /// A page of the issuer's documents after `after`, by id: each row's id,
    /// the bytes its JSON is reckoned to take, and the
    /// document itself for the first rows whose reckoned bytes fit in `bytes`
    /// (always the first row); nil for the rest, which `byIDs` reads in chunks.
    /// The reckoning reads the sizes of the stored JSON (body, metadata, SRI's
    /// messages: `json` columns, whose text `octet_length` finds in the
    /// value's header): no row's JSON is read or decompressed for it.
    static func page(
        issuer: Int64, after: Int64, limit: Int, documentType: String?, status: String?, environment: Environment? = nil,
        bytes: Int = ListBudget.bytes
    ) -> Read<[(id: Int64, reckoned: Int, json: JSONValue?)]> {
        let reckoned = """
            coalesce(octet_length(d.body::text), 0) + octet_length(d.metadata::text) \
            + coalesce(octet_length(s.messages::text), 0) + \(ListBudget.perDocument)
            """
        let pageColumns = columns.replacingOccurrences(
            of: "d.body::text",
            with: """
                CASE WHEN row_number() OVER running = 1 OR sum(\(reckoned)) OVER running <= \(bytes) THEN d.body::text END
                """)
        // One statement per set of filters, each with only its own conditions:
        // written as `($1 IS NULL OR d.document_type = $1)`, one statement's
        // generic plan (which PostgreSQL may switch a prepared statement to
        // after five runs) cannot use an index for either case, and walked all
        // of a large issuer's documents for a type it has few of. The values
        // are bound in the same order in every form.
        let (typeBefore, typeAfter) = documentType == nil ? ("", "::text IS NULL") : ("d.document_type = ", "")
        // An issuer's documents of one environment are those after its
        // promotion or before it: documents_by_issuer_and_environment (0089)
        // reads them in order, never the other environment's.
        // Only the form that filters has the condition and its value: the
        // statements of the other forms, and their plans, stay as they were.
        let byEnvironment: SQLFragment = environment.map { "AND d.environment = \($0.rawValue)" } ?? ""
        // A status other than LEGACY is a submission's: an inner join lets
        // PostgreSQL start from document_submissions_by_status when the
        // status is rare, where the coalesce of a left join read every
        // document of the issuer and its submission (0.7 s on 270 thousand).
        let byStatus = status != nil && status != legacyStatus
        let (statusBefore, statusAfter) =
            status == nil
            ? ("", "::text IS NULL") : byStatus ? ("s.status = ", "") : ("coalesce(s.status, '\(legacyStatus)') = ", "")
        // The status index holds the tenant's documents of every issuer: its
        // walk starts at the page's cursor and at the issuer's first document,
        // not at the tenant's first (a deep page read every earlier one, a
        // small branch every document of the large ones before it). A LEGACY
        // document is one without XML (documents_comprobante_complete):
        // documents_legacy_by_issuer (0091) holds those alone.
        let statusBounds: SQLFragment =
            byStatus
            ? """
            AND s.document_id > \(after)
            AND s.document_id >= (SELECT coalesce(min(f.id), 9223372036854775807) FROM documents f WHERE f.issuer_id = \(issuer))
            """
            : status == legacyStatus ? "AND d.xml IS NULL" : ""
        var query: PostgresQuery = """
            SELECT \(unescaped: pageColumns), (\(unescaped: reckoned))::bigint,
                   row_number() OVER running = 1 OR sum(\(unescaped: reckoned)) OVER running <= \(bytes)
              FROM \(unescaped: byStatus ? innerFrom : from)
             WHERE d.issuer_id = \(issuer) AND d.id > \(after)
               AND \(unescaped: typeBefore)\(documentType)\(unescaped: typeAfter)
               AND \(unescaped: statusBefore)\(status)\(unescaped: statusAfter)
               \(byEnvironment) \(statusBounds)
            WINDOW running AS (ORDER BY d.id ROWS UNBOUNDED PRECEDING)
             ORDER BY d.id LIMIT \(limit)
            """
        // How many of an issuer's documents have a status varies too much
        // for one plan: a generic one walked the issuer's documents for a
        // status it had none of (0.2 s where a custom plan took 0.1 ms).
        if byStatus { query.plannedEachTime = true }
        // A page may read hundreds of large rows (or walk an index for a
        // rare status): on a shared connection every read sent behind it, any
        // tenant's, would wait for it.
        query.runsAlone = true
        return Read(query) { result in
            let reckonedAt = 18
            return try result.rows.map { row in
                // `.none`, not `nil`: JSONValue takes the nil literal as JSON's null.
                let json: JSONValue? = try row.decode(Bool.self, at: reckonedAt + 1) ? try listed(row) : .none
                return (try row.decode(Int64.self, at: 0), Int(try row.decode(Int64.self, at: reckonedAt)), json)
            }
        }
    }

    /// The issuer's documents with these ids, by id: the rest of a page that
    /// `page` left out (documents are never deleted, so each is there).
    static func byIDs(issuer: Int64, ids: [Int64]) -> Read<[(id: Int64, json: JSONValue)]> {
        var query: PostgresQuery =
            "SELECT \(unescaped: columns) FROM \(unescaped: from) WHERE d.issuer_id = \(issuer) AND d.id = ANY (\(ids)) ORDER BY d.id"
        // A chunk of a page holds up to ListBudget.streamedBytes of documents (see `page`).
        query.runsAlone = true
        return Read(query) { result in
            try result.rows.map { (try $0.decode(Int64.self, at: 0), try listed($0)) }
        }
    }

    /// One document of the issuer by its access key; nil when there is none.
    static func byAccessKey(issuer: Int64, accessKey: String) -> Read<JSONValue?> {
        Read("SELECT \(unescaped: columns) FROM \(unescaped: from) WHERE d.issuer_id = \(issuer) AND d.access_key = \(accessKey)") {
            result in
            try result.first.map { try document($0) }
        }
    }

    /// The signed XML of one document of the issuer: nil when there is no such
    /// document; `.some(nil)` for one numbered before comprobantes.
    static func xml(issuer: Int64, accessKey: String) -> Read<Data??> {
        Read("SELECT xml FROM documents WHERE issuer_id = \(issuer) AND access_key = \(accessKey)") { result in
            guard let row = result.first else { return nil }
            return .some(try row.decode(Data?.self, at: 0))
        }
    }

    /// The issuer's factura of this number in `environment`, and its
    /// submission, locked (`creditedFactura`). Found by its sequential, the
    /// number's last nine digits (documents_number_matches_sequential),
    /// through documents_sequential_unique; the number is compared too.
    static func factura(issuer: Int64, environment: Environment, number: String) -> PostgresQuery {
        """
        SELECT d.id, d.issue_date::text, d.buyer_id_type, d.buyer_id, d.total::text, s.status
          FROM documents d JOIN document_submissions s ON s.tenant_id = d.tenant_id AND s.document_id = d.id
         WHERE d.issuer_id = \(issuer) AND d.environment = \(environment.rawValue) AND d.document_type = '01'
           AND d.sequential = \(sequential(of: number)) AND d.number = \(number)
           FOR UPDATE OF s
        """
    }

    /// Whether the issuer has a factura of this number in `environment`, with
    /// or without a submission (`factura`'s lookup, nothing locked): one row,
    /// true when the factura has its submission (it was issued as a comprobante).
    static func anyFactura(issuer: Int64, environment: Environment, number: String) -> PostgresQuery {
        """
        SELECT EXISTS (SELECT FROM document_submissions s WHERE s.tenant_id = d.tenant_id AND s.document_id = d.id)
          FROM documents d
         WHERE d.issuer_id = \(issuer) AND d.environment = \(environment.rawValue) AND d.document_type = '01'
           AND d.sequential = \(sequential(of: number)) AND d.number = \(number)
        """
    }

    /// The sequential a number `NNN-NNN-NNNNNNNNN` carries (0, which no
    /// document has, for anything else).
    static func sequential(of number: String) -> Int64 {
        Int64(number.suffix(9)) ?? 0
    }

    /// For a credit note: the factura it modifies when Comprobify issued it
    /// (same issuer and environment), checked as SRI.md says, under a lock on
    /// the factura's submission row so concurrent credit notes queue and cannot
    /// overdraw it. Nil for a number Comprobify does not know (SRI.md: taken
    /// as given, a factura issued before Comprobify, whatever its branch or
    /// sequential; should this issuer later issue that number, such notes
    /// count against it, below); 409 for one it numbered before
    /// comprobantes existed (never AUTHORIZED).
    static func creditedFactura(_ transaction: Transaction, issuer: ResolvedIssuer, note: CreditNote) throws -> Int64? {
        let modified = note.modifiedDocument
        let found = try transaction.query(factura(issuer: issuer.id, environment: issuer.environment, number: modified.number))
        guard let row = found.first else {
            if let known = try transaction.query(anyFactura(issuer: issuer.id, environment: issuer.environment, number: modified.number))
                .first
            {
                // A factura numbered before comprobantes existed has no
                // submission: Comprobify knows its number, and it was never
                // AUTHORIZED. One with a submission committed after the lookup
                // above: just issued, not AUTHORIZED yet.
                let state = try known.decode(Bool.self, at: 0) ? "was just issued, not AUTHORIZED yet" : "is \(DocumentsStore.legacyStatus)"
                throw APIError.conflict(
                    .modifiedDocumentNotAuthorized, "The factura \(modified.number) \(state); only an AUTHORIZED factura can be credited.")
            }
            return nil
        }
        let (id, issueDate, buyerIDType, buyerID, totalText, status) = try row.decode((Int64, String, String, String, String, String).self)
        guard status == "AUTHORIZED" else {
            throw APIError.conflict(
                .modifiedDocumentNotAuthorized, "The factura \(modified.number) is \(status); only an AUTHORIZED factura can be credited.")
        }
        // Every mismatch in one answer, so that the client mends them at once.
        var mismatches: [String] = []
        if issueDate != modified.issueDate.iso {
            mismatches.append("The factura \(modified.number) was issued on \(issueDate), not \(modified.issueDate.iso).")
        }
        // Byte for byte, as SRI compares the two XMLs' identificacionComprador:
        // Swift's == would take two spellings of one accented letter as equal.
        if buyerIDType != note.buyer.idType || !buyerID.utf8.elementsEqual(note.buyer.id.utf8) {
            mismatches.append("The credit note's buyer must be the factura's buyer (idType and id).")
        }
        guard mismatches.isEmpty else {
            throw APIError.conflict(.modifiedDocumentMismatch, mismatches.joined(separator: " "))
        }
        // A statement of its own: its snapshot is taken once the lock is held,
        // so it sees every credit note that committed before. Notes issued
        // while this number was unknown here (taken as given, no link) count
        // too when they name the same factura: its number, its issue date
        // (in the note's modifiedDocument, as a linked note must give it) and
        // its buyer, whom a linked note must name too. One that gave another
        // date named another factura, and never holds this one's credit.
        let credited = try transaction.query(
            """
            SELECT coalesce(sum(c.total), 0)::text
              FROM documents c JOIN document_submissions cs ON cs.tenant_id = c.tenant_id AND cs.document_id = c.id
             WHERE (c.modified_document_id = \(id)
                    OR (c.modified_document_id IS NULL AND c.modified_number IS NOT NULL AND c.issuer_id = \(issuer.id)
                        AND c.environment = \(issuer.environment.rawValue) AND c.modified_number = \(modified.number)
                        AND c.buyer_id_type = \(buyerIDType) AND c.buyer_id = \(buyerID)
                        AND c.body::jsonb #>> '{modifiedDocument,issueDate}' = \(issueDate)))
               AND cs.status NOT IN ('RETURNED', 'NOT_AUTHORIZED')
            """
        )
        let factura = try ExactDecimal(parsing: totalText)
        let already = try ExactDecimal(parsing: try credited[0].decode(String.self, at: 0))
        guard already + note.totals.total <= factura else {
            throw APIError.conflict(
                .creditExceedsTotal,
                "Credit notes may not exceed the factura's total of \(factura.text(places: 2)): "
                    + "\(already.text(places: 2)) is already credited, this one adds \(note.totals.total.text(places: 2)).")
        }
        return id
    }

    /// Takes the next number of the counter (creating it at 1). Its row lock is
    /// held from here to COMMIT: numbers are gapless and unique.
    ///
    /// The counter exists for every document but an issuer's first of its
    /// type and environment (promotion makes all of them): a plain UPDATE
    /// takes the number, which costs PostgreSQL less than the upsert's
    /// insert attempt (docs/adr/007-request-cpu.md, item 28). Only when it
    /// finds no row does the upsert create the counter, or take the number
    /// from a counter a concurrent first document has just created.
    static func takeNumber(_ transaction: Transaction, issuer: ResolvedIssuer, documentType: String) throws -> Int {
        do {
            let advanced = try transaction.query(
                """
                UPDATE sequentials SET next_sequential = next_sequential + 1
                 WHERE tenant_id = current_tenant_id() AND issuer_id = \(issuer.id) AND document_type = \(documentType)
                   AND environment = \(issuer.environment.rawValue)
                RETURNING next_sequential - 1
                """
            )
            if advanced.count == 1 { return try advanced[0].decode(Int.self, at: 0) }
            let counter = try transaction.query(
                """
                INSERT INTO sequentials AS s (tenant_id, issuer_id, document_type, environment, next_sequential)
                VALUES (current_tenant_id(), \(issuer.id), \(documentType), \(issuer.environment.rawValue), 2)
                ON CONFLICT (tenant_id, issuer_id, document_type, environment)
                DO UPDATE SET next_sequential = s.next_sequential + 1
                RETURNING next_sequential - 1
                """
            )
            return try counter[0].decode(Int.self, at: 0)
        } catch let error as PostgresError where error.constraint == "sequentials_next_in_range" {
            throw APIError.conflict(.sequentialExhausted, "The counter of this issuer and document type is exhausted (999999999 reached).")
        }
    }

    /// A document ready to store: numbered, signed, with its computed body
    /// (`DocumentBody.json`, made before the counter's lock is taken).
    struct Signed {
        let comprobante: Comprobante
        let body: JSONValue
        let sequential: Int
        let accessKey: String
        let xml: [UInt8]
        let metadata: String
        let modifiedDocumentID: Int64?
    }

    /// Stores the document, its submission row (SIGNED, due now) and the
    /// Idempotency-Key's pointer to it, and commits in the same round trip.
    ///
    /// With `takingNumber` the same statement takes the number from the
    /// counter first, and the document stores only if the counter gives the
    /// number it was signed with (`signed.sequential`, foreseen by
    /// `NumberForecast`): the counter's row is then locked only while
    /// PostgreSQL runs this round trip, no Swift code in between. Another
    /// number leaves the sequential NULL, which the column refuses: nothing
    /// commits and `ForecastMissed` is thrown. `numbered` is called as soon as
    /// that statement has been answered, before COMMIT's answer: true when the
    /// document was stored with its number.
    static func store(
        _ transaction: Transaction, issuer: ResolvedIssuer, _ signed: Signed, idempotencyKey: String?, takingNumber: Bool = false,
        numbered: (Bool) -> Void = { _ in }
    ) throws -> JSONValue {
        let comprobante = signed.comprobante
        var modifiedNumber: String?
        if case .creditNote(let note) = comprobante { modifiedNumber = note.modifiedDocument.number }
        let number = issuer.number(signed.sequential)
        let body = signed.body
        let insert: PostgresQuery
        if takingNumber {
            insert = """
                WITH n AS (
                    UPDATE sequentials SET next_sequential = next_sequential + 1
                     WHERE tenant_id = current_tenant_id() AND issuer_id = \(issuer.id) AND document_type = \(comprobante.kind.rawValue)
                       AND environment = \(issuer.environment.rawValue)
                    RETURNING next_sequential - 1 AS sequential
                ), d AS (
                    -- NULL, refused by the column, unless the counter gave the number the XML is signed with.
                    INSERT INTO documents (\(unescaped: insertedColumns))
                    VALUES (current_tenant_id(), \(issuer.id), \(comprobante.kind.rawValue), \(issuer.environment.rawValue),
                            (SELECT sequential FROM n WHERE sequential = \(signed.sequential)),
                            \(number), \(signed.accessKey), \(comprobante.issueDate.iso)::date, \(signed.metadata)::json,
                            \(body.serialized)::json, \(Data(signed.xml)), \(comprobante.totals.total.text(places: 2))::numeric,
                            \(comprobante.buyer.idType), \(comprobante.buyer.id), \(modifiedNumber), \(signed.modifiedDocumentID))
                    RETURNING \(unescaped: returnedColumns)
                ), \(unescaped: submissionAndAnswer)
                """
        } else {
            insert = """
                WITH d AS (
                    INSERT INTO documents (\(unescaped: insertedColumns))
                    VALUES (current_tenant_id(), \(issuer.id), \(comprobante.kind.rawValue), \(issuer.environment.rawValue), \(signed.sequential),
                            \(number), \(signed.accessKey), \(comprobante.issueDate.iso)::date, \(signed.metadata)::json,
                            \(body.serialized)::json, \(Data(signed.xml)), \(comprobante.totals.total.text(places: 2))::numeric,
                            \(comprobante.buyer.idType), \(comprobante.buyer.id), \(modifiedNumber), \(signed.modifiedDocumentID))
                    RETURNING \(unescaped: returnedColumns)
                ), \(unescaped: submissionAndAnswer)
                """
        }
        var statements = [insert]
        if let idempotencyKey {
            statements.append(
                """
                UPDATE idempotency_keys SET document_id = currval(pg_get_serial_sequence('documents', 'id'))
                 WHERE key = \(idempotencyKey)
                """
            )
        }
        let inserted: [QueryResult]
        do {
            // Only a statement that takes the number has its answer asked for before COMMIT's.
            inserted =
                try takingNumber ? transaction.commit(after: statements, answeredFirst: numbered) : transaction.commit(after: statements)
        } catch let error as PostgresError where takingNumber && error.hasCode(.notNullViolation) && error.column == "sequential" {
            throw ForecastMissed()
        } catch let error as PostgresError where takingNumber && error.constraint == "sequentials_next_in_range" {
            throw APIError.conflict(.sequentialExhausted, "The counter of this issuer and document type is exhausted (999999999 reached).")
        }
        return try document(inserted[0][0], body: body)
    }

    /// The counter gave another number than the one a document was signed
    /// with (`store(takingNumber: true)`); nothing was stored.
    struct ForecastMissed: Error {}

    /// Documents sent together (`store(together:)`) were certainly not
    /// stored (the counter gave other numbers, or the statement was refused):
    /// each request issues again on its own.
    struct NotStoredTogether: Error {}

    /// Stores facturas of one counter signed ahead with consecutive numbers,
    /// `documents[0].sequential` first, in one statement that takes all their
    /// numbers from the counter at once, and commits in the same round trip:
    /// `store(takingNumber: true)` for several documents. They store only if
    /// the counter gives exactly those numbers (else `ForecastMissed`, and
    /// nothing moved). Returns each document as its 201 shows it, in order.
    /// No credit note and no Idempotency-Key goes this way.
    static func store(
        _ transaction: Transaction, issuer: ResolvedIssuer, together documents: [Signed], numbered: (Bool) -> Void
    ) throws -> [JSONValue] {
        guard let first = documents.first, let kind = documents.first?.comprobante.kind.rawValue else { return [] }
        let rows = try documents.enumerated().map { index, signed -> SQLFragment in
            let comprobante = signed.comprobante
            // Consecutive documents of one counter, no credit note: as `NumberForecast` takes them.
            guard signed.sequential == first.sequential + index, comprobante.kind.rawValue == kind, comprobante.kind != .creditNote
            else { throw APIError.internalError }
            return """
                (\(index)::int, \(issuer.number(signed.sequential))::text, \(signed.accessKey)::text, \(comprobante.issueDate.iso)::date, \
                \(signed.metadata)::json, \(signed.body.serialized)::json, \(Data(signed.xml))::bytea, \
                \(comprobante.totals.total.text(places: 2))::numeric, \(comprobante.buyer.idType)::text, \(comprobante.buyer.id)::text)
                """
        }
        let environment = issuer.environment.rawValue
        let insert: PostgresQuery = """
            WITH n AS (
                UPDATE sequentials SET next_sequential = next_sequential + \(documents.count)
                 WHERE tenant_id = current_tenant_id() AND issuer_id = \(issuer.id) AND document_type = \(kind)
                   AND environment = \(environment)
                RETURNING next_sequential - \(documents.count) AS first
            ), d AS (
                -- NULL, refused by the column, unless the counter gave the numbers the XMLs are signed with.
                INSERT INTO documents (\(unescaped: insertedColumns))
                SELECT current_tenant_id(), \(issuer.id)::bigint, \(kind)::text, \(environment)::text,
                       (SELECT first FROM n WHERE first = \(first.sequential)) + v.i, v.number, v.access_key,
                       v.issue_date, v.metadata, v.body, v.xml, v.total, v.buyer_id_type, v.buyer_id, NULL, NULL
                  FROM (VALUES \(rows, separator: ", "))
                       AS v (i, number, access_key, issue_date, metadata, body, xml, total, buyer_id_type, buyer_id)
                 ORDER BY v.i
                RETURNING \(unescaped: returnedColumns)
            ), s AS (
                INSERT INTO document_submissions (tenant_id, document_id, environment) SELECT tenant_id, id, environment FROM d
                RETURNING document_id, status, attempts, last_error, next_attempt_at, messages, authorization_number, authorized_at
            )
            SELECT \(unescaped: storedColumns) FROM d JOIN s ON s.document_id = d.id ORDER BY d.sequential
            """
        let inserted: [QueryResult]
        do {
            inserted = try transaction.commit(after: [insert], answeredFirst: numbered)
        } catch let error as PostgresError where error.hasCode(.notNullViolation) && error.column == "sequential" {
            throw ForecastMissed()
        }
        let stored = inserted[0]
        guard stored.count == documents.count else { throw APIError.internalError }
        return try documents.indices.map { index in
            guard try stored[index].decode(Int.self, at: 4) == documents[index].sequential else { throw APIError.internalError }
            return try document(stored[index], body: documents[index].body)
        }
    }

    private static let insertedColumns = """
        tenant_id, issuer_id, document_type, environment, sequential, number, access_key, issue_date, \
        metadata, body, xml, total, buyer_id_type, buyer_id, modified_number, modified_document_id
        """
    private static let returnedColumns = """
        tenant_id, id, issuer_id, document_type, environment, sequential, number, access_key, issue_date, metadata, created_at
        """
    private static let submissionAndAnswer = """
        s AS (
            INSERT INTO document_submissions (tenant_id, document_id, environment) SELECT tenant_id, id, environment FROM d
            RETURNING status, attempts, last_error, next_attempt_at, messages, authorization_number, authorized_at
        )
        SELECT \(storedColumns) FROM d, s
        """

    /// The document an unexpired Idempotency-Key answered for this issuer and
    /// this request body, in the issuer's environment, as its first response
    /// showed it; nil when there is none. For a repeat whose body no longer
    /// passes validation (a rule made stricter since it was accepted): it is
    /// answered what the request was answered, as any repeat is (`claim`'s
    /// replay, read without claiming).
    static func replay(key: String, issuer: Int64, environment: Environment, digest: Data) -> Read<JSONValue?> {
        Read(
            """
            SELECT \(unescaped: firstResponseColumns)
              FROM idempotency_keys k
              JOIN \(unescaped: from) ON d.tenant_id = k.tenant_id AND d.id = k.document_id
             WHERE k.key = \(key) AND k.expires_at >= now() AND k.issuer_id = \(issuer) AND k.request_digest = \(digest)
               AND d.environment = \(environment.rawValue)
            """
        ) { result in
            try result.first.map { try document($0) }
        }
    }

    /// Claims an Idempotency-Key for this request, or returns the first
    /// response of the earlier request that holds it (the document as it was
    /// stored: status SIGNED, whatever SRI has decided since, as API.md's
    /// "returns the first response again" says). A concurrent request with the same key
    /// waits on the primary key until the first commits (then replays it) or
    /// rolls back (then claims the key itself).
    ///
    /// A key whose document is of another environment than the issuer's now
    /// (used in sandbox, repeated after the promotion) starts over when the
    /// repeat is the same request (issuer and body): it issues a production
    /// document, never replays a sandbox one. With another issuer or body it
    /// is 409, as for any key.
    static func claim(_ transaction: Transaction, key: String, issuer: Int64, environment: Environment, digest: Data) throws
        -> JSONValue?
    {
        let claimed = try transaction.query(
            """
            INSERT INTO idempotency_keys AS k (tenant_id, key, issuer_id, request_digest)
            VALUES (current_tenant_id(), \(key), \(issuer), \(digest))
            ON CONFLICT (tenant_id, key) DO UPDATE
               SET issuer_id = excluded.issuer_id, request_digest = excluded.request_digest, document_id = NULL,
                   created_at = now(), expires_at = now() + interval '24 hours'
             WHERE k.expires_at < now()
                OR (k.issuer_id = excluded.issuer_id AND k.request_digest = excluded.request_digest
                    AND EXISTS (SELECT 1 FROM documents d
                                 WHERE d.tenant_id = k.tenant_id AND d.id = k.document_id AND d.environment <> \(environment.rawValue)))
            RETURNING 1
            """
        )
        if claimed.count == 1 { return nil }
        let earlier = try transaction.query(
            """
            SELECT k.issuer_id, k.request_digest, doc.*
              FROM idempotency_keys k,
                   LATERAL (SELECT \(unescaped: firstResponseColumns) FROM \(unescaped: from) WHERE d.id = k.document_id) AS doc
             WHERE k.key = \(key)
            """
        )
        guard let row = earlier.first, try row.decode((Int64, Data).self) == (issuer, digest) else {
            throw APIError.conflict(
                .idempotencyKeyReused, "This Idempotency-Key was already used with another issuer or another request body.")
        }
        return try document(row, offset: 2)
    }
}

extension ArraySlice<UInt8> {
    /// Without JSON's whitespace (space, tab, line feed, carriage return) at either end.
    fileprivate func trimmingJSONWhitespace() -> ArraySlice<UInt8> {
        func isSpace(_ byte: UInt8) -> Bool { byte == 0x20 || byte == 0x09 || byte == 0x0a || byte == 0x0d }
        var (start, end) = (startIndex, endIndex)
        while start < end, isSpace(self[start]) { start += 1 }
        while end > start, isSpace(self[end - 1]) { end -= 1 }
        return self[start..<end]
    }
}
