-- Foreign key checks read one index entry (migration 0011): the check
-- PostgreSQL plans for a foreign key to issuers, as a generic plan and with
-- the statistics of many tenants with an issuer or two, as most tenants have,
-- looks the row up by both of issuers_pkey's columns, never by the tenant
-- alone (which would read every issuer of a tenant that has many).
BEGIN;
\ir fixtures/two_tenants.sql

SELECT plan(2);

-- 2,000 more tenants with one issuer each, and 200 more issuers for tenant A.
INSERT INTO tenants (id, email, name, status, environment)
SELECT 910000 + n, 'pgtap-many-' || n || '@example.invalid', 'Tenant ' || n, 'ACTIVE', 'sandbox'
  FROM generate_series(1, 2000) AS n;
INSERT INTO issuers (tenant_id, id, ruc, legal_name, establishment, emission_point, sandbox)
SELECT 910000 + n, 910000 + n, '1790012345001', 'Tenant ' || n, '001', '001', true
  FROM generate_series(1, 2000) AS n;
INSERT INTO issuers (tenant_id, id, ruc, legal_name, establishment, emission_point, sandbox)
SELECT 900001, 920000 + n, '1790012345001', 'Tenant A S.A.', lpad((n + 1)::text, 3, '0'), '001', true
  FROM generate_series(1, 200) AS n;
ANALYZE tenants, issuers;

CREATE FUNCTION pg_temp.generic_plan(statement text, arguments text) RETURNS text
    LANGUAGE plpgsql AS $$
DECLARE
    line text;
    plan text := '';
BEGIN
    EXECUTE 'PREPARE checked AS ' || statement;
    SET LOCAL plan_cache_mode = force_generic_plan;
    FOR line IN EXECUTE 'EXPLAIN (COSTS OFF) EXECUTE checked(' || arguments || ')' LOOP
        plan := plan || line || E'\n';
    END LOOP;
    DEALLOCATE checked;
    RETURN plan;
END
$$;

SELECT matches(
    pg_temp.generic_plan('SELECT 1 FROM ONLY issuers x WHERE tenant_id = $1::bigint AND id = $2::bigint FOR KEY SHARE OF x',
                         '900001, 900061'),
    'Index Cond: \(\(tenant_id = \$1\) AND \(id = \$2\)\)',
    'the foreign key check on issuers looks the row up by tenant and id');
SELECT doesnt_match(
    pg_temp.generic_plan('SELECT 1 FROM ONLY issuers x WHERE tenant_id = $1::bigint AND id = $2::bigint FOR KEY SHARE OF x',
                         '900001, 900061'),
    'Filter',
    'the foreign key check on issuers filters no rows it read');

SELECT * FROM finish();
ROLLBACK;
