-- What 0091's index is for. Runs again harmlessly.

COMMENT ON INDEX documents_legacy_by_issuer IS
    'An issuer''s documents without XML (numbered before comprobantes) by id: GET /v1/documents?status=LEGACY (migration 0091).';
