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

ALTER ROLE comprobify_app NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOREPLICATION;
ALTER ROLE comprobify_auth NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOREPLICATION;

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
