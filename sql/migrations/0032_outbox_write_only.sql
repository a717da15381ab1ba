-- comprobify_app writes verification messages to email_outbox and no longer
-- reads them.
--
-- A verification message carries its token in clear (0002). The API server
-- inserts it with the sign-up and never reads a message back (0023 gave the
-- reading to the mail relay, through comprobify_mailer's functions), yet
-- comprobify_app kept the SELECT of 0002: a tenant's session could read its
-- own pending tokens. The INSERT needs no SELECT (it returns nothing), and the
-- table's policy still checks the tenant of every row written.

REVOKE SELECT ON email_outbox FROM comprobify_app;
