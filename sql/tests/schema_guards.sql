-- Guards on the catalog, so that a later change that weakens isolation fails
-- here even when no other test looks at the new object:
--
--   * the SECURITY DEFINER functions are exactly the reviewed ones, and
--     any such function is owned by comprobify_auth, pins a search_path ending
--     in pg_temp and cannot be executed by PUBLIC;
--   * comprobify_auth's cross-tenant policies are exactly the reviewed set,
--     each write power held to its rule by a restrictive twin;
--   * every policy has a comment;
--   * every table is a tenant table (covered by rls_coverage.sql) or one of the
--     three known others; there are no views or materialized views;
--   * comprobify_app's privileges are exactly the ones the migrations grant,
--     on tables, columns and sequences (USAGE only: nextval for its own
--     inserts, never setval, which would move another tenant's ids).
--
-- Objects that belong to an extension (pgTAP's own views and functions) are
-- left out. When one of these lists has to change, review the change for
-- isolation first, then update the list here.
BEGIN;
\ir fixtures/tenant_tables.sql
SELECT plan(9);

CREATE TEMP VIEW schema_objects AS
SELECT c.oid, c.relname::text AS name, c.relkind
  FROM pg_class c
 WHERE c.relnamespace = 'public'::regnamespace
   AND NOT EXISTS (SELECT 1 FROM pg_depend d
                    WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e');

-- Functions that run with their owner's rights ---------------------------------------

SELECT set_eq($$
    SELECT p.oid::regprocedure::text FROM pg_proc p
     WHERE p.pronamespace = 'public'::regnamespace AND p.prosecdef
       AND NOT EXISTS (SELECT 1 FROM pg_depend d
                        WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
$$, ARRAY['authenticate(bytea,boolean)', 'email_verification_tenant(bytea)', 'purge_expired()',
        'claim_webhook_deliveries(uuid,integer,integer,integer,integer,bigint[])',
         'webhook_queue_depth()',
        'claim_sri_work(uuid,integer,integer,integer,bigint[])',
         'sri_queue_depth()', 'refuse_held_token_digest()',
         'take_outbox_messages(integer)', 'mark_outbox_message_sent(bigint,bigint)', 'purge_webhook_history(interval)', 'purge_sri_exchanges(interval)', 'sealed_under_other_keys(text,text,bigint,bigint,integer,bigint[])',
         'schema_version()'],
'the SECURITY DEFINER functions are exactly authenticate, email_verification_tenant, purge_expired, claim_webhook_deliveries, webhook_queue_depth, claim_sri_work, sri_queue_depth, take_outbox_messages, mark_outbox_message_sent, purge_webhook_history, purge_sri_exchanges, sealed_under_other_keys, schema_version and the trigger function refuse_held_token_digest');

SELECT is_empty($$
    SELECT p.oid::regprocedure::text FROM pg_proc p
     WHERE p.pronamespace = 'public'::regnamespace AND p.prosecdef
       AND (p.proowner <> 'comprobify_auth'::regrole
            OR NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) AS c WHERE c ~ '^search_path=pg_catalog, .*\mpg_temp$')
            OR has_function_privilege('public', p.oid, 'EXECUTE'))
$$, 'every SECURITY DEFINER function is owned by comprobify_auth, pins search_path (pg_catalog first, pg_temp last) and is not executable by PUBLIC');

-- What comprobify_auth may see across tenants ----------------------------------------

SELECT set_eq($$
    SELECT p.polrelid::regclass::text AS table_name, p.polname::text AS policy, p.polcmd::text AS command,
           CASE WHEN p.polpermissive THEN 'permissive' ELSE 'restrictive' END AS kind,
           coalesce(pg_get_expr(p.polqual, p.polrelid), '') AS using_expr,
           coalesce(pg_get_expr(p.polwithcheck, p.polrelid), '') AS check_expr
      FROM pg_policy p
     WHERE 'comprobify_auth'::regrole::oid = ANY (p.polroles)
$$, $$ VALUES
    ('api_keys', 'api_keys_authenticator', 'r', 'permissive', 'true', ''),
    ('api_keys', 'api_keys_authenticator_lock', 'w', 'permissive', 'true', 'false'),
    ('api_keys', 'api_keys_authenticator_changes_none', 'w', 'restrictive', 'true', 'false'),
    ('document_submissions', 'document_submissions_claimer', 'r', 'permissive', 'true', ''),
    ('document_submissions', 'document_submissions_claimer_lease', 'w', 'permissive', 'true', 'true'),
    ('email_outbox', 'email_outbox_relay', 'r', 'permissive', 'true', ''),
    ('email_outbox', 'email_outbox_relay_sent', 'w', 'permissive', '(sent_at IS NULL)', '(sent_at IS NOT NULL)'),
    ('email_outbox', 'email_outbox_relay_marks_sent_only', 'w', 'restrictive', '(sent_at IS NULL)', '(sent_at IS NOT NULL)'),
    ('email_outbox', 'email_outbox_relay_purge', 'd', 'permissive', '(created_at < (now() - ''48:00:00''::interval))', ''),
    ('email_outbox', 'email_outbox_purges_expired_only', 'd', 'restrictive', '(created_at < (now() - ''48:00:00''::interval))', ''),
    ('email_verifications', 'email_verifications_authenticator', 'r', 'permissive', 'true', ''),
    ('idempotency_keys', 'idempotency_keys_purge', 'r', 'permissive', '(expires_at < now())', ''),
    ('idempotency_keys', 'idempotency_keys_purge_delete', 'd', 'permissive', '(expires_at < now())', ''),
    ('idempotency_keys', 'idempotency_keys_purge_expired_only', 'd', 'restrictive', '(expires_at < now())', ''),
    ('issuer_certificates', 'issuer_certificates_resealer', 'r', 'permissive', 'true', ''),
    ('webhook_endpoints', 'webhook_endpoints_resealer', 'r', 'permissive', 'true', ''),
    ('webhook_deliveries', 'webhook_deliveries_claimer', 'r', 'permissive', 'true', ''),
    ('webhook_deliveries', 'webhook_deliveries_claimer_lease', 'w', 'permissive', 'true', 'true'),
    ('webhook_deliveries', 'webhook_deliveries_purger_delete', 'd', 'permissive',
     '((status <> ''pending''::text) AND (updated_at < (now() - ''1 day''::interval)))', ''),
    ('webhook_deliveries', 'webhook_deliveries_purges_ended_only', 'd', 'restrictive',
     '((status <> ''pending''::text) AND (updated_at < (now() - ''1 day''::interval)))', ''),
    ('sri_exchanges', 'sri_exchanges_purger', 'r', 'permissive', 'true', ''),
    ('sri_exchanges', 'sri_exchanges_purger_delete', 'd', 'permissive', '(created_at < (now() - ''1 day''::interval))', ''),
    ('sri_exchanges', 'sri_exchanges_purges_old_only', 'd', 'restrictive', '(created_at < (now() - ''1 day''::interval))', ''),
    ('webhook_events', 'webhook_events_purger', 'r', 'permissive', 'true', ''),
    ('webhook_events', 'webhook_events_purger_delete', 'd', 'permissive', '(created_at < (now() - ''1 day''::interval))', ''),
    ('webhook_events', 'webhook_events_purges_old_only', 'd', 'restrictive', '(created_at < (now() - ''1 day''::interval))', ''),
    ('webhook_delivery_attempts', 'webhook_delivery_attempts_purger', 'r', 'permissive', 'true', ''),
    ('webhook_delivery_attempts', 'webhook_delivery_attempts_purger_delete', 'd', 'permissive',
     '(attempted_at < (now() - ''1 day''::interval))', ''),
    ('webhook_delivery_attempts', 'webhook_delivery_attempts_purges_old_only', 'd', 'restrictive',
     '(attempted_at < (now() - ''1 day''::interval))', '')
$$, 'comprobify_auth''s policies are exactly: read keys and verification tokens, lock keys (change none), read and delete expired idempotency keys (those only), see and lease webhook deliveries, see and lease SRI submissions, read outbox messages, mark unsent ones sent (that only) and delete those older than 48 hours (those only), see webhook events, deliveries and attempts and SRI exchanges and delete those older than a day (ended deliveries only), see which certificates and webhooks are sealed under which master key');

SELECT is_empty($$
    SELECT p.polrelid::regclass::text || '.' || p.polname
      FROM pg_policy p
     WHERE p.polrelid IN (SELECT oid FROM schema_objects)
       AND obj_description(p.oid, 'pg_policy') IS NULL
$$, 'every policy has a comment saying what it is for');

-- Tables and views --------------------------------------------------------------------

SELECT is_empty($$
    SELECT o.name FROM schema_objects o
     WHERE o.relkind IN ('r', 'p', 'f')
       AND o.oid NOT IN (SELECT relid FROM tenant_tables)
       AND o.name NOT IN ('document_types', 'signup_attempts', 'schema_migrations')
$$, 'every table is a tenant table or one of document_types, signup_attempts, schema_migrations');

SELECT is_empty($$ SELECT o.name FROM schema_objects o WHERE o.relkind IN ('v', 'm') $$,
                'no views or materialized views (a view runs with its owner''s rights, a materialized view has no policies)');

-- comprobify_app's privileges ------------------------------------------------------------

SELECT set_eq($$
    SELECT o.name, a.privilege_type::text
      FROM schema_objects o, LATERAL aclexplode(
               (SELECT c.relacl FROM pg_class c WHERE c.oid = o.oid)) AS a
     WHERE o.relkind IN ('r', 'p') AND a.grantee = 'comprobify_app'::regrole
$$, $$ VALUES
    ('api_keys', 'SELECT'), ('api_keys', 'INSERT'),
    ('audit_events', 'SELECT'), ('audit_events', 'INSERT'),
    ('document_types', 'SELECT'),
    ('documents', 'SELECT'), ('documents', 'INSERT'),
    ('document_submissions', 'SELECT'), ('document_submissions', 'INSERT'),
    ('email_outbox', 'INSERT'),
    ('email_verifications', 'SELECT'), ('email_verifications', 'INSERT'),
    ('idempotency_keys', 'SELECT'), ('idempotency_keys', 'INSERT'),
    ('issuers', 'SELECT'), ('issuers', 'INSERT'),
    ('issuer_certificates', 'SELECT'), ('issuer_certificates', 'INSERT'),
    ('sequentials', 'SELECT'), ('sequentials', 'INSERT'),
    ('signup_attempts', 'SELECT'), ('signup_attempts', 'INSERT'),
    ('sri_exchanges', 'SELECT'), ('sri_exchanges', 'INSERT'),
    ('tenants', 'SELECT'), ('tenants', 'INSERT'),
    ('webhook_endpoints', 'SELECT'), ('webhook_endpoints', 'INSERT'),
    ('webhook_events', 'SELECT'), ('webhook_events', 'INSERT'),
    ('webhook_deliveries', 'SELECT'), ('webhook_deliveries', 'INSERT'),
    ('webhook_delivery_attempts', 'SELECT'), ('webhook_delivery_attempts', 'INSERT')
$$, 'comprobify_app''s table privileges are exactly the granted ones (no UPDATE, DELETE, TRUNCATE, REFERENCES or TRIGGER beyond them)');

SELECT set_eq($$
    SELECT table_name::text, column_name::text FROM information_schema.column_privileges
     WHERE grantee = 'comprobify_app' AND privilege_type = 'UPDATE' AND table_schema = 'public'
$$, $$ VALUES
    ('api_keys', 'revoked_at'),
    ('email_verifications', 'used_at'), ('email_verifications', 'invalidated_at'),
    ('idempotency_keys', 'issuer_id'), ('idempotency_keys', 'request_digest'), ('idempotency_keys', 'document_id'),
    ('idempotency_keys', 'created_at'), ('idempotency_keys', 'expires_at'),
    ('issuers', 'sandbox'), ('issuers', 'legal_name'), ('issuers', 'trade_name'), ('issuers', 'address'),
    ('issuers', 'head_office_address'), ('issuers', 'accounting_required'), ('issuers', 'special_taxpayer'),
    ('issuers', 'withholding_agent'), ('issuers', 'rimpe'), ('issuers', 'updated_at'),
    ('issuer_certificates', 'subject'), ('issuer_certificates', 'issuer_name'), ('issuer_certificates', 'serial_number'),
    ('issuer_certificates', 'not_before'), ('issuer_certificates', 'not_after'), ('issuer_certificates', 'sha256'),
    ('issuer_certificates', 'certificate'), ('issuer_certificates', 'sealed_private_key'),
    ('issuer_certificates', 'master_key_id'), ('issuer_certificates', 'uploaded_at'),
    ('document_submissions', 'status'), ('document_submissions', 'attempts'), ('document_submissions', 'last_error'),
    ('document_submissions', 'next_attempt_at'), ('document_submissions', 'messages'),
    ('document_submissions', 'authorization_number'), ('document_submissions', 'authorized_at'),
    ('document_submissions', 'authorization_xml'), ('document_submissions', 'updated_at'),
    ('document_submissions', 'streak'), ('document_submissions', 'leased_by'), ('document_submissions', 'leased_until'),
    ('sequentials', 'next_sequential'),
    ('tenants', 'status'), ('tenants', 'environment'), ('tenants', 'promoted_at'), ('tenants', 'roster_changed_at'),
    ('webhook_endpoints', 'deleted_at'), ('webhook_endpoints', 'sealed_secret'), ('webhook_endpoints', 'master_key_id'),
    ('webhook_endpoints', 'previous_sealed_secret'), ('webhook_endpoints', 'previous_secret_expires_at'),
    ('webhook_endpoints', 'url'), ('webhook_endpoints', 'events'),
    ('webhook_deliveries', 'status'), ('webhook_deliveries', 'attempts'), ('webhook_deliveries', 'next_attempt_at'),
    ('webhook_deliveries', 'leased_by'), ('webhook_deliveries', 'leased_until'), ('webhook_deliveries', 'last_response_code'),
    ('webhook_deliveries', 'last_duration_ms'), ('webhook_deliveries', 'last_error'), ('webhook_deliveries', 'updated_at'),
    ('webhook_deliveries', 'redeliveries')
$$, 'comprobify_app may update exactly these columns (never tenant_id, ids, digests or document content)');

SELECT set_eq($$
    SELECT c.relname::text, a.privilege_type::text
      FROM pg_class c, LATERAL aclexplode(c.relacl) AS a
     WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'S' AND a.grantee = 'comprobify_app'::regrole
$$, $$ VALUES
    ('documents_id_seq', 'USAGE'), ('tenants_id_seq', 'USAGE'), ('webhook_endpoints_id_seq', 'USAGE')
$$, 'comprobify_app may only draw from the three id sequences it names (USAGE, migration 0076), never set one (UPDATE) or read another''s state (SELECT); identity columns need no grant');

SELECT * FROM finish();
ROLLBACK;
