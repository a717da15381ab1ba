-- sri_exchanges no longer keeps everything (until now a known issue in
-- sql/README.md): one row per exchange with SRI, several per document and
-- more for a document SRI keeps answering "in process", for ever.
--
-- purge_sri_exchanges() deletes exchanges older than the retention, the
-- oldest first, at most 5000 a call. The server calls it with
-- SRI_EXCHANGE_RETENTION_DAYS (90 by default) from its housekeeping. Nothing
-- a document shows comes from these rows: its status, SRI's messages, the
-- authorization (its number, date and <autorizacion> element) and the count of
-- attempts are kept in document_submissions, which the purge does not touch.
-- A claim's lease lasts at most a day (migration 0019), so no record being
-- tried again can miss the exchange it looks for (SubmissionsStore.record).
--
-- It runs as comprobify_auth, which may now see the table's key and age
-- columns across tenants and delete its rows, under two policies: a
-- permissive one that lets it, and a restrictive twin (as in migration 0046)
-- holding it to rows older than a day whatever tenant is set. One day is the
-- floor: the function refuses a shorter retention, and the policies refuse
-- the rest even to a caller that bypasses the function's check.
-- sri_exchanges_by_time (0006) finds the oldest rows.
--
-- Written to be run again (a database whose ledger was rewound): the grants
-- repeat harmlessly, the policies are made again, the function replaced.

GRANT SELECT (tenant_id, id, created_at), DELETE ON sri_exchanges TO comprobify_auth;

DROP POLICY IF EXISTS sri_exchanges_purger ON sri_exchanges;
CREATE POLICY sri_exchanges_purger ON sri_exchanges
    FOR SELECT TO comprobify_auth USING (true);
DROP POLICY IF EXISTS sri_exchanges_purger_delete ON sri_exchanges;
CREATE POLICY sri_exchanges_purger_delete ON sri_exchanges
    FOR DELETE TO comprobify_auth USING (created_at < now() - interval '1 day');
DROP POLICY IF EXISTS sri_exchanges_purges_old_only ON sri_exchanges;
CREATE POLICY sri_exchanges_purges_old_only ON sri_exchanges
    AS RESTRICTIVE FOR DELETE TO comprobify_auth USING (created_at < now() - interval '1 day');

COMMENT ON POLICY sri_exchanges_purger ON sri_exchanges IS
    'comprobify_auth sees every tenant''s exchanges (its column grants: tenant_id, id and created_at only), for purge_sri_exchanges().';
COMMENT ON POLICY sri_exchanges_purger_delete ON sri_exchanges IS
    'comprobify_auth deletes exchanges older than a day, of every tenant, for purge_sri_exchanges(); sri_exchanges_purges_old_only keeps it to those.';
COMMENT ON POLICY sri_exchanges_purges_old_only ON sri_exchanges IS
    'Restrictive twin of sri_exchanges_purger_delete: comprobify_auth (and its members) deletes only exchanges older than a day, whatever tenant the transaction has set (migration 0072).';

CREATE OR REPLACE FUNCTION purge_sri_exchanges(p_retention interval) RETURNS bigint
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp
    AS $$
DECLARE
    v_removed bigint;
BEGIN
    IF p_retention IS NULL OR p_retention < interval '1 day' THEN
        RAISE EXCEPTION 'purge_sri_exchanges: the retention must be at least 1 day, not %', p_retention
            USING ERRCODE = '22023';
    END IF;
    -- The oldest rows past the retention, through sri_exchanges_by_time.
    -- Two servers calling at once may pick the same rows: the second waits
    -- for the first's delete and then skips what it removed.
    WITH old AS MATERIALIZED (
        SELECT tenant_id, id
          FROM sri_exchanges
         WHERE created_at < now() - p_retention
         ORDER BY created_at
         LIMIT 5000
    ), gone AS (
        DELETE FROM sri_exchanges x USING old
         WHERE x.tenant_id = old.tenant_id AND x.id = old.id
        RETURNING 1
    )
    SELECT count(*) INTO v_removed FROM gone;
    RETURN v_removed;
END
$$;

COMMENT ON FUNCTION purge_sri_exchanges(interval) IS
    'Deletes at most 5000 SRI exchanges older than p_retention (at least 1 day), the oldest first, across tenants; returns how many it removed. Documents and their submissions (status, messages, authorization, attempts) stay. Run periodically by the server (SRI_EXCHANGE_RETENTION_DAYS), again at once while a call removes 5000.';
ALTER FUNCTION purge_sri_exchanges(interval) OWNER TO comprobify_auth;
REVOKE ALL ON FUNCTION purge_sri_exchanges(interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION purge_sri_exchanges(interval) TO comprobify_app;
