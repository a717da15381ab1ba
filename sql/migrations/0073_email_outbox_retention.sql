-- email_outbox no longer keeps every message for ever. A verification
-- message carries its token in plaintext (the table's comment: the one place
-- it exists) and its recipient's address; no role could delete one, so every
-- message ever queued stayed in the table and in every backup of it.
--
-- A message is useful while its token can work: 48 hours
-- (TenantsStore.verificationLifetime; email_verifications.expires_at). Past
-- that, sent or not, purge_expired() deletes it, at most 10 000 a call, with
-- the expired idempotency keys and old sign-up attempts it already purged;
-- the server calls it from its housekeeping, again at once while a call
-- removes 10 000 rows or more of one table. A relay that has not sent a
-- message within 48 hours would only deliver a dead token.
--
-- It runs as comprobify_auth, which may now delete outbox rows of every
-- tenant under two policies: a permissive one that lets it, and a
-- restrictive twin (as in migrations 0039, 0046 and 0072) holding it to
-- messages older than 48 hours whatever tenant the transaction has set.
-- Rows are deleted by key: comprobify_auth's column grants on the table
-- (migration 0023) do not reach ctid.
--
-- Written to be run again (a database whose ledger was rewound): the grant
-- repeats harmlessly, the policies are made again, the function replaced.

GRANT DELETE ON email_outbox TO comprobify_auth;

DROP POLICY IF EXISTS email_outbox_relay_purge ON email_outbox;
CREATE POLICY email_outbox_relay_purge ON email_outbox
    FOR DELETE TO comprobify_auth USING (created_at < now() - interval '48 hours');
DROP POLICY IF EXISTS email_outbox_purges_expired_only ON email_outbox;
CREATE POLICY email_outbox_purges_expired_only ON email_outbox
    AS RESTRICTIVE FOR DELETE TO comprobify_auth USING (created_at < now() - interval '48 hours');

COMMENT ON POLICY email_outbox_relay_purge ON email_outbox IS
    'comprobify_auth deletes messages older than 48 hours (their token has expired), sent or not, of every tenant, for purge_expired(); email_outbox_purges_expired_only keeps it to those.';
COMMENT ON POLICY email_outbox_purges_expired_only ON email_outbox IS
    'Restrictive twin of email_outbox_relay_purge: comprobify_auth (and its members) deletes only messages older than 48 hours, whatever tenant the transaction has set (migration 0073).';

CREATE OR REPLACE FUNCTION purge_expired() RETURNS bigint
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp
    AS $$
    WITH purged_keys AS (
        DELETE FROM idempotency_keys
         WHERE ctid = ANY (ARRAY(SELECT ctid FROM idempotency_keys WHERE expires_at < now() LIMIT 10000))
        RETURNING 1
    ), purged_attempts AS (
        DELETE FROM signup_attempts
         WHERE ctid = ANY (ARRAY(SELECT ctid FROM signup_attempts WHERE attempted_at < now() - interval '1 hour' LIMIT 10000))
        RETURNING 1
    ), old_messages AS MATERIALIZED (
        SELECT tenant_id, id FROM email_outbox WHERE created_at < now() - interval '48 hours' LIMIT 10000
    ), purged_messages AS (
        DELETE FROM email_outbox m USING old_messages o
         WHERE m.tenant_id = o.tenant_id AND m.id = o.id
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM purged_keys) + (SELECT count(*) FROM purged_attempts) + (SELECT count(*) FROM purged_messages)
$$;

COMMENT ON FUNCTION purge_expired() IS
    'Deletes idempotency keys past their 24 hours, sign-up attempts older than the rate-limit window and outbox messages older than 48 hours (their verification token has expired; sent or not), at most 10 000 rows of each table per call. Run periodically by the server, again at once while a call removes 10 000 or more; returns the number of rows removed.';
ALTER FUNCTION purge_expired() OWNER TO comprobify_auth;

COMMENT ON TABLE email_outbox IS
    'Messages waiting to be sent by a mail relay (transactional outbox). The verification message carries its token in plaintext: this is the one place it exists. purge_expired() deletes a message 48 hours after it was queued, when its token has expired (migration 0073).';
