-- comprobify:no-transaction
-- webhook_deliveries_pending_by_endpoint (migration 0047) leads with the same
-- columns over the same rows; this one only cost every delivery's writes.
DROP INDEX CONCURRENTLY IF EXISTS webhook_deliveries_by_endpoint;
