-- comprobify:no-transaction
-- Credit notes whose factura Comprobify did not know when they were issued
-- (modified_document_id NULL: "taken as given"), by the number they name:
-- once Comprobify issues a factura with that number (the issuer's counter
-- reaches it), such notes count toward what has been credited on it, so
-- that it cannot be credited past its total. Built concurrently: issuing
-- documents goes on meanwhile. Facturas are not in it (a partial index).
CREATE INDEX CONCURRENTLY IF NOT EXISTS documents_credit_notes_by_number
    ON documents (tenant_id, issuer_id, environment, modified_number)
    WHERE modified_document_id IS NULL AND modified_number IS NOT NULL;
