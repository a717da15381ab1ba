-- The rules of single values become domains; the access key's agreement with
-- its row becomes one function call.
--
-- PostgreSQL keeps a table's CHECK constraints as stored expression text and,
-- for every statement that inserts into or updates the table, reads that text
-- back into expression trees and plans them again (the result lives only as
-- long as the statement). Issuing a factura inserts into sequentials (2 CHECK
-- constraints), documents (13) and document_submissions (6): counted with
-- bench/single_user.py, 0.87 of the 2.88 million instructions PostgreSQL ran
-- per factura went to them, most of it reading and planning. A domain's
-- constraints are read and planned once per session (the type cache), and a
-- PL/pgSQL function's expressions once per transaction at most. After this
-- migration, 2.58 million (10 % less); documents_access_key_matches alone,
-- the largest expression, went from 0.14 to 0.06 million as a function.
--
-- The domains are the product's vocabulary: an SRI environment, a document's
-- sequential, number and clave de acceso, an amount, the client's metadata
-- and a submission's status. Each keeps its rule under a constraint name of
-- its own, which a refused value names ("value for domain sri_access_key
-- violates check constraint "sri_access_key_check_digit""), with the same
-- SQLSTATE, 23514. Rules between columns stay CHECK constraints of their
-- tables, and so do counts and ranges named by the server
-- (sequentials_next_in_range).
--
-- How the columns change without rewriting their tables: each domain is made
-- without constraints, so that changing a column to it is binary coercible
-- (no table rewrite; the indexes are kept, but for the two partial indexes on
-- environment, api_keys_active and webhook_endpoints_active, which are built
-- again); the constraints are then added to the domains, which checks the
-- existing values with one scan of each column. CHECK constraints of the
-- tables that name a changed column are checked again the same way.
-- document_metadata_size is NOT VALID, as documents_metadata_size was: rows
-- from before the comprobantes keep whatever size they had.

CREATE DOMAIN sri_environment AS text;
CREATE DOMAIN sri_sequential AS integer;
CREATE DOMAIN sri_document_number AS text;
CREATE DOMAIN sri_access_key AS text;
CREATE DOMAIN sri_amount AS numeric(14, 2);
CREATE DOMAIN document_metadata AS json;
CREATE DOMAIN submission_status AS text;

-- A trigger's WHEN clause pins the type of the columns it names: this one is
-- made again below, unchanged.
DROP TRIGGER tenants_promotion_is_final ON tenants;

ALTER TABLE tenants
    DROP CONSTRAINT tenants_environment_values,
    ALTER COLUMN environment TYPE sri_environment;
ALTER TABLE api_keys
    DROP CONSTRAINT api_keys_environment_values,
    ALTER COLUMN environment TYPE sri_environment;
ALTER TABLE sequentials
    DROP CONSTRAINT sequentials_environment_values,
    ALTER COLUMN environment TYPE sri_environment;
ALTER TABLE webhook_endpoints
    DROP CONSTRAINT webhook_endpoints_environment_values,
    ALTER COLUMN environment TYPE sri_environment;
ALTER TABLE webhook_events
    DROP CONSTRAINT webhook_events_environment_values,
    ALTER COLUMN environment TYPE sri_environment;
ALTER TABLE documents
    DROP CONSTRAINT documents_environment_values,
    DROP CONSTRAINT documents_sequential_in_range,
    DROP CONSTRAINT documents_number_format,
    DROP CONSTRAINT documents_modified_number_format,
    DROP CONSTRAINT documents_access_key_format,
    DROP CONSTRAINT documents_access_key_check_digit,
    DROP CONSTRAINT documents_access_key_matches,
    DROP CONSTRAINT documents_total_not_negative,
    DROP CONSTRAINT documents_metadata_is_object,
    DROP CONSTRAINT documents_metadata_size,
    ALTER COLUMN environment TYPE sri_environment,
    ALTER COLUMN sequential TYPE sri_sequential,
    ALTER COLUMN number TYPE sri_document_number,
    ALTER COLUMN modified_number TYPE sri_document_number,
    ALTER COLUMN access_key TYPE sri_access_key,
    ALTER COLUMN total TYPE sri_amount,
    ALTER COLUMN metadata TYPE document_metadata;
ALTER TABLE document_submissions
    DROP CONSTRAINT document_submissions_status_values,
    ALTER COLUMN status TYPE submission_status;

CREATE TRIGGER tenants_promotion_is_final BEFORE UPDATE ON tenants FOR EACH ROW
    WHEN (OLD.environment = 'production'
          AND (NEW.environment <> 'production' OR NEW.promoted_at IS DISTINCT FROM OLD.promoted_at))
    EXECUTE FUNCTION refuse_change('a promotion to production is final');

ALTER DOMAIN sri_environment
    ADD CONSTRAINT sri_environment_values CHECK (VALUE IN ('sandbox', 'production'));
ALTER DOMAIN sri_sequential
    ADD CONSTRAINT sri_sequential_in_range CHECK (VALUE BETWEEN 1 AND 999999999);
ALTER DOMAIN sri_document_number
    ADD CONSTRAINT sri_document_number_format CHECK (VALUE ~ '^[0-9]{3}-[0-9]{3}-[0-9]{9}$');
ALTER DOMAIN sri_access_key
    ADD CONSTRAINT sri_access_key_format CHECK (VALUE ~ '^[0-9]{49}$');
ALTER DOMAIN sri_access_key
    ADD CONSTRAINT sri_access_key_check_digit CHECK (right(VALUE, 1) = sri_check_digit(left(VALUE, 48)));
ALTER DOMAIN sri_amount
    ADD CONSTRAINT sri_amount_not_negative CHECK (VALUE >= 0);
ALTER DOMAIN document_metadata
    ADD CONSTRAINT document_metadata_is_object CHECK (json_typeof(VALUE) = 'object');
ALTER DOMAIN document_metadata
    ADD CONSTRAINT document_metadata_size CHECK (octet_length(VALUE::text) <= 16384) NOT VALID;
ALTER DOMAIN submission_status
    ADD CONSTRAINT submission_status_values CHECK (VALUE IN ('SIGNED', 'RECEIVED', 'RETURNED', 'AUTHORIZED', 'NOT_AUTHORIZED'));

COMMENT ON DOMAIN sri_environment IS 'An SRI environment: sandbox (SRI''s pruebas, ambiente 1) or production (producción, ambiente 2).';
COMMENT ON DOMAIN sri_sequential IS 'A document''s secuencial: 1 to 999999999, nine digits in its number and its access key.';
COMMENT ON DOMAIN sri_document_number IS 'A document number as SRI prints it: establishment-emission point-sequential, e.g. 001-001-000000001.';
COMMENT ON DOMAIN sri_access_key IS 'An SRI clave de acceso: 49 digits, the last the modulo-11 check digit of the first 48 (sri_check_digit).';
COMMENT ON DOMAIN sri_amount IS 'An amount in US dollars, to the cent, never negative.';
COMMENT ON DOMAIN document_metadata IS 'The client''s own JSON object, kept as the exact text it sent: at most 16 KiB.';
COMMENT ON DOMAIN submission_status IS 'Where a document stands with SRI: SIGNED (waiting to be sent), RECEIVED, RETURNED, AUTHORIZED or NOT_AUTHORIZED.';

-- The clave de acceso carries the document's type (digits 9-10), environment
-- (digit 24: 1 sandbox, 2 production) and sequential (digits 31-39). The
-- constraint keeps its name; its expression is now a call of this function.
CREATE FUNCTION sri_access_key_agrees(access_key text, document_type text, environment text, sequential integer)
    RETURNS boolean
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
    AS $$
BEGIN
    RETURN substr(access_key, 9, 2) = document_type
       AND substr(access_key, 24, 1) = CASE environment WHEN 'sandbox' THEN '1' ELSE '2' END
       AND substr(access_key, 31, 9)::integer = sequential;
END
$$;

COMMENT ON FUNCTION sri_access_key_agrees(text, text, text, integer) IS
    'Whether a clave de acceso carries this document type, environment (1 sandbox, 2 production) and sequential.';

ALTER TABLE documents
    ADD CONSTRAINT documents_access_key_matches CHECK (sri_access_key_agrees(access_key, document_type, environment, sequential));
