-- Documents become comprobantes electrónicos: the signed XML that is sent to
-- SRI, the computed document the API shows, and the client's own metadata.
-- Documents stay immutable; what changes as SRI decides lives in
-- document_submissions, one row per signed document.

-- The client's object, kept as the exact text it sent (json, not jsonb: key
-- order, duplicate-free members and number literals come back as written).
-- Rows issued before this migration keep their content as their metadata.
ALTER TABLE documents RENAME COLUMN content TO metadata;
ALTER TABLE documents DROP CONSTRAINT documents_content_is_object;
ALTER TABLE documents ALTER COLUMN metadata DROP DEFAULT;
ALTER TABLE documents ALTER COLUMN metadata TYPE json USING metadata::json;
ALTER TABLE documents ALTER COLUMN metadata SET DEFAULT '{}';
ALTER TABLE documents ADD CONSTRAINT documents_metadata_is_object CHECK (json_typeof(metadata) = 'object');
ALTER TABLE documents ADD CONSTRAINT documents_metadata_size CHECK (octet_length(metadata::text) <= 16384)
    NOT VALID;  -- rows from before keep whatever size they had

ALTER TABLE documents
    ADD COLUMN body json,
    ADD COLUMN xml bytea,
    ADD COLUMN total numeric(14, 2)
        CONSTRAINT documents_total_not_negative CHECK (total >= 0),
    ADD COLUMN buyer_id_type text,
    ADD COLUMN buyer_id text,
    ADD COLUMN modified_number text
        CONSTRAINT documents_modified_number_format CHECK (modified_number ~ '^[0-9]{3}-[0-9]{3}-[0-9]{9}$'),
    ADD COLUMN modified_document_id bigint,
    ADD CONSTRAINT documents_modified_document_fk FOREIGN KEY (tenant_id, modified_document_id) REFERENCES documents (tenant_id, id),
    ADD CONSTRAINT documents_comprobante_complete CHECK (
        (xml IS NULL AND body IS NULL AND total IS NULL)
        OR (xml IS NOT NULL AND body IS NOT NULL AND total IS NOT NULL AND buyer_id_type IS NOT NULL AND buyer_id IS NOT NULL)),
    ADD CONSTRAINT documents_credit_note_names_its_factura CHECK ((document_type = '04') = (modified_number IS NOT NULL) OR xml IS NULL);

COMMENT ON COLUMN documents.metadata IS 'The client''s own JSON object (at most 50 keys, 16 KiB), stored as the exact text it sent and never sent to SRI. Called content before the comprobantes.';
COMMENT ON COLUMN documents.body IS 'The computed document as the API shows it: buyer, items with subtotals and taxes, totals, payments, additional info and, for a credit note, the modified document and the reason. Money as decimal strings.';
COMMENT ON COLUMN documents.xml IS 'The signed comprobante (XAdES-BES), the exact bytes sent to SRI and served by GET .../xml. NULL only for documents numbered before comprobantes existed.';
COMMENT ON COLUMN documents.total IS 'importeTotal (factura) or valorModificacion (credit note).';
COMMENT ON COLUMN documents.buyer_id_type IS 'The buyer''s identification type (04 RUC, 05 cédula, 06 pasaporte, 07 consumidor final, 08 exterior); a credit note must name the same buyer as its factura.';
COMMENT ON COLUMN documents.modified_number IS 'For a credit note: the number (NNN-NNN-NNNNNNNNN) of the factura it modifies.';
COMMENT ON COLUMN documents.modified_document_id IS 'For a credit note whose factura was issued here: that factura. NULL for one issued elsewhere.';

CREATE INDEX documents_by_number ON documents (tenant_id, issuer_id, document_type, environment, number);
CREATE INDEX documents_credit_notes_by_factura ON documents (tenant_id, modified_document_id) WHERE modified_document_id IS NOT NULL;

-- ---------------------------------------------------------------------------
-- Where each signed document stands with SRI
-- ---------------------------------------------------------------------------

CREATE TABLE document_submissions (
    tenant_id            bigint NOT NULL,
    document_id          bigint NOT NULL,
    status               text NOT NULL DEFAULT 'SIGNED'
        CONSTRAINT document_submissions_status_values CHECK (status IN ('SIGNED', 'RECEIVED', 'RETURNED', 'AUTHORIZED', 'NOT_AUTHORIZED')),
    attempts             integer NOT NULL DEFAULT 0
        CONSTRAINT document_submissions_attempts_not_negative CHECK (attempts >= 0),
    last_error           text,
    next_attempt_at      timestamptz DEFAULT now(),
    messages             json NOT NULL DEFAULT '[]',
    authorization_number text,
    authorized_at        timestamptz,
    authorization_xml    bytea,
    updated_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, document_id),
    FOREIGN KEY (tenant_id, document_id) REFERENCES documents (tenant_id, id),
    CONSTRAINT document_submissions_final_states_wait_for_nothing CHECK (
        status NOT IN ('RETURNED', 'AUTHORIZED', 'NOT_AUTHORIZED') OR next_attempt_at IS NULL),
    CONSTRAINT document_submissions_authorized_has_its_authorization CHECK (
        (status = 'AUTHORIZED') = (authorization_number IS NOT NULL AND authorized_at IS NOT NULL AND authorization_xml IS NOT NULL))
);

COMMENT ON TABLE document_submissions IS 'One row per signed document: where it stands with SRI (SIGNED, RECEIVED, RETURNED, AUTHORIZED, NOT_AUTHORIZED), written in the same transaction as the document.';
COMMENT ON COLUMN document_submissions.attempts IS 'Every exchange with SRI for this document so far, failed ones included.';
COMMENT ON COLUMN document_submissions.last_error IS 'The last failed exchange, in one line (never the XML); NULL after a successful one.';
COMMENT ON COLUMN document_submissions.next_attempt_at IS 'When the next exchange is due; NULL once the status is final.';
COMMENT ON COLUMN document_submissions.messages IS 'SRI''s messages for the document: [{identifier, message, additionalInfo, type}].';
COMMENT ON COLUMN document_submissions.authorization_xml IS 'SRI''s <autorizacion> element as received, once AUTHORIZED.';

CREATE INDEX document_submissions_due ON document_submissions (next_attempt_at) WHERE next_attempt_at IS NOT NULL;
CREATE INDEX document_submissions_by_status ON document_submissions (tenant_id, status);

ALTER TABLE document_submissions ENABLE ROW LEVEL SECURITY;
ALTER TABLE document_submissions FORCE ROW LEVEL SECURITY;
CREATE POLICY document_submissions_tenant_isolation ON document_submissions
    USING (tenant_id = (SELECT current_tenant_id()))
    WITH CHECK (tenant_id = (SELECT current_tenant_id()));

GRANT SELECT, INSERT ON document_submissions TO comprobify_app;
GRANT UPDATE (status, attempts, last_error, next_attempt_at, messages, authorization_number, authorized_at,
              authorization_xml, updated_at) ON document_submissions TO comprobify_app;
