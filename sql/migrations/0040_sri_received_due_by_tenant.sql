-- comprobify:no-transaction
-- The due first authorizations of each tenant, oldest first: documents SRI
-- has received (status RECEIVED) whose decision has not been asked for yet
-- (streak 0: an ask that got no decision, or failed, raises it). A claim's
-- turn between tenants serves each tenant's oldest due one of these before
-- its oldest due document (migration 0042). Built concurrently: issuing and
-- sending go on meanwhile.
CREATE INDEX CONCURRENTLY IF NOT EXISTS document_submissions_received_due_by_tenant
    ON document_submissions (environment, tenant_id, next_attempt_at)
    WHERE status = 'RECEIVED' AND streak = 0 AND next_attempt_at IS NOT NULL;
