-- pgbench twin of POST /v1/documents (a factura, no Idempotency-Key), as
-- comprobify_app: the hot-counter transaction of the performance goal's P
-- (UPDATE of the counter RETURNING the number; INSERT; COMMIT), with the
-- server's statements (DocumentsController.issue, DocumentsStore.takeNumber
-- and .store, CertificatesStore.signingMaterial) in three round trips, as the
-- server sends them until a counter has agreed with eight of its guesses in a
-- row, and whenever it foresees no number (a process's first document on a
-- counter, or one issuing again after a missed guess):
--   1. BEGIN + authenticate (locking the key) + the issuer + its certificate's
--      fingerprint and validity, pipelined (the certificate and its sealed key
--      are read once per process, not per document)
--   2. the hot counter: the UPDATE that takes the sequential, RETURNING it (its
--      row lock is held from here to COMMIT; the counter exists, as it does for
--      every document but an issuer's first of its type: scripts/bench creates
--      it as promotion does, and the server's upsert for a first document has
--      no twin here)
--   3. the document and its submission row, inserted by one statement, + COMMIT,
--      pipelined
-- What the server does between 2 and 3 when the counter gave another number
-- than it foresaw, or it foresaw none — build the XML, check it against the
-- XSD, sign it (RSA-2048) — has no twin here. In the steady state of one
-- issuer's stream the server signs before the counter, with the number it
-- foresees, and sends 2 and 3 as one statement (bench/documents-one-trip.sql).
-- The server's parameters: the access key's 30 leading digits (date, type, RUC,
-- environment, establishment, emission point), its 9 trailing digits (a random
-- 8-digit numeric code and emission type 1) and the number's prefix. The server
-- sends the key complete, its check digit computed in Swift; here pgbench
-- computes it (SRI's modulo 11, weights 2 to 7 from the right) from the
-- weighted sum of the 30 leading digits (keyheadsum, at positions 18 to 47 from
-- the right) and the digits of the sequential and of the trailing 9. The XML is
-- a stand-in of the size of a signed factura (6 KB).
--   -D digest=\x<sha256 of the token> -D issuer=<id> -D doctype=01 -D env=sandbox
--   -D keyhead=<30 digits> -D keyheadsum=<their weighted sum>
--   -D numberhead=052-001- -D issuedate=YYYY-MM-DD
\set keytail random(10000000, 99999999) * 10 + 1
\startpipeline
BEGIN ISOLATION LEVEL READ COMMITTED;
SELECT key_id, tenant_id, environment, tenant_status, tenant_environment FROM authenticate(:digest, true);
SELECT id, ruc, establishment, emission_point, sandbox FROM issuers WHERE id = :issuer;
SELECT sha256, not_before, not_after FROM issuer_certificates WHERE issuer_id = :issuer;
\endpipeline
UPDATE sequentials SET next_sequential = next_sequential + 1
 WHERE tenant_id = current_tenant_id() AND issuer_id = :issuer AND document_type = :doctype AND environment = :env
RETURNING next_sequential - 1 AS sequential
\gset
\set keysum :keyheadsum \
    + (:sequential % 10) * 5 + (:sequential / 10 % 10) * 6 + (:sequential / 100 % 10) * 7 \
    + (:sequential / 1000 % 10) * 2 + (:sequential / 10000 % 10) * 3 + (:sequential / 100000 % 10) * 4 \
    + (:sequential / 1000000 % 10) * 5 + (:sequential / 10000000 % 10) * 6 + (:sequential / 100000000 % 10) * 7 \
    + (:keytail % 10) * 2 + (:keytail / 10 % 10) * 3 + (:keytail / 100 % 10) * 4 \
    + (:keytail / 1000 % 10) * 5 + (:keytail / 10000 % 10) * 6 + (:keytail / 100000 % 10) * 7 \
    + (:keytail / 1000000 % 10) * 2 + (:keytail / 10000000 % 10) * 3 + (:keytail / 100000000 % 10) * 4
\set checkdigit case when 11 - :keysum % 11 = 11 then 0 when 11 - :keysum % 11 = 10 then 1 else 11 - :keysum % 11 end
\startpipeline
WITH d AS (
    INSERT INTO documents (tenant_id, issuer_id, document_type, environment, sequential, number, access_key, issue_date,
                           metadata, body, xml, total, buyer_id_type, buyer_id, modified_number, modified_document_id)
    SELECT current_tenant_id(), :issuer, :doctype, :env, :sequential, :numberhead || lpad(:sequential::text, 9, '0'),
           k.digits || :checkdigit, :issuedate::date, '{}'::json,
           '{"buyer": {"idType": "07", "id": "9999999999999", "name": "CONSUMIDOR FINAL", "address": null, "email": null}, "items": [{"code": "A-1", "auxCode": null, "description": "Widget", "quantity": "2", "unitPrice": "10.75", "discount": "0.50", "subtotal": "21.00", "taxes": [{"code": "2", "rateCode": "4", "rate": "15.00", "base": "21.00", "value": "3.15"}], "details": []}], "totals": {"subtotal": "21.00", "discount": "0.50", "taxes": [{"code": "2", "rateCode": "4", "rate": "15.00", "base": "21.00", "value": "3.15"}], "tip": "0.00", "total": "24.15"}, "payments": [{"method": "01", "total": "24.15", "term": null, "termUnit": null}], "additionalInfo": []}'::json,
           convert_to(repeat('<x/>', 1500), 'UTF8'), 24.15::numeric, '07', '9999999999999', NULL, NULL
      FROM (SELECT :keyhead || lpad(:sequential::text, 9, '0') || :keytail AS digits) AS k
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
