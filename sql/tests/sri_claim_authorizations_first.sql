-- claim_sri_work() takes due first authorizations (documents SRI has
-- received and not yet been asked about: status RECEIVED, streak 0) before
-- other documents, each oldest first, in the turn between tenants and in the
-- rest of the claim (migration 0042): under a backlog, a received document is
-- asked for its decision when it is due, not after every older document has
-- been sent. An authorization asked before without a decision keeps the
-- common order, so asks that keep failing cannot hold sending back.
BEGIN;
\ir fixtures/two_tenants.sql

SELECT plan(7);

-- Tenant A: five documents to send, due fifteen minutes ago and more; three
-- received ones whose first authorization fell due seconds ago; one received
-- whose authorization is not due yet; one received, asked three times without
-- a decision, due again a second ago. The fixture's own documents wait.
INSERT INTO documents (tenant_id, id, issuer_id, document_type, environment, sequential, number, access_key, issue_date, metadata)
SELECT 900001, 900100 + n, 900061, '01', 'sandbox', 10 + n, '001-001-' || lpad((10 + n)::text, 9, '0'),
       k || sri_check_digit(k), '2026-03-01', '{}'
  FROM generate_series(1, 10) AS n
 CROSS JOIN LATERAL (SELECT '0103202601' || '1790012345001' || '1' || '001001' || lpad((10 + n)::text, 9, '0')
                            || '12345678' || '1' AS k) AS key(k);
INSERT INTO document_submissions (tenant_id, document_id, status, next_attempt_at)
SELECT 900001, 900100 + n, 'SIGNED', now() - (20 - n) * interval '1 minute' FROM generate_series(1, 5) AS n;
INSERT INTO document_submissions (tenant_id, document_id, status, next_attempt_at)
SELECT 900001, 900100 + n, 'RECEIVED', now() - (10 - n) * interval '1 second' FROM generate_series(6, 8) AS n;
INSERT INTO document_submissions (tenant_id, document_id, status, next_attempt_at)
VALUES (900001, 900109, 'RECEIVED', now() + interval '1 minute');
INSERT INTO document_submissions (tenant_id, document_id, status, next_attempt_at, streak, attempts)
VALUES (900001, 900110, 'RECEIVED', now() - interval '1 second', 3, 4);
UPDATE document_submissions SET next_attempt_at = now() + interval '1 hour' WHERE document_id IN (900071, 900072);

SET LOCAL ROLE comprobify_app;
SELECT results_eq($$ SELECT document_id FROM claim_sri_work('00000000-0000-0000-0000-0000000000a1', 1, 60000, 1, ARRAY[900001]) $$,
                  ARRAY[900106::bigint],
                  'a claim of one (the turn) takes the tenant''s oldest due authorization, not its older documents to send');
SELECT set_eq($$ SELECT document_id FROM claim_sri_work('00000000-0000-0000-0000-0000000000a2', 3, 60000, 3, ARRAY[900001]) $$,
              ARRAY[900107::bigint, 900108, 900101],
              'a claim of three: the turn and the rest take the due authorizations first, then the oldest document to send');
SELECT results_eq($$ SELECT document_id FROM claim_sri_work('00000000-0000-0000-0000-0000000000a3', 1, 60000, 1, ARRAY[900001]) $$,
                  ARRAY[900102::bigint],
                  'with no first authorization due, the oldest due document: not the authorization asked before, due later');
SELECT set_eq($$ SELECT document_id FROM claim_sri_work('00000000-0000-0000-0000-0000000000a4', 100, 60000, 100, ARRAY[900001]) $$,
              ARRAY[900103::bigint, 900104, 900105, 900110],
              'the rest, the authorization asked before among them; one not due yet is not taken');
RESET ROLE;

-- Its authorization falls due, and tenant B has a document to send that is
-- older than any of A's: with both tenants, the turn serves each.
UPDATE document_submissions SET next_attempt_at = now() - interval '1 second' WHERE document_id = 900109;
UPDATE document_submissions SET next_attempt_at = now() - interval '1 day' WHERE document_id = 900072;
SET LOCAL ROLE comprobify_app;
SELECT set_eq($$ SELECT document_id FROM claim_sri_work('00000000-0000-0000-0000-0000000000a5', 2, 60000, 2, ARRAY[900001, 900002]) $$,
              ARRAY[900109::bigint, 900072],
              'each tenant in turn: A''s due authorization, B''s document to send');
RESET ROLE;

SELECT results_eq($$ SELECT leased_by::text, count(*) FROM document_submissions WHERE tenant_id IN (900001, 900002) AND leased_by IS NOT NULL
                      GROUP BY 1 ORDER BY 1 $$,
                  $$ VALUES ('00000000-0000-0000-0000-0000000000a1', 1::bigint), ('00000000-0000-0000-0000-0000000000a2', 3),
                            ('00000000-0000-0000-0000-0000000000a3', 1), ('00000000-0000-0000-0000-0000000000a4', 4),
                            ('00000000-0000-0000-0000-0000000000a5', 2) $$,
                  'each claim leased exactly what it returned');
SELECT is((SELECT count(*) FROM document_submissions WHERE document_id = 900071 AND leased_by IS NULL), 1::bigint,
          'and nothing that was not due');

SELECT * FROM finish();
ROLLBACK;
