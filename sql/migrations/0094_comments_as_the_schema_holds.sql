-- Comments that said more than the schema holds, or what is no longer so,
-- and comments that were missing:
--
--   * documents.environment and documents.issuer_id: the row rules check the
--     number, the access key and the environment against one another, not
--     against the issuer's row; the server writes them from the issuer.
--   * sequentials: the schema holds that no two documents of a counter share
--     a number and that a counter never moves back; that the numbers have no
--     gaps is how the server takes them (under the counter's row lock, in
--     the transaction that stores the document), not a constraint.
--   * sri_exchanges_by_time: purge_sri_exchanges() (migration 0072) deletes
--     through it.
--   * schema_migrations.checksum: 0063 and 0066 were revised too.
--   * schema_migrations itself: `comprobify migrate` comments the table when
--     it makes it; the plain-psql way of sql/README.md did not. Said here, it
--     is the same whichever applied the migrations.
--   * the three sequences comprobify_app draws from by name (migration 0076),
--     each with why.
--
-- COMMENT replaces: this runs again harmlessly.

COMMENT ON COLUMN documents.environment IS
    'The environment the document was issued in: sandbox (ambiente 1, SRI''s test service) or production (ambiente 2); digit 24 of the access key, which the row rules compare with it. The server writes its issuer''s environment; the schema does not compare it with the issuer''s row.';

COMMENT ON COLUMN documents.issuer_id IS
    'The issuer (branch) that issued the document. The server writes its RUC, establishment and emission point into the number and the access key; the row rules check the number and the key against each other and this row''s columns, not against the issuer''s row.';

COMMENT ON TABLE sequentials IS
    'The counter of each issuer × document type × environment. The server gives a document next_sequential under the row lock of its counter, in the transaction that stores it, so the numbers it gives have no gaps. The schema holds that no two documents of a counter share a number (documents_sequential_unique) and that a counter never moves back (sequentials_never_move_back); a counter moved forward by hand leaves a gap.';

COMMENT ON INDEX sri_exchanges_by_time IS
    'Exchanges of every tenant by time: for DBAs looking at the last minutes across SRI (sql/README.md), and for purge_sri_exchanges(), which deletes the oldest past SRI_EXCHANGE_RETENTION_DAYS through it.';

COMMENT ON COLUMN schema_migrations.checksum IS
    'SHA-256 of the file''s text, lowercase hex (as sha256sum prints it): comprobify migrate refuses to run when an applied file has changed since (but for the revisions of 0001, 0023, 0063 and 0066, sql/README.md).';

COMMENT ON TABLE schema_migrations IS
    'The migrations ledger: each file of sql/migrations applied, once, with the SHA-256 of its text.';

COMMENT ON SEQUENCE tenants_id_seq IS
    'The identity of tenants.id. comprobify_app may draw from it (USAGE, migration 0076): a sign-up takes the new tenant''s id first, to make it the transaction''s tenant before the row exists.';

COMMENT ON SEQUENCE webhook_endpoints_id_seq IS
    'The identity of webhook_endpoints.id. comprobify_app may draw from it (USAGE, migration 0076): an endpoint''s id is taken before its insert, with the count that bounds them, so that its sealed secret can name it.';

COMMENT ON SEQUENCE documents_id_seq IS
    'The identity of documents.id. comprobify_app may read it (USAGE, migration 0076): currval gives the idempotency key the id of the document just inserted.';
