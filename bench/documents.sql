-- pgbench twin of POST /v1/documents, as comprobify_app: the server's
-- statements (DocumentsController.issue, DocumentsController.issueSQL) in its
-- two round trips.
--   1. BEGIN + authenticate (locking the key) + the issuer, pipelined
--   2. the one statement that takes the sequential from the counter, completes
--      the access key with sri_check_digit() and inserts the document, + COMMIT,
--      pipelined
-- The server's parameters: the access key's 30 leading digits (date, type, RUC,
-- environment, establishment, emission point), its 9 trailing digits (a random
-- 8-digit numeric code and emission type 1) and the number's prefix.
--   -D digest=\x<sha256 of the token> -D issuer=<id> -D doctype=01 -D env=sandbox
--   -D keyhead=<30 digits> -D numberhead=052-001- -D issuedate=YYYY-MM-DD
\set keytail random(10000000, 99999999) * 10 + 1
\startpipeline
BEGIN ISOLATION LEVEL READ COMMITTED;
SELECT key_id, tenant_id, environment, tenant_status, tenant_environment FROM authenticate(:digest, true);
SELECT id, ruc, establishment, emission_point, sandbox FROM issuers WHERE id = :issuer;
\endpipeline
\startpipeline
WITH counter AS (
    INSERT INTO sequentials AS s (tenant_id, issuer_id, document_type, environment, next_sequential)
    VALUES (current_tenant_id(), :issuer, :doctype, :env, 2)
    ON CONFLICT (tenant_id, issuer_id, document_type, environment)
    DO UPDATE SET next_sequential = s.next_sequential + 1
    RETURNING next_sequential - 1 AS sequential
), keyed AS (
    SELECT sequential, :keyhead || lpad(sequential::text, 9, '0') || :keytail AS digits FROM counter
)
INSERT INTO documents (tenant_id, issuer_id, document_type, environment, sequential, number, access_key, issue_date, content)
SELECT current_tenant_id(), :issuer, :doctype, :env, sequential, :numberhead || lpad(sequential::text, 9, '0'),
       digits || sri_check_digit(digits), :issuedate::date, '{}'::jsonb
  FROM keyed
RETURNING id, issuer_id, document_type, environment, sequential, number, access_key, issue_date::text, content::text, created_at;
COMMIT;
\endpipeline
