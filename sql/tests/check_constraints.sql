-- CHECK constraints and domains hold the rules the database can hold by
-- itself. Each refused row or value names its constraint (SQLSTATE 23514), so
-- a DBA can look it up with \d+ <table> or \dD+ <domain>. Rows are inserted
-- as the superuser: a CHECK binds everyone, row-level security or not. A
-- valid row is inserted beside each rule, so the refusals are not caused by
-- something else.
BEGIN;
\ir fixtures/two_tenants.sql
SELECT plan(98);

-- Rules of single values are domains (migration 0012): a refused value names
-- the domain and its constraint, with the same SQLSTATE -----------------------------------

SELECT col_type_is(t, 'environment', 'sri_environment', t || '.environment is an sri_environment')
  FROM unnest(ARRAY['tenants', 'api_keys', 'sequentials', 'documents', 'webhook_endpoints', 'webhook_events']) AS t;
SELECT col_type_is('documents', 'sequential', 'sri_sequential', 'documents.sequential is an sri_sequential');
SELECT col_type_is('documents', 'number', 'sri_document_number', 'documents.number is an sri_document_number');
SELECT col_type_is('documents', 'modified_number', 'sri_document_number', 'documents.modified_number is an sri_document_number');
SELECT col_type_is('documents', 'access_key', 'sri_access_key', 'documents.access_key is an sri_access_key');
SELECT col_type_is('documents', 'total', 'sri_amount', 'documents.total is an sri_amount');
SELECT col_type_is('documents', 'metadata', 'document_metadata', 'documents.metadata is a document_metadata');
SELECT col_type_is('document_submissions', 'status', 'submission_status', 'document_submissions.status is a submission_status');

SELECT throws_ok($$ INSERT INTO tenants (id, email, name, environment) VALUES (900009, 'pgtap-env@example.invalid', 'E', 'staging') $$,
                 '23514', 'value for domain sri_environment violates check constraint "sri_environment_values"',
                 'tenants.environment refuses ''staging''');
SELECT throws_ok($$ INSERT INTO api_keys (tenant_id, environment, token_digest, token_prefix) VALUES (900001, 'staging', sha256('env'), 'cfy_live_e0001') $$,
                 '23514', 'value for domain sri_environment violates check constraint "sri_environment_values"',
                 'api_keys.environment refuses ''staging''');
SELECT throws_ok($$ INSERT INTO sequentials (tenant_id, issuer_id, document_type, environment) VALUES (900001, 900061, '04', 'staging') $$,
                 '23514', 'value for domain sri_environment violates check constraint "sri_environment_values"',
                 'sequentials.environment refuses ''staging''');
-- (the access key's environment digit is 2, the one documents_access_key_matches
-- expects for anything that is not sandbox, so only the environment rule fails)
SELECT throws_ok($$
    INSERT INTO documents (tenant_id, issuer_id, document_type, environment, sequential, number, access_key, issue_date)
    VALUES (900001, 900061, '01', 'staging', 2, '001-001-000000002',
            '0103202601179001234500120010010000000021234567814', '2026-03-01')
$$, '23514', 'value for domain sri_environment violates check constraint "sri_environment_values"',
   'documents.environment refuses ''staging''');
-- The clave de acceso must carry its modulo-11 check digit (the right one is 4).
SELECT throws_ok($$
    INSERT INTO documents (tenant_id, issuer_id, document_type, environment, sequential, number, access_key, issue_date)
    VALUES (900001, 900061, '01', 'production', 2, '001-001-000000002',
            '0103202601179001234500120010010000000021234567815', '2026-03-01')
$$, '23514', 'value for domain sri_access_key violates check constraint "sri_access_key_check_digit"',
   'documents.access_key refuses a wrong check digit');
-- (fifty digits, the last the right check digit of the first 48: only the
-- length is wrong)
SELECT throws_ok($$ SELECT '01032026011790012345001200100100000000212345678144'::sri_access_key $$,
                 '23514', 'value for domain sri_access_key violates check constraint "sri_access_key_format"',
                 'an access key has 49 digits');
SELECT throws_ok($$ SELECT 0::sri_sequential $$,
                 '23514', 'value for domain sri_sequential violates check constraint "sri_sequential_in_range"',
                 'a sequential starts at 1');
SELECT throws_ok($$ SELECT 1000000000::sri_sequential $$,
                 '23514', 'value for domain sri_sequential violates check constraint "sri_sequential_in_range"',
                 'a sequential has at most nine digits');
SELECT throws_ok($$ SELECT '001-001-00000002'::sri_document_number $$,
                 '23514', 'value for domain sri_document_number violates check constraint "sri_document_number_format"',
                 'a document number has a nine-digit sequential');
SELECT throws_ok($$ SELECT (-0.01)::sri_amount $$,
                 '23514', 'value for domain sri_amount violates check constraint "sri_amount_not_negative"',
                 'an amount is not negative');
SELECT is(12.345::sri_amount::numeric, 12.35, 'an amount is kept to the cent');
SELECT throws_ok($$ SELECT '[1]'::document_metadata $$,
                 '23514', 'value for domain document_metadata violates check constraint "document_metadata_is_object"',
                 'metadata is a JSON object');
SELECT throws_ok($$ SELECT json_build_object('k', repeat('x', 16380))::document_metadata $$,
                 '23514', 'value for domain document_metadata violates check constraint "document_metadata_size"',
                 'metadata is at most 16 KiB');
SELECT throws_ok($$ SELECT 'SENT'::submission_status $$,
                 '23514', 'value for domain submission_status violates check constraint "submission_status_values"',
                 'a submission status is one of the five');
-- The rule between columns: the key's type (digits 9-10), environment (digit
-- 24) and sequential (digits 31-39) are the row's. This key is a factura's
-- (01), production's (2), sequential 2, with its right check digit.
SELECT throws_ok(format($$
    INSERT INTO documents (tenant_id, issuer_id, document_type, environment, sequential, number, access_key, issue_date)
    VALUES (900001, 900061, %L, %L, %s, %L, '0103202601179001234500120010010000000021234567814', '2026-03-01')
$$, document_type, environment, sequential, number),
    '23514', 'new row for relation "documents" violates check constraint "documents_access_key_matches"',
    format('documents.access_key must carry the row''s %s', what))
  FROM (VALUES ('01', 'production', 3, '001-001-000000003', 'sequential'),
               ('01', 'sandbox', 2, '001-001-000000002', 'environment'),
               ('04', 'production', 2, '001-001-000000002', 'document type'))
       AS wrong (document_type, environment, sequential, number, what);
-- ... and so are its issue date (digits 1-8, ddmmyyyy) and its establishment
-- and emission point (digits 25-30), since migration 0061.
SELECT throws_ok($$
    INSERT INTO documents (tenant_id, issuer_id, document_type, environment, sequential, number, access_key, issue_date)
    VALUES (900001, 900061, '01', 'production', 2, '001-001-000000002',
            '0103202601179001234500120010010000000021234567814', '2026-03-02')
$$, '23514', 'new row for relation "documents" violates check constraint "documents_access_key_matches"',
   'documents.access_key must carry the row''s issue date');
SELECT throws_ok($$
    INSERT INTO documents (tenant_id, issuer_id, document_type, environment, sequential, number, access_key, issue_date)
    VALUES (900001, 900061, '01', 'production', 2, '002-001-000000002',
            '0103202601179001234500120010010000000021234567814', '2026-03-01')
$$, '23514', 'new row for relation "documents" violates check constraint "documents_access_key_matches"',
   'documents.access_key must carry the row''s establishment and emission point');
SELECT lives_ok($$
    INSERT INTO documents (tenant_id, issuer_id, document_type, environment, sequential, number, access_key, issue_date)
    VALUES (900001, 900061, '01', 'production', 2, '001-001-000000002',
            '0103202601179001234500120010010000000021234567814', '2026-03-01')
$$, 'a document whose key agrees with its row is accepted');
SELECT lives_ok($$ INSERT INTO sequentials (tenant_id, issuer_id, document_type, environment) VALUES (900001, 900061, '04', 'production') $$,
                'sequentials.environment accepts ''production''');

-- Rules between a document's or a submission's columns: BEFORE triggers since
-- migration 0015 (PostgreSQL parsed and planned a CHECK constraint again in
-- every statement), each refused row failing as its CHECK constraint did -----

SELECT has_trigger('documents', 'documents_row_rules', 'documents has its row rules trigger');
SELECT has_trigger('document_submissions', 'document_submissions_row_rules', 'document_submissions has its row rules trigger');
SELECT is_empty($$
    SELECT conname FROM pg_constraint
     WHERE contype = 'c' AND conrelid IN ('documents'::regclass, 'document_submissions'::regclass)
       AND conname IN ('documents_access_key_matches', 'documents_number_matches_sequential', 'documents_comprobante_complete',
                       'documents_credit_note_names_its_factura', 'document_submissions_lease_complete',
                       'document_submissions_final_states_wait_for_nothing', 'document_submissions_authorized_has_its_authorization')
$$, 'no rule is checked twice: the seven CHECK constraints are gone');
-- A factura of tenant A with sequential 5: key 01032026 01 1790012345001 2 001001
-- 000000005 12345678 1 + its check digit.
CREATE TEMP TABLE rule_rows AS
SELECT '01032026011790012345001200100100000000512345678' || '1'
       || sri_check_digit('010320260117900123450012001001000000005123456781') AS access_key;
SELECT throws_ok(format($$
    INSERT INTO documents (tenant_id, issuer_id, document_type, environment, sequential, number, access_key, issue_date)
    VALUES (900001, 900061, '01', 'production', 5, '001-001-000000006', %L, '2026-03-01')
$$, (SELECT access_key FROM rule_rows)),
    '23514', 'new row for relation "documents" violates check constraint "documents_number_matches_sequential"',
    'documents.number must end in the row''s sequential');
SELECT throws_ok(format($$
    INSERT INTO documents (tenant_id, issuer_id, document_type, environment, sequential, number, access_key, issue_date, xml)
    VALUES (900001, 900061, '01', 'production', 5, '001-001-000000005', %L, '2026-03-01', '\x3c612f3e')
$$, (SELECT access_key FROM rule_rows)),
    '23514', 'new row for relation "documents" violates check constraint "documents_comprobante_complete"',
    'a document with its XML must have its body, total and buyer');
SELECT throws_ok(format($$
    INSERT INTO documents (tenant_id, issuer_id, document_type, environment, sequential, number, access_key, issue_date,
                           xml, body, total, buyer_id_type, buyer_id, modified_number)
    VALUES (900001, 900061, '01', 'production', 5, '001-001-000000005', %L, '2026-03-01',
            '\x3c612f3e', '{}', 11.50, '07', '9999999999999', '001-001-000000001')
$$, (SELECT access_key FROM rule_rows)),
    '23514', 'new row for relation "documents" violates check constraint "documents_credit_note_names_its_factura"',
    'a factura names no modified document');
SELECT lives_ok(format($$
    INSERT INTO documents (tenant_id, id, issuer_id, document_type, environment, sequential, number, access_key, issue_date,
                           xml, body, total, buyer_id_type, buyer_id)
    VALUES (900001, 900079, 900061, '01', 'production', 5, '001-001-000000005', %L, '2026-03-01',
            '\x3c612f3e', '{}', 11.50, '07', '9999999999999')
$$, (SELECT access_key FROM rule_rows)), 'a complete factura whose columns agree is accepted');
SELECT throws_ok($$ UPDATE document_submissions SET leased_by = '00000000-0000-0000-0000-00000000000a' WHERE document_id = 900071 $$,
                 '23514', 'new row for relation "document_submissions" violates check constraint "document_submissions_lease_complete"',
                 'a lease names its holder and its end together');
SELECT throws_ok($$ UPDATE document_submissions SET status = 'RETURNED', next_attempt_at = now() WHERE document_id = 900071 $$,
                 '23514', 'new row for relation "document_submissions" violates check constraint "document_submissions_final_states_wait_for_nothing"',
                 'a final status has no next attempt');
SELECT throws_ok($$ UPDATE document_submissions SET next_attempt_at = NULL WHERE document_id = 900071 $$,
                 '23514', 'new row for relation "document_submissions" violates check constraint "document_submissions_pending_waits"',
                 'a document still waiting for SRI has its next attempt');
SELECT throws_ok($$ UPDATE document_submissions SET status = 'RECEIVED', next_attempt_at = NULL WHERE document_id = 900071 $$,
                 '23514', 'new row for relation "document_submissions" violates check constraint "document_submissions_pending_waits"',
                 'RECEIVED waits for its authorization: it has its next attempt');
SELECT throws_ok($$ UPDATE document_submissions SET status = 'AUTHORIZED', next_attempt_at = NULL WHERE document_id = 900071 $$,
                 '23514', 'new row for relation "document_submissions" violates check constraint "document_submissions_authorized_has_its_authorization"',
                 'AUTHORIZED needs its authorization''s number, date and XML');
SELECT lives_ok($$
    UPDATE document_submissions
       SET status = 'AUTHORIZED', next_attempt_at = NULL, authorization_number = '0103202601', authorized_at = now(),
           authorization_xml = '\x3c612f3e', leased_by = '00000000-0000-0000-0000-00000000000a', leased_until = now()
     WHERE document_id = 900071
$$, 'an authorized submission with its authorization and a whole lease is accepted');

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

-- sequentials.next_sequential is 1 to 1000000000, a domain since migration 0014
-- whose constraint keeps the name the server looks for (an exhausted counter) ---

SELECT col_type_is('sequentials', 'next_sequential', 'sri_next_sequential', 'sequentials.next_sequential is an sri_next_sequential');
SELECT throws_ok($$ UPDATE sequentials SET next_sequential = 0 WHERE tenant_id = 900001 AND issuer_id = 900061 AND document_type = '01' $$,
                 '23514', 'value for domain sri_next_sequential violates check constraint "sequentials_next_in_range"',
                 'sequentials.next_sequential refuses 0');
SELECT throws_ok($$ INSERT INTO sequentials (tenant_id, issuer_id, document_type, environment, next_sequential) VALUES (900001, 900061, '05', 'sandbox', 1000000001) $$,
                 '23514', 'value for domain sri_next_sequential violates check constraint "sequentials_next_in_range"',
                 'sequentials.next_sequential refuses 1000000001');
SELECT lives_ok($$ UPDATE sequentials SET next_sequential = 1000000000 WHERE tenant_id = 900001 AND issuer_id = 900061 AND document_type = '01' $$,
                'sequentials.next_sequential takes 1000000000 (the counter gave its last number)');
SELECT is((SELECT c.conname::text FROM pg_constraint c WHERE c.contypid = 'sri_next_sequential'::regtype),
          'sequentials_next_in_range', 'the constraint name the server maps to 409 is the domain''s');

-- document_submissions.attempts and .streak are attempt_counts (migration 0014) ------------

SELECT col_type_is('document_submissions', c, 'attempt_count', 'document_submissions.' || c || ' is an attempt_count')
  FROM unnest(ARRAY['attempts', 'streak']) AS c;
SELECT throws_ok($$ UPDATE document_submissions SET attempts = -1 WHERE document_id = 900071 $$,
                 '23514', 'value for domain attempt_count violates check constraint "attempt_count_not_negative"',
                 'document_submissions.attempts refuses -1');
SELECT throws_ok($$ UPDATE document_submissions SET streak = -1 WHERE document_id = 900071 $$,
                 '23514', 'value for domain attempt_count violates check constraint "attempt_count_not_negative"',
                 'document_submissions.streak refuses -1');
SELECT lives_ok($$ UPDATE document_submissions SET attempts = 0, streak = 0 WHERE document_id = 900071 $$,
                'document_submissions.attempts and .streak take 0');

-- sri_exchanges: what an exchange started from and left is a submission status
-- (migrations 0033-0034) ----------------------------------------------------------------------

SELECT throws_ok($$
    INSERT INTO sri_exchanges (tenant_id, document_id, service, url, outcome, duration_ms, status_before, status_after, error, worker)
    VALUES (900001, 900071, 'reception', 'http://sri.invalid/r', 'timeout', 5, 'SENT', 'SIGNED', 'no answer', gen_random_uuid())
$$, '23514', 'new row for relation "sri_exchanges" violates check constraint "sri_exchanges_status_before_values"',
   'sri_exchanges.status_before refuses ''SENT''');
SELECT throws_ok($$
    INSERT INTO sri_exchanges (tenant_id, document_id, service, url, outcome, duration_ms, status_before, status_after, error, worker)
    VALUES (900001, 900071, 'reception', 'http://sri.invalid/r', 'timeout', 5, 'SIGNED', 'signed', 'no answer', gen_random_uuid())
$$, '23514', 'new row for relation "sri_exchanges" violates check constraint "sri_exchanges_status_after_values"',
   'sri_exchanges.status_after refuses ''signed''');
SELECT lives_ok($$
    INSERT INTO sri_exchanges (tenant_id, document_id, service, url, outcome, http_status, duration_ms, status_before, status_after, answer, worker)
    VALUES (900001, 900071, 'reception', 'http://sri.invalid/r', 'received', 200, 5, 'SIGNED', 'RECEIVED', '{}', gen_random_uuid())
$$, 'an exchange from SIGNED to RECEIVED is accepted');
SELECT is((SELECT count(*) FROM pg_constraint
            WHERE conrelid = 'sri_exchanges'::regclass AND conname LIKE 'sri_exchanges_status_%_values' AND convalidated),
          2::bigint, 'both status constraints are validated (0034), so they hold for the older rows too');

-- webhook_endpoints: http only to localhost or 127.0.0.1 (migrations 0079-0080) ----------------

SELECT throws_ok(format($$ INSERT INTO webhook_endpoints (tenant_id, environment, url, events, sealed_secret, master_key_id)
                           VALUES (900001, 'sandbox', %L, ARRAY['document.authorized'], 'sealed', '01234567') $$, u),
                 '23514', 'new row for relation "webhook_endpoints" violates check constraint "webhook_endpoints_http_only_to_localhost"',
                 'webhook_endpoints.url refuses ' || u)
  FROM unnest(ARRAY['http://erp.example.com/hooks', 'HTTP://10.0.0.7/x', 'http://localhost.evil.example/x',
                    'http://127.0.0.1.nip.io/x', 'http://localhostx/']) AS u;
SELECT lives_ok(format($$ INSERT INTO webhook_endpoints (tenant_id, environment, url, events, sealed_secret, master_key_id)
                          VALUES (900001, 'sandbox', %L, ARRAY['document.authorized'], 'sealed', '01234567') $$, u),
                'webhook_endpoints.url takes ' || u)
  FROM unnest(ARRAY['https://erp.example.com/hooks', 'http://localhost:8080/hooks', 'http://LocalHost./x?a=1',
                    'http://127.0.0.1', 'http://127.0.0.1:9/ok']) AS u;
SELECT ok((SELECT convalidated FROM pg_constraint
            WHERE conrelid = 'webhook_endpoints'::regclass AND conname = 'webhook_endpoints_http_only_to_localhost'),
          'the rule is validated (0080), so it holds for the older rows too');

-- audit_events: the actions it knows (migrations 0035-0036, 0077-0078, 0081-0082) ----------------------------------

SELECT throws_ok($$ INSERT INTO audit_events (tenant_id, action, actor) VALUES (900001, 'webhook.renamed', 'tenant') $$,
                 '23514', 'new row for relation "audit_events" violates check constraint "audit_events_action_values"',
                 'audit_events.action refuses an action it does not know');
SELECT lives_ok($$ INSERT INTO audit_events (tenant_id, action, actor, actor_key_id) VALUES (900001, 'webhook.deleted', 'tenant', 900011) $$,
                'audit_events.action takes webhook.deleted');
SELECT lives_ok($$ INSERT INTO audit_events (tenant_id, action, actor, actor_key_id) VALUES (900001, 'webhook.secret_rotated', 'tenant', 900011) $$,
                'audit_events.action takes webhook.secret_rotated (migration 0077)');
SELECT lives_ok($$ INSERT INTO audit_events (tenant_id, action, actor, actor_key_id) VALUES (900001, 'webhook.updated', 'tenant', 900011) $$,
                'audit_events.action takes webhook.updated (migration 0081)');
SELECT ok((SELECT convalidated FROM pg_constraint WHERE conrelid = 'audit_events'::regclass AND conname = 'audit_events_action_values'),
          'the rule of the actions is validated (0036, 0078, 0082), so it holds for the older rows too');

-- Rules every row already followed, held since migrations 0074-0075 ------------------------

SELECT throws_ok($$ INSERT INTO audit_events (tenant_id, action, actor) VALUES (900001, 'api_key.minted', 'tenant') $$,
                 '23514', 'new row for relation "audit_events" violates check constraint "audit_events_key_iff_tenant_actor"',
                 'an event of the tenant names the key that acted');
SELECT throws_ok($$ INSERT INTO audit_events (tenant_id, action, actor, actor_key_id) VALUES (900001, 'api_key.minted', 'support', 900011) $$,
                 '23514', 'new row for relation "audit_events" violates check constraint "audit_events_key_iff_tenant_actor"',
                 'support and system act without a key');
SELECT lives_ok($$ INSERT INTO audit_events (tenant_id, action, actor) VALUES (900001, 'api_key.minted', 'support') $$,
                'support acting without a key is recorded');
SELECT throws_ok($$ INSERT INTO audit_events (tenant_id, action, actor, details) VALUES (900001, 'tenant.signed_up', 'system', '[1]') $$,
                 '23514', 'new row for relation "audit_events" violates check constraint "audit_events_details_object"',
                 'audit_events.details is a JSON object');
SELECT throws_ok($$ UPDATE api_keys SET replaces_key_id = id WHERE id = 900011 $$,
                 '23514', 'new row for relation "api_keys" violates check constraint "api_keys_replaces_another_key"',
                 'a key does not replace itself');
SELECT throws_ok($$ INSERT INTO idempotency_keys (tenant_id, key, issuer_id, request_digest, created_at, expires_at)
                    VALUES (900001, 'idem-backwards', 900061, sha256('r'), now(), now() - interval '1 second') $$,
                 '23514', 'new row for relation "idempotency_keys" violates check constraint "idempotency_keys_expiry_after_claim"',
                 'an idempotency key expires after its claim');
SELECT is((SELECT count(*) FROM pg_constraint
            WHERE conname IN ('audit_events_key_iff_tenant_actor', 'audit_events_details_object',
                              'api_keys_replaces_another_key', 'idempotency_keys_expiry_after_claim') AND convalidated),
          4::bigint, 'the four are validated (0075), so they hold for the older rows too');

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

-- tenants: one per email, whatever its case and the Unicode form of its accents -----------------

SELECT lives_ok($$ INSERT INTO tenants (id, email, name) VALUES (900010, U&'pgtap-jos\00E9@example.invalid', 'Composed') $$,
                'an email with a composed accent is accepted');
SELECT throws_ok($$ INSERT INTO tenants (id, email, name) VALUES (900011, U&'PGTAP-JOSE\0301@EXAMPLE.INVALID', 'Combining') $$,
                 '23505', 'duplicate key value violates unique constraint "tenants_email_unique_nfc"',
                 'the same email in capitals with a combining accent is refused (tenants_email_unique_nfc)');
SELECT is((SELECT email FROM tenants WHERE id = 900010), U&'pgtap-jos\00E9@example.invalid', 'the email is kept as inserted');

SELECT * FROM finish();
ROLLBACK;
