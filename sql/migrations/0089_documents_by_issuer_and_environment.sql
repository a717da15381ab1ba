-- comprobify:no-transaction
-- An issuer's documents of one environment, in the order they were made: GET
-- /v1/documents?environment= pages through them (DocumentsStore.page). A
-- promoted issuer's sandbox documents all come before its production ones, so
-- a filter on documents_by_issuer walked every document of the other
-- environment before it could end a page. Built concurrently: issuing goes on
-- meanwhile. 0090 comments it.
CREATE INDEX CONCURRENTLY IF NOT EXISTS documents_by_issuer_and_environment
    ON documents (tenant_id, issuer_id, environment, id);
