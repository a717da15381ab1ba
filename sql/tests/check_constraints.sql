-- CHECK constraints hold the rules the database can hold by itself. Each
-- refused row names its constraint (SQLSTATE 23514), so a DBA can look it up
-- with \d+ <table>. Rows are inserted as the superuser: a CHECK binds
-- everyone, row-level security or not. A valid row is inserted beside each
-- rule, so the refusals are not caused by something else.
BEGIN;
\ir fixtures/two_tenants.sql
SELECT plan(19);

-- environment is 'sandbox' or 'production' -----------------------------------------------

SELECT throws_ok($$ INSERT INTO tenants (id, email, name, environment) VALUES (900009, 'pgtap-env@example.invalid', 'E', 'staging') $$,
                 '23514', 'new row for relation "tenants" violates check constraint "tenants_environment_values"',
                 'tenants.environment refuses ''staging''');
SELECT throws_ok($$ INSERT INTO api_keys (tenant_id, environment, token_digest, token_prefix) VALUES (900001, 'staging', sha256('env'), 'cfy_live_e0001') $$,
                 '23514', 'new row for relation "api_keys" violates check constraint "api_keys_environment_values"',
                 'api_keys.environment refuses ''staging''');
SELECT throws_ok($$ INSERT INTO sequentials (tenant_id, issuer_id, document_type, environment) VALUES (900001, 900061, '04', 'staging') $$,
                 '23514', 'new row for relation "sequentials" violates check constraint "sequentials_environment_values"',
                 'sequentials.environment refuses ''staging''');
-- (the access key's environment digit is 2, the one documents_access_key_matches
-- expects for anything that is not sandbox, so only the environment rule fails)
SELECT throws_ok($$
    INSERT INTO documents (tenant_id, issuer_id, document_type, environment, sequential, number, access_key, issue_date)
    VALUES (900001, 900061, '01', 'staging', 2, '001-001-000000002',
            '0103202601179001234500120010010000000021234567814', '2026-03-01')
$$, '23514', 'new row for relation "documents" violates check constraint "documents_environment_values"',
   'documents.environment refuses ''staging''');
-- The clave de acceso must carry its modulo-11 check digit (the right one is 4).
SELECT throws_ok($$
    INSERT INTO documents (tenant_id, issuer_id, document_type, environment, sequential, number, access_key, issue_date)
    VALUES (900001, 900061, '01', 'production', 2, '001-001-000000002',
            '0103202601179001234500120010010000000021234567815', '2026-03-01')
$$, '23514', 'new row for relation "documents" violates check constraint "documents_access_key_check_digit"',
   'documents.access_key refuses a wrong check digit');
SELECT lives_ok($$ INSERT INTO sequentials (tenant_id, issuer_id, document_type, environment) VALUES (900001, 900061, '04', 'production') $$,
                'sequentials.environment accepts ''production''');

-- establishment and emission point: three digits, never 000 ------------------------------

SELECT throws_ok($$ INSERT INTO issuers (tenant_id, ruc, legal_name, establishment, emission_point) VALUES (900001, '1790012345001', 'A', '000', '001') $$,
                 '23514', 'new row for relation "issuers" violates check constraint "issuers_establishment_format"',
                 'issuers.establishment refuses ''000''');
SELECT throws_ok($$ INSERT INTO issuers (tenant_id, ruc, legal_name, establishment, emission_point) VALUES (900001, '1790012345001', 'A', '002', '000') $$,
                 '23514', 'new row for relation "issuers" violates check constraint "issuers_emission_point_format"',
                 'issuers.emission_point refuses ''000''');
SELECT throws_ok($$ INSERT INTO issuers (tenant_id, ruc, legal_name, establishment, emission_point) VALUES (900001, '1790012345001', 'A', '02', '001') $$,
                 '23514', 'new row for relation "issuers" violates check constraint "issuers_establishment_format"',
                 'issuers.establishment refuses two digits');
SELECT lives_ok($$ INSERT INTO issuers (tenant_id, ruc, legal_name, establishment, emission_point) VALUES (900001, '1790012345001', 'A', '002', '001') $$,
                'issuers accept establishment 002, emission point 001');

-- sequentials.next_sequential is 1 to 1000000000 -------------------------------------------

SELECT throws_ok($$ UPDATE sequentials SET next_sequential = 0 WHERE tenant_id = 900001 AND issuer_id = 900061 AND document_type = '01' $$,
                 '23514', 'new row for relation "sequentials" violates check constraint "sequentials_next_in_range"',
                 'sequentials.next_sequential refuses 0');
SELECT throws_ok($$ INSERT INTO sequentials (tenant_id, issuer_id, document_type, environment, next_sequential) VALUES (900001, 900061, '05', 'sandbox', 1000000001) $$,
                 '23514', 'new row for relation "sequentials" violates check constraint "sequentials_next_in_range"',
                 'sequentials.next_sequential refuses 1000000001');

-- token_prefix: cfy_test_ or cfy_live_ + 5 hex digits, agreeing with environment -----------

SELECT throws_ok($$ INSERT INTO api_keys (tenant_id, environment, token_digest, token_prefix) VALUES (900001, 'sandbox', sha256('p1'), 'cfy_live_c0001') $$,
                 '23514', 'new row for relation "api_keys" violates check constraint "api_keys_prefix_matches_environment"',
                 'a sandbox key cannot carry a cfy_live_ prefix');
SELECT throws_ok($$ INSERT INTO api_keys (tenant_id, environment, token_digest, token_prefix) VALUES (900001, 'production', sha256('p2'), 'cfy_test_c0002') $$,
                 '23514', 'new row for relation "api_keys" violates check constraint "api_keys_prefix_matches_environment"',
                 'a production key cannot carry a cfy_test_ prefix');
SELECT throws_ok($$ INSERT INTO api_keys (tenant_id, environment, token_digest, token_prefix) VALUES (900001, 'sandbox', sha256('p3'), 'cfy_test_C0003') $$,
                 '23514', 'new row for relation "api_keys" violates check constraint "api_keys_token_prefix_format"',
                 'token_prefix refuses upper-case hex');
SELECT throws_ok($$ INSERT INTO api_keys (tenant_id, environment, token_digest, token_prefix) VALUES (900001, 'sandbox', sha256('p4'), 'cfy_test_c00045') $$,
                 '23514', 'new row for relation "api_keys" violates check constraint "api_keys_token_prefix_format"',
                 'token_prefix refuses more than the first 14 characters of a token');
SELECT throws_ok($$ INSERT INTO api_keys (tenant_id, environment, token_digest, token_prefix) VALUES (900001, 'sandbox', '\x00'::bytea, 'cfy_test_c0005') $$,
                 '23514', 'new row for relation "api_keys" violates check constraint "api_keys_token_digest_sha256"',
                 'token_digest must be a 32-byte SHA-256 digest');
SELECT lives_ok($$ INSERT INTO api_keys (tenant_id, environment, token_digest, token_prefix) VALUES (900001, 'production', sha256('p6'), 'cfy_live_c0006') $$,
                'a production key with a cfy_live_ prefix is accepted');

-- tenants: production only once promoted -------------------------------------------------------

SELECT throws_ok($$ UPDATE tenants SET environment = 'production' WHERE id = 900001 $$,
                 '23514', 'new row for relation "tenants" violates check constraint "tenants_promoted_when_production"',
                 'a tenant cannot be production without promoted_at');

SELECT * FROM finish();
ROLLBACK;
