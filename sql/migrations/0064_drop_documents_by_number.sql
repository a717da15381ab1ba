-- comprobify:no-transaction
-- documents_by_number (tenant, issuer, type, environment, number) served one
-- lookup: a credit note finding the factura it names. A document's number
-- ends in its sequential (documents_number_matches_sequential), so that
-- lookup now asks for the sequential as well and reads
-- documents_sequential_unique, which every document already has. Each issued
-- document wrote one index entry more than it needed. Dropped concurrently:
-- issuing goes on meanwhile.
DROP INDEX CONCURRENTLY IF EXISTS documents_by_number;
