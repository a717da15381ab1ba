-- The three functions that look across tenants, each doing one narrow job:
--
--   authenticate(digest, lock)         the active key with this token digest;
--                                      sets app.tenant_id to its tenant
--   email_verification_tenant(digest)  the tenant of a pending verification token
--   purge_expired()                    deletes expired idempotency keys and old
--                                      sign-up attempts
--
-- They are SECURITY DEFINER, owned by comprobify_auth (which the
-- *_authenticator and *_purge policies let see across tenants), with a pinned
-- search_path, and only comprobify_app may call them.
BEGIN;
\ir fixtures/two_tenants.sql
INSERT INTO signup_attempts (client_address, attempted_at) VALUES
    ('pgtap-203.0.113.9', now() - interval '2 hours'),
    ('pgtap-203.0.113.9', now());

SELECT plan(49);

-- How they are declared ----------------------------------------------------------

SELECT is_definer('public', 'authenticate', ARRAY['bytea', 'boolean'], 'authenticate() is SECURITY DEFINER');
SELECT is_definer('public', 'email_verification_tenant', ARRAY['bytea'], 'email_verification_tenant() is SECURITY DEFINER');
SELECT is_definer('public', 'purge_expired', ARRAY[]::name[], 'purge_expired() is SECURITY DEFINER');

SELECT function_owner_is('public', 'authenticate', ARRAY['bytea', 'boolean'], 'comprobify_auth',
                         'authenticate() is owned by comprobify_auth');
SELECT function_owner_is('public', 'email_verification_tenant', ARRAY['bytea'], 'comprobify_auth',
                         'email_verification_tenant() is owned by comprobify_auth');
SELECT function_owner_is('public', 'purge_expired', ARRAY[]::name[], 'comprobify_auth',
                         'purge_expired() is owned by comprobify_auth');

-- proconfig holds the function's SET clauses, e.g. {search_path=pg_catalog, public}.
SELECT ok(EXISTS (SELECT 1 FROM unnest(p.proconfig) AS c WHERE c ~ '^search_path=pg_catalog\M'),
          p.proname || '() pins search_path, pg_catalog first')
  FROM pg_proc p
 WHERE p.oid IN ('authenticate(bytea,boolean)'::regprocedure,
                 'email_verification_tenant(bytea)'::regprocedure,
                 'purge_expired()'::regprocedure)
 ORDER BY p.proname;

SELECT ok(NOT has_function_privilege('public', f, 'EXECUTE'), f || ': PUBLIC cannot execute it')
  FROM unnest(ARRAY['authenticate(bytea,boolean)', 'email_verification_tenant(bytea)', 'purge_expired()']) AS f;

SELECT ok(has_function_privilege('comprobify_app', f, 'EXECUTE'), f || ': comprobify_app can execute it')
  FROM unnest(ARRAY['authenticate(bytea,boolean)', 'email_verification_tenant(bytea)', 'purge_expired()']) AS f;

-- Known issue: pg_temp is searched first ------------------------------------------
-- A search_path that does not name pg_temp searches the session's temporary
-- schema FIRST for tables. The app could create a temporary table named
-- api_keys, let comprobify_auth read it, and authenticate() would "find" a
-- key in it and set app.tenant_id accordingly. (The app may call set_config
-- itself, so this gains it nothing today, but it is the hole the PostgreSQL
-- manual warns about for SECURITY DEFINER functions.) Hence pg_temp is
-- named last in their search_path.

SELECT ok(EXISTS (SELECT 1 FROM unnest(p.proconfig) AS c WHERE c ~ '^search_path=.*\mpg_temp$'),
          p.proname || '() lists pg_temp last in its search_path')
  FROM pg_proc p
 WHERE p.oid IN ('authenticate(bytea,boolean)'::regprocedure,
                 'email_verification_tenant(bytea)'::regprocedure,
                 'purge_expired()'::regprocedure)
 ORDER BY p.proname;

-- authenticate() and email_verification_tenant(), as the app ----------------------

SET LOCAL ROLE comprobify_app;

-- The shadowing attempt must come before any other call of authenticate() in
-- this session: PL/pgSQL caches its plans, and a cached plan keeps using the
-- real table.
CREATE TEMP TABLE api_keys (id bigint, tenant_id bigint, environment text, token_digest bytea, revoked_at timestamptz);
INSERT INTO pg_temp.api_keys VALUES (1, 900001, 'sandbox', sha256('forged'), NULL);
GRANT SELECT, UPDATE ON pg_temp.api_keys TO comprobify_auth;
SELECT is_empty($$ SELECT * FROM authenticate(sha256('forged'), false) $$,
                'authenticate() cannot be fooled by a temporary table named api_keys');
DROP TABLE pg_temp.api_keys;
SELECT is(set_config('app.tenant_id', '', true), '', 'the app starts with no tenant');

SELECT is_empty($$ SELECT * FROM authenticate(sha256('no-such-key'), false) $$,
                'authenticate() returns no row for an unknown digest');
SELECT is_empty($$ SELECT * FROM authenticate(sha256('key-a-revoked'), false) $$,
                'authenticate() returns no row for a revoked key');
SELECT is_empty($$ SELECT * FROM authenticate(sha256('key-a-revoked'), true) $$,
                'authenticate() returns no row for a revoked key, also when locking');
SELECT is(current_tenant_id(), NULL, 'after those failed lookups app.tenant_id is still unset');

SELECT is(email_verification_tenant(sha256('verify-a-pending')), 900001::bigint,
          'email_verification_tenant() finds the tenant of a pending token (tenant A)');
SELECT is(email_verification_tenant(sha256('verify-b-pending')), 900002::bigint,
          'email_verification_tenant() finds the tenant of a pending token (tenant B)');
SELECT is(email_verification_tenant(sha256('verify-a-used')), NULL,
          'email_verification_tenant() is NULL for a used token');
SELECT is(email_verification_tenant(sha256('verify-a-invalidated')), NULL,
          'email_verification_tenant() is NULL for an invalidated token');
SELECT is(email_verification_tenant(sha256('verify-a-expired')), NULL,
          'email_verification_tenant() is NULL for an expired token');
-- An expired token that is still its tenant's live one (never superseded),
-- put there as the owner.
RESET ROLE;
UPDATE email_verifications SET invalidated_at = now() WHERE id = 900041;
INSERT INTO email_verifications (tenant_id, id, token_digest, created_at, expires_at)
VALUES (900002, 900044, sha256('verify-b-expired'), now() - interval '3 days', now() - interval '1 day');
SET LOCAL ROLE comprobify_app;
SELECT is(email_verification_tenant(sha256('verify-b-expired')), NULL,
          'email_verification_tenant() is NULL for an expired token that no resend superseded');
SELECT is(email_verification_tenant(sha256('no-such-token')), NULL,
          'email_verification_tenant() is NULL for an unknown token');
SELECT is(current_tenant_id(), NULL, 'email_verification_tenant() sets no tenant');

SELECT results_eq(
    $$ SELECT * FROM authenticate(sha256('key-a'), false) $$,
    $$ VALUES (900011::bigint, 900001::bigint, 'sandbox'::text, 'ACTIVE'::text, 'sandbox'::text) $$,
    'authenticate() returns exactly one row for tenant A''s active key: key, tenant, environments, status');
SELECT is(current_setting('app.tenant_id', true), '900001', 'authenticate() set app.tenant_id to tenant A');
SELECT set_eq('SELECT id FROM tenants', ARRAY[900001]::bigint[], 'the app now sees tenant A''s row and no other');
SELECT set_eq('SELECT id FROM api_keys', ARRAY[900011, 900012]::bigint[], 'the app now sees tenant A''s keys and no other');

SELECT results_eq(
    $$ SELECT * FROM authenticate(sha256('key-b'), true) $$,
    $$ VALUES (900021::bigint, 900002::bigint, 'sandbox'::text, 'ACTIVE'::text, 'sandbox'::text) $$,
    'authenticate(digest, true) returns exactly one row for tenant B''s active key');
SELECT is(current_setting('app.tenant_id', true), '900002', 'authenticate() set app.tenant_id to tenant B');

-- purge_expired(), as the app: it crosses tenants, but only for expired rows.
SELECT cmp_ok(purge_expired(), '>=', 2::bigint, 'purge_expired() removes at least the two expired fixture rows');

RESET ROLE;

-- A backlog goes a batch of 10 000 rows per table per call, each call inside
-- the statement timeout; the server calls again while a call removes that many.
INSERT INTO signup_attempts (client_address, attempted_at)
SELECT '192.0.2.' || (n % 250), now() - interval '2 hours' FROM generate_series(1, 10005) AS n;
SET LOCAL ROLE comprobify_app;
SELECT is(purge_expired(), 10000::bigint, 'a call removes at most 10 000 expired rows of a table');
SELECT is(purge_expired(), 5::bigint, 'the next call removes the rest');
SELECT is(purge_expired(), 0::bigint, 'and then nothing is left');
RESET ROLE;

-- With p_lock the key row is share-locked until the transaction ends, so a
-- concurrent revocation waits for it. A row lock shows as a non-zero xmax on
-- a row that was not changed; the key found without p_lock has none.
-- (That the revocation really waits needs two sessions: not tested here.)
SELECT isnt((SELECT xmax::text FROM api_keys WHERE id = 900021), '0',
            'authenticate(digest, true) row-locked tenant B''s key');
SELECT is((SELECT xmax::text FROM api_keys WHERE id = 900011), '0',
          'authenticate(digest, false) locked nothing (tenant A''s key)');
SELECT set_eq($$ SELECT key FROM idempotency_keys WHERE key LIKE 'idem-%' $$,
              ARRAY['idem-a', 'idem-b'],
              'purge_expired() removed the expired idempotency key and kept the others, of both tenants');
SELECT set_eq($$ SELECT attempted_at > now() - interval '1 hour' FROM signup_attempts WHERE client_address = 'pgtap-203.0.113.9' $$,
              ARRAY[true],
              'purge_expired() removed the sign-up attempt older than an hour and kept the recent one');

-- schema_version() (migration 0093): the ledger's newest name, for serve's
-- check at start, to comprobify_app, which cannot read the ledger itself.
SELECT is_definer('public', 'schema_version', ARRAY[]::name[], 'schema_version() is SECURITY DEFINER');
SET LOCAL ROLE comprobify_app;
SELECT set_config('pgtap.schema_version', schema_version(), true);
SELECT throws_ok('SELECT count(*) FROM schema_migrations', '42501', NULL,
                 'comprobify_app still cannot read the ledger itself');
RESET ROLE;
SELECT is(current_setting('pgtap.schema_version'), (SELECT max(name) FROM schema_migrations),
          'schema_version() names the newest migration of the ledger to comprobify_app');

SELECT * FROM finish();
ROLLBACK;
