-- comprobify:no-transaction
-- Each endpoint's pending deliveries, oldest due first: claim_webhook_deliveries()
-- (migration 0049) walks the endpoints that have pending deliveries through
-- it and takes the oldest due ones of each endpoint that has a free slot.
-- Replaces webhook_deliveries_by_endpoint (tenant_id, endpoint_id), which
-- migration 0050 drops. Built concurrently: deliveries go on meanwhile.
CREATE INDEX CONCURRENTLY IF NOT EXISTS webhook_deliveries_pending_by_endpoint
    ON webhook_deliveries (tenant_id, endpoint_id, next_attempt_at)
    WHERE status = 'pending';
