-- comprobify_app's sessions search the schemas as the definer functions do
-- (migration 0029), so that plans made in one, a trigger's among them, hold
-- in the other; and pg_temp, named last, never stands in for the schema.
BEGIN;
\ir fixtures/two_tenants.sql

SELECT plan(4);

SELECT is((SELECT c FROM pg_db_role_setting s, unnest(s.setconfig) AS c
            WHERE s.setrole = 'comprobify_app'::regrole AND s.setdatabase = 0 AND c LIKE 'search_path=%'),
          'search_path=pg_catalog, public, pg_temp',
          'comprobify_app''s sessions search pg_catalog, public, then pg_temp');

SELECT is(ARRAY(SELECT p.oid::regprocedure::text
                  FROM pg_proc p
                 WHERE p.prosecdef AND p.pronamespace = 'public'::regnamespace
                   AND NOT coalesce((SELECT c FROM pg_db_role_setting s, unnest(s.setconfig) AS c
                                      WHERE s.setrole = 'comprobify_app'::regrole AND s.setdatabase = 0
                                        AND c LIKE 'search_path=%') = ANY (p.proconfig), false)
                 ORDER BY 1),
          ARRAY[]::text[],
          'every definer function pins exactly the path of comprobify_app''s sessions');

-- As a session of the role would be: its setting, its rights.
SELECT set_config('search_path', substr(c, length('search_path=') + 1), true)
  FROM pg_db_role_setting s, unnest(s.setconfig) AS c
 WHERE s.setrole = 'comprobify_app'::regrole AND s.setdatabase = 0 AND c LIKE 'search_path=%';
SET LOCAL ROLE comprobify_app;
SELECT set_config('app.tenant_id', '900001', true);
CREATE TEMPORARY TABLE api_keys (id bigint);
INSERT INTO pg_temp.api_keys VALUES (1), (2), (3), (4), (5), (6), (7), (8), (9);

SELECT is(to_regclass('api_keys'), 'public.api_keys'::regclass,
          'a temporary table named like a table of the schema does not stand in for it');
SELECT is((SELECT count(*) FROM api_keys), (SELECT count(*) FROM public.api_keys),
          'the app''s unqualified statements read the schema''s table');

RESET ROLE;
SELECT * FROM finish();
ROLLBACK;
