-- An attempt's endpoint and event are its delivery's.
--
-- webhook_delivery_attempts keeps endpoint_id and event_id beside
-- delivery_id (GET /v1/webhooks/:id/deliveries lists an endpoint's attempts,
-- the purge reads an event's), and each had a foreign key of its own, so an
-- attempt could name a delivery of one endpoint and another endpoint: the
-- server never writes one (it copies both from the delivery it claimed), and
-- now the database refuses one. The foreign key to the delivery takes all
-- three columns, through webhook_deliveries_identity (migration 0065); the
-- one on delivery_id alone, which it covers, is dropped. Adding it takes a
-- brief lock on both tables and checks the rows there are: only the webhook
-- workers write them, and they wait meanwhile.

ALTER TABLE webhook_delivery_attempts
    ADD CONSTRAINT webhook_delivery_attempts_of_their_delivery
    FOREIGN KEY (tenant_id, delivery_id, endpoint_id, event_id)
    REFERENCES webhook_deliveries (tenant_id, id, endpoint_id, event_id);

ALTER TABLE webhook_delivery_attempts DROP CONSTRAINT webhook_delivery_attempts_tenant_id_delivery_id_fkey;

COMMENT ON INDEX webhook_deliveries_identity IS 'A delivery''s id with its endpoint and event (unique, as the id is): the target of webhook_delivery_attempts_of_their_delivery (migrations 0065, 0066).';
COMMENT ON CONSTRAINT webhook_delivery_attempts_of_their_delivery ON webhook_delivery_attempts IS 'An attempt names its delivery, and the endpoint and event it names are that delivery''s (migration 0066).';
