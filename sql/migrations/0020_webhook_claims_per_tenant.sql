-- Webhook claims bounded per tenant.
--
-- claim_webhook_deliveries() bounded the deliveries in flight per endpoint
-- only. A tenant with many endpoints that answer slowly (up to ten per
-- environment, all at one slow host) could hold every worker of every
-- process, and other tenants' deliveries waited behind its backlog. The
-- claim now also bounds the deliveries in flight per tenant, across all
-- processes: claim_webhook_deliveries(worker, limit, lease_ms, per_endpoint,
-- per_tenant, tenants), with WEBHOOK_PER_TENANT (8 by default). Tenants that
-- are full are left out before the window of candidates is taken, as full
-- endpoints are (migration 0017), so a full tenant's backlog never fills it.
--
-- The five-argument claim stays, as migration 0019 left it, for servers of
-- the previous release that run while this one is rolled out; a later
-- migration drops it.

CREATE FUNCTION claim_webhook_deliveries(p_worker uuid, p_limit integer, p_lease_ms integer, p_per_endpoint integer,
                                         p_per_tenant integer, p_tenants bigint[])
    RETURNS TABLE (tenant_id bigint, delivery_id bigint)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp
    AS $$
#variable_conflict use_column
DECLARE
    per_endpoint constant integer := least(greatest(p_per_endpoint, 1), 1000);
    per_tenant constant integer := least(greatest(p_per_tenant, 1), 10000);
BEGIN
    -- One claim at a time, across processes (migration 0017): each counts the
    -- deliveries in flight, and a claim beside another would not see its leases.
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
    ), busy_tenants AS MATERIALIZED (
        SELECT busy.tenant_id, sum(busy.in_flight) AS in_flight FROM busy GROUP BY busy.tenant_id
    ), due AS (
        -- Only endpoints and tenants with a free slot: a full one's backlog
        -- never fills the window.
        SELECT d.tenant_id, d.id, d.endpoint_id, d.next_attempt_at
          FROM webhook_deliveries d
         WHERE d.status = 'pending'
           AND d.next_attempt_at <= now()
           AND (d.leased_until IS NULL OR d.leased_until < now())
           AND (p_tenants IS NULL OR d.tenant_id = ANY (p_tenants))
           AND NOT EXISTS (SELECT 1 FROM busy
                            WHERE busy.tenant_id = d.tenant_id AND busy.endpoint_id = d.endpoint_id
                              AND busy.in_flight >= per_endpoint)
           AND NOT EXISTS (SELECT 1 FROM busy_tenants t WHERE t.tenant_id = d.tenant_id AND t.in_flight >= per_tenant)
         ORDER BY d.next_attempt_at
         LIMIT greatest(least(greatest(p_limit, 0), 1000) * 4, 64)
           FOR UPDATE SKIP LOCKED
    ), by_endpoint AS (
        SELECT due.tenant_id, due.id, due.next_attempt_at,
               row_number() OVER (PARTITION BY due.tenant_id, due.endpoint_id ORDER BY due.next_attempt_at, due.id)
               + coalesce((SELECT busy.in_flight FROM busy
                            WHERE busy.tenant_id = due.tenant_id AND busy.endpoint_id = due.endpoint_id), 0) AS slot
          FROM due
    ), by_tenant AS (
        -- Of those an endpoint can take, as many as the tenant can.
        SELECT e.tenant_id, e.id, e.next_attempt_at,
               row_number() OVER (PARTITION BY e.tenant_id ORDER BY e.next_attempt_at, e.id)
               + coalesce((SELECT t.in_flight FROM busy_tenants t WHERE t.tenant_id = e.tenant_id), 0) AS slot
          FROM by_endpoint e
         WHERE e.slot <= per_endpoint
    ), chosen AS (
        SELECT by_tenant.tenant_id, by_tenant.id FROM by_tenant
         WHERE by_tenant.slot <= per_tenant
         ORDER BY by_tenant.next_attempt_at
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

COMMENT ON FUNCTION claim_webhook_deliveries(uuid, integer, integer, integer, integer, bigint[]) IS
    'Takes up to p_limit (at most 1000) pending deliveries that are due and not leased (or whose lease has ended), FOR UPDATE SKIP LOCKED, at most p_per_endpoint (1 to 1000) in flight per endpoint and p_per_tenant (1 to 10000) per tenant, across all processes (counting leases already held), leases them to p_worker (an id the server draws per claim) for p_lease_ms (at least 1 s, at most 1 day) and returns them as (tenant, delivery) pairs, oldest due first. p_tenants, when not NULL, keeps the claim to those tenants (dedicated workers, tests). Reads nothing else; the caller then acts as each tenant.';

COMMENT ON FUNCTION claim_webhook_deliveries(uuid, integer, integer, integer, bigint[]) IS
    'The claim of servers before migration 0020, without the bound per tenant; kept while they are replaced, dropped later. Takes up to p_limit (at most 1000) pending deliveries that are due and not leased (or whose lease has ended), FOR UPDATE SKIP LOCKED, at most p_per_endpoint (1 to 1000) in flight per endpoint, leases them to p_worker for p_lease_ms (at least 1 s, at most 1 day) and returns them as (tenant, delivery) pairs, oldest due first.';

ALTER FUNCTION claim_webhook_deliveries(uuid, integer, integer, integer, integer, bigint[]) OWNER TO comprobify_auth;
REVOKE ALL ON FUNCTION claim_webhook_deliveries(uuid, integer, integer, integer, integer, bigint[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION claim_webhook_deliveries(uuid, integer, integer, integer, integer, bigint[]) TO comprobify_app;
