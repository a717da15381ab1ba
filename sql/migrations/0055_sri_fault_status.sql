-- A SOAP fault's exchange keeps the HTTP status it came with.
--
-- SRI sends its server errors as HTTP 500 with a soap:Fault body; a fault may
-- also come with 200. The worker recorded every fault with no status, so a
-- DBA or support could not tell SRI's errors from faults sent as answers.
-- From now on sri_exchanges.http_status holds the fault's status too. Only
-- the column's comment changes here; rows recorded before keep NULL.

COMMENT ON COLUMN sri_exchanges.http_status IS 'The HTTP status of SRI''s answer when one arrived and is known: 200 for answers, the status a SOAP fault came with (500 for SRI''s server errors), the status of any other answer that is not SRI''s. NULL for connection failures and timeouts, and for SOAP faults recorded before migration 0055.';
