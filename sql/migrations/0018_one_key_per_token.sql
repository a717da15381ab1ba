-- A token names one key, of one tenant.
--
-- A token's SHA-256 digest was unique within a tenant only.
-- authenticate() and email_verification_tenant() look a digest up across
-- tenants and take the first row they find, so two tenants holding the
-- same digest would each be the other. Tokens are 256 random bits: only a
-- hand-made insert could do it. A unique index across tenants would not
-- survive distribution by tenant_id (sql/tests/distribution_keys.sql,
-- docs/scaling.md), and a second probe in authenticate() cost about 5 % of
-- an authenticated read's database time, so the digest is checked where
-- it is written: the triggers api_keys_digest_names_one_key and
-- email_verifications_digest_names_one_token refuse a new row whose digest
-- any row of any tenant already holds, revoked and used ones included.
-- Two inserts of one digest at once queue on an advisory lock named after
-- it, so the second sees the first. The lookups' indexes on token_digest
-- lose their WHERE clause, so that the check finds revoked keys and used
-- tokens by index too (authenticate() still filters revoked keys).

CREATE FUNCTION refuse_held_token_digest() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp
    AS $$
DECLARE
    held boolean;
BEGIN
    -- Inserts of the same digest at once: the second waits for the first to
    -- end, then sees its row.
    PERFORM pg_advisory_xact_lock(hashtextextended(TG_TABLE_NAME || encode(NEW.token_digest, 'hex'), 0));
    -- As comprobify_auth, whose policies show every tenant's keys and tokens.
    IF TG_TABLE_NAME = 'api_keys' THEN
        held := EXISTS (SELECT FROM api_keys WHERE token_digest = NEW.token_digest);
    ELSE
        held := EXISTS (SELECT FROM email_verifications WHERE token_digest = NEW.token_digest);
    END IF;
    IF held THEN
        RAISE EXCEPTION 'a token digest names one row of %, of one tenant, ever', TG_TABLE_NAME
            USING ERRCODE = 'unique_violation', TABLE = TG_TABLE_NAME, COLUMN = 'token_digest';
    END IF;
    RETURN NEW;
END
$$;

COMMENT ON FUNCTION refuse_held_token_digest() IS
    'Trigger function for api_keys and email_verifications: refuses a new row whose token_digest another row of the table (any tenant, revoked or used included) already holds (SQLSTATE 23505). Runs as comprobify_auth so that it sees every tenant''s rows.';

ALTER FUNCTION refuse_held_token_digest() OWNER TO comprobify_auth;
REVOKE ALL ON FUNCTION refuse_held_token_digest() FROM PUBLIC;

-- The same names, without the partial WHERE: every digest, by index.
DROP INDEX api_keys_by_token_digest;
CREATE INDEX api_keys_by_token_digest ON api_keys (token_digest);
DROP INDEX email_verifications_by_token_digest;
CREATE INDEX email_verifications_by_token_digest ON email_verifications (token_digest);

CREATE TRIGGER api_keys_digest_names_one_key BEFORE INSERT ON api_keys FOR EACH ROW
    EXECUTE FUNCTION refuse_held_token_digest();
CREATE TRIGGER email_verifications_digest_names_one_token BEFORE INSERT ON email_verifications FOR EACH ROW
    EXECUTE FUNCTION refuse_held_token_digest();
