import Foundation
import Postgres

/// Applies `sql/migrations/NNNN_name.sql` in order, each once and in its own
/// transaction, under an advisory lock (two migrators at once are safe), and
/// records each with its SHA-256 in `schema_migrations`. Refuses to run when a
/// file that was applied has changed since (but for the revisions listed in
/// `revisions`), and applies nothing when an applied file is gone or a
/// pending one is numbered before the last applied (`checkLedger`). The schema owner need not be a superuser: a role with
/// CREATEROLE that owns the database will do (`lendsSchemaToDefinerOwner`).
///
/// A migration waits at most `lockTimeoutMilliseconds` for each lock it
/// takes, then rolls back and tries again, `lockTries` times in all: while a
/// migration waits for a table's lock (held by a long transaction, say),
/// every request for that table queues behind it, so the wait is kept short.
///
/// A file whose first line is `-- comprobify:no-transaction` runs outside a
/// transaction, for the statements PostgreSQL refuses inside one
/// (`CREATE INDEX CONCURRENTLY`, `DROP INDEX CONCURRENTLY`): it holds one
/// statement, is recorded in the ledger once it succeeded, and waits as long
/// as it must (such a statement takes no lock that queues requests; it waits
/// for the transactions already running to end). It runs again after a crash
/// between the two, so it is written to be repeatable (`IF NOT EXISTS`). A
/// failed index build leaves an INVALID index, which the failure names.
public struct Migrator: Sendable {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    public let directory: URL
    public var lockTimeoutMilliseconds = 5_000
    public var lockTries = 10
    /// After this long a statement run outside a transaction (an index built
    /// concurrently, which waits without a word for every older transaction)
    /// is said to be still running, once, with where to look.
    public var quietWaitSeconds = 5.0

    public init(directory: URL) {
        self.directory = directory
    }

    /// A migration revised after release: a ledger that recorded one of its
    /// earlier texts is accepted only while the file is the revision itself.
    struct Revision: Sendable {
        /// SHA-256 of the revised text, the file as it now is.
        let revised: String
        /// SHA-256 of each earlier text a database may have applied (kept in sql/earlier).
        let earlier: Set<String>
    }

    /// The revisions, by file name. A revision does what its earlier text did
    /// wherever that text worked, and mends where it did not: 0001 and 0023 now take away
    /// only the role attributes a role has, so that a schema owner that is
    /// not a superuser can run them, with the same result on the roles they
    /// create or reset; 0066 adds its foreign key NOT VALID, for 0069 to
    /// check the rows without blocking writes, where its earlier text (applied
    /// only by development databases before its release) checked them at
    /// once; 0063 lifts its table's FORCE ROW LEVEL SECURITY for its
    /// transaction, so that an owner that is not a superuser sees the rows it
    /// mends, where its earlier text did the same for a superuser and nothing
    /// for such an owner (whose database then stops at 0067 if it holds a
    /// tenant's second live token: sql/README.md says what to do). Any other
    /// change to an applied file is refused, these files' further changes
    /// included.
    static let revisions: [String: Revision] = [
        "0001_roles.sql": Revision(
            revised: "cb94430b465745a457f4bc9a50816c9e8e0929fc778a53011522cce231fb2b0e",
            earlier: ["3642fff059d50e2b47b362b99d7ec80a86193b13f7758f01a06717cc2d09bd7c"]),
        "0023_outbox_relay.sql": Revision(
            revised: "40913a64f7682bbe9b86c8daeafc6901d5cd6363095e124d718f08e8984de716",
            earlier: ["4129afb9e9e221331d5d04983040aeb08132264e08169b447cab54fb1eb7627f"]),
        "0063_superseded_verification_tokens.sql": Revision(
            revised: "a362160354f3ca3ec709d167a4b88fbd48d4d42a7f8b7360b7d060eae294c16a",
            earlier: ["fb025727ad6928ee07c2aab5857d181fe46b442b17a8f05d1d9cdb9e1bf50571"]),
        "0066_webhook_attempts_match_their_delivery.sql": Revision(
            revised: "17942d39aba8167368bdb071be781b006926223ce7ae965b2d2016aea5d0192b",
            earlier: ["84b81a4234b8c9c1c7536f6b713f4e81c9cf7dce6e65738fbe9094ed50845760"]),
    ]

    /// Whether a ledger row recording `recorded` for the file `name`, whose
    /// text now has the SHA-256 `checksum`, stands.
    static func stands(_ name: String, recorded: String, checksum: String) -> Bool {
        if recorded == checksum { return true }
        guard let revision = revisions[name] else { return false }
        return checksum == revision.revised && revision.earlier.contains(recorded)
    }

    /// The first line of a migration that runs outside a transaction.
    public static let noTransactionMarker = "-- comprobify:no-transaction"

    /// An arbitrary but fixed key for pg_advisory_lock.
    static let lockKey: Int64 = 0x636F_6D70_726F_62

    /// What the run has to say besides its result: that it waits for the
    /// migration lock and who holds it, that the database is ahead of these
    /// files (standard error by default).
    public var notice: @Sendable (String) -> Void = { text in
        FileHandle.standardError.write(Data("migrations: \(text)\n".utf8))
    }

    /// Ledger names that may stand without a file: migrations renamed
    /// before their release, which only development databases of that time
    /// applied (0063's first text also built the index 0067 now builds
    /// concurrently, IF NOT EXISTS).
    static let retired: Set<String> = ["0018_one_key_per_token_and_counters_by_one.sql", "0063_one_pending_verification.sql"]

    /// Files added after a migration numbered above them had been applied
    /// somewhere (0052 came a minute after 0053): applied late, as they
    /// always were, where a database has the later one already; and 0063 under
    /// its released name, where a development database applied its first
    /// text and 0064-0066 (see `retired`).
    static let appliedLate: Set<String> = ["0052_reseal_lookup.sql", "0063_superseded_verification_tokens.sql"]

    /// Refuses to apply anything to a database whose ledger does not fit the
    /// files: an applied migration whose file is gone (removed, or renamed:
    /// a renamed one would be applied again under its new name), or a
    /// pending file numbered before the last applied one (written on a branch
    /// that was behind: databases would differ in the order their migrations
    /// ran). Applied migrations numbered after every file are a later
    /// release's (this one was rolled back to): nothing of these files is
    /// missing, so the run goes on, and says so.
    static func checkLedger(
        applied: some Collection<String>, files: [String], directory: URL, notice: (String) -> Void = { _ in }
    ) throws {
        let present = Set(files)
        let unknown = applied.filter { !present.contains($0) && !retired.contains($0) }.sorted()
        let newest = files.max() ?? ""
        let missing = unknown.filter { $0 < newest }
        guard missing.isEmpty else {
            throw Failure(
                description:
                    "migrations \(missing.joined(separator: ", ")) were applied to this database but are not in \(directory.path): "
                    + "a migration is never removed or renamed; run the release that has them. Nothing was applied")
        }
        if !unknown.isEmpty {
            notice("this database has migrations of a later release (\(unknown.joined(separator: ", "))); these files are all older")
        }
        guard let last = applied.filter(present.contains).max() else { return }
        let appliedNames = Set(applied)
        let early = files.filter { !appliedNames.contains($0) && $0 < last && !appliedLate.contains($0) }
        guard early.isEmpty else {
            throw Failure(
                description: "migrations \(early.joined(separator: ", ")) are numbered before \(last), which this database has applied: "
                    + "number them after the last migration. Nothing was applied")
        }
    }

    /// Who holds the migration lock: a pid, its role and application, or "another session" when it cannot be told.
    static func lockHolder(on connection: Connection) throws -> String {
        let rows = try connection.query(
            """
            SELECT l.pid, coalesce(a.usename::text, '?'), coalesce(a.application_name, '')
              FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
             WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
               AND l.classid = (\(Migrator.lockKey)::bigint >> 32)::oid AND l.objid = (\(Migrator.lockKey)::bigint & 4294967295)::oid
            """, prepared: false)
        guard let row = rows.first else { return "another session" }
        let (pid, user, application) = try row.decode((Int32, String, String).self)
        return "pid \(pid) (role \(user)\(application.isEmpty ? "" : ", \(application)")): see pg_stat_activity"
    }

    /// The migration files, sorted by name.
    public func files() throws -> [(name: String, sql: String)] {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory.path, isDirectory: &isFolder), isFolder.boolValue else {
            throw Failure(
                description:
                    "no folder of migrations at \(directory.standardizedFileURL.path): run from the checkout (sql/migrations) or name the folder with --directory"
            )
        }
        let names = try FileManager.default.contentsOfDirectory(atPath: directory.path)
            .filter { $0.hasSuffix(".sql") }
            .sorted()
        return try names.map { ($0, try String(contentsOf: directory.appendingPathComponent($0), encoding: .utf8)) }
    }

    /// Applies pending migrations; returns the names applied by this run.
    @discardableResult
    public func run(on connection: Connection) throws -> [String] {
        let files = try files()
        guard !files.isEmpty else { throw Failure(description: "no .sql files in \(directory.path)") }
        try connection.execute(script: "SET client_min_messages = warning")
        // Asked for again every 50 ms rather than waited for in one statement:
        // a session waiting in a statement holds a snapshot, and a migration's
        // CREATE INDEX CONCURRENTLY waits for every older snapshot of the
        // database, so the first migrator would wait for the second while the
        // second waits for its lock (a deadlock, which PostgreSQL ends by
        // failing one of them).
        var waited = 0
        while try !connection.query("SELECT pg_try_advisory_lock(\(Migrator.lockKey))", prepared: false)[0].decode(
            Bool.self, at: 0)
        {
            // Said once, after a second: a migrator waiting without a word
            // looks hung. Whoever holds the lock is named.
            if waited == 20 {
                notice("waiting for the migration lock, held by \((try? Migrator.lockHolder(on: connection)) ?? "another session")")
            }
            waited += 1
            Thread.sleep(forTimeInterval: 0.05)
        }
        defer { _ = try? connection.query("SELECT pg_advisory_unlock(\(Migrator.lockKey))", prepared: false) }
        try Migrator.checkSchemaOwnership(on: connection)
        // After the advisory lock: a second migrator waits for the first whole.
        try connection.execute(script: "SET lock_timeout = \(max(lockTimeoutMilliseconds, 1))")
        // A statement_timeout the owner role may carry would cut a long
        // migration (a validation, an index) short: migrations take the time they need.
        try connection.execute(script: "SET statement_timeout = 0")
        try connection.execute(
            script: """
                CREATE TABLE IF NOT EXISTS schema_migrations (
                    name       text PRIMARY KEY,
                    checksum   text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now()
                );
                COMMENT ON TABLE schema_migrations IS 'The migrations ledger: each file of sql/migrations applied, once, with the SHA-256 of its text.';
                """
        )
        var applied: [String: String] = [:]
        for row in try connection.query("SELECT name, checksum FROM schema_migrations", prepared: false).rows {
            applied[try row.decode(String.self, at: 0)] = try row.decode(String.self, at: 1)
        }
        try Migrator.checkLedger(applied: applied.keys, files: files.map(\.name), directory: directory, notice: notice)
        var ran: [String] = []
        for (name, sql) in files {
            let checksum = Crypto.hex(Crypto.sha256(sql))
            if let recorded = applied[name] {
                guard Migrator.stands(name, recorded: recorded, checksum: checksum) else {
                    throw Failure(
                        description:
                            "migration \(name) was changed after it was applied (checksum \(recorded.prefix(12))… is now \(checksum.prefix(12))…); add a new migration instead"
                    )
                }
                continue
            }
            if Migrator.runsOutsideATransaction(sql) {
                try applyOutsideATransaction(name: name, sql: sql, checksum: checksum, on: connection)
                ran.append(name)
                continue
            }
            do {
                try Migrator.retryingLockTimeouts(
                    tries: lockTries,
                    waiting: { tried in
                        // Said once, at the first wait given up: the run is not stuck.
                        guard tried == 1 else { return }
                        notice(
                            "migration \(name) waits for a lock another session holds on what it changes (pg_locks); it tries again every second, \(max(lockTries, 1)) times in all, each waiting \(lockTimeoutMilliseconds) ms"
                        )
                    }
                ) {
                    try Migrator.retryingClusterCollisions {
                        do {
                            try connection.execute(script: "BEGIN")
                            let lending = try Migrator.lendsSchemaToDefinerOwner(on: connection)
                            if lending { try connection.execute(script: "GRANT CREATE ON SCHEMA public TO comprobify_auth") }
                            try connection.execute(script: sql)
                            if lending { try connection.execute(script: "REVOKE CREATE ON SCHEMA public FROM comprobify_auth") }
                            try connection.query(
                                "INSERT INTO schema_migrations (name, checksum) VALUES (\(name), \(checksum))", prepared: false)
                            try connection.execute(script: "COMMIT")
                        } catch {
                            _ = try? connection.execute(script: "ROLLBACK")
                            throw error
                        }
                    }
                }
            } catch let error as PostgresError where error.hasCode(SQLState.lockNotAvailable) {
                throw Failure(
                    description: "migration \(name) was not applied: \(max(lockTries, 1)) times it waited \(lockTimeoutMilliseconds) ms "
                        + "for a lock another session holds (see pg_locks and pg_stat_activity); run it again once that session is done")
            } catch {
                throw Failure(description: "migration \(name) failed: \(error)")
            }
            ran.append(name)
        }
        return ran
    }

    /// Whether this migration's transaction lends comprobify_auth the right to
    /// create in schema public, taken back before it commits (so no other
    /// session ever sees it): a migration hands its SECURITY DEFINER functions
    /// to comprobify_auth (`ALTER FUNCTION ... OWNER TO`), and PostgreSQL lets
    /// a role own an object only where it could create it, unless the role
    /// making the change is a superuser. So a schema owner that is not one (a
    /// role with CREATEROLE that owns the database, as hosted PostgreSQL
    /// services give) lends it for the migration; a superuser needs no loan.
    /// Before 0001 made comprobify_auth there is no one to lend to. The
    /// revoke also takes away a CREATE on public that someone had granted
    /// comprobify_auth outside the migrations: it is never meant to have one.
    static func lendsSchemaToDefinerOwner(on connection: Connection) throws -> Bool {
        try connection.query(
            "SELECT NOT rolsuper AND to_regrole('comprobify_auth') IS NOT NULL FROM pg_roles WHERE rolname = current_user",
            prepared: false)[0].decode(Bool.self, at: 0)
    }

    /// A schema owner that is not a superuser must be able to act as the
    /// owner of schema `public` (PostgreSQL 15 makes it `pg_database_owner`;
    /// a database upgraded from an earlier release may still have it owned by
    /// the bootstrap superuser). Otherwise 0002's `REVOKE CREATE ON SCHEMA
    /// public FROM PUBLIC` and the loan to comprobify_auth only warn, and every
    /// role, comprobify_app included, could create objects in a schema on the
    /// definer functions' search path: refused before anything is applied.
    static func checkSchemaOwnership(on connection: Connection) throws {
        let row = try connection.query(
            """
            SELECT r.rolsuper OR pg_has_role(current_user, n.nspowner, 'USAGE'), n.nspowner::regrole::text, current_user::text
              FROM pg_roles r, pg_namespace n
             WHERE r.rolname = current_user AND n.nspname = 'public'
            """, prepared: false)
        guard row.count == 1 else { throw Failure(description: "this database has no schema public") }
        guard try row[0].decode(Bool.self, at: 0) else {
            let (owner, role) = try row[0].decode((String, String).self, from: 1)
            if ["comprobify_app", "comprobify_auth", "comprobify_mailer"].contains(role) {
                throw Failure(
                    description:
                        "connected as \(role), one of the roles the migrations make for the service: migrate connects as the schema's owner "
                        + "(the role that owns the database, or a superuser), with that role's URL in DATABASE_URL"
                )
            }
            if owner == "pg_database_owner" {
                // As PostgreSQL 15 makes it, but the database is another role's
                // (createdb run by a superuser, a restore into it): the schema
                // follows the database's owner.
                let database = try connection.query(
                    "SELECT current_database()::text, pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = current_database()",
                    prepared: false)
                let (name, databaseOwner) = try database[0].decode((String, String).self)
                throw Failure(
                    description:
                        "schema public belongs to the database's owner, \(databaseOwner), not to \(role), and \(role) is not a superuser: "
                        + "have a superuser run ALTER DATABASE \(quotedIdentifier(name)) OWNER TO \(quotedIdentifier(role)) "
                        + "(or create the database with createdb -O \(role)), or migrate as a superuser"
                )
            }
            throw Failure(
                description:
                    "schema public is owned by \(owner), whose rights \(role) does not have, and \(role) is not a superuser: "
                    + "have a superuser run ALTER SCHEMA public OWNER TO pg_database_owner (as PostgreSQL 15 makes it), or migrate as a superuser"
            )
        }
    }

    static func runsOutsideATransaction(_ sql: String) -> Bool {
        sql.prefix { $0 != "\n" && $0 != "\r\n" }.trimmingCharacters(in: .whitespaces) == noTransactionMarker
    }

    /// A `noTransactionMarker` migration: its one statement with no lock
    /// timeout, then its ledger row, unless an INVALID index is left in the
    /// schema: a build that failed earlier leaves one, and a run again of
    /// `CREATE INDEX CONCURRENTLY IF NOT EXISTS` takes it for built.
    private func applyOutsideATransaction(name: String, sql: String, checksum: String, on connection: Connection) throws {
        let advice = "drop them with DROP INDEX CONCURRENTLY before running it again"
        do {
            try connection.execute(script: "SET lock_timeout = 0")
            defer { _ = try? connection.execute(script: "SET lock_timeout = \(max(lockTimeoutMilliseconds, 1))") }
            let (notice, pid, seconds) = (self.notice, connection.backendPID, quietWaitSeconds)
            let after = seconds == seconds.rounded() ? String(Int(seconds)) : String(seconds)
            let stillRunning = DispatchWorkItem {
                notice(
                    "migration \(name) still runs after \(after) s: an index built concurrently waits for every transaction "
                        + "older than it to end (a pg_dump under way, a session idle in a transaction); pg_stat_progress_create_index "
                        + "shows its phase, SELECT pg_blocking_pids(\(pid)) who it waits for")
            }
            DispatchQueue.global().asyncAfter(deadline: .now() + seconds, execute: stillRunning)
            defer { stillRunning.cancel() }
            try connection.execute(script: sql)
        } catch {
            let left = (try? Migrator.invalidIndexes(on: connection)).flatMap { $0 }.map {
                "; INVALID indexes left behind (\(advice)): \($0)"
            }
            throw Failure(description: "migration \(name) failed outside a transaction: \(error)\(left ?? "")")
        }
        if let invalid = try Migrator.invalidIndexes(on: connection) {
            throw Failure(description: "migration \(name) ran, but INVALID indexes are in the schema (\(advice)): \(invalid); not recorded")
        }
        try connection.query("INSERT INTO schema_migrations (name, checksum) VALUES (\(name), \(checksum))", prepared: false)
    }

    /// The INVALID indexes of schema public (a concurrent build that failed),
    /// or nil. Not those being built right now (a DBA's CREATE or REINDEX
    /// CONCURRENTLY in progress is INVALID until it ends).
    private static func invalidIndexes(on connection: Connection) throws -> String? {
        try connection.query(
            """
            SELECT string_agg(i.indexrelid::regclass::text, ', ' ORDER BY 1)
              FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
             WHERE NOT i.indisvalid AND c.relnamespace = 'public'::regnamespace
               AND i.indexrelid NOT IN (SELECT p.index_relid FROM pg_stat_progress_create_index p
                                         WHERE p.datid = (SELECT oid FROM pg_database WHERE datname = current_database())
                                           AND p.index_relid <> 0)
            """, prepared: false)[0].decode(String?.self, at: 0)
    }

    /// Lets comprobify_app log in with `password` (local set-ups and compose).
    /// Only the password's hash is sent, as psql's \password does: the
    /// statement may be logged (log_statement = ddl) or kept in statistics.
    public static func grantLogin(on connection: Connection, password: String) throws {
        let hashed = try connection.hashedPassword(password, user: "comprobify_app")
        // ALTER ROLE takes no parameters; quote the literal with the server's own function.
        let literal = try connection.query("SELECT quote_literal(\(hashed))", prepared: false)[0].decode(String.self, at: 0)
        try retryingClusterCollisions {
            try connection.execute(script: "ALTER ROLE comprobify_app LOGIN PASSWORD \(literal)")
        }
    }

    /// Roles belong to the cluster, not to a database, and the advisory lock
    /// is per database: a migration of another database of the same cluster
    /// can change the same role at the same moment. PostgreSQL then refuses
    /// the later change ("tuple concurrently updated", or a duplicate role
    /// when both create it); `body`, a whole transaction rolled back on
    /// failure, runs again, up to five times in all.
    static func retryingClusterCollisions(_ body: () throws -> Void) throws {
        var attempt = 1
        while true {
            do {
                return try body()
            } catch let error as PostgresError where attempt < 5 && isClusterCollision(error) {
                attempt += 1
                Thread.sleep(forTimeInterval: 0.05 * Double(attempt))
            }
        }
    }

    /// `body`, a whole transaction rolled back on failure, again while it
    /// gives up waiting for a lock (lock_timeout), `tries` times in all, a
    /// second apart: the session in the way may be about to finish.
    /// `waiting` hears of each try given up (1, 2, ...) before the next.
    static func retryingLockTimeouts(tries: Int, waiting: (Int) -> Void = { _ in }, _ body: () throws -> Void) throws {
        var attempt = 1
        while true {
            do {
                return try body()
            } catch let error as PostgresError where attempt < tries && error.hasCode(SQLState.lockNotAvailable) {
                waiting(attempt)
                attempt += 1
                Thread.sleep(forTimeInterval: 1)
            }
        }
    }

    static func isClusterCollision(_ error: PostgresError) -> Bool {
        switch error.sqlState {
        case .transactionRollback: return true
        // Read from the error's fields, not its message, which the server may
        // write in another language: a role created twice collides on
        // pg_authid's unique index; "tuple concurrently updated" is an
        // internal error (XX000), and retrying any of those is harmless.
        case .uniqueViolation: return error.constraint?.hasPrefix("pg_authid") ?? false
        case "XX000": return true
        default: return false
        }
    }
}
