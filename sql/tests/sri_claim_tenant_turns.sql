-- claim_sri_work() takes a turn between the tenants with due work before it
-- takes the rest oldest first (migration 0027): a tenant's backlog, however
-- large and however old, never holds every worker while another tenant's
-- documents wait behind it.
--
-- The shared turn's tests (claims with no tenants given) see every tenant's
-- documents: other tenants' waiting documents are taken out of the queue for
-- the test's transaction, and no server may be claiming beside it
-- (scripts/test runs these files before any server starts).
BEGIN;
\ir fixtures/two_tenants.sql

SELECT plan(14);

-- The fixture's two sandbox submissions are out of the way: each test below
-- lays out its own queue.
UPDATE document_submissions SET next_attempt_at = now() + interval '1 hour' WHERE document_id IN (900071, 900072);
DELETE FROM document_submissions WHERE next_attempt_at IS NOT NULL AND tenant_id NOT BETWEEN 900001 AND 900003;
-- The shared turns start from the lowest tenant id (setval is not undone by
-- the ROLLBACK; the position is only ever a starting point).
DO $$ BEGIN PERFORM setval('sri_claim_turn_production', -9223372036854775808); END $$;

-- Tenant A issued 40 production facturas an hour ago; tenant B one a second ago.
INSERT INTO documents (tenant_id, id, issuer_id, document_type, environment, sequential, number, access_key, issue_date, metadata)
SELECT t, 910000 + (t - 900001) * 100 + n, t + 60, '01', 'production', n, '001-001-' || lpad(n::text, 9, '0'),
       k || sri_check_digit(k), '2026-03-01', '{}'
  FROM (VALUES (900001, 40), (900002, 1)) AS counts(t, how_many)
 CROSS JOIN LATERAL generate_series(1, how_many) AS n
 CROSS JOIN LATERAL (SELECT '0103202601' || CASE t WHEN 900001 THEN '1790012345001' ELSE '0990012345001' END
                            || '2001001' || lpad(n::text, 9, '0') || '123456781' AS k) AS key(k);
INSERT INTO document_submissions (tenant_id, document_id, status, next_attempt_at)
SELECT tenant_id, id, 'SIGNED', CASE tenant_id WHEN 900001 THEN now() - interval '1 hour' + sequential * interval '1 second'
                                               ELSE now() - interval '1 second' END
  FROM documents WHERE tenant_id IN (900001, 900002) AND id >= 910000;

SET LOCAL ROLE comprobify_app;
SELECT set_eq($$ SELECT tenant_id, document_id FROM claim_sri_work('00000000-0000-0000-0000-0000000000c1', 3, 60000, 0, ARRAY[900001, 900002]) $$,
              $$ VALUES (900001::bigint, 910001::bigint), (900001, 910002), (900002, 910101) $$,
              'B''s one document is claimed beside A''s two oldest, though forty of A''s were due before it');
SELECT set_eq($$ SELECT tenant_id, document_id FROM claim_sri_work('00000000-0000-0000-0000-0000000000c2', 3, 60000, 0, ARRAY[900001, 900002]) $$,
              $$ VALUES (900001::bigint, 910003::bigint), (900001, 910004), (900001, 910005) $$,
              'with B''s document being sent, A''s next three, oldest first');
RESET ROLE;
SELECT is((SELECT q.last_value FROM sri_claim_turn_production q), (-9223372036854775808)::bigint,
          'claims kept to some tenants leave the shared turn where it was');

-- A third tenant with work.
UPDATE document_submissions SET leased_by = NULL, leased_until = NULL WHERE tenant_id BETWEEN 900001 AND 900003 AND document_id >= 910000;
INSERT INTO tenants (id, email, name, status, environment) VALUES
    (900003, 'pgtap-tenant-c@example.invalid', 'Tenant C S.A.', 'ACTIVE', 'sandbox');
INSERT INTO issuers (tenant_id, id, ruc, legal_name, establishment, emission_point, sandbox) VALUES
    (900003, 900063, '1791234567001', 'Tenant C S.A.', '001', '001', true);
INSERT INTO documents (tenant_id, id, issuer_id, document_type, environment, sequential, number, access_key, issue_date, metadata)
SELECT 900003, 910200 + n, 900063, '01', 'production', n, '001-001-' || lpad(n::text, 9, '0'), k || sri_check_digit(k), '2026-03-01', '{}'
  FROM generate_series(1, 40) AS n
 CROSS JOIN LATERAL (SELECT '01032026011791234567001' || '2001001' || lpad(n::text, 9, '0') || '123456781' AS k) AS key(k);
INSERT INTO document_submissions (tenant_id, document_id, status, next_attempt_at)
SELECT 900003, id, 'SIGNED', now() - interval '1 minute' + (id - 910200) * interval '1 millisecond' FROM documents WHERE tenant_id = 900003 AND id >= 910200;

-- B's one document is being sent: the turn passes B over and serves C.
UPDATE document_submissions SET leased_by = gen_random_uuid(), leased_until = now() + interval '1 minute' WHERE document_id = 910101;
SET LOCAL ROLE comprobify_app;
SELECT set_eq($$ SELECT tenant_id, document_id FROM claim_sri_work('00000000-0000-0000-0000-0000000000c3', 2, 60000, 0, NULL) $$,
              $$ VALUES (900001::bigint, 910001::bigint), (900003, 910201) $$,
              'a tenant whose due documents are all being sent takes no place in the turn');
RESET ROLE;
UPDATE document_submissions SET leased_by = NULL, leased_until = NULL WHERE tenant_id BETWEEN 900001 AND 900003 AND document_id >= 910000;
DO $$ BEGIN PERFORM setval('sri_claim_turn_production', -9223372036854775808); END $$;

-- Claims of one document each, as a busy server's are: the shared turn
-- serves all three tenants by turns, whichever issued first or most.
CREATE TEMPORARY TABLE served (kept_to boolean, round integer, tenant_id bigint, document_id bigint) ON COMMIT DROP;
CREATE TEMPORARY TABLE positions (round integer, position bigint) ON COMMIT DROP;
GRANT ALL ON served TO comprobify_app;
DO $$
BEGIN
    FOR turn IN 1..120 LOOP
        SET LOCAL ROLE comprobify_app;
        INSERT INTO served
        SELECT turn > 60, turn, c.tenant_id, c.document_id
          FROM claim_sri_work('00000000-0000-0000-0000-0000000000c4', 1, 60000, 0,
                              CASE WHEN turn > 60 THEN ARRAY[900001, 900002, 900003]::bigint[] END) AS c;
        RESET ROLE;
        -- The exchange is over and the document due again at once.
        UPDATE document_submissions s SET leased_by = NULL, leased_until = NULL
          FROM served WHERE served.round = turn AND s.tenant_id = served.tenant_id AND s.document_id = served.document_id;
        IF turn IN (60, 120) THEN
            INSERT INTO positions SELECT turn, q.last_value FROM sri_claim_turn_production q;
        END IF;
    END LOOP;
END
$$;
SELECT is((SELECT count(*) FROM served), 120::bigint, 'each claim of one took one');
SELECT set_eq($$ SELECT tenant_id, count(*) FROM served WHERE NOT kept_to GROUP BY tenant_id $$,
              $$ VALUES (900001::bigint, 20::bigint), (900002, 20), (900003, 20) $$,
              'the shared turn serves the three tenants twenty times each in sixty claims');
SELECT is((SELECT count(*) FROM served a JOIN served b ON b.round = a.round + 1
            WHERE NOT a.kept_to AND NOT b.kept_to AND a.tenant_id = b.tenant_id), 0::bigint,
          'never one tenant twice in a row');
SELECT is((SELECT count(*) FROM served s WHERE s.document_id <> (SELECT min(d.document_id) FROM document_submissions d
                                                                 WHERE d.tenant_id = s.tenant_id AND d.document_id >= 910000)),
          0::bigint, 'each tenant''s oldest due document first');
SELECT set_eq($$ SELECT DISTINCT tenant_id FROM served WHERE kept_to $$, ARRAY[900001::bigint, 900002, 900003],
              'claims kept to the three tenants serve each of them too, from a random one (the chance of missing one in 60 is 3 × (2/3)^60, below 10^-10)');

SELECT is((SELECT count(DISTINCT position) FROM positions), 1::bigint,
          'the sixty claims kept to those tenants left the shared turn where the others had left it');

-- A poll that finds nothing due leaves the shared turn alone: it stays
-- read-only.
UPDATE document_submissions SET next_attempt_at = now() + interval '1 hour' WHERE tenant_id BETWEEN 900001 AND 900003 AND document_id >= 910000;
SET LOCAL ROLE comprobify_app;
SELECT is_empty($$ SELECT * FROM claim_sri_work('00000000-0000-0000-0000-0000000000c5', 4, 60000, 4, NULL) $$,
                'nothing due, nothing claimed');
RESET ROLE;
SELECT is((SELECT q.last_value FROM sri_claim_turn_production q), (SELECT position FROM positions WHERE round = 120),
          'and the shared turn did not move');

SELECT is((SELECT has_sequence_privilege('comprobify_app', 'sri_claim_turn_production', 'SELECT')
               OR has_sequence_privilege('comprobify_app', 'sri_claim_turn_production', 'UPDATE')
               OR has_sequence_privilege('comprobify_app', 'sri_claim_turn_production', 'USAGE')), false,
          'the app moves the production turn only through the claim');
SELECT is((SELECT has_sequence_privilege('comprobify_app', 'sri_claim_turn_sandbox', 'SELECT')
               OR has_sequence_privilege('comprobify_app', 'sri_claim_turn_sandbox', 'UPDATE')
               OR has_sequence_privilege('comprobify_app', 'sri_claim_turn_sandbox', 'USAGE')), false,
          'and the sandbox turn');

SELECT * FROM finish();
ROLLBACK;
