-- A webhook URL that is plain http names localhost or 127.0.0.1: the one
-- exception the server makes to https (with WEBHOOKS_ALLOW_HTTP=1, for tests
-- and local development). The table accepted http to any host; a row written
-- by hand or by a script could have sent a tenant's documents in clear over
-- the network. Whether http is allowed at all (the setting) and which
-- addresses a name resolves to stay the server's checks.
--
-- The host as the server reads it: any case, trailing dots ("localhost."),
-- then a port, a path or query, or nothing (user information and fragments
-- the server refuses before).
--
-- Added NOT VALID (the table's lock for a moment, no scan); 0080 validates it
-- in its own transaction. Written to be run again: a constraint already there
-- is left as it is.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint
                    WHERE conrelid = 'webhook_endpoints'::regclass AND conname = 'webhook_endpoints_http_only_to_localhost') THEN
        ALTER TABLE webhook_endpoints ADD CONSTRAINT webhook_endpoints_http_only_to_localhost
            CHECK (url !~* '^http:' OR url ~* '^http://(localhost|127\.0\.0\.1)\.*(:[0-9]*)?([/?]|$)') NOT VALID;
    END IF;
END
$$;

COMMENT ON CONSTRAINT webhook_endpoints_http_only_to_localhost ON webhook_endpoints IS
    'A plain http URL names localhost or 127.0.0.1 (any case, trailing dots, then a port, path or query): the only http the server accepts, with WEBHOOKS_ALLOW_HTTP=1 (migration 0079, validated by 0080).';
COMMENT ON CONSTRAINT webhook_endpoints_url_format ON webhook_endpoints IS
    'An http or https URL without spaces, at most 2048 characters. http only to localhost or 127.0.0.1 is webhook_endpoints_http_only_to_localhost; whether http is allowed at all (WEBHOOKS_ALLOW_HTTP=1) and that the URL never names or resolves to a private address are the server''s checks.';
