-- `comprobify reseal`: sealed secrets move to the current master key.
--
-- An issuer's private key and a webhook's signing secret are sealed under the
-- master key current when they were stored (master_key_id). Until now an old
-- master key could be retired only once every issuer had uploaded its
-- certificate again: a leaked master key stayed needed for as long as one
-- tenant did not act. `comprobify reseal` opens each secret sealed under
-- another key and seals it again under the current one, one row per
-- transaction, acting as the row's tenant.
--
-- To find those rows across tenants it calls sealed_under_other_keys(), which
-- returns ids only: comprobify_auth sees the tenant, the row's id and its
-- master_key_id (column grants), never a sealed value. The command then reads
-- and writes each row as its tenant, under the tenant isolation policies.
-- Only the migrating owner (the role `reseal` connects as) may call it.

GRANT SELECT (tenant_id, issuer_id, master_key_id) ON issuer_certificates TO comprobify_auth;
GRANT SELECT (tenant_id, id, master_key_id) ON webhook_endpoints TO comprobify_auth;

CREATE POLICY issuer_certificates_resealer ON issuer_certificates
    FOR SELECT TO comprobify_auth USING (true);
CREATE POLICY webhook_endpoints_resealer ON webhook_endpoints
    FOR SELECT TO comprobify_auth USING (true);

COMMENT ON POLICY issuer_certificates_resealer ON issuer_certificates IS
    'comprobify_auth sees every tenant''s certificates (its column grants: tenant_id, issuer_id and master_key_id only), for sealed_under_other_keys().';
COMMENT ON POLICY webhook_endpoints_resealer ON webhook_endpoints IS
    'comprobify_auth sees every tenant''s webhooks (its column grants: tenant_id, id and master_key_id only), for sealed_under_other_keys().';

CREATE FUNCTION sealed_under_other_keys(p_current_key_id text, p_kind text, p_after_tenant bigint, p_after_id bigint,
                                        p_limit integer, p_tenants bigint[])
    RETURNS TABLE (tenant_id bigint, id bigint)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp
    AS $$
    (SELECT c.tenant_id, c.issuer_id
       FROM issuer_certificates c
      WHERE p_kind = 'issuer_certificate'
        AND c.master_key_id IS DISTINCT FROM p_current_key_id
        AND (c.tenant_id, c.issuer_id) > (p_after_tenant, p_after_id)
        AND (p_tenants IS NULL OR c.tenant_id = ANY (p_tenants))
      ORDER BY c.tenant_id, c.issuer_id
      LIMIT least(greatest(p_limit, 0), 10000))
    UNION ALL
    (SELECT w.tenant_id, w.id
       FROM webhook_endpoints w
      WHERE p_kind = 'webhook_endpoint'
        AND w.master_key_id IS DISTINCT FROM p_current_key_id
        AND (w.tenant_id, w.id) > (p_after_tenant, p_after_id)
        AND (p_tenants IS NULL OR w.tenant_id = ANY (p_tenants))
      ORDER BY w.tenant_id, w.id
      LIMIT least(greatest(p_limit, 0), 10000))
$$;

COMMENT ON FUNCTION sealed_under_other_keys(text, text, bigint, bigint, integer, bigint[]) IS
    'The issuer certificates (p_kind issuer_certificate) or webhooks (webhook_endpoint) whose secret is sealed under a master key other than p_current_key_id, after (p_after_tenant, p_after_id) in (tenant, id) order, at most p_limit (up to 10 000), as (tenant, id) only, across tenants (or of p_tenants when not NULL): for `comprobify reseal`, which pages through them and reads and reseals each row as its tenant.';
ALTER FUNCTION sealed_under_other_keys(text, text, bigint, bigint, integer, bigint[]) OWNER TO comprobify_auth;
REVOKE ALL ON FUNCTION sealed_under_other_keys(text, text, bigint, bigint, integer, bigint[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION sealed_under_other_keys(text, text, bigint, bigint, integer, bigint[]) TO CURRENT_USER;
