-- comprobify:no-transaction
-- No claim reads document_submissions_due any more (migration 0024); every
-- issued document and every state change of a submission wrote an entry in
-- it. sri_queue_depth() (migration 0016) counts the rows of its predicate
-- (next_attempt_at IS NOT NULL), which document_submissions_due_by_environment
-- has too. Dropped concurrently: issuing and sending go on meanwhile.
DROP INDEX CONCURRENTLY IF EXISTS document_submissions_due;
