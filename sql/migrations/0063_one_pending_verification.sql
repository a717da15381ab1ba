-- A tenant has at most one verification token waiting to be used.
--
-- A resend invalidates the tenant's unused tokens before it stores the new
-- one, and support's verification invalidates them all, both under the tenant
-- row's lock: the server never leaves two live tokens. The database did not
-- say so: a row inserted by hand, or by a future path that forgot the
-- invalidation, would leave an older emailed link working beside the new one.
-- Now a unique index on the tenant's live tokens (unused and not invalidated;
-- an expired one counts until a resend invalidates it) refuses a second.
--
-- Any tenant holding more than one live token (a database changed by hand)
-- keeps its newest; the others are invalidated first, as a resend would.

UPDATE email_verifications v
   SET invalidated_at = now()
 WHERE v.used_at IS NULL AND v.invalidated_at IS NULL
   AND EXISTS (SELECT FROM email_verifications n
                WHERE n.tenant_id = v.tenant_id AND n.used_at IS NULL AND n.invalidated_at IS NULL
                  AND (n.created_at, n.id) > (v.created_at, v.id));

CREATE UNIQUE INDEX email_verifications_one_live_per_tenant
    ON email_verifications (tenant_id)
 WHERE used_at IS NULL AND invalidated_at IS NULL;

COMMENT ON INDEX email_verifications_one_live_per_tenant IS 'At most one live verification token per tenant (unused and not invalidated; an expired one counts until a resend invalidates it): a resend and support''s verification invalidate the live token before anything else, under the tenant row''s lock.';
