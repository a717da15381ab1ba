-- An ended webhook delivery can be sent again on request
-- (POST /v1/webhooks/:id/deliveries/:eventId/redeliver): an endpoint down past
-- the retry window, once fixed, gets the events it missed, with their ids and
-- bodies. The delivery goes back to pending, and counts the redelivery:
--
--   redeliveries   how many times the tenant asked for the delivery again
--
-- webhook_deliveries_outcome_is_final (migration 0017) still refuses every
-- other change of a delivered or failed delivery's status, for every role;
-- back to pending it now allows only together with redeliveries growing by
-- one, so a statement that puts an ended delivery back to pending by mistake
-- still fails. The count itself never goes down
-- (webhook_deliveries_redeliveries_never_move_back). Its attempts so far stay
-- in webhook_delivery_attempts.
--
-- The column comes with its default (no rewrite); its rule is added NOT VALID
-- and validated by 0084. Written to be run again: the column, the rule and
-- the grant already there are left as they are; the triggers are replaced by
-- the same ones.

ALTER TABLE webhook_deliveries ADD COLUMN IF NOT EXISTS redeliveries integer NOT NULL DEFAULT 0;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint
                    WHERE conrelid = 'webhook_deliveries'::regclass AND conname = 'webhook_deliveries_redeliveries_not_negative') THEN
        ALTER TABLE webhook_deliveries ADD CONSTRAINT webhook_deliveries_redeliveries_not_negative
            CHECK (redeliveries >= 0) NOT VALID;
    END IF;
END
$$;

GRANT UPDATE (redeliveries) ON webhook_deliveries TO comprobify_app;

DROP TRIGGER IF EXISTS webhook_deliveries_outcome_is_final ON webhook_deliveries;
CREATE TRIGGER webhook_deliveries_outcome_is_final BEFORE UPDATE ON webhook_deliveries FOR EACH ROW
    WHEN (OLD.status IN ('delivered', 'failed') AND NEW.status <> OLD.status
          AND NOT (NEW.status = 'pending' AND NEW.redeliveries = OLD.redeliveries + 1))
    EXECUTE FUNCTION refuse_change('a delivered or failed webhook delivery stays so, unless it is redelivered');

DROP TRIGGER IF EXISTS webhook_deliveries_redeliveries_never_move_back ON webhook_deliveries;
CREATE TRIGGER webhook_deliveries_redeliveries_never_move_back BEFORE UPDATE ON webhook_deliveries FOR EACH ROW
    WHEN (NEW.redeliveries < OLD.redeliveries)
    EXECUTE FUNCTION refuse_change('a delivery''s count of redeliveries never goes down');

COMMENT ON TRIGGER webhook_deliveries_redeliveries_never_move_back ON webhook_deliveries IS
    'Refuses to lower a delivery''s count of redeliveries (refuse_change, SQLSTATE 23000), for every role (migration 0083).';
COMMENT ON TRIGGER webhook_deliveries_outcome_is_final ON webhook_deliveries IS
    'Refuses to change the status of a delivered or failed delivery (refuse_change, SQLSTATE 23000), for every role, but back to pending with redeliveries grown by one: a redelivery the tenant asked for (migration 0083).';
COMMENT ON COLUMN webhook_deliveries.redeliveries IS
    'How many times the tenant asked for this delivery again after it ended (POST /v1/webhooks/:id/deliveries/:eventId/redeliver, migration 0083); each puts it back to pending.';
COMMENT ON CONSTRAINT webhook_deliveries_redeliveries_not_negative ON webhook_deliveries IS
    'A count of redeliveries is never negative (migration 0083, validated by 0084).';
