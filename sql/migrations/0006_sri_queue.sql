-- Sending to SRI: document_submissions becomes a queue shared by every server
-- process, and every exchange with SRI is kept in sri_exchanges.
--
-- A submission is due when next_attempt_at has come and nobody holds its
-- lease. Workers claim due rows across tenants through one SECURITY DEFINER
-- function, claim_sri_work(), which takes them FOR UPDATE SKIP LOCKED and
-- stamps a lease (leased_by, leased_until); each document is then processed
-- in a transaction of its own tenant, as comprobify_app, under row-level
-- security. The transaction that records an exchange also writes the state
-- change it caused and lets the lease go. A process that dies holding a lease
-- loses it when leased_until passes, and another process takes the work over.

-- ---------------------------------------------------------------------------
-- The queue: lease and backoff columns on document_submissions
-- ---------------------------------------------------------------------------

ALTER TABLE document_submissions
    ADD COLUMN queued_at    timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN streak       integer NOT NULL DEFAULT 0
        CONSTRAINT document_submissions_streak_not_negative CHECK (streak >= 0),
    ADD COLUMN leased_by    uuid,
    ADD COLUMN leased_until timestamptz,
    ADD CONSTRAINT document_submissions_lease_complete CHECK ((leased_by IS NULL) = (leased_until IS NULL));

COMMENT ON COLUMN document_submissions.queued_at IS 'When the document entered the queue (signed); how long a pending document has waited is measured from here.';
COMMENT ON COLUMN document_submissions.streak IS 'Consecutive exchanges that did not move the document forward (failed, or no decision yet). The next wait is SRI_RETRY_BASE_MS × 2^(streak − 1), at most SRI_RETRY_MAX_MS; 0 after progress.';
COMMENT ON COLUMN document_submissions.leased_by IS 'The worker that claimed the document (a random id per server process) while it talks to SRI; NULL when nobody holds it.';
COMMENT ON COLUMN document_submissions.leased_until IS 'When the lease ends (claim time + SRI_LEASE_MS). Past it, another worker may claim the document: its holder is taken for dead.';

-- The index of 0005 (next_attempt_at) serves the claim: due rows are those
-- with next_attempt_at <= now(); the lease is checked on the few rows found.

GRANT UPDATE (leased_by, leased_until, streak) ON document_submissions TO comprobify_app;

-- The claimer (comprobify_auth, owner of the definer functions) may see every
-- tenant's submissions and stamp leases on them; column grants keep it to the
-- queue columns.
CREATE POLICY document_submissions_claimer ON document_submissions FOR SELECT TO comprobify_auth USING (true);
CREATE POLICY document_submissions_claimer_lease ON document_submissions FOR UPDATE TO comprobify_auth USING (true) WITH CHECK (true);
GRANT SELECT (tenant_id, document_id, status, next_attempt_at, leased_by, leased_until, queued_at)
    ON document_submissions TO comprobify_auth;
GRANT UPDATE (leased_by, leased_until) ON document_submissions TO comprobify_auth;

-- ---------------------------------------------------------------------------
-- Claiming due work across tenants
-- ---------------------------------------------------------------------------

CREATE FUNCTION claim_sri_work(p_worker uuid, p_limit integer, p_lease_ms integer, p_tenants bigint[])
    RETURNS TABLE (tenant_id bigint, document_id bigint)
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp
    AS $$
    WITH due AS (
        SELECT s.tenant_id, s.document_id
          FROM document_submissions s
         WHERE s.next_attempt_at <= now()
           AND (s.leased_until IS NULL OR s.leased_until < now())
           AND (p_tenants IS NULL OR s.tenant_id = ANY (p_tenants))
         ORDER BY s.next_attempt_at
         LIMIT least(greatest(p_limit, 0), 1000)
           FOR UPDATE SKIP LOCKED
    )
    UPDATE document_submissions s
       SET leased_by = p_worker,
           leased_until = now() + make_interval(secs => greatest(p_lease_ms, 1000) / 1000.0)
      FROM due
     WHERE s.tenant_id = due.tenant_id AND s.document_id = due.document_id
    RETURNING s.tenant_id, s.document_id
$$;

COMMENT ON FUNCTION claim_sri_work(uuid, integer, integer, bigint[]) IS
    'Takes up to p_limit (at most 1000) submissions that are due (next_attempt_at has come) and not leased, or whose lease has ended, FOR UPDATE SKIP LOCKED, leases them to p_worker for p_lease_ms (at least 1 s) and returns them as (tenant, document) pairs, oldest due first. p_tenants, when not NULL, keeps the claim to those tenants (dedicated workers, tests). Reads nothing else; the caller then acts as each tenant.';

CREATE FUNCTION sri_queue_depth()
    RETURNS TABLE (pending bigint, oldest_seconds double precision)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp
    AS $$
    SELECT count(*), coalesce(extract(epoch FROM now() - min(s.queued_at))::double precision, 0)
      FROM document_submissions s
     WHERE s.status IN ('SIGNED', 'RECEIVED')
$$;

COMMENT ON FUNCTION sri_queue_depth() IS
    'For the metrics sri_documents_pending and sri_oldest_pending_seconds: how many documents of all tenants await SRI (SIGNED or RECEIVED), and how long the oldest of them has waited since it was queued. Counts only; no tenant, key or content.';

ALTER FUNCTION claim_sri_work(uuid, integer, integer, bigint[]) OWNER TO comprobify_auth;
ALTER FUNCTION sri_queue_depth() OWNER TO comprobify_auth;
REVOKE ALL ON FUNCTION claim_sri_work(uuid, integer, integer, bigint[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION sri_queue_depth() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION claim_sri_work(uuid, integer, integer, bigint[]) TO comprobify_app;
GRANT EXECUTE ON FUNCTION sri_queue_depth() TO comprobify_app;

-- ---------------------------------------------------------------------------
-- Every exchange with SRI
-- ---------------------------------------------------------------------------

CREATE TABLE sri_exchanges (
    tenant_id     bigint NOT NULL,
    id            bigint GENERATED BY DEFAULT AS IDENTITY,
    document_id   bigint NOT NULL,
    service       text NOT NULL
        CONSTRAINT sri_exchanges_service_values CHECK (service IN ('reception', 'authorization')),
    url           text NOT NULL,
    outcome       text NOT NULL
        CONSTRAINT sri_exchanges_outcome_values CHECK (outcome IN (
            'received', 'already_received', 'returned', 'authorized', 'not_authorized', 'pending',
            'connection', 'timeout', 'http_status', 'soap_fault', 'unparseable')),
    http_status   integer
        CONSTRAINT sri_exchanges_http_status_range CHECK (http_status BETWEEN 100 AND 599),
    duration_ms   integer NOT NULL
        CONSTRAINT sri_exchanges_duration_not_negative CHECK (duration_ms >= 0),
    status_before text NOT NULL,
    status_after  text NOT NULL,
    answer        json,
    error         text,
    worker        uuid NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, document_id) REFERENCES documents (tenant_id, id),
    CONSTRAINT sri_exchanges_answer_or_error CHECK ((answer IS NULL) <> (error IS NULL))
);

COMMENT ON TABLE sri_exchanges IS 'One row per exchange with SRI (a reception or an authorization request), written in the transaction that applies what it decided to document_submissions. For support and DBAs: what was asked, what SRI said or what failed, how long it took. Append-only for the app.';
COMMENT ON COLUMN sri_exchanges.url IS 'The service URL the request went to (SRI_TEST_URL or SRI_PRODUCTION_URL plus the service path).';
COMMENT ON COLUMN sri_exchanges.outcome IS 'What the exchange meant: received, already_received (DEVUELTA 43/70), returned, authorized, not_authorized, pending (no decision yet), or the kind of failure: connection, timeout, http_status, soap_fault, unparseable.';
COMMENT ON COLUMN sri_exchanges.http_status IS 'The HTTP status of SRI''s answer when one arrived and is known (200 for answers; NULL for connection failures, timeouts and SOAP faults).';
COMMENT ON COLUMN sri_exchanges.duration_ms IS 'From sending the request to having the whole answer (or giving up).';
COMMENT ON COLUMN sri_exchanges.status_before IS 'The submission status the exchange started from.';
COMMENT ON COLUMN sri_exchanges.status_after IS 'The submission status it left (the same one for failures and pending answers).';
COMMENT ON COLUMN sri_exchanges.answer IS 'SRI''s answer as read: {"estado", "messages"} for reception, {"count", "autorizaciones": [{"estado", "numero", "fecha", "ambiente", "messages"}]} for authorization. Never the comprobante. NULL when the exchange failed.';
COMMENT ON COLUMN sri_exchanges.error IS 'Why the exchange failed, in one line (never the XML). NULL when SRI answered.';
COMMENT ON COLUMN sri_exchanges.worker IS 'The worker (leased_by) that made the exchange.';

CREATE INDEX sri_exchanges_by_document ON sri_exchanges (tenant_id, document_id, id);
CREATE INDEX sri_exchanges_by_time ON sri_exchanges (created_at);

ALTER TABLE sri_exchanges ENABLE ROW LEVEL SECURITY;
ALTER TABLE sri_exchanges FORCE ROW LEVEL SECURITY;
CREATE POLICY sri_exchanges_tenant_isolation ON sri_exchanges
    USING (tenant_id = (SELECT current_tenant_id()))
    WITH CHECK (tenant_id = (SELECT current_tenant_id()));

GRANT SELECT, INSERT ON sri_exchanges TO comprobify_app;
GRANT USAGE ON SEQUENCE sri_exchanges_id_seq TO comprobify_app;
