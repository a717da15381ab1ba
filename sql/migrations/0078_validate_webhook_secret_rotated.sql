-- Checks the rows written before migration 0077 against its two rules: the
-- audit events against the actions it knows, the webhooks against the pairing
-- of a previous secret with its expiry (true of every row: the columns are
-- new). VALIDATE CONSTRAINT reads each table under a SHARE UPDATE EXCLUSIVE
-- lock, which lets the server keep writing; in its own migration so that
-- 0077's brief ACCESS EXCLUSIVE locks are not held through the scans.
-- Validating a constraint already valid does nothing: this runs again harmlessly.

ALTER TABLE audit_events VALIDATE CONSTRAINT audit_events_action_values;
ALTER TABLE webhook_endpoints VALIDATE CONSTRAINT webhook_endpoints_previous_secret_pair;
