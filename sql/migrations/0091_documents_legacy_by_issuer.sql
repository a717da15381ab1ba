-- comprobify:no-transaction
-- An issuer's documents numbered before comprobantes existed (no XML:
-- documents_comprobante_complete), in order: GET /v1/documents?status=LEGACY
-- reads them alone, where the status filter looked up every document of the
-- issuer (1.5 s on 1.5 million). Holds no row a comprobante's insert adds.
-- Built concurrently. 0092 comments it.
CREATE INDEX CONCURRENTLY IF NOT EXISTS documents_legacy_by_issuer
    ON documents (tenant_id, issuer_id, id)
    WHERE xml IS NULL;
