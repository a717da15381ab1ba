-- The email outbox reaches a mail relay through take_outbox_messages() and
-- mark_outbox_message_sent() (migration 0023), callable by comprobify_mailer
-- only: the relay sees unsent messages of every tenant and nothing else.
BEGIN;
\ir fixtures/two_tenants.sql

SELECT plan(10);

-- Only the fixture's two messages are unsent (the take is oldest first).
UPDATE email_outbox SET sent_at = now() WHERE sent_at IS NULL AND id NOT IN (900051, 900052);

SELECT has_role('comprobify_mailer');
SELECT is((SELECT rolcanlogin OR rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = 'comprobify_mailer'), false,
          'comprobify_mailer cannot log in, is no superuser and does not bypass row-level security');

SET LOCAL ROLE comprobify_app;
SELECT throws_ok('SELECT * FROM take_outbox_messages(10)', '42501', NULL, 'the API server cannot take messages');
RESET ROLE;

SET LOCAL ROLE comprobify_mailer;
SELECT throws_ok('SELECT * FROM email_outbox', '42501', NULL, 'the relay cannot read the table itself');
SELECT set_eq($$ SELECT tenant_id, id, recipient, body FROM take_outbox_messages(10) WHERE id IN (900051, 900052) $$,
              $$ VALUES (900001::bigint, 900051::bigint, 'pgtap-tenant-a@example.invalid'::text, 'token for A'::text),
                        (900002, 900052, 'pgtap-tenant-b@example.invalid', 'token for B') $$,
              'the relay takes the unsent messages of every tenant');
SELECT is(mark_outbox_message_sent(900001, 900051), true, 'a message handed over is marked sent');
SELECT is(mark_outbox_message_sent(900001, 900051), false, 'once');
SELECT is(mark_outbox_message_sent(900002, 900051), false, 'a message is named by its tenant and id');
SELECT is_empty($$ SELECT * FROM take_outbox_messages(10) WHERE id = 900051 $$, 'a sent message is not taken again');
RESET ROLE;

SELECT isnt((SELECT sent_at FROM email_outbox WHERE id = 900051), NULL, 'sent_at is set');

SELECT * FROM finish();
ROLLBACK;
