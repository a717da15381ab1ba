-- purge_webhook_history() and a redelivery beside it (migration 0083).
--
-- The purge chose events whose deliveries had all ended, in one snapshot, and
-- deleted their attempts, deliveries and the events in one statement. Since
-- 0083 an ended delivery can go back to pending (a redelivery the tenant asks
-- for). One that did so after the purge's snapshot was taken was kept by the
-- delete (the restrictive policy of migration 0046 refuses pending rows),
-- while its event was deleted: the foreign key failed the statement, and the
-- whole batch of up to 1000 events waited for the next purge.
--
-- Now the purge first locks the deliveries of the events it chose, then, in a
-- new snapshot, takes among those events only the ones that still qualify,
-- and deletes them. A redelivery that committed before the lock was granted
-- is seen and its event kept; one that comes after waits for the purge and
-- then finds nothing (404). The lock is the rows' own (FOR UPDATE), which a
-- redelivery takes too: nothing else waits on it.
--
-- Written to be run again: the function is replaced whole.

CREATE OR REPLACE FUNCTION purge_webhook_history(p_retention interval) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp
    AS $$
DECLARE
    v_before timestamptz;
    v_tenants bigint[];
    v_ids text[];
    v_events bigint;
BEGIN
    IF p_retention IS NULL OR p_retention < interval '1 day' THEN
        RAISE EXCEPTION 'purge_webhook_history: the retention must be at least 1 day, not %', p_retention
            USING ERRCODE = '22023';
    END IF;
    -- One purge at a time across servers: a call beside another waits for it,
    -- then reads what is left (its next statement takes a new snapshot).
    PERFORM pg_advisory_xact_lock(hashtextextended('purge_webhook_history', 0));
    v_before := now() - p_retention;
    -- The oldest events past the retention whose deliveries all ended before
    -- it (or that had none), at most 1000 a call. An attempt can be recorded
    -- after its delivery ended (the webhook was deleted meanwhile, or another
    -- worker took the delivery over), so the attempts' age is looked at too.
    SELECT array_agg(c.tenant_id), array_agg(c.id) INTO v_tenants, v_ids
      FROM (SELECT e.tenant_id, e.id
              FROM webhook_events e
             WHERE e.created_at < v_before
               AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d
                                WHERE d.tenant_id = e.tenant_id AND d.event_id = e.id
                                  AND (d.status = 'pending' OR d.updated_at >= v_before))
               AND NOT EXISTS (SELECT 1 FROM webhook_delivery_attempts a
                                WHERE a.tenant_id = e.tenant_id AND a.event_id = e.id AND a.attempted_at >= v_before)
             ORDER BY e.created_at
             LIMIT 1000) AS c;
    IF v_ids IS NULL THEN
        RETURN 0;
    END IF;
    -- Their deliveries, locked: a redelivery now waits for this purge.
    PERFORM 1
       FROM webhook_deliveries d
       JOIN unnest(v_tenants, v_ids) AS c (tenant_id, id) ON d.tenant_id = c.tenant_id AND d.event_id = c.id
        FOR UPDATE OF d;
    -- Among them, in a new snapshot, the events that still qualify (not one
    -- redelivered before the lock), and everything that names them. The
    -- foreign keys are checked at the statement's end, when all three deletes
    -- are done.
    WITH old AS MATERIALIZED (
        SELECT e.tenant_id, e.id
          FROM webhook_events e
          JOIN unnest(v_tenants, v_ids) AS c (tenant_id, id) ON e.tenant_id = c.tenant_id AND e.id = c.id
         WHERE NOT EXISTS (SELECT 1 FROM webhook_deliveries d
                            WHERE d.tenant_id = e.tenant_id AND d.event_id = e.id
                              AND (d.status = 'pending' OR d.updated_at >= v_before))
           AND NOT EXISTS (SELECT 1 FROM webhook_delivery_attempts a
                            WHERE a.tenant_id = e.tenant_id AND a.event_id = e.id AND a.attempted_at >= v_before)
    ), attempts AS (
        DELETE FROM webhook_delivery_attempts a USING old
         WHERE a.tenant_id = old.tenant_id AND a.event_id = old.id
    ), deliveries AS (
        DELETE FROM webhook_deliveries d USING old
         WHERE d.tenant_id = old.tenant_id AND d.event_id = old.id
    ), events AS (
        DELETE FROM webhook_events e USING old
         WHERE e.tenant_id = old.tenant_id AND e.id = old.id
        RETURNING 1
    )
    SELECT count(*) INTO v_events FROM events;
    RETURN v_events;
END
$$;

COMMENT ON FUNCTION purge_webhook_history(interval) IS
    'Deletes at most 1000 webhook events older than p_retention (at least 1 day) none of whose deliveries is pending or ended within it (nor attempted within it), with their deliveries and attempts, across tenants, one call at a time; returns the number of events removed. Locks the chosen events'' deliveries, then deletes the events that still qualify, so a delivery redelivered meanwhile (migration 0083) keeps its event (migration 0085). Run periodically by the server (WEBHOOK_RETENTION_DAYS), again at once while a call removes 1000.';
ALTER FUNCTION purge_webhook_history(interval) OWNER TO comprobify_auth;
