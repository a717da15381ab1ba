-- Two queue functions, restated whole as CREATE OR REPLACE needs.
--
-- 1. claim_webhook_deliveries() takes a transaction-level advisory lock
--    first. Two processes claiming at the same moment each counted an
--    endpoint's deliveries in flight in their own snapshot, saw none of the
--    other's new leases, and could each take p_per_endpoint of the same
--    endpoint's deliveries: twice the limit in flight. Claims are short and
--    now run one after another.
-- 2. sri_queue_depth() (the metrics' pending count, every few seconds from
--    each process) read every row of document_submissions, which grows by
--    one row per document forever. A pending submission always has its next
--    attempt (it is how the sender finds it; a final status has none), so the
--    query now also says next_attempt_at IS NOT NULL, and the partial index
--    document_submissions_due, which holds only those rows, serves it.

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
    WITH due AS (
        SELECT d.tenant_id, d.id, d.endpoint_id, d.next_attempt_at
          FROM webhook_deliveries d
         WHERE d.status = 'pending'
           AND d.next_attempt_at <= now()
           AND (d.leased_until IS NULL OR d.leased_until < now())
           AND (p_tenants IS NULL OR d.tenant_id = ANY (p_tenants))
         ORDER BY d.next_attempt_at
         LIMIT greatest(least(greatest(p_limit, 0), 1000) * 4, 64)
           FOR UPDATE SKIP LOCKED
    ), ranked AS (
        SELECT due.tenant_id, due.id, due.next_attempt_at,
               row_number() OVER (PARTITION BY due.tenant_id, due.endpoint_id ORDER BY due.next_attempt_at, due.id)
               + (SELECT count(*) FROM webhook_deliveries busy
                   WHERE busy.tenant_id = due.tenant_id AND busy.endpoint_id = due.endpoint_id
                     AND busy.status = 'pending' AND busy.leased_until >= now()) AS slot
          FROM due
    ), chosen AS (
        SELECT ranked.tenant_id, ranked.id FROM ranked
         WHERE ranked.slot <= greatest(p_per_endpoint, 1)
         ORDER BY ranked.next_attempt_at
         LIMIT least(greatest(p_limit, 0), 1000)
    )
    UPDATE webhook_deliveries d
       SET leased_by = p_worker,
           leased_until = now() + make_interval(secs => greatest(p_lease_ms, 1000) / 1000.0)
      FROM chosen
     WHERE d.tenant_id = chosen.tenant_id AND d.id = chosen.id
    RETURNING d.tenant_id, d.id;
END
$$;


CREATE OR REPLACE FUNCTION sri_queue_depth()
    RETURNS TABLE (pending bigint, oldest_seconds double precision)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp
    AS $$
    SELECT count(*), coalesce(extract(epoch FROM now() - min(s.queued_at))::double precision, 0)
      FROM document_submissions s
     WHERE s.next_attempt_at IS NOT NULL
       AND s.status IN ('SIGNED', 'RECEIVED')
$$;
