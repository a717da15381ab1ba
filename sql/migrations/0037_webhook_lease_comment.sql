-- A webhook delivery's lease now also covers the wait for a database
-- connection to record the attempt (the server's WebhookSettings): the
-- column's comment says so. A comment only: no lock beyond a moment's.

COMMENT ON COLUMN webhook_deliveries.leased_until IS 'When the lease ends (stamped again when the worker reads the delivery: then + WEBHOOK_TIMEOUT_MS + DB_POOL_WAIT_MS + 5 s, time for the attempt and for its record to get a connection). Past it, another process may claim the delivery: its holder is taken for dead, and the event is delivered again with the same id.';
