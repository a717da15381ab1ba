-- The claims of earlier releases go: claim_webhook_deliveries(uuid, integer,
-- integer, integer, bigint[]) (no bound per tenant, kept by migration 0020)
-- and claim_sri_work(uuid, integer, integer, bigint[]) (no sandbox limit,
-- kept by migration 0021 and redone over the new claim by 0024). They stayed
-- so that servers of the release before each could run while it was rolled
-- out; no server since calls them, and each was one more function that
-- crosses tenants as comprobify_auth. A server of those releases, if one were
-- still running, would fail its claims after this migration: its webhooks and
-- SRI work wait until it is replaced.
DROP FUNCTION claim_webhook_deliveries(uuid, integer, integer, integer, bigint[]);
DROP FUNCTION claim_sri_work(uuid, integer, integer, bigint[]);
