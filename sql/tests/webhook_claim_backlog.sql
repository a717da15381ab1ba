-- claim_webhook_deliveries() reads per endpoint, never a backlog (migration
-- 0049): with 20 000 due deliveries of one endpoint that already has two in
-- flight, a claim finds another tenant's delivery and reads a few dozen rows
-- of webhook_deliveries, counted by PostgreSQL's statistics for this
-- transaction (pg_stat_xact_user_tables). Before 0049 it read the whole
-- backlog, twice.
BEGIN;
\ir fixtures/two_tenants.sql

SELECT plan(4);

INSERT INTO webhook_events (tenant_id, id, environment, type, document_id, payload)
SELECT 900001, 'evt_d' || lpad(i::text, 31, '0'), 'sandbox', 'document.authorized', 900071, '{}'
  FROM generate_series(1, 20002) AS i;
-- Two in flight, then 20 000 due, all older than tenant B's one due delivery.
INSERT INTO webhook_deliveries (tenant_id, id, event_id, endpoint_id, status, next_attempt_at, leased_by, leased_until)
SELECT 900001, 910000 + i, 'evt_d' || lpad(i::text, 31, '0'), 900101, 'pending', now() - interval '1 hour' + i * interval '1 millisecond',
       CASE WHEN i <= 2 THEN '00000000-0000-0000-0000-0000000000ff'::uuid END,
       CASE WHEN i <= 2 THEN now() + interval '1 minute' END
  FROM generate_series(1, 20002) AS i;
-- The fixture's delivery of tenant A's endpoint is due too; tenant B's is the one to find.
ANALYZE webhook_deliveries;

CREATE TEMP TABLE read_before AS
SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) AS tuples
  FROM pg_stat_xact_user_tables WHERE relid = 'webhook_deliveries'::regclass;

SET LOCAL ROLE comprobify_app;
SELECT set_eq($$ SELECT tenant_id, delivery_id FROM claim_webhook_deliveries('00000000-0000-0000-0000-00000000000c', 10, 60000, 2, 100, ARRAY[900001, 900002]) $$,
              $$ VALUES (900002::bigint, 900112::bigint) $$,
              'a claim finds tenant B''s delivery behind 20 001 due deliveries of an endpoint with two in flight');
RESET ROLE;

SELECT cmp_ok((SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) - (SELECT tuples FROM read_before)
                 FROM pg_stat_xact_user_tables WHERE relid = 'webhook_deliveries'::regclass),
              '<', 200::bigint,
              'and reads fewer than 200 rows of webhook_deliveries to do it');

-- One of the two in flight ends: the endpoint takes its oldest due delivery, and only that one.
UPDATE webhook_deliveries SET leased_by = NULL, leased_until = NULL, status = 'delivered', next_attempt_at = NULL
 WHERE id = 910001;
SET LOCAL ROLE comprobify_app;
SELECT set_eq($$ SELECT tenant_id, delivery_id FROM claim_webhook_deliveries('00000000-0000-0000-0000-00000000000d', 10, 60000, 2, 100, ARRAY[900001, 900002]) $$,
              $$ VALUES (900001::bigint, 910003::bigint) $$,
              'a freed slot goes to the endpoint''s oldest due delivery');
SELECT is_empty($$ SELECT * FROM claim_webhook_deliveries('00000000-0000-0000-0000-00000000000e', 10, 60000, 2, 100, ARRAY[900001, 900002]) $$,
                'and then the endpoint is full again');

SELECT * FROM finish();
ROLLBACK;
