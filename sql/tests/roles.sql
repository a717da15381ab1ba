-- The two roles of 0001_roles.sql and what they must never be.
--
--   comprobify_app   the server's role: no superuser, no BYPASSRLS, no CREATEROLE
--                    or CREATEDB, member of no other role, owner of nothing (an
--                    owner could ALTER or DROP what row-level security hangs on).
--   comprobify_auth  owner of the SECURITY DEFINER lookups: cannot log in, does
--                    not bypass row-level security, owns those functions and nothing else.
BEGIN;
SELECT plan(24);

-- comprobify_app ------------------------------------------------------------

SELECT has_role('comprobify_app');
SELECT isnt_superuser('comprobify_app');
SELECT is((SELECT rolbypassrls FROM pg_roles WHERE rolname = 'comprobify_app'), false,
          'comprobify_app does not bypass row-level security');
SELECT is((SELECT rolcreaterole FROM pg_roles WHERE rolname = 'comprobify_app'), false,
          'comprobify_app cannot create roles');
SELECT is((SELECT rolcreatedb FROM pg_roles WHERE rolname = 'comprobify_app'), false,
          'comprobify_app cannot create databases');
SELECT is((SELECT rolreplication FROM pg_roles WHERE rolname = 'comprobify_app'), false,
          'comprobify_app is not a replication role');

SELECT is_empty($$
    SELECT r.rolname FROM pg_roles r
     WHERE r.rolname <> 'comprobify_app'
       AND pg_has_role('comprobify_app', r.oid, 'MEMBER')
$$, 'comprobify_app is a member of no other role (not of comprobify_auth, not of the owner)');

SELECT is_empty($$
    SELECT c.oid::regclass::text FROM pg_class c
     WHERE c.relowner = 'comprobify_app'::regrole
$$, 'comprobify_app owns no table, view, index or sequence');

SELECT is_empty($$
    SELECT p.oid::regprocedure::text FROM pg_proc p
     WHERE p.proowner = 'comprobify_app'::regrole
$$, 'comprobify_app owns no function');

SELECT is_empty($$
    SELECT nspname FROM pg_namespace WHERE nspowner = 'comprobify_app'::regrole
    UNION ALL
    SELECT datname FROM pg_database WHERE datdba = 'comprobify_app'::regrole
$$, 'comprobify_app owns no schema and no database');

SELECT ok(NOT has_schema_privilege('comprobify_app', 'public', 'CREATE'),
          'comprobify_app cannot create objects in schema public');
SELECT ok(NOT has_database_privilege('comprobify_app', current_database(), 'CREATE'),
          'comprobify_app cannot create schemas in this database');

SELECT is_empty($$
    SELECT c.relname || ': ' || p.privilege
      FROM pg_class c
      CROSS JOIN unnest(ARRAY['TRUNCATE', 'REFERENCES', 'TRIGGER']) AS p(privilege)
     WHERE c.relnamespace = 'public'::regnamespace
       AND c.relkind IN ('r', 'p')
       AND has_table_privilege('comprobify_app', c.oid, p.privilege)
$$, 'comprobify_app has no TRUNCATE, REFERENCES or TRIGGER privilege on any table');

SELECT ok(NOT has_table_privilege('comprobify_app', 'schema_migrations',
                                  'SELECT, INSERT, UPDATE, DELETE, TRUNCATE'),
          'comprobify_app cannot read or write the migrations ledger');

SELECT ok(NOT has_table_privilege('comprobify_app', 'documents', 'UPDATE, DELETE'),
          'comprobify_app may not update or delete documents');

-- comprobify_auth -----------------------------------------------------------

SELECT has_role('comprobify_auth');
SELECT is((SELECT rolcanlogin FROM pg_roles WHERE rolname = 'comprobify_auth'), false,
          'comprobify_auth cannot log in');
SELECT isnt_superuser('comprobify_auth');
SELECT is((SELECT rolbypassrls FROM pg_roles WHERE rolname = 'comprobify_auth'), false,
          'comprobify_auth does not bypass row-level security');
SELECT is((SELECT rolcreaterole OR rolcreatedb OR rolreplication FROM pg_roles WHERE rolname = 'comprobify_auth'), false,
          'comprobify_auth cannot create roles or databases and is not a replication role');

SELECT is_empty($$
    SELECT c.oid::regclass::text FROM pg_class c
     WHERE c.relowner = 'comprobify_auth'::regrole
$$, 'comprobify_auth owns no table, view, index or sequence');

SELECT set_eq($$
    SELECT p.oid::regprocedure::text FROM pg_proc p
     WHERE p.proowner = 'comprobify_auth'::regrole
$$, ARRAY['authenticate(bytea,boolean)', 'email_verification_tenant(bytea)', 'purge_expired()',
         'claim_webhook_deliveries(uuid,integer,integer,integer,integer,bigint[])',
         'webhook_queue_depth()',
         'claim_sri_work(uuid,integer,integer,integer,bigint[])',
         'sri_queue_depth()', 'refuse_held_token_digest()',
         'take_outbox_messages(integer)', 'mark_outbox_message_sent(bigint,bigint)', 'purge_webhook_history(interval)', 'purge_sri_exchanges(interval)', 'sealed_under_other_keys(text,text,bigint,bigint,integer,bigint[])',
         'schema_version()'],
   'comprobify_auth owns exactly the cross-tenant functions');

SELECT is_empty($$
    SELECT c.relname || ': ' || p.privilege
      FROM pg_class c
      CROSS JOIN unnest(ARRAY['INSERT', 'TRUNCATE', 'REFERENCES', 'TRIGGER']) AS p(privilege)
     WHERE c.relnamespace = 'public'::regnamespace
       AND c.relkind IN ('r', 'p')
       AND has_table_privilege('comprobify_auth', c.oid, p.privilege)
$$, 'comprobify_auth cannot insert into, truncate, reference or trigger on any table');

SELECT is_empty($$
    SELECT r.rolname FROM pg_roles r
     WHERE r.rolname <> 'comprobify_auth'
       AND pg_has_role('comprobify_auth', r.oid, 'MEMBER')
$$, 'comprobify_auth is a member of no other role');

SELECT * FROM finish();
ROLLBACK;
