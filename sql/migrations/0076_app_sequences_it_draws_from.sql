-- comprobify_app keeps USAGE only on the three sequences it calls by name:
-- tenants_id_seq (a sign-up draws the new tenant's id first, to set it as
-- the transaction's tenant before the row exists), webhook_endpoints_id_seq
-- (the endpoint's id is drawn with the count that bounds them, before the
-- insert, so that its sealed secret can name it) and documents_id_seq
-- (currval, for the idempotency key of the document just inserted).
--
-- Migration 0002 granted USAGE on every sequence of the schema, and 0006 and
-- 0007 on their new ones. Every other table takes its id from an identity
-- column, whose default PostgreSQL draws without checking the sequence's
-- privileges: the grant let the app do nothing it needed, only burn ids of
-- tables it never names a sequence of.
--
-- REVOKE of a privilege not held does nothing: this runs again harmlessly.

REVOKE USAGE ON SEQUENCE
    api_keys_id_seq, audit_events_id_seq, email_outbox_id_seq, email_verifications_id_seq, issuers_id_seq,
    signup_attempts_id_seq, sri_exchanges_id_seq, webhook_deliveries_id_seq, webhook_delivery_attempts_id_seq
    FROM comprobify_app;
