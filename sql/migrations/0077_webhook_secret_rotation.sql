-- A webhook's signing secret can be rotated (POST /v1/webhooks/:id/rotate-secret)
-- without a moment in which the receiver refuses deliveries: the secret it
-- replaces keeps signing beside the new one until previous_secret_expires_at
-- (at most 7 days; a day unless the client asks otherwise), so that the
-- receiver can switch to the new secret at its own pace. Deliveries carry one
-- v1= signature per secret in force, as Stripe's scheme allows.
--
--   previous_sealed_secret      the secret replaced, sealed as sealed_secret is,
--                               under the same master key (master_key_id)
--   previous_secret_expires_at  until when it still signs
--
-- Both are set or neither (webhook_endpoints_previous_secret_pair, added NOT
-- VALID like the rule below: 0078 validates both in its own transaction). The
-- service's role may now change the sealed secret, its master key id and the
-- two new columns: what it could already write when creating an endpoint.
-- audit_events takes webhook.secret_rotated (added NOT VALID; 0078 validates).
--
-- Written to be run again: the columns, the pair rule and the grant already
-- there are left as they are; the rule of the audit actions is replaced by
-- the same one, NOT VALID until 0078 validates it again.

ALTER TABLE webhook_endpoints
    ADD COLUMN IF NOT EXISTS previous_sealed_secret bytea,
    ADD COLUMN IF NOT EXISTS previous_secret_expires_at timestamptz;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint
                    WHERE conrelid = 'webhook_endpoints'::regclass AND conname = 'webhook_endpoints_previous_secret_pair') THEN
        ALTER TABLE webhook_endpoints ADD CONSTRAINT webhook_endpoints_previous_secret_pair
            CHECK ((previous_sealed_secret IS NULL) = (previous_secret_expires_at IS NULL)) NOT VALID;
    END IF;
END
$$;

GRANT UPDATE (sealed_secret, master_key_id, previous_sealed_secret, previous_secret_expires_at)
    ON webhook_endpoints TO comprobify_app;

ALTER TABLE audit_events DROP CONSTRAINT IF EXISTS audit_events_action_values;
ALTER TABLE audit_events ADD CONSTRAINT audit_events_action_values CHECK (action IN (
    'tenant.signed_up', 'tenant.email_verified', 'tenant.verification_resent',
    'tenant.promoted', 'api_key.minted', 'api_key.revoked',
    'issuer.created', 'issuer.updated', 'issuer.certificate_set',
    'webhook.created', 'webhook.deleted', 'webhook.secret_rotated')) NOT VALID;

COMMENT ON COLUMN webhook_endpoints.sealed_secret IS
    'The signing secret (whsec_...) sealed with AES-256-GCM under the master key (COMPROBIFY_SECRET_KEY), with the tenant and endpoint ids as associated data. Shown once, in the response that creates the endpoint or rotates its secret; never stored in plaintext.';
COMMENT ON COLUMN webhook_endpoints.master_key_id IS
    'Which master key sealed the secret and the previous one (8 hex digits derived from it), as for issuer_certificates.';
COMMENT ON COLUMN webhook_endpoints.previous_sealed_secret IS
    'The secret the last rotation replaced, sealed as sealed_secret is: deliveries are signed with it too until previous_secret_expires_at (migration 0077). NULL when the rotation kept none.';
COMMENT ON COLUMN webhook_endpoints.previous_secret_expires_at IS
    'Until when previous_sealed_secret still signs deliveries; afterwards it is never used, and the next rotation overwrites it (migration 0077).';
COMMENT ON CONSTRAINT webhook_endpoints_previous_secret_pair ON webhook_endpoints IS
    'A previous secret comes with the time it expires, and neither without the other (migration 0077, validated by 0078).';
COMMENT ON CONSTRAINT audit_events_action_values ON audit_events IS
    'The actions the server records (migration 0035 added issuer.created, webhook.created and webhook.deleted; 0077 webhook.secret_rotated, validated by 0078).';
COMMENT ON COLUMN audit_events.action IS
    'What happened: tenant.signed_up, tenant.email_verified, tenant.verification_resent, tenant.promoted, api_key.minted, api_key.revoked, issuer.created, issuer.updated, issuer.certificate_set, webhook.created, webhook.deleted or webhook.secret_rotated. The tenant.verification_resent events of the last hour hold the limit of 5 resends an hour.';
COMMENT ON TABLE audit_events IS
    'Who did what: sign-up, verification, keys minted and revoked, promotion, issuers created and changed, certificates set, webhooks created and deleted and their secrets rotated. Written in the same transaction as the change.';
