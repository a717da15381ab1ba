-- The app role cannot switch off what protects tenants: row-level security,
-- the policies, the immutability trigger, the functions the policies call.
-- Each of these needs ownership of the object (or superuser), and
-- comprobify_app owns nothing (roles.sql). Every statement below fails with
-- SQLSTATE 42501 (insufficient_privilege).
--
-- Per-table checks come from the catalog (fixtures/tenant_tables.sql).
--
-- Not testable here: SET ROLE comprobify_auth. This test acts as the app with
-- SET ROLE from a superuser session, and SET ROLE is checked against the
-- session user; roles.sql checks instead that comprobify_app is a member of
-- no role, which is what refuses it to a real comprobify_app login.
BEGIN;
\ir fixtures/tenant_tables.sql
GRANT SELECT ON tenant_tables TO comprobify_app;
SELECT plan(9 + 4 * (SELECT count(*)::int FROM tenant_tables));

SET LOCAL ROLE comprobify_app;

SELECT throws_ok(format('ALTER TABLE %I DISABLE ROW LEVEL SECURITY', t.table_name),
                 '42501', format('must be owner of table %s', t.table_name),
                 t.table_name || ': the app cannot disable row-level security')
  FROM tenant_tables t
 ORDER BY t.table_name;

SELECT throws_ok(format('ALTER TABLE %I NO FORCE ROW LEVEL SECURITY', t.table_name),
                 '42501', format('must be owner of table %s', t.table_name),
                 t.table_name || ': the app cannot un-force row-level security')
  FROM tenant_tables t
 ORDER BY t.table_name;

SELECT throws_ok(format('DROP POLICY %I ON %I', t.table_name || '_tenant_isolation', t.table_name),
                 '42501', format('must be owner of relation %s', t.table_name),
                 t.table_name || ': the app cannot drop ' || t.table_name || '_tenant_isolation')
  FROM tenant_tables t
 ORDER BY t.table_name;

SELECT throws_ok(format('ALTER POLICY %I ON %I USING (true) WITH CHECK (true)', t.table_name || '_tenant_isolation', t.table_name),
                 '42501', format('must be owner of table %s', t.table_name),
                 t.table_name || ': the app cannot alter ' || t.table_name || '_tenant_isolation')
  FROM tenant_tables t
 ORDER BY t.table_name;

SELECT throws_ok($$ CREATE POLICY let_me_in ON api_keys USING (true) $$,
                 '42501', 'must be owner of table api_keys',
                 'the app cannot add a permissive policy of its own');

SELECT throws_ok($$ ALTER TABLE api_keys OWNER TO comprobify_app $$,
                 '42501', 'must be owner of table api_keys',
                 'the app cannot take ownership of a table');

SELECT throws_ok($$ SET row_security = off; SELECT * FROM api_keys $$,
                 '42501', 'query would be affected by row-level security policy for table "api_keys"',
                 'row_security = off makes the app''s queries fail instead of showing everything');

SELECT throws_ok($$ ALTER TABLE documents DISABLE TRIGGER documents_immutable_rows $$,
                 '42501', 'must be owner of table documents',
                 'the app cannot disable the immutability trigger of documents');

SELECT throws_ok($$ SET session_replication_role = replica $$,
                 '42501', 'permission denied to set parameter "session_replication_role"',
                 'the app cannot skip triggers with session_replication_role');

SELECT throws_ok($$ CREATE OR REPLACE FUNCTION public.current_tenant_id() RETURNS bigint LANGUAGE sql AS 'SELECT 900001::bigint' $$,
                 '42501', 'permission denied for schema public',
                 'the app cannot replace current_tenant_id(), which every policy calls');

SELECT throws_ok($$ ALTER FUNCTION authenticate(bytea, boolean) SET search_path = pg_temp, public $$,
                 '42501', 'must be owner of function authenticate',
                 'the app cannot change the pinned search_path of authenticate()');

SELECT throws_ok($$ ALTER ROLE comprobify_app BYPASSRLS $$,
                 '42501', 'must be superuser to change bypassrls attribute',
                 'the app cannot give itself BYPASSRLS');

SELECT throws_ok($$ GRANT comprobify_auth TO comprobify_app $$,
                 '42501', 'must have admin option on role "comprobify_auth"',
                 'the app cannot make itself a member of comprobify_auth');

RESET ROLE;
SELECT * FROM finish();
ROLLBACK;
