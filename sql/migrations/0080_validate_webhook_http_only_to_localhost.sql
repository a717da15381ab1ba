-- Checks the webhooks created before migration 0079 against its rule (http
-- only to localhost or 127.0.0.1). VALIDATE CONSTRAINT reads the table under a
-- SHARE UPDATE EXCLUSIVE lock, which lets the server keep writing; validating
-- a constraint already valid does nothing, so this runs again harmlessly.
--
-- Should a row break it (written by hand: the server never wrote such rows),
-- the migration stops and names the constraint; sql/README.md, "Rules held by
-- checks", gives the query that finds the row.

ALTER TABLE webhook_endpoints VALIDATE CONSTRAINT webhook_endpoints_http_only_to_localhost;
