-- Checks the deliveries written before migration 0083 against its rule (true of
-- every row: the column is new, 0 by default). VALIDATE CONSTRAINT reads the
-- table under a SHARE UPDATE EXCLUSIVE lock, which lets the server keep
-- writing; validating a constraint already valid does nothing, so this runs
-- again harmlessly.

ALTER TABLE webhook_deliveries VALIDATE CONSTRAINT webhook_deliveries_redeliveries_not_negative;
