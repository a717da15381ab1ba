-- The webhook tables no longer keep everything (until now a known issue in sql/README.md).
--
-- Each SRI decision writes a webhook_events row, whether or not an endpoint
-- subscribes, and every delivery and attempt stayed after it ended: on a busy
-- tenant the three tables grew with the documents. purge_webhook_history()
-- deletes an event with its deliveries and their attempts once the event is
-- older than the retention and none of its deliveries is pending or ended
-- within it. The server calls it with WEBHOOK_RETENTION_DAYS (30 by default)
-- from its housekeeping, a batch of events at a time.
--
-- It runs as comprobify_auth, which may now see the three tables' key and age
-- columns across tenants and delete their rows, under two policies per table:
-- a permissive one that lets it, and a restrictive twin (as in migration
-- 0039) holding it to rows past one day whatever tenant is set. One day is
-- the floor: the function refuses a shorter retention, and the policies
-- refuse the rest even to a caller that bypasses the function's check.
--
-- The foreign keys from attempts to deliveries and events are checked through
-- the indexes of migrations 0043 and 0044; webhook_events_by_age (0045) finds
-- the oldest events. Documents and endpoints are kept.

GRANT SELECT (tenant_id, id, created_at), DELETE ON webhook_events TO comprobify_auth;
GRANT SELECT (event_id, updated_at), DELETE ON webhook_deliveries TO comprobify_auth;
GRANT SELECT (tenant_id, event_id, attempted_at), DELETE ON webhook_delivery_attempts TO comprobify_auth;

CREATE POLICY webhook_events_purger ON webhook_events
    FOR SELECT TO comprobify_auth USING (true);
CREATE POLICY webhook_events_purger_delete ON webhook_events
    FOR DELETE TO comprobify_auth USING (created_at < now() - interval '1 day');
CREATE POLICY webhook_events_purges_old_only ON webhook_events
    AS RESTRICTIVE FOR DELETE TO comprobify_auth USING (created_at < now() - interval '1 day');

CREATE POLICY webhook_deliveries_purger_delete ON webhook_deliveries
    FOR DELETE TO comprobify_auth USING (status <> 'pending' AND updated_at < now() - interval '1 day');
CREATE POLICY webhook_deliveries_purges_ended_only ON webhook_deliveries
    AS RESTRICTIVE FOR DELETE TO comprobify_auth USING (status <> 'pending' AND updated_at < now() - interval '1 day');

CREATE POLICY webhook_delivery_attempts_purger ON webhook_delivery_attempts
    FOR SELECT TO comprobify_auth USING (true);
CREATE POLICY webhook_delivery_attempts_purger_delete ON webhook_delivery_attempts
    FOR DELETE TO comprobify_auth USING (attempted_at < now() - interval '1 day');
CREATE POLICY webhook_delivery_attempts_purges_old_only ON webhook_delivery_attempts
    AS RESTRICTIVE FOR DELETE TO comprobify_auth USING (attempted_at < now() - interval '1 day');

COMMENT ON POLICY webhook_events_purger ON webhook_events IS
    'comprobify_auth sees every tenant''s events (its column grants: tenant_id, id and created_at only), for purge_webhook_history().';
COMMENT ON POLICY webhook_events_purger_delete ON webhook_events IS
    'comprobify_auth deletes events older than a day, of every tenant, for purge_webhook_history(); webhook_events_purges_old_only keeps it to those.';
COMMENT ON POLICY webhook_events_purges_old_only ON webhook_events IS
    'Restrictive twin of webhook_events_purger_delete: comprobify_auth (and its members) deletes only events older than a day, whatever tenant the transaction has set (migration 0046).';
COMMENT ON POLICY webhook_deliveries_purger_delete ON webhook_deliveries IS
    'comprobify_auth deletes deliveries that ended more than a day ago, of every tenant, for purge_webhook_history(); webhook_deliveries_purges_ended_only keeps it to those.';
COMMENT ON POLICY webhook_deliveries_purges_ended_only ON webhook_deliveries IS
    'Restrictive twin of webhook_deliveries_purger_delete: comprobify_auth (and its members) deletes only deliveries that ended more than a day ago, never a pending one, whatever tenant the transaction has set (migration 0046).';
COMMENT ON POLICY webhook_delivery_attempts_purger ON webhook_delivery_attempts IS
    'comprobify_auth sees every tenant''s attempts (its column grants: tenant_id, event_id and attempted_at only), for purge_webhook_history().';
COMMENT ON POLICY webhook_delivery_attempts_purger_delete ON webhook_delivery_attempts IS
    'comprobify_auth deletes attempts older than a day, of every tenant, for purge_webhook_history(); webhook_delivery_attempts_purges_old_only keeps it to those.';
COMMENT ON POLICY webhook_delivery_attempts_purges_old_only ON webhook_delivery_attempts IS
    'Restrictive twin of webhook_delivery_attempts_purger_delete: comprobify_auth (and its members) deletes only attempts older than a day, whatever tenant the transaction has set (migration 0046).';

CREATE FUNCTION purge_webhook_history(p_retention interval) RETURNS bigint
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp
    AS $$
DECLARE
    v_before timestamptz;
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
    -- it (or that had none), at most 1000 a call, and everything that names
    -- them. An attempt can be recorded after its delivery ended (the webhook
    -- was deleted meanwhile, or another worker took the delivery over), so
    -- the attempts' age is looked at too. The foreign keys are checked at the
    -- statement's end, when all three deletes are done.
    WITH old AS MATERIALIZED (
        SELECT e.tenant_id, e.id
          FROM webhook_events e
         WHERE e.created_at < v_before
           AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d
                            WHERE d.tenant_id = e.tenant_id AND d.event_id = e.id
                              AND (d.status = 'pending' OR d.updated_at >= v_before))
           AND NOT EXISTS (SELECT 1 FROM webhook_delivery_attempts a
                            WHERE a.tenant_id = e.tenant_id AND a.event_id = e.id AND a.attempted_at >= v_before)
         ORDER BY e.created_at
         LIMIT 1000
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
    'Deletes at most 1000 webhook events older than p_retention (at least 1 day) none of whose deliveries is pending or ended within it (nor attempted within it), with their deliveries and attempts, across tenants, one call at a time; returns the number of events removed. Run periodically by the server (WEBHOOK_RETENTION_DAYS), again at once while a call removes 1000.';
ALTER FUNCTION purge_webhook_history(interval) OWNER TO comprobify_auth;
REVOKE ALL ON FUNCTION purge_webhook_history(interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION purge_webhook_history(interval) TO comprobify_app;
