-- The few columns the app may update only change in the directions the product
-- allows (triggers *_is_final in 0002_schema.sql), for every role. Each refused
-- change is tried as comprobify_app acting for the row's own tenant, which has
-- the column privilege and passes the row's policy: only the trigger stops it.
-- The allowed direction of each change still works.
BEGIN;
\ir fixtures/two_tenants.sql
SELECT plan(13);

-- Fixture rows in the state a refused change starts from.
UPDATE tenants SET environment = 'production', promoted_at = now() - interval '1 day' WHERE id = 900002;
UPDATE issuers SET sandbox = false WHERE tenant_id = 900002;

SET LOCAL ROLE comprobify_app;

SELECT is(set_config('app.tenant_id', '900001', true), '900001', 'acting for tenant A');
SELECT throws_ok($$ UPDATE api_keys SET revoked_at = NULL WHERE id = 900012 $$,
                 '23000', 'a revoked API key stays revoked', 'a revoked key cannot be reinstated');
SELECT throws_ok($$ UPDATE api_keys SET revoked_at = now() WHERE id = 900012 $$,
                 '23000', 'a revoked API key stays revoked', 'a revocation cannot be re-dated');
SELECT lives_ok($$ UPDATE api_keys SET revoked_at = now() WHERE id = 900011 $$, 'an active key can be revoked');
SELECT throws_ok($$ UPDATE email_verifications SET used_at = NULL WHERE id = 900032 $$,
                 '23000', 'a used or superseded verification token stays so', 'a used token cannot be made unused');
SELECT throws_ok($$ UPDATE email_verifications SET invalidated_at = NULL WHERE id = 900033 $$,
                 '23000', 'a used or superseded verification token stays so', 'a superseded token cannot come back');
SELECT lives_ok($$ UPDATE email_verifications SET used_at = now() WHERE id = 900031 $$, 'a pending token can be used');
SELECT throws_ok($$ UPDATE tenants SET status = 'PENDING_VERIFICATION' WHERE id = 900001 $$,
                 '23000', 'a verified tenant stays verified', 'a verified tenant cannot become unverified');
SELECT lives_ok($$ UPDATE tenants SET environment = 'production', promoted_at = now() WHERE id = 900001 $$,
                'a sandbox tenant can be promoted');

SELECT is(set_config('app.tenant_id', '900002', true), '900002', 'acting for tenant B, in production');
SELECT throws_ok($$ UPDATE tenants SET environment = 'sandbox', promoted_at = NULL WHERE id = 900002 $$,
                 '23000', 'a promotion to production is final', 'a promotion cannot be undone');
SELECT throws_ok($$ UPDATE tenants SET promoted_at = now() WHERE id = 900002 $$,
                 '23000', 'a promotion to production is final', 'a promotion cannot be re-dated');
SELECT throws_ok($$ UPDATE issuers SET sandbox = true WHERE tenant_id = 900002 $$,
                 '23000', 'a production issuer stays in production', 'a production issuer cannot go back to sandbox');

SELECT * FROM finish();
ROLLBACK;
