-- claim_webhook_deliveries() bounds the deliveries in flight per tenant as
-- well as per endpoint (migration 0020): a tenant with many slow endpoints
-- cannot hold every worker, and another tenant's delivery is still claimed
-- behind its backlog.
BEGIN;
\ir fixtures/two_tenants.sql

SELECT plan(6);

-- Tenant A: four more endpoints, three due deliveries each, all older than
-- tenant B's one due delivery; one of A's deliveries is already in flight.
INSERT INTO webhook_endpoints (tenant_id, id, environment, url, events, sealed_secret, master_key_id)
SELECT 900001, 900150 + e, 'sandbox', 'https://slow.example.invalid/' || e, ARRAY['document.authorized'], 'sealed', '01234567'
  FROM generate_series(1, 4) AS e;
INSERT INTO webhook_events (tenant_id, id, environment, type, document_id, payload)
SELECT 900001, 'evt_d' || lpad(i::text, 31, '0'), 'sandbox', 'document.authorized', 900071, '{}'
  FROM generate_series(1, 12) AS i;
INSERT INTO webhook_deliveries (tenant_id, id, event_id, endpoint_id, status, next_attempt_at)
SELECT 900001, 900400 + i, 'evt_d' || lpad(i::text, 31, '0'), 900151 + (i % 4), 'pending', now() - interval '1 minute' - i * interval '1 second'
  FROM generate_series(1, 12) AS i;
UPDATE webhook_deliveries SET leased_by = '00000000-0000-0000-0000-0000000000ff', leased_until = now() + interval '1 minute'
 WHERE id = 900111;

SET LOCAL ROLE comprobify_app;
SELECT is((SELECT count(*) FROM claim_webhook_deliveries('00000000-0000-0000-0000-00000000000a', 100, 60000, 2, 4, ARRAY[900001, 900002])
            WHERE tenant_id = 900001), 3::bigint,
          'with one delivery in flight and a bound of 4, tenant A gets 3 more, though its endpoints could take 8');

RESET ROLE;
SELECT is((SELECT count(*) FROM webhook_deliveries WHERE tenant_id = 900002 AND leased_by = '00000000-0000-0000-0000-00000000000a'),
          1::bigint, 'tenant B''s delivery, due after all of them, is claimed in the same claim');
SELECT is((SELECT count(DISTINCT endpoint_id) FROM webhook_deliveries
            WHERE tenant_id = 900001 AND leased_by = '00000000-0000-0000-0000-00000000000a'), 3::bigint,
          'tenant A''s three are its oldest, one per endpoint (each endpoint''s oldest first)');

SET LOCAL ROLE comprobify_app;
SELECT is_empty($$ SELECT * FROM claim_webhook_deliveries('00000000-0000-0000-0000-00000000000b', 100, 60000, 2, 4, ARRAY[900001, 900002]) $$,
                'a full tenant gets nothing more, whatever its endpoints could take');
SELECT is((SELECT count(*) FROM claim_webhook_deliveries('00000000-0000-0000-0000-00000000000c', 100, 60000, 2, 6, ARRAY[900001]) ), 2::bigint,
          'a higher bound lets it have as many more in flight');

RESET ROLE;
SELECT is((SELECT has_function_privilege('public', 'claim_webhook_deliveries(uuid,integer,integer,integer,integer,bigint[])', 'EXECUTE')),
          false, 'PUBLIC cannot claim deliveries');

SELECT * FROM finish();
ROLLBACK;
