import Postgres

/// The SQL of issuers and their counters.
enum IssuersStore {
    /// Issuers per tenant. GET /v1/issuers returns every issuer, unpaged (the
    /// contract), so this bounds its size; promotion's `initialSequentials`
    /// cap (issuers × document types) assumes it too.
    static let limit = 1000

    /// The tenant's issuers: they are never deleted, so this is the primary key's range.
    static let count: PostgresQuery = "SELECT count(*) FROM issuers"

    /// 409 when `count`, read with the tenant row locked, leaves no room for one more.
    static func requireRoom(count: Int64) throws {
        guard count < limit else {
            throw APIError.conflict(.limitReached, "The tenant already has \(limit) issuers, the most it may have.")
        }
    }

    static let columns = """
        id, ruc, legal_name, trade_name, establishment, emission_point, address, sandbox, created_at, \
        head_office_address, accounting_required, special_taxpayer, withholding_agent, rimpe
        """

    /// An issuer as API.md shows it, from `columns`.
    static func issuer(_ row: Row) throws -> JSONValue {
        .object([
            ("id", try row.int(at: 0)),
            ("ruc", try row.string(at: 1)),
            ("legalName", try row.string(at: 2)),
            ("tradeName", try row.string(at: 3)),
            ("establishment", try row.string(at: 4)),
            ("emissionPoint", try row.string(at: 5)),
            ("address", try row.string(at: 6)),
            ("sandbox", .bool(try row.decode(Bool.self, at: 7))),
            ("createdAt", try row.timestamp(at: 8)),
            ("headOfficeAddress", try row.string(at: 9)),
            ("accountingRequired", .bool(try row.decode(Bool.self, at: 10))),
            ("specialTaxpayer", try row.string(at: 11)),
            ("withholdingAgent", try row.string(at: 12)),
            ("rimpe", try row.string(at: 13)),
        ])
    }

    static let notFound = APIError.notFound("No issuer with this id.")

    static let all = Read<[JSONValue]>("SELECT \(unescaped: columns) FROM issuers ORDER BY id") { result in
        try result.rows.map(issuer)
    }

    /// One issuer; 404 when it is not the tenant's.
    static func one(_ id: Int64) -> Read<JSONValue> {
        Read("SELECT \(unescaped: columns) FROM issuers WHERE id = \(id)") { result in
            guard let row = result.first else { throw notFound }
            return try issuer(row)
        }
    }

    /// Whether the tenant has this issuer.
    /// The issuer's environment, or nil when it is not the tenant's.
    static func environment(_ id: Int64) -> Read<Environment?> {
        Read("SELECT sandbox FROM issuers WHERE id = \(id)") { result in
            try result.first.map { try $0.decode(Bool.self, at: 0) ? .sandbox : .production }
        }
    }

    static func exists(_ id: Int64) -> Read<Bool> {
        Read("SELECT 1 FROM issuers WHERE id = \(id)") { $0.count == 1 }
    }

    /// The issuer's counters, production first... in the order API.md lists them.
    /// `next` is null for a counter past 999999999, which issues no more (409).
    static func counters(_ id: Int64) -> Read<[JSONValue]> {
        Read(
            """
            SELECT document_type, environment, next_sequential FROM sequentials
             WHERE issuer_id = \(id) ORDER BY environment, document_type
            """
        ) { result in
            try result.rows.map { row in
                let next = try row.decode(Int64.self, at: 2)
                return .object([
                    ("documentType", try row.string(at: 0)),
                    ("environment", try row.string(at: 1)),
                    ("next", next > NumberForecast.lastSequential ? .null : JSONValue(next)),
                ])
            }
        }
    }

    /// Creates an issuer in the tenant's environment (read from the tenant row the
    /// transaction holds) with, in production, all its counters, records
    /// `issuer.created` as done by the key `actorKeyID`, and commits.
    static func create(_ transaction: Transaction, _ new: NewIssuer, actorKeyID: Int64) throws -> JSONValue {
        do {
            let results = try transaction.commit(after: [
                """
                WITH issuer AS (
                    INSERT INTO issuers (tenant_id, ruc, legal_name, trade_name, establishment, emission_point, address, sandbox,
                                         head_office_address, accounting_required, special_taxpayer, withholding_agent, rimpe)
                    SELECT t.id, \(new.ruc), \(new.legalName), \(new.tradeName), \(new.establishment), \(new.emissionPoint),
                           \(new.address), t.environment = 'sandbox', \(new.tax.headOfficeAddress), \(new.tax.accountingRequired ?? false),
                           \(new.tax.specialTaxpayer), \(new.tax.withholdingAgent), \(new.tax.rimpe)
                      FROM tenants t WHERE t.id = current_tenant_id()
                    RETURNING \(unescaped: columns), tenant_id
                ), counters AS (
                    INSERT INTO sequentials (tenant_id, issuer_id, document_type, environment)
                    SELECT i.tenant_id, i.id, d.code, 'production'
                      FROM issuer i CROSS JOIN document_types d
                     WHERE NOT i.sandbox
                ), audited AS (
                    INSERT INTO audit_events (tenant_id, action, actor, actor_key_id, details)
                    SELECT tenant_id, 'issuer.created', 'tenant', \(actorKeyID),
                           jsonb_build_object('issuerId', id, 'ruc', ruc, 'establishment', establishment,
                                              'emissionPoint', emission_point, 'sandbox', sandbox)
                      FROM issuer
                )
                SELECT \(unescaped: columns) FROM issuer
                """
            ])
            return try issuer(results[0][0])
        } catch let error as PostgresError where error.hasCode(.uniqueViolation) {
            throw APIError.conflict(.alreadyExists, "This tenant already has an issuer with this RUC, establishment and emission point.")
        }
    }

    /// Changes the fields present in `changes` (null clears an optional one),
    /// records `issuer.updated` and commits; 404 when the issuer is not the tenant's.
    static func update(_ transaction: Transaction, id: Int64, _ changes: IssuerChanges, actorKeyID: Int64) throws -> JSONValue {
        let set = changes.present
        let tax = changes.tax
        let results = try transaction.commit(after: [
            """
            WITH updated AS (
                UPDATE issuers SET
                    legal_name = CASE WHEN \(set.contains("legalName")) THEN \(changes.legalName) ELSE legal_name END,
                    trade_name = CASE WHEN \(set.contains("tradeName")) THEN \(changes.tradeName) ELSE trade_name END,
                    address = CASE WHEN \(set.contains("address")) THEN \(changes.address) ELSE address END,
                    head_office_address = CASE WHEN \(set.contains("headOfficeAddress")) THEN \(tax.headOfficeAddress)
                                               ELSE head_office_address END,
                    accounting_required = coalesce(\(tax.accountingRequired), accounting_required),
                    special_taxpayer = CASE WHEN \(set.contains("specialTaxpayer")) THEN \(tax.specialTaxpayer) ELSE special_taxpayer END,
                    withholding_agent = CASE WHEN \(set.contains("withholdingAgent")) THEN \(tax.withholdingAgent)
                                             ELSE withholding_agent END,
                    rimpe = CASE WHEN \(set.contains("rimpe")) THEN \(tax.rimpe) ELSE rimpe END,
                    updated_at = now()
                 WHERE id = \(id)
                RETURNING \(unescaped: columns), tenant_id
            ), audited AS (
                INSERT INTO audit_events (tenant_id, action, actor, actor_key_id, details)
                SELECT tenant_id, 'issuer.updated', 'tenant', \(actorKeyID),
                       jsonb_build_object('issuerId', id, 'fields', \(set.sorted())::text[])
                  FROM updated
            )
            SELECT \(unescaped: columns) FROM updated
            """
        ])
        guard let row = results[0].first else { throw notFound }
        return try issuer(row)
    }
}
