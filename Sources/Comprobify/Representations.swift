import Postgres

/// The JSON shapes of API.md, each with the columns it is read from, so every
/// route that returns a resource returns exactly the same shape.
enum Representation {
    static let tenantColumns = "id, email, name, status, environment, created_at, promoted_at"

    static func tenant(_ row: Row) throws -> JSONValue {
        .object([
            ("id", try row.int(at: 0)),
            ("email", try row.string(at: 1)),
            ("name", try row.string(at: 2)),
            ("status", try row.string(at: 3)),
            ("environment", try row.string(at: 4)),
            ("createdAt", try row.timestamp(at: 5)),
            ("promotedAt", try row.timestamp(at: 6)),
        ])
    }

    static let keyColumns = "id, label, environment, token_prefix, created_at, revoked_at"

    static func key(_ row: Row) throws -> JSONValue {
        .object([
            ("id", try row.int(at: 0)),
            ("label", try row.string(at: 1)),
            ("environment", try row.string(at: 2)),
            ("prefix", try row.string(at: 3)),
            ("active", .bool(row.isNull(at: 5))),
            ("createdAt", try row.timestamp(at: 4)),
            ("revokedAt", try row.timestamp(at: 5)),
        ])
    }

    static let issuerColumns = "id, ruc, legal_name, trade_name, establishment, emission_point, address, sandbox, created_at"

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
        ])
    }

    static let documentColumns =
        "id, issuer_id, document_type, environment, sequential, number, access_key, issue_date::text, content::text, created_at"

    /// A document from `documentColumns`, starting at column `offset`.
    static func document(_ row: Row, offset o: Int = 0) throws -> JSONValue {
        .object([
            ("id", try row.int(at: o)),
            ("issuerId", try row.int(at: o + 1)),
            ("documentType", try row.string(at: o + 2)),
            ("environment", try row.string(at: o + 3)),
            ("sequential", try row.int(at: o + 4)),
            ("number", try row.string(at: o + 5)),
            ("accessKey", try row.string(at: o + 6)),
            ("issueDate", try row.string(at: o + 7)),
            ("content", .raw(try row.decode(String.self, at: o + 8))),
            ("createdAt", try row.timestamp(at: o + 9)),
        ])
    }
}
