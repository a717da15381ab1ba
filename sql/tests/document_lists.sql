-- The indexes GET /v1/documents pages through: one per filter that can leave
-- most of an issuer's documents out, each ending with the id pages go by.
BEGIN;
SELECT plan(4);

SELECT is(pg_get_indexdef('documents_by_issuer'::regclass),
          'CREATE INDEX documents_by_issuer ON public.documents USING btree (tenant_id, issuer_id, id)',
          'an issuer''s documents are read in order by their index');
SELECT is(pg_get_indexdef('documents_by_issuer_and_type'::regclass),
          'CREATE INDEX documents_by_issuer_and_type ON public.documents USING btree (tenant_id, issuer_id, document_type, id)',
          'an issuer''s documents of one type have an index of their own');
SELECT is(pg_get_indexdef('documents_by_issuer_and_environment'::regclass),
          'CREATE INDEX documents_by_issuer_and_environment ON public.documents USING btree (tenant_id, issuer_id, environment, id)',
          'an issuer''s documents of one environment have an index of their own (migration 0089)');

SELECT is(pg_get_indexdef('documents_legacy_by_issuer'::regclass),
          'CREATE INDEX documents_legacy_by_issuer ON public.documents USING btree (tenant_id, issuer_id, id) WHERE (xml IS NULL)',
          'an issuer''s documents without XML (LEGACY) have an index of their own, empty of comprobantes (migration 0091)');

SELECT * FROM finish();
ROLLBACK;
