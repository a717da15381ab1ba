-- Roles used by Comprobify.
--
--   comprobify_app   the role the HTTP server logs in as. Created NOLOGIN here;
--                    a deployment grants it LOGIN and a password. It owns nothing,
--                    is never a superuser and never bypasses row-level security.
--   comprobify_auth  owns the few SECURITY DEFINER functions that must look across
--                    tenants (finding a key by its digest, a verification token by
--                    its digest). It cannot log in; policies scoped to it are the
--                    only way it sees other tenants' rows.
--
-- Roles are cluster-wide, so this migration tolerates roles that already exist
-- (a second database on the same cluster), but it always resets their attributes.
--
-- The schema owner that runs the migrations need not be a superuser: a role
-- with CREATEROLE that owns the database (as hosted PostgreSQL services give)
-- is enough. PostgreSQL lets only a superuser change SUPERUSER, BYPASSRLS or
-- REPLICATION, even to take them away, so only the attributes a role has are
-- taken away: roles this migration creates have none, and a role found with
-- one of those three can only be reset by a superuser (the migration then
-- fails, saying so).

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'comprobify_app') THEN
        CREATE ROLE comprobify_app NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'comprobify_auth') THEN
        CREATE ROLE comprobify_auth NOLOGIN;
    END IF;
END
$$;

DO $$
DECLARE
    r pg_roles;
    taken text;
BEGIN
    FOR r IN SELECT * FROM pg_roles WHERE rolname IN ('comprobify_app', 'comprobify_auth') LOOP
        taken := concat_ws(' ',
            CASE WHEN r.rolsuper THEN 'NOSUPERUSER' END,
            CASE WHEN r.rolcreatedb THEN 'NOCREATEDB' END,
            CASE WHEN r.rolcreaterole THEN 'NOCREATEROLE' END,
            CASE WHEN r.rolbypassrls THEN 'NOBYPASSRLS' END,
            CASE WHEN r.rolreplication THEN 'NOREPLICATION' END,
            CASE WHEN r.rolname = 'comprobify_auth' AND r.rolcanlogin THEN 'NOLOGIN' END);
        IF taken <> '' THEN
            EXECUTE format('ALTER ROLE %I %s', r.rolname, taken);
        END IF;
    END LOOP;
END
$$;

-- The migrating role must be able to hand function ownership to comprobify_auth.
DO $$
BEGIN
    IF NOT pg_has_role(current_user, 'comprobify_auth', 'MEMBER') THEN
        EXECUTE format('GRANT comprobify_auth TO %I', current_user);
    END IF;
END
$$;

-- Safe defaults for the server's sessions; the server may lower them further.
ALTER ROLE comprobify_app SET statement_timeout = '5s';
ALTER ROLE comprobify_app SET idle_in_transaction_session_timeout = '10s';
ALTER ROLE comprobify_app SET lock_timeout = '5s';
