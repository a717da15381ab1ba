-- comprobify:no-transaction
-- The due authorizations of each tenant, oldest first: documents SRI has
-- received (status RECEIVED), whose decision is still to be asked for. A
-- claim's turn between tenants serves each tenant's oldest due one of these
-- before its oldest due document to send (migration 0042). Built
-- concurrently: issuing and sending go on meanwhile.
CREATE INDEX CONCURRENTLY IF NOT EXISTS document_submissions_received_due_by_tenant
    ON document_submissions (environment, tenant_id, next_attempt_at)
    WHERE status = 'RECEIVED' AND next_attempt_at IS NOT NULL;
