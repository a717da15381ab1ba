-- The SRI queue: claim_sri_work() is the only way the app sees submissions
-- across tenants, and it shows nothing but (tenant, document) pairs.
--
--   * without a tenant, comprobify_app sees no submission and no exchange;
--   * a claim returns due, unleased rows of every tenant, and leases them;
--   * a row leased to someone else is skipped until its lease ends, then taken over;
--   * final rows (next_attempt_at NULL) and rows not yet due are never claimed;
--   * p_tenants keeps a claim to the named tenants;
--   * sri_queue_depth() counts SIGNED and RECEIVED rows of every tenant;
--   * a lease lasts at most one day, whatever the caller asks.
BEGIN;
\ir fixtures/two_tenants.sql

SELECT plan(17);

-- A third document of tenant A, final; it must never be claimed.
INSERT INTO documents (tenant_id, id, issuer_id, document_type, environment, sequential, number, access_key, issue_date, metadata)
VALUES (900001, 900073, 900061, '01', 'sandbox', 2, '001-001-000000002',
        '010320260117900123450011001001000000002123456781' || sri_check_digit('010320260117900123450011001001000000002123456781'),
        '2026-03-01', '{}');
INSERT INTO document_submissions (tenant_id, document_id, status, next_attempt_at) VALUES (900001, 900073, 'RETURNED', NULL);
UPDATE document_submissions SET next_attempt_at = now() - interval '1 second' WHERE document_id IN (900071, 900072);

SET LOCAL ROLE comprobify_app;

SELECT is_empty('SELECT * FROM document_submissions', 'without a tenant the app sees no submission');
SELECT is_empty('SELECT * FROM sri_exchanges', 'without a tenant the app sees no exchange');

SELECT is((SELECT count(*) FROM sri_queue_depth() WHERE pending >= 2), 1::bigint,
          'sri_queue_depth() counts the pending documents of every tenant');

SELECT set_eq($$ SELECT tenant_id, document_id FROM claim_sri_work('00000000-0000-0000-0000-00000000000a', 10, 60000, 10, ARRAY[900001, 900002]) $$,
              $$ VALUES (900001::bigint, 900071::bigint), (900002::bigint, 900072::bigint) $$,
              'a claim returns the due documents of both tenants, and not the final one');

SELECT is_empty($$ SELECT * FROM claim_sri_work('00000000-0000-0000-0000-00000000000b', 10, 60000, 10, ARRAY[900001, 900002]) $$,
                'leased documents are not claimed again while their lease lasts');

SELECT is_empty('SELECT * FROM document_submissions', 'claiming sets no tenant: the app still sees no submission');

RESET ROLE;
SELECT is((SELECT count(*) FROM document_submissions
            WHERE document_id IN (900071, 900072) AND leased_by = '00000000-0000-0000-0000-00000000000a'
              AND leased_until BETWEEN now() + interval '59 seconds' AND now() + interval '61 seconds'), 2::bigint,
          'both are leased to the claimer for SRI_LEASE_MS');

-- The holder died: its lease ends.
UPDATE document_submissions SET leased_until = now() - interval '1 millisecond' WHERE document_id = 900071;
SET LOCAL ROLE comprobify_app;

SELECT set_eq($$ SELECT tenant_id, document_id FROM claim_sri_work('00000000-0000-0000-0000-00000000000b', 10, 60000, 10, ARRAY[900001, 900002]) $$,
              $$ VALUES (900001::bigint, 900071::bigint) $$,
              'a document whose lease ended is taken over');

RESET ROLE;
SELECT is((SELECT leased_by FROM document_submissions WHERE document_id = 900071), '00000000-0000-0000-0000-00000000000b'::uuid,
          'the new holder''s lease replaces the old one');
UPDATE document_submissions SET leased_by = NULL, leased_until = NULL, next_attempt_at = now() + interval '1 hour'
 WHERE document_id = 900072;
UPDATE document_submissions SET leased_by = NULL, leased_until = NULL WHERE document_id = 900071;
SET LOCAL ROLE comprobify_app;

SELECT is_empty($$ SELECT * FROM claim_sri_work('00000000-0000-0000-0000-00000000000c', 10, 60000, 10, ARRAY[900002]) $$,
                'a document not yet due is not claimed, and p_tenants keeps the claim to its tenants');

SELECT set_eq($$ SELECT tenant_id, document_id FROM claim_sri_work('00000000-0000-0000-0000-00000000000c', 1, 60000, 10, ARRAY[900001]) $$,
              $$ VALUES (900001::bigint, 900071::bigint) $$,
              'p_limit bounds the claim');

-- Acting for tenant B, the app cannot take over tenant A's lease by hand.
SELECT is(set_config('app.tenant_id', '900002', true), '900002', 'acting for tenant B');
SELECT is_empty($$ UPDATE document_submissions SET leased_by = NULL, leased_until = NULL WHERE document_id = 900071 RETURNING 1 $$,
                'tenant B cannot release tenant A''s lease');
SELECT is_empty($$ SELECT * FROM sri_exchanges WHERE tenant_id = 900001 $$, 'tenant B sees none of tenant A''s exchanges');

-- A caller asking for a 24-day lease, which would keep the documents from
-- every worker, gets one day.
RESET ROLE;
UPDATE document_submissions SET next_attempt_at = now() - interval '1 second' WHERE document_id = 900072;
SET LOCAL ROLE comprobify_app;
SELECT set_eq($$ SELECT tenant_id, document_id FROM claim_sri_work('00000000-0000-0000-0000-00000000000d', 10, 2147483647, 10, ARRAY[900002]) $$,
              $$ VALUES (900002::bigint, 900072::bigint) $$, 'a claim asking for the longest lease an integer holds');
RESET ROLE;
SELECT is((SELECT leased_until FROM document_submissions WHERE document_id = 900072), now() + interval '24 hours',
          'gets one day, SRI_LEASE_MS''s longest');

RESET ROLE;
SELECT is((SELECT has_function_privilege('public', 'claim_sri_work(uuid,integer,integer,integer,bigint[])', 'EXECUTE')), false,
          'PUBLIC cannot claim work');

SELECT * FROM finish();
ROLLBACK;
