-- claim_webhook_deliveries() looks past the due deliveries of an endpoint that
-- already has its deliveries in flight (migrations 0010 and 0017): a claim of
-- one, as the background work makes while requests keep PostgreSQL busy, still
-- finds another endpoint's delivery behind any number of them.
BEGIN;
\ir fixtures/two_tenants.sql

SELECT plan(3);

-- Tenant A's endpoint: two deliveries in flight, and nine due (the fixture's
-- and eight more), all older than tenant B's one due delivery.
INSERT INTO webhook_events (tenant_id, id, environment, type, document_id, payload) VALUES
    (900001, 'evt_f0000000000000000000000000000001', 'sandbox', 'document.authorized', 900071, '{}'),
    (900001, 'evt_f0000000000000000000000000000002', 'sandbox', 'document.authorized', 900071, '{}'),
    (900001, 'evt_f0000000000000000000000000000003', 'sandbox', 'document.authorized', 900071, '{}'),
    (900001, 'evt_f0000000000000000000000000000004', 'sandbox', 'document.authorized', 900071, '{}'),
    (900001, 'evt_f0000000000000000000000000000005', 'sandbox', 'document.authorized', 900071, '{}'),
    (900001, 'evt_f0000000000000000000000000000006', 'sandbox', 'document.authorized', 900071, '{}'),
    (900001, 'evt_f0000000000000000000000000000007', 'sandbox', 'document.authorized', 900071, '{}'),
    (900001, 'evt_f0000000000000000000000000000008', 'sandbox', 'document.authorized', 900071, '{}'),
    (900001, 'evt_f0000000000000000000000000000009', 'sandbox', 'document.authorized', 900071, '{}'),
    (900001, 'evt_f0000000000000000000000000000010', 'sandbox', 'document.authorized', 900071, '{}');
INSERT INTO webhook_deliveries (tenant_id, id, event_id, endpoint_id, status, next_attempt_at, leased_by, leased_until) VALUES
    (900001, 900201, 'evt_f0000000000000000000000000000001', 900101, 'pending', now() - interval '20 seconds', '00000000-0000-0000-0000-0000000000ff', now() + interval '1 minute'),
    (900001, 900202, 'evt_f0000000000000000000000000000002', 900101, 'pending', now() - interval '20 seconds', '00000000-0000-0000-0000-0000000000ff', now() + interval '1 minute'),
    (900001, 900203, 'evt_f0000000000000000000000000000003', 900101, 'pending', now() - interval '17 seconds', NULL, NULL),
    (900001, 900204, 'evt_f0000000000000000000000000000004', 900101, 'pending', now() - interval '16 seconds', NULL, NULL),
    (900001, 900205, 'evt_f0000000000000000000000000000005', 900101, 'pending', now() - interval '15 seconds', NULL, NULL),
    (900001, 900206, 'evt_f0000000000000000000000000000006', 900101, 'pending', now() - interval '14 seconds', NULL, NULL),
    (900001, 900207, 'evt_f0000000000000000000000000000007', 900101, 'pending', now() - interval '13 seconds', NULL, NULL),
    (900001, 900208, 'evt_f0000000000000000000000000000008', 900101, 'pending', now() - interval '12 seconds', NULL, NULL),
    (900001, 900209, 'evt_f0000000000000000000000000000009', 900101, 'pending', now() - interval '11 seconds', NULL, NULL),
    (900001, 900210, 'evt_f0000000000000000000000000000010', 900101, 'pending', now() - interval '10 seconds', NULL, NULL);
-- And 100 more, older still: more than any window of candidates (migration
-- 0017 leaves a full endpoint out before the window is taken).
INSERT INTO webhook_events (tenant_id, id, environment, type, document_id, payload)
SELECT 900001, 'evt_e' || lpad(i::text, 31, '0'), 'sandbox', 'document.authorized', 900071, '{}'
  FROM generate_series(1, 100) AS i;
INSERT INTO webhook_deliveries (tenant_id, id, event_id, endpoint_id, status, next_attempt_at)
SELECT 900001, 900300 + i, 'evt_e' || lpad(i::text, 31, '0'), 900101, 'pending', now() - interval '1 minute' - i * interval '1 second'
  FROM generate_series(1, 100) AS i;

SET LOCAL ROLE comprobify_app;
SELECT set_eq($$ SELECT tenant_id, delivery_id FROM claim_webhook_deliveries('00000000-0000-0000-0000-00000000000c', 1, 60000, 2, 100, ARRAY[900001, 900002]) $$,
              $$ VALUES (900002::bigint, 900112::bigint) $$,
              'a claim of one finds tenant B''s delivery behind 109 due deliveries of an endpoint with two in flight');
SELECT is_empty($$ SELECT * FROM claim_webhook_deliveries('00000000-0000-0000-0000-00000000000c', 1, 60000, 2, 100, ARRAY[900001, 900002]) $$,
                'nothing else is claimable: the busy endpoint gets no third delivery');

RESET ROLE;
SELECT is((SELECT count(*) FROM webhook_deliveries WHERE tenant_id = 900001 AND leased_by = '00000000-0000-0000-0000-00000000000c'),
          0::bigint, 'none of the busy endpoint''s deliveries was leased');

SELECT * FROM finish();
ROLLBACK;
