-- comprobify:no-transaction
-- A delivery's attempts, for the foreign key from webhook_delivery_attempts to
-- webhook_deliveries: deleting a delivery (purge_webhook_history(), migration
-- 0046) checks that no attempt still names it, which without this index reads
-- every attempt of every tenant. Built concurrently: deliveries go on meanwhile.
CREATE INDEX CONCURRENTLY IF NOT EXISTS webhook_delivery_attempts_by_delivery
    ON webhook_delivery_attempts (tenant_id, delivery_id);
