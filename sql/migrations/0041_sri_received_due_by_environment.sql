-- comprobify:no-transaction
-- The due first authorizations of one environment (status RECEIVED, streak
-- 0), oldest first: what the rest of a claim takes before any other document
-- (migration 0042). Built concurrently: issuing and sending go on meanwhile.
CREATE INDEX CONCURRENTLY IF NOT EXISTS document_submissions_received_due_by_environment
    ON document_submissions (environment, next_attempt_at)
    WHERE status = 'RECEIVED' AND streak = 0 AND next_attempt_at IS NOT NULL;
