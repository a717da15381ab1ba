-- comprobify:no-transaction
-- At most one live verification token per tenant (see migration 0063, which
-- invalidated all but each tenant's newest). Built concurrently: sign-ups
-- and resends go on meanwhile.
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS email_verifications_one_live_per_tenant
    ON email_verifications (tenant_id)
 WHERE used_at IS NULL AND invalidated_at IS NULL;
