-- Keys that let the schema be distributed by tenant_id (Citus) without redesign.
--
-- A distributed table's primary key and every unique constraint or unique
-- index must contain the distribution column, or Citus cannot enforce it on
-- one shard; a foreign key between two distributed tables must include the
-- distribution column on both sides; co-located tables need one type for it.
--
-- tenants is exempt: it is keyed by id and becomes a reference table (a copy
-- on every node), so its case-insensitive unique email index keeps working.
-- Tables come from the catalog (fixtures/tenant_tables.sql), so a new table
-- with tenant_id is checked as soon as it exists.
BEGIN;
\ir fixtures/tenant_tables.sql
SELECT plan(2 + 2 * (SELECT count(*)::int FROM tenant_tables WHERE table_name <> 'tenants'));

SELECT ok(EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = t.relid AND i.indisprimary),
          t.table_name || ' has a primary key')
  FROM tenant_tables t
 WHERE t.table_name <> 'tenants'
 ORDER BY t.table_name;

-- indisunique covers the primary key, UNIQUE constraints and CREATE UNIQUE INDEX;
-- indisexclusion covers EXCLUDE constraints, which Citus treats alike.
-- On failure the offending index names are listed.
SELECT is_empty(
           format($$
               SELECT i.indexrelid::regclass::text
                 FROM pg_index i
                WHERE i.indrelid = %s AND (i.indisunique OR i.indisexclusion)
                  AND NOT (SELECT a.attnum FROM pg_attribute a
                            WHERE a.attrelid = i.indrelid AND a.attname = 'tenant_id') = ANY (i.indkey::int2[])
           $$, t.relid),
           t.table_name || ': the primary key and every unique or exclusion constraint or index include tenant_id')
  FROM tenant_tables t
 WHERE t.table_name <> 'tenants'
 ORDER BY t.table_name;

SELECT is_empty($$
    SELECT t.table_name || '.tenant_id is ' || format_type(a.atttypid, a.atttypmod)
           || CASE WHEN a.attnotnull THEN '' ELSE ' (nullable)' END
      FROM tenant_tables t
      JOIN pg_attribute a ON a.attrelid = t.relid AND a.attname = 'tenant_id'
     WHERE t.table_name <> 'tenants'
       AND (a.atttypid <> 'bigint'::regtype OR NOT a.attnotnull)
$$, 'tenant_id is bigint NOT NULL in every table (co-location needs one type)');

-- A foreign key from one tenant table to another (tenants excepted: it will be
-- a reference table) must pair tenant_id with tenant_id, so that the two rows
-- always live on the same shard and the key can never cross tenants.
SELECT is_empty($$
    SELECT c.conrelid::regclass || '.' || c.conname
      FROM pg_constraint c
      JOIN tenant_tables src ON src.relid = c.conrelid
      JOIN tenant_tables dst ON dst.relid = c.confrelid
     WHERE c.contype = 'f'
       AND dst.table_name <> 'tenants'
       AND NOT EXISTS (
           SELECT 1
             FROM unnest(c.conkey, c.confkey) AS k(src_att, dst_att)
            WHERE k.src_att = (SELECT attnum FROM pg_attribute WHERE attrelid = c.conrelid AND attname = 'tenant_id')
              AND k.dst_att = (SELECT attnum FROM pg_attribute WHERE attrelid = c.confrelid AND attname = 'tenant_id'))
$$, 'every foreign key between tenant tables pairs tenant_id with tenant_id');

SELECT * FROM finish();
ROLLBACK;
