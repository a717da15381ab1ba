-- Every object of schema public says what it is for, so that a DBA reading the
-- catalog (\d+, \dd+, \di+, col_description, obj_description) finds the rule
-- and its reason without the migrations at hand (migration 0059):
--
--   * every table and view, and every column of each;
--   * every constraint, of a table (CHECK, foreign key, unique, primary key,
--     exclusion) or of a domain;
--   * every index that backs no constraint (one that does is described by its
--     constraint's comment);
--   * every trigger (but PostgreSQL's internal ones, which enforce foreign keys);
--   * every function, trigger functions included;
--   * every domain and enum, and every sequence that belongs to no column
--     (identity sequences are described by their columns);
--   * each of Comprobify's roles (migration 0070).
--
-- A comment that is empty or blank counts as none. Each failure lists the
-- objects without one. Objects that belong to an extension (pgTAP's own
-- functions and views, installed in public by scripts/test) are left out,
-- and so is everything on or of such an object. Policies are checked by
-- schema_guards.sql.
BEGIN;
SELECT plan(10);

-- Objects that belong to an extension.
CREATE TEMP VIEW extension_members AS
SELECT d.classid, d.objid FROM pg_depend d WHERE d.deptype = 'e';

-- Relations of the schema, not an extension's.
CREATE TEMP VIEW schema_relations AS
SELECT c.oid, c.relname::text AS name, c.relkind
  FROM pg_class c
 WHERE c.relnamespace = 'public'::regnamespace
   AND NOT EXISTS (SELECT 1 FROM extension_members m WHERE m.classid = 'pg_class'::regclass AND m.objid = c.oid);

-- Tables and columns -----------------------------------------------------------------------

SELECT is_empty($$
    SELECT r.name
      FROM schema_relations r
     WHERE r.relkind IN ('r', 'p', 'v', 'm', 'f')
       AND coalesce(btrim(obj_description(r.oid, 'pg_class')), '') = ''
     ORDER BY 1
$$, 'every table and view has a comment');

SELECT is_empty($$
    SELECT r.name || '.' || a.attname
      FROM schema_relations r
      JOIN pg_attribute a ON a.attrelid = r.oid
     WHERE r.relkind IN ('r', 'p', 'v', 'm', 'f')
       AND a.attnum > 0 AND NOT a.attisdropped
       AND coalesce(btrim(col_description(r.oid, a.attnum)), '') = ''
     ORDER BY 1
$$, 'every column has a comment');

-- Constraints and indexes ------------------------------------------------------------------

SELECT is_empty($$
    SELECT coalesce(r.name, 'domain ' || con.contypid::regtype::text) || ': ' || con.conname
      FROM pg_constraint con
      LEFT JOIN schema_relations r ON r.oid = con.conrelid
     WHERE con.connamespace = 'public'::regnamespace
       AND (r.oid IS NOT NULL
            OR (con.conrelid = 0
                AND NOT EXISTS (SELECT 1 FROM extension_members m
                                 WHERE m.classid = 'pg_type'::regclass AND m.objid = con.contypid)))
       AND coalesce(btrim(obj_description(con.oid, 'pg_constraint')), '') = ''
     ORDER BY 1
$$, 'every constraint, of a table or of a domain, has a comment');

SELECT is_empty($$
    SELECT t.name || ': ' || i.name
      FROM schema_relations i
      JOIN pg_index x ON x.indexrelid = i.oid
      JOIN schema_relations t ON t.oid = x.indrelid
     WHERE i.relkind IN ('i', 'I')
       -- the index of a primary key, unique or exclusion constraint
       AND NOT EXISTS (SELECT 1 FROM pg_constraint con
                        WHERE con.conindid = i.oid AND con.conrelid = x.indrelid AND con.contype IN ('p', 'u', 'x'))
       AND coalesce(btrim(obj_description(i.oid, 'pg_class')), '') = ''
     ORDER BY 1
$$, 'every index that backs no constraint has a comment (one that does is its constraint''s)');

-- Triggers and functions -------------------------------------------------------------------

SELECT is_empty($$
    SELECT r.name || ': ' || t.tgname
      FROM pg_trigger t
      JOIN schema_relations r ON r.oid = t.tgrelid
     WHERE NOT t.tgisinternal
       AND coalesce(btrim(obj_description(t.oid, 'pg_trigger')), '') = ''
     ORDER BY 1
$$, 'every trigger has a comment');

SELECT is_empty($$
    SELECT p.oid::regprocedure::text
      FROM pg_proc p
     WHERE p.pronamespace = 'public'::regnamespace
       AND NOT EXISTS (SELECT 1 FROM extension_members m WHERE m.classid = 'pg_proc'::regclass AND m.objid = p.oid)
       AND coalesce(btrim(obj_description(p.oid, 'pg_proc')), '') = ''
     ORDER BY 1
$$, 'every function has a comment');

-- Types and sequences ----------------------------------------------------------------------

SELECT is_empty($$
    SELECT t.oid::regtype::text
      FROM pg_type t
     WHERE t.typnamespace = 'public'::regnamespace
       AND t.typtype IN ('d', 'e')
       AND NOT EXISTS (SELECT 1 FROM extension_members m WHERE m.classid = 'pg_type'::regclass AND m.objid = t.oid)
       AND coalesce(btrim(obj_description(t.oid, 'pg_type')), '') = ''
     ORDER BY 1
$$, 'every domain and enum has a comment');

SELECT is_empty($$
    SELECT s.name
      FROM schema_relations s
     WHERE s.relkind = 'S'
       -- an identity or serial column's own sequence
       AND NOT EXISTS (SELECT 1 FROM pg_depend d
                        WHERE d.classid = 'pg_class'::regclass AND d.objid = s.oid
                          AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('i', 'a'))
       AND coalesce(btrim(obj_description(s.oid, 'pg_class')), '') = ''
     ORDER BY 1
$$, 'every sequence that belongs to no column has a comment');

SELECT is_empty($$
    SELECT s.name
      FROM schema_relations s
     WHERE CASE WHEN s.relkind = 'S' THEN has_sequence_privilege('comprobify_app', s.oid, 'USAGE') ELSE false END
       AND coalesce(btrim(obj_description(s.oid, 'pg_class')), '') = ''
     ORDER BY 1
$$, 'every sequence comprobify_app may draw from says why (migration 0094)');

-- Roles ------------------------------------------------------------------------------------

SELECT is_empty($$
    SELECT r.rolname::text
      FROM pg_roles r
     WHERE r.rolname IN ('comprobify_app', 'comprobify_auth', 'comprobify_mailer')
       AND coalesce(btrim(shobj_description(r.oid, 'pg_authid')), '') = ''
     ORDER BY 1
$$, 'each of Comprobify''s roles has a comment');

SELECT * FROM finish();
ROLLBACK;
