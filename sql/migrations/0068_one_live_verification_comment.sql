-- The comment of migration 0067's index (a migration without a transaction
-- holds one statement).
COMMENT ON INDEX email_verifications_one_live_per_tenant IS 'At most one live verification token per tenant (unused and not invalidated; an expired one counts until a resend invalidates it): a resend and support''s verification invalidate the live token before anything else, under the tenant row''s lock (migrations 0063, 0067).';
