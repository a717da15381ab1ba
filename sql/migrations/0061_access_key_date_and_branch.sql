-- A document's access key also carries its issue date and its branch.
--
-- documents_access_key_matches checked the key's type, environment digit and
-- sequential against the row. Its issue date (digits 1-8, ddmmyyyy) and its
-- establishment and emission point (digits 25-30) were taken on trust, and a
-- document is immutable: a key that disagreed with its row's issue_date or
-- number would stay so for good. Now the rule checks them too, under the
-- same name, for new rows (rows already stored are not read again: the server
-- has always built the key from those columns). The RUC in the key (digits
-- 11-23) is the issuer's and is not checked here: that needs a read of the
-- issuer under the counter's lock, on every document.

CREATE OR REPLACE FUNCTION documents_row_rules() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    -- documents_access_key_matches: the clave de acceso carries the row's
    -- issue date (digits 1-8, ddmmyyyy), type (digits 9-10), environment
    -- (digit 24: 1 sandbox, 2 production), establishment and emission point
    -- (digits 25-30, the number's first two parts) and sequential (digits
    -- 31-39).
    IF NOT (substr(NEW.access_key, 9, 2) = NEW.document_type
            AND substr(NEW.access_key, 24, 1) = CASE NEW.environment WHEN 'sandbox' THEN '1' ELSE '2' END
            AND substr(NEW.access_key, 31, 9)::integer = NEW.sequential
            AND substr(NEW.access_key, 1, 8) = to_char(NEW.issue_date, 'DDMMYYYY')
            AND substr(NEW.access_key, 25, 6) = substr(NEW.number, 1, 3) || substr(NEW.number, 5, 3)) THEN
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
    'The rules between a document''s columns, checked before each insert or update (trigger documents_row_rules): documents_access_key_matches (the key''s date, type, environment, branch and sequential are the row''s; migration 0061 added the date and branch), documents_number_matches_sequential, documents_comprobante_complete, documents_credit_note_names_its_factura. A refused row fails with SQLSTATE 23514 and the rule''s name, as a CHECK constraint would.';
