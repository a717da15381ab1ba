import Foundation
import NIOConcurrencyHelpers
import Postgres
import TestSupport
import XCTest

@testable import Comprobify

final class MigrateTests: XCTestCase {
    static let migrations = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("sql/migrations")

    /// A fresh, empty database on the test cluster, dropped afterwards.
    func withDatabase(_ body: (String) throws -> Void) throws {
        let name = "migrate_\(UInt32.random(in: 0...UInt32.max))"
        try TestDatabase.query("CREATE DATABASE \(name)")
        defer { _ = try? TestDatabase.query("DROP DATABASE \(name) WITH (FORCE)") }
        guard let range = TestDatabase.ownerURL.range(of: "/postgres", options: .backwards) else {
            throw Unexpected(description: "the owner URL does not name the postgres database")
        }
        try body(TestDatabase.ownerURL.replacingCharacters(in: range, with: "/\(name)"))
    }

    /// A fresh database migrated from a copy of sql/migrations, which the
    /// test may add files to; both removed afterwards.
    func withMigratedCopy(_ body: (String, URL) throws -> Void) throws {
        try withDatabase { url in
            let copy = FileManager.default.temporaryDirectory.appendingPathComponent("migrations-\(UUID().uuidString)")
            try FileManager.default.copyItem(at: Self.migrations, to: copy)
            defer { try? FileManager.default.removeItem(at: copy) }
            try Migrator(directory: copy).run(on: try Connection(conninfo: url))
            try body(url, copy)
        }
    }

    func testRunningTwiceChangesNothing() throws {
        try withDatabase { url in
            let binary = try Executable.url()
            let first = try Executable.run(binary, ["migrate", "--directory", Self.migrations.path], environment: ["DATABASE_URL": url])
            XCTAssertEqual(first.status, 0, first.output)
            XCTAssertTrue(first.output.contains("applied 0001_roles.sql, 0002_schema.sql"), first.output)
            let connection = try Connection(conninfo: url)
            let ledger: PostgresQuery =
                "SELECT string_agg(name || '=' || checksum || '@' || applied_at, ',' ORDER BY name) FROM schema_migrations"
            let schema: PostgresQuery = "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace"
            let before = (
                try connection.query(ledger)[0].decode(String.self, at: 0), try connection.query(schema)[0].decode(Int.self, at: 0)
            )
            let second = try Executable.run(binary, ["migrate", "--directory", Self.migrations.path], environment: ["DATABASE_URL": url])
            XCTAssertEqual(second.status, 0, second.output)
            XCTAssertTrue(second.output.contains("up to date"), second.output)
            let after = (
                try connection.query(ledger)[0].decode(String.self, at: 0), try connection.query(schema)[0].decode(Int.self, at: 0)
            )
            XCTAssertEqual(before.0, after.0)
            XCTAssertEqual(before.1, after.1)
        }
    }

    func testTwoMigratorsAtOnceAreSafe() throws {
        try withDatabase { url in
            let group = DispatchGroup()
            let errors = NIOLockedValueBox<[String]>([])
            for _ in 0..<3 {
                group.enter()
                DispatchQueue.global().async {
                    defer { group.leave() }
                    do {
                        _ = try Migrator(directory: Self.migrations).run(on: try Connection(conninfo: url))
                    } catch {
                        errors.withLockedValue { $0.append("\(error)") }
                    }
                }
            }
            group.wait()
            XCTAssertEqual(errors.withLockedValue { $0 }, [])
            XCTAssertEqual(
                try Connection(conninfo: url).query("SELECT count(*) FROM schema_migrations")[0].decode(Int.self, at: 0),
                try Migrator(directory: Self.migrations).files().count)
        }
    }

    /// Roles are the cluster's, and the advisory lock is per database: a
    /// migration that changes a role another transaction is changing (another
    /// database's migration, say) is tried again once that one ends, instead
    /// of failing with "tuple concurrently updated".
    func testAMigrationThatMeetsAConcurrentRoleChangeIsRetried() throws {
        try withDatabase { url in
            let holder = try Connection(conninfo: TestDatabase.ownerURL)
            try holder.execute(script: "BEGIN")
            // The same setting 0001_roles.sql writes (another database's migration).
            try holder.execute(script: "ALTER ROLE comprobify_app SET statement_timeout = '5s'")
            let outcome = NIOLockedValueBox<Result<[String], Error>?>(nil)
            let done = DispatchSemaphore(value: 0)
            DispatchQueue.global().async {
                let result = Result { try Migrator(directory: Self.migrations).run(on: try Connection(conninfo: url)) }
                outcome.withLockedValue { $0 = result }
                done.signal()
            }
            // 0001_roles.sql waits for the holder's change of comprobify_app.
            Thread.sleep(forTimeInterval: 0.5)
            try holder.execute(script: "COMMIT")
            XCTAssertEqual(done.wait(timeout: .now() + 30), .success)
            let applied = try XCTUnwrap(outcome.withLockedValue { $0 }).get()
            XCTAssertEqual(applied.count, try Migrator(directory: Self.migrations).files().count)
        }
    }

    /// A migration waits a short while for a lock another session holds,
    /// then gives way and tries again: it is applied once the session is done,
    /// and refused with a message saying why when it never is. (Waiting
    /// without a limit, it made every request for that table queue behind it.)
    func testAMigrationWaitsBrieflyForALockAndTriesAgain() throws {
        try withMigratedCopy { url, copy in
            try "ALTER TABLE tenants ADD COLUMN probe integer;\n".write(
                to: copy.appendingPathComponent("9999_probe.sql"), atomically: true, encoding: .utf8)
            var migrator = Migrator(directory: copy)
            migrator.lockTimeoutMilliseconds = 200
            migrator.lockTries = 3
            let holder = try Connection(conninfo: url)
            try holder.execute(script: "BEGIN; LOCK TABLE tenants IN ACCESS SHARE MODE")
            let started = ContinuousClock.now
            XCTAssertThrowsError(try migrator.run(on: try Connection(conninfo: url))) { error in
                XCTAssertTrue("\(error)".contains("9999_probe.sql was not applied: 3 times it waited 200 ms"), "\(error)")
            }
            XCTAssertLessThan(ContinuousClock.now - started, .seconds(10))
            let probe = "SELECT count(*) FROM information_schema.columns WHERE table_name = 'tenants' AND column_name = 'probe'"
            XCTAssertEqual(try holder.query(probe, [], prepared: false)[0].decode(Int64.self, at: 0), 0)

            // Released while the migrator is between its tries: applied.
            migrator.lockTries = 20
            let outcome = NIOLockedValueBox<Result<[String], Error>?>(nil)
            let done = DispatchSemaphore(value: 0)
            let patient = migrator
            DispatchQueue.global().async {
                let result = Result { try patient.run(on: try Connection(conninfo: url)) }
                outcome.withLockedValue { $0 = result }
                done.signal()
            }
            Thread.sleep(forTimeInterval: 1.5)
            try holder.execute(script: "COMMIT")
            XCTAssertEqual(done.wait(timeout: .now() + 30), .success)
            XCTAssertEqual(try XCTUnwrap(outcome.withLockedValue { $0 }).get(), ["9999_probe.sql"])
            XCTAssertEqual(try holder.query(probe, [], prepared: false)[0].decode(Int64.self, at: 0), 1)
        }
    }

    /// A `-- comprobify:no-transaction` migration builds an index
    /// concurrently: writes to the table go on while it waits for a
    /// transaction that was writing before it, and it is recorded once done.
    /// One that fails names the INVALID index it left and is not recorded.
    func testAnIndexBuiltConcurrentlyOutsideATransaction() throws {
        try withMigratedCopy { url, copy in
            try """
            \(Migrator.noTransactionMarker)
            -- The tenants' names, for support.
            CREATE INDEX CONCURRENTLY IF NOT EXISTS tenants_by_name ON tenants (name);

            """.write(to: copy.appendingPathComponent("9998_index.sql"), atomically: true, encoding: .utf8)
            let writer = try Connection(conninfo: url)
            try writer.execute(
                script: "BEGIN; INSERT INTO tenants (email, name) VALUES ('one@example.invalid', 'One')")
            let outcome = NIOLockedValueBox<Result<[String], Error>?>(nil)
            let done = DispatchSemaphore(value: 0)
            DispatchQueue.global().async {
                let result = Result { try Migrator(directory: copy).run(on: try Connection(conninfo: url)) }
                outcome.withLockedValue { $0 = result }
                done.signal()
            }
            let other = try Connection(conninfo: url)
            let waiting =
                """
                SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND pid <> pg_backend_pid()
                   AND query LIKE '%CREATE INDEX CONCURRENTLY%' AND wait_event_type = 'Lock'
                """
            var seen = false
            for _ in 0..<100 where !seen {
                seen = try other.query(waiting, [], prepared: false)[0].decode(Int64.self, at: 0) == 1
                if !seen { Thread.sleep(forTimeInterval: 0.05) }
            }
            XCTAssertTrue(seen, "the build waits for the transaction that was writing")
            // Meanwhile the table takes writes without waiting.
            try other.execute(script: "SET lock_timeout = 1000; INSERT INTO tenants (email, name) VALUES ('two@example.invalid', 'Two')")
            XCTAssertEqual(done.wait(timeout: .now() + 1), .timedOut, "still waiting for the writer")
            try writer.execute(script: "COMMIT")
            XCTAssertEqual(done.wait(timeout: .now() + 30), .success)
            XCTAssertEqual(try XCTUnwrap(outcome.withLockedValue { $0 }).get(), ["9998_index.sql"])
            let valid = try other.query(
                "SELECT indisvalid FROM pg_index WHERE indexrelid = 'tenants_by_name'::regclass", [], prepared: false)
            XCTAssertEqual(try valid[0].decode(Bool.self, at: 0), true)

            // A unique index the rows break: refused, the leftover named, nothing recorded.
            try other.execute(script: "INSERT INTO tenants (email, name) VALUES ('three@example.invalid', 'One')")
            try """
            \(Migrator.noTransactionMarker)
            CREATE UNIQUE INDEX CONCURRENTLY tenants_name_once ON tenants (name);

            """.write(to: copy.appendingPathComponent("9999_unique.sql"), atomically: true, encoding: .utf8)
            XCTAssertThrowsError(try Migrator(directory: copy).run(on: try Connection(conninfo: url))) { error in
                XCTAssertTrue("\(error)".contains("migration 9999_unique.sql failed outside a transaction"), "\(error)")
                XCTAssertTrue("\(error)".contains("INVALID indexes left behind"), "\(error)")
                XCTAssertTrue("\(error)".contains("tenants_name_once"), "\(error)")
            }
            let recorded = try other.query("SELECT count(*) FROM schema_migrations WHERE name = '9999_unique.sql'", [], prepared: false)
            XCTAssertEqual(try recorded[0].decode(Int64.self, at: 0), 0)
        }
    }

    func testAChangedAppliedFileIsRefused() throws {
        try withDatabase { url in
            let copy = FileManager.default.temporaryDirectory.appendingPathComponent("migrations-\(UUID().uuidString)")
            try FileManager.default.copyItem(at: Self.migrations, to: copy)
            defer { try? FileManager.default.removeItem(at: copy) }
            let binary = try Executable.url()
            XCTAssertEqual(try Executable.run(binary, ["migrate", "--directory", copy.path], environment: ["DATABASE_URL": url]).status, 0)
            let file = copy.appendingPathComponent("0002_schema.sql")
            try (try String(contentsOf: file, encoding: .utf8) + "\n-- edited\n").write(to: file, atomically: true, encoding: .utf8)
            let refused = try Executable.run(binary, ["migrate", "--directory", copy.path], environment: ["DATABASE_URL": url])
            XCTAssertNotEqual(refused.status, 0)
            XCTAssertTrue(refused.output.contains("0002_schema.sql was changed"), refused.output)
        }
    }

    /// The set-up of hosted PostgreSQL services: the schema owner is no
    /// superuser, only a role with CREATEROLE that owns the database.
    func testASchemaOwnerThatIsNotASuperuserMigrates() throws {
        let role = "migrator_\(UInt32.random(in: 0...UInt32.max))"
        let password = UUID().uuidString
        let database = "hosted_\(UInt32.random(in: 0...UInt32.max))"
        try TestDatabase.query("CREATE ROLE \(role) LOGIN CREATEROLE NOSUPERUSER PASSWORD '\(password)'")
        defer { _ = try? TestDatabase.query("DROP ROLE \(role)") }
        try TestDatabase.query("CREATE DATABASE \(database) OWNER \(role)")
        defer { _ = try? TestDatabase.query("DROP DATABASE \(database) WITH (FORCE)") }
        guard var url = URLComponents(string: TestDatabase.ownerURL) else {
            throw Unexpected(description: "the owner URL does not parse")
        }
        url.user = role
        url.password = password
        url.path = "/\(database)"
        let conninfo = try XCTUnwrap(url.string)
        XCTAssertFalse(
            try Connection(conninfo: conninfo).query("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")[0].decode(
                Bool.self, at: 0))

        let binary = try Executable.url()
        let run = try Executable.run(binary, ["migrate", "--directory", Self.migrations.path], environment: ["DATABASE_URL": conninfo])
        XCTAssertEqual(run.status, 0, run.output)
        guard run.status == 0 else { return }
        let connection = try Connection(conninfo: conninfo)
        let files = try Migrator(directory: Self.migrations).files().count
        XCTAssertEqual(try connection.query("SELECT count(*) FROM schema_migrations")[0].decode(Int.self, at: 0), files)
        // The definer functions went to comprobify_auth, and the loan that
        // allowed it was taken back.
        XCTAssertEqual(
            try connection.query("SELECT proowner::regrole::text FROM pg_proc WHERE proname = 'authenticate'")[0].decode(
                String.self, at: 0),
            "comprobify_auth")
        XCTAssertFalse(
            try connection.query("SELECT has_schema_privilege('comprobify_auth', 'public', 'CREATE')")[0].decode(Bool.self, at: 0))
        XCTAssertFalse(
            try connection.query("SELECT has_schema_privilege('comprobify_app', 'public', 'CREATE')")[0].decode(Bool.self, at: 0))
    }

    /// A role found with attributes it must not have is reset by 0001 (and by
    /// 0023 for comprobify_mailer), which take away only what a role has.
    func testExistingRolesAreResetByANewDatabasesMigrations() throws {
        try TestDatabase.query("ALTER ROLE comprobify_auth CREATEDB")
        try TestDatabase.query("ALTER ROLE comprobify_mailer LOGIN CREATEROLE")
        defer {
            _ = try? TestDatabase.query("ALTER ROLE comprobify_auth NOCREATEDB")
            _ = try? TestDatabase.query("ALTER ROLE comprobify_mailer NOLOGIN NOCREATEROLE")
        }
        try withDatabase { url in
            try Migrator(directory: Self.migrations).run(on: try Connection(conninfo: url))
        }
        let attributes: PostgresQuery = """
            SELECT string_agg(rolname || ':' || rolcanlogin || rolsuper || rolcreatedb || rolcreaterole || rolbypassrls || rolreplication, ' ' ORDER BY rolname)
              FROM pg_roles WHERE rolname IN ('comprobify_auth', 'comprobify_mailer')
            """
        XCTAssertEqual(
            try TestDatabase.owner().query(attributes)[0].decode(String.self, at: 0),
            "comprobify_auth:falsefalsefalsefalsefalsefalse comprobify_mailer:falsefalsefalsefalsefalsefalse")
    }

    /// 0001 and 0023 were revised; a database that applied their earlier text
    /// is not refused for it, and any other text still is.
    func testAnEarlierTextOfARevisedMigrationIsAccepted() throws {
        try withDatabase { url in
            let binary = try Executable.url()
            XCTAssertEqual(
                try Executable.run(binary, ["migrate", "--directory", Self.migrations.path], environment: ["DATABASE_URL": url]).status, 0)
            let connection = try Connection(conninfo: url)
            for (name, earlier) in Migrator.earlierTexts {
                try connection.query("UPDATE schema_migrations SET checksum = $1 WHERE name = $2", [try XCTUnwrap(earlier.first), name])
            }
            let again = try Executable.run(binary, ["migrate", "--directory", Self.migrations.path], environment: ["DATABASE_URL": url])
            XCTAssertEqual(again.status, 0, again.output)
            XCTAssertTrue(again.output.contains("up to date"), again.output)

            try connection.query(
                "UPDATE schema_migrations SET checksum = $1 WHERE name = '0001_roles.sql'", [String(repeating: "0", count: 64)])
            let refused = try Executable.run(binary, ["migrate", "--directory", Self.migrations.path], environment: ["DATABASE_URL": url])
            XCTAssertNotEqual(refused.status, 0)
            XCTAssertTrue(refused.output.contains("0001_roles.sql was changed"), refused.output)
        }
    }
}
