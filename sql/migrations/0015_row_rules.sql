-- The rules between columns of documents and document_submissions move from
-- CHECK constraints to one BEFORE trigger per table, under the same names.
--
-- PostgreSQL keeps a table's CHECK constraints as the text of their
-- expression trees and reads every one of them back (stringToNode) and plans
-- it again in each statement that writes the table; a PL/pgSQL trigger
-- function is compiled once per session. Counted with bench/single_user.py on
-- a copy of a cluster after D1 (the server's statements for a signed
-- factura): 2.085 million instructions per factura with the seven
-- constraints, 1.799 million with none, 1.880 million with these triggers
-- (-10 %). Most of the difference is the parsing of the stored trees
-- (pg_strtok and the number conversions it calls). The document's insert runs
-- while its counter's row is locked, and every update of a submission by the
-- sender paid for its three constraints as well. The rules of single values
-- were moved to domains for the same reason (migrations 0012 and 0014).
--
-- Each rule keeps its name and its error: SQLSTATE 23514 (check_violation),
-- the message PostgreSQL writes for a CHECK constraint, and the rule's name in
-- the error's constraint field. As with a CHECK, a rule whose expression is
-- NULL holds, and the rules are checked in the order of their names, as
-- PostgreSQL checks a table's constraints. Existing rows were checked by the
-- constraints when written.

CREATE FUNCTION documents_row_rules() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    -- documents_access_key_matches: the clave de acceso carries the row's
    -- type (digits 9-10), environment (digit 24: 1 sandbox, 2 production)
    -- and sequential (digits 31-39).
    IF NOT (substr(NEW.access_key, 9, 2) = NEW.document_type
            AND substr(NEW.access_key, 24, 1) = CASE NEW.environment WHEN 'sandbox' THEN '1' ELSE '2' END
            AND substr(NEW.access_key, 31, 9)::integer = NEW.sequential) THEN
        RAISE check_violation USING CONSTRAINT = 'documents_access_key_matches', TABLE = TG_TABLE_NAME, SCHEMA = TG_TABLE_SCHEMA,
            MESSAGE = 'new row for relation "documents" violates check constraint "documents_access_key_matches"';
    END IF;
    -- documents_comprobante_complete: a comprobante has its XML, body, total
    -- and buyer; a document numbered before comprobantes existed has none of
    -- the first three.
    IF NOT ((NEW.xml IS NULL AND NEW.body IS NULL AND NEW.total IS NULL)
            OR (NEW.xml IS NOT NULL AND NEW.body IS NOT NULL AND NEW.total IS NOT NULL
                AND NEW.buyer_id_type IS NOT NULL AND NEW.buyer_id IS NOT NULL)) THEN
        RAISE check_violation USING CONSTRAINT = 'documents_comprobante_complete', TABLE = TG_TABLE_NAME, SCHEMA = TG_TABLE_SCHEMA,
            MESSAGE = 'new row for relation "documents" violates check constraint "documents_comprobante_complete"';
    END IF;
    -- documents_credit_note_names_its_factura: a credit note (04), and only a
    -- credit note, names the factura it modifies.
    IF NOT ((NEW.document_type = '04') = (NEW.modified_number IS NOT NULL) OR NEW.xml IS NULL) THEN
        RAISE check_violation USING CONSTRAINT = 'documents_credit_note_names_its_factura', TABLE = TG_TABLE_NAME, SCHEMA = TG_TABLE_SCHEMA,
            MESSAGE = 'new row for relation "documents" violates check constraint "documents_credit_note_names_its_factura"';
    END IF;
    -- documents_number_matches_sequential: the number's last nine digits are
    -- the sequential.
    IF NOT (right(NEW.number, 9)::integer = NEW.sequential) THEN
        RAISE check_violation USING CONSTRAINT = 'documents_number_matches_sequential', TABLE = TG_TABLE_NAME, SCHEMA = TG_TABLE_SCHEMA,
            MESSAGE = 'new row for relation "documents" violates check constraint "documents_number_matches_sequential"';
    END IF;
    RETURN NEW;
END
$$;

COMMENT ON FUNCTION documents_row_rules() IS
    'The rules between a document''s columns, checked before each insert or update (trigger documents_row_rules): documents_access_key_matches, documents_number_matches_sequential, documents_comprobante_complete, documents_credit_note_names_its_factura. A refused row fails with SQLSTATE 23514 and the rule''s name, as a CHECK constraint would.';

CREATE FUNCTION document_submissions_row_rules() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    -- document_submissions_authorized_has_its_authorization: AUTHORIZED, and
    -- only AUTHORIZED, has SRI's number, date and XML of the authorization.
    IF NOT ((NEW.status = 'AUTHORIZED')
            = (NEW.authorization_number IS NOT NULL AND NEW.authorized_at IS NOT NULL AND NEW.authorization_xml IS NOT NULL)) THEN
        RAISE check_violation USING CONSTRAINT = 'document_submissions_authorized_has_its_authorization', TABLE = TG_TABLE_NAME,
            SCHEMA = TG_TABLE_SCHEMA,
            MESSAGE = 'new row for relation "document_submissions" violates check constraint "document_submissions_authorized_has_its_authorization"';
    END IF;
    -- document_submissions_final_states_wait_for_nothing: a final status has
    -- no next attempt.
    IF NOT (NEW.status NOT IN ('RETURNED', 'AUTHORIZED', 'NOT_AUTHORIZED') OR NEW.next_attempt_at IS NULL) THEN
        RAISE check_violation USING CONSTRAINT = 'document_submissions_final_states_wait_for_nothing', TABLE = TG_TABLE_NAME,
            SCHEMA = TG_TABLE_SCHEMA,
            MESSAGE = 'new row for relation "document_submissions" violates check constraint "document_submissions_final_states_wait_for_nothing"';
    END IF;
    -- document_submissions_lease_complete: a lease has both its holder and
    -- its end, or neither.
    IF NOT ((NEW.leased_by IS NULL) = (NEW.leased_until IS NULL)) THEN
        RAISE check_violation USING CONSTRAINT = 'document_submissions_lease_complete', TABLE = TG_TABLE_NAME, SCHEMA = TG_TABLE_SCHEMA,
            MESSAGE = 'new row for relation "document_submissions" violates check constraint "document_submissions_lease_complete"';
    END IF;
    RETURN NEW;
END
$$;

COMMENT ON FUNCTION document_submissions_row_rules() IS
    'The rules between a submission''s columns, checked before each insert or update (trigger document_submissions_row_rules): document_submissions_lease_complete, document_submissions_final_states_wait_for_nothing, document_submissions_authorized_has_its_authorization. A refused row fails with SQLSTATE 23514 and the rule''s name, as a CHECK constraint would.';

ALTER TABLE documents
    DROP CONSTRAINT documents_access_key_matches,
    DROP CONSTRAINT documents_number_matches_sequential,
    DROP CONSTRAINT documents_comprobante_complete,
    DROP CONSTRAINT documents_credit_note_names_its_factura;
ALTER TABLE document_submissions
    DROP CONSTRAINT document_submissions_lease_complete,
    DROP CONSTRAINT document_submissions_final_states_wait_for_nothing,
    DROP CONSTRAINT document_submissions_authorized_has_its_authorization;

-- After documents_immutable_rows (triggers of a kind fire in name order), so
-- an update of a document is refused as such first.
CREATE TRIGGER documents_row_rules BEFORE INSERT OR UPDATE ON documents
    FOR EACH ROW EXECUTE FUNCTION documents_row_rules();
CREATE TRIGGER document_submissions_row_rules BEFORE INSERT OR UPDATE ON document_submissions
    FOR EACH ROW EXECUTE FUNCTION document_submissions_row_rules();

COMMENT ON TRIGGER documents_row_rules ON documents IS
    'Checks the rules between a document''s columns (see function documents_row_rules).';
COMMENT ON TRIGGER document_submissions_row_rules ON document_submissions IS
    'Checks the rules between a submission''s columns (see function document_submissions_row_rules).';

-- The access key's rule was the only use of this function.
DROP FUNCTION sri_access_key_agrees(text, text, text, integer);
