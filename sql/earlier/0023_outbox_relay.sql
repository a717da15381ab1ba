-- The email outbox, for a mail relay, through two narrow functions.
--
-- POST /v1/tenants writes the verification message to email_outbox (API.md)
-- for a mail relay to send. Under forced row-level security only a superuser
-- or a role that bypasses it could read the outbox across tenants, against
-- the rule that background work crosses tenants only through narrow
-- SECURITY DEFINER functions. A relay now works through two of them, which
-- only the new role comprobify_mailer may call (it cannot log in: grant it to
-- the relay's own login role):
--
--   take_outbox_messages(p_limit)           the oldest unsent messages (at
--                                           most 100), each locked FOR UPDATE
--                                           SKIP LOCKED until the caller's
--                                           transaction ends
--   mark_outbox_message_sent(tenant, id)    sets sent_at, once; false when the
--                                           message is unknown or sent already
--
-- A relay: BEGIN; take; hand each message to the mail server; mark it; COMMIT.
-- One that dies before its COMMIT leaves its messages unsent for the next
-- take (at least once). comprobify_app cannot call either: the API server
-- never reads a message back, and the verification token is in it in clear.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'comprobify_mailer') THEN
        CREATE ROLE comprobify_mailer NOLOGIN;
    END IF;
END
$$;

-- As 0001 does for its roles: one that already existed is reset.
ALTER ROLE comprobify_mailer NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOREPLICATION;

-- comprobify_auth reads every message (an UPDATE must see its new row too, and
-- a sent message has sent_at), and marks only unsent ones sent.
CREATE POLICY email_outbox_relay ON email_outbox FOR SELECT TO comprobify_auth USING (true);
CREATE POLICY email_outbox_relay_sent ON email_outbox FOR UPDATE TO comprobify_auth USING (sent_at IS NULL) WITH CHECK (sent_at IS NOT NULL);
GRANT SELECT (tenant_id, id, recipient, subject, body, created_at, sent_at) ON email_outbox TO comprobify_auth;
GRANT UPDATE (sent_at) ON email_outbox TO comprobify_auth;

CREATE FUNCTION take_outbox_messages(p_limit integer)
    RETURNS TABLE (tenant_id bigint, id bigint, recipient text, subject text, body text, created_at timestamptz)
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp
    AS $$
    SELECT m.tenant_id, m.id, m.recipient, m.subject, m.body, m.created_at
      FROM email_outbox m
     WHERE m.sent_at IS NULL
     ORDER BY m.created_at
     LIMIT least(greatest(p_limit, 0), 100)
       FOR UPDATE SKIP LOCKED
$$;

COMMENT ON FUNCTION take_outbox_messages(integer) IS
    'For a mail relay (role comprobify_mailer): up to p_limit (at most 100) unsent messages of every tenant, oldest first, each locked FOR UPDATE SKIP LOCKED until the caller''s transaction ends, so two relays never take the same one. Mark each with mark_outbox_message_sent() once handed over, in the same transaction.';

CREATE FUNCTION mark_outbox_message_sent(p_tenant_id bigint, p_id bigint) RETURNS boolean
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp
    AS $$
    WITH sent AS (
        UPDATE email_outbox SET sent_at = now()
         WHERE tenant_id = p_tenant_id AND id = p_id AND sent_at IS NULL
        RETURNING 1
    )
    SELECT EXISTS (SELECT 1 FROM sent)
$$;

COMMENT ON FUNCTION mark_outbox_message_sent(bigint, bigint) IS
    'For a mail relay (role comprobify_mailer): records that the message was handed to the mail server (sent_at = now()). False when there is no such unsent message.';

ALTER FUNCTION take_outbox_messages(integer) OWNER TO comprobify_auth;
ALTER FUNCTION mark_outbox_message_sent(bigint, bigint) OWNER TO comprobify_auth;
REVOKE ALL ON FUNCTION take_outbox_messages(integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION mark_outbox_message_sent(bigint, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION take_outbox_messages(integer) TO comprobify_mailer;
GRANT EXECUTE ON FUNCTION mark_outbox_message_sent(bigint, bigint) TO comprobify_mailer;
