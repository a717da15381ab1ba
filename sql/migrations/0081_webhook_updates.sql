-- A webhook's url and events can be changed in place (PATCH /v1/webhooks/:id):
-- its id, its secret, its history and its pending deliveries stay, where
-- deleting it and creating another gave up its pending deliveries and changed
-- the secret the receiver holds. The service's role may update those two
-- columns; the table's rules on them (webhook_endpoints_url_format,
-- webhook_endpoints_http_only_to_localhost, webhook_endpoints_events_values)
-- hold an update as they hold an insert. audit_events takes webhook.updated.
--
-- The rule of the audit actions is replaced NOT VALID (the table's lock for a
-- moment, no scan); 0082 validates it in its own transaction. Written to be run
-- again: the grant is idempotent, and the rule is replaced by the same one.

GRANT UPDATE (url, events) ON webhook_endpoints TO comprobify_app;

ALTER TABLE audit_events DROP CONSTRAINT IF EXISTS audit_events_action_values;
ALTER TABLE audit_events ADD CONSTRAINT audit_events_action_values CHECK (action IN (
    'tenant.signed_up', 'tenant.email_verified', 'tenant.verification_resent',
    'tenant.promoted', 'api_key.minted', 'api_key.revoked',
    'issuer.created', 'issuer.updated', 'issuer.certificate_set',
    'webhook.created', 'webhook.updated', 'webhook.deleted', 'webhook.secret_rotated')) NOT VALID;

COMMENT ON CONSTRAINT audit_events_action_values ON audit_events IS
    'The actions the server records (migration 0035 added issuer.created, webhook.created and webhook.deleted; 0077 webhook.secret_rotated; 0081 webhook.updated, validated by 0082).';
COMMENT ON COLUMN audit_events.action IS
    'What happened: tenant.signed_up, tenant.email_verified, tenant.verification_resent, tenant.promoted, api_key.minted, api_key.revoked, issuer.created, issuer.updated, issuer.certificate_set, webhook.created, webhook.updated, webhook.deleted or webhook.secret_rotated. The tenant.verification_resent events of the last hour hold the limit of 5 resends an hour.';
COMMENT ON TABLE audit_events IS
    'Who did what: sign-up, verification, keys minted and revoked, promotion, issuers created and changed, certificates set, webhooks created, changed and deleted and their secrets rotated. Written in the same transaction as the change.';
COMMENT ON COLUMN webhook_endpoints.url IS
    'The https URL deliveries are POSTed to (http only for localhost and 127.0.0.1 where WEBHOOKS_ALLOW_HTTP=1). Refused when it names or resolves to a loopback, private, link-local or metadata address, at creation or change and again at each delivery. A change (PATCH /v1/webhooks/:id) takes effect at the next attempt, pending deliveries included.';
COMMENT ON COLUMN webhook_endpoints.events IS
    'The event types the endpoint is subscribed to: document.authorized, document.not_authorized, document.returned. A change applies to events recorded after it; deliveries already pending are made.';
