-- Each issuer's signing certificate (PUT /v1/issuers/:id/certificate). The
-- private key is stored only sealed: AES-256-GCM under the deployment's master
-- key (COMPROBIFY_SECRET_KEY), with the tenant and issuer ids as associated
-- data, so a ciphertext copied to another row does not open. The PKCS#12 file
-- and its password are never stored.

CREATE TABLE issuer_certificates (
    tenant_id          bigint NOT NULL,
    issuer_id          bigint NOT NULL,
    subject            text NOT NULL,
    issuer_name        text NOT NULL,
    serial_number      text NOT NULL
        CONSTRAINT issuer_certificates_serial_decimal CHECK (serial_number ~ '^[0-9]{1,100}$'),
    not_before         timestamptz NOT NULL,
    not_after          timestamptz NOT NULL,
    sha256             bytea NOT NULL
        CONSTRAINT issuer_certificates_sha256_length CHECK (octet_length(sha256) = 32),
    certificate        bytea NOT NULL,
    sealed_private_key bytea NOT NULL,
    master_key_id      text NOT NULL
        CONSTRAINT issuer_certificates_master_key_id_format CHECK (master_key_id ~ '^[0-9a-f]{8}$'),
    uploaded_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, issuer_id),
    FOREIGN KEY (tenant_id, issuer_id) REFERENCES issuers (tenant_id, id),
    CONSTRAINT issuer_certificates_validity_order CHECK (not_after > not_before)
);

COMMENT ON TABLE issuer_certificates IS 'The signing certificate of each issuer (at most one; a new upload replaces it). Documents already signed keep their signature.';
COMMENT ON COLUMN issuer_certificates.subject IS 'The certificate''s subject, RFC 4514.';
COMMENT ON COLUMN issuer_certificates.issuer_name IS 'The certificate''s issuer (the certification authority), RFC 4514.';
COMMENT ON COLUMN issuer_certificates.serial_number IS 'The certificate''s serial number in decimal, as XAdES IssuerSerial writes it.';
COMMENT ON COLUMN issuer_certificates.sha256 IS 'SHA-256 of the certificate''s DER encoding (its fingerprint; also the XAdES CertDigest).';
COMMENT ON COLUMN issuer_certificates.certificate IS 'The certificate, DER. Public: it travels in every signature.';
COMMENT ON COLUMN issuer_certificates.sealed_private_key IS 'The PKCS#8 private key sealed with AES-256-GCM: version, master key id, nonce, ciphertext, tag. Opens only with the master key and this row''s tenant and issuer ids.';
COMMENT ON COLUMN issuer_certificates.master_key_id IS 'Which master key sealed the private key (8 hex digits derived from it), so keys can be rotated: see the README.';

ALTER TABLE issuer_certificates ENABLE ROW LEVEL SECURITY;
ALTER TABLE issuer_certificates FORCE ROW LEVEL SECURITY;
CREATE POLICY issuer_certificates_tenant_isolation ON issuer_certificates
    USING (tenant_id = (SELECT current_tenant_id()))
    WITH CHECK (tenant_id = (SELECT current_tenant_id()));

GRANT SELECT, INSERT ON issuer_certificates TO comprobify_app;
GRANT UPDATE (subject, issuer_name, serial_number, not_before, not_after, sha256, certificate, sealed_private_key,
              master_key_id, uploaded_at) ON issuer_certificates TO comprobify_app;
