import Foundation
import Postgres

/// The SQL of webhook endpoints, events, deliveries and attempts. Every
/// function runs in the caller's tenant transaction; row-level security
/// scopes it to that tenant.
enum WebhooksStore {
    /// Active endpoints per tenant and environment.
    static let limit = 10

    /// The previous secret's expiry is shown only while it still signs.
    static let columns = """
        id, url, events, environment, created_at,
        CASE WHEN previous_secret_expires_at > now() THEN previous_secret_expires_at END AS previous_secret_expires_at
        """

    /// A webhook as the API shows it, from `columns`.
    static func webhook(_ row: Row) throws -> JSONValue {
        .object([
            ("id", try row.int(at: 0)),
            ("url", try row.string(at: 1)),
            ("events", .array(try row.decode([String].self, at: 2).map { .string($0) })),
            ("environment", try row.string(at: 3)),
            ("createdAt", try row.timestamp(at: 4)),
            ("previousSecretExpiresAt", try row.timestamp(at: 5)),
        ])
    }

    static let notFound = APIError.notFound("No webhook with this id.")

    /// The tenant row, locked as promotion locks it, so that two creations
    /// cannot both see nine endpoints (`Database.transactionHoldingTenantRow`).
    static let tenantRow: PostgresQuery =
        "SELECT status, environment FROM tenants WHERE id = current_tenant_id() FOR NO KEY UPDATE"

    /// Active endpoints of every environment, oldest first; callers keep the key's.
    static let active = Read<[(environment: String, json: JSONValue)]>(
        "SELECT \(unescaped: columns) FROM webhook_endpoints WHERE deleted_at IS NULL ORDER BY id"
    ) { result in
        try result.rows.map { (try $0.decode(String.self, at: 3), try webhook($0)) }
    }

    /// The associated data binding a sealed secret to its tenant and endpoint.
    static func associatedData(tenantID: Int64, webhookID: Int64) -> [UInt8] {
        Array("comprobify/webhook-secret/v1 tenant=\(tenantID) webhook=\(webhookID)".utf8)
    }

    /// Creates an endpoint of `environment` with a new secret, sealed, and
    /// commits; 409 past `limit` active ones. Needs the tenant row locked.
    static func create(
        _ transaction: Transaction, tenantID: Int64, keyID: Int64, environment: Environment, url: String,
        events: [WebhookEventType], secretBox: SecretBox
    ) throws -> (webhook: JSONValue, secret: String) {
        let found = try transaction.query(
            """
            SELECT count(*), nextval('webhook_endpoints_id_seq')
              FROM webhook_endpoints WHERE environment = \(environment.rawValue) AND deleted_at IS NULL
            """)
        let (count, id) = try found[0].decode((Int64, Int64).self)
        guard count < limit else {
            throw APIError.conflict(
                .limitReached,
                "The tenant already has \(limit) webhooks in \(environment.rawValue): delete one before adding another.")
        }
        let secret = WebhookSignature.generateSecret()
        let sealed = secretBox.seal(Array(secret.utf8), associatedData: associatedData(tenantID: tenantID, webhookID: id))
        let inserted = try transaction.commit(after: [
            """
            WITH created AS (
                INSERT INTO webhook_endpoints (tenant_id, id, environment, url, events, sealed_secret, master_key_id, created_by_key_id)
                VALUES (current_tenant_id(), \(id), \(environment.rawValue), \(url), \(events.map(\.rawValue))::text[],
                        \(Data(sealed)), \(secretBox.currentKeyID), \(keyID))
                RETURNING \(unescaped: columns)
            ), audited AS (
                INSERT INTO audit_events (tenant_id, action, actor, actor_key_id, details)
                SELECT current_tenant_id(), 'webhook.created', 'tenant', \(keyID),
                       jsonb_build_object('webhookId', id, 'environment', environment, 'url', url, 'events', events)
                  FROM created
            )
            SELECT * FROM created
            """
        ])
        return (try webhook(inserted[0][0]), secret)
    }

    /// Changes the url and/or events of the active endpoint `id` of
    /// `environment`, records `webhook.updated` (what changed and from what, as
    /// done by the key `actorKeyID`; nothing for a change to the same values),
    /// and commits; 404 when there is none.
    static func update(
        _ transaction: Transaction, id: Int64, environment: Environment, url: String?, events: [WebhookEventType]?, actorKeyID: Int64
    ) throws -> JSONValue {
        let results = try transaction.commit(after: [
            """
            WITH before AS (
                -- The row as the statement's snapshot has it: what the change replaces.
                SELECT id, url, events FROM webhook_endpoints
                 WHERE id = \(id) AND environment = \(environment.rawValue) AND deleted_at IS NULL
            ), changed AS (
                UPDATE webhook_endpoints
                   SET url = coalesce(\(url)::text, url), events = coalesce(\(events?.map(\.rawValue))::text[], events)
                 WHERE id = \(id) AND environment = \(environment.rawValue) AND deleted_at IS NULL
                RETURNING \(unescaped: columns)
            ), audited AS (
                -- What changed, from what; a change to the same values is not one.
                INSERT INTO audit_events (tenant_id, action, actor, actor_key_id, details)
                SELECT current_tenant_id(), 'webhook.updated', 'tenant', \(actorKeyID),
                       jsonb_strip_nulls(jsonb_build_object(
                           'webhookId', c.id, 'environment', c.environment,
                           'url', CASE WHEN c.url IS DISTINCT FROM b.url THEN c.url END,
                           'previousUrl', CASE WHEN c.url IS DISTINCT FROM b.url THEN b.url END,
                           'events', CASE WHEN c.events IS DISTINCT FROM b.events THEN c.events END,
                           'previousEvents', CASE WHEN c.events IS DISTINCT FROM b.events THEN b.events END))
                  FROM changed c JOIN before b ON b.id = c.id
                 WHERE c.url IS DISTINCT FROM b.url OR c.events IS DISTINCT FROM b.events
            )
            SELECT * FROM changed
            """
        ])
        guard let row = results[0].first else { throw notFound }
        return try webhook(row)
    }

    /// Deletes an active endpoint of `environment`, gives up its pending
    /// deliveries, records `webhook.deleted` as done by the key `actorKeyID`,
    /// and commits; 404 when there is none.
    static func delete(_ transaction: Transaction, id: Int64, environment: Environment, actorKeyID: Int64) throws {
        let results = try transaction.commit(after: [
            """
            WITH deleted AS (
                UPDATE webhook_endpoints SET deleted_at = now()
                 WHERE id = \(id) AND environment = \(environment.rawValue) AND deleted_at IS NULL
                RETURNING id, environment, url
            ), audited AS (
                INSERT INTO audit_events (tenant_id, action, actor, actor_key_id, details)
                SELECT current_tenant_id(), 'webhook.deleted', 'tenant', \(actorKeyID),
                       jsonb_build_object('webhookId', id, 'environment', environment, 'url', url)
                  FROM deleted
            ), abandoned AS (
                UPDATE webhook_deliveries
                   SET status = 'failed', next_attempt_at = NULL, leased_by = NULL, leased_until = NULL,
                       last_error = 'the webhook was deleted', updated_at = now()
                 WHERE endpoint_id IN (SELECT id FROM deleted) AND status = 'pending'
            )
            SELECT count(*) FROM deleted
            """
        ])
        guard try results[0].first?.decode(Int64.self, at: 0) == 1 else { throw notFound }
    }

    /// Gives the active endpoint `id` of `environment` a new secret and
    /// commits, recording `webhook.secret_rotated` as done by `actorKeyID`.
    /// The secret it replaces is sealed again as the previous one, under the
    /// current master key, and keeps signing for the seconds `request` asks
    /// (none: it stops at once); an older previous secret is dropped. A
    /// secret that no longer opens (its master key gone) is not kept. 404
    /// when there is no such endpoint, then the request's own 400.
    static func rotateSecret(
        _ transaction: Transaction, tenantID: Int64, id: Int64, environment: Environment, request: Result<SecretRotationRequest, any Error>,
        actorKeyID: Int64, secretBox: SecretBox
    ) throws -> (webhook: JSONValue, secret: String) {
        let found = try transaction.query(
            """
            SELECT sealed_secret FROM webhook_endpoints
             WHERE id = \(id) AND environment = \(environment.rawValue) AND deleted_at IS NULL
               FOR NO KEY UPDATE
            """)
        guard let row = found.first else { throw notFound }
        let keepSeconds = try request.get().keepPreviousSeconds
        let associatedData = associatedData(tenantID: tenantID, webhookID: id)
        let replaced = Array(try row.decode(Data.self, at: 0))
        let previous = keepSeconds > 0 ? (try? secretBox.resealed(replaced, associatedData: associatedData)).map { Data($0) } : nil
        let secret = WebhookSignature.generateSecret()
        let sealed = secretBox.seal(Array(secret.utf8), associatedData: associatedData)
        let updated = try transaction.commit(after: [
            """
            WITH rotated AS (
                UPDATE webhook_endpoints
                   SET sealed_secret = \(Data(sealed)), master_key_id = \(secretBox.currentKeyID),
                       previous_sealed_secret = \(previous),
                       previous_secret_expires_at = CASE WHEN \(previous)::bytea IS NULL THEN NULL
                                                         ELSE now() + make_interval(secs => \(keepSeconds)::double precision) END
                 WHERE id = \(id) AND environment = \(environment.rawValue) AND deleted_at IS NULL
                RETURNING \(unescaped: columns)
            ), audited AS (
                INSERT INTO audit_events (tenant_id, action, actor, actor_key_id, details)
                SELECT current_tenant_id(), 'webhook.secret_rotated', 'tenant', \(actorKeyID),
                       jsonb_build_object('webhookId', id, 'environment', environment,
                                          'previousSecretExpiresAt', previous_secret_expires_at)
                  FROM rotated
            )
            SELECT * FROM rotated
            """
        ])
        guard let webhook = updated[0].first else { throw notFound }
        return (try self.webhook(webhook), secret)
    }

    /// Makes the delivery of `eventID` to the active endpoint `endpoint` of
    /// `environment` due now, and commits: an ended one (delivered or failed)
    /// is pending again, one waiting for a retry is moved to now, one being
    /// attempted (leased) is left to that attempt. Its retries after this
    /// attempt stay within the retry window of the event. Returns the
    /// delivery's status; 404 when there is none.
    static func redeliver(_ transaction: Transaction, endpoint: Int64, eventID: String, environment: Environment) throws -> String {
        let results = try transaction.commit(after: [
            """
            WITH target AS (
                SELECT d.id, d.leased_by IS NOT NULL AND d.leased_until > now() AS in_flight
                  FROM webhook_deliveries d
                  JOIN webhook_endpoints w ON w.tenant_id = d.tenant_id AND w.id = d.endpoint_id
                 WHERE d.endpoint_id = \(endpoint) AND d.event_id = \(eventID)
                   AND w.environment = \(environment.rawValue) AND w.deleted_at IS NULL
                   FOR UPDATE OF d
            ), due AS (
                -- An ended delivery back to pending counts a redelivery (the
                -- one change of an ended delivery the table allows: 0083).
                UPDATE webhook_deliveries d
                   SET redeliveries = d.redeliveries + CASE WHEN d.status = 'pending' THEN 0 ELSE 1 END,
                       status = 'pending', next_attempt_at = now(), leased_by = NULL, leased_until = NULL, updated_at = now()
                  FROM target t
                 WHERE d.id = t.id AND NOT t.in_flight
                RETURNING d.status
            )
            SELECT coalesce((SELECT status FROM due), 'pending') FROM target
            """
        ])
        guard let row = results[0].first else {
            throw APIError.notFound("No webhook with this id has a delivery of this event.")
        }
        return try row.decode(String.self, at: 0)
    }

    /// Whether an active endpoint of `environment` has this id.
    static func exists(_ id: Int64) -> Read<String?> {
        Read("SELECT environment FROM webhook_endpoints WHERE id = \(id) AND deleted_at IS NULL") { result in
            try result.first?.decode(String.self, at: 0)
        }
    }

    /// The endpoint's latest attempts, newest first.
    static func attempts(endpoint id: Int64, limit: Int) -> Read<[JSONValue]> {
        // Up to `limit` rows over three tables: like a page of events (`events`), on a connection of its own.
        var query: PostgresQuery = """
            SELECT a.event_id, e.type, a.outcome, a.status_after, a.response_code, a.duration_ms, a.error, a.attempted_at,
                   d.status, d.attempts
              FROM webhook_delivery_attempts a
              JOIN webhook_events e ON e.tenant_id = a.tenant_id AND e.id = a.event_id
              JOIN webhook_deliveries d ON d.tenant_id = a.tenant_id AND d.id = a.delivery_id
             WHERE a.endpoint_id = \(id)
             ORDER BY a.id DESC LIMIT \(limit)
            """
        query.runsAlone = true
        return Read(query) { result in
            try result.rows.map { row in
                .object([
                    ("eventId", try row.string(at: 0)),
                    ("eventType", try row.string(at: 1)),
                    ("outcome", try row.string(at: 2)),
                    ("status", try row.string(at: 3)),
                    ("responseCode", try row.decode(Int64?.self, at: 4).map { JSONValue($0) } ?? .null),
                    ("durationMs", try row.int(at: 5)),
                    ("error", try row.string(at: 6)),
                    ("attemptedAt", try row.timestamp(at: 7)),
                    ("deliveryStatus", try row.string(at: 8)),
                    ("deliveryAttempts", try row.int(at: 9)),
                ])
            }
        }
    }

    /// The delivery states a list of an endpoint's events may ask for.
    static let deliveryStatuses = ["pending", "delivered", "failed"]

    /// The events routed to endpoint `id`, oldest first (by delivery), after
    /// the delivery `after`, at most `limit`, only those whose delivery is in
    /// `status` when given (one of `deliveryStatuses`), each with its delivery
    /// id (the page's cursor) and its JSON. The filter is written out per
    /// status, so that a generic plan still sees `webhook_deliveries_failed_by_endpoint`'s
    /// predicate (migrations 0086-0087).
    static func events(endpoint id: Int64, status: String?, after: Int64, limit: Int) -> Read<[(id: Int64, json: JSONValue)]> {
        let filter: String
        switch status {
        case "pending": filter = "AND d.status = 'pending'"
        case "delivered": filter = "AND d.status = 'delivered'"
        case "failed": filter = "AND d.status = 'failed'"
        default: filter = ""
        }
        var query: PostgresQuery = """
            SELECT d.id, d.event_id, e.type, d.status, d.attempts, d.redeliveries, d.last_response_code, d.last_error,
                   d.next_attempt_at, e.created_at, d.updated_at
              FROM webhook_deliveries d
              JOIN webhook_events e ON e.tenant_id = d.tenant_id AND e.id = d.event_id
             WHERE d.endpoint_id = \(id) AND d.id > \(after) \(unescaped: filter)
             ORDER BY d.id LIMIT \(limit)
            """
        // A status the endpoint has few of walks its deliveries: on a shared
        // connection every read sent behind it, any tenant's, would wait.
        query.runsAlone = true
        return Read(query) { result in
            try result.rows.map { row in
                (
                    try row.decode(Int64.self, at: 0),
                    .object([
                        ("eventId", try row.string(at: 1)),
                        ("eventType", try row.string(at: 2)),
                        ("deliveryStatus", try row.string(at: 3)),
                        ("attempts", try row.int(at: 4)),
                        ("redeliveries", try row.int(at: 5)),
                        ("lastResponseCode", try row.decode(Int64?.self, at: 6).map { JSONValue($0) } ?? .null),
                        ("lastError", try row.string(at: 7)),
                        ("nextAttemptAt", try row.timestamp(at: 8)),
                        ("createdAt", try row.timestamp(at: 9)),
                        ("updatedAt", try row.timestamp(at: 10)),
                    ])
                )
            }
        }
    }

    // MARK: - Events

    /// Records an event of `type` about `document` (its JSON as the API shows
    /// it) and one pending delivery per active endpoint of the tenant in
    /// `environment` subscribed to the type, in the caller's transaction: the
    /// event commits, or not, with the change that caused it. Returns the
    /// event's id (`evt_...`).
    @discardableResult
    static func recordEvent(_ transaction: Transaction, type: String, document: JSONValue, environment: Environment) throws -> String {
        guard let type = WebhookEventType(rawValue: type) else {
            throw PostgresError(kind: .decoding, message: "unknown webhook event type")
        }
        let id = "evt_" + Crypto.hex(Crypto.randomBytes(16))
        var documentID: Int64?
        if case .number(let text)? = document["id"] { documentID = Int64(text) }
        try transaction.query(
            """
            WITH event AS (
                INSERT INTO webhook_events (tenant_id, id, environment, type, document_id, payload)
                VALUES (current_tenant_id(), \(id), \(environment.rawValue), \(type.rawValue), \(documentID)::bigint,
                        \(document.serialized)::json)
                RETURNING tenant_id, id, created_at
            )
            INSERT INTO webhook_deliveries (tenant_id, event_id, endpoint_id, next_attempt_at, created_at)
            SELECT event.tenant_id, event.id, w.id, event.created_at, event.created_at
              FROM event, webhook_endpoints w
             WHERE w.environment = \(environment.rawValue) AND w.deleted_at IS NULL AND \(type.rawValue) = ANY (w.events)
            """)
        return id
    }

    /// For the SRI state machine: after a document's submission has moved to a
    /// final status in `transaction`, records the event that status causes
    /// (AUTHORIZED, NOT_AUTHORIZED, RETURNED) with the document as it now
    /// reads. Nil, and nothing written, for any other status.
    @discardableResult
    static func recordDecision(_ transaction: Transaction, documentID: Int64) throws -> String? {
        let found = try transaction.query(
            "SELECT \(unescaped: DocumentsStore.columns) FROM \(unescaped: DocumentsStore.from) WHERE d.id = \(documentID)")
        guard let row = found.first, let status = try row.decode(String?.self, at: 11),
            let type = WebhookEventType(finalStatus: status)
        else { return nil }
        let environment = try Environment(column: try row.decode(String.self, at: 3))
        return try recordEvent(transaction, type: type.rawValue, document: try DocumentsStore.document(row), environment: environment)
    }

    // MARK: - Deliveries (the workers' side)

    /// A claimed delivery, with what its attempt needs.
    struct Pending: Sendable {
        let tenantID: Int64
        let id: Int64
        let endpointID: Int64
        let eventID: String
        let url: String
        let sealedSecret: [UInt8]
        /// The secret a rotation replaced, while it still signs.
        let previousSealedSecret: [UInt8]?
        /// The exact body every attempt sends.
        let body: [UInt8]
    }

    /// The delivery, when its claim's `lease` still holds it and it is still
    /// pending. The lease is stamped again, `leaseMilliseconds` from now: a
    /// delivery claimed ahead (ClaimLoop) may have waited for a worker, and
    /// its attempt must still end inside the lease. A lease that lapsed while
    /// it waited is not taken up again (another process may claim it). A
    /// delivery whose endpoint was deleted (by a delete that committed beside
    /// the decision that made the delivery, so that it did not see it) fails
    /// here, as the delete would have failed it.
    static func load(_ transaction: Transaction, tenantID: Int64, deliveryID: Int64, lease: UUID, leaseMilliseconds: Int) throws
        -> Pending?
    {
        let found = try transaction.query(
            """
            WITH held AS (
                UPDATE webhook_deliveries
                   SET leased_until = now() + \(leaseMilliseconds)::integer * interval '1 millisecond'
                 WHERE id = \(deliveryID) AND leased_by = \(lease.uuidString)::uuid AND leased_until > now() AND status = 'pending'
                RETURNING tenant_id, endpoint_id, event_id
            )
            SELECT d.endpoint_id, d.event_id, e.type, e.created_at, e.payload::text, w.url, w.sealed_secret,
                   CASE WHEN w.previous_secret_expires_at > now() THEN w.previous_sealed_secret END
              FROM held d
              JOIN webhook_events e ON e.tenant_id = d.tenant_id AND e.id = d.event_id
              JOIN webhook_endpoints w ON w.tenant_id = d.tenant_id AND w.id = d.endpoint_id
             WHERE w.deleted_at IS NULL
            """)
        guard let row = found.first else {
            try transaction.query(
                """
                UPDATE webhook_deliveries d
                   SET status = 'failed', next_attempt_at = NULL, leased_by = NULL, leased_until = NULL,
                       last_error = 'the webhook was deleted', updated_at = now()
                  FROM webhook_endpoints w
                 WHERE d.id = \(deliveryID) AND d.leased_by = \(lease.uuidString)::uuid AND d.status = 'pending'
                   AND w.tenant_id = d.tenant_id AND w.id = d.endpoint_id AND w.deleted_at IS NOT NULL
                """)
            return nil
        }
        let (endpointID, eventID, type, _, payload, url, sealed) = try row.decode((Int64, String, String, Date, String, String, Data).self)
        let body = JSONValue.object([
            ("id", .string(eventID)),
            ("type", .string(type)),
            ("createdAt", try row.timestamp(at: 3)),
            ("data", .object([("document", .raw(payload))])),
        ]).serialized
        let previous = try row.decode(Data?.self, at: 7)
        return Pending(
            tenantID: tenantID, id: deliveryID, endpointID: endpointID, eventID: eventID, url: url, sealedSecret: [UInt8](sealed),
            previousSealedSecret: previous.map { [UInt8]($0) }, body: Array(body.utf8))
    }

    /// What one attempt came to.
    struct Outcome: Sendable {
        /// delivered, http_status, timeout, connection or refused_address.
        let kind: String
        let responseCode: Int?
        let durationMilliseconds: Int
        let error: String?

        var delivered: Bool { kind == "delivered" }
    }

    /// Records one attempt and what it changed, in one statement: the delivery
    /// becomes delivered, or is retried after `retryBaseMilliseconds` ×
    /// 2^(attempts so far), or fails once that retry would fall past
    /// `retryForSeconds` after the event; the lease is let go (when the claim's
    /// `lease` still holds it) and the attempt is kept, as made by the process
    /// `worker` under `lease`. Returns the delivery's status, or nil when the
    /// delivery has an attempt under `lease` already: an earlier try of this
    /// record committed, and this one changes nothing.
    @discardableResult
    static func record(
        _ transaction: Transaction, _ delivery: Pending, _ outcome: Outcome, lease: UUID, worker: UUID, retryBaseMilliseconds: Int,
        retryForSeconds: Int
    ) throws -> String? {
        let rows = try transaction.query(
            """
            WITH fresh AS (
                SELECT NOT EXISTS (
                    SELECT FROM webhook_delivery_attempts
                     WHERE tenant_id = current_tenant_id() AND delivery_id = \(delivery.id) AND lease = \(lease.uuidString)::uuid
                ) AS yes
            ), planned AS (
                -- The wait no longer than the window and a second: any longer
                -- fails the delivery all the same, and 2^attempts of a long
                -- base (redeliveries add attempts) passed PostgreSQL's last
                -- timestamp, which failed the record and posted the event
                -- again at each lease, for ever.
                SELECT d.id,
                       now() + make_interval(secs => least(\(retryBaseMilliseconds)::double precision / 1000
                                                            * power(2, least(d.attempts, 40)),
                                                            \(retryForSeconds)::double precision + 1)) AS next_at,
                       d.created_at + make_interval(secs => \(retryForSeconds)::double precision) AS give_up_at
                  FROM webhook_deliveries d
                 WHERE d.id = \(delivery.id) AND d.leased_by = \(lease.uuidString)::uuid AND d.status = 'pending'
                   AND (SELECT yes FROM fresh)
            ), changed AS (
                UPDATE webhook_deliveries d
                   SET status = CASE WHEN \(outcome.delivered) THEN 'delivered'
                                     WHEN p.next_at > p.give_up_at THEN 'failed' ELSE 'pending' END,
                       next_attempt_at = CASE WHEN \(outcome.delivered) OR p.next_at > p.give_up_at THEN NULL ELSE p.next_at END,
                       attempts = d.attempts + 1,
                       leased_by = NULL, leased_until = NULL,
                       last_response_code = \(outcome.responseCode)::integer,
                       last_duration_ms = \(outcome.durationMilliseconds),
                       last_error = \(outcome.error),
                       updated_at = now()
                  FROM planned p
                 -- The lease again: a claim that committed while this waited
                 -- for the row has taken the delivery over.
                 WHERE d.id = p.id AND d.leased_by = \(lease.uuidString)::uuid AND d.status = 'pending'
                RETURNING d.status
            ), recorded AS (
                INSERT INTO webhook_delivery_attempts (tenant_id, delivery_id, endpoint_id, event_id, outcome, response_code,
                                                       duration_ms, error, status_after, worker, lease)
                SELECT current_tenant_id(), \(delivery.id), \(delivery.endpointID), \(delivery.eventID), \(outcome.kind),
                       \(outcome.responseCode)::integer, \(outcome.durationMilliseconds), \(outcome.error),
                       coalesce((SELECT status FROM changed),
                                (SELECT status FROM webhook_deliveries WHERE id = \(delivery.id))),
                       \(worker.uuidString)::uuid, \(lease.uuidString)::uuid
                 WHERE (SELECT yes FROM fresh)
                RETURNING status_after
            )
            SELECT (SELECT status_after FROM recorded)
            """)
        return try rows[0].decode(String?.self, at: 0)
    }

    /// Locks the delivery's row before `record` is tried again, in a
    /// statement of its own: `record` then reads its snapshot after any
    /// transaction that held the row has ended, so an earlier try whose commit
    /// was still under way (its connection lost) is seen as recorded, not
    /// recorded again. A first try needs no lock: no other claim records under
    /// its lease.
    static func lockForRecord(deliveryID: Int64) -> PostgresQuery {
        "SELECT 1 FROM webhook_deliveries WHERE id = \(deliveryID) FOR UPDATE"
    }

    /// Lets the lease go without an attempt (a secret that does not open),
    /// to be looked at again after `retryMilliseconds`, with `error` as the
    /// delivery's last error; once that would fall past `retryForSeconds`
    /// after the event, the delivery fails, as one whose attempts never
    /// succeeded does.
    static func release(
        _ transaction: Transaction, deliveryID: Int64, lease: UUID, retryMilliseconds: Int, retryForSeconds: Int, error: String
    ) throws {
        try transaction.query(
            """
            WITH planned AS (
                SELECT id, now() + \(retryMilliseconds)::integer * interval '1 millisecond' AS next_at,
                       created_at + make_interval(secs => \(retryForSeconds)::double precision) AS give_up_at
                  FROM webhook_deliveries
                 WHERE id = \(deliveryID) AND leased_by = \(lease.uuidString)::uuid AND status = 'pending'
            )
            UPDATE webhook_deliveries d
               SET leased_by = NULL, leased_until = NULL,
                   status = CASE WHEN p.next_at > p.give_up_at THEN 'failed' ELSE 'pending' END,
                   next_attempt_at = CASE WHEN p.next_at > p.give_up_at THEN NULL ELSE p.next_at END,
                   last_error = \(error), updated_at = now()
              FROM planned p
             WHERE d.id = p.id AND d.leased_by = \(lease.uuidString)::uuid AND d.status = 'pending'
            """)
    }
}
