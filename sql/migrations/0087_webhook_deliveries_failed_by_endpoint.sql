-- comprobify:no-transaction
-- An endpoint's failed deliveries, in the order they were made: GET
-- /v1/webhooks/:id/events?status=failed, the events an endpoint missed, reads
-- only them, however many it took. Holds a row only while its delivery is
-- failed (a redelivery takes it out). Built concurrently. 0088 comments it.
CREATE INDEX CONCURRENTLY IF NOT EXISTS webhook_deliveries_failed_by_endpoint
    ON webhook_deliveries (tenant_id, endpoint_id, id)
    WHERE status = 'failed';
