-- Every column, constraint, index, trigger and function of the schema says
-- what it holds or guarantees, and why, as every table and policy already
-- did: \d+, \dd+, \di+, col_description() and obj_description() now answer a
-- DBA without the migrations at hand.
--
-- Only objects that had no comment get one; the comments of earlier
-- migrations stand. An index that backs a constraint (a primary key, a unique
-- constraint) is described by its constraint's comment, and the identity
-- sequences by their columns'. sql/tests/comments.sql fails when a later
-- migration leaves one of these kinds of object without a comment.
--
-- Comments only: each COMMENT holds its table's SHARE UPDATE EXCLUSIVE lock
-- until this migration commits, which no read or write waits for.

-- ---------------------------------------------------------------------------
-- tenants
-- ---------------------------------------------------------------------------

COMMENT ON COLUMN tenants.id IS 'The tenant''s id: a sign-up draws it from tenants_id_seq and sets it as app.tenant_id before inserting the row. What every tenant_id names and the tenant isolation policies compare with current_tenant_id().';
COMMENT ON COLUMN tenants.name IS 'The account''s name, given at sign-up: 1 to 200 characters.';
COMMENT ON COLUMN tenants.environment IS 'sandbox until the tenant is promoted, then production for good (trigger tenants_promotion_is_final); promoted_at is set exactly when it is production.';
COMMENT ON COLUMN tenants.created_at IS 'When the tenant signed up.';

COMMENT ON CONSTRAINT tenants_pkey ON tenants IS 'One row per tenant id. tenants is keyed by id alone: it would be a reference table on Citus (docs/scaling.md).';
COMMENT ON CONSTRAINT tenants_email_format ON tenants IS 'A plausible address: at most 254 characters, one @, no spaces, a dot in the domain. Uniqueness is the index tenants_email_unique_nfc.';
COMMENT ON CONSTRAINT tenants_name_length ON tenants IS 'The account name has 1 to 200 characters, as POST /v1/tenants requires.';
COMMENT ON CONSTRAINT tenants_status_values ON tenants IS 'PENDING_VERIFICATION or ACTIVE, the only statuses a tenant has.';
COMMENT ON CONSTRAINT tenants_promoted_when_production ON tenants IS 'A production tenant has its promoted_at, and a sandbox tenant has none: promotion sets both at once.';
COMMENT ON CONSTRAINT tenants_production_is_verified ON tenants IS 'Only a verified (ACTIVE) tenant can be in production: promotion requires a verified email address.';

COMMENT ON TRIGGER tenants_verification_is_final ON tenants IS 'Refuses to take an ACTIVE tenant back to PENDING_VERIFICATION (refuse_change, SQLSTATE 23000), for every role: a verification is never undone.';
COMMENT ON TRIGGER tenants_promotion_is_final ON tenants IS 'Refuses to change a production tenant''s environment or promoted_at (refuse_change, SQLSTATE 23000), for every role: a promotion is never undone or re-dated.';

-- ---------------------------------------------------------------------------
-- api_keys
-- ---------------------------------------------------------------------------

COMMENT ON COLUMN api_keys.tenant_id IS 'The tenant the key acts for: authenticate() sets app.tenant_id to it.';
COMMENT ON COLUMN api_keys.id IS 'The key''s id in GET /v1/keys and DELETE /v1/keys/:id; ids are unique across tenants.';
COMMENT ON COLUMN api_keys.label IS 'The tenant''s name for the key, 1 to 100 characters, or NULL. The sign-up''s key is "Initial sandbox key"; a production key made by promotion takes its sandbox key''s label.';
COMMENT ON COLUMN api_keys.environment IS 'sandbox (cfy_test_ tokens) or production (cfy_live_ tokens): the key reaches only issuers, and creates only webhooks, of its environment.';
COMMENT ON COLUMN api_keys.created_at IS 'When the key was minted.';

COMMENT ON CONSTRAINT api_keys_pkey ON api_keys IS 'One row per key, tenant_id first: the key distributes by tenant, and foreign keys to a key name its tenant too.';
COMMENT ON CONSTRAINT api_keys_tenant_id_fkey ON api_keys IS 'Every key belongs to an existing tenant.';
COMMENT ON CONSTRAINT api_keys_replaces_key ON api_keys IS 'The sandbox key a promotion''s key replaced is a key of the same tenant.';
COMMENT ON CONSTRAINT api_keys_token_digest_unique ON api_keys IS 'A digest names at most one key of a tenant. Across tenants the trigger api_keys_digest_names_one_key holds it (a unique index across tenants would not survive distribution by tenant_id).';
COMMENT ON CONSTRAINT api_keys_token_digest_sha256 ON api_keys IS 'The digest is a SHA-256: 32 bytes.';
COMMENT ON CONSTRAINT api_keys_token_prefix_format ON api_keys IS 'The prefix is cfy_test_ or cfy_live_ and 5 lowercase hex digits: 14 characters, never more of the token.';
COMMENT ON CONSTRAINT api_keys_prefix_matches_environment ON api_keys IS 'A sandbox key''s token starts with cfy_test_ and a production key''s with cfy_live_, so the prefix people see tells the environment.';
COMMENT ON CONSTRAINT api_keys_label_length ON api_keys IS 'A label is NULL or 1 to 100 characters, as the API requires.';

COMMENT ON INDEX api_keys_by_token_digest IS 'Every key by its token digest, across tenants and revoked keys included: authenticate() finds a request''s key through it, and api_keys_digest_names_one_key checks that no key holds a new key''s digest.';

COMMENT ON TRIGGER api_keys_digest_names_one_key ON api_keys IS 'Refuses a new key whose token digest any key of any tenant already holds, revoked ones included (refuse_held_token_digest, SQLSTATE 23505): a token names one key of one tenant.';
COMMENT ON TRIGGER api_keys_revocation_is_final ON api_keys IS 'Refuses to change a revoked key''s revoked_at (refuse_change, SQLSTATE 23000), for every role: a revoked key is never reinstated or re-dated.';

-- ---------------------------------------------------------------------------
-- email_verifications
-- ---------------------------------------------------------------------------

COMMENT ON COLUMN email_verifications.tenant_id IS 'The tenant whose email address the token verifies.';
COMMENT ON COLUMN email_verifications.id IS 'Identity; ids are unique across tenants.';
COMMENT ON COLUMN email_verifications.token_digest IS 'SHA-256 of the token (64 hex characters, sent by email); the token itself exists only in the email_outbox message. No other row of any tenant holds it (trigger email_verifications_digest_names_one_token).';
COMMENT ON COLUMN email_verifications.created_at IS 'When the token was issued, by the sign-up or a resend.';
COMMENT ON COLUMN email_verifications.expires_at IS 'created_at + 48 hours: past it the token is refused.';
COMMENT ON COLUMN email_verifications.used_at IS 'When the token verified the tenant; NULL while unused. Single use: once set it never changes (email_verifications_use_is_final).';

COMMENT ON CONSTRAINT email_verifications_pkey ON email_verifications IS 'One row per token, tenant_id first, so the table distributes by tenant.';
COMMENT ON CONSTRAINT email_verifications_tenant_id_fkey ON email_verifications IS 'Every token belongs to an existing tenant.';
COMMENT ON CONSTRAINT email_verifications_token_digest_unique ON email_verifications IS 'A digest names at most one token of a tenant. Across tenants the trigger email_verifications_digest_names_one_token holds it.';
COMMENT ON CONSTRAINT email_verifications_token_digest_sha256 ON email_verifications IS 'The digest is a SHA-256: 32 bytes.';
COMMENT ON CONSTRAINT email_verifications_expiry_after_creation ON email_verifications IS 'A token expires after it was issued.';

COMMENT ON INDEX email_verifications_by_token_digest IS 'Every token by its digest, across tenants and used ones included: email_verification_tenant() and the verification find a token through it, and email_verifications_digest_names_one_token checks that no row holds a new token''s digest.';

COMMENT ON TRIGGER email_verifications_digest_names_one_token ON email_verifications IS 'Refuses a new token whose digest any token of any tenant already holds, used ones included (refuse_held_token_digest, SQLSTATE 23505): a token names one tenant.';
COMMENT ON TRIGGER email_verifications_use_is_final ON email_verifications IS 'Refuses to change used_at or invalidated_at once set (refuse_change, SQLSTATE 23000), for every role: a used or superseded token never comes back.';

-- ---------------------------------------------------------------------------
-- email_outbox
-- ---------------------------------------------------------------------------

COMMENT ON COLUMN email_outbox.tenant_id IS 'The tenant the message is for.';
COMMENT ON COLUMN email_outbox.id IS 'Identity; with tenant_id, what mark_outbox_message_sent() names.';
COMMENT ON COLUMN email_outbox.recipient IS 'The address to send to: the tenant''s email as stored when the message was queued.';
COMMENT ON COLUMN email_outbox.subject IS 'The message''s subject line.';
COMMENT ON COLUMN email_outbox.body IS 'The message''s plain text. A verification message carries its token in clear: only the mail relay reads it (take_outbox_messages()).';
COMMENT ON COLUMN email_outbox.created_at IS 'When the message was queued; relays take the oldest unsent first.';

COMMENT ON CONSTRAINT email_outbox_pkey ON email_outbox IS 'One row per message, tenant_id first, so the table distributes by tenant.';
COMMENT ON CONSTRAINT email_outbox_tenant_id_fkey ON email_outbox IS 'Every message belongs to an existing tenant.';

COMMENT ON INDEX email_outbox_unsent IS 'Unsent messages of every tenant, oldest first: what take_outbox_messages() reads. Sent messages leave it.';

-- ---------------------------------------------------------------------------
-- issuers
-- ---------------------------------------------------------------------------

COMMENT ON COLUMN issuers.tenant_id IS 'The tenant the branch belongs to.';
COMMENT ON COLUMN issuers.id IS 'The issuer''s id, sent as X-Issuer-Id with every document request; ids are unique across tenants.';
COMMENT ON COLUMN issuers.ruc IS 'ruc: the taxpayer''s RUC, 13 digits (no checksum applied). In every access key the issuer gives, so it never changes (issuers_identity_is_fixed).';
COMMENT ON COLUMN issuers.legal_name IS 'razonSocial: the taxpayer''s legal name, 1 to 300 characters.';
COMMENT ON COLUMN issuers.trade_name IS 'nombreComercial: the trade name, 1 to 300 characters, or NULL (then left out of the XML).';
COMMENT ON COLUMN issuers.establishment IS 'estab: the establishment''s code, 3 digits, never 000. The first part of every document number and in every access key, so it never changes.';
COMMENT ON COLUMN issuers.emission_point IS 'ptoEmi: the emission point''s code, 3 digits, never 000. The second part of every document number and in every access key, so it never changes.';
COMMENT ON COLUMN issuers.created_at IS 'When the issuer was created.';

COMMENT ON CONSTRAINT issuers_pkey ON issuers IS 'One row per issuer, tenant_id first: every foreign key to an issuer names its tenant too, and is checked through this index (migration 0011).';
COMMENT ON CONSTRAINT issuers_tenant_id_fkey ON issuers IS 'Every issuer belongs to an existing tenant.';
COMMENT ON CONSTRAINT issuers_branch_unique ON issuers IS 'A tenant has one issuer per RUC, establishment and emission point (POST /v1/issuers answers 409). ruc leads, not tenant_id, so that foreign key checks by (tenant_id, id) use issuers_pkey (migration 0011).';
COMMENT ON CONSTRAINT issuers_ruc_format ON issuers IS 'A RUC is 13 digits.';
COMMENT ON CONSTRAINT issuers_establishment_format ON issuers IS 'An establishment code is 3 digits, never 000, as POST /v1/issuers requires.';
COMMENT ON CONSTRAINT issuers_emission_point_format ON issuers IS 'An emission point code is 3 digits, never 000, as POST /v1/issuers requires.';
COMMENT ON CONSTRAINT issuers_legal_name_length ON issuers IS 'The legal name has 1 to 300 characters, as the XML''s razonSocial allows.';
COMMENT ON CONSTRAINT issuers_trade_name_length ON issuers IS 'A trade name is NULL or 1 to 300 characters, as the XML''s nombreComercial allows.';
COMMENT ON CONSTRAINT issuers_address_length ON issuers IS 'An establishment address is NULL or 1 to 300 characters, as the XML''s dirEstablecimiento allows.';
COMMENT ON CONSTRAINT issuers_head_office_address_length ON issuers IS 'A head office address is NULL or 1 to 300 characters, as the XML''s dirMatriz allows.';
COMMENT ON CONSTRAINT issuers_special_taxpayer_format ON issuers IS 'A special taxpayer''s resolution number is NULL or 3 to 13 letters and digits, as the XML''s contribuyenteEspecial allows.';
COMMENT ON CONSTRAINT issuers_withholding_agent_format ON issuers IS 'A withholding agent''s resolution number is NULL or 1 to 8 digits, as the XML''s agenteRetencion allows.';
COMMENT ON CONSTRAINT issuers_rimpe_values ON issuers IS 'The RIMPE regime is NULL, EMPRENDEDOR or NEGOCIO_POPULAR, the two the XML''s contribuyenteRimpe names.';

COMMENT ON TRIGGER issuers_identity_is_fixed ON issuers IS 'Refuses to change an issuer''s RUC, establishment or emission point (refuse_change, SQLSTATE 23000), for every role: they are in every access key it has given.';
COMMENT ON TRIGGER issuers_promotion_is_final ON issuers IS 'Refuses to put a production issuer back in sandbox (refuse_change, SQLSTATE 23000), for every role: a promotion is never undone.';

-- ---------------------------------------------------------------------------
-- issuer_certificates
-- ---------------------------------------------------------------------------

COMMENT ON COLUMN issuer_certificates.tenant_id IS 'The tenant of the issuer; part of the associated data the private key is sealed with.';
COMMENT ON COLUMN issuer_certificates.issuer_id IS 'The issuer that signs with this certificate (one each); part of the associated data the private key is sealed with.';
COMMENT ON COLUMN issuer_certificates.not_before IS 'The start of the certificate''s validity: before it, an upload is refused and the issuer cannot issue (409).';
COMMENT ON COLUMN issuer_certificates.not_after IS 'The end of the certificate''s validity: after it, an upload is refused and the issuer cannot issue (409) until a new certificate is uploaded.';
COMMENT ON COLUMN issuer_certificates.uploaded_at IS 'When this certificate was uploaded; a new upload replaces the row and its time.';

COMMENT ON CONSTRAINT issuer_certificates_pkey ON issuer_certificates IS 'At most one certificate per issuer: an upload replaces it (INSERT ... ON CONFLICT on this key).';
COMMENT ON CONSTRAINT issuer_certificates_tenant_id_issuer_id_fkey ON issuer_certificates IS 'The certificate''s issuer is an issuer of the same tenant.';
COMMENT ON CONSTRAINT issuer_certificates_serial_decimal ON issuer_certificates IS 'The serial number is written in decimal, 1 to 100 digits.';
COMMENT ON CONSTRAINT issuer_certificates_sha256_length ON issuer_certificates IS 'The fingerprint is a SHA-256: 32 bytes.';
COMMENT ON CONSTRAINT issuer_certificates_master_key_id_format ON issuer_certificates IS 'A master key id is 8 lowercase hex digits, as the server derives it from the key.';
COMMENT ON CONSTRAINT issuer_certificates_validity_order ON issuer_certificates IS 'A certificate''s validity ends after it starts.';

-- ---------------------------------------------------------------------------
-- document_types
-- ---------------------------------------------------------------------------

COMMENT ON COLUMN document_types.code IS 'codDoc, SRI''s two-digit code of the type: 01 factura, 03 liquidación de compra, 04 nota de crédito, 05 nota de débito, 06 guía de remisión, 07 comprobante de retención. Digits 9-10 of every access key.';
COMMENT ON COLUMN document_types.name IS 'The type''s name, in Spanish as SRI''s table gives it.';

COMMENT ON CONSTRAINT document_types_pkey ON document_types IS 'One row per SRI code.';
COMMENT ON CONSTRAINT document_types_code_format ON document_types IS 'A code is two digits, as in the access key.';
COMMENT ON CONSTRAINT document_types_name_not_blank ON document_types IS 'Every type has a name that is not blank.';

-- ---------------------------------------------------------------------------
-- sequentials
-- ---------------------------------------------------------------------------

COMMENT ON COLUMN sequentials.tenant_id IS 'The tenant of the issuer.';
COMMENT ON COLUMN sequentials.issuer_id IS 'The issuer whose documents the counter numbers.';
COMMENT ON COLUMN sequentials.document_type IS 'The document type the counter numbers (document_types.code): each type has its own sequence of numbers.';
COMMENT ON COLUMN sequentials.environment IS 'The environment the counter numbers: an issuer''s sandbox and production documents have numbers of their own.';

COMMENT ON CONSTRAINT sequentials_pkey ON sequentials IS 'One counter per issuer, document type and environment; the row lock on it, held until the document commits, keeps numbers gapless and unique.';
COMMENT ON CONSTRAINT sequentials_tenant_id_issuer_id_fkey ON sequentials IS 'The counter''s issuer is an issuer of the same tenant.';
COMMENT ON CONSTRAINT sequentials_document_type_fkey ON sequentials IS 'A counter numbers a known document type.';

-- ---------------------------------------------------------------------------
-- documents
-- ---------------------------------------------------------------------------

COMMENT ON COLUMN documents.tenant_id IS 'The tenant that issued the document.';
COMMENT ON COLUMN documents.id IS 'The document''s id in the API and the cursor (after) of GET /v1/documents; ids are unique across tenants and grow with time.';
COMMENT ON COLUMN documents.issuer_id IS 'The issuer (branch) that issued the document: its RUC, establishment and emission point are in the number and the access key.';
COMMENT ON COLUMN documents.document_type IS 'The SRI document type (document_types.code), digits 9-10 of the access key. 01 factura and 04 nota de crédito are the types issued today.';
COMMENT ON COLUMN documents.environment IS 'The issuer''s environment when the document was issued: sandbox (ambiente 1, SRI''s test service) or production (ambiente 2); digit 24 of the access key.';
COMMENT ON COLUMN documents.issue_date IS 'fechaEmision: the date the client gave, or today in America/Guayaquil, never after today; the first 8 digits of the access key (ddmmyyyy).';
COMMENT ON COLUMN documents.buyer_id IS 'identificacionComprador: the buyer''s identification as sent, of the type buyer_id_type; a credit note of a factura issued here must name the same buyer, byte for byte. NULL only for documents numbered before comprobantes existed.';
COMMENT ON COLUMN documents.created_at IS 'When the document was stored, in the transaction that took its number. Documents never change after it.';

COMMENT ON CONSTRAINT documents_pkey ON documents IS 'One row per document, tenant_id first, so the table distributes by tenant.';
COMMENT ON CONSTRAINT documents_tenant_id_issuer_id_fkey ON documents IS 'The document''s issuer is an issuer of the same tenant.';
COMMENT ON CONSTRAINT documents_document_type_fkey ON documents IS 'A document is of a known document type.';
COMMENT ON CONSTRAINT documents_modified_document_fk ON documents IS 'A credit note''s factura, when issued here, is a document of the same tenant.';
COMMENT ON CONSTRAINT documents_access_key_unique ON documents IS 'An access key names one document of a tenant: GET /v1/documents/:accessKey finds it through this index.';
COMMENT ON CONSTRAINT documents_sequential_unique ON documents IS 'A sequential is taken once per issuer, document type and environment, whatever happens to the counter.';

COMMENT ON INDEX documents_by_issuer IS 'An issuer''s documents by id: the pages of GET /v1/documents without a type filter.';
COMMENT ON INDEX documents_by_issuer_and_type IS 'An issuer''s documents of one type by id: the pages of GET /v1/documents?documentType=.';
COMMENT ON INDEX documents_by_number IS 'An issuer''s documents by type, environment and number: a credit note finds the factura it names (modifiedDocument.number).';
COMMENT ON INDEX documents_credit_notes_by_factura IS 'Credit notes by the factura they modify, when it was issued here: what has been credited on a factura is summed through it (with documents_credit_notes_by_number for notes taken as given).';
COMMENT ON INDEX documents_credit_notes_by_number IS 'Credit notes whose factura was unknown here when they were issued (taken as given), by the number they name: once the issuer''s factura of that number, in the same environment, is issued here, they count toward what has been credited on it (migration 0038).';

COMMENT ON TRIGGER documents_immutable_rows ON documents IS 'Refuses every UPDATE and DELETE of a document, for every role, superusers included (documents_are_immutable): an issued document never changes.';
COMMENT ON TRIGGER documents_immutable_table ON documents IS 'Refuses TRUNCATE of documents, for every role, superusers included (documents_are_immutable).';

COMMENT ON FUNCTION documents_are_immutable() IS
    'Trigger function of documents_immutable_rows and documents_immutable_table: refuses the change with ''issued documents cannot be changed or deleted'' (SQLSTATE 23000). Issued documents are signed and numbered for SRI; what changes afterwards lives in document_submissions.';

-- ---------------------------------------------------------------------------
-- document_submissions
-- ---------------------------------------------------------------------------

COMMENT ON COLUMN document_submissions.tenant_id IS 'The document''s tenant.';
COMMENT ON COLUMN document_submissions.document_id IS 'The document (documents.id): one submission per signed document, inserted with it. Documents numbered before comprobantes existed have none.';
COMMENT ON COLUMN document_submissions.status IS 'Where the document stands with SRI: SIGNED when issued, RECEIVED once reception took it, then AUTHORIZED or NOT_AUTHORIZED; RETURNED when reception refused it. The last three are final (document_submissions_decision_is_final).';
COMMENT ON COLUMN document_submissions.authorization_number IS 'numeroAutorizacion of SRI''s authorization (in the offline scheme, the access key itself); NULL unless AUTHORIZED.';
COMMENT ON COLUMN document_submissions.authorized_at IS 'fechaAutorizacion: when SRI authorized the document; NULL unless AUTHORIZED.';
COMMENT ON COLUMN document_submissions.updated_at IS 'When an exchange with SRI was last recorded on the row (status, counts, messages); the insert''s time before the first. Leases do not move it.';

COMMENT ON CONSTRAINT document_submissions_pkey ON document_submissions IS 'One submission per document, tenant_id first; the worker''s statements reach their row through it.';
COMMENT ON CONSTRAINT document_submissions_tenant_id_document_id_fkey ON document_submissions IS 'The submission''s document is a document of the same tenant.';

COMMENT ON INDEX document_submissions_due_by_environment IS 'The waiting submissions of one environment, earliest next attempt first: the rest of a claim of claim_sri_work() takes the oldest due ones through it, production first. Final submissions (no next attempt) are not in it.';
COMMENT ON INDEX document_submissions_due_by_tenant IS 'The waiting submissions of one environment by tenant, earliest next attempt first: claim_sri_work()''s turn between tenants walks it, one descent per tenant (migration 0027).';
COMMENT ON INDEX document_submissions_received_due_by_environment IS 'First authorizations waiting in one environment (RECEIVED, streak 0), oldest first: the rest of a claim takes the due ones before other documents (migration 0042).';
COMMENT ON INDEX document_submissions_received_due_by_tenant IS 'First authorizations waiting in one environment (RECEIVED, streak 0) by tenant, oldest first: a tenant''s turn in claim_sri_work() takes its oldest due one first (migration 0042).';

COMMENT ON TRIGGER document_submissions_decision_is_final ON document_submissions IS 'Refuses to change the status or the authorization of a RETURNED, AUTHORIZED or NOT_AUTHORIZED submission (refuse_change, SQLSTATE 23000), for every role: SRI''s decision stays as SRI gave it.';

-- ---------------------------------------------------------------------------
-- sri_exchanges
-- ---------------------------------------------------------------------------

COMMENT ON COLUMN sri_exchanges.tenant_id IS 'The document''s tenant.';
COMMENT ON COLUMN sri_exchanges.id IS 'Identity; ids grow with time, so a document''s exchanges in id order are in the order they were made.';
COMMENT ON COLUMN sri_exchanges.document_id IS 'The document the exchange was about (its submission is the document_submissions row of the same document).';
COMMENT ON COLUMN sri_exchanges.service IS 'reception (validarComprobante: the signed comprobante sent) or authorization (autorizacionComprobante: SRI''s decision asked for).';
COMMENT ON COLUMN sri_exchanges.created_at IS 'When the exchange was recorded, just after it ended.';

COMMENT ON CONSTRAINT sri_exchanges_pkey ON sri_exchanges IS 'One row per exchange, tenant_id first, so the table distributes by tenant.';
COMMENT ON CONSTRAINT sri_exchanges_tenant_id_document_id_fkey ON sri_exchanges IS 'The exchange''s document is a document of the same tenant.';
COMMENT ON CONSTRAINT sri_exchanges_service_values ON sri_exchanges IS 'reception or authorization, SRI''s two offline services.';
COMMENT ON CONSTRAINT sri_exchanges_outcome_values ON sri_exchanges IS 'One of the outcomes the worker records: received, already_received, returned, authorized, not_authorized, pending, or a failure: connection, timeout, http_status, soap_fault, unparseable.';
COMMENT ON CONSTRAINT sri_exchanges_http_status_range ON sri_exchanges IS 'An HTTP status, when there is one, is between 100 and 599.';
COMMENT ON CONSTRAINT sri_exchanges_duration_not_negative ON sri_exchanges IS 'A duration is never negative.';
COMMENT ON CONSTRAINT sri_exchanges_answer_or_error ON sri_exchanges IS 'An exchange has SRI''s answer or the error that stopped it, never both and never neither.';

COMMENT ON INDEX sri_exchanges_by_document IS 'A document''s exchanges in order: the record of an exchange looks for one already made under its claim (migration 0030), and support reads a document''s history.';
COMMENT ON INDEX sri_exchanges_by_time IS 'Exchanges of every tenant by time: for DBAs looking at the last minutes across SRI (sql/README.md) and archiving old rows, which nothing purges yet.';

-- ---------------------------------------------------------------------------
-- idempotency_keys
-- ---------------------------------------------------------------------------

COMMENT ON COLUMN idempotency_keys.tenant_id IS 'The tenant the key is scoped to.';
COMMENT ON COLUMN idempotency_keys.key IS 'The Idempotency-Key header of POST /v1/documents as sent: 1 to 255 printable ASCII characters.';
COMMENT ON COLUMN idempotency_keys.issuer_id IS 'The issuer (X-Issuer-Id) of the request that holds the key: a repeat naming another issuer is 409.';
COMMENT ON COLUMN idempotency_keys.document_id IS 'The document the request issued, written in the same transaction (NULL only until then), which a repeat returns again.';
COMMENT ON COLUMN idempotency_keys.created_at IS 'When the request that holds the key claimed it.';
COMMENT ON COLUMN idempotency_keys.expires_at IS '24 hours after the claim: until then a repeat replays the document; past it a request may claim the key afresh, and purge_expired() deletes it.';

COMMENT ON CONSTRAINT idempotency_keys_pkey ON idempotency_keys IS 'One row per key and tenant: a concurrent duplicate waits on this index until the first request commits (then replays it) or rolls back.';
COMMENT ON CONSTRAINT idempotency_keys_tenant_id_fkey ON idempotency_keys IS 'Every key belongs to an existing tenant.';
COMMENT ON CONSTRAINT idempotency_keys_tenant_id_issuer_id_fkey ON idempotency_keys IS 'The key''s issuer is an issuer of the same tenant.';
COMMENT ON CONSTRAINT idempotency_keys_tenant_id_document_id_fkey ON idempotency_keys IS 'The key''s document is a document of the same tenant.';
COMMENT ON CONSTRAINT idempotency_keys_key_format ON idempotency_keys IS 'A key is 1 to 255 printable ASCII characters (space to tilde), as the API accepts it.';
COMMENT ON CONSTRAINT idempotency_keys_request_digest_sha256 ON idempotency_keys IS 'The request digest is a SHA-256: 32 bytes.';

COMMENT ON INDEX idempotency_keys_expiry IS 'Keys of every tenant by expiry: purge_expired() finds the expired ones through it.';

-- ---------------------------------------------------------------------------
-- audit_events
-- ---------------------------------------------------------------------------

COMMENT ON COLUMN audit_events.tenant_id IS 'The tenant the change was made to.';
COMMENT ON COLUMN audit_events.id IS 'Identity; ids are unique across tenants and grow with time.';
COMMENT ON COLUMN audit_events.action IS 'What happened: tenant.signed_up, tenant.email_verified, tenant.verification_resent, tenant.promoted, api_key.minted, api_key.revoked, issuer.created, issuer.updated, issuer.certificate_set, webhook.created or webhook.deleted. The tenant.verification_resent events of the last hour hold the limit of 5 resends an hour.';
COMMENT ON COLUMN audit_events.actor_key_id IS 'The API key that made the change when actor is tenant; NULL for support and system.';
COMMENT ON COLUMN audit_events.details IS 'What the change concerned, as a JSON object: the key, issuer or webhook id and what identifies it, e.g. {"keyId", "environment", "label"} for api_key.minted, {"issuerId", "fields"} for issuer.updated. {} when there is nothing more to say (tenant.signed_up).';
COMMENT ON COLUMN audit_events.created_at IS 'When the change was made (the event is written in the change''s transaction).';

COMMENT ON CONSTRAINT audit_events_pkey ON audit_events IS 'One row per event, tenant_id first, so the table distributes by tenant.';
COMMENT ON CONSTRAINT audit_events_tenant_id_fkey ON audit_events IS 'Every event belongs to an existing tenant.';
COMMENT ON CONSTRAINT audit_events_tenant_id_actor_key_id_fkey ON audit_events IS 'The acting key is a key of the same tenant.';
COMMENT ON CONSTRAINT audit_events_action_values ON audit_events IS 'The actions the server records (migration 0035 added issuer.created, webhook.created and webhook.deleted; 0036 validated the rows before).';
COMMENT ON CONSTRAINT audit_events_actor_values ON audit_events IS 'tenant, support or system, the three kinds of actor.';

-- ---------------------------------------------------------------------------
-- signup_attempts
-- ---------------------------------------------------------------------------

COMMENT ON COLUMN signup_attempts.id IS 'Identity (GENERATED ALWAYS), only to name a row: the table is not tenant data.';
COMMENT ON COLUMN signup_attempts.client_address IS 'Who attempted: an IPv4 address, an IPv6 address''s /64 (2001:db8:1:2::/64), or the text of a forwarded hop that is no address. The peer, or with TRUST_PROXY=1 the last X-Forwarded-For hop.';
COMMENT ON COLUMN signup_attempts.attempted_at IS 'When the attempt was made: a client''s attempts of the last hour count toward SIGNUP_RATE_LIMIT, and purge_expired() deletes older ones.';

COMMENT ON CONSTRAINT signup_attempts_pkey ON signup_attempts IS 'One row per attempt.';
COMMENT ON CONSTRAINT signup_attempts_address_length ON signup_attempts IS 'A client address has 1 to 255 characters (the server keeps at most 255 of a forwarded hop).';

COMMENT ON INDEX signup_attempts_by_address IS 'A client''s attempts by time: the sign-up limit counts those of the last hour.';

-- ---------------------------------------------------------------------------
-- webhook_endpoints
-- ---------------------------------------------------------------------------

COMMENT ON COLUMN webhook_endpoints.tenant_id IS 'The tenant told about its documents.';
COMMENT ON COLUMN webhook_endpoints.id IS 'The webhook''s id in /v1/webhooks/:id; part of the associated data the secret is sealed with.';
COMMENT ON COLUMN webhook_endpoints.created_at IS 'When the endpoint was created.';

COMMENT ON CONSTRAINT webhook_endpoints_pkey ON webhook_endpoints IS 'One row per endpoint, tenant_id first, so the table distributes by tenant.';
COMMENT ON CONSTRAINT webhook_endpoints_tenant_id_fkey ON webhook_endpoints IS 'Every endpoint belongs to an existing tenant.';
COMMENT ON CONSTRAINT webhook_endpoints_tenant_id_created_by_key_id_fkey ON webhook_endpoints IS 'The creating key is a key of the same tenant.';
COMMENT ON CONSTRAINT webhook_endpoints_url_format ON webhook_endpoints IS 'An http or https URL without spaces, at most 2048 characters. That it is https (http only for localhost with WEBHOOKS_ALLOW_HTTP=1) and never names a private address is the server''s check.';
COMMENT ON CONSTRAINT webhook_endpoints_events_values ON webhook_endpoints IS '1 to 3 event types, each document.authorized, document.not_authorized or document.returned, none NULL.';
COMMENT ON CONSTRAINT webhook_endpoints_master_key_id_format ON webhook_endpoints IS 'A master key id is 8 lowercase hex digits, as the server derives it from the key.';
COMMENT ON CONSTRAINT webhook_endpoints_deleted_after_creation ON webhook_endpoints IS 'An endpoint is deleted no earlier than it was created.';

COMMENT ON INDEX webhook_endpoints_active IS 'A tenant''s active endpoints by environment: the count against the limit of 10 per tenant and environment, the list of active webhooks, and the endpoints an event is delivered to.';

COMMENT ON TRIGGER webhook_endpoints_deletion_is_final ON webhook_endpoints IS 'Refuses to change a deleted endpoint''s deleted_at (refuse_change, SQLSTATE 23000), for every role: a deleted webhook stays deleted.';

-- ---------------------------------------------------------------------------
-- webhook_events
-- ---------------------------------------------------------------------------

COMMENT ON COLUMN webhook_events.tenant_id IS 'The tenant of the document.';
COMMENT ON COLUMN webhook_events.created_at IS 'When the event happened (the status change''s transaction): deliveries are due from it and retried within WEBHOOK_RETRY_FOR_S of it; past WEBHOOK_RETENTION_DAYS, with its deliveries ended, it is purged.';

COMMENT ON CONSTRAINT webhook_events_pkey ON webhook_events IS 'One row per event id and tenant, tenant_id first, so the table distributes by tenant.';
COMMENT ON CONSTRAINT webhook_events_tenant_id_fkey ON webhook_events IS 'Every event belongs to an existing tenant.';
COMMENT ON CONSTRAINT webhook_events_tenant_id_document_id_fkey ON webhook_events IS 'The event''s document is a document of the same tenant.';
COMMENT ON CONSTRAINT webhook_events_id_format ON webhook_events IS 'An event id is evt_ and 32 lowercase hex digits (16 random bytes).';
COMMENT ON CONSTRAINT webhook_events_type_values ON webhook_events IS 'document.authorized, document.not_authorized or document.returned, the three decisions endpoints are told about.';
COMMENT ON CONSTRAINT webhook_events_payload_is_object ON webhook_events IS 'The payload is a JSON object (the document).';

COMMENT ON INDEX webhook_events_by_age IS 'Events of every tenant, oldest first: purge_webhook_history() reads the oldest past the retention and stops at the first younger one.';
COMMENT ON INDEX webhook_events_by_document IS 'A document''s events: for support and DBAs looking up what endpoints were told about a document. No statement of the server reads events by document.';

-- ---------------------------------------------------------------------------
-- webhook_deliveries
-- ---------------------------------------------------------------------------

COMMENT ON COLUMN webhook_deliveries.tenant_id IS 'The tenant of the event and the endpoint.';
COMMENT ON COLUMN webhook_deliveries.id IS 'Identity; ids are unique across tenants.';
COMMENT ON COLUMN webhook_deliveries.event_id IS 'The event to deliver.';
COMMENT ON COLUMN webhook_deliveries.endpoint_id IS 'The endpoint to deliver it to.';
COMMENT ON COLUMN webhook_deliveries.created_at IS 'The event''s created_at: the first attempt is due then, and the retry window (WEBHOOK_RETRY_FOR_S) counts from it.';
COMMENT ON COLUMN webhook_deliveries.updated_at IS 'When an attempt, a release or the endpoint''s deletion last changed the delivery (lease stamps do not move it); once delivered or failed, when it ended, which the purge of old events reads.';

COMMENT ON CONSTRAINT webhook_deliveries_pkey ON webhook_deliveries IS 'One row per delivery, tenant_id first, so the table distributes by tenant.';
COMMENT ON CONSTRAINT webhook_deliveries_tenant_id_fkey ON webhook_deliveries IS 'Every delivery belongs to an existing tenant.';
COMMENT ON CONSTRAINT webhook_deliveries_tenant_id_event_id_fkey ON webhook_deliveries IS 'The delivery''s event is an event of the same tenant.';
COMMENT ON CONSTRAINT webhook_deliveries_tenant_id_endpoint_id_fkey ON webhook_deliveries IS 'The delivery''s endpoint is an endpoint of the same tenant.';
COMMENT ON CONSTRAINT webhook_deliveries_one_per_event_and_endpoint ON webhook_deliveries IS 'An event is delivered once to each endpoint: one delivery row, however many attempts.';
COMMENT ON CONSTRAINT webhook_deliveries_status_values ON webhook_deliveries IS 'pending, delivered or failed.';
COMMENT ON CONSTRAINT webhook_deliveries_pending_waits ON webhook_deliveries IS 'A pending delivery has its next attempt, and an ended one has none: no pending delivery drops out of the queue unseen.';
COMMENT ON CONSTRAINT webhook_deliveries_lease_complete ON webhook_deliveries IS 'A lease has both its holder and its end, or neither.';
COMMENT ON CONSTRAINT webhook_deliveries_attempts_not_negative ON webhook_deliveries IS 'A count of attempts is never negative.';
COMMENT ON CONSTRAINT webhook_deliveries_response_code_range ON webhook_deliveries IS 'An HTTP status, when there is one, is between 100 and 599.';
COMMENT ON CONSTRAINT webhook_deliveries_duration_not_negative ON webhook_deliveries IS 'A duration is never negative.';
COMMENT ON CONSTRAINT webhook_deliveries_last_error_length ON webhook_deliveries IS 'An error is one line of at most 300 characters.';

COMMENT ON INDEX webhook_deliveries_pending_by_endpoint IS 'Each endpoint''s pending deliveries, earliest next attempt first: claim_webhook_deliveries() lists the endpoints with pending deliveries and takes each one''s oldest due through it (migration 0049).';
COMMENT ON INDEX webhook_deliveries_leased IS 'The pending deliveries that hold a lease: claim_webhook_deliveries() counts each endpoint''s and tenant''s deliveries in flight from these alone, however long the backlog (migration 0049).';

COMMENT ON TRIGGER webhook_deliveries_outcome_is_final ON webhook_deliveries IS 'Refuses to change the status of a delivered or failed delivery (refuse_change, SQLSTATE 23000), for every role: back to pending, the event would be delivered again.';

-- ---------------------------------------------------------------------------
-- webhook_delivery_attempts
-- ---------------------------------------------------------------------------

COMMENT ON COLUMN webhook_delivery_attempts.tenant_id IS 'The tenant of the delivery.';
COMMENT ON COLUMN webhook_delivery_attempts.id IS 'Identity; ids grow with time, so GET /v1/webhooks/:id/deliveries lists the latest attempts by id.';
COMMENT ON COLUMN webhook_delivery_attempts.delivery_id IS 'The delivery the attempt was made for.';
COMMENT ON COLUMN webhook_delivery_attempts.endpoint_id IS 'The delivery''s endpoint, kept on the attempt so that an endpoint''s latest attempts are found by index (webhook_delivery_attempts_by_endpoint).';
COMMENT ON COLUMN webhook_delivery_attempts.event_id IS 'The delivery''s event, kept on the attempt so that the purge finds an event''s attempts by index (webhook_delivery_attempts_by_event).';
COMMENT ON COLUMN webhook_delivery_attempts.attempted_at IS 'When the attempt was recorded, just after it ended. An attempt younger than the retention keeps its event from the purge.';

COMMENT ON CONSTRAINT webhook_delivery_attempts_pkey ON webhook_delivery_attempts IS 'One row per attempt, tenant_id first, so the table distributes by tenant.';
COMMENT ON CONSTRAINT webhook_delivery_attempts_tenant_id_fkey ON webhook_delivery_attempts IS 'Every attempt belongs to an existing tenant.';
COMMENT ON CONSTRAINT webhook_delivery_attempts_tenant_id_delivery_id_fkey ON webhook_delivery_attempts IS 'The attempt''s delivery is a delivery of the same tenant (checked through webhook_delivery_attempts_by_delivery when a delivery is purged).';
COMMENT ON CONSTRAINT webhook_delivery_attempts_tenant_id_endpoint_id_fkey ON webhook_delivery_attempts IS 'The attempt''s endpoint is an endpoint of the same tenant.';
COMMENT ON CONSTRAINT webhook_delivery_attempts_tenant_id_event_id_fkey ON webhook_delivery_attempts IS 'The attempt''s event is an event of the same tenant (checked through webhook_delivery_attempts_by_event when an event is purged).';
COMMENT ON CONSTRAINT webhook_delivery_attempts_outcome_values ON webhook_delivery_attempts IS 'delivered, http_status, timeout, connection or refused_address.';
COMMENT ON CONSTRAINT webhook_delivery_attempts_delivered_is_2xx ON webhook_delivery_attempts IS 'An attempt is delivered exactly when it got a 2xx and no error.';
COMMENT ON CONSTRAINT webhook_delivery_attempts_status_needs_code ON webhook_delivery_attempts IS 'An http_status outcome has the status it got.';
COMMENT ON CONSTRAINT webhook_delivery_attempts_response_code_range ON webhook_delivery_attempts IS 'An HTTP status, when there is one, is between 100 and 599.';
COMMENT ON CONSTRAINT webhook_delivery_attempts_duration_not_negative ON webhook_delivery_attempts IS 'A duration is never negative.';
COMMENT ON CONSTRAINT webhook_delivery_attempts_error_length ON webhook_delivery_attempts IS 'An error is one line of at most 300 characters.';
COMMENT ON CONSTRAINT webhook_delivery_attempts_status_after_values ON webhook_delivery_attempts IS 'A delivery status: pending, delivered or failed.';

COMMENT ON INDEX webhook_delivery_attempts_by_endpoint IS 'An endpoint''s attempts by id: GET /v1/webhooks/:id/deliveries reads the latest through it.';
COMMENT ON INDEX webhook_delivery_attempts_by_delivery IS 'A delivery''s attempts: the foreign key''s check when a delivery is purged, and the record of an attempt looking for one already made under its claim (migrations 0043, 0054).';
COMMENT ON INDEX webhook_delivery_attempts_by_event IS 'An event''s attempts: the foreign key''s check when an event is purged, and the purge''s look at the attempts'' age (migrations 0044, 0046).';

-- ---------------------------------------------------------------------------
-- schema_migrations
-- ---------------------------------------------------------------------------

COMMENT ON COLUMN schema_migrations.name IS 'The migration''s file name in sql/migrations, e.g. 0002_schema.sql: each is applied once, in name order.';
COMMENT ON COLUMN schema_migrations.checksum IS 'SHA-256 of the file''s text, lowercase hex (as sha256sum prints it): comprobify migrate refuses to run when an applied file has changed since (but for the revisions of 0001 and 0023, sql/README.md).';
COMMENT ON COLUMN schema_migrations.applied_at IS 'When the migration was applied (the time of the transaction that recorded it).';

COMMENT ON CONSTRAINT schema_migrations_pkey ON schema_migrations IS 'One ledger row per migration file.';

-- ---------------------------------------------------------------------------
-- The rules of single values (domains, migrations 0012 and 0014)
-- ---------------------------------------------------------------------------

COMMENT ON CONSTRAINT sri_environment_values ON DOMAIN sri_environment IS 'sandbox or production, SRI''s ambientes 1 and 2.';
COMMENT ON CONSTRAINT sri_sequential_in_range ON DOMAIN sri_sequential IS 'A sequential is 1 to 999999999: nine digits in the number and the access key.';
COMMENT ON CONSTRAINT sri_document_number_format ON DOMAIN sri_document_number IS 'NNN-NNN-NNNNNNNNN: establishment, emission point and sequential.';
COMMENT ON CONSTRAINT sri_access_key_format ON DOMAIN sri_access_key IS 'An access key is 49 digits.';
COMMENT ON CONSTRAINT sri_access_key_check_digit ON DOMAIN sri_access_key IS 'The last digit is the modulo-11 check digit of the first 48 (sri_check_digit), as SRI verifies it.';
COMMENT ON CONSTRAINT sri_amount_not_negative ON DOMAIN sri_amount IS 'An amount is never negative.';
COMMENT ON CONSTRAINT document_metadata_is_object ON DOMAIN document_metadata IS 'The client''s metadata is a JSON object.';
COMMENT ON CONSTRAINT document_metadata_size ON DOMAIN document_metadata IS 'At most 16 KiB of JSON text. NOT VALID: documents from before the comprobantes keep whatever size they had; every new value is checked.';
COMMENT ON CONSTRAINT submission_status_values ON DOMAIN submission_status IS 'SIGNED, RECEIVED, RETURNED, AUTHORIZED or NOT_AUTHORIZED.';
COMMENT ON CONSTRAINT sequentials_next_in_range ON DOMAIN sri_next_sequential IS '1 to 1000000000, where 1000000000 means exhausted. Named after the table, as it was before migration 0014: the server recognizes the name and answers 409 for an exhausted counter.';
COMMENT ON CONSTRAINT attempt_count_not_negative ON DOMAIN attempt_count IS 'A count of attempts is never negative.';
