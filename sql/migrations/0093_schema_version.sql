-- The newest migration applied, for `comprobify serve`: a server of a new
-- release started before `comprobify migrate` ran (an upgrade done in the
-- wrong order) would answer ready and then fail every request that meets a
-- table or column it lacks. At start the server now asks schema_version()
-- and refuses to serve when the ledger's newest migration is older than the
-- newest its code was built with (a database without this function is older
-- still). A newer ledger is fine: servers of the release before keep running
-- while migrations are applied.
--
-- comprobify_app cannot read the ledger itself (roles.sql); the function
-- returns one name and nothing else, and runs as comprobify_auth, which may
-- now read the ledger (it holds file names and their checksums, no tenant's
-- data).
--
-- Written to be run again: the grants repeat harmlessly, the function is
-- replaced.

GRANT SELECT ON schema_migrations TO comprobify_auth;

CREATE OR REPLACE FUNCTION schema_version() RETURNS text
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp
    AS $$ SELECT max(name) FROM schema_migrations $$;

COMMENT ON FUNCTION schema_version() IS
    'The name of the newest migration in the ledger (schema_migrations), for comprobify serve, which refuses to start on a database older than its code (migration 0093). Executable by comprobify_app only.';
ALTER FUNCTION schema_version() OWNER TO comprobify_auth;
REVOKE ALL ON FUNCTION schema_version() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION schema_version() TO comprobify_app;
