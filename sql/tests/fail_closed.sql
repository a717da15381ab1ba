-- Fail closed: as comprobify_app with no tenant chosen, nothing is visible and
-- nothing can be written. current_tenant_id() is NULL both when app.tenant_id
-- was never set and when it is '' (what a transaction-local setting reads as
-- after its transaction ended), and "tenant_id = NULL" matches no row.
--
-- Every tenant table (from the catalog, fixtures/tenant_tables.sql) is checked,
-- after making sure it holds rows of two tenants (fixtures/two_tenants.sql).
BEGIN;
\ir fixtures/tenant_tables.sql
\ir fixtures/two_tenants.sql
-- The per-table checks below read the view while acting as comprobify_app.
GRANT SELECT ON tenant_tables TO comprobify_app;

SELECT plan(8 + 3 * (SELECT count(*)::int FROM tenant_tables));

-- As the superuser (who bypasses row-level security): the data is there.
SELECT set_eq(format('SELECT DISTINCT %1$I FROM %2$I WHERE %1$I IN (900001, 900002)', t.tenant_column, t.table_name),
              ARRAY[900001, 900002]::bigint[],
              t.table_name || ' holds rows of tenants A and B (else add them to fixtures/two_tenants.sql)')
  FROM tenant_tables t
 ORDER BY t.table_name;

-- No tenant set at all -------------------------------------------------------

SET LOCAL ROLE comprobify_app;

SELECT is(current_setting('app.tenant_id', true), NULL, 'app.tenant_id has never been set in this session');

SELECT CASE WHEN t.app_reads
            THEN is_empty(format('SELECT * FROM %I', t.table_name), t.table_name || ' shows no row while app.tenant_id is unset')
            ELSE throws_ok(format('SELECT * FROM %I', t.table_name), '42501', NULL, t.table_name || ' cannot be read at all')
       END
  FROM tenant_tables t
 ORDER BY t.table_name;

SELECT throws_ok($$
    INSERT INTO api_keys (tenant_id, environment, token_digest, token_prefix)
    VALUES (900001, 'sandbox', sha256('fail-closed-1'), 'cfy_test_fc001')
$$, '42501', 'new row violates row-level security policy for table "api_keys"',
   'inserting an API key is refused while app.tenant_id is unset');

SELECT throws_ok($$
    INSERT INTO issuers (tenant_id, ruc, legal_name, establishment, emission_point)
    VALUES (900001, '1790099999001', 'Nobody', '002', '001')
$$, '42501', 'new row violates row-level security policy for table "issuers"',
   'inserting an issuer is refused while app.tenant_id is unset');

-- Tenant set to the empty string ----------------------------------------------

SELECT is(set_config('app.tenant_id', '', true), '', 'app.tenant_id is now set to the empty string');

SELECT CASE WHEN t.app_reads
            THEN is_empty(format('SELECT * FROM %I', t.table_name), t.table_name || ' shows no row while app.tenant_id is ''''')
            ELSE throws_ok(format('SELECT * FROM %I', t.table_name), '42501', NULL, t.table_name || ' cannot be read at all')
       END
  FROM tenant_tables t
 ORDER BY t.table_name;

SELECT throws_ok($$
    INSERT INTO api_keys (tenant_id, environment, token_digest, token_prefix)
    VALUES (900001, 'sandbox', sha256('fail-closed-2'), 'cfy_test_fc002')
$$, '42501', 'new row violates row-level security policy for table "api_keys"',
   'inserting an API key is refused while app.tenant_id is ''''');

SELECT throws_ok($$
    INSERT INTO issuers (tenant_id, ruc, legal_name, establishment, emission_point)
    VALUES (900001, '1790099999001', 'Nobody', '003', '001')
$$, '42501', 'new row violates row-level security policy for table "issuers"',
   'inserting an issuer is refused while app.tenant_id is ''''');

-- A value that is not a number is an error, not a wildcard.
SELECT is(set_config('app.tenant_id', 'all', true), 'all', 'app.tenant_id is now set to ''all''');
SELECT throws_ok('SELECT * FROM api_keys', '22P02', NULL,
                 'a non-numeric app.tenant_id makes every query on a tenant table fail');

RESET ROLE;
SELECT * FROM finish();
ROLLBACK;
