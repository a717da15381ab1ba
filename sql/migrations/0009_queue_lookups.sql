-- The queue's hot statements, made cheap however long the backlog.
--
-- 1. A worker loads, updates and releases one submission by (tenant, document,
--    status). document_submissions_by_status (tenant_id, status) matched two
--    of those three, and with statistics older than a burst of new documents
--    (autovacuum had not analyzed the table yet) the planner preferred it to
--    the primary key: every exchange then walked all of the tenant's waiting
--    submissions (1.3 ms of PostgreSQL's time per exchange with 6,000 waiting,
--    growing with the backlog). With the document id as its third column the
--    index pins one row whichever of the two the planner takes, and GET
--    /v1/documents?status= reads it in document order.
--
-- 2. claim_sri_work() and claim_webhook_deliveries() were SQL functions, which
--    PostgreSQL plans again at every call (about 0.5 ms of the 0.7 ms a claim
--    took). As PL/pgSQL functions their statement's plan is kept for the
--    session. What they take, lease and return is unchanged: their statements
--    are those of 0006 and 0007, restated inside PL/pgSQL (CREATE OR REPLACE
--    keeps their owner, grants and comments).

DROP INDEX document_submissions_by_status;
CREATE INDEX document_submissions_by_status ON document_submissions (tenant_id, status, document_id);

COMMENT ON INDEX document_submissions_by_status IS 'Submissions of a tenant by status, in document order: the SRI worker''s lookups of one submission by (tenant, document, status) and GET /v1/documents?status=.';

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
           leased_until = now() + make_interval(secs => greatest(p_lease_ms, 1000) / 1000.0)
      FROM due
     WHERE s.tenant_id = due.tenant_id AND s.document_id = due.document_id
    RETURNING s.tenant_id, s.document_id;
END
$$;

CREATE OR REPLACE FUNCTION claim_webhook_deliveries(p_worker uuid, p_limit integer, p_lease_ms integer, p_per_endpoint integer,
                                                    p_tenants bigint[])
    RETURNS TABLE (tenant_id bigint, delivery_id bigint)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp
    AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH due AS (
        SELECT d.tenant_id, d.id, d.endpoint_id, d.next_attempt_at
          FROM webhook_deliveries d
         WHERE d.status = 'pending'
           AND d.next_attempt_at <= now()
           AND (d.leased_until IS NULL OR d.leased_until < now())
           AND (p_tenants IS NULL OR d.tenant_id = ANY (p_tenants))
         ORDER BY d.next_attempt_at
         LIMIT least(greatest(p_limit, 0), 1000) * 4
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
