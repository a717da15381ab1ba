-- Comprobify on Citus: which table goes where. ON PAPER: Citus is not
-- installed in development or CI, and this file has never run against a Citus
-- cluster. Read docs/scaling.md first; it explains every choice below and
-- lists what to verify on a test cluster before production.
--
-- Run once, as the schema owner (a superuser), on the coordinator, after
-- `comprobify migrate` has applied every migration and while no server is
-- writing (a maintenance window): distributing a table copies its rows.
--
-- Before running it:
--
--   * citus is in shared_preload_libraries on every node, the workers are
--     registered (citus_add_node), and the coordinator is in the metadata
--     (citus_set_coordinator_host), so reference tables have a copy on it.
--   * On the coordinator (ALTER SYSTEM, then SELECT pg_reload_conf()):
--       citus.propagate_set_commands = 'local'
--         SET LOCAL app.tenant_id reaches the workers, where the shards'
--         policies are evaluated. Without it every tenant table reads empty
--         (fail closed, but the service breaks).
--       citus.enable_unsafe_triggers = on
--         lets the documents immutability trigger exist on the shards.
--   * comprobify_app and comprobify_auth exist on every node with the same
--     attributes (Citus propagates roles; check with
--     SELECT run_command_on_workers($$SELECT count(*) FROM pg_roles WHERE rolname LIKE 'comprobify%'$$)).
--     comprobify_auth must be able to log in ON THE WORKERS ONLY (see
--     docs/scaling.md, "The definer functions on Citus").
--   * The server sets the tenant with SET LOCAL app.tenant_id, not
--     set_config(): Citus propagates SET LOCAL statements, not function calls.
--   * purge_expired() is split into two DELETE statements (its single
--     statement modifies a distributed and a local table at once).
--   * authenticate() finds the tenant through a lookup table first, so that
--     the key itself is read, and share-locked, on one shard (docs/scaling.md,
--     "Finding a key by its digest").
--
-- The steps are in dependency order: reference tables before the tables
-- whose foreign keys point at them, and co-located tables after the table
-- they are co-located with. The file runs as one transaction; should a step
-- refuse to run inside a transaction block on the Citus version at hand, run
-- the steps one by one, in this order.

BEGIN;

-- Distributing tables that reference a reference table created in the same
-- transaction must use one connection per node.
SET LOCAL citus.multi_shard_modify_mode = 'sequential';

-- ---------------------------------------------------------------------------
-- 1. Policies without subqueries.
--    Citus refuses to distribute a table whose policies contain a subquery,
--    and 0002_schema.sql wraps current_tenant_id() in (SELECT ...). The plain
--    call is equivalent: current_tenant_id() is a STABLE SQL function that
--    PostgreSQL inlines, so an index on tenant_id is still used. These
--    statements belong in a regular migration (they are just as right on
--    plain PostgreSQL, and sql/tests/rls_coverage.sql accepts both forms);
--    they are repeated here so this file is complete.
-- ---------------------------------------------------------------------------

ALTER POLICY tenants_tenant_isolation ON tenants
    USING (id = current_tenant_id()) WITH CHECK (id = current_tenant_id());
ALTER POLICY api_keys_tenant_isolation ON api_keys
    USING (tenant_id = current_tenant_id()) WITH CHECK (tenant_id = current_tenant_id());
ALTER POLICY email_verifications_tenant_isolation ON email_verifications
    USING (tenant_id = current_tenant_id()) WITH CHECK (tenant_id = current_tenant_id());
ALTER POLICY email_outbox_tenant_isolation ON email_outbox
    USING (tenant_id = current_tenant_id()) WITH CHECK (tenant_id = current_tenant_id());
ALTER POLICY issuers_tenant_isolation ON issuers
    USING (tenant_id = current_tenant_id()) WITH CHECK (tenant_id = current_tenant_id());
ALTER POLICY sequentials_tenant_isolation ON sequentials
    USING (tenant_id = current_tenant_id()) WITH CHECK (tenant_id = current_tenant_id());
ALTER POLICY documents_tenant_isolation ON documents
    USING (tenant_id = current_tenant_id()) WITH CHECK (tenant_id = current_tenant_id());
ALTER POLICY idempotency_keys_tenant_isolation ON idempotency_keys
    USING (tenant_id = current_tenant_id()) WITH CHECK (tenant_id = current_tenant_id());
ALTER POLICY audit_events_tenant_isolation ON audit_events
    USING (tenant_id = current_tenant_id()) WITH CHECK (tenant_id = current_tenant_id());

-- ---------------------------------------------------------------------------
-- 2. Functions on every node.
--    The migrations created these before the citus extension existed, so
--    Citus does not know them yet. The shards' policies call
--    current_tenant_id() and the shards' trigger calls
--    documents_are_immutable(), on the workers. The definer functions are
--    propagated too, owner (comprobify_auth), search_path and grants
--    included, so that they behave alike wherever they are called; the server
--    calls them on the coordinator.
-- ---------------------------------------------------------------------------

SELECT create_distributed_function('current_tenant_id()');
SELECT create_distributed_function('documents_are_immutable()');
SELECT create_distributed_function('authenticate(bytea, boolean)');
SELECT create_distributed_function('email_verification_tenant(bytea)');
SELECT create_distributed_function('purge_expired()');

-- ---------------------------------------------------------------------------
-- 3. Reference tables: one copy on every node, written on all of them.
--    document_types: six rows of SRI codes, joined by sequentials and documents.
--    tenants: every tenant table's foreign key points at it, and its unique
--    index on the email (lower, NFC) needs every row in one place to stay unique. Its
--    writes are rare (sign-up, verification, promotion). Its policy keeps
--    applying: a tenant sees its own row only.
-- ---------------------------------------------------------------------------

SELECT create_reference_table('document_types');
SELECT create_reference_table('tenants');

-- ---------------------------------------------------------------------------
-- 4. Tenant data, distributed by tenant_id, all co-located: the rows of one
--    tenant, in every table, live in the same shard group on one worker, so
--    a request that names its tenant runs on one node, and the foreign keys
--    (which all include tenant_id) are checked there.
--    api_keys is the anchor of the co-location group. The shard count is
--    citus.shard_count (32 by default); choose it before this step, it is
--    costly to change later.
-- ---------------------------------------------------------------------------

-- The triggers that refuse a digest held by another tenant (migration 0018)
-- read every tenant's rows; distributed, that is a query to every shard per
-- insert. Nothing checks a digest across tenants after this until the
-- api_key_lookup table of docs/scaling.md exists: its primary key takes their
-- place for keys.
DROP TRIGGER api_keys_digest_names_one_key ON api_keys;
DROP TRIGGER email_verifications_digest_names_one_token ON email_verifications;
SELECT create_distributed_table('api_keys', 'tenant_id');
SELECT create_distributed_table('email_verifications', 'tenant_id', colocate_with => 'api_keys');
SELECT create_distributed_table('email_outbox',        'tenant_id', colocate_with => 'api_keys');
SELECT create_distributed_table('issuers',             'tenant_id', colocate_with => 'api_keys');
-- after issuers: their foreign keys point at issuers
SELECT create_distributed_table('sequentials',         'tenant_id', colocate_with => 'api_keys');
SELECT create_distributed_table('documents',           'tenant_id', colocate_with => 'api_keys');
-- after issuers and documents
SELECT create_distributed_table('idempotency_keys',    'tenant_id', colocate_with => 'api_keys');
-- after api_keys (actor_key_id)
SELECT create_distributed_table('audit_events',        'tenant_id', colocate_with => 'api_keys');

-- ---------------------------------------------------------------------------
-- 5. Left as they are, on the coordinator:
--    signup_attempts  sign-up rate limiting by client address. A few rows per
--                     address and hour, always read and written by address
--                     under an advisory lock taken on the coordinator, joined
--                     with nothing. If sign-ups ever outgrow one node:
--                     SELECT create_distributed_table('signup_attempts', 'client_address', colocate_with => 'none');
--    schema_migrations the migrations ledger.
-- ---------------------------------------------------------------------------

COMMIT;

-- ---------------------------------------------------------------------------
-- 6. Checks, after COMMIT.
-- ---------------------------------------------------------------------------

-- Every tenant table is distributed by tenant_id in one co-location group;
-- tenants and document_types are reference tables.
SELECT table_name, citus_table_type, distribution_column, colocation_id, shard_count
  FROM citus_tables
 ORDER BY citus_table_type, table_name;

-- Every shard carries its table's policies: api_keys has 3 (isolation and
-- the two authenticator policies), so every row here should say 3.
SELECT shardid, nodename, result
  FROM run_command_on_shards('api_keys', $$SELECT count(*) FROM pg_policy WHERE polrelid = '%s'::regclass$$);

-- ENABLE and FORCE ROW LEVEL SECURITY on the shards: on each worker, in psql
-- (shards are hidden from pg_class unless told otherwise):
--   SET citus.override_table_visibility = off;
--   SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class
--    WHERE relname ~ '^(tenants|api_keys|email_verifications|email_outbox|issuers|sequentials|documents|idempotency_keys|audit_events)_[0-9]+$';
-- Every row must read t | t. Then run sql/tests against the coordinator
-- (the catalog checks look at the coordinator's tables; the behaviour checks
-- go through the workers).
