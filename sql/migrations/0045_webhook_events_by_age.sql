-- comprobify:no-transaction
-- Events oldest first, across tenants: purge_webhook_history() (migration
-- 0046) reads the oldest events past the retention and stops at the first
-- younger one. Built concurrently: SRI's decisions write events meanwhile.
CREATE INDEX CONCURRENTLY IF NOT EXISTS webhook_events_by_age
    ON webhook_events (created_at);
