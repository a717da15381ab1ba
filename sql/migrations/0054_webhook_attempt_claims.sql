-- Each webhook attempt names the claim it was made under, so that a worker
-- can try its record again.
--
-- A worker records an attempt, and what it did to the delivery, in one
-- transaction (the server's WebhooksStore.record). When that transaction
-- failed (the database out of reach for a moment, a failover), the
-- endpoint's answer was lost until the claim's lease ended and a worker
-- posted the event again: a second delivery of an event the endpoint had
-- already taken. The worker now tries the record again, with backoff, while
-- its lease lasts, as the SRI worker does (migration 0030). A transaction
-- whose COMMIT was sent and whose answer never came may have committed, and
-- trying it again must not record the attempt twice. So the record writes
-- its claim's lease id into webhook_delivery_attempts.lease and does
-- nothing when the delivery already has an attempt under that id: a claim
-- makes one attempt (a claim's id is drawn afresh for every claim, and a
-- delivery is claimed at most once under it). The look-up goes through
-- webhook_delivery_attempts_by_delivery (migration 0043).
--
-- A column without a default is added without rewriting the table.
-- Attempts recorded before this migration have no lease.

ALTER TABLE webhook_delivery_attempts ADD COLUMN lease uuid;

COMMENT ON COLUMN webhook_delivery_attempts.lease IS 'The claim the attempt was made under (webhook_deliveries.leased_by at the time): one attempt per claim of a delivery, so that a worker trying its record again after a failed commit never records it twice. NULL for attempts recorded before migration 0054.';
