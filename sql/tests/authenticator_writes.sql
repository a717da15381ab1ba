-- comprobify_auth writes only what its own policies name, whatever tenant the
-- transaction has set (migration 0039).
--
-- Its write policies are narrow (lock keys and change none; delete expired
-- idempotency keys; mark unsent outbox messages sent), but permissive policies
-- are OR-ed, and the <table>_tenant_isolation policies apply to it like to
-- every role: with app.tenant_id set they alone would let it write anything of
-- that tenant its column grants reach. The restrictive twins hold each command
-- to its rule. Here the superuser acts as comprobify_auth with SET ROLE, the
-- way a SECURITY DEFINER function it owns runs.
BEGIN;
\ir fixtures/two_tenants.sql
SELECT plan(8);

SET LOCAL ROLE comprobify_auth;
SELECT set_config('app.tenant_id', '900001', true);

-- api_keys: lock, change none.
SELECT results_eq($$ SELECT id FROM api_keys WHERE id IN (900011, 900021) ORDER BY id FOR SHARE $$,
                  ARRAY[900011, 900021]::bigint[],
                  'comprobify_auth may lock any key row (authenticate(digest, true))');
SELECT throws_ok($$ UPDATE api_keys SET revoked_at = now() WHERE id = 900011 $$,
                 '42501', NULL,
                 'comprobify_auth cannot revoke a key of the tenant it has set');
SELECT throws_ok($$ UPDATE api_keys SET revoked_at = now() WHERE id = 900021 $$,
                 '42501', NULL,
                 'nor one of another tenant');

-- idempotency_keys: expired ones only.
SELECT is_empty($$ DELETE FROM idempotency_keys WHERE key = 'idem-a' RETURNING key $$,
                'comprobify_auth cannot delete a live idempotency key of the tenant it has set');
SELECT results_eq($$ DELETE FROM idempotency_keys WHERE key LIKE 'idem-%' RETURNING key $$,
                  ARRAY['idem-b-expired'],
                  'it deletes the expired ones, of any tenant (purge_expired())');

-- email_outbox: unsent to sent, nothing else.
SELECT throws_ok($$ UPDATE email_outbox SET sent_at = NULL WHERE id = 900051 $$,
                 '42501', NULL,
                 'comprobify_auth cannot write an unsent message of the tenant it has set other than as sent');
SELECT results_eq($$ UPDATE email_outbox SET sent_at = now() WHERE id = 900051 RETURNING id $$,
                  ARRAY[900051]::bigint[],
                  'it marks an unsent message sent (mark_outbox_message_sent())');
SELECT is_empty($$ UPDATE email_outbox SET sent_at = NULL WHERE id = 900051 RETURNING id $$,
                'it cannot mark a sent message of the tenant it has set unsent again');

SELECT * FROM finish();
ROLLBACK;
