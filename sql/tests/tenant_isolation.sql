-- Isolation: as comprobify_app acting for tenant A (900001), tenant B's rows
-- (900002) cannot be seen, changed, deleted or created. Statements that find
-- no row change nothing: an UPDATE or DELETE aimed at B's rows affects 0 rows
-- (checked through RETURNING), and B's rows are checked unchanged afterwards
-- as the superuser. An INSERT naming B fails the policy's WITH CHECK (42501).
BEGIN;
\ir fixtures/tenant_tables.sql
\ir fixtures/two_tenants.sql
GRANT SELECT ON tenant_tables TO comprobify_app;

SELECT plan(29 + 2 * (SELECT count(*)::int FROM tenant_tables));

-- The app may never move a row to another tenant. The WITH CHECK of every
-- policy already refuses it (tested below); in addition the app should have no
-- UPDATE privilege on any tenant column.
SELECT is_empty($$
    SELECT t.table_name || '.' || a.attname
      FROM tenant_tables t
      JOIN pg_attribute a ON a.attrelid = t.relid AND a.attname = t.tenant_column
     WHERE has_column_privilege('comprobify_app', t.relid, a.attnum, 'UPDATE')
$$, 'comprobify_app cannot update tenant_id (or tenants.id) anywhere');

SET LOCAL ROLE comprobify_app;
SELECT is(set_config('app.tenant_id', '900001', true), '900001', 'acting for tenant A');

-- Reading ----------------------------------------------------------------------

SELECT CASE WHEN t.app_reads
            THEN isnt_empty(format('SELECT * FROM %I WHERE %I = 900001', t.table_name, t.tenant_column),
                            t.table_name || ': tenant A sees its own rows')
            ELSE throws_ok(format('SELECT * FROM %I', t.table_name), '42501', NULL,
                           t.table_name || ': tenant A cannot read even its own rows')
       END
  FROM tenant_tables t
 ORDER BY t.table_name;

SELECT CASE WHEN t.app_reads
            THEN is_empty(format('SELECT * FROM %I WHERE %I IS DISTINCT FROM 900001', t.table_name, t.tenant_column),
                          t.table_name || ': tenant A sees no other tenant''s row')
            ELSE throws_ok(format('SELECT * FROM %I', t.table_name), '42501', NULL,
                           t.table_name || ': tenant A cannot read other tenants'' rows either')
       END
  FROM tenant_tables t
 ORDER BY t.table_name;

-- Updating and deleting B's rows: nothing matches -------------------------------

SELECT is_empty($$ UPDATE tenants SET status = 'PENDING_VERIFICATION' WHERE id = 900002 RETURNING id $$,
                'UPDATE of tenant B''s tenants row affects 0 rows');
SELECT is_empty($$ UPDATE api_keys SET revoked_at = now() WHERE tenant_id = 900002 RETURNING id $$,
                'UPDATE of tenant B''s API keys affects 0 rows');
SELECT is_empty($$ UPDATE email_verifications SET used_at = now() WHERE tenant_id = 900002 RETURNING id $$,
                'UPDATE of tenant B''s verification tokens affects 0 rows');
SELECT is_empty($$ UPDATE issuers SET sandbox = false WHERE tenant_id = 900002 RETURNING id $$,
                'UPDATE of tenant B''s issuers affects 0 rows');
SELECT is_empty($$ UPDATE sequentials SET next_sequential = 500 WHERE tenant_id = 900002 RETURNING issuer_id $$,
                'UPDATE of tenant B''s counters affects 0 rows');
SELECT is_empty($$ UPDATE idempotency_keys SET expires_at = now() WHERE tenant_id = 900002 RETURNING key $$,
                'UPDATE of tenant B''s idempotency keys affects 0 rows');
SELECT throws_ok($$ DELETE FROM idempotency_keys WHERE tenant_id = 900002 RETURNING key $$, '42501', NULL,
                 'the app cannot DELETE idempotency keys at all (only purge_expired() removes expired ones)');
-- Without a WHERE clause too: only A's own rows are touched.
SELECT results_eq($$ UPDATE sequentials SET next_sequential = next_sequential RETURNING tenant_id $$,
                  ARRAY[900001]::bigint[],
                  'an UPDATE without WHERE touches only tenant A''s rows');
-- Moving one of A's own rows to B is refused: today by the policy's WITH
-- CHECK, once the column grant is fixed already by the missing privilege.
SELECT throws_ok($$ UPDATE idempotency_keys SET tenant_id = 900002 WHERE key = 'idem-a' $$,
                 '42501', NULL,
                 'tenant A cannot move its own idempotency key to tenant B');

-- The same statements do work on A's own rows (so 0 rows above is isolation,
-- not a missing privilege).
SELECT results_eq($$ UPDATE api_keys SET revoked_at = now() WHERE id = 900011 RETURNING id $$,
                  ARRAY[900011]::bigint[], 'UPDATE of tenant A''s own key affects it');
SELECT results_eq($$ UPDATE idempotency_keys SET expires_at = expires_at WHERE key = 'idem-a' RETURNING key $$,
                  ARRAY['idem-a'], 'UPDATE of tenant A''s own idempotency key affects it');

-- Creating rows for B: refused by WITH CHECK --------------------------------------

SELECT throws_ok($$ INSERT INTO tenants (id, email, name) VALUES (900003, 'pgtap-tenant-c@example.invalid', 'C') $$,
                 '42501', 'new row violates row-level security policy for table "tenants"',
                 'tenant A cannot create another tenant''s row');
SELECT throws_ok($$
    INSERT INTO api_keys (tenant_id, environment, token_digest, token_prefix)
    VALUES (900002, 'sandbox', sha256('isolation-1'), 'cfy_test_15001')
$$, '42501', 'new row violates row-level security policy for table "api_keys"',
   'tenant A cannot create an API key for tenant B');
SELECT throws_ok($$
    INSERT INTO email_verifications (tenant_id, token_digest, expires_at)
    VALUES (900002, sha256('isolation-2'), now() + interval '1 day')
$$, '42501', 'new row violates row-level security policy for table "email_verifications"',
   'tenant A cannot create a verification token for tenant B');
SELECT throws_ok($$
    INSERT INTO email_outbox (tenant_id, recipient, subject, body) VALUES (900002, 'x@example.invalid', 's', 'b')
$$, '42501', 'new row violates row-level security policy for table "email_outbox"',
   'tenant A cannot queue mail for tenant B');
SELECT throws_ok($$
    INSERT INTO issuers (tenant_id, ruc, legal_name, establishment, emission_point)
    VALUES (900002, '1790099999001', 'Intruder', '009', '001')
$$, '42501', 'new row violates row-level security policy for table "issuers"',
   'tenant A cannot create an issuer for tenant B');
SELECT throws_ok($$
    INSERT INTO sequentials (tenant_id, issuer_id, document_type, environment) VALUES (900002, 900062, '04', 'sandbox')
$$, '42501', 'new row violates row-level security policy for table "sequentials"',
   'tenant A cannot create a counter for tenant B''s issuer');
SELECT throws_ok($$
    INSERT INTO documents (tenant_id, issuer_id, document_type, environment, sequential, number, access_key, issue_date)
    VALUES (900002, 900062, '01', 'sandbox', 2, '001-001-000000002',
            '0103202601099001234500110010010000000021234567815', '2026-03-01')
$$, '42501', 'new row violates row-level security policy for table "documents"',
   'tenant A cannot issue a document for tenant B');
SELECT throws_ok($$
    INSERT INTO idempotency_keys (tenant_id, key, issuer_id, request_digest) VALUES (900002, 'idem-x', 900062, sha256('x'))
$$, '42501', 'new row violates row-level security policy for table "idempotency_keys"',
   'tenant A cannot store an idempotency key for tenant B');
SELECT throws_ok($$
    INSERT INTO audit_events (tenant_id, action, actor) VALUES (900002, 'tenant.promoted', 'tenant')
$$, '42501', 'new row violates row-level security policy for table "audit_events"',
   'tenant A cannot write tenant B''s audit trail');
-- Referencing B's issuer from A's own row is refused too (the foreign key
-- includes tenant_id, so no (900001, 900062) issuer exists).
SELECT throws_ok($$
    INSERT INTO sequentials (tenant_id, issuer_id, document_type, environment) VALUES (900001, 900062, '04', 'sandbox')
$$, '23503', NULL, 'tenant A cannot attach a counter to tenant B''s issuer');

-- Back as the superuser: B's rows are as they were ---------------------------------

RESET ROLE;
SELECT is((SELECT status FROM tenants WHERE id = 900002), 'ACTIVE', 'tenant B is still ACTIVE');
SELECT is((SELECT revoked_at FROM api_keys WHERE id = 900021), NULL, 'tenant B''s key is still active');
SELECT is((SELECT used_at FROM email_verifications WHERE id = 900041), NULL, 'tenant B''s token is still unused');
SELECT is((SELECT sandbox FROM issuers WHERE id = 900062), true, 'tenant B''s issuer is still sandbox');
SELECT is((SELECT next_sequential::bigint FROM sequentials WHERE tenant_id = 900002), 2::bigint, 'tenant B''s counter is still 2');
SELECT set_eq($$ SELECT key FROM idempotency_keys WHERE tenant_id = 900002 $$,
              ARRAY['idem-b', 'idem-b-expired'], 'tenant B''s idempotency keys are all still there');

SELECT * FROM finish();
ROLLBACK;
