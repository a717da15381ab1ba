#!/usr/bin/env python3
"""The statements of N signed facturas, for PostgreSQL in single-user mode.

scripts/bench counts the instructions PostgreSQL runs per issued factura by
feeding this to `postgres --single -j` under qemu-user (bench/instructions.c):
the count does not depend on what else the machine does, so a change to the
schema or to the server's SQL shows in it when rates and CPU times cannot
tell it from the noise.

Each transaction is the server's for POST /v1/documents when the factura was
signed ahead with the number the server foresaw (NumberForecast; the steady
state of one issuer's stream, bench/documents-one-trip.sql's statements in the
server's own form): BEGIN, authenticate (locking the key), the issuer and its
certificate's fingerprint (Database.transaction's prologue with
ResolvedIssuer.lookup and CertificatesStore.signingMaterial), one statement
that takes the number from the counter and inserts the document with its
submission row, keeping the document only if the counter gives the foreseen
number (DocumentsStore.store with takingNumber; the counter exists, as for
every document but an issuer's first of its type), COMMIT. Here the number
foreseen is always the one the counter gives. The statements are prepared once and their
parameters' types inferred, as the server's are; the access key is complete,
as the server sends it, with its check digit computed here. The XML is a
signed factura the server issued, read by PostgreSQL from XML_FILE (a path
inside the data directory) for each document, so that it arrives as a fresh
value and is compressed as the server's would be (a value copied from another
row would keep the compression it was stored with). When those statements
change, this file must follow.

    single_user.py N DIGEST_HEX ISSUER KEY_HEAD NUMBER_HEAD ISSUE_DATE FIRST_SEQUENTIAL XML_FILE
    single_user.py --head-sum KEY_HEAD   (the weighted sum bench/documents.sql needs)
"""

import random
import sys


def weighted_sum(digits: str, position: int = 0) -> int:
    """The sum under SRI's modulo 11 of digits whose last one stands at
    `position` from the right of the key: weights 2 to 7 from the right,
    repeating. scripts/bench passes the key head's (position 18) to
    bench/documents.sql, which adds the rest of the key's itself."""
    return sum(int(d) * (2 + (position + i) % 6) for i, d in enumerate(reversed(digits)))


def check_digit(digits: str) -> str:
    """SRI's modulo 11 check digit: 11 - (sum mod 11), where 11 gives 0 and 10 gives 1."""
    total = 11 - weighted_sum(digits) % 11
    return {11: "0", 10: "1"}.get(total, str(total))


def statement(text: str) -> None:
    # -j ends a statement at a semicolon followed by an empty line.
    print(text.strip() + ";\n")


def main() -> None:
    n, digest, issuer, key_head, number_head, issue_date, first, xml_file = sys.argv[1:9]
    n, issuer, first = int(n), int(issuer), int(first)
    # The copy is thrown away: the app role may read the one file it is given.
    statement("GRANT EXECUTE ON FUNCTION pg_read_binary_file(text) TO comprobify_app")
    statement("SET ROLE comprobify_app")
    # What a session of the role gets at login (migration 0029); SET ROLE alone does not apply it.
    statement("SET search_path = pg_catalog, public, pg_temp")
    statement(
        "PREPARE auth AS SELECT key_id, tenant_id, environment, tenant_status, tenant_environment"
        " FROM authenticate($1, $2)"
    )
    statement(
        "PREPARE issuer AS SELECT id, ruc, establishment, emission_point, sandbox, legal_name, trade_name, address,"
        " head_office_address, accounting_required, special_taxpayer, withholding_agent, rimpe"
        " FROM issuers WHERE id = $1"
    )
    statement("PREPARE certificate AS SELECT sha256, not_before, not_after FROM issuer_certificates WHERE issuer_id = $1")
    statement(
        """
PREPARE document AS WITH n AS (
    UPDATE sequentials SET next_sequential = next_sequential + 1
     WHERE tenant_id = current_tenant_id() AND issuer_id = $1 AND document_type = $2 AND environment = $3
    RETURNING next_sequential - 1 AS sequential
), d AS (
    INSERT INTO documents (tenant_id, issuer_id, document_type, environment, sequential, number, access_key, issue_date,
                           metadata, body, xml, total, buyer_id_type, buyer_id, modified_number, modified_document_id)
    VALUES (current_tenant_id(), $1, $2, $3, (SELECT sequential FROM n WHERE sequential = $4), $5, $6, $7::date,
            $8::json, $9::json, $10, $11::numeric, $12, $13, $14, $15)
    RETURNING tenant_id, id, issuer_id, document_type, environment, sequential, number, access_key, issue_date, metadata,
              created_at
), s AS (
    INSERT INTO document_submissions (tenant_id, document_id, environment) SELECT tenant_id, id, environment FROM d
    RETURNING status, attempts, last_error, next_attempt_at, messages, authorization_number, authorized_at
)
SELECT d.id, d.issuer_id, d.document_type, d.environment, d.sequential, d.number, d.access_key, d.issue_date::text,
       d.metadata::text, d.created_at, NULL::text, s.status, s.attempts, s.last_error, s.next_attempt_at,
       s.messages::text, s.authorization_number, s.authorized_at
  FROM d, s"""
    )
    body = (
        '{"buyer": {"idType": "07", "id": "9999999999999", "name": "CONSUMIDOR FINAL", "address": null, "email": null},'
        ' "items": [{"code": "A-1", "auxCode": null, "description": "Widget", "quantity": "2", "unitPrice": "10.75",'
        ' "discount": "0.50", "subtotal": "21.00", "taxes": [{"code": "2", "rateCode": "4", "rate": "15.00",'
        ' "base": "21.00", "value": "3.15"}], "details": []}], "totals": {"subtotal": "21.00", "discount": "0.50",'
        ' "taxes": [{"code": "2", "rateCode": "4", "rate": "15.00", "base": "21.00", "value": "3.15"}],'
        ' "tip": "0.00", "total": "24.15"}, "payments": [{"method": "01", "total": "24.15", "term": null,'
        ' "termUnit": null}], "additionalInfo": []}'
    )
    codes = random.Random(17)
    for sequential in range(first, first + n):
        digits = f"{key_head}{sequential:09d}{codes.randint(10000000, 99999999)}1"
        access_key = digits + check_digit(digits)
        statement("BEGIN ISOLATION LEVEL READ COMMITTED")
        statement(f"EXECUTE auth('\\x{digest}', true)")
        statement(f"EXECUTE issuer({issuer})")
        statement(f"EXECUTE certificate({issuer})")
        statement(
            f"EXECUTE document({issuer}, '01', 'sandbox', {sequential}, '{number_head}{sequential:09d}',"
            f" '{access_key}', '{issue_date}', '{{}}', '{body}', pg_read_binary_file('{xml_file}'),"
            " '24.15', '07', '9999999999999', NULL, NULL)"
        )
        statement("COMMIT")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--head-sum"]:
        print(weighted_sum(sys.argv[2], 18))
    else:
        main()
