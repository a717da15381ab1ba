-- claim_sri_work() plans its statements once per session (migration 0028),
-- and leases the rows it locked by their places (ctid): claims of several
-- sizes in one session take the right rows and lease what they return.
BEGIN;
\ir fixtures/two_tenants.sql

SELECT plan(8);

SELECT ok(EXISTS (SELECT 1 FROM pg_proc p, unnest(p.proconfig) AS c
                   WHERE p.oid = 'claim_sri_work(uuid,integer,integer,integer,bigint[])'::regprocedure
                     AND c = 'plan_cache_mode=force_generic_plan'),
          'the claim plans its statements once per session');

-- Eight more sandbox facturas of tenant A, due a minute apart, the oldest
-- first by document id; the fixture's own two documents are due later.
INSERT INTO documents (tenant_id, id, issuer_id, document_type, environment, sequential, number, access_key, issue_date, metadata)
SELECT 900001, 900100 + n, 900061, '01', 'sandbox', 10 + n, '001-001-' || lpad((10 + n)::text, 9, '0'),
       k || sri_check_digit(k), '2026-03-01', '{}'
  FROM generate_series(1, 8) AS n
 CROSS JOIN LATERAL (SELECT '0103202601' || '1790012345001' || '1' || '001001' || lpad((10 + n)::text, 9, '0')
                            || '12345678' || '1' AS k) AS key(k);
INSERT INTO document_submissions (tenant_id, document_id, status, next_attempt_at)
SELECT 900001, 900100 + n, 'SIGNED', now() - (10 - n) * interval '1 minute' FROM generate_series(1, 8) AS n;
UPDATE document_submissions SET next_attempt_at = now() WHERE document_id IN (900071, 900072);

-- A row written again before the claims has a new version in a new place:
-- the claim leases that version.
UPDATE document_submissions SET streak = streak WHERE document_id = 900101;

SET LOCAL ROLE comprobify_app;
SELECT results_eq($$ SELECT document_id FROM claim_sri_work('00000000-0000-0000-0000-0000000000d1', 1, 60000, 1, ARRAY[900001]) $$,
                  ARRAY[900101::bigint], 'a claim of one takes the oldest due, the row written again');
SELECT results_eq($$ SELECT document_id FROM claim_sri_work('00000000-0000-0000-0000-0000000000d2', 1, 60000, 1, ARRAY[900001]) $$,
                  ARRAY[900102::bigint], 'the next claim of one, the next oldest');
SELECT set_eq($$ SELECT document_id FROM claim_sri_work('00000000-0000-0000-0000-0000000000d3', 3, 60000, 3, ARRAY[900001]) $$,
              ARRAY[900103::bigint, 900104, 900105], 'a claim of three takes the next three');
SELECT set_eq($$ SELECT document_id FROM claim_sri_work('00000000-0000-0000-0000-0000000000d4', 100, 60000, 100, ARRAY[900001]) $$,
              ARRAY[900106::bigint, 900107, 900108, 900071], 'a claim of a hundred takes every due row left, and no more');
SELECT is_empty($$ SELECT * FROM claim_sri_work('00000000-0000-0000-0000-0000000000d5', 100, 60000, 100, ARRAY[900001]) $$,
                'nothing left to claim');
RESET ROLE;

SELECT results_eq($$ SELECT leased_by::text, count(*) FROM document_submissions WHERE tenant_id = 900001 AND leased_by IS NOT NULL
                      GROUP BY 1 ORDER BY 1 $$,
                  $$ VALUES ('00000000-0000-0000-0000-0000000000d1', 1::bigint), ('00000000-0000-0000-0000-0000000000d2', 1),
                            ('00000000-0000-0000-0000-0000000000d3', 3), ('00000000-0000-0000-0000-0000000000d4', 4) $$,
                  'each claim leased exactly what it returned');
SELECT is((SELECT count(*) FROM document_submissions WHERE document_id = 900072 AND leased_by IS NULL), 1::bigint,
          'and nothing of tenant B');

SELECT * FROM finish();
ROLLBACK;
