-- claim_sri_work(worker, limit, lease_ms, sandbox_limit, tenants) (migration
-- 0021): production documents first, sandbox ones only up to the number the
-- server gives, so SRI's test service, slow or down, never holds production
-- documents back; each submission knows its document's environment.
BEGIN;
\ir fixtures/two_tenants.sql

SELECT plan(13);

-- Two production facturas of tenant A, due after both sandbox ones. Their
-- submissions are written without an environment, as a server of the
-- previous release writes them.
INSERT INTO documents (tenant_id, id, issuer_id, document_type, environment, sequential, number, access_key, issue_date, metadata)
SELECT 900001, 900080 + n, 900061, '01', 'production', n, '001-001-00000000' || n,
       k || sri_check_digit(k), '2026-03-01', '{}'
  FROM generate_series(7, 8) AS n
 CROSS JOIN LATERAL (SELECT '01032026011790012345001200100100000000' || n || '123456781' AS k) AS key(k);
INSERT INTO document_submissions (tenant_id, document_id, status, next_attempt_at)
SELECT 900001, 900080 + n, 'SIGNED', now() - interval '1 second' FROM generate_series(7, 8) AS n;
UPDATE document_submissions SET next_attempt_at = now() - interval '2 minutes' WHERE document_id = 900071;
UPDATE document_submissions SET next_attempt_at = now() - interval '1 minute' WHERE document_id = 900072;

SELECT is((SELECT array_agg(environment::text ORDER BY document_id) FROM document_submissions
            WHERE document_id IN (900071, 900087, 900088)),
          ARRAY['sandbox', 'production', 'production'],
          'a submission written without its environment gets its document''s');

SELECT throws_ok($$ UPDATE document_submissions SET environment = NULL WHERE document_id = 900087 $$,
                 '23514', 'new row for relation "document_submissions" violates check constraint "document_submissions_environment_known"',
                 'a waiting submission names its environment');
SELECT throws_ok($$ UPDATE document_submissions SET environment = 'staging' WHERE document_id = 900087 $$,
                 '23514', 'new row for relation "document_submissions" violates check constraint "document_submissions_environment_known"',
                 'no environment other than sandbox and production');

SET LOCAL ROLE comprobify_app;
SELECT set_eq($$ SELECT tenant_id, document_id, environment
                   FROM claim_sri_work('00000000-0000-0000-0000-00000000000a', 3, 60000, 1, ARRAY[900001]) $$,
              $$ VALUES (900001::bigint, 900087::bigint, 'production'::text), (900001, 900088, 'production'),
                        (900001, 900071, 'sandbox') $$,
              'production first, though due later; then sandbox, up to its limit');
SELECT is_empty($$ SELECT * FROM claim_sri_work('00000000-0000-0000-0000-00000000000b', 10, 60000, 0, ARRAY[900001, 900002]) $$,
                'no sandbox document when the server has no room for one');
SELECT set_eq($$ SELECT tenant_id, document_id, environment
                   FROM claim_sri_work('00000000-0000-0000-0000-00000000000b', 10, 60000, 5, ARRAY[900001, 900002]) $$,
              $$ VALUES (900002::bigint, 900072::bigint, 'sandbox'::text) $$,
              'with room, the other sandbox document');

RESET ROLE;
SELECT is((SELECT count(*) FROM document_submissions WHERE leased_by = '00000000-0000-0000-0000-00000000000a'), 3::bigint,
          'the first claim leased what it returned');
SELECT is((SELECT has_function_privilege('public', 'claim_sri_work(uuid,integer,integer,integer,bigint[])', 'EXECUTE')), false,
          'PUBLIC cannot claim work');
SELECT is((SELECT has_function_privilege('comprobify_app', 'claim_sri_work(uuid,integer,integer,integer,bigint[])', 'EXECUTE')), true,
          'the app can');

-- The claims of earlier releases are gone (migration 0051).
SELECT hasnt_function('public', 'claim_sri_work', ARRAY['uuid', 'integer', 'integer', 'bigint[]'],
                      'the four-argument claim of earlier releases is gone (migration 0051)');
SELECT hasnt_function('public', 'claim_webhook_deliveries', ARRAY['uuid', 'integer', 'integer', 'integer', 'bigint[]'],
                      'and so is the five-argument webhook claim');
SELECT hasnt_index('public', 'document_submissions', 'document_submissions_due',
                   'document_submissions_due is gone (migration 0025): no claim reads it');

SELECT lives_ok($$ UPDATE document_submissions SET status = 'RETURNED', next_attempt_at = NULL, environment = NULL,
                           leased_by = NULL, leased_until = NULL
                     WHERE document_id = 900088 $$, 'a final submission may have none (decided before migration 0021)');

SELECT * FROM finish();
ROLLBACK;
