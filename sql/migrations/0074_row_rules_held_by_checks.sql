-- Rules every row already follows, which the server keeps and the database
-- did not: a row written by hand, by a script or by a server of a later
-- release that broke one of them was accepted.
--
--   audit_events_key_iff_tenant_actor   actor_key_id is set exactly when the
--                                       actor is the tenant (its key); support
--                                       and system act without one
--   audit_events_details_object         details is a JSON object ({} when
--                                       there is nothing more to say)
--   api_keys_replaces_another_key       a production key made by promotion
--                                       replaces another key, never itself
--   idempotency_keys_expiry_after_claim a key expires after it was claimed
--
-- Added NOT VALID (each table's lock for a moment, no scan); 0075 validates
-- them in its own transaction, under a lock that lets the server keep
-- writing. Written to be run again: a constraint already there is left as it is.

DO $$
DECLARE
    rule record;
BEGIN
    FOR rule IN
        SELECT * FROM (VALUES
            ('audit_events', 'audit_events_key_iff_tenant_actor', '(actor = ''tenant'') = (actor_key_id IS NOT NULL)'),
            ('audit_events', 'audit_events_details_object', 'jsonb_typeof(details) = ''object'''),
            ('api_keys', 'api_keys_replaces_another_key', 'replaces_key_id <> id'),
            ('idempotency_keys', 'idempotency_keys_expiry_after_claim', 'expires_at > created_at')
        ) AS r (table_name, constraint_name, expression)
    LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_constraint
                        WHERE conrelid = rule.table_name::regclass AND conname = rule.constraint_name) THEN
            EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I CHECK (%s) NOT VALID',
                           rule.table_name, rule.constraint_name, rule.expression);
        END IF;
    END LOOP;
END
$$;

COMMENT ON CONSTRAINT audit_events_key_iff_tenant_actor ON audit_events IS
    'actor_key_id is set exactly when actor is tenant (the key that made the change); support and system act without a key (migration 0074).';
COMMENT ON CONSTRAINT audit_events_details_object ON audit_events IS
    'details is a JSON object, {} when there is nothing more to say (migration 0074).';
COMMENT ON CONSTRAINT api_keys_replaces_another_key ON api_keys IS
    'A production key made by promotion replaces another key (the sandbox key of the same label), never itself (migration 0074).';
COMMENT ON CONSTRAINT idempotency_keys_expiry_after_claim ON idempotency_keys IS
    'A key expires after it was claimed (24 hours after, as the server claims it) (migration 0074).';
