-- What tenants_email_unique_nfc (migration 0056) holds, and the column's
-- comment naming it.

COMMENT ON INDEX tenants_email_unique_nfc IS 'One tenant per email address, compared lower-cased in NFC: a letter''s case and the Unicode form of an accent (composed or combining) do not make another address. The email itself is stored as sent.';
COMMENT ON COLUMN tenants.email IS 'Contact address, stored as sent; unique case-insensitively and whatever the Unicode form of its accents (index tenants_email_unique_nfc).';
