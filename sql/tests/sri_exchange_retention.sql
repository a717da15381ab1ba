-- purge_sri_exchanges() (migration 0072): exchanges older than the retention
-- go, the oldest first; younger ones, documents and their submissions stay.
--
--   * a retention under a day is refused;
--   * comprobify_app calls it with no tenant set, and it reaches every tenant;
--   * what it deletes and what it keeps, and a second call finds nothing;
--   * the submission's status, attempts and messages are untouched;
--   * comprobify_app cannot delete exchanges itself;
--   * comprobify_auth, acting with a tenant set, still deletes no exchange
--     younger than a day (the restrictive twin).
BEGIN;
\ir fixtures/two_tenants.sql
SELECT plan(11);

UPDATE document_submissions
   SET status = 'RECEIVED', attempts = 4,
       messages = '[{"identifier": "70", "message": "CLAVE DE ACCESO EN PROCESAMIENTO"}]'
 WHERE document_id = 900071;

-- now() is the transaction's start: the rows below are dated from it.
INSERT INTO sri_exchanges (tenant_id, id, document_id, service, url, outcome, http_status, duration_ms,
                           status_before, status_after, answer, error, worker, created_at) VALUES
    -- past 30 days: go
    (900001, 900191, 900071, 'reception', 'http://sri.invalid/RecepcionComprobantesOffline', 'timeout', NULL, 20000,
     'SIGNED', 'SIGNED', NULL, 'no answer within 20000 ms', '00000000-0000-0000-0000-000000000001', now() - interval '100 days'),
    (900001, 900192, 900071, 'reception', 'http://sri.invalid/RecepcionComprobantesOffline', 'received', 200, 30,
     'SIGNED', 'RECEIVED', '{"estado": "RECIBIDA", "messages": []}', NULL, '00000000-0000-0000-0000-000000000001', now() - interval '95 days'),
    (900002, 900193, 900072, 'authorization', 'http://sri.invalid/AutorizacionComprobantesOffline', 'pending', 200, 30,
     'RECEIVED', 'RECEIVED', '{"count": 0, "autorizaciones": []}', NULL, '00000000-0000-0000-0000-000000000002', now() - interval '31 days'),
    -- within 30 days: stay
    (900001, 900194, 900071, 'authorization', 'http://sri.invalid/AutorizacionComprobantesOffline', 'authorized', 200, 30,
     'RECEIVED', 'AUTHORIZED', '{"count": 1, "autorizaciones": []}', NULL, '00000000-0000-0000-0000-000000000001', now() - interval '29 days'),
    (900002, 900195, 900072, 'authorization', 'http://sri.invalid/AutorizacionComprobantesOffline', 'pending', 200, 30,
     'RECEIVED', 'RECEIVED', '{"count": 0, "autorizaciones": []}', NULL, '00000000-0000-0000-0000-000000000002', now() - interval '2 days');

SET LOCAL ROLE comprobify_app;

SELECT throws_ok($$ SELECT purge_sri_exchanges(interval '23 hours') $$, '22023', NULL,
                 'a retention under a day is refused');
SELECT throws_ok($$ SELECT purge_sri_exchanges(NULL) $$, '22023', NULL, 'and no retention at all');
SELECT throws_ok($$ DELETE FROM sri_exchanges WHERE id = 900191 $$, '42501', NULL,
                 'comprobify_app cannot delete an exchange itself');

-- The purge crosses every tenant of the database: what it returns counts
-- other rows too where the database holds more than these fixtures.
SELECT cmp_ok(purge_sri_exchanges(interval '30 days'), '>=', 3::bigint,
              'with 30 days, three exchanges of two tenants go (no tenant is set)');

RESET ROLE;
SELECT set_eq($$ SELECT id FROM sri_exchanges WHERE tenant_id IN (900001, 900002) $$,
              ARRAY[900091, 900092, 900194, 900195]::bigint[],
              'kept: the exchanges within the retention, of both tenants');
SELECT is((SELECT count(*) FROM documents WHERE id IN (900071, 900072)), 2::bigint, 'the documents stay');
SELECT results_eq($$ SELECT status::text, attempts::integer, messages::text FROM document_submissions WHERE document_id = 900071 $$,
                  $$ VALUES ('RECEIVED', 4, '[{"identifier": "70", "message": "CLAVE DE ACCESO EN PROCESAMIENTO"}]') $$,
                  'the submission keeps its status, its count of attempts and SRI''s messages');

SET LOCAL ROLE comprobify_app;
SELECT is(purge_sri_exchanges(interval '30 days'), 0::bigint, 'a second call finds nothing more');
SELECT cmp_ok(purge_sri_exchanges(interval '1 day'), '>=', 2::bigint, 'with one day, the two-day-old and 29-day-old go');
RESET ROLE;
SELECT set_eq($$ SELECT id FROM sri_exchanges WHERE tenant_id IN (900001, 900002) $$,
              ARRAY[900091, 900092]::bigint[],
              'only the fixtures'' exchanges of today stay');

-- comprobify_auth with a tenant set: the tenant isolation policy would let it
-- delete that tenant's rows; the restrictive twin keeps it to old ones.
SET LOCAL ROLE comprobify_auth;
SELECT set_config('app.tenant_id', '900002', true);
SELECT is_empty($$ DELETE FROM sri_exchanges WHERE id = 900092 RETURNING id $$,
                'comprobify_auth deletes no exchange younger than a day of the tenant it has set');

SELECT * FROM finish();
ROLLBACK;
