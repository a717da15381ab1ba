-- SRI claims: first authorizations first.
--
-- A claim took due documents oldest due first, whatever they waited for. A
-- document SRI has received is due for its authorization
-- SRI_AUTHORIZATION_DELAY_MS after the reception, later than every document
-- of a backlog that was waiting to be sent. So under a backlog (a month's
-- facturas issued at once, a sender started after an outage) no document
-- reached a decision until the whole backlog had been received, and SRI.md's
-- "asked SRI_AUTHORIZATION_DELAY_MS later" became minutes or hours. Now, in
-- each environment, the turn between tenants serves each tenant's oldest due
-- first authorization (status RECEIVED, streak 0: not asked yet) before its
-- oldest due document, and the rest of the claim takes the due first
-- authorizations before any other document, each oldest first. A backlog
-- still goes out at full speed, and each document is asked for its decision
-- when that falls due, so documents are decided in the order they were sent.
--
-- Only the first ask comes first. An ask that got no decision (EN PROCESO)
-- or failed raises the streak, and the document is due again after backoff
-- in the common order: were every due authorization first, an authorization
-- service that hangs while reception works would keep every worker on asks
-- that time out, and no document would be sent until it recovered. First
-- asks are at most one per reception, so they cannot hold sending back.
--
-- Two partial indexes (migrations 0040 and 0041) find the due first
-- authorizations per tenant and per environment. Everything else is as in
-- migration 0028. comprobify_auth now reads the streak too (a count of
-- exchanges, nothing of the document).

GRANT SELECT (streak) ON document_submissions TO comprobify_auth;

CREATE OR REPLACE FUNCTION claim_sri_work(p_worker uuid, p_limit integer, p_lease_ms integer, p_sandbox_limit integer, p_tenants bigint[])
    RETURNS TABLE (tenant_id bigint, document_id bigint, environment text)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp
    SET plan_cache_mode = force_generic_plan
    AS $$
#variable_conflict use_column
DECLARE
    wanted constant integer := least(greatest(p_limit, 0), 1000);
    lease constant interval := make_interval(secs => least(greatest(p_lease_ms, 1000), 86400000) / 1000.0);
    lane text;
    room integer;
    taken integer := 0;
    claimed integer;
    has_turn boolean;
    taken_before integer;
    members bigint[];
    origin bigint;
    last_looked_at bigint;
    turn_tenants bigint[];
    served bigint[];
    locked tid[];
BEGIN
    -- Production first, then sandbox up to p_sandbox_limit.
    FOREACH lane IN ARRAY ARRAY['production', 'sandbox'] LOOP
        room := CASE lane WHEN 'production' THEN wanted ELSE least(wanted - taken, greatest(p_sandbox_limit, 0)) END;
        CONTINUE WHEN room <= 0;
        taken_before := taken;
        last_looked_at := NULL;

        -- 1. The turn: the shared one unless another claim holds it, or a
        --    turn of its own among p_tenants.
        IF p_tenants IS NULL THEN
            has_turn := pg_try_advisory_xact_lock(hashtextextended('claim_sri_work turn ' || lane, 0));
            IF has_turn THEN
                origin := CASE lane WHEN 'production' THEN (SELECT q.last_value FROM sri_claim_turn_production q)
                                    ELSE (SELECT q.last_value FROM sri_claim_turn_sandbox q) END;
            END IF;
        ELSE
            -- Each tenant once, whatever the array holds.
            members := ARRAY(SELECT DISTINCT m FROM unnest(p_tenants) AS m WHERE m > -9223372036854775808);
            has_turn := cardinality(members) > 0;
            IF has_turn THEN
                origin := members[1 + floor(random() * cardinality(members))::integer] - 1;
            END IF;
        END IF;
        IF has_turn THEN
            origin := coalesce(origin, -9223372036854775808);
            -- The tenants after `origin`, then from the lowest id up to it:
            -- each step one descent to the next tenant's earliest next
            -- attempt. Up to `room` tenants with one due, after looking at no
            -- more than room + 16.
            WITH RECURSIVE walk (tenant_id, servable, step, due_tenants, wrapped) AS (
                SELECT origin, false, 0, 0, false
              UNION ALL
                SELECT step_to.tenant_id, step_to.servable, walk.step + 1,
                       walk.due_tenants + step_to.servable::integer, step_to.wrapped
                  FROM walk
                 CROSS JOIN LATERAL (
                       (SELECT s.tenant_id, s.next_attempt_at AS first_due, walk.wrapped
                          FROM document_submissions s
                         WHERE s.environment = lane AND s.tenant_id > walk.tenant_id AND s.next_attempt_at IS NOT NULL
                           AND (p_tenants IS NULL OR s.tenant_id = ANY (p_tenants))
                         ORDER BY s.tenant_id, s.next_attempt_at
                         LIMIT 1)
                       UNION ALL
                       (SELECT s.tenant_id, s.next_attempt_at AS first_due, true
                          FROM document_submissions s
                         WHERE NOT walk.wrapped AND s.environment = lane AND s.next_attempt_at IS NOT NULL
                           AND (p_tenants IS NULL OR s.tenant_id = ANY (p_tenants))
                         ORDER BY s.tenant_id, s.next_attempt_at
                         LIMIT 1)
                       LIMIT 1) AS next_waiting
                 -- Servable: its earliest attempt is due, and one of its due
                 -- documents is not being sent (that one's oldest, along the
                 -- index). OFFSET 0 keeps the planner from copying this
                 -- subquery into each use of `servable`, which ran it twice.
                 CROSS JOIN LATERAL (
                       SELECT next_waiting.tenant_id, next_waiting.wrapped,
                              next_waiting.first_due <= now()
                              AND coalesce((SELECT true FROM document_submissions s
                                             WHERE s.environment = lane AND s.tenant_id = next_waiting.tenant_id
                                               AND s.next_attempt_at <= now()
                                               AND (s.leased_until IS NULL OR s.leased_until < now())
                                             ORDER BY s.next_attempt_at
                                             LIMIT 1), false) AS servable
                        OFFSET 0) AS step_to
                 WHERE walk.due_tenants < room AND walk.step < room + 16
                   AND NOT (step_to.wrapped AND step_to.tenant_id > origin)
            )
            SELECT coalesce(array_agg(walk.tenant_id ORDER BY walk.step) FILTER (WHERE walk.servable), '{}'),
                   (array_agg(walk.tenant_id ORDER BY walk.step DESC))[1]
              INTO turn_tenants, last_looked_at
              FROM walk
             WHERE walk.step > 0;

            IF last_looked_at IS NOT NULL THEN
                -- Each of those tenants' oldest due first authorization not
                -- leased (document_submissions_received_due_by_tenant), else its
                -- oldest due document not leased: locked, then leased by the
                -- rows' places (migration 0028).
                SELECT coalesce(array_agg(d.ctid), '{}'), coalesce(array_agg(t.id), '{}')
                  INTO locked, served
                  FROM unnest(turn_tenants) AS t(id)
                 CROSS JOIN LATERAL (
                       SELECT w.ctid
                         FROM document_submissions w
                        WHERE w.environment = lane AND w.tenant_id = t.id AND w.status = 'RECEIVED' AND w.streak = 0
                          AND w.next_attempt_at <= now()
                          AND (w.leased_until IS NULL OR w.leased_until < now())
                        ORDER BY w.next_attempt_at
                        LIMIT 1
                          FOR UPDATE SKIP LOCKED) AS d;
                locked := locked || ARRAY(
                    SELECT d.ctid
                      FROM unnest(turn_tenants) AS t(id)
                     CROSS JOIN LATERAL (
                           SELECT w.ctid
                             FROM document_submissions w
                            WHERE w.environment = lane AND w.tenant_id = t.id AND w.next_attempt_at <= now()
                              AND (w.leased_until IS NULL OR w.leased_until < now())
                            ORDER BY w.next_attempt_at
                            LIMIT 1
                              FOR UPDATE SKIP LOCKED) AS d
                     WHERE t.id <> ALL (served));
                RETURN QUERY
                UPDATE document_submissions s
                   SET leased_by = p_worker,
                       leased_until = now() + lease
                 WHERE s.ctid = ANY (locked)
                RETURNING s.tenant_id, s.document_id, s.environment;
                GET DIAGNOSTICS claimed = ROW_COUNT;
                taken := taken + claimed;
                room := room - claimed;
            END IF;
        END IF;

        -- 2. The rest: due first authorizations, oldest first
        --    (document_submissions_received_due_by_environment), then any
        --    due document, oldest first (document_submissions_due_by_environment),
        --    past the rows the first took (this transaction's own row locks
        --    do not make SKIP LOCKED pass them).
        IF room > 0 THEN
            locked := ARRAY(
                SELECT w.ctid
                  FROM document_submissions w
                 WHERE w.environment = lane AND w.status = 'RECEIVED' AND w.streak = 0
                   AND w.next_attempt_at <= now()
                   AND (w.leased_until IS NULL OR w.leased_until < now())
                   AND (p_tenants IS NULL OR w.tenant_id = ANY (p_tenants))
                 ORDER BY w.next_attempt_at
                 LIMIT room
                   FOR UPDATE SKIP LOCKED);
            locked := locked || ARRAY(
                SELECT w.ctid
                  FROM document_submissions w
                 WHERE w.environment = lane
                   AND w.next_attempt_at <= now()
                   AND (w.leased_until IS NULL OR w.leased_until < now())
                   AND (p_tenants IS NULL OR w.tenant_id = ANY (p_tenants))
                   AND w.ctid <> ALL (locked)
                 ORDER BY w.next_attempt_at
                 LIMIT room - cardinality(locked)
                   FOR UPDATE SKIP LOCKED);
            RETURN QUERY
            UPDATE document_submissions s
               SET leased_by = p_worker,
                   leased_until = now() + lease
             WHERE s.ctid = ANY (locked)
            RETURNING s.tenant_id, s.document_id, s.environment;
            GET DIAGNOSTICS claimed = ROW_COUNT;
            taken := taken + claimed;
        END IF;

        -- The shared turn moves on when this environment had work: a poll
        -- that found nothing due stays read-only (setval takes a
        -- transaction id and writes WAL).
        IF has_turn AND p_tenants IS NULL AND last_looked_at IS NOT NULL AND taken > taken_before THEN
            PERFORM setval(CASE lane WHEN 'production' THEN 'sri_claim_turn_production'::regclass
                                     ELSE 'sri_claim_turn_sandbox'::regclass END, last_looked_at);
        END IF;
    END LOOP;
END
$$;

COMMENT ON FUNCTION claim_sri_work(uuid, integer, integer, integer, bigint[]) IS
    'Takes up to p_limit (at most 1000) submissions that are due (next_attempt_at has come) and not leased, or whose lease has ended, FOR UPDATE SKIP LOCKED: production ones first, then sandbox ones, at most p_sandbox_limit of those. In each environment it first takes a turn: of each of the next tenants with a due document not being sent, in the order of tenant ids after where the last turn stopped (sri_claim_turn_production, sri_claim_turn_sandbox; the turn is skipped while another claim holds it; with p_tenants, from a random one of those tenants), its oldest due first authorization (status RECEIVED, streak 0: not asked yet), else its oldest due document; then the due first authorizations oldest first; then the rest oldest due first. Leases them to p_worker (an id the server draws per claim) for p_lease_ms (at least 1 s, at most 1 day) and returns them as (tenant, document, environment). p_tenants, when not NULL, keeps the claim to those tenants (dedicated workers, tests). Reads nothing else; the caller then acts as each tenant.';
