-- Migration 0021's backfill again, for an owner that is not a superuser.
--
-- 0021 gave each waiting submission its document's environment with an
-- UPDATE ... FROM documents run as the migrating role. documents and
-- document_submissions FORCE ROW LEVEL SECURITY, which applies the policies
-- to the tables' owner too: a superuser (or a role with BYPASSRLS) passes
-- them, but an owner that is neither (a hosted database's usual owner) sees
-- no row of either table without app.tenant_id, so that UPDATE changed
-- nothing. Documents that were waiting for SRI then kept a NULL environment,
-- and the claims, which take one environment at a time, never took them again.
--
-- Here the same backfill runs with the owner exempt from the policies for
-- this transaction only: FORCE is lifted from both tables, the rows are
-- updated, and FORCE is set again before the migration commits (ALTER TABLE
-- holds both tables' locks until then, so no other session ever sees them
-- without it). A superuser or a BYPASSRLS role needs no exemption. On a
-- database whose 0021 ran as a superuser, or that had no waiting document
-- then, nothing is left to change.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = current_user AND (rolsuper OR rolbypassrls)) THEN
        ALTER TABLE documents NO FORCE ROW LEVEL SECURITY;
        ALTER TABLE document_submissions NO FORCE ROW LEVEL SECURITY;
    END IF;
END
$$;

UPDATE document_submissions s SET environment = d.environment
  FROM documents d
 WHERE d.tenant_id = s.tenant_id AND d.id = s.document_id AND s.next_attempt_at IS NOT NULL AND s.environment IS NULL;

ALTER TABLE documents FORCE ROW LEVEL SECURITY;
ALTER TABLE document_submissions FORCE ROW LEVEL SECURITY;
