-- What 0089's index is for. Runs again harmlessly.

COMMENT ON INDEX documents_by_issuer_and_environment IS
    'An issuer''s documents of one environment by id: the pages of GET /v1/documents?environment= (migration 0089).';
