-- comprobify:no-transaction
-- The waiting submissions of one environment by tenant, each tenant's
-- earliest next attempt first: what the turns of claim_sri_work() walk
-- (migration 0027), one descent per tenant. Built concurrently: issuing
-- documents goes on meanwhile.
CREATE INDEX CONCURRENTLY IF NOT EXISTS document_submissions_due_by_tenant
    ON document_submissions (environment, tenant_id, next_attempt_at) WHERE next_attempt_at IS NOT NULL;
