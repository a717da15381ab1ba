-- comprobify:no-transaction
-- An event's attempts, for the foreign key from webhook_delivery_attempts to
-- webhook_events: deleting an event (purge_webhook_history(), migration 0046)
-- checks that no attempt still names it. Built concurrently.
CREATE INDEX CONCURRENTLY IF NOT EXISTS webhook_delivery_attempts_by_event
    ON webhook_delivery_attempts (tenant_id, event_id);
