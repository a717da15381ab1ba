-- Issued documents never change. Two locks hold that:
--
--   * the trigger documents_are_immutable() refuses UPDATE, DELETE and
--     TRUNCATE for everyone, the superuser and the owner included
--     (SQLSTATE 23000, "issued documents cannot be changed or deleted");
--   * comprobify_app has only SELECT and INSERT on documents, so its UPDATE,
--     DELETE and TRUNCATE fail even earlier, on privileges (42501), before
--     the trigger would run.
--
-- A superuser can still get round the trigger (ALTER TABLE ... DISABLE
-- TRIGGER, session_replication_role = replica): that is a deliberate act,
-- outside what the schema can prevent.
BEGIN;
SET LOCAL client_min_messages = warning;  -- quiet the "truncate cascades" notice
\ir fixtures/two_tenants.sql
SELECT plan(14);

-- The locks are in place --------------------------------------------------------------

SELECT table_privs_are('public', 'documents', 'comprobify_app', ARRAY['SELECT', 'INSERT'],
                       'comprobify_app may only SELECT and INSERT documents');
SELECT ok(NOT has_any_column_privilege('comprobify_app', 'documents', 'UPDATE'),
          'comprobify_app has no UPDATE privilege on any column of documents');
SELECT is((SELECT tgenabled::text FROM pg_trigger WHERE tgrelid = 'documents'::regclass AND tgname = 'documents_immutable_rows'),
          'O', 'trigger documents_immutable_rows is enabled');
SELECT is((SELECT tgenabled::text FROM pg_trigger WHERE tgrelid = 'documents'::regclass AND tgname = 'documents_immutable_table'),
          'O', 'trigger documents_immutable_table is enabled');

-- As the superuser ------------------------------------------------------------------------

SELECT throws_ok($$ UPDATE documents SET metadata = '{"total": "0.00"}' WHERE id = 900071 $$,
                 '23000', 'issued documents cannot be changed or deleted',
                 'the superuser cannot UPDATE a document');
SELECT throws_ok($$ DELETE FROM documents WHERE id = 900071 $$,
                 '23000', 'issued documents cannot be changed or deleted',
                 'the superuser cannot DELETE a document');
-- idempotency_keys references documents, so a plain TRUNCATE documents stops at
-- that foreign key (0A000) before any trigger; CASCADE gets to the trigger.
SELECT throws_ok($$ TRUNCATE documents CASCADE $$,
                 '23000', 'issued documents cannot be changed or deleted',
                 'the superuser cannot TRUNCATE documents');

-- As the app, acting for the document's own tenant -----------------------------------------

SET LOCAL ROLE comprobify_app;
SELECT is(set_config('app.tenant_id', '900001', true), '900001', 'acting for tenant A, the document''s owner');

SELECT throws_ok($$ UPDATE documents SET metadata = '{"total": "0.00"}' WHERE id = 900071 $$,
                 '42501', 'permission denied for table documents',
                 'the app cannot UPDATE its own document');
SELECT throws_ok($$ DELETE FROM documents WHERE id = 900071 $$,
                 '42501', 'permission denied for table documents',
                 'the app cannot DELETE its own document');
SELECT throws_ok($$ TRUNCATE documents CASCADE $$,
                 '42501', 'permission denied for table documents',
                 'the app cannot TRUNCATE documents');
-- Issuing is allowed: the lock is on change, not on growth.
SELECT lives_ok($$
    INSERT INTO documents (tenant_id, issuer_id, document_type, environment, sequential, number, access_key, issue_date)
    VALUES (900001, 900061, '01', 'sandbox', 2, '001-001-000000002',
            '0103202601179001234500110010010000000021234567816', '2026-03-01')
$$, 'the app can still issue a new document');

RESET ROLE;

-- Nothing changed -------------------------------------------------------------------------

SELECT is((SELECT metadata::text FROM documents WHERE id = 900071), '{"total": "10.00"}',
          'tenant A''s document is unchanged');
SELECT is((SELECT count(*) FROM documents WHERE tenant_id IN (900001, 900002)), 3::bigint,
          'no document was deleted (two fixtures and the new one)');

SELECT * FROM finish();
ROLLBACK;
