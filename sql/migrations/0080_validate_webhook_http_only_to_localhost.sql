-- Checks the webhooks created before migration 0079 against its rule (http
-- only to localhost or 127.0.0.1). VALIDATE CONSTRAINT reads the table under a
-- SHARE UPDATE EXCLUSIVE lock, which lets the server keep writing; validating
-- a constraint already valid does nothing, so this runs again harmlessly.
--
-- Should a row break it, the migration stops and names the constraint;
-- sql/README.md, "Rules held by checks", gives the query that finds the row.
-- Only a development or test database can hold one: a server before 0079,
-- with WEBHOOKS_ALLOW_HTTP=1, also took http to a loopback host written in
-- brackets or percent-escaped (http://[127.0.0.1]/, http://%6cocalhost/).
-- Delete that webhook (or write its url plainly) and run migrate again.

ALTER TABLE webhook_endpoints VALIDATE CONSTRAINT webhook_endpoints_http_only_to_localhost;
