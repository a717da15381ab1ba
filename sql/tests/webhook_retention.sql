-- purge_webhook_history() (migration 0046): an event leaves with its deliveries
-- and their attempts once it is older than the retention and none of its
-- deliveries is pending or ended within it; nothing younger, nothing of a
-- pending delivery, no document and no endpoint goes with it.
--
--   * a retention under a day is refused;
--   * comprobify_app calls it with no tenant set, and it reaches every tenant;
--   * what it deletes and what it keeps, and a second call finds nothing;
--   * comprobify_auth, acting with a tenant set, still deletes no attempt younger
--     than a day and no pending delivery (the restrictive twins).
BEGIN;
\ir fixtures/two_tenants.sql
SELECT plan(13);

-- now() is the transaction's start: the rows below are dated from it.
INSERT INTO webhook_events (tenant_id, id, environment, type, document_id, payload, created_at) VALUES
    -- delivered 35 days ago: goes
    (900001, 'evt_0100000000000000000000000000000a', 'sandbox', 'document.authorized', 900071, '{}', now() - interval '40 days'),
    -- no endpoint subscribed: goes
    (900001, 'evt_0200000000000000000000000000000a', 'sandbox', 'document.authorized', 900071, '{}', now() - interval '40 days'),
    -- its delivery failed 10 days ago: stays (ended within the retention)
    (900001, 'evt_0300000000000000000000000000000a', 'sandbox', 'document.authorized', 900071, '{}', now() - interval '40 days'),
    -- its delivery is still pending: stays
    (900002, 'evt_0400000000000000000000000000000b', 'sandbox', 'document.returned', 900072, '{}', now() - interval '40 days'),
    -- 5 days old, no delivery: stays
    (900002, 'evt_0500000000000000000000000000000b', 'sandbox', 'document.returned', 900072, '{}', now() - interval '5 days'),
    -- one delivery delivered and one failed, both 35 days ago: goes
    (900002, 'evt_0600000000000000000000000000000b', 'sandbox', 'document.returned', 900072, '{}', now() - interval '40 days'),
    -- its delivery failed 35 days ago, but an attempt was recorded 10 days ago
    -- (a worker that had taken it over): stays
    (900002, 'evt_0700000000000000000000000000000b', 'sandbox', 'document.returned', 900072, '{}', now() - interval '40 days');
INSERT INTO webhook_endpoints (tenant_id, id, environment, url, events, sealed_secret, master_key_id) VALUES
    (900002, 900103, 'sandbox', 'https://b2.example.invalid/hooks', ARRAY['document.returned'], 'sealed secret b2', '01234567');
INSERT INTO webhook_deliveries (tenant_id, id, event_id, endpoint_id, status, attempts, next_attempt_at, created_at, updated_at) VALUES
    (900001, 900141, 'evt_0100000000000000000000000000000a', 900101, 'delivered', 2, NULL, now() - interval '40 days', now() - interval '35 days'),
    (900001, 900143, 'evt_0300000000000000000000000000000a', 900101, 'failed', 9, NULL, now() - interval '40 days', now() - interval '10 days'),
    (900002, 900144, 'evt_0400000000000000000000000000000b', 900102, 'pending', 3, now() + interval '1 hour', now() - interval '40 days', now() - interval '35 days'),
    (900002, 900146, 'evt_0600000000000000000000000000000b', 900102, 'delivered', 1, NULL, now() - interval '40 days', now() - interval '35 days'),
    (900002, 900147, 'evt_0600000000000000000000000000000b', 900103, 'failed', 9, NULL, now() - interval '40 days', now() - interval '35 days'),
    (900002, 900148, 'evt_0700000000000000000000000000000b', 900103, 'failed', 9, NULL, now() - interval '40 days', now() - interval '35 days');
INSERT INTO webhook_delivery_attempts (tenant_id, id, delivery_id, endpoint_id, event_id, outcome, response_code, duration_ms,
                                       error, status_after, worker, attempted_at) VALUES
    (900001, 900151, 900141, 900101, 'evt_0100000000000000000000000000000a', 'http_status', 500, 12, 'HTTP 500', 'pending',
     '00000000-0000-0000-0000-000000000001', now() - interval '36 days'),
    (900001, 900152, 900141, 900101, 'evt_0100000000000000000000000000000a', 'delivered', 200, 12, NULL, 'delivered',
     '00000000-0000-0000-0000-000000000001', now() - interval '35 days'),
    (900001, 900153, 900143, 900101, 'evt_0300000000000000000000000000000a', 'timeout', NULL, 10000, 'no answer', 'failed',
     '00000000-0000-0000-0000-000000000001', now() - interval '10 days'),
    (900002, 900154, 900144, 900102, 'evt_0400000000000000000000000000000b', 'timeout', NULL, 10000, 'no answer', 'pending',
     '00000000-0000-0000-0000-000000000001', now() - interval '35 days'),
    (900002, 900156, 900146, 900102, 'evt_0600000000000000000000000000000b', 'delivered', 204, 8, NULL, 'delivered',
     '00000000-0000-0000-0000-000000000001', now() - interval '35 days'),
    (900002, 900157, 900147, 900103, 'evt_0600000000000000000000000000000b', 'connection', NULL, 3, 'refused', 'failed',
     '00000000-0000-0000-0000-000000000001', now() - interval '35 days'),
    (900002, 900158, 900148, 900103, 'evt_0700000000000000000000000000000b', 'connection', NULL, 3, 'refused', 'failed',
     '00000000-0000-0000-0000-000000000001', now() - interval '10 days');

SET LOCAL ROLE comprobify_app;

SELECT throws_ok($$ SELECT purge_webhook_history(interval '23 hours') $$, '22023', NULL,
                 'a retention under a day is refused');
SELECT throws_ok($$ SELECT purge_webhook_history(NULL) $$, '22023', NULL, 'and no retention at all');

-- The purge crosses every tenant of the database: what it returns counts
-- other rows too where the database holds more than these fixtures.
SELECT cmp_ok(purge_webhook_history(interval '30 days'), '>=', 3::bigint,
              'with 30 days, three events of two tenants go (no tenant is set)');

RESET ROLE;
SELECT set_eq($$ SELECT id FROM webhook_events WHERE tenant_id IN (900001, 900002) $$,
              ARRAY['evt_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 'evt_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb',
                    'evt_0300000000000000000000000000000a', 'evt_0400000000000000000000000000000b',
                    'evt_0500000000000000000000000000000b', 'evt_0700000000000000000000000000000b'],
              'kept: the young, the one whose delivery ended within the retention, the one still pending, the one attempted within it');
SELECT set_eq($$ SELECT id FROM webhook_deliveries WHERE tenant_id IN (900001, 900002) $$,
              ARRAY[900111, 900112, 900143, 900144, 900148]::bigint[],
              'the purged events'' deliveries went with them');
SELECT set_eq($$ SELECT id FROM webhook_delivery_attempts WHERE tenant_id IN (900001, 900002) $$,
              ARRAY[900121, 900122, 900153, 900154, 900158]::bigint[],
              'and their attempts');
SELECT is((SELECT count(*) FROM documents WHERE id IN (900071, 900072)), 2::bigint, 'the documents stay');
SELECT is((SELECT count(*) FROM webhook_endpoints WHERE id IN (900101, 900102, 900103)), 3::bigint, 'the endpoints stay');

SET LOCAL ROLE comprobify_app;
SELECT is(purge_webhook_history(interval '30 days'), 0::bigint, 'a second call finds nothing more');
SELECT cmp_ok(purge_webhook_history(interval '1 day'), '>=', 3::bigint, 'with one day, more go');
RESET ROLE;
SELECT set_eq($$ SELECT id FROM webhook_events WHERE tenant_id IN (900001, 900002) AND created_at < now() - interval '1 day' $$,
              ARRAY['evt_0400000000000000000000000000000b'],
              'of the old events only the pending one stays: those whose delivery failed or was attempted 10 days ago, and the 5-day-old one, went');
SET LOCAL ROLE comprobify_app;

-- comprobify_auth with a tenant set: the tenant isolation policy would let it
-- delete that tenant's rows; the restrictive twins keep it to old, ended ones.
RESET ROLE;
SET LOCAL ROLE comprobify_auth;
SELECT set_config('app.tenant_id', '900002', true);
SELECT is_empty($$ DELETE FROM webhook_delivery_attempts WHERE event_id = 'evt_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb' RETURNING event_id $$,
                'comprobify_auth deletes no attempt younger than a day of the tenant it has set');
SELECT is_empty($$ DELETE FROM webhook_deliveries WHERE id IN (900112, 900144) RETURNING id $$,
                'nor a pending delivery, young or old');

SELECT * FROM finish();
ROLLBACK;
