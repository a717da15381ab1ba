-- comprobify:no-transaction
-- Emails are unique case-insensitively and whatever the Unicode form an
-- accent is written in: "josé@" with a composed é (U+00E9) and with an e and a
-- combining acute (U+0065 U+0301) are one address. The server used to store
-- every email in NFC to have tenants_email_unique (on lower(email)) see them
-- as one; API.md keeps every string as sent, so the email is now stored as
-- sent and this index compares the NFC form. Built concurrently: sign-ups go
-- on meanwhile. Emails stored before are in NFC already, so none conflicts.
-- Migration 0058 drops the old index once this one serves.
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS tenants_email_unique_nfc ON tenants (lower(normalize(email, NFC)));
