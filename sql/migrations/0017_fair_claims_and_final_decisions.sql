-- Webhook claims that one endpoint's backlog cannot block, and decisions
-- that stay made.
--
-- 1. claim_webhook_deliveries() took the oldest due deliveries as a window of
--    candidates (at least 64) and only then dropped those of endpoints that
--    already had p_per_endpoint deliveries in flight. One slow or dead
--    endpoint with more than 64 due deliveries filled every window with
--    deliveries it could not take, so no other endpoint of any tenant was
--    served until that backlog drained, two at a time. Endpoints that are
--    full are now left out before the window is taken: a backlog delays the
--    others by at most one claim. The window's scan still walks the full
--    endpoint's due deliveries (one index scan per claim); no index is added,
--    so applying this takes no lock on webhook_deliveries beyond the
--    function's own.
-- 2. SRI's decision on a document is final. Once a submission is RETURNED,
--    AUTHORIZED or NOT_AUTHORIZED, its status and SRI's authorization (number,
--    date, XML) cannot change, for any role: the trigger
--    document_submissions_decision_is_final refuses it, as the other "is final"
--    triggers do (migration 0002). A delivered or failed webhook delivery
--    stays so (webhook_deliveries_outcome_is_final): putting it back to
--    pending would deliver the event again.
-- 3. comprobify_app no longer deletes Idempotency-Keys. It never did:
--    expired keys are purged by purge_expired(), as comprobify_auth. A live
--    key deleted would let a client's retry issue a second document.

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
                              AND busy.in_flight >= greatest(p_per_endpoint, 1))
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

CREATE TRIGGER document_submissions_decision_is_final BEFORE UPDATE ON document_submissions FOR EACH ROW
    WHEN (OLD.status IN ('RETURNED', 'AUTHORIZED', 'NOT_AUTHORIZED')
          AND (NEW.status, NEW.authorization_number, NEW.authorized_at, NEW.authorization_xml)
              IS DISTINCT FROM (OLD.status, OLD.authorization_number, OLD.authorized_at, OLD.authorization_xml))
    EXECUTE FUNCTION refuse_change('SRI''s decision on a document is final: its status and authorization stay as SRI gave them');

CREATE TRIGGER webhook_deliveries_outcome_is_final BEFORE UPDATE ON webhook_deliveries FOR EACH ROW
    WHEN (OLD.status IN ('delivered', 'failed') AND NEW.status <> OLD.status)
    EXECUTE FUNCTION refuse_change('a delivered or failed webhook delivery stays so');

REVOKE DELETE ON idempotency_keys FROM comprobify_app;
