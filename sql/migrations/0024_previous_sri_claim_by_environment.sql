-- The previous release's SRI claim reads the environments' index, so that
-- document_submissions_due can go (migration 0025).
--
-- claim_sri_work(worker, limit, lease_ms, tenants) stays for servers of the
-- release before migration 0021 while they are replaced. It read
-- document_submissions_due, the queue's index by next attempt alone, and so
-- every issued document and every state change of a submission wrote an
-- entry in two indexes of due rows, for the sake of a claim that runs only
-- during a rollout. It now takes its rows through the five-argument claim,
-- which reads document_submissions_due_by_environment (migration 0022):
-- production documents first, then sandbox ones with no limit of their own.
-- Those servers keep every other behaviour; they see the same (tenant,
-- document) pairs, leased the same way.
CREATE OR REPLACE FUNCTION claim_sri_work(p_worker uuid, p_limit integer, p_lease_ms integer, p_tenants bigint[])
    RETURNS TABLE (tenant_id bigint, document_id bigint)
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp
    AS $$
    SELECT c.tenant_id, c.document_id FROM claim_sri_work(p_worker, p_limit, p_lease_ms, p_limit, p_tenants) AS c
$$;

COMMENT ON FUNCTION claim_sri_work(uuid, integer, integer, bigint[]) IS
    'The claim of servers before migration 0021; kept while they are replaced, dropped later. claim_sri_work(p_worker, p_limit, p_lease_ms, p_limit, p_tenants) without its environments: up to p_limit (at most 1000) submissions that are due and not leased, or whose lease has ended, FOR UPDATE SKIP LOCKED, production ones first; leases them to p_worker for p_lease_ms (at least 1 s, at most 1 day) and returns them as (tenant, document) pairs.';
