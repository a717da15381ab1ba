-- A token's digest names one API key and one verification token across every
-- tenant (migration 0018): authenticate() and email_verification_tenant() find
-- the tenant from the digest alone, so a digest held twice would make each
-- holder the other. The triggers *_digest_names_one_* refuse a digest that any
-- row holds. Inserted as the owner, which passes every policy, and as the app
-- acting for the other tenant, which cannot see the row that holds it.
BEGIN;
\ir fixtures/two_tenants.sql
SELECT plan(20);

SELECT throws_ok($$ INSERT INTO api_keys (tenant_id, id, label, environment, token_digest, token_prefix)
                    VALUES (900002, 900029, 'B copy of A', 'sandbox', sha256('key-a'), 'cfy_test_b0009') $$,
                 '23505', 'a token digest names one row of api_keys, of one tenant, ever',
                 'another tenant cannot hold an active key''s digest');
SELECT throws_ok($$ INSERT INTO api_keys (tenant_id, id, label, environment, token_digest, token_prefix)
                    VALUES (900002, 900029, 'B copy of A revoked', 'sandbox', sha256('key-a-revoked'), 'cfy_test_b0009') $$,
                 '23505', NULL, 'nor a revoked key''s digest: a digest is never given out twice');
SELECT lives_ok($$ INSERT INTO api_keys (tenant_id, id, label, environment, token_digest, token_prefix)
                   VALUES (900002, 900029, 'B new', 'sandbox', sha256('key-b-new'), 'cfy_test_b0009') $$,
                'a new digest is taken');
SELECT throws_ok($$ INSERT INTO email_verifications (tenant_id, id, token_digest, expires_at)
                    VALUES (900002, 900049, sha256('verify-a-pending'), now() + interval '1 day') $$,
                 '23505', 'a token digest names one row of email_verifications, of one tenant, ever',
                 'another tenant cannot hold a pending verification token''s digest');
SELECT throws_ok($$ INSERT INTO email_verifications (tenant_id, id, token_digest, expires_at)
                    VALUES (900002, 900049, sha256('verify-a-used'), now() + interval '1 day') $$,
                 '23505', NULL, 'nor a used one''s');

-- One live token per tenant (migrations 0063, 0067): a second one waits for the
-- first to be used or invalidated, as a resend does.
SELECT throws_ok($$ INSERT INTO email_verifications (tenant_id, id, token_digest, expires_at)
                    VALUES (900001, 900035, sha256('verify-a-second'), now() + interval '1 day') $$,
                 '23505', 'duplicate key value violates unique constraint "email_verifications_one_live_per_tenant"',
                 'a tenant holds one live verification token');
UPDATE email_verifications SET invalidated_at = now() WHERE id = 900031;
SELECT lives_ok($$ INSERT INTO email_verifications (tenant_id, id, token_digest, expires_at)
                   VALUES (900001, 900035, sha256('verify-a-second'), now() + interval '1 day') $$,
                'a new token once the live one is invalidated');
UPDATE email_verifications SET used_at = now() WHERE id = 900035;
SELECT lives_ok($$ INSERT INTO email_verifications (tenant_id, id, token_digest, expires_at)
                   VALUES (900001, 900036, sha256('verify-a-third'), now() + interval '1 day') $$,
                'and once it is used');

-- The check finds every row by index: revoked keys and used tokens included.
SELECT is(pg_get_indexdef('api_keys_by_token_digest'::regclass),
          'CREATE INDEX api_keys_by_token_digest ON public.api_keys USING btree (token_digest)',
          'api_keys_by_token_digest covers every key, revoked ones too');
SELECT is(pg_get_indexdef('email_verifications_by_token_digest'::regclass),
          'CREATE INDEX email_verifications_by_token_digest ON public.email_verifications USING btree (token_digest)',
          'email_verifications_by_token_digest covers every token, used ones too');

SET LOCAL ROLE comprobify_app;
SELECT is(set_config('app.tenant_id', '900002', true), '900002', 'acting for tenant B');
SELECT throws_ok($$ INSERT INTO api_keys (tenant_id, label, environment, token_digest, token_prefix)
                    VALUES (900002, 'B copy of A', 'sandbox', sha256('key-a'), 'cfy_test_b0008') $$,
                 '23505', 'a token digest names one row of api_keys, of one tenant, ever',
                 'the app cannot mint a key with a digest another tenant holds, though it cannot see that tenant''s key');
SELECT results_eq($$ SELECT key_id, tenant_id FROM authenticate(sha256('key-b-new'), false) $$,
                  $$ VALUES (900029::bigint, 900002::bigint) $$, 'authenticate() finds the new key''s tenant');
SELECT is(email_verification_tenant(sha256('verify-b-pending')), 900002::bigint,
          'email_verification_tenant() finds a pending token''s tenant');

RESET ROLE;

-- A digest two rows hold anyway (the triggers read with their transaction's
-- snapshot, which under REPEATABLE READ may not show a row committed after
-- it; here the trigger is simply left out) authenticates no one (migration 0060).
ALTER TABLE api_keys DISABLE TRIGGER api_keys_digest_names_one_key;
ALTER TABLE email_verifications DISABLE TRIGGER email_verifications_digest_names_one_token;
SELECT results_eq($$ SELECT key_id, tenant_id FROM authenticate(sha256('key-b-new'), true) $$,
                  $$ VALUES (900029::bigint, 900002::bigint) $$, 'authenticate() with its lock finds the key while it is the only holder');
INSERT INTO api_keys (tenant_id, id, label, environment, token_digest, token_prefix)
VALUES (900001, 900039, 'A copy of B', 'sandbox', sha256('key-b-new'), 'cfy_test_a0009');
SELECT is_empty($$ SELECT * FROM authenticate(sha256('key-b-new'), false) $$,
                'a digest two keys of two tenants hold authenticates neither');
SELECT is_empty($$ SELECT * FROM authenticate(sha256('key-b-new'), true) $$, 'nor with the lock');
UPDATE api_keys SET revoked_at = now() WHERE tenant_id = 900001 AND id = 900039;
SELECT is_empty($$ SELECT * FROM authenticate(sha256('key-b-new'), true) $$,
                'a revoked key holding the digest still makes it ambiguous');
SELECT is(email_verification_tenant(sha256('verify-b-pending')), 900002::bigint, 'the pending token is found while it is the only holder');
INSERT INTO email_verifications (tenant_id, id, token_digest, expires_at, used_at)
VALUES (900001, 900059, sha256('verify-b-pending'), now() + interval '1 day', now());
SELECT is(email_verification_tenant(sha256('verify-b-pending')), NULL::bigint,
          'a verification digest two tokens hold, one of them used, names no tenant');

SELECT * FROM finish();
ROLLBACK;
