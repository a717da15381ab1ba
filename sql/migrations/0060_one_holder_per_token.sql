-- A token that two rows hold authenticates no one.
--
-- Migration 0018's triggers refuse a new key or verification token whose
-- digest a row of any tenant already holds. They read with the inserting
-- transaction's snapshot, so under REPEATABLE READ or SERIALIZABLE (promotion
-- mints its keys in a SERIALIZABLE transaction) a row another transaction
-- committed after that snapshot is not seen, and both rows can stand. For
-- random 32-byte tokens that would take a broken random number generator;
-- but then authenticate() and email_verification_tenant() picked one of the
-- holders, whichever the index gave first, and acted as its tenant. Now
-- either finds the digest's row only when no other row holds it: a digest
-- held twice fails closed (no key, 401; no verification, 400) for every
-- holder, and the duplicate is there for a DBA to see. One more probe of the
-- same index entry.

CREATE OR REPLACE FUNCTION authenticate(p_token_digest bytea, p_lock boolean)
    RETURNS TABLE (key_id bigint, tenant_id bigint, environment text, tenant_status text, tenant_environment text)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp
    AS $$
DECLARE
    found_key record;
BEGIN
    IF p_lock THEN
        SELECT k.id, k.tenant_id, k.environment INTO found_key
          FROM api_keys k
         WHERE k.token_digest = p_token_digest AND k.revoked_at IS NULL
           AND NOT EXISTS (SELECT FROM api_keys o
                            WHERE o.token_digest = p_token_digest AND (o.tenant_id, o.id) <> (k.tenant_id, k.id))
           FOR SHARE OF k;
    ELSE
        SELECT k.id, k.tenant_id, k.environment INTO found_key
          FROM api_keys k
         WHERE k.token_digest = p_token_digest AND k.revoked_at IS NULL
           AND NOT EXISTS (SELECT FROM api_keys o
                            WHERE o.token_digest = p_token_digest AND (o.tenant_id, o.id) <> (k.tenant_id, k.id));
    END IF;
    IF FOUND THEN
        PERFORM set_config('app.tenant_id', found_key.tenant_id::text, true);
        key_id := found_key.id;
        tenant_id := found_key.tenant_id;
        environment := found_key.environment;
        -- The tenant row is visible now that app.tenant_id names it.
        SELECT t.status, t.environment INTO tenant_status, tenant_environment
          FROM tenants t WHERE t.id = found_key.tenant_id;
        RETURN NEXT;
    END IF;
END
$$;

COMMENT ON FUNCTION authenticate(bytea, boolean) IS
    'Finds the active key with this SHA-256 token digest, sets app.tenant_id to its tenant for the rest of the transaction and returns the key with its tenant''s status and environment. With p_lock it holds a FOR SHARE lock on the key row, so a revocation cannot commit between the check and the change it authorizes. Returns no row for an unknown or revoked key, or for a digest another key (any tenant, revoked included) also holds (migration 0060), and then sets nothing.';

CREATE OR REPLACE FUNCTION email_verification_tenant(p_token_digest bytea)
    RETURNS bigint
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp
    AS $$
    SELECT v.tenant_id FROM email_verifications v
     WHERE v.token_digest = p_token_digest
       AND v.used_at IS NULL AND v.invalidated_at IS NULL
       AND v.expires_at > now()
       AND NOT EXISTS (SELECT FROM email_verifications o
                        WHERE o.token_digest = p_token_digest AND (o.tenant_id, o.id) <> (v.tenant_id, v.id))
$$;

COMMENT ON FUNCTION email_verification_tenant(bytea) IS
    'The tenant of a pending, unexpired verification token with this SHA-256 digest, or NULL; NULL too when another token (any tenant, used included) holds the same digest (migration 0060). The caller then acts as that tenant under row-level security.';
