-- comprobify:no-transaction
-- tenants_email_unique (lower(email)) is replaced by tenants_email_unique_nfc
-- (migration 0056), which refuses every duplicate it refused and also an
-- address written with its accents in another Unicode form. Dropped
-- concurrently: sign-ups go on meanwhile.
DROP INDEX CONCURRENTLY IF EXISTS tenants_email_unique;
