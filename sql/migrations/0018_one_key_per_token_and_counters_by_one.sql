-- A token names one key, and the app moves a counter one number at a time.
--
-- 1. A token's SHA-256 digest was unique within a tenant only.
--    authenticate() and email_verification_tenant() look a digest up across
--    tenants and take the first row they find, so two tenants holding the
--    same digest would each be the other. Tokens are 256 random bits: only a
--    hand-made insert could do it. A unique index across tenants would not
--    survive distribution by tenant_id (sql/tests/distribution_keys.sql,
--    docs/scaling.md), and a second probe in authenticate() cost about 5 % of
--    an authenticated read's database time, so the digest is checked where
--    it is written: the triggers api_keys_digest_names_one_key and
--    email_verifications_digest_names_one_token refuse a new row whose digest
--    any row of any tenant already holds, revoked and used ones included.
-- 2. A document takes next_sequential and the counter moves to the next one,
--    in the same transaction, so numbers are gapless. A counter moved by two,
--    or back, would leave a gap or give a number twice. The trigger
--    sequentials_advance_by_one refuses any other change made as
--    comprobify_app. The owner can still set a counter (a branch that goes on
--    from numbers another system issued). The trigger's WHEN is checked in the
--    executor, so the issuing path calls no function for it.

CREATE FUNCTION refuse_held_token_digest() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp
    AS $$
DECLARE
    held boolean;
BEGIN
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

CREATE TRIGGER api_keys_digest_names_one_key BEFORE INSERT ON api_keys FOR EACH ROW
    EXECUTE FUNCTION refuse_held_token_digest();
CREATE TRIGGER email_verifications_digest_names_one_token BEFORE INSERT ON email_verifications FOR EACH ROW
    EXECUTE FUNCTION refuse_held_token_digest();

CREATE TRIGGER sequentials_advance_by_one BEFORE UPDATE OF next_sequential ON sequentials FOR EACH ROW
    WHEN (current_user = 'comprobify_app'
          AND NEW.next_sequential <> OLD.next_sequential
          AND NEW.next_sequential <> OLD.next_sequential + 1)
    EXECUTE FUNCTION refuse_change('a counter moves one number at a time, so that numbers stay gapless');
