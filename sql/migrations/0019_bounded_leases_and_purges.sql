-- Leases per claim and bounded; expired rows purged in batches.
--
-- 1. The server now leases each claim of SRI work and of webhook deliveries
--    under an id drawn for that claim, not one id per process. A worker that
--    outlived its lease (a paused process, a long wait for the database)
--    could otherwise record over a later claim of the same document by its
--    own process, and let that claim's lease go while it was still sending.
--    The lease columns' comments say so; sri_exchanges.worker and
--    webhook_delivery_attempts.worker still name the process.
-- 2. claim_sri_work() and claim_webhook_deliveries() took any p_lease_ms, so a
--    session of comprobify_app could lease every due document of every tenant
--    for 24 days, out of the real workers' reach. A lease is now at most one
--    day (SRI_LEASE_MS's own limit), and p_per_endpoint at most 1000.
-- 3. purge_expired() deleted every expired row in one statement, under
--    comprobify_app's statement_timeout: after a long pause in housekeeping
--    (a database restored, a server stopped for days) each run could time out
--    and roll back, and the backlog would never shrink. It now deletes at most
--    10 000 rows of each table per call; the server calls it again at once
--    while a call removes that many.

CREATE OR REPLACE FUNCTION claim_sri_work(p_worker uuid, p_limit integer, p_lease_ms integer, p_tenants bigint[])
    RETURNS TABLE (tenant_id bigint, document_id bigint)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp
    AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
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
           leased_until = now() + make_interval(secs => least(greatest(p_lease_ms, 1000), 86400000) / 1000.0)
      FROM due
     WHERE s.tenant_id = due.tenant_id AND s.document_id = due.document_id
    RETURNING s.tenant_id, s.document_id;
END
$$;

COMMENT ON FUNCTION claim_sri_work(uuid, integer, integer, bigint[]) IS
    'Takes up to p_limit (at most 1000) submissions that are due (next_attempt_at has come) and not leased, or whose lease has ended, FOR UPDATE SKIP LOCKED, leases them to p_worker (an id the server draws per claim) for p_lease_ms (at least 1 s, at most 1 day) and returns them as (tenant, document) pairs, oldest due first. p_tenants, when not NULL, keeps the claim to those tenants (dedicated workers, tests). Reads nothing else; the caller then acts as each tenant.';

CREATE OR REPLACE FUNCTION claim_webhook_deliveries(p_worker uuid, p_limit integer, p_lease_ms integer, p_per_endpoint integer,
                                                    p_tenants bigint[])
    RETURNS TABLE (tenant_id bigint, delivery_id bigint)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp
    AS $$
#variable_conflict use_column
BEGIN
    -- One claim at a time, across processes: each counts the deliveries in
    -- flight per endpoint, and a claim running beside another would not see
    -- the leases the other is taking (SKIP LOCKED only keeps them off the same
    -- rows). The lock lasts until the claiming transaction ends; the query
    -- below, run after it is granted, sees every claim committed before.
    PERFORM pg_advisory_xact_lock(hashtextextended('claim_webhook_deliveries', 0));
    RETURN QUERY
    WITH busy AS MATERIALIZED (
        -- Deliveries in flight, per endpoint. A delivery in flight was due
        -- when it was claimed, so the due index finds it.
        SELECT b.tenant_id, b.endpoint_id, count(*) AS in_flight
          FROM webhook_deliveries b
         WHERE b.status = 'pending'
           AND b.next_attempt_at <= now()
           AND b.leased_until >= now()
         GROUP BY b.tenant_id, b.endpoint_id
    ), due AS (
        -- Only endpoints with a free slot: a full one's backlog never fills the window.
        SELECT d.tenant_id, d.id, d.endpoint_id, d.next_attempt_at
          FROM webhook_deliveries d
         WHERE d.status = 'pending'
           AND d.next_attempt_at <= now()
           AND (d.leased_until IS NULL OR d.leased_until < now())
           AND (p_tenants IS NULL OR d.tenant_id = ANY (p_tenants))
           AND NOT EXISTS (SELECT 1 FROM busy
                            WHERE busy.tenant_id = d.tenant_id AND busy.endpoint_id = d.endpoint_id
                              AND busy.in_flight >= least(greatest(p_per_endpoint, 1), 1000))
         ORDER BY d.next_attempt_at
         LIMIT greatest(least(greatest(p_limit, 0), 1000) * 4, 64)
           FOR UPDATE SKIP LOCKED
    ), ranked AS (
        SELECT due.tenant_id, due.id, due.next_attempt_at,
               row_number() OVER (PARTITION BY due.tenant_id, due.endpoint_id ORDER BY due.next_attempt_at, due.id)
               + coalesce((SELECT busy.in_flight FROM busy
                            WHERE busy.tenant_id = due.tenant_id AND busy.endpoint_id = due.endpoint_id), 0) AS slot
          FROM due
    ), chosen AS (
        SELECT ranked.tenant_id, ranked.id FROM ranked
         WHERE ranked.slot <= least(greatest(p_per_endpoint, 1), 1000)
         ORDER BY ranked.next_attempt_at
         LIMIT least(greatest(p_limit, 0), 1000)
    )
    UPDATE webhook_deliveries d
       SET leased_by = p_worker,
           leased_until = now() + make_interval(secs => least(greatest(p_lease_ms, 1000), 86400000) / 1000.0)
      FROM chosen
     WHERE d.tenant_id = chosen.tenant_id AND d.id = chosen.id
    RETURNING d.tenant_id, d.id;
END
$$;

COMMENT ON FUNCTION claim_webhook_deliveries(uuid, integer, integer, integer, bigint[]) IS
    'Takes up to p_limit (at most 1000) pending deliveries that are due and not leased (or whose lease has ended), FOR UPDATE SKIP LOCKED, at most p_per_endpoint (1 to 1000) in flight per endpoint (counting leases already held), leases them to p_worker (an id the server draws per claim) for p_lease_ms (at least 1 s, at most 1 day) and returns them as (tenant, delivery) pairs, oldest due first. p_tenants, when not NULL, keeps the claim to those tenants (dedicated workers, tests). Reads nothing else; the caller then acts as each tenant.';

COMMENT ON COLUMN document_submissions.leased_by IS 'The claim that holds the document while a worker talks to SRI (a random id per claim, so that a worker past its lease cannot act for a later claim); NULL when nobody holds it.';
COMMENT ON COLUMN webhook_deliveries.leased_by IS 'The claim that holds the delivery while a worker makes the attempt (a random id per claim); NULL when nobody does.';
COMMENT ON COLUMN sri_exchanges.worker IS 'The server process that made the exchange (a random id per process).';
COMMENT ON COLUMN webhook_delivery_attempts.worker IS 'The server process that made the attempt (a random id per process).';

CREATE OR REPLACE FUNCTION purge_expired() RETURNS bigint
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp
    AS $$
    WITH purged_keys AS (
        DELETE FROM idempotency_keys
         WHERE ctid = ANY (ARRAY(SELECT ctid FROM idempotency_keys WHERE expires_at < now() LIMIT 10000))
        RETURNING 1
    ), purged_attempts AS (
        DELETE FROM signup_attempts
         WHERE ctid = ANY (ARRAY(SELECT ctid FROM signup_attempts WHERE attempted_at < now() - interval '1 hour' LIMIT 10000))
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM purged_keys) + (SELECT count(*) FROM purged_attempts)
$$;

COMMENT ON FUNCTION purge_expired() IS
    'Deletes idempotency keys past their 24 hours and sign-up attempts older than the rate-limit window, at most 10 000 rows of each table per call. Run periodically by the server, again at once while a call removes 10 000 or more; returns the number of rows removed.';
