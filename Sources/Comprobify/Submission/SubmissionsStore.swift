import Foundation
import Postgres

/// A document claimed from the queue, as its worker needs it.
struct QueuedDocument: Sendable {
    let tenantID: Int64
    let documentID: Int64
    let status: SubmissionStatus
    let streak: Int
    let attempts: Int
    let accessKey: String
    let environment: Environment
    /// The signed comprobante; nil only for rows that predate comprobantes.
    let xml: [UInt8]?
}

/// The SQL of document_submissions (where each document stands with SRI) and
/// sri_exchanges (every exchange). Runs in a transaction of the document's tenant.
enum SubmissionsStore {
    /// The document claimed under `lease`, when that lease still holds and the
    /// document still waits for SRI; nil otherwise. The lease is stamped
    /// again, `leaseMilliseconds` from now: a document claimed ahead (ClaimLoop)
    /// may have waited for a worker, and its exchange must still end inside
    /// the lease. A lease that lapsed while it waited is not taken up again
    /// (another process may be about to claim the document).
    static func load(tenantID: Int64, documentID: Int64, lease: UUID, leaseMilliseconds: Int) -> Read<QueuedDocument?> {
        Read(
            """
            WITH held AS (
                UPDATE document_submissions
                   SET leased_until = now() + \(leaseMilliseconds)::integer * interval '1 millisecond'
                 WHERE tenant_id = \(tenantID) AND document_id = \(documentID) AND leased_by = \(lease.uuidString)::uuid
                   AND leased_until > now() AND status IN ('SIGNED', 'RECEIVED')
                RETURNING tenant_id, document_id, status, streak, attempts
            )
            SELECT s.status, s.streak, s.attempts, d.access_key, d.environment, d.xml
              FROM held s
              JOIN documents d ON d.tenant_id = s.tenant_id AND d.id = s.document_id
            """
        ) { result in
            guard let row = result.first else { return nil }
            let (status, streak, attempts, accessKey, environment, xml) = try row.decode((String, Int, Int, String, String, Data?).self)
            guard let status = SubmissionStatus(rawValue: status) else {
                throw PostgresError(kind: .decoding, message: "unknown submission status in the database")
            }
            return QueuedDocument(
                tenantID: tenantID, documentID: documentID, status: status, streak: streak, attempts: attempts,
                accessKey: accessKey, environment: try Environment(column: environment), xml: xml.map { [UInt8]($0) })
        }
    }

    /// Lets the lease go without an exchange (a document that cannot be sent).
    static func release(_ transaction: Transaction, tenantID: Int64, documentID: Int64, lease: UUID, retryMilliseconds: Int) throws {
        try transaction.query(
            """
            UPDATE document_submissions
               SET leased_by = NULL, leased_until = NULL,
                   next_attempt_at = now() + \(retryMilliseconds)::integer * interval '1 millisecond'
             WHERE tenant_id = \(tenantID) AND document_id = \(documentID) AND leased_by = \(lease.uuidString)::uuid
            """)
    }

    /// One exchange and what it changed, in one statement: the submission moves
    /// to the transition's state (when its claim's `lease` still holds it), the
    /// lease is let go, and the exchange is recorded, as made by the process
    /// `worker` under `lease`, with the state it really left. The exchange
    /// counts among the submission's `attempts` either way (SRI.md: every
    /// exchange so far). When the document already has an exchange under
    /// `lease` (an earlier try of this record committed and its answer was
    /// lost), it does nothing: a claim makes one exchange (migration 0030), so
    /// the record may be tried again. Its one row says which: see `outcome`.
    static func record(
        document: QueuedDocument, service: SRIService, url: String, result: ExchangeResult,
        transition: Transition, durationMilliseconds: Int, lease: UUID, worker: UUID
    ) -> PostgresQuery {
        // SRI sends a handful; the first ones of thousands say what they say.
        let messages = transition.messages.map { JSONValue.array($0.prefix(ExchangeResult.keptEntries).map(\.json)).serialized }
        let answer = result.answerJSON?.serialized
        let error = result.error
        let number = transition.authorization?.number
        let authorizedAt = transition.authorization?.date
        let element = transition.authorization.map { Data($0.element) }
        return """
            WITH fresh AS (
                SELECT NOT EXISTS (
                    SELECT FROM sri_exchanges
                     WHERE tenant_id = \(document.tenantID) AND document_id = \(document.documentID)
                       AND lease = \(lease.uuidString)::uuid
                ) AS yes
            ), changed AS (
                UPDATE document_submissions
                   SET status = \(transition.status.rawValue),
                       attempts = attempts + 1,
                       last_error = \(transition.lastError),
                       streak = \(transition.streak),
                       next_attempt_at = now() + \(transition.nextAttemptMilliseconds)::integer * interval '1 millisecond',
                       messages = coalesce(\(messages)::json, messages),
                       authorization_number = \(number),
                       authorized_at = \(authorizedAt)::timestamptz,
                       authorization_xml = \(element)::bytea,
                       leased_by = NULL, leased_until = NULL,
                       updated_at = now()
                 WHERE tenant_id = \(document.tenantID) AND document_id = \(document.documentID) AND leased_by = \(lease.uuidString)::uuid
                   AND status = \(document.status.rawValue) AND (SELECT yes FROM fresh)
                RETURNING status
            ), counted AS (
                -- The lease was lost (the document was claimed again): the
                -- exchange still counts among the document's attempts.
                UPDATE document_submissions SET attempts = attempts + 1, updated_at = now()
                 WHERE tenant_id = \(document.tenantID) AND document_id = \(document.documentID)
                   AND NOT EXISTS (SELECT FROM changed) AND (SELECT yes FROM fresh)
            ), recorded AS (
                INSERT INTO sri_exchanges (tenant_id, document_id, service, url, outcome, http_status, duration_ms,
                                           status_before, status_after, answer, error, worker, lease)
                SELECT \(document.tenantID), \(document.documentID), \(service.rawValue), \(url), \(transition.outcome),
                       \(transition.httpStatus), \(durationMilliseconds), \(document.status.rawValue),
                       coalesce((SELECT status FROM changed), \(document.status.rawValue)), \(answer)::json, \(error),
                       \(worker.uuidString)::uuid, \(lease.uuidString)::uuid
                 WHERE (SELECT yes FROM fresh)
            )
            SELECT (SELECT count(*) FROM changed), (SELECT yes FROM fresh)
            """
    }

    /// Locks the submission's row before `record` is tried again, in a
    /// statement of its own: `record` then reads its snapshot after any
    /// transaction that held the row has ended, so an earlier try whose commit
    /// was still under way (its connection lost) is seen as recorded, not
    /// recorded again. A first try needs no lock: no other claim records under
    /// its lease.
    static func lockForRecord(tenantID: Int64, documentID: Int64) -> PostgresQuery {
        "SELECT 1 FROM document_submissions WHERE tenant_id = \(tenantID) AND document_id = \(documentID) FOR UPDATE"
    }

    /// What `record` did.
    enum RecordOutcome: Equatable {
        /// The submission moved to the transition's state.
        case applied
        /// The exchange was recorded and counted, and changed nothing: the
        /// claim had lost the document's lease.
        case leaseLost
        /// Nothing: an earlier try of the same record had committed.
        case recordedBefore
    }

    static func outcome(_ result: QueryResult) throws -> RecordOutcome {
        let (changed, fresh) = try result[0].decode((Int64, Bool).self)
        if !fresh { return .recordedBefore }
        return changed == 1 ? .applied : .leaseLost
    }

    /// What GET /v1/documents/:accessKey/authorization needs: whether the
    /// issuer has the document, and its `<autorizacion>` once AUTHORIZED.
    enum AuthorizationLookup: Sendable {
        case noDocument
        case notYet(status: String)
        case authorized([UInt8])
    }

    static func authorization(issuer: Int64, accessKey: String) -> Read<AuthorizationLookup> {
        Read(
            """
            SELECT coalesce(s.status, \(unescaped: "'\(DocumentsStore.legacyStatus)'")), s.authorization_xml
              FROM documents d
              LEFT JOIN document_submissions s ON s.tenant_id = d.tenant_id AND s.document_id = d.id
             WHERE d.issuer_id = \(issuer) AND d.access_key = \(accessKey)
            """
        ) { result in
            guard let row = result.first else { return .noDocument }
            let (status, xml) = try row.decode((String, Data?).self)
            if status == SubmissionStatus.authorized.rawValue, let xml { return .authorized([UInt8](xml)) }
            return .notYet(status: status)
        }
    }
}
