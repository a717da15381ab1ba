-- comprobify:no-transaction
-- The due submissions of one environment, oldest first: what
-- claim_sri_work(worker, limit, lease_ms, sandbox_limit, tenants) reads
-- (migration 0021). Built concurrently: issuing documents goes on meanwhile.
CREATE INDEX CONCURRENTLY IF NOT EXISTS document_submissions_due_by_environment
    ON document_submissions (environment, next_attempt_at) WHERE next_attempt_at IS NOT NULL;
