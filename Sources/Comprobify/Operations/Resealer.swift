import Foundation
import Postgres

/// `comprobify reseal`: seals every issuer's private key and every webhook's
/// signing secret that is sealed under another master key again under the
/// current one (`COMPROBIFY_SECRET_KEY`), opening them with the keys in
/// `COMPROBIFY_SECRET_KEY_PREVIOUS`. Afterwards no row needs an old master
/// key, and it can be dropped from the previous keys.
///
/// The rows are found through `sealed_under_other_keys()` (migration 0052),
/// which gives ids only; each is then read, opened, sealed again and written in
/// a transaction of its own that acts as its tenant, so the tenant isolation
/// policies hold, and a row that changed meanwhile (a new upload) is left as
/// it now is. A row that cannot be opened (its master key is in neither
/// variable, or it was altered) is reported and left; the others go on.
/// Running it again is harmless: it finds nothing more to do.
public struct Resealer {
    public struct Report: Sendable, Equatable {
        public var certificates = 0
        public var webhooks = 0
        /// Rows that could not be opened, named by tenant, kind and id.
        public var failures: [String] = []
        /// Why the run stopped before the end (the database went away, say);
        /// nil when every row was looked at.
        public var stopped: String?
    }

    /// The two kinds of sealed secret, as sealed_under_other_keys() names them.
    enum Kind: String, CaseIterable {
        case issuerCertificate = "issuer_certificate"
        case webhookEndpoint = "webhook_endpoint"

        /// The table, its sealed column and the id column of a row.
        var columns: (table: String, sealed: String, id: String) {
            switch self {
            case .issuerCertificate: ("issuer_certificates", "sealed_private_key", "issuer_id")
            case .webhookEndpoint: ("webhook_endpoints", "sealed_secret", "id")
            }
        }

        /// What a row's secret was sealed with besides the key.
        func associatedData(tenant: Int64, id: Int64) -> [UInt8] {
            switch self {
            case .issuerCertificate: SecretBox.associatedData(tenantID: tenant, issuerID: id)
            case .webhookEndpoint: WebhooksStore.associatedData(tenantID: tenant, webhookID: id)
            }
        }
    }

    let connection: Connection
    let secretBox: SecretBox
    /// Rows asked for at once.
    var batch = 1_000
    /// When set, only these tenants' rows (`--tenant`).
    public var tenants: [Int64]?

    public init(connection: Connection, secretBox: SecretBox) {
        self.connection = connection
        self.secretBox = secretBox
    }

    /// Looks at every row sealed under another key once, in (tenant, id)
    /// order, a page at a time; a row that cannot be opened is reported and
    /// passed. Whatever else fails stops the run, and the report says so
    /// with what was done before.
    public func run() -> Report {
        var report = Report()
        // A page is 1 to 10 000 rows (the function's bound): a shorter one is the last.
        let batch = min(max(self.batch, 1), 10_000)
        do {
            for kind in Kind.allCases {
                var after: (tenant: Int64, id: Int64) = (0, 0)
                while true {
                    let rows = try connection.query(
                        """
                        SELECT tenant_id, id
                          FROM sealed_under_other_keys(\(secretBox.currentKeyID), \(kind.rawValue), \(after.tenant), \(after.id), \(batch),
                                                       \(tenants)::bigint[])
                        """, prepared: false)
                    for index in 0..<rows.count {
                        let (tenant, id) = try rows[index].decode((Int64, Int64).self)
                        after = (tenant, id)
                        do {
                            if try reseal(tenant: tenant, kind: kind, id: id) {
                                if kind == .issuerCertificate { report.certificates += 1 } else { report.webhooks += 1 }
                            }
                        } catch let error as SecretBoxError {
                            report.failures.append("tenant \(tenant) \(kind.rawValue) \(id): \(error)")
                        }
                    }
                    if rows.count < batch { break }
                }
            }
        } catch {
            report.stopped = "\(error)"
        }
        return report
    }

    /// One row, in its own transaction as its tenant; false when it no longer
    /// needs it (replaced or resealed meanwhile).
    private func reseal(tenant: Int64, kind: Kind, id: Int64) throws -> Bool {
        let (table, column, key) = kind.columns
        let associatedData = kind.associatedData(tenant: tenant, id: id)
        try connection.query("BEGIN", prepared: false)
        do {
            try connection.query("SELECT set_config('app.tenant_id', \(String(tenant)), true)", prepared: false)
            // A webhook's previous secret (a rotation's, while it still signs)
            // is sealed under the same master key and moves with the secret;
            // one that expired, or that does not open, is dropped.
            let previous: SQLFragment =
                kind == .webhookEndpoint
                ? "CASE WHEN previous_secret_expires_at > now() THEN previous_sealed_secret END" : "NULL::bytea"
            let current = try connection.query(
                """
                SELECT \(unescaped: column), \(previous) FROM \(unescaped: table)
                 WHERE tenant_id = \(tenant) AND \(unescaped: key) = \(id) AND master_key_id <> \(secretBox.currentKeyID) FOR UPDATE
                """, prepared: false)
            guard current.count == 1 else {
                try connection.query("COMMIT", prepared: false)
                return false
            }
            let sealed = try secretBox.resealed(Array(try current[0].decode(Data.self, at: 0)), associatedData: associatedData)
            let sealedPrevious = try current[0].decode(Data?.self, at: 1).flatMap {
                try? secretBox.resealed(Array($0), associatedData: associatedData)
            }
            let previousColumns: SQLFragment =
                kind == .webhookEndpoint
                ? """
                , previous_sealed_secret = \(sealedPrevious.map { Data($0) }),
                  previous_secret_expires_at = CASE WHEN \(sealedPrevious.map { Data($0) })::bytea IS NULL THEN NULL
                                                    ELSE previous_secret_expires_at END
                """ : ""
            try connection.query(
                """
                UPDATE \(unescaped: table) SET \(unescaped: column) = \(Data(sealed)), master_key_id = \(secretBox.currentKeyID)\(previousColumns)
                 WHERE tenant_id = \(tenant) AND \(unescaped: key) = \(id)
                """, prepared: false)
            try connection.query("COMMIT", prepared: false)
            return true
        } catch {
            _ = try? connection.query("ROLLBACK", prepared: false)
            throw error
        }
    }
}
