-- A tenant has at most 100 active API keys per environment (KeysStore.limit):
-- GET /v1/keys returns every active key, unpaged, so their number is what
-- bounds that response. A mint counts the tenant's active keys of its
-- environment while it holds the tenant row (TenantsStore.rosterLock), so the
-- count must stay cheap however many keys were revoked before: without this
-- index it walks the primary key over every key the tenant ever had, and
-- revoked keys are never deleted. The same index serves GET /v1/keys and
-- promotion's count of active sandbox keys.
--
-- Issuers need no index of their own for their cap (1000 per tenant,
-- IssuersStore.limit): they are never deleted, so their count is the primary
-- key's range for the tenant.

CREATE INDEX api_keys_active ON api_keys (tenant_id, environment) WHERE revoked_at IS NULL;

COMMENT ON INDEX api_keys_active IS 'Active keys of a tenant by environment: the per-environment cap on minting (at most 100), GET /v1/keys and promotion''s count. Bounded by the cap whatever the number of revoked keys.';
