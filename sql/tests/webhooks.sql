-- Webhooks: claim_webhook_deliveries() is the only way the app sees
-- deliveries across tenants, and it shows nothing but (tenant, delivery) pairs.
--
--   * without a tenant, comprobify_app sees no endpoint, event, delivery or attempt;
--   * a claim returns due, unleased pending deliveries of every tenant, and leases them;
--   * a leased delivery is skipped until its lease ends, then taken over;
--   * delivered and failed deliveries, and those not yet due, are never claimed;
--   * at most p_per_endpoint deliveries of one endpoint are leased at once;
--   * acting for tenant B, tenant A's rows cannot be seen or changed;
--   * the CHECKs hold a delivery's status and its waiting together, and a deleted webhook stays deleted;
--   * a rotation (migration 0077): the app may change a webhook's sealed secrets and their expiry; a previous
--     secret comes with its expiry; B cannot rotate A's; a changed url (0081) follows the table's rules.
BEGIN;
\ir fixtures/two_tenants.sql

SELECT plan(30);

-- More deliveries of tenant A's endpoint: delivered, failed, not yet due, and two more due.
INSERT INTO webhook_events (tenant_id, id, environment, type, document_id, payload) VALUES
    (900001, 'evt_a1aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 'sandbox', 'document.authorized', 900071, '{}'),
    (900001, 'evt_a2aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 'sandbox', 'document.authorized', 900071, '{}'),
    (900001, 'evt_a3aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 'sandbox', 'document.authorized', 900071, '{}'),
    (900001, 'evt_a4aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 'sandbox', 'document.authorized', 900071, '{}'),
    (900001, 'evt_a5aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 'sandbox', 'document.authorized', 900071, '{}');
INSERT INTO webhook_deliveries (tenant_id, id, event_id, endpoint_id, status, next_attempt_at) VALUES
    (900001, 900131, 'evt_a1aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 900101, 'delivered', NULL),
    (900001, 900132, 'evt_a2aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 900101, 'failed', NULL),
    (900001, 900133, 'evt_a3aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 900101, 'pending', now() + interval '1 hour'),
    (900001, 900134, 'evt_a4aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 900101, 'pending', now() - interval '2 seconds'),
    (900001, 900135, 'evt_a5aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 900101, 'pending', now() - interval '3 seconds');

SET LOCAL ROLE comprobify_app;

SELECT is_empty('SELECT * FROM webhook_endpoints', 'without a tenant the app sees no webhook');
SELECT is_empty('SELECT * FROM webhook_events', 'without a tenant the app sees no event');
SELECT is_empty('SELECT * FROM webhook_deliveries', 'without a tenant the app sees no delivery');
SELECT is_empty('SELECT * FROM webhook_delivery_attempts', 'without a tenant the app sees no attempt');

SELECT is((SELECT count(*) FROM webhook_queue_depth() WHERE pending >= 5), 1::bigint,
          'webhook_queue_depth() counts the pending deliveries of every tenant');

SELECT set_eq($$ SELECT tenant_id, delivery_id FROM claim_webhook_deliveries('00000000-0000-0000-0000-00000000000a', 10, 60000, 2, 100, ARRAY[900001, 900002]) $$,
              $$ VALUES (900001::bigint, 900135::bigint), (900001::bigint, 900134::bigint), (900002::bigint, 900112::bigint) $$,
              'a claim returns due pending deliveries of both tenants, two at most per endpoint, oldest first');

SELECT is_empty($$ SELECT * FROM claim_webhook_deliveries('00000000-0000-0000-0000-00000000000b', 10, 60000, 2, 100, ARRAY[900001, 900002]) $$,
                'an endpoint with its two deliveries in flight gets no third, and leased ones are not claimed again');

SELECT is_empty('SELECT * FROM webhook_deliveries', 'claiming sets no tenant: the app still sees no delivery');

RESET ROLE;
SELECT is((SELECT count(*) FROM webhook_deliveries
            WHERE id IN (900134, 900135, 900112) AND leased_by = '00000000-0000-0000-0000-00000000000a'
              AND leased_until BETWEEN now() + interval '59 seconds' AND now() + interval '61 seconds'), 3::bigint,
          'the claimed deliveries are leased to the claimer');

-- The holder died: its leases end.
UPDATE webhook_deliveries SET leased_until = now() - interval '1 millisecond' WHERE id IN (900134, 900135);
SET LOCAL ROLE comprobify_app;

SELECT set_eq($$ SELECT tenant_id, delivery_id FROM claim_webhook_deliveries('00000000-0000-0000-0000-00000000000b', 1, 60000, 2, 100, ARRAY[900001]) $$,
              $$ VALUES (900001::bigint, 900135::bigint) $$,
              'a delivery whose lease ended is taken over; p_limit and p_tenants bound the claim');

-- A caller asking for a 24-day lease gets one day.
RESET ROLE;
UPDATE webhook_deliveries SET leased_until = now() - interval '1 millisecond' WHERE id = 900134;
SET LOCAL ROLE comprobify_app;
SELECT set_eq($$ SELECT tenant_id, delivery_id FROM claim_webhook_deliveries('00000000-0000-0000-0000-00000000000d', 1, 2147483647, 2, 100, ARRAY[900001]) $$,
              $$ VALUES (900001::bigint, 900134::bigint) $$, 'a claim asking for the longest lease an integer holds');
RESET ROLE;
SELECT is((SELECT leased_until FROM webhook_deliveries WHERE id = 900134), now() + interval '24 hours', 'gets one day');
SET LOCAL ROLE comprobify_app;

-- Acting for tenant B.
SELECT is(set_config('app.tenant_id', '900002', true), '900002', 'acting for tenant B');
SELECT is_empty($$ SELECT * FROM webhook_endpoints WHERE tenant_id = 900001 $$, 'tenant B sees none of tenant A''s webhooks');
SELECT is_empty($$ UPDATE webhook_deliveries SET leased_by = NULL, leased_until = NULL WHERE id = 900135 RETURNING 1 $$,
                'tenant B cannot release tenant A''s lease');
SELECT throws_ok($$ INSERT INTO webhook_deliveries (tenant_id, event_id, endpoint_id) VALUES (900001, 'evt_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 900101) $$,
                 '42501', NULL, 'tenant B cannot queue a delivery for tenant A');

SELECT is_empty($$ UPDATE webhook_endpoints SET sealed_secret = 'sealed by b', previous_sealed_secret = sealed_secret,
                                             previous_secret_expires_at = now() + interval '1 day'
                    WHERE id = 900101 RETURNING 1 $$,
                'tenant B cannot rotate tenant A''s webhook secret');
SELECT is_empty($$ UPDATE webhook_endpoints SET url = 'https://elsewhere.example.invalid/' WHERE id = 900101 RETURNING 1 $$,
                'tenant B cannot change tenant A''s webhook url (migration 0081 lets the app change its own)');

-- Acting for tenant A.
SELECT is(set_config('app.tenant_id', '900001', true), '900001', 'acting for tenant A');
SELECT results_eq($$ UPDATE webhook_endpoints SET sealed_secret = 'sealed new', master_key_id = '89abcdef',
                                                  previous_sealed_secret = sealed_secret,
                                                  previous_secret_expires_at = now() + interval '1 day'
                      WHERE id = 900101 RETURNING sealed_secret, previous_sealed_secret $$,
                  $$ VALUES ('sealed new'::bytea, 'sealed secret a'::bytea) $$,
                  'tenant A rotates its webhook''s secret, the replaced one kept as the previous');
SELECT throws_ok($$ UPDATE webhook_endpoints SET url = 'http://elsewhere.example.invalid/' WHERE id = 900101 $$,
                 '23514', NULL, 'a changed url follows the table''s rules (http only to localhost)');
SELECT throws_ok($$ UPDATE webhook_endpoints SET previous_secret_expires_at = NULL WHERE id = 900101 $$,
                 '23514', NULL, 'a previous secret comes with its expiry');
SELECT throws_ok($$ UPDATE webhook_endpoints SET previous_sealed_secret = NULL WHERE id = 900101 $$,
                 '23514', NULL, 'and an expiry with its previous secret');
SELECT throws_ok($$ UPDATE webhook_deliveries SET status = 'delivered' WHERE id = 900133 $$,
                 '23514', NULL, 'a delivered delivery waits for nothing (status and next_attempt_at move together)');
UPDATE webhook_endpoints SET deleted_at = now() WHERE id = 900101;
SELECT throws_ok($$ UPDATE webhook_endpoints SET deleted_at = NULL WHERE id = 900101 $$,
                 '23000', 'a deleted webhook stays deleted', 'a deleted webhook cannot come back');

RESET ROLE;
SELECT is((SELECT has_function_privilege('public', 'claim_webhook_deliveries(uuid,integer,integer,integer,integer,bigint[])', 'EXECUTE')), false,
          'PUBLIC cannot claim deliveries');

-- An attempt's endpoint and event are its delivery's (migration 0066), even
-- for the owner, who passes every policy.
SELECT throws_ok($$ INSERT INTO webhook_delivery_attempts (tenant_id, delivery_id, endpoint_id, event_id, outcome, response_code,
                                                           duration_ms, status_after, worker)
                    VALUES (900001, 900134, 900101, 'evt_a5aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 'delivered', 200, 5, 'delivered',
                            '00000000-0000-0000-0000-000000000009') $$,
                 '23503', NULL, 'an attempt cannot name another delivery''s event');
SELECT lives_ok($$ INSERT INTO webhook_delivery_attempts (tenant_id, delivery_id, endpoint_id, event_id, outcome, response_code,
                                                          duration_ms, status_after, worker)
                   VALUES (900001, 900134, 900101, 'evt_a4aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 'delivered', 200, 5, 'delivered',
                           '00000000-0000-0000-0000-000000000009') $$,
                'an attempt naming its delivery''s endpoint and event is kept');

-- The lists of an endpoint's events (migrations 0086-0087): every delivery in
-- order, and the failed ones alone.
SELECT is(pg_get_indexdef('webhook_deliveries_by_endpoint_and_id'::regclass),
          'CREATE INDEX webhook_deliveries_by_endpoint_and_id ON public.webhook_deliveries USING btree (tenant_id, endpoint_id, id)',
          'an endpoint''s deliveries are read in order by their index');
SELECT is(pg_get_indexdef('webhook_deliveries_failed_by_endpoint'::regclass),
          'CREATE INDEX webhook_deliveries_failed_by_endpoint ON public.webhook_deliveries USING btree (tenant_id, endpoint_id, id) WHERE (status = ''failed''::text)',
          'an endpoint''s failed deliveries have an index of their own');

SELECT * FROM finish();
ROLLBACK;
