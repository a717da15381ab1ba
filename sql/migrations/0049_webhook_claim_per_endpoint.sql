-- Webhook claims choose per endpoint (until now a known issue in sql/README.md).
--
-- claim_webhook_deliveries() took the oldest due deliveries through
-- webhook_deliveries_due (by next_attempt_at), leaving out endpoints and
-- tenants that were full; the index scan still walked past every due
-- delivery of a full endpoint older than the ones it took, and counting the
-- deliveries in flight read every due one. A slow endpoint with tens of
-- thousands of due deliveries (a month's facturas at once) made every claim,
-- from every server, read them all under the claim's advisory lock.
--
-- Now the claim
--   1. counts the deliveries in flight from the leased ones alone
--      (webhook_deliveries_leased, migration 0048);
--   2. lists the endpoints that have pending deliveries, one index probe
--      each (a loose scan of webhook_deliveries_pending_by_endpoint, 0047);
--   3. locks, of each endpoint and tenant with a free slot, as many of its
--      oldest due, unleased deliveries as the endpoint has free slots (and
--      at most p_limit; one probe of the same index each), and takes of those
--      the oldest due first, as before.
-- Its cost follows the endpoints with pending deliveries and the deliveries
-- in flight, not the backlog. It returns what the claim of migration 0020
-- did, or more where that one's window of candidates (4 x p_limit, at least
-- 64) filled with one endpoint's deliveries and missed another's: every test
-- of migrations 0017 and 0020 holds. webhook_deliveries_due, which only the
-- old claim read, is dropped (migration 0053).

CREATE OR REPLACE FUNCTION claim_webhook_deliveries(p_worker uuid, p_limit integer, p_lease_ms integer, p_per_endpoint integer,
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
    WITH RECURSIVE busy AS MATERIALIZED (
        -- Deliveries in flight, per endpoint: the leased ones whose lease holds.
        SELECT b.tenant_id, b.endpoint_id, count(*) AS in_flight
          FROM webhook_deliveries b
         WHERE b.status = 'pending'
           AND b.leased_by IS NOT NULL
           AND b.leased_until >= now()
         GROUP BY b.tenant_id, b.endpoint_id
    ), busy_tenants AS MATERIALIZED (
        SELECT busy.tenant_id, sum(busy.in_flight) AS in_flight FROM busy GROUP BY busy.tenant_id
    ), endpoints AS (
        -- Each endpoint with pending deliveries once, in (tenant, endpoint)
        -- order: one probe of the index per endpoint.
        (SELECT p.tenant_id, p.endpoint_id
           FROM webhook_deliveries p
          WHERE p.status = 'pending'
            AND (p_tenants IS NULL OR p.tenant_id = ANY (p_tenants))
          ORDER BY p.tenant_id, p.endpoint_id
          LIMIT 1)
        UNION ALL
        SELECT n.tenant_id, n.endpoint_id
          FROM endpoints e,
               LATERAL (SELECT p.tenant_id, p.endpoint_id
                          FROM webhook_deliveries p
                         WHERE p.status = 'pending'
                           AND (p.tenant_id, p.endpoint_id) > (e.tenant_id, e.endpoint_id)
                           AND (p_tenants IS NULL OR p.tenant_id = ANY (p_tenants))
                         ORDER BY p.tenant_id, p.endpoint_id
                         LIMIT 1) AS n
    ), open AS MATERIALIZED (
        -- Only endpoints and tenants with a free slot.
        SELECT e.tenant_id, e.endpoint_id, coalesce(b.in_flight, 0) AS in_flight
          FROM endpoints e
          LEFT JOIN busy b ON b.tenant_id = e.tenant_id AND b.endpoint_id = e.endpoint_id
         WHERE coalesce(b.in_flight, 0) < per_endpoint
           AND NOT EXISTS (SELECT 1 FROM busy_tenants t WHERE t.tenant_id = e.tenant_id AND t.in_flight >= per_tenant)
    ), due AS (
        -- Each open endpoint's oldest due deliveries that nobody holds.
        SELECT c.tenant_id, c.id, c.endpoint_id, c.next_attempt_at, o.in_flight
          FROM open o,
               LATERAL (SELECT d.tenant_id, d.id, d.endpoint_id, d.next_attempt_at
                          FROM webhook_deliveries d
                         WHERE d.tenant_id = o.tenant_id AND d.endpoint_id = o.endpoint_id
                           AND d.status = 'pending'
                           AND d.next_attempt_at <= now()
                           AND (d.leased_until IS NULL OR d.leased_until < now())
                         ORDER BY d.next_attempt_at
                         LIMIT least(per_endpoint - o.in_flight, least(greatest(p_limit, 0), 1000))
                           FOR UPDATE SKIP LOCKED) AS c
    ), by_endpoint AS (
        SELECT due.tenant_id, due.id, due.next_attempt_at,
               row_number() OVER (PARTITION BY due.tenant_id, due.endpoint_id ORDER BY due.next_attempt_at, due.id)
               + due.in_flight AS slot
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
    'Takes up to p_limit (at most 1000) pending deliveries that are due and not leased (or whose lease has ended), FOR UPDATE SKIP LOCKED, at most p_per_endpoint (1 to 1000) in flight per endpoint and p_per_tenant (1 to 10000) per tenant, across all processes (counting leases already held), leases them to p_worker (an id the server draws per claim) for p_lease_ms (at least 1 s, at most 1 day) and returns them as (tenant, delivery) pairs, oldest due first. Reads one index probe per endpoint with pending deliveries and the leased deliveries, never a backlog (migration 0049). p_tenants, when not NULL, keeps the claim to those tenants (dedicated workers, tests). Reads nothing else; the caller then acts as each tenant.';
