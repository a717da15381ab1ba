-- The few columns the app may update only change in the directions the product
-- allows (triggers *_is_final in 0002_schema.sql and 0017, a counter never
-- moving back in 0071), for every role. Each refused
-- change is tried as comprobify_app acting for the row's own tenant, which has
-- the column privilege and passes the row's policy: only the trigger stops it.
-- The allowed direction of each change still works.
BEGIN;
\ir fixtures/two_tenants.sql
SELECT plan(30);

-- Fixture rows in the state a refused change starts from.
UPDATE tenants SET environment = 'production', promoted_at = now() - interval '1 day' WHERE id = 900002;
UPDATE issuers SET sandbox = false WHERE tenant_id = 900002;

SET LOCAL ROLE comprobify_app;

SELECT is(set_config('app.tenant_id', '900001', true), '900001', 'acting for tenant A');
SELECT throws_ok($$ UPDATE api_keys SET revoked_at = NULL WHERE id = 900012 $$,
                 '23000', 'a revoked API key stays revoked', 'a revoked key cannot be reinstated');
SELECT throws_ok($$ UPDATE api_keys SET revoked_at = now() WHERE id = 900012 $$,
                 '23000', 'a revoked API key stays revoked', 'a revocation cannot be re-dated');
SELECT results_eq($$ UPDATE api_keys SET revoked_at = now() WHERE id = 900011 RETURNING id $$, ARRAY[900011]::bigint[],
                  'an active key can be revoked');
SELECT throws_ok($$ UPDATE email_verifications SET used_at = NULL WHERE id = 900032 $$,
                 '23000', 'a used or superseded verification token stays so', 'a used token cannot be made unused');
SELECT throws_ok($$ UPDATE email_verifications SET invalidated_at = NULL WHERE id = 900033 $$,
                 '23000', 'a used or superseded verification token stays so', 'a superseded token cannot come back');
SELECT results_eq($$ UPDATE email_verifications SET used_at = now() WHERE id = 900031 RETURNING id $$, ARRAY[900031]::bigint[],
                  'a pending token can be used');
SELECT throws_ok($$ UPDATE tenants SET status = 'PENDING_VERIFICATION' WHERE id = 900001 $$,
                 '23000', 'a verified tenant stays verified', 'a verified tenant cannot become unverified');
SELECT results_eq($$ UPDATE tenants SET environment = 'production', promoted_at = now() WHERE id = 900001 RETURNING id $$,
                  ARRAY[900001]::bigint[], 'a sandbox tenant can be promoted');
SELECT results_eq($$ UPDATE document_submissions SET status = 'RECEIVED' WHERE document_id = 900071 RETURNING document_id $$,
                  ARRAY[900071]::bigint[], 'a signed document can be received');
SELECT results_eq($$
    UPDATE document_submissions
       SET status = 'AUTHORIZED', next_attempt_at = NULL, authorization_number = '0103202601', authorized_at = now(),
           authorization_xml = '\x3c612f3e'
     WHERE document_id = 900071
    RETURNING document_id
$$, ARRAY[900071]::bigint[], 'a received document can be authorized');
SELECT throws_ok($$
    UPDATE document_submissions
       SET status = 'SIGNED', next_attempt_at = now(), authorization_number = NULL, authorized_at = NULL, authorization_xml = NULL
     WHERE document_id = 900071
$$, '23000', 'SRI''s decision on a document is final: its status and authorization stay as SRI gave them',
   'an authorization cannot be erased and the document sent again');
SELECT throws_ok($$ UPDATE document_submissions SET status = 'NOT_AUTHORIZED', authorization_number = NULL, authorized_at = NULL,
                                                  authorization_xml = NULL WHERE document_id = 900071 $$,
                 '23000', NULL, 'an authorization cannot be turned into a refusal');
SELECT throws_ok($$ UPDATE document_submissions SET authorization_number = 'forged' WHERE document_id = 900071 $$,
                 '23000', NULL, 'an authorization''s number cannot be rewritten');
SELECT results_eq($$ UPDATE document_submissions SET updated_at = now() WHERE document_id = 900071 RETURNING document_id $$,
                  ARRAY[900071]::bigint[], 'a decided submission''s other columns can still be touched');
SELECT results_eq($$ UPDATE webhook_deliveries SET status = 'delivered', next_attempt_at = NULL WHERE id = 900111 RETURNING id $$,
                  ARRAY[900111]::bigint[], 'a pending delivery can be delivered');
SELECT throws_ok($$ UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = now() WHERE id = 900111 $$,
                 '23000', 'a delivered or failed webhook delivery stays so, unless it is redelivered',
                 'a delivered delivery cannot be made pending again without counting a redelivery');
SELECT throws_ok($$ UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = now(), redeliveries = redeliveries + 2 WHERE id = 900111 $$,
                 '23000', NULL, 'a redelivery counts one');
SELECT throws_ok($$ UPDATE webhook_deliveries SET status = 'failed', redeliveries = redeliveries + 1 WHERE id = 900111 $$,
                 '23000', NULL, 'a delivered delivery cannot be made failed, counted or not');
SELECT results_eq($$ UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = now(), redeliveries = redeliveries + 1
                     WHERE id = 900111 RETURNING redeliveries $$,
                  ARRAY[1], 'a redelivery puts a delivered delivery back to pending, counted (migration 0083)');
SELECT throws_ok($$ UPDATE webhook_deliveries SET redeliveries = 0 WHERE id = 900111 $$,
                 '23000', 'a delivery''s count of redeliveries never goes down', 'the count of redeliveries cannot be lowered');

SELECT throws_ok($$ UPDATE sequentials SET next_sequential = 1 WHERE issuer_id = 900061 AND document_type = '01' $$,
                 '23000', 'a numbering counter never moves back', 'a counter cannot be moved back');
SELECT results_eq($$ UPDATE sequentials SET next_sequential = next_sequential + 1 WHERE issuer_id = 900061 AND document_type = '01'
                     RETURNING next_sequential::bigint $$,
                  ARRAY[3]::bigint[], 'a counter moves forward');
SELECT results_eq($$ UPDATE sequentials SET next_sequential = next_sequential WHERE issuer_id = 900061 AND document_type = '01'
                     RETURNING next_sequential::bigint $$,
                  ARRAY[3]::bigint[], 'a counter may be written unchanged');

SELECT is(set_config('app.tenant_id', '900002', true), '900002', 'acting for tenant B, in production');
SELECT throws_ok($$ UPDATE tenants SET environment = 'sandbox', promoted_at = NULL WHERE id = 900002 $$,
                 '23000', 'a promotion to production is final', 'a promotion cannot be undone');
SELECT throws_ok($$ UPDATE tenants SET promoted_at = now() WHERE id = 900002 $$,
                 '23000', 'a promotion to production is final', 'a promotion cannot be re-dated');
SELECT throws_ok($$ UPDATE issuers SET sandbox = true WHERE tenant_id = 900002 $$,
                 '23000', 'a production issuer stays in production', 'a production issuer cannot go back to sandbox');

RESET ROLE;
SELECT is(set_config('app.tenant_id', '900001', true), '900001', 'as the owner, for tenant A');
SELECT throws_ok($$ UPDATE sequentials SET next_sequential = 2 WHERE issuer_id = 900061 AND document_type = '01' $$,
                 '23000', 'a numbering counter never moves back', 'not even the owner moves a counter back');

SELECT * FROM finish();
ROLLBACK;
