-- comprobify:no-transaction
-- An endpoint's deliveries in the order they were made: GET
-- /v1/webhooks/:id/events pages through them by delivery id (WebhooksStore.events).
-- Written to by the sender's outbox and the delivery workers, never by an
-- issuing request. Built concurrently: deliveries go on meanwhile. 0088
-- comments it.
CREATE INDEX CONCURRENTLY IF NOT EXISTS webhook_deliveries_by_endpoint
    ON webhook_deliveries (tenant_id, endpoint_id, id);
