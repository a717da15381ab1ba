-- comprobify:no-transaction
-- A delivery's id with its endpoint and event, unique (the id alone is), for
-- the foreign key of migration 0066: an attempt names its delivery, and the
-- endpoint and event it names must be that delivery's. Built concurrently:
-- deliveries go on meanwhile.
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS webhook_deliveries_identity
    ON webhook_deliveries (tenant_id, id, endpoint_id, event_id);
