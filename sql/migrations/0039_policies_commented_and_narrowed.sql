-- Every policy says what it is for, and comprobify_auth's write powers are
-- exactly the ones its policies name.
--
-- 1. Restrictive twins. PostgreSQL ORs the permissive policies that apply to a
--    command. comprobify_auth is held, like every role, by the
--    <table>_tenant_isolation policies (FOR ALL TO PUBLIC), so once a
--    transaction has set app.tenant_id, its own narrow write policies were
--    widened to everything of that tenant it holds a column grant for:
--    api_keys_authenticator_lock (WITH CHECK (false): lock, change nothing)
--    let it set revoked_at on that tenant's keys; idempotency_keys_purge_delete
--    (expired keys only) let it delete that tenant's live keys;
--    email_outbox_relay_sent (unsent to sent only) let it clear sent_at again.
--    No definer function does any of that, but "change none" was a promise of
--    sql/README.md that the catalog did not keep. A restrictive policy is
--    ANDed with the permissive ones, so each twin below holds the command to
--    its permissive policy's rule whatever tenant is set. Restrictive policies
--    bind the members of comprobify_auth too: the migrating owner, when it is
--    not a superuser, may then only lock keys, delete expired idempotency keys
--    and mark unsent messages sent (under FORCE ROW LEVEL SECURITY it sees no
--    tenant row without setting a tenant anyway).
--
-- 2. Comments on every policy, for \dp+ and pg_description: the 16
--    <table>_tenant_isolation policies, comprobify_auth's 11 and the 3 twins.
--    sql/tests/schema_guards.sql now requires a comment on every policy.

CREATE POLICY api_keys_authenticator_changes_none ON api_keys
    AS RESTRICTIVE FOR UPDATE TO comprobify_auth
    USING (true) WITH CHECK (false);
CREATE POLICY idempotency_keys_purge_expired_only ON idempotency_keys
    AS RESTRICTIVE FOR DELETE TO comprobify_auth
    USING (expires_at < now());
CREATE POLICY email_outbox_relay_marks_sent_only ON email_outbox
    AS RESTRICTIVE FOR UPDATE TO comprobify_auth
    USING (sent_at IS NULL) WITH CHECK (sent_at IS NOT NULL);

COMMENT ON POLICY api_keys_authenticator_changes_none ON api_keys IS
    'Restrictive twin of api_keys_authenticator_lock: comprobify_auth (and its members) may lock a key row but never change one, whatever tenant the transaction has set (migration 0039).';
COMMENT ON POLICY idempotency_keys_purge_expired_only ON idempotency_keys IS
    'Restrictive twin of idempotency_keys_purge_delete: comprobify_auth (and its members) deletes only expired idempotency keys, whatever tenant the transaction has set (migration 0039).';
COMMENT ON POLICY email_outbox_relay_marks_sent_only ON email_outbox IS
    'Restrictive twin of email_outbox_relay_sent: comprobify_auth (and its members) only marks unsent messages sent, whatever tenant the transaction has set (migration 0039).';

-- Tenant isolation: one policy per tenant table, FOR ALL TO PUBLIC.
COMMENT ON POLICY tenants_tenant_isolation ON tenants IS
    'Tenant isolation: a session sees and writes only the tenant row whose id is current_tenant_id() (app.tenant_id, set per transaction); with no tenant set, no row (fails closed).';
COMMENT ON POLICY api_keys_tenant_isolation ON api_keys IS
    'Tenant isolation: only the rows of current_tenant_id() (app.tenant_id, set per transaction) are seen or written; with no tenant set, none (fails closed).';
COMMENT ON POLICY email_verifications_tenant_isolation ON email_verifications IS
    'Tenant isolation: only the rows of current_tenant_id() (app.tenant_id, set per transaction) are seen or written; with no tenant set, none (fails closed).';
COMMENT ON POLICY email_outbox_tenant_isolation ON email_outbox IS
    'Tenant isolation: only the rows of current_tenant_id() (app.tenant_id, set per transaction) are seen or written; with no tenant set, none (fails closed). comprobify_app may only insert here (migration 0032).';
COMMENT ON POLICY issuers_tenant_isolation ON issuers IS
    'Tenant isolation: only the rows of current_tenant_id() (app.tenant_id, set per transaction) are seen or written; with no tenant set, none (fails closed).';
COMMENT ON POLICY sequentials_tenant_isolation ON sequentials IS
    'Tenant isolation: only the rows of current_tenant_id() (app.tenant_id, set per transaction) are seen or written; with no tenant set, none (fails closed).';
COMMENT ON POLICY documents_tenant_isolation ON documents IS
    'Tenant isolation: only the rows of current_tenant_id() (app.tenant_id, set per transaction) are seen or written; with no tenant set, none (fails closed).';
COMMENT ON POLICY idempotency_keys_tenant_isolation ON idempotency_keys IS
    'Tenant isolation: only the rows of current_tenant_id() (app.tenant_id, set per transaction) are seen or written; with no tenant set, none (fails closed).';
COMMENT ON POLICY audit_events_tenant_isolation ON audit_events IS
    'Tenant isolation: only the rows of current_tenant_id() (app.tenant_id, set per transaction) are seen or written; with no tenant set, none (fails closed).';
COMMENT ON POLICY issuer_certificates_tenant_isolation ON issuer_certificates IS
    'Tenant isolation: only the rows of current_tenant_id() (app.tenant_id, set per transaction) are seen or written; with no tenant set, none (fails closed). The private keys here are sealed with the server''s key besides.';
COMMENT ON POLICY document_submissions_tenant_isolation ON document_submissions IS
    'Tenant isolation: only the rows of current_tenant_id() (app.tenant_id, set per transaction) are seen or written; with no tenant set, none (fails closed).';
COMMENT ON POLICY sri_exchanges_tenant_isolation ON sri_exchanges IS
    'Tenant isolation: only the rows of current_tenant_id() (app.tenant_id, set per transaction) are seen or written; with no tenant set, none (fails closed).';
COMMENT ON POLICY webhook_endpoints_tenant_isolation ON webhook_endpoints IS
    'Tenant isolation: only the rows of current_tenant_id() (app.tenant_id, set per transaction) are seen or written; with no tenant set, none (fails closed).';
COMMENT ON POLICY webhook_events_tenant_isolation ON webhook_events IS
    'Tenant isolation: only the rows of current_tenant_id() (app.tenant_id, set per transaction) are seen or written; with no tenant set, none (fails closed).';
COMMENT ON POLICY webhook_deliveries_tenant_isolation ON webhook_deliveries IS
    'Tenant isolation: only the rows of current_tenant_id() (app.tenant_id, set per transaction) are seen or written; with no tenant set, none (fails closed).';
COMMENT ON POLICY webhook_delivery_attempts_tenant_isolation ON webhook_delivery_attempts IS
    'Tenant isolation: only the rows of current_tenant_id() (app.tenant_id, set per transaction) are seen or written; with no tenant set, none (fails closed).';

-- comprobify_auth, the owner of the SECURITY DEFINER functions: the narrow
-- cross-tenant views those functions need.
COMMENT ON POLICY api_keys_authenticator ON api_keys IS
    'comprobify_auth reads every tenant''s keys: authenticate() finds a key by its digest before any tenant is known.';
COMMENT ON POLICY api_keys_authenticator_lock ON api_keys IS
    'comprobify_auth may lock any key row (authenticate(digest, true) holds FOR SHARE, so a revocation cannot commit between the check and the change it authorizes); WITH CHECK (false) and api_keys_authenticator_changes_none: it changes none.';
COMMENT ON POLICY email_verifications_authenticator ON email_verifications IS
    'comprobify_auth reads every tenant''s verification tokens: email_verification_tenant() finds a pending token by its digest before any tenant is known.';
COMMENT ON POLICY idempotency_keys_purge ON idempotency_keys IS
    'comprobify_auth sees expired idempotency keys of every tenant, for purge_expired().';
COMMENT ON POLICY idempotency_keys_purge_delete ON idempotency_keys IS
    'comprobify_auth deletes expired idempotency keys of every tenant, for purge_expired(); idempotency_keys_purge_expired_only keeps it to those.';
COMMENT ON POLICY document_submissions_claimer ON document_submissions IS
    'comprobify_auth sees every tenant''s submissions (its column grants: the queue columns only), for claim_sri_work() and sri_queue_depth().';
COMMENT ON POLICY document_submissions_claimer_lease ON document_submissions IS
    'comprobify_auth leases every tenant''s submissions (its column grants: leased_by and leased_until only), for claim_sri_work().';
COMMENT ON POLICY webhook_deliveries_claimer ON webhook_deliveries IS
    'comprobify_auth sees every tenant''s webhook deliveries (its column grants: the queue columns only), for claim_webhook_deliveries() and webhook_queue_depth().';
COMMENT ON POLICY webhook_deliveries_claimer_lease ON webhook_deliveries IS
    'comprobify_auth leases every tenant''s webhook deliveries (its column grants: leased_by and leased_until only), for claim_webhook_deliveries().';
COMMENT ON POLICY email_outbox_relay ON email_outbox IS
    'comprobify_auth reads every tenant''s outbox messages, for take_outbox_messages() (callable by comprobify_mailer only).';
COMMENT ON POLICY email_outbox_relay_sent ON email_outbox IS
    'comprobify_auth marks unsent outbox messages sent (its column grant: sent_at only), for mark_outbox_message_sent(); email_outbox_relay_marks_sent_only keeps it to that.';
