-- An exchange's status_before and status_after hold a submission status, as
-- document_submissions.status does: SIGNED, RECEIVED, RETURNED, AUTHORIZED or
-- NOT_AUTHORIZED. 0006 left them plain text, so a mistyped status written by
-- hand (or by a server with a bug) would have been kept.
--
-- How, without stopping the senders: the constraints are added NOT VALID,
-- which checks only rows written from now on and holds the table's lock for
-- a moment, not for a scan. 0034, in its own transaction, validates the rows
-- already there under a lock that lets the senders keep inserting.
--
-- Table CHECK constraints, not the submission_status domain: changing a
-- column's type to a domain checks every row under a lock that stops the
-- inserts. A table's CHECK constraints are planned again in every statement
-- that writes it (0012); an exchange is written once per request to SRI, whose
-- answer takes far longer.

ALTER TABLE sri_exchanges
    ADD CONSTRAINT sri_exchanges_status_before_values
        CHECK (status_before IN ('SIGNED', 'RECEIVED', 'RETURNED', 'AUTHORIZED', 'NOT_AUTHORIZED')) NOT VALID,
    ADD CONSTRAINT sri_exchanges_status_after_values
        CHECK (status_after IN ('SIGNED', 'RECEIVED', 'RETURNED', 'AUTHORIZED', 'NOT_AUTHORIZED')) NOT VALID;

COMMENT ON CONSTRAINT sri_exchanges_status_before_values ON sri_exchanges IS 'A submission status, as document_submissions.status (the submission_status domain).';
COMMENT ON CONSTRAINT sri_exchanges_status_after_values ON sri_exchanges IS 'A submission status, as document_submissions.status (the submission_status domain).';
