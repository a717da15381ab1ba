import Postgres

/// Refuses to serve on a database older than this build's code: one whose
/// ledger lacks the newest migration of `sql/migrations` as it was when the
/// server was built (an upgrade that started the new release's servers before
/// `comprobify migrate`). Such a server would answer ready and then fail every
/// request that meets a table or column it lacks. A newer ledger passes: the
/// servers of the release before keep running while migrations are applied.
public enum SchemaCheck {
    /// The newest file of sql/migrations (`MigrateTests` holds it to that).
    public static let newestMigration = "0094_comments_as_the_schema_holds.sql"

    public struct Behind: Error, CustomStringConvertible {
        public let description: String
    }

    public static func verify(pool: ConnectionPool) async throws {
        let newest: String?
        do {
            newest = try await pool.withConnection { try $0.query("SELECT schema_version()")[0].decode(String?.self, at: 0) }
        } catch let error as PostgresError where error.sqlState == .undefinedFunction {
            // Migration 0093 made the function: the ledger is older than that.
            newest = nil
        }
        if let newest, newest >= newestMigration { return }
        throw Behind(
            description:
                "the database's schema is older than this server: its newest migration is "
                + (newest ?? "older than \(newestMigration)") + ", this server needs \(newestMigration). "
                + "Run `comprobify migrate` as the schema's owner before starting the servers of a new release")
    }
}
