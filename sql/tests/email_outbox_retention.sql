-- purge_expired() and the email outbox (migration 0073): a message goes 48
-- hours after it was queued (its verification token has expired), sent or
-- not; younger ones stay.
--
--   * comprobify_app calls it with no tenant set, and it reaches every tenant;
--   * what it deletes and what it keeps, and a second call finds nothing;
--   * comprobify_app cannot delete a message itself;
--   * comprobify_auth, acting with a tenant set, still deletes no message
--     younger than 48 hours (the restrictive twin).
BEGIN;
\ir fixtures/two_tenants.sql
SELECT plan(6);

-- now() is the transaction's start: the rows below are dated from it.
INSERT INTO email_outbox (tenant_id, id, recipient, subject, body, created_at, sent_at) VALUES
    -- older than 48 hours: go, sent or not
    (900001, 900151, 'pgtap-tenant-a@example.invalid', 'Verify your email', 'old token for A, sent',
     now() - interval '49 hours', now() - interval '48 hours 59 minutes'),
    (900002, 900152, 'pgtap-tenant-b@example.invalid', 'Verify your email', 'old token for B, never sent',
     now() - interval '3 days', NULL),
    -- younger: stay, sent or not
    (900001, 900153, 'pgtap-tenant-a@example.invalid', 'Verify your email', 'recent token for A, sent',
     now() - interval '47 hours', now() - interval '46 hours'),
    (900002, 900154, 'pgtap-tenant-b@example.invalid', 'Verify your email', 'recent token for B, unsent',
     now() - interval '47 hours', NULL);

SET LOCAL ROLE comprobify_app;
SELECT throws_ok($$ DELETE FROM email_outbox WHERE id = 900151 $$, '42501', NULL,
                 'comprobify_app cannot delete a message itself');
-- The purge crosses every tenant of the database: what it returns counts
-- other rows too where the database holds more than these fixtures.
SELECT cmp_ok(purge_expired(), '>=', 2::bigint, 'the two messages older than 48 hours of two tenants go (no tenant is set)');
RESET ROLE;

SELECT set_eq($$ SELECT id FROM email_outbox WHERE tenant_id IN (900001, 900002) $$,
              ARRAY[900051, 900052, 900153, 900154]::bigint[],
              'kept: the messages younger than 48 hours, sent or not, of both tenants');

SET LOCAL ROLE comprobify_app;
SELECT is(purge_expired(), 0::bigint, 'a second call finds nothing more');
RESET ROLE;
SELECT is((SELECT count(*) FROM email_outbox WHERE tenant_id IN (900001, 900002)), 4::bigint, 'the four messages stay');

-- comprobify_auth with a tenant set: the tenant isolation policy would let it
-- delete that tenant's rows; the restrictive twin keeps it to old ones.
SET LOCAL ROLE comprobify_auth;
SELECT set_config('app.tenant_id', '900002', true);
SELECT is_empty($$ DELETE FROM email_outbox WHERE id = 900154 RETURNING id $$,
                'comprobify_auth deletes no message younger than 48 hours of the tenant it has set');

SELECT * FROM finish();
ROLLBACK;
