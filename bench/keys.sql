-- pgbench twin of GET /v1/keys: the server's two statements, pipelined as one
-- implicit transaction (one round trip), as comprobify_app.
--   -D digest=\x<sha256 of the token>
\startpipeline
SELECT key_id, tenant_id, environment, tenant_status, tenant_environment FROM authenticate(:digest, false);
SELECT id, label, environment, token_prefix, created_at, revoked_at FROM api_keys WHERE revoked_at IS NULL ORDER BY id;
\endpipeline
