-- Checks the rows written before migration 0074 against its four rules.
-- VALIDATE CONSTRAINT reads each table under a SHARE UPDATE EXCLUSIVE lock,
-- which lets the server keep writing; in its own migration so that 0074's
-- brief ACCESS EXCLUSIVE locks are not held through the scans. Validating a
-- constraint already valid does nothing, so this runs again harmlessly.
--
-- Should a row break one (written by hand: the server never wrote such rows),
-- the migration stops and names the constraint; sql/README.md, "Rules held by
-- checks", gives the query that finds the row.

ALTER TABLE audit_events VALIDATE CONSTRAINT audit_events_key_iff_tenant_actor;
ALTER TABLE audit_events VALIDATE CONSTRAINT audit_events_details_object;
ALTER TABLE api_keys VALIDATE CONSTRAINT api_keys_replaces_another_key;
ALTER TABLE idempotency_keys VALIDATE CONSTRAINT idempotency_keys_expiry_after_claim;
