-- A numbering counter only moves forward. Issuing takes next_sequential and
-- adds one, under the counter's row lock; nothing in the product ever lowers
-- it. A counter moved back (by hand, or by a restore of the counters without
-- their documents) would hand out numbers already issued, which only the
-- unique index on documents' sequentials would then stop, one failed
-- factura at a time. This refuses the change itself, for every role, with the
-- same SQLSTATE (23000) as the other one-way changes (0002_schema.sql).
--
-- An AFTER trigger, not BEFORE: a BEFORE UPDATE row trigger makes PostgreSQL
-- lock the old row again before the update (one more tuple lock and WAL
-- record), and the counter's row is the one every factura of an issuer waits
-- for. The WHEN condition is evaluated as the row is updated, and the
-- function runs only for a change it refuses, failing the statement.
--
-- Takes SHARE ROW EXCLUSIVE on sequentials for a moment: issuing waits for
-- the migration's commit, no longer. CREATE OR REPLACE, so that running it
-- again (a database whose ledger was rewound) leaves the same trigger.

CREATE OR REPLACE TRIGGER sequentials_never_move_back AFTER UPDATE ON sequentials FOR EACH ROW
    WHEN (NEW.next_sequential < OLD.next_sequential)
    EXECUTE FUNCTION refuse_change('a numbering counter never moves back');

COMMENT ON TRIGGER sequentials_never_move_back ON sequentials IS
    'Refuses lowering next_sequential (SQLSTATE 23000): a counter moved back would give numbers already issued.';
