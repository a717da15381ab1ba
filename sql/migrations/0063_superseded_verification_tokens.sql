-- A tenant has at most one verification token waiting to be used: the first
-- of three steps (0063, 0067, 0068).
--
-- A resend invalidates the tenant's unused tokens before it stores the new
-- one, and support's verification invalidates them all, both under the tenant
-- row's lock: the server never leaves two live tokens. The database did not
-- say so: a row inserted by hand, or by a future path that forgot the
-- invalidation, would leave an older emailed link working beside the new one.
-- Migration 0067 builds a unique index on each tenant's live token (unused
-- and not invalidated; an expired one counts until a resend invalidates it).
--
-- First, any tenant holding more than one live token (a database changed by
-- hand) keeps its newest; the others are invalidated, as a resend would.
--
-- email_verifications forces row-level security, which applies its policies
-- to the table's owner too: an owner that is neither a superuser nor BYPASSRLS
-- (a hosted database's usual owner) sees no row without app.tenant_id, and the
-- UPDATE would change nothing (then 0067 fails on the tokens it left). As in
-- migration 0031, FORCE is lifted for this transaction only and set again
-- before it commits (ALTER TABLE holds the table's lock until then, so no
-- other session sees it without FORCE). The first text of this migration
-- (sql/earlier) did not: it did the same for a superuser, nothing otherwise.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = current_user AND (rolsuper OR rolbypassrls)) THEN
        ALTER TABLE email_verifications NO FORCE ROW LEVEL SECURITY;
    END IF;
END
$$;

UPDATE email_verifications v
   SET invalidated_at = now()
 WHERE v.used_at IS NULL AND v.invalidated_at IS NULL
   AND EXISTS (SELECT FROM email_verifications n
                WHERE n.tenant_id = v.tenant_id AND n.used_at IS NULL AND n.invalidated_at IS NULL
                  AND (n.created_at, n.id) > (v.created_at, v.id));

-- FORCE again wherever it is off (a superuser's run, which lifted nothing,
-- takes no exclusive lock on the table).
DO $$
BEGIN
    IF NOT (SELECT c.relforcerowsecurity FROM pg_class c WHERE c.oid = 'email_verifications'::regclass) THEN
        ALTER TABLE email_verifications FORCE ROW LEVEL SECURITY;
    END IF;
END
$$;
