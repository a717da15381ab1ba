-- SRI work: tenants served in turn as well as oldest first.
--
-- claim_sri_work() took each environment's oldest due documents, whatever
-- their tenant. A tenant that issued a hundred thousand documents at once
-- held every worker until its backlog was gone, and another tenant's
-- document issued meanwhile waited behind all of it. Each claim now first
-- takes a turn: from the tenant after the one where the last turn stopped,
-- in the order of tenant ids and wrapping around, the next tenants with a due
-- document, one document each (its oldest not being sent). The rest of the claim is taken
-- oldest due first, as before, so the backlog still goes out at full speed
-- and no worker waits while documents are due.
--
-- The turn walks document_submissions_due_by_tenant (migration 0026) with one
-- descent per tenant to its earliest next attempt, so a tenant costs the same
-- whatever the number of its documents waiting for a later attempt (the ones
-- being sent, at most the workers', are looked through to find one that is
-- not); a tenant whose due documents are all being sent is passed over. A claim looks at no more than 16
-- tenants beyond those it serves, and the next turn goes on from there.
--
-- Where the last turn stopped is kept in a sequence per environment
-- (sri_claim_turn_production, sri_claim_turn_sandbox), set with setval():
-- a sequence is written in place, outside MVCC, so a claim several hundred
-- times a second leaves no dead row versions behind, even while a long
-- transaction holds back vacuum. A claim holds its environment's turn with a transaction-scoped
-- advisory lock; a claim beside it does not wait but takes its documents
-- oldest first only. A claim kept to some tenants (p_tenants: dedicated
-- workers, tests) takes its turn among those tenants from a random one of
-- them and leaves the shared position alone.

CREATE SEQUENCE sri_claim_turn_production AS bigint MINVALUE -9223372036854775808 START WITH -9223372036854775808;
CREATE SEQUENCE sri_claim_turn_sandbox AS bigint MINVALUE -9223372036854775808 START WITH -9223372036854775808;

COMMENT ON SEQUENCE sri_claim_turn_production IS 'Not a source of ids: where the last turn of claim_sri_work() between tenants stopped among production documents, as its last_value (the tenant it looked at last; the lowest bigint before the first turn). Set only by claim_sri_work() with setval(). Holds one tenant id and nothing of that tenant.';
COMMENT ON SEQUENCE sri_claim_turn_sandbox IS 'Not a source of ids: where the last turn of claim_sri_work() between tenants stopped among sandbox documents, as its last_value (the tenant it looked at last; the lowest bigint before the first turn). Set only by claim_sri_work() with setval(). Holds one tenant id and nothing of that tenant.';

GRANT SELECT, UPDATE ON SEQUENCE sri_claim_turn_production, sri_claim_turn_sandbox TO comprobify_auth;

CREATE OR REPLACE FUNCTION claim_sri_work(p_worker uuid, p_limit integer, p_lease_ms integer, p_sandbox_limit integer, p_tenants bigint[])
    RETURNS TABLE (tenant_id bigint, document_id bigint, environment text)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp
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
                -- Each of those tenants' oldest due document not leased.
                RETURN QUERY
                WITH due AS (
                    SELECT d.tenant_id, d.document_id
                      FROM unnest(turn_tenants) AS t(id)
                     CROSS JOIN LATERAL (
                           SELECT s.tenant_id, s.document_id
                             FROM document_submissions s
                            WHERE s.environment = lane AND s.tenant_id = t.id AND s.next_attempt_at <= now()
                              AND (s.leased_until IS NULL OR s.leased_until < now())
                            ORDER BY s.next_attempt_at
                            LIMIT 1
                              FOR UPDATE SKIP LOCKED) AS d
                )
                UPDATE document_submissions s
                   SET leased_by = p_worker,
                       leased_until = now() + lease
                  FROM due
                 WHERE s.tenant_id = due.tenant_id AND s.document_id = due.document_id
                RETURNING s.tenant_id, s.document_id, s.environment;
                GET DIAGNOSTICS claimed = ROW_COUNT;
                taken := taken + claimed;
                room := room - claimed;
            END IF;
        END IF;

        -- 2. The rest, oldest due first (document_submissions_due_by_environment).
        IF room > 0 THEN
            RETURN QUERY
            WITH due AS (
                SELECT s.tenant_id, s.document_id
                  FROM document_submissions s
                 WHERE s.environment = lane
                   AND s.next_attempt_at <= now()
                   AND (s.leased_until IS NULL OR s.leased_until < now())
                   AND (p_tenants IS NULL OR s.tenant_id = ANY (p_tenants))
                 ORDER BY s.next_attempt_at
                 LIMIT room
                   FOR UPDATE SKIP LOCKED
            )
            UPDATE document_submissions s
               SET leased_by = p_worker,
                   leased_until = now() + lease
              FROM due
             WHERE s.tenant_id = due.tenant_id AND s.document_id = due.document_id
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
    'Takes up to p_limit (at most 1000) submissions that are due (next_attempt_at has come) and not leased, or whose lease has ended, FOR UPDATE SKIP LOCKED: production ones first, then sandbox ones, at most p_sandbox_limit of those. In each environment it first takes a turn: the oldest due document not being sent of each of the next tenants with one, in the order of tenant ids after where the last turn stopped (sri_claim_turn_production, sri_claim_turn_sandbox; the turn is skipped while another claim holds it; with p_tenants, from a random one of those tenants); the rest oldest due first. Leases them to p_worker (an id the server draws per claim) for p_lease_ms (at least 1 s, at most 1 day) and returns them as (tenant, document, environment). p_tenants, when not NULL, keeps the claim to those tenants (dedicated workers, tests). Reads nothing else; the caller then acts as each tenant.';
