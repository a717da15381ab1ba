-- What the SRI XML says about its issuer (infoTributaria and the document's
-- info block), beyond the branch identity of 0002. Existing issuers keep every
-- value they had; the new columns start empty (or false), and an issuer without
-- a head office address cannot issue until PATCH /v1/issuers/:id gives it one.

ALTER TABLE issuers
    ADD COLUMN head_office_address text
        CONSTRAINT issuers_head_office_address_length CHECK (char_length(head_office_address) BETWEEN 1 AND 300),
    ADD COLUMN accounting_required boolean NOT NULL DEFAULT false,
    ADD COLUMN special_taxpayer text
        CONSTRAINT issuers_special_taxpayer_format CHECK (special_taxpayer ~ '^[A-Za-z0-9]{3,13}$'),
    ADD COLUMN withholding_agent text
        CONSTRAINT issuers_withholding_agent_format CHECK (withholding_agent ~ '^[0-9]{1,8}$'),
    ADD COLUMN rimpe text
        CONSTRAINT issuers_rimpe_values CHECK (rimpe IN ('EMPRENDEDOR', 'NEGOCIO_POPULAR')),
    ADD COLUMN updated_at timestamptz;

COMMENT ON COLUMN issuers.head_office_address IS 'dirMatriz: the head office address. Required before the issuer can issue.';
COMMENT ON COLUMN issuers.address IS 'dirEstablecimiento: the establishment''s address; omitted from the XML when NULL.';
COMMENT ON COLUMN issuers.accounting_required IS 'obligadoContabilidad: SI when true, NO when false.';
COMMENT ON COLUMN issuers.special_taxpayer IS 'contribuyenteEspecial: the resolution number of a special taxpayer, or NULL.';
COMMENT ON COLUMN issuers.withholding_agent IS 'agenteRetencion: the resolution number of a withholding agent, or NULL.';
COMMENT ON COLUMN issuers.rimpe IS 'contribuyenteRimpe: EMPRENDEDOR or NEGOCIO_POPULAR for the RIMPE regime, or NULL.';
COMMENT ON COLUMN issuers.updated_at IS 'When PATCH last changed the issuer; NULL if never. Documents issued before keep what they said.';

-- The branch identity never changes: it is in every access key already issued.
CREATE TRIGGER issuers_identity_is_fixed BEFORE UPDATE ON issuers FOR EACH ROW
    WHEN (NEW.ruc <> OLD.ruc OR NEW.establishment <> OLD.establishment OR NEW.emission_point <> OLD.emission_point)
    EXECUTE FUNCTION refuse_change('an issuer''s RUC, establishment and emission point are fixed');

GRANT UPDATE (legal_name, trade_name, address, head_office_address, accounting_required, special_taxpayer,
              withholding_agent, rimpe, updated_at) ON issuers TO comprobify_app;

ALTER TABLE audit_events DROP CONSTRAINT audit_events_action_values;
ALTER TABLE audit_events ADD CONSTRAINT audit_events_action_values CHECK (action IN (
    'tenant.signed_up', 'tenant.email_verified', 'tenant.verification_resent',
    'tenant.promoted', 'api_key.minted', 'api_key.revoked',
    'issuer.updated', 'issuer.certificate_set'));
