-- The signed XML and SRI's authorization are compressed with lz4 (migration
-- 0013) where PostgreSQL has it.
BEGIN;
\ir fixtures/two_tenants.sql
SELECT plan(6);

CREATE TEMP TABLE lz4_available AS
SELECT 'lz4' = ANY (enumvals) AS yes FROM pg_settings WHERE name = 'default_toast_compression';

SELECT is((SELECT attcompression::text FROM pg_attribute WHERE attrelid = 'documents'::regclass AND attname = 'xml'),
          CASE WHEN (SELECT yes FROM lz4_available) THEN 'l' ELSE '' END,
          'documents.xml is compressed with lz4 where PostgreSQL has it');
SELECT is((SELECT attcompression::text FROM pg_attribute
            WHERE attrelid = 'document_submissions'::regclass AND attname = 'authorization_xml'),
          CASE WHEN (SELECT yes FROM lz4_available) THEN 'l' ELSE '' END,
          'document_submissions.authorization_xml is compressed with lz4 where PostgreSQL has it');

-- A factura-sized XML (5 KB, repetitive as XML is): stored compressed, with
-- lz4, and read back as it was written. (A view, not a table: a value copied
-- from a table keeps the compression it was stored with.)
CREATE TEMP VIEW signed AS
SELECT convert_to('<factura id="comprobante">' || string_agg('<detalle><codigoPrincipal>A-' || i || '</codigoPrincipal>'
                  || '<cantidad>' || i % 7 || '</cantidad></detalle>', '' ORDER BY i) || '</factura>', 'UTF8') AS xml
  FROM generate_series(1, 80) AS i;
SELECT ok((SELECT octet_length(xml) > 5000 FROM signed), 'the XML is the size of a signed factura');
INSERT INTO documents (tenant_id, issuer_id, document_type, environment, sequential, number, access_key, issue_date,
                       metadata, body, xml, total, buyer_id_type, buyer_id)
SELECT 900001, 900061, '01', 'production', 2, '001-001-000000002',
       '0103202601179001234500120010010000000021234567814', '2026-03-01', '{}', '{}', xml, 1.00, '07', '9999999999999'
  FROM signed;

SELECT is((SELECT pg_column_compression(xml) FROM documents WHERE tenant_id = 900001 AND sequential = 2 AND document_type = '01'),
          CASE WHEN (SELECT yes FROM lz4_available) THEN 'lz4' ELSE 'pglz' END,
          'a new signed XML is compressed with lz4');
SELECT ok((SELECT pg_column_size(xml) < octet_length(xml) FROM documents
            WHERE tenant_id = 900001 AND sequential = 2 AND document_type = '01'),
          'and takes less room than its text');
SELECT is((SELECT xml FROM documents WHERE tenant_id = 900001 AND sequential = 2 AND document_type = '01'),
          (SELECT xml FROM signed), 'and reads back byte for byte');

SELECT * FROM finish();
ROLLBACK;
