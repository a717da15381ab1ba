-- Every tenant table is under row-level security, forced, with its isolation
-- policy. The list of tenant tables comes from the catalog (fixtures/tenant_tables.sql:
-- every table in public with a tenant_id column, plus tenants), so a table added
-- by a later migration is checked without editing this file:
--
--   * a new table with tenant_id but no ENABLE ROW LEVEL SECURITY appears in
--     tenant_tables, and its "has row-level security enabled" test fails;
--   * without FORCE, its "... forced" test fails (the owner would bypass it);
--   * without a policy named <table>_tenant_isolation, its policy tests fail
--     (RLS with no policy hides every row, which would break the app, but the
--     naming rule is what lets a DBA find the policy);
--   * the plan grows by four tests per table, so nothing is skipped silently.
--
-- Other policies on tenant tables (the authenticator's) widen what a role
-- sees, because permissive policies are OR-ed: they must name comprobify_auth
-- and nobody else.
BEGIN;
\ir fixtures/tenant_tables.sql
SELECT plan(3 + 4 * (SELECT count(*)::int FROM tenant_tables));

-- Guards the catalog query itself: if it found nothing, the per-table tests
-- below would pass vacuously.
SELECT set_has(
    'SELECT table_name FROM tenant_tables',
    $$VALUES ('tenants'), ('api_keys'), ('email_verifications'), ('email_outbox'), ('issuers'),
             ('sequentials'), ('documents'), ('idempotency_keys'), ('audit_events')$$,
    'the catalog finds at least the known tenant tables');

SELECT ok(c.relrowsecurity, t.table_name || ' has row-level security enabled')
  FROM tenant_tables t JOIN pg_class c ON c.oid = t.relid
 ORDER BY t.table_name;

SELECT ok(c.relforcerowsecurity, t.table_name || ' has row-level security forced (applies to its owner too)')
  FROM tenant_tables t JOIN pg_class c ON c.oid = t.relid
 ORDER BY t.table_name;

-- The policy exists, is permissive, covers every command and applies to every role.
SELECT ok(EXISTS (SELECT 1 FROM pg_policy p
                   WHERE p.polrelid = t.relid
                     AND p.polname = t.table_name || '_tenant_isolation'
                     AND p.polpermissive
                     AND p.polcmd = '*'
                     AND p.polroles = ARRAY[0]::oid[]),
          t.table_name || ' has policy ' || t.table_name || '_tenant_isolation, FOR ALL TO PUBLIC')
  FROM tenant_tables t
 ORDER BY t.table_name;

-- USING and WITH CHECK both compare the tenant column with current_tenant_id().
-- Written as (SELECT current_tenant_id()) today; the plain call is accepted
-- too, because Citus refuses subqueries in policies of distributed tables
-- (see sql/citus/distribute.sql).
SELECT ok(EXISTS (SELECT 1 FROM pg_policy p
                   WHERE p.polrelid = t.relid
                     AND p.polname = t.table_name || '_tenant_isolation'
                     AND pg_get_expr(p.polqual, p.polrelid) ~ e
                     AND pg_get_expr(p.polwithcheck, p.polrelid) ~ e),
          t.table_name || '_tenant_isolation compares ' || t.tenant_column
              || ' with current_tenant_id() in USING and WITH CHECK')
  FROM tenant_tables t,
       LATERAL (SELECT '^\(' || t.tenant_column
                       || ' = (\( SELECT current_tenant_id\(\) AS current_tenant_id\)|current_tenant_id\(\))\)$') AS x(e)
 ORDER BY t.table_name;

SELECT is_empty($$
    SELECT p.polrelid::regclass || '.' || p.polname
      FROM pg_policy p JOIN tenant_tables t ON t.relid = p.polrelid
     WHERE p.polname <> t.table_name || '_tenant_isolation'
       AND p.polroles <> ARRAY['comprobify_auth'::regrole::oid]
$$, 'every other policy on a tenant table applies to comprobify_auth only');

-- A view runs with its owner's rights unless security_invoker is set, and a
-- materialized view is a copy without policies: either would bypass the
-- isolation policies for tenant data.
SELECT is_empty($$
    SELECT c.relname FROM pg_class c
     WHERE c.relnamespace = 'public'::regnamespace
       AND (c.relkind = 'm'
            OR (c.relkind = 'v' AND NOT coalesce('security_invoker=true' = ANY (c.reloptions)
                                               OR 'security_invoker=on' = ANY (c.reloptions), false)))
       AND EXISTS (SELECT 1 FROM pg_attribute a
                    WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped)
$$, 'no view or materialized view exposes tenant_id while bypassing row-level security');

SELECT * FROM finish();
ROLLBACK;
