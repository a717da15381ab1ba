-- What each of Comprobify's roles is for, on the roles themselves, for a DBA
-- reading \du+ or shobj_description. Roles are cluster-wide: a role made by
-- another database's migrations on the same cluster, which this owner may not
-- comment on (PostgreSQL 16 asks for ADMIN OPTION on it), keeps its comment,
-- and the migration says so instead of failing. Two databases of one cluster
-- migrating at once may both write the first comment of a role: the second
-- then meets the first's row (23505) and leaves the same text in place.

DO $$
BEGIN
    COMMENT ON ROLE comprobify_app IS 'The role every Comprobify process logs in as (HTTP server, SRI sender, webhook workers): owns nothing, never a superuser nor BYPASSRLS; row-level security shows it the rows of the one tenant app.tenant_id names, and it crosses tenants only through SECURITY DEFINER functions of comprobify_auth (migration 0001).';
    COMMENT ON ROLE comprobify_auth IS 'Owns the SECURITY DEFINER functions that look across tenants (a key by its token''s digest, a verification token, the queues'' claims and purges); cannot log in; the policies scoped to it are its only way to other tenants'' rows (migration 0001).';
    COMMENT ON ROLE comprobify_mailer IS 'For the mail relay: may call take_outbox_messages and mark_outbox_message_sent, nothing else; cannot log in: grant it to the relay''s own login role (migration 0023).';
EXCEPTION
    WHEN insufficient_privilege THEN
        RAISE NOTICE 'the roles'' comments are left as they are: %', SQLERRM;
    WHEN unique_violation THEN
        RAISE NOTICE 'the roles'' comments were written by another database''s migration at the same moment';
END
$$;
