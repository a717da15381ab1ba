-- comprobify:no-transaction
-- webhook_deliveries_due (next_attempt_at, pending only) was read by the
-- webhook claim before migration 0049 and by nothing since: every pending
-- delivery's insert and update paid for it.
DROP INDEX CONCURRENTLY IF EXISTS webhook_deliveries_due;
