-- comprobify:no-transaction
-- An endpoint's deliveries in the order they were made: GET
-- /v1/webhooks/:id/events pages through them by delivery id (WebhooksStore.events).
-- Written to by the sender's outbox and the delivery workers, never by an
-- issuing request. Built concurrently: deliveries go on meanwhile. 0088
-- comments it. (Not 0007's webhook_deliveries_by_endpoint, on the endpoint
-- alone, which 0050 dropped.)
CREATE INDEX CONCURRENTLY IF NOT EXISTS webhook_deliveries_by_endpoint_and_id
    ON webhook_deliveries (tenant_id, endpoint_id, id);
