-- Checks the audit events written before 0035 against its rule of actions.
-- VALIDATE CONSTRAINT reads the table under a SHARE UPDATE EXCLUSIVE lock,
-- which lets the server keep inserting; in its own migration so that 0035's
-- brief ACCESS EXCLUSIVE lock is not held through the scan.

ALTER TABLE audit_events VALIDATE CONSTRAINT audit_events_action_values;
