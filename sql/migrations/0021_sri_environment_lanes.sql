-- SRI's two environments claimed apart.
--
-- claim_sri_work() took the oldest due documents of either environment. SRI's
-- test service (celcer) is slow or down at times when production (cel) is
-- not; every worker then waited out SRI_TIMEOUT_MS on sandbox documents while
-- production documents, due behind them, waited too. A claim now takes
-- production documents first, and sandbox ones only up to the number the
-- server gives: it keeps a quarter of its SRI_WORKERS, rounded up, for
-- production documents (none when it has only one).
--
-- 1. document_submissions.environment, the document's environment, written
--    with the submission. Pending submissions get theirs here (final ones are
--    never claimed again and keep NULL); a submission inserted without one (a
--    server of the previous release, while it is replaced) gets its
--    document's from document_submissions_row_rules(). The column is plain
--    text: a column of a domain with constraints (sri_environment) would make
--    PostgreSQL rewrite the whole table under an exclusive lock to add it. Its
--    rule is in document_submissions_row_rules(), as the table's other rules
--    are (migration 0015): document_submissions_environment_known, a waiting
--    submission names sandbox or production, and any other value is refused.
-- 2. claim_sri_work(worker, limit, lease_ms, sandbox_limit, tenants), which
--    also returns each document's environment. The four-argument claim, of
--    either environment alike, stays for servers of the previous release
--    while they are replaced.
-- 3. document_submissions_pending_waits: a SIGNED or RECEIVED submission has
--    its next_attempt_at. Without one, no claim ever takes it and
--    sri_queue_depth() does not count it, so it would wait unseen for ever.
--    The server never writes such a row; any already there are made due
--    first, and the backfill of item 1 finds the waiting rows by that column.
-- 4. Migration 0022 builds the index this claim reads, concurrently.

-- Item 3's rows first, before ALTER TABLE takes its exclusive lock: this
-- statement reads the whole table, under the lock an UPDATE takes.
UPDATE document_submissions SET next_attempt_at = now() WHERE status IN ('SIGNED', 'RECEIVED') AND next_attempt_at IS NULL;

ALTER TABLE document_submissions ADD COLUMN environment text;

COMMENT ON COLUMN document_submissions.environment IS 'The document''s environment (documents.environment): production''s SRI work is claimed ahead of sandbox''s. NULL only for final submissions decided before migration 0021.';

-- The waiting ones, found through document_submissions_due (only they have a
-- next attempt, now), not by scanning the table.
UPDATE document_submissions s SET environment = d.environment
  FROM documents d
 WHERE d.tenant_id = s.tenant_id AND d.id = s.document_id AND s.next_attempt_at IS NOT NULL AND s.environment IS NULL;

GRANT SELECT (environment) ON document_submissions TO comprobify_auth;

CREATE OR REPLACE FUNCTION document_submissions_row_rules() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    -- A submission written by a server of a release before migration 0021
    -- names no environment: it is its document's.
    IF TG_OP = 'INSERT' AND NEW.environment IS NULL THEN
        SELECT d.environment INTO NEW.environment FROM documents d WHERE d.tenant_id = NEW.tenant_id AND d.id = NEW.document_id;
    END IF;
    -- document_submissions_authorized_has_its_authorization: AUTHORIZED, and
    -- only AUTHORIZED, has SRI's number, date and XML of the authorization.
    IF NOT ((NEW.status = 'AUTHORIZED')
            = (NEW.authorization_number IS NOT NULL AND NEW.authorized_at IS NOT NULL AND NEW.authorization_xml IS NOT NULL)) THEN
        RAISE check_violation USING CONSTRAINT = 'document_submissions_authorized_has_its_authorization', TABLE = TG_TABLE_NAME,
            SCHEMA = TG_TABLE_SCHEMA,
            MESSAGE = 'new row for relation "document_submissions" violates check constraint "document_submissions_authorized_has_its_authorization"';
    END IF;
    -- document_submissions_environment_known: a document still waiting for
    -- SRI names its environment (the claims take one environment at a time),
    -- and no environment is other than sandbox or production.
    IF NOT coalesce(NEW.environment IN ('sandbox', 'production'), NEW.status NOT IN ('SIGNED', 'RECEIVED')) THEN
        RAISE check_violation USING CONSTRAINT = 'document_submissions_environment_known', TABLE = TG_TABLE_NAME,
            SCHEMA = TG_TABLE_SCHEMA,
            MESSAGE = 'new row for relation "document_submissions" violates check constraint "document_submissions_environment_known"';
    END IF;
    -- document_submissions_final_states_wait_for_nothing: a final status has
    -- no next attempt.
    IF NOT (NEW.status NOT IN ('RETURNED', 'AUTHORIZED', 'NOT_AUTHORIZED') OR NEW.next_attempt_at IS NULL) THEN
        RAISE check_violation USING CONSTRAINT = 'document_submissions_final_states_wait_for_nothing', TABLE = TG_TABLE_NAME,
            SCHEMA = TG_TABLE_SCHEMA,
            MESSAGE = 'new row for relation "document_submissions" violates check constraint "document_submissions_final_states_wait_for_nothing"';
    END IF;
    -- document_submissions_lease_complete: a lease has both its holder and
    -- its end, or neither.
    IF NOT ((NEW.leased_by IS NULL) = (NEW.leased_until IS NULL)) THEN
        RAISE check_violation USING CONSTRAINT = 'document_submissions_lease_complete', TABLE = TG_TABLE_NAME, SCHEMA = TG_TABLE_SCHEMA,
            MESSAGE = 'new row for relation "document_submissions" violates check constraint "document_submissions_lease_complete"';
    END IF;
    -- document_submissions_pending_waits: a document still waiting for SRI
    -- has its next attempt (without one, no claim would ever take it).
    IF NOT (NEW.status NOT IN ('SIGNED', 'RECEIVED') OR NEW.next_attempt_at IS NOT NULL) THEN
        RAISE check_violation USING CONSTRAINT = 'document_submissions_pending_waits', TABLE = TG_TABLE_NAME, SCHEMA = TG_TABLE_SCHEMA,
            MESSAGE = 'new row for relation "document_submissions" violates check constraint "document_submissions_pending_waits"';
    END IF;
    RETURN NEW;
END
$$;

COMMENT ON FUNCTION document_submissions_row_rules() IS
    'The rules between a submission''s columns, checked before each insert or update (trigger document_submissions_row_rules): document_submissions_lease_complete, document_submissions_final_states_wait_for_nothing, document_submissions_environment_known, document_submissions_authorized_has_its_authorization, document_submissions_pending_waits; and a submission inserted without its environment gets its document''s. A refused row fails with SQLSTATE 23514 and the rule''s name, as a CHECK constraint would.';

CREATE FUNCTION claim_sri_work(p_worker uuid, p_limit integer, p_lease_ms integer, p_sandbox_limit integer, p_tenants bigint[])
    RETURNS TABLE (tenant_id bigint, document_id bigint, environment text)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp
    AS $$
#variable_conflict use_column
DECLARE
    wanted constant integer := least(greatest(p_limit, 0), 1000);
    taken integer;
BEGIN
    -- Two statements, one per environment, each of the shape of the claim
    -- before (migration 0009): with both in one statement the planner could not
    -- tell how many rows the second would take, and joined the lease's UPDATE
    -- to a scan of the whole table.
    RETURN QUERY
    WITH due AS (
        SELECT s.tenant_id, s.document_id
          FROM document_submissions s
         WHERE s.environment = 'production'
           AND s.next_attempt_at <= now()
           AND (s.leased_until IS NULL OR s.leased_until < now())
           AND (p_tenants IS NULL OR s.tenant_id = ANY (p_tenants))
         ORDER BY s.next_attempt_at
         LIMIT wanted
           FOR UPDATE SKIP LOCKED
    )
    UPDATE document_submissions s
       SET leased_by = p_worker,
           leased_until = now() + make_interval(secs => least(greatest(p_lease_ms, 1000), 86400000) / 1000.0)
      FROM due
     WHERE s.tenant_id = due.tenant_id AND s.document_id = due.document_id
    RETURNING s.tenant_id, s.document_id, s.environment::text;
    GET DIAGNOSTICS taken = ROW_COUNT;
    IF taken >= wanted OR p_sandbox_limit <= 0 THEN
        RETURN;
    END IF;
    RETURN QUERY
    WITH due AS (
        SELECT s.tenant_id, s.document_id
          FROM document_submissions s
         WHERE s.environment = 'sandbox'
           AND s.next_attempt_at <= now()
           AND (s.leased_until IS NULL OR s.leased_until < now())
           AND (p_tenants IS NULL OR s.tenant_id = ANY (p_tenants))
         ORDER BY s.next_attempt_at
         LIMIT least(wanted - taken, p_sandbox_limit)
           FOR UPDATE SKIP LOCKED
    )
    UPDATE document_submissions s
       SET leased_by = p_worker,
           leased_until = now() + make_interval(secs => least(greatest(p_lease_ms, 1000), 86400000) / 1000.0)
      FROM due
     WHERE s.tenant_id = due.tenant_id AND s.document_id = due.document_id
    RETURNING s.tenant_id, s.document_id, s.environment::text;
END
$$;

COMMENT ON FUNCTION claim_sri_work(uuid, integer, integer, integer, bigint[]) IS
    'Takes up to p_limit (at most 1000) submissions that are due (next_attempt_at has come) and not leased, or whose lease has ended, FOR UPDATE SKIP LOCKED: production ones first, then sandbox ones, at most p_sandbox_limit of those; leases them to p_worker (an id the server draws per claim) for p_lease_ms (at least 1 s, at most 1 day) and returns them as (tenant, document, environment), each environment''s oldest due first. p_tenants, when not NULL, keeps the claim to those tenants (dedicated workers, tests). Reads nothing else; the caller then acts as each tenant.';

COMMENT ON FUNCTION claim_sri_work(uuid, integer, integer, bigint[]) IS
    'The claim of servers before migration 0021, of either environment alike; kept while they are replaced, dropped later. Takes up to p_limit (at most 1000) submissions that are due and not leased, or whose lease has ended, FOR UPDATE SKIP LOCKED, leases them to p_worker for p_lease_ms (at least 1 s, at most 1 day) and returns them as (tenant, document) pairs, oldest due first.';

ALTER FUNCTION claim_sri_work(uuid, integer, integer, integer, bigint[]) OWNER TO comprobify_auth;
REVOKE ALL ON FUNCTION claim_sri_work(uuid, integer, integer, integer, bigint[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION claim_sri_work(uuid, integer, integer, integer, bigint[]) TO comprobify_app;
