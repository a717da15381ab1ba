-- comprobify:no-transaction
-- The pending deliveries that hold a lease (in flight, or left by a worker
-- that died): claim_webhook_deliveries() (migration 0049) counts each
-- endpoint's and tenant's deliveries in flight from these alone, however
-- long the backlog behind them. Built concurrently.
CREATE INDEX CONCURRENTLY IF NOT EXISTS webhook_deliveries_leased
    ON webhook_deliveries (tenant_id, endpoint_id)
    WHERE status = 'pending' AND leased_by IS NOT NULL;
