-- A tenant has at most one verification token waiting to be used: the first
-- of three steps (0063, 0067, 0068).
--
-- A resend invalidates the tenant's unused tokens before it stores the new
-- one, and support's verification invalidates them all, both under the tenant
-- row's lock: the server never leaves two live tokens. The database did not
-- say so: a row inserted by hand, or by a future path that forgot the
-- invalidation, would leave an older emailed link working beside the new one.
-- Migration 0067 builds a unique index on each tenant's live token (unused
-- and not invalidated; an expired one counts until a resend invalidates it).
--
-- First, any tenant holding more than one live token (a database changed by
-- hand) keeps its newest; the others are invalidated, as a resend would.

UPDATE email_verifications v
   SET invalidated_at = now()
 WHERE v.used_at IS NULL AND v.invalidated_at IS NULL
   AND EXISTS (SELECT FROM email_verifications n
                WHERE n.tenant_id = v.tenant_id AND n.used_at IS NULL AND n.invalidated_at IS NULL
                  AND (n.created_at, n.id) > (v.created_at, v.id));
