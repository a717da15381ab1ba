import Postgres

/// The SQL of API keys and their audit events. Every function runs inside the
/// caller's tenant transaction; row-level security scopes it to that tenant.
enum KeysStore {
    /// Active keys per tenant and environment. GET /v1/keys returns every
    /// active key, unpaged (the published contract), so this bounds its size.
    static let limit = 100

    static let columns = "id, label, environment, token_prefix, created_at, revoked_at"

    /// A key as API.md shows it, from `columns`, written straight from the row.
    static func write(_ row: Row, to json: inout JSONWriter) throws {
        json.literal("{\"id\":")
        try json.integer(row, at: 0)
        json.literal(",\"label\":")
        try json.string(row, at: 1)
        json.literal(",\"environment\":")
        try json.string(row, at: 2)
        json.literal(",\"prefix\":")
        try json.string(row, at: 3)
        json.literal(",\"active\":")
        json.bool(row.isNull(at: 5))
        json.literal(",\"createdAt\":")
        try json.timestamp(row, at: 4)
        json.literal(",\"revokedAt\":")
        try json.timestamp(row, at: 5)
        json.literal("}")
    }

    /// Active keys, oldest first, as a JSON array.
    static let activeKeys = Read<JSONValue>(
        "SELECT \(unescaped: columns) FROM api_keys WHERE revoked_at IS NULL ORDER BY id"
    ) { result in
        var json = JSONWriter(capacity: 2 + 220 * result.count)
        json.literal("[")
        for index in 0..<result.count {
            if index > 0 { json.literal(",") }
            try write(result[index], to: &json)
        }
        json.literal("]")
        return .rawUTF8(json.bytes)
    }

    static let keyNotFound = APIError.notFound("No active key with this id.")

    /// A production key needs a production issuer to act on: 403 "before any
    /// issuer has been promoted" (the published documentation), which covers a
    /// tenant still in sandbox and one promoted with no issuer yet.
    static func requirePromotedIssuer(_ transaction: Transaction, tenantInProduction: Bool) throws {
        let forbidden = APIError.forbidden(
            "Production keys can be minted only once the tenant has been promoted to production with at least one issuer.")
        guard tenantInProduction else { throw forbidden }
        let found = try transaction.query("SELECT EXISTS (SELECT 1 FROM issuers WHERE NOT sandbox)")
        guard try found[0].decode(Bool.self, at: 0) else { throw forbidden }
    }

    /// The tenant's active keys of `environment` (index `api_keys_active`).
    static func activeCount(_ environment: Environment) -> PostgresQuery {
        "SELECT count(*) FROM api_keys WHERE environment = \(environment.rawValue) AND revoked_at IS NULL"
    }

    /// 409 when `count`, read with the tenant row locked, leaves no room for one more.
    static func requireRoom(count: Int64, environment: Environment) throws {
        guard count < limit else {
            throw APIError.conflict(
                .limitReached,
                "The tenant already has \(limit) active \(environment.rawValue) keys, the most it may have: revoke one before minting another."
            )
        }
    }

    /// Inserts a key for the transaction's tenant and its audit event, and commits.
    static func insertKey(
        _ transaction: Transaction, label: String?, environment: Environment, actor: String, actorKeyID: Int64?
    ) throws -> APIToken {
        let token = APIToken.generate(environment)
        try transaction.commit(after: [mint(token, label: label, actor: actor, actorKeyID: actorKeyID)])
        return token
    }

    /// Inserts `token`'s key for the transaction's tenant with its
    /// `api_key.minted` audit event, in one statement.
    static func mint(_ token: APIToken, label: String?, actor: String, actorKeyID: Int64?) -> PostgresQuery {
        """
        WITH minted AS (
            INSERT INTO api_keys (tenant_id, label, environment, token_digest, token_prefix)
            VALUES (current_tenant_id(), \(label), \(token.environment.rawValue), \(token.digest), \(token.prefix))
            RETURNING tenant_id, id, label, environment
        )
        INSERT INTO audit_events (tenant_id, action, actor, actor_key_id, details)
        SELECT tenant_id, 'api_key.minted', \(actor), \(actorKeyID)::bigint,
               jsonb_build_object('keyId', id, 'environment', environment, 'label', label)
          FROM minted
        """
    }

    /// Revokes an active key of the transaction's tenant with its audit event and
    /// commits; 404 when there is no such active key (unknown, revoked or another tenant's).
    static func revokeKey(_ transaction: Transaction, id: Int64, actor: String, actorKeyID: Int64?) throws {
        let results = try transaction.commit(after: [
            """
            WITH revoked AS (
                UPDATE api_keys SET revoked_at = now()
                 WHERE id = \(id) AND revoked_at IS NULL
                RETURNING tenant_id, id
            ), audited AS (
                INSERT INTO audit_events (tenant_id, action, actor, actor_key_id, details)
                SELECT tenant_id, 'api_key.revoked', \(actor), \(actorKeyID)::bigint, jsonb_build_object('keyId', id)
                  FROM revoked
            )
            SELECT count(*) FROM revoked
            """
        ])
        guard try results[0].first?.decode(Int64.self, at: 0) == 1 else { throw keyNotFound }
    }
}
