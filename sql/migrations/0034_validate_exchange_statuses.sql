-- Checks the exchanges recorded before 0033 against its two constraints.
--
-- VALIDATE CONSTRAINT reads the whole table under a SHARE UPDATE EXCLUSIVE
-- lock: the senders keep inserting exchanges and the API keeps reading them
-- meanwhile. In its own migration (its own transaction), so that 0033's brief
-- ACCESS EXCLUSIVE lock is not held through the scan. Every status the server
-- has written is one of the five; a row that is not stops this migration and
-- names the constraint, for a DBA to look at before running it again.

ALTER TABLE sri_exchanges VALIDATE CONSTRAINT sri_exchanges_status_before_values;
ALTER TABLE sri_exchanges VALIDATE CONSTRAINT sri_exchanges_status_after_values;
