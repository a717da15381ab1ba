-- SRI claims planned once per session.
--
-- claim_sri_work() ran two of its statements, the leases of the turn and of
-- the rest, through a fresh plan on every call: PL/pgSQL's plan cache found
-- the plan for the call's own LIMIT (often 1) cheaper than a generic one,
-- so it planned again each time. A busy sender claims one document at a time
-- (a worker frees, a claim fills it), and those plans were a third of the
-- claim's cost (scripts/bench, ADR 008, "Claims planned once").
--
-- A generic plan of those statements as they were would have joined the
-- claimed rows back to the table by hashing all of document_submissions.
-- Each lease is now two statements: the first locks the rows to claim and
-- keeps their places (ctid); the second leases the rows at those places,
-- through a TID scan whatever the number of rows. A locked row keeps its
-- place until the claim's transaction ends, and the second statement's
-- snapshot, taken after the locks, sees the version that was locked (in one
-- statement, a row another transaction had changed since the statement began
-- would be locked in a version that statement cannot see, and not leased).
-- The function plans its statements once per session
-- (plan_cache_mode = force_generic_plan).
-- What it claims, and in which order, is unchanged. Its owner,
-- comprobify_auth, reads the ctid of document_submissions for that: a row's
-- place in the table, nothing of its content.

GRANT SELECT (ctid) ON document_submissions TO comprobify_auth;

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
                -- Each of those tenants' oldest due document not leased:
                -- locked, then leased by the rows' places (migration 0028).
                locked := ARRAY(
                    SELECT d.ctid
                      FROM unnest(turn_tenants) AS t(id)
                     CROSS JOIN LATERAL (
                           SELECT w.ctid
                             FROM document_submissions w
                            WHERE w.environment = lane AND w.tenant_id = t.id AND w.next_attempt_at <= now()
                              AND (w.leased_until IS NULL OR w.leased_until < now())
                            ORDER BY w.next_attempt_at
                            LIMIT 1
                              FOR UPDATE SKIP LOCKED) AS d);
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

        -- 2. The rest, oldest due first (document_submissions_due_by_environment).
        IF room > 0 THEN
            locked := ARRAY(
                SELECT w.ctid
                  FROM document_submissions w
                 WHERE w.environment = lane
                   AND w.next_attempt_at <= now()
                   AND (w.leased_until IS NULL OR w.leased_until < now())
                   AND (p_tenants IS NULL OR w.tenant_id = ANY (p_tenants))
                 ORDER BY w.next_attempt_at
                 LIMIT room
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

