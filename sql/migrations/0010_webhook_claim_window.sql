-- claim_webhook_deliveries() looks at a wider window of due deliveries.
--
-- It takes the oldest due deliveries as candidates, then drops those of
-- endpoints that already have their p_per_endpoint deliveries in flight. The
-- window was four times p_limit: while requests keep PostgreSQL busy the
-- background work claims one delivery at a time (RequestPressure), so the
-- window was four deliveries, and four due deliveries of one slow endpoint
-- ahead of the others hid every other endpoint's until the slow ones were
-- done. The window is now at least 64 candidates, whatever p_limit. Only the
-- window changes; the function is restated whole, as CREATE OR REPLACE needs.

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
