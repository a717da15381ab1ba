-- sealed_under_other_keys() (migration 0052), for `comprobify reseal`: the
-- certificates and webhooks of every tenant sealed under another master key,
-- by id only; callable by the schema owner alone, and comprobify_auth sees
-- no sealed value.
BEGIN;
\ir fixtures/two_tenants.sql
SELECT plan(8);

-- The fixtures' webhooks are sealed under 01234567; tenant A's certificates
-- under 89abcdef (the current key below), tenant B's under 01234567.
UPDATE issuer_certificates SET master_key_id = CASE WHEN tenant_id = 900001 THEN '89abcdef' ELSE '01234567' END
 WHERE tenant_id IN (900001, 900002);

SELECT set_eq($$ SELECT tenant_id, id FROM sealed_under_other_keys('89abcdef', 'issuer_certificate', 0, 0, 10000, NULL)
                  WHERE tenant_id IN (900001, 900002) $$,
              $$ SELECT tenant_id, issuer_id FROM issuer_certificates WHERE tenant_id = 900002 $$,
              'the owner finds, across tenants, the certificates sealed under another key than the current one');
SELECT set_eq($$ SELECT tenant_id, id FROM sealed_under_other_keys('89abcdef', 'webhook_endpoint', 0, 0, 10000, NULL)
                  WHERE tenant_id IN (900001, 900002) $$,
              $$ VALUES (900001::bigint, 900101::bigint), (900002, 900102) $$,
              'and the webhooks');
SELECT results_eq($$ SELECT id FROM sealed_under_other_keys('89abcdef', 'webhook_endpoint', 900001, 900101, 10, ARRAY[900001, 900002]) $$,
                  ARRAY[900102]::bigint[],
                  'a page starts after the (tenant, id) given');
SELECT set_eq($$ SELECT tenant_id, id FROM sealed_under_other_keys('01234567', 'issuer_certificate', 0, 0, 10, ARRAY[900001, 900002])
                UNION ALL SELECT tenant_id, id FROM sealed_under_other_keys('01234567', 'webhook_endpoint', 0, 0, 10, ARRAY[900001, 900002]) $$,
              $$ SELECT tenant_id, issuer_id FROM issuer_certificates WHERE tenant_id = 900001 $$,
              'with 01234567 current, only tenant A''s certificates are under another key (asking for two tenants only)');

SET LOCAL ROLE comprobify_app;
SELECT throws_ok($$ SELECT * FROM sealed_under_other_keys('89abcdef', 'webhook_endpoint', 0, 0, 100, NULL) $$, '42501', NULL,
                 'comprobify_app cannot call it');
RESET ROLE;

SET LOCAL ROLE comprobify_auth;
SELECT throws_ok($$ SELECT sealed_private_key FROM issuer_certificates $$, '42501', NULL,
                 'comprobify_auth reads no sealed key');
SELECT throws_ok($$ SELECT sealed_secret FROM webhook_endpoints $$, '42501', NULL,
                 'nor any webhook secret');
RESET ROLE;
SELECT ok(NOT has_function_privilege('public', 'sealed_under_other_keys(text,text,bigint,bigint,integer,bigint[])', 'EXECUTE'), 'PUBLIC cannot call it');

SELECT * FROM finish();
ROLLBACK;
