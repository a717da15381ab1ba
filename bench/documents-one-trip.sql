-- pgbench twin of POST /v1/documents (a factura, no Idempotency-Key) as the
-- server sends it when the factura was signed ahead with the number it
-- foresees (NumberForecast, the steady state of one issuer's stream), as
-- comprobify_app, in two round trips:
--   1. BEGIN + authenticate (locking the key) + the issuer + its certificate's
--      fingerprint and validity, pipelined
--   2. one statement that takes the number from the hot counter and inserts
--      the document and its submission row (DocumentsStore.store with
--      takingNumber), + COMMIT, pipelined: the counter's row is locked only
--      while PostgreSQL runs them
-- The server sends the access key, the number and the XML made for the number
-- it foresaw, and the statement keeps the document only if the counter gives
-- that number. pgbench cannot foresee it, so here the statement makes the key
-- and the number from what the counter gives (the check digit from the same
-- weighted sums as bench/documents.sql): a little more of PostgreSQL's work
-- than the server's statement, and the same rows.
-- Parameters as bench/documents.sql's.
\set keytail random(10000000, 99999999) * 10 + 1
\set tailsum (:keytail % 10) * 2 + (:keytail / 10 % 10) * 3 + (:keytail / 100 % 10) * 4 \
    + (:keytail / 1000 % 10) * 5 + (:keytail / 10000 % 10) * 6 + (:keytail / 100000 % 10) * 7 \
    + (:keytail / 1000000 % 10) * 2 + (:keytail / 10000000 % 10) * 3 + (:keytail / 100000000 % 10) * 4
\startpipeline
BEGIN ISOLATION LEVEL READ COMMITTED;
SELECT key_id, tenant_id, environment, tenant_status, tenant_environment FROM authenticate(:digest, true);
SELECT id, ruc, establishment, emission_point, sandbox FROM issuers WHERE id = :issuer;
SELECT sha256, not_before, not_after FROM issuer_certificates WHERE issuer_id = :issuer;
\endpipeline
\startpipeline
WITH n AS (
    UPDATE sequentials SET next_sequential = next_sequential + 1
     WHERE tenant_id = current_tenant_id() AND issuer_id = :issuer AND document_type = :doctype AND environment = :env
    RETURNING next_sequential - 1 AS sequential
), k AS (
    SELECT sequential, :keyhead || lpad(sequential::text, 9, '0') || :keytail AS digits,
           :keyheadsum::int + :tailsum::int
           + (sequential % 10) * 5 + (sequential / 10 % 10) * 6 + (sequential / 100 % 10) * 7
           + (sequential / 1000 % 10) * 2 + (sequential / 10000 % 10) * 3 + (sequential / 100000 % 10) * 4
           + (sequential / 1000000 % 10) * 5 + (sequential / 10000000 % 10) * 6 + (sequential / 100000000 % 10) * 7 AS keysum
      FROM n
), d AS (
    INSERT INTO documents (tenant_id, issuer_id, document_type, environment, sequential, number, access_key, issue_date,
                           metadata, body, xml, total, buyer_id_type, buyer_id, modified_number, modified_document_id)
    SELECT current_tenant_id(), :issuer, :doctype, :env, k.sequential, :numberhead || lpad(k.sequential::text, 9, '0'),
           k.digits || CASE 11 - k.keysum % 11 WHEN 11 THEN 0 WHEN 10 THEN 1 ELSE 11 - k.keysum % 11 END, :issuedate::date, '{}'::json,
           '{"buyer": {"idType": "07", "id": "9999999999999", "name": "CONSUMIDOR FINAL", "address": null, "email": null}, "items": [{"code": "A-1", "auxCode": null, "description": "Widget", "quantity": "2", "unitPrice": "10.75", "discount": "0.50", "subtotal": "21.00", "taxes": [{"code": "2", "rateCode": "4", "rate": "15.00", "base": "21.00", "value": "3.15"}], "details": []}], "totals": {"subtotal": "21.00", "discount": "0.50", "taxes": [{"code": "2", "rateCode": "4", "rate": "15.00", "base": "21.00", "value": "3.15"}], "tip": "0.00", "total": "24.15"}, "payments": [{"method": "01", "total": "24.15", "term": null, "termUnit": null}], "additionalInfo": []}'::json,
           convert_to(repeat('<x/>', 1500), 'UTF8'), 24.15::numeric, '07', '9999999999999', NULL, NULL
      FROM k
    RETURNING tenant_id, id, issuer_id, document_type, environment, sequential, number, access_key, issue_date, metadata,
              created_at
), s AS (
    INSERT INTO document_submissions (tenant_id, document_id, environment) SELECT tenant_id, id, environment FROM d
    RETURNING status, attempts, last_error, next_attempt_at, messages, authorization_number, authorized_at
)
SELECT d.id, d.issuer_id, d.document_type, d.environment, d.sequential, d.number, d.access_key, d.issue_date::text,
       d.metadata::text, d.created_at, NULL::text, s.status, s.attempts, s.last_error, s.next_attempt_at, s.messages::text,
       s.authorization_number, s.authorized_at
  FROM d, s;
COMMIT;
\endpipeline
