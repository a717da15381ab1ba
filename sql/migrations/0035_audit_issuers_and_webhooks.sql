-- audit_events also records who created an issuer and who created or deleted
-- a webhook (issuer.created, webhook.created, webhook.deleted), each written
-- in the statement that makes the change.
--
-- An issuer and its counters, or a webhook that receives every authorized
-- document of the tenant, are as much worth knowing about as a key minted: a
-- leaked key could add either, and nothing said which key did.
--
-- The rule of the actions is replaced NOT VALID (the table's lock for a
-- moment, no scan: every row already there met the narrower rule); 0036
-- validates it in its own transaction, under a lock that lets the server keep
-- writing audit events.

ALTER TABLE audit_events DROP CONSTRAINT audit_events_action_values;
ALTER TABLE audit_events ADD CONSTRAINT audit_events_action_values CHECK (action IN (
    'tenant.signed_up', 'tenant.email_verified', 'tenant.verification_resent',
    'tenant.promoted', 'api_key.minted', 'api_key.revoked',
    'issuer.created', 'issuer.updated', 'issuer.certificate_set',
    'webhook.created', 'webhook.deleted')) NOT VALID;

COMMENT ON TABLE audit_events IS 'Who did what: sign-up, verification, keys minted and revoked, promotion, issuers created and changed, certificates set, webhooks created and deleted. Written in the same transaction as the change.';
