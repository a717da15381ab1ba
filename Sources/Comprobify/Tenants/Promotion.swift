import Foundation
import Postgres

/// POST /v1/tenants/promote: the tenant, all its issuers, a production counter
/// for every issuer × document type and a production key for every active
/// sandbox key, in one SERIALIZABLE transaction (retried on serialization
/// failure, with fresh tokens each try). The statements are set-based, so their
/// number does not grow with the tenant's size. The SQL is `PromotionStore`'s.
struct Promotion {
    let database: Database

    struct Entry: Sendable, Equatable {
        let issuerID: Int64
        let documentType: String
        let sequential: Int64
    }

    struct IssuedKey: Sendable {
        let label: String?
        let token: APIToken
    }

    /// Promotes the tenant of `token`.
    /// A body that fails its checks (which need no database) is refused after
    /// the credential is looked at, without a transaction or the tenant's lock,
    /// with what the database finds wrong in it too (in the same round trip:
    /// issuers and document types that do not exist).
    func run(token: APIToken, facts: RequestFacts, request: Result<PromotionRequest, any Error>) async throws -> [IssuedKey] {
        if case .failure(let invalid as PromotionRequest.Invalid) = request {
            let (_, unknown) = try await database.read(for: token, facts: facts, PromotionStore.unknown(invalid.request))
            throw APIError.validation(invalid.problems + invalid.request.problems(unknownIssuers: unknown.0, unknownTypes: unknown.1))
        }
        let request = try await database.checkAfterAuthenticating(for: token, facts: facts) { try request.get() }
        let state = PromotionStore.state(request)
        return try await database.transaction(for: token, facts: facts, isolation: .serializable, lockKey: false, prologue: [state]) {
            transaction, principal, results in
            try PromotionStore.perform(transaction, state: results[0], request: request, actorKeyID: principal.keyID)
        }
    }

    /// Promotes a tenant known by id (support tooling and tests: no key needed).
    func run(tenantID: Int64, request: PromotionRequest) async throws -> [IssuedKey] {
        try await database.transaction(forTenantID: tenantID, isolation: .serializable, prologue: [PromotionStore.state(request)]) {
            transaction, results in
            guard results[0].count == 1 else { throw APIError.notFound("No tenant with this id.") }
            return try PromotionStore.perform(transaction, state: results[0], request: request, actorKeyID: nil)
        }
    }
}

/// The SQL of a promotion.
enum PromotionStore {
    /// The tenant's state and the checks of the request that need the database
    /// (each distinct id once, as arrays),
    /// read under a lock on the tenant row so concurrent promotions queue, and
    /// so do additions of keys and issuers (`TenantsStore.rosterLock`). The lock is
    /// FOR NO KEY UPDATE, not FOR UPDATE: requests that insert rows referencing
    /// the tenant take FOR KEY SHARE on it for their foreign keys, and they may
    /// hold the share lock on a sandbox key this promotion is about to revoke.
    static func state(_ request: PromotionRequest) -> PostgresQuery {
        """
        SELECT t.status, t.environment,
               (SELECT count(*) FROM api_keys WHERE environment = 'sandbox' AND revoked_at IS NULL),
               \(unknownArrays(request))
          FROM tenants t
         WHERE t.id = current_tenant_id()
           FOR NO KEY UPDATE
        """
    }

    /// The checks of `state` that need the database, alone, for a body that
    /// failed the others: no lock, nothing else read.
    static func unknown(_ request: PromotionRequest) -> Read<([Int64], [String])> {
        Read("SELECT \(unknownArrays(request))") {
            try $0[0].decode(([Int64], [String]).self)
        }
    }

    /// The issuers (of the tenant) and the document types that the request
    /// names and that do not exist, each once, as two arrays.
    private static func unknownArrays(_ request: PromotionRequest) -> SQLFragment {
        """
        ARRAY(SELECT DISTINCT r.issuer_id FROM unnest(\(request.issuerIDs)::bigint[]) AS r(issuer_id)
               WHERE NOT EXISTS (SELECT 1 FROM issuers i WHERE i.id = r.issuer_id)),
        ARRAY(SELECT DISTINCT r.code FROM unnest(\(request.documentTypes)::text[]) AS r(code)
               WHERE NOT EXISTS (SELECT 1 FROM document_types d WHERE d.code = r.code))
        """
    }

    static func perform(_ transaction: Transaction, state: QueryResult, request: PromotionRequest, actorKeyID: Int64?) throws
        -> [Promotion.IssuedKey]
    {
        let (status, environment, sandboxKeys, unknownIssuers, unknownTypes) = try state[0].decode(
            (String, String, Int, [Int64], [String]).self)
        let problems = request.problems(unknownIssuers: unknownIssuers, unknownTypes: unknownTypes)
        if !problems.isEmpty { throw APIError.validation(problems) }
        guard status == "ACTIVE" else {
            throw APIError.forbidden("Verify the tenant's email address before promoting it to production.")
        }
        guard environment == "sandbox" else {
            throw APIError.conflict(.alreadyPromoted, "The tenant is already in production.")
        }

        let tokens = (0..<sandboxKeys).map { _ in APIToken.generate(.production) }
        let entries = request.entries
        let results = try transaction.pipeline([
            """
            UPDATE tenants SET environment = 'production', promoted_at = now(), roster_changed_at = now()
             WHERE id = current_tenant_id() AND environment = 'sandbox'
            """,
            "UPDATE issuers SET sandbox = false WHERE sandbox",
            """
            INSERT INTO sequentials (tenant_id, issuer_id, document_type, environment, next_sequential)
            SELECT i.tenant_id, i.id, d.code, 'production', coalesce(r.sequential, 1)
              FROM issuers i
             CROSS JOIN document_types d
              LEFT JOIN unnest(\(entries.map(\.issuerID))::bigint[], \(entries.map(\.documentType))::text[],
                               \(entries.map(\.sequential))::bigint[]) AS r(issuer_id, document_type, sequential)
                     ON r.issuer_id = i.id AND r.document_type = d.code
            """,
            """
            WITH revoked AS (
                UPDATE api_keys SET revoked_at = now()
                 WHERE environment = 'sandbox' AND revoked_at IS NULL
                RETURNING id, label
            ), ordered AS (
                SELECT id, label, row_number() OVER (ORDER BY id) AS position FROM revoked
            ), minted AS (
                INSERT INTO api_keys (tenant_id, label, environment, token_digest, token_prefix, replaces_key_id)
                SELECT current_tenant_id(), o.label, 'production', t.digest, t.prefix, o.id
                  FROM ordered o
                  JOIN unnest(\(tokens.map(\.digest))::bytea[], \(tokens.map(\.prefix))::text[]) WITH ORDINALITY AS t(digest, prefix, position)
                    ON t.position = o.position
                RETURNING id, label, replaces_key_id
            ), audited AS (
                -- Each key revoked and each minted, as a revocation or a mint
                -- through the API records it, beside tenant.promoted.
                INSERT INTO audit_events (tenant_id, action, actor, actor_key_id, details)
                SELECT current_tenant_id(), e.action, CASE WHEN \(actorKeyID)::bigint IS NULL THEN 'support' ELSE 'tenant' END,
                       \(actorKeyID)::bigint, e.details
                  FROM minted m
                 CROSS JOIN LATERAL (VALUES
                       (1, 'api_key.revoked', jsonb_build_object('keyId', m.replaces_key_id, 'replacedBy', m.id)),
                       (2, 'api_key.minted', jsonb_build_object('keyId', m.id, 'environment', 'production', 'label', m.label,
                                                                'replacesKeyId', m.replaces_key_id))
                       ) AS e(step, action, details)
                 ORDER BY m.replaces_key_id, e.step
            )
            SELECT o.position, o.label, (SELECT count(*) FROM revoked)
              FROM minted m JOIN ordered o ON o.id = m.replaces_key_id
             ORDER BY o.position
            """,
            """
            INSERT INTO audit_events (tenant_id, action, actor, actor_key_id, details)
            SELECT current_tenant_id(), 'tenant.promoted', CASE WHEN \(actorKeyID)::bigint IS NULL THEN 'support' ELSE 'tenant' END,
                   \(actorKeyID)::bigint, jsonb_build_object('issuers', (SELECT count(*) FROM issuers), 'keysReplaced', \(tokens.count)::int)
            """,
        ])
        let swapped = results[3]
        let revokedCount = try swapped.first?.decode(Int.self, at: 2) ?? 0
        guard swapped.count == tokens.count, revokedCount == tokens.count else {
            // The tenant row lock and SERIALIZABLE rule this out. Should it ever
            // happen, nothing commits and the client is told to try again.
            throw APIError.contended
        }
        // The transaction commits when this returns.
        return try swapped.rows.map { row in
            Promotion.IssuedKey(label: try row.decode(String?.self, at: 1), token: tokens[try row.decode(Int.self, at: 0) - 1])
        }
    }
}
