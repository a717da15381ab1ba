-- Checks the audit events written before migration 0081 against its rule of
-- actions. VALIDATE CONSTRAINT reads the table under a SHARE UPDATE EXCLUSIVE
-- lock, which lets the server keep writing audit events; in its own migration
-- so that 0081's brief ACCESS EXCLUSIVE lock is not held through the scan.
-- Validating a constraint already valid does nothing: this runs again harmlessly.

ALTER TABLE audit_events VALIDATE CONSTRAINT audit_events_action_values;
