import Foundation
import Logging
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
            XCTAssertNotNil(TestDatabase.sessionBlocked(by: holder.backendPID), "the migration waits for the holder")
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
            let notices = NIOLockedValueBox<[String]>([])
            migrator.notice = { text in notices.withLockedValue { $0.append(text) } }
            let holder = try Connection(conninfo: url)
            try holder.execute(script: "BEGIN; LOCK TABLE tenants IN ACCESS SHARE MODE")
            let started = ContinuousClock.now
            XCTAssertThrowsError(try migrator.run(on: try Connection(conninfo: url))) { error in
                XCTAssertTrue("\(error)".contains("9999_probe.sql was not applied: 3 times it waited 200 ms"), "\(error)")
            }
            // The wait is said once, as it begins: the run is not silent meanwhile.
            XCTAssertEqual(
                notices.withLockedValue { $0 },
                [
                    "migration 9999_probe.sql waits for a lock another session holds on what it changes (pg_locks); it tries again every second, 3 times in all, each waiting 200 ms"
                ])
            XCTAssertLessThan(ContinuousClock.now - started, .seconds(10))
            let probe = "SELECT count(*) FROM information_schema.columns WHERE table_name = 'tenants' AND column_name = 'probe'"
            XCTAssertEqual(try holder.query(probe, [], prepared: false)[0].decode(Int64.self, at: 0), 0)

            // Released while the migrator is between its tries: applied.
            migrator.lockTries = 20
            migrator.notice = { _ in }
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
            let notices = NIOLockedValueBox<[String]>([])
            let done = DispatchSemaphore(value: 0)
            DispatchQueue.global().async {
                var migrator = Migrator(directory: copy)
                migrator.quietWaitSeconds = 0.5
                migrator.notice = { text in notices.withLockedValue { $0.append(text) } }
                let result = Result { try migrator.run(on: try Connection(conninfo: url)) }
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
            // A wait without a word looks hung: said once, with where to look.
            for _ in 0..<100 where notices.withLockedValue({ $0.isEmpty }) { Thread.sleep(forTimeInterval: 0.05) }
            let said = notices.withLockedValue { $0 }
            XCTAssertEqual(said.count, 1, said.joined(separator: "\n"))
            XCTAssertTrue(said.first?.hasPrefix("migration 9998_index.sql still runs after 0.5 s") == true, said.joined(separator: "\n"))
            XCTAssertTrue(said.first?.contains("SELECT pg_blocking_pids(") == true, said.joined(separator: "\n"))
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
            CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS tenants_name_once ON tenants (name);

            """.write(to: copy.appendingPathComponent("9999_unique.sql"), atomically: true, encoding: .utf8)
            XCTAssertThrowsError(try Migrator(directory: copy).run(on: try Connection(conninfo: url))) { error in
                XCTAssertTrue("\(error)".contains("migration 9999_unique.sql failed outside a transaction"), "\(error)")
                XCTAssertTrue("\(error)".contains("INVALID indexes left behind"), "\(error)")
                XCTAssertTrue("\(error)".contains("tenants_name_once"), "\(error)")
            }
            // Run again as it is, its IF NOT EXISTS finds the INVALID index and
            // builds nothing: still refused, still not recorded.
            XCTAssertThrowsError(try Migrator(directory: copy).run(on: try Connection(conninfo: url))) { error in
                XCTAssertTrue("\(error)".contains("migration 9999_unique.sql ran, but INVALID indexes are in the schema"), "\(error)")
                XCTAssertTrue("\(error)".contains("tenants_name_once"), "\(error)")
            }
            let recorded = try other.query("SELECT count(*) FROM schema_migrations WHERE name = '9999_unique.sql'", [], prepared: false)
            XCTAssertEqual(try recorded[0].decode(Int64.self, at: 0), 0)
        }
    }

    /// An applied migration whose file is gone (removed, or renamed: it would
    /// be applied again under its new name) stops the run before anything is
    /// applied, naming it.
    func testAnAppliedMigrationWhoseFileIsGoneIsRefused() throws {
        try withMigratedCopy { url, copy in
            try FileManager.default.moveItem(
                at: copy.appendingPathComponent("0005_comprobantes.sql"), to: copy.appendingPathComponent("0005_renamed.sql"))
            try Data("CREATE TABLE never_made (id int);\n".utf8).write(to: copy.appendingPathComponent("9990_next.sql"))
            XCTAssertThrowsError(try Migrator(directory: copy).run(on: try Connection(conninfo: url))) { error in
                XCTAssertTrue("\(error)".contains("0005_comprobantes.sql were applied"), "\(error)")
            }
            XCTAssertEqual(
                try Connection(conninfo: url).query("SELECT to_regclass('never_made') IS NULL")[0].decode(Bool.self, at: 0), true,
                "nothing was applied")
        }
    }

    /// A migration that fails part-way leaves nothing of itself (its
    /// statements and its ledger row are one transaction) and stops the run,
    /// naming the file and PostgreSQL's error; mended, it is applied by the
    /// next run, and the ones after it too.
    func testAFailingMigrationLeavesNothingAndIsAppliedOnceMended() throws {
        try withMigratedCopy { url, copy in
            let broken = copy.appendingPathComponent("9990_broken.sql")
            try Data("CREATE TABLE half_made (id int);\nINSERT INTO half_made VALUES (1);\nSELECT 1 / 0;\n".utf8).write(to: broken)
            try Data("CREATE TABLE made_after (id int);\n".utf8).write(to: copy.appendingPathComponent("9991_after.sql"))
            XCTAssertThrowsError(try Migrator(directory: copy).run(on: try Connection(conninfo: url))) { error in
                XCTAssertTrue("\(error)".contains("9990_broken.sql"), "\(error)")
                XCTAssertTrue("\(error)".contains("division by zero"), "\(error)")
            }
            let state: PostgresQuery = """
                SELECT to_regclass('half_made') IS NULL, to_regclass('made_after') IS NULL,
                       (SELECT count(*) FROM schema_migrations WHERE name >= '9990')
                """
            let (noHalf, noAfter, recorded) = try Connection(conninfo: url).query(state)[0].decode((Bool, Bool, Int64).self)
            XCTAssertTrue(noHalf, "the failed migration's table is gone with it")
            XCTAssertTrue(noAfter, "the run stopped there")
            XCTAssertEqual(recorded, 0, "no ledger row")
            try Data("CREATE TABLE half_made (id int);\nINSERT INTO half_made VALUES (1);\n".utf8).write(to: broken)
            XCTAssertEqual(try Migrator(directory: copy).run(on: try Connection(conninfo: url)), ["9990_broken.sql", "9991_after.sql"])
            XCTAssertEqual(try Connection(conninfo: url).query("SELECT count(*) FROM half_made")[0].decode(Int64.self, at: 0), 1)
        }
    }

    /// A new file numbered before the last applied migration (written on a
    /// branch that was behind) is refused, not applied out of order.
    func testAMigrationNumberedBeforeTheLastAppliedIsRefused() throws {
        try withMigratedCopy { url, copy in
            try Data("CREATE TABLE late_one (id int);\n".utf8).write(to: copy.appendingPathComponent("0030a_late.sql"))
            XCTAssertThrowsError(try Migrator(directory: copy).run(on: try Connection(conninfo: url))) { error in
                XCTAssertTrue("\(error)".contains("0030a_late.sql are numbered before"), "\(error)")
            }
            XCTAssertEqual(
                try Connection(conninfo: url).query("SELECT to_regclass('late_one') IS NULL")[0].decode(Bool.self, at: 0), true,
                "nothing was applied")
        }
    }

    /// A release rolled back to, whose files are all older than some the
    /// database has applied, migrates (nothing to do) and says so.
    func testAnEarlierReleaseMigratesADatabaseALaterOneMigrated() throws {
        try withMigratedCopy { url, copy in
            let later = copy.appendingPathComponent("9990_later.sql")
            try Data("CREATE TABLE later_one (id int);\n".utf8).write(to: later)
            try Migrator(directory: copy).run(on: try Connection(conninfo: url))
            try FileManager.default.removeItem(at: later)
            let notices = NIOLockedValueBox<[String]>([])
            var migrator = Migrator(directory: copy)
            migrator.notice = { text in notices.withLockedValue { $0.append(text) } }
            XCTAssertEqual(try migrator.run(on: try Connection(conninfo: url)), [])
            XCTAssertEqual(
                notices.withLockedValue { $0 },
                ["this database has migrations of a later release (9990_later.sql); these files are all older"])
        }
    }

    /// A development database that applied 0063 under its first name (which
    /// also built the one-live-token index) and 0066's first text (its
    /// foreign key checked at once) migrates: 0063 under its released name is
    /// applied late, 0067 finds its index built, 0069 validates a key that
    /// is valid. Made by rewriting a migrated database's ledger that way.
    func testADatabaseOfTheFirstTextsOf0063And0066Migrates() throws {
        try withDatabase { url in
            XCTAssertEqual(try migrate(url).status, 0)
            let connection = try Connection(conninfo: url)
            let earlier = try String(
                contentsOf: Self.earlier.appendingPathComponent("0066_webhook_attempts_match_their_delivery.sql"), encoding: .utf8)
            try connection.query(
                "UPDATE schema_migrations SET checksum = $1 WHERE name = '0066_webhook_attempts_match_their_delivery.sql'",
                [Crypto.hex(Crypto.sha256(earlier))])
            try connection.execute(
                script: """
                    UPDATE schema_migrations SET name = '0063_one_pending_verification.sql' WHERE name = '0063_superseded_verification_tokens.sql';
                    DELETE FROM schema_migrations WHERE name >= '0067';
                    """)
            let ran = try Migrator(directory: Self.migrations).run(on: connection)
            let later = try FileManager.default.contentsOfDirectory(atPath: Self.migrations.path)
                .filter { $0.hasSuffix(".sql") && $0 > "0067" }.sorted()
            XCTAssertEqual(
                later.prefix(3),
                [
                    "0067_one_live_verification_per_tenant.sql", "0068_one_live_verification_comment.sql",
                    "0069_validate_webhook_attempts_of_their_delivery.sql",
                ])
            XCTAssertEqual(ran, ["0063_superseded_verification_tokens.sql"] + later)
        }
    }

    /// A folder of migrations that is not there (migrate run outside the
    /// checkout, a mistyped --directory) is named in one plain line, and the
    /// database is not touched.
    func testAMissingFolderOfMigrationsIsNamed() throws {
        try withDatabase { url in
            let missing = FileManager.default.temporaryDirectory.appendingPathComponent("no-migrations-\(UUID().uuidString)")
            let run = try migrate(url, directory: missing)
            XCTAssertEqual(run.status, 1)
            XCTAssertTrue(run.output.contains("no folder of migrations at \(missing.path)"), run.output)
            XCTAssertTrue(run.output.contains("--directory"), run.output)
            XCTAssertFalse(run.output.contains("NSCocoaErrorDomain"), run.output)
            let connection = try Connection(conninfo: url)
            XCTAssertEqual(
                try connection.query("SELECT count(*) FROM pg_tables WHERE tablename = 'schema_migrations'")[0].decode(Int.self, at: 0), 0)
        }
    }

    /// 0052 was added after 0053: a database migrated between the two
    /// applies it late, as it always did.
    func testTheMigrationAddedAfterAHigherNumberedOneIsAppliedLate() throws {
        try withDatabase { url in
            let early = FileManager.default.temporaryDirectory.appendingPathComponent("migrations-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: early, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: early) }
            for name in try FileManager.default.contentsOfDirectory(atPath: Self.migrations.path)
            where name <= "0053_drop_webhook_deliveries_due.sql" && name != "0052_reseal_lookup.sql" {
                try FileManager.default.copyItem(at: Self.migrations.appendingPathComponent(name), to: early.appendingPathComponent(name))
            }
            try Migrator(directory: early).run(on: try Connection(conninfo: url))
            let ran = try Migrator(directory: Self.migrations).run(on: try Connection(conninfo: url))
            XCTAssertEqual(ran.first, "0052_reseal_lookup.sql")
        }
    }

    /// A migrator waiting for the lock says so, once, naming who holds it in
    /// its own database (another database's holder is not its concern),
    /// then goes on when it is free.
    func testAWaitingMigratorSaysWhoHoldsTheLock() throws {
        try withMigratedCopy { url, copy in
            let elsewhere = try Connection(conninfo: TestDatabase.ownerURL)
            try elsewhere.execute(script: "SET application_name = 'another database'")
            _ = try elsewhere.query("SELECT pg_advisory_lock(\(Migrator.lockKey))")
            defer { _ = try? elsewhere.query("SELECT pg_advisory_unlock(\(Migrator.lockKey))") }
            let holder = try Connection(conninfo: url)
            try holder.execute(script: "SET application_name = 'holding migrations'")
            _ = try holder.query("SELECT pg_advisory_lock(\(Migrator.lockKey))")
            let holderPID = try holder.query("SELECT pg_backend_pid()")[0].decode(Int32.self, at: 0)
            let notices = NIOLockedValueBox<[String]>([])
            var migrator = Migrator(directory: copy)
            migrator.notice = { text in notices.withLockedValue { $0.append(text) } }
            let waiting = migrator
            let done = DispatchSemaphore(value: 0)
            let result = NIOLockedValueBox<String?>(nil)
            DispatchQueue.global().async {
                do {
                    let ran = try waiting.run(on: try Connection(conninfo: url))
                    result.withLockedValue { $0 = "\(ran)" }
                } catch {
                    result.withLockedValue { $0 = "\(error)" }
                }
                done.signal()
            }
            Thread.sleep(forTimeInterval: 2)
            XCTAssertEqual(
                notices.withLockedValue { $0 },
                ["waiting for the migration lock, held by pid \(holderPID) (role postgres, holding migrations): see pg_stat_activity"])
            _ = try holder.query("SELECT pg_advisory_unlock(\(Migrator.lockKey))")
            XCTAssertEqual(done.wait(timeout: .now() + 10), .success)
            XCTAssertEqual(result.withLockedValue { $0 }, "[]", "the run went on once the lock was free")
            XCTAssertEqual(notices.withLockedValue { $0 }.count, 1)
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

    /// `migrate` with COMPROBIFY_APP_PASSWORD sends the password hashed
    /// (SCRAM), never in clear: ALTER ROLE's text may be logged. The app
    /// role still logs in with it. (The password is the one the tests use.)
    func testTheAppPasswordIsSentHashed() throws {
        let password = try XCTUnwrap(URLComponents(string: TestDatabase.appURL)?.password)
        let owner = try Connection(conninfo: TestDatabase.ownerURL)
        let hashed = try owner.hashedPassword(password, user: "comprobify_app")
        XCTAssertTrue(hashed.hasPrefix("SCRAM-SHA-256$4096:"), hashed)
        XCTAssertFalse(hashed.contains(password))
        XCTAssertNotEqual(try owner.hashedPassword(password, user: "comprobify_app"), hashed, "salted afresh each time")
        XCTAssertThrowsError(try owner.hashedPassword("a\u{0}b", user: "comprobify_app"))
        let pid = try owner.query("SELECT pg_backend_pid()")[0].decode(Int.self, at: 0)
        try Migrator.grantLogin(on: owner, password: password)
        // The statement the server got (pg_stat_activity keeps a session's
        // last one, as a log with log_statement = ddl would): the hash only.
        let sent = try Connection(conninfo: TestDatabase.ownerURL).query(
            "SELECT query FROM pg_stat_activity WHERE pid = $1", [pid])[0].decode(String.self, at: 0)
        XCTAssertTrue(sent.hasPrefix("ALTER ROLE comprobify_app LOGIN PASSWORD 'SCRAM-SHA-256$"), sent)
        XCTAssertFalse(sent.contains(password), "the clear password never reached the server")
        let stored = try owner.query("SELECT rolpassword FROM pg_authid WHERE rolname = 'comprobify_app'")
        XCTAssertTrue(try stored[0].decode(String.self, at: 0).hasPrefix("SCRAM-SHA-256$"))
        XCTAssertEqual(try Connection(conninfo: TestDatabase.appURL).query("SELECT 1")[0].decode(Int.self, at: 0), 1)
    }

    static let earlier = migrations.deletingLastPathComponent().appendingPathComponent("earlier")

    /// The set-up of hosted PostgreSQL services: a fresh database owned by a
    /// role that is no superuser, only CREATEROLE; both dropped afterwards.
    /// `body` gets that role's URL and the owner's (a superuser's) for the database.
    func withHostedOwner(_ body: (_ conninfo: String, _ superuser: String) throws -> Void) throws {
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
        url.path = "/\(database)"
        let superuser = try XCTUnwrap(url.string)
        url.user = role
        url.password = password
        let conninfo = try XCTUnwrap(url.string)
        let isSuperuser = try Connection(conninfo: conninfo).query("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        XCTAssertFalse(try isSuperuser[0].decode(Bool.self, at: 0))
        try body(conninfo, superuser)
    }

    /// `withHostedOwner`, the migrations numbered before `first` applied by
    /// that owner, then the fixture and `changes` written by the superuser: a
    /// database of an earlier release holding rows its migrations must mend.
    func withHostedOwner(
        migratedBefore first: String, holding changes: String, _ body: (_ conninfo: String, _ admin: Connection) throws -> Void
    ) throws {
        try withHostedOwner { conninfo, superuser in
            let run = try migrate(conninfo, before: first)
            XCTAssertEqual(run.status, 0, run.output)
            guard run.status == 0 else { return }
            let admin = try Connection(conninfo: superuser)
            try admin.execute(script: "BEGIN;\n\(try String(contentsOf: Self.fixture, encoding: .utf8))\n\(changes)\nCOMMIT;")
            try body(conninfo, admin)
        }
    }

    func migrate(_ conninfo: String, directory: URL = migrations) throws -> (status: Int32, output: String) {
        try Executable.run(try Executable.url(), ["migrate", "--directory", directory.path], environment: ["DATABASE_URL": conninfo])
    }

    /// Applies only the migrations numbered before `first` (a database of an earlier release).
    func migrate(_ conninfo: String, before first: String) throws -> (status: Int32, output: String) {
        let before = FileManager.default.temporaryDirectory.appendingPathComponent("migrations-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: before, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: before) }
        for file in try FileManager.default.contentsOfDirectory(atPath: Self.migrations.path) where file < first {
            try FileManager.default.copyItem(at: Self.migrations.appendingPathComponent(file), to: before.appendingPathComponent(file))
        }
        return try migrate(conninfo, directory: before)
    }

    /// sql/README.md, "Backups": `pg_dump` by a role with BYPASSRLS and
    /// pg_read_all_data, restored by a superuser into a new database, brings
    /// back every row, the functions' owner and the ledger (migrate: up to
    /// date). As an owner that is not a superuser `pg_dump` stops, and with
    /// `--enable-row-security` it writes the tenant tables empty.
    func testABackupByARoleThatBypassesRowLevelSecurityRestoresEveryRow() throws {
        func tool(_ name: String) -> String {
            let installed = "/usr/lib/postgresql/15/bin/\(name)"
            return FileManager.default.isExecutableFile(atPath: installed) ? installed : name
        }
        try withHostedOwner { conninfo, superuser in
            XCTAssertEqual(try migrate(conninfo).status, 0)
            try Connection(conninfo: superuser).execute(script: try String(contentsOf: Self.fixture, encoding: .utf8))
            let tables = ["tenants", "api_keys", "issuers", "documents", "document_submissions", "webhook_endpoints"]
            func counts(_ url: String) throws -> [Int] {
                let connection = try Connection(conninfo: url)
                return try tables.map { try connection.query("SELECT count(*) FROM \(unescaped: $0)")[0].decode(Int.self, at: 0) }
            }
            let before = try counts(superuser)
            XCTAssertTrue(before.allSatisfy { $0 > 0 }, "the fixture has rows in each: \(before)")
            let folder = FileManager.default.temporaryDirectory.appendingPathComponent("backup-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: folder) }

            let asOwner = try runTool(tool("pg_dump"), ["-Fc", "-d", conninfo, "-f", folder.appendingPathComponent("owner.dump").path])
            XCTAssertNotEqual(asOwner.status, 0)
            XCTAssertTrue(asOwner.output.contains("row-level security"), asOwner.output)
            let policed = try runTool(tool("pg_dump"), ["--enable-row-security", "--data-only", "-t", "documents", "-d", conninfo])
            XCTAssertEqual(policed.status, 0, policed.output)
            let copy = try XCTUnwrap(policed.output.range(of: "COPY public.documents"), policed.output)
            XCTAssertTrue(policed.output[copy.upperBound...].split(separator: "\n").dropFirst().first == "\\.", "written empty")

            let role = "backup_\(UInt32.random(in: 0...UInt32.max))"
            let password = UUID().uuidString
            try TestDatabase.query("CREATE ROLE \(role) LOGIN BYPASSRLS PASSWORD '\(password)'")
            defer { _ = try? TestDatabase.query("DROP ROLE \(role)") }
            try TestDatabase.query("GRANT pg_read_all_data TO \(role)")
            var backup = try XCTUnwrap(URLComponents(string: superuser))
            backup.user = role
            backup.password = password
            let file = folder.appendingPathComponent("comprobify.dump").path
            let dumped = try runTool(tool("pg_dump"), ["-Fc", "-d", try XCTUnwrap(backup.string), "-f", file])
            XCTAssertEqual(dumped.status, 0, dumped.output)

            try withDatabase { restored in
                let run = try runTool(tool("pg_restore"), ["--exit-on-error", "-d", restored, file])
                XCTAssertEqual(run.status, 0, run.output)
                XCTAssertEqual(try counts(restored), before)
                let owner = try Connection(conninfo: restored).query(
                    "SELECT proowner::regrole::text FROM pg_proc WHERE proname = 'authenticate'")
                XCTAssertEqual(try owner[0].decode(String.self, at: 0), "comprobify_auth")
                let again = try migrate(restored)
                XCTAssertEqual(again.status, 0, again.output)
                XCTAssertTrue(again.output.contains("migrations: up to date"), again.output)
            }
        }
    }

    /// sql/tests/fixtures/two_tenants.sql: two tenants with rows in every tenant table.
    static let fixture = migrations.deletingLastPathComponent().appendingPathComponent("tests/fixtures/two_tenants.sql")

    func testASchemaOwnerThatIsNotASuperuserMigrates() throws {
        try withHostedOwner { conninfo, _ in
            let run = try migrate(conninfo)
            XCTAssertEqual(run.status, 0, run.output)
            guard run.status == 0 else { return }
            let connection = try Connection(conninfo: conninfo)
            let files = try Migrator(directory: Self.migrations).files().count
            XCTAssertEqual(try connection.query("SELECT count(*) FROM schema_migrations")[0].decode(Int.self, at: 0), files)
            // The definer functions went to comprobify_auth, and the loan that
            // allowed it was taken back.
            let owner = try connection.query("SELECT proowner::regrole::text FROM pg_proc WHERE proname = 'authenticate'")
            XCTAssertEqual(try owner[0].decode(String.self, at: 0), "comprobify_auth")
            for role in ["comprobify_auth", "comprobify_app"] {
                let create = try connection.query("SELECT has_schema_privilege($1, 'public', 'CREATE')", [role])
                XCTAssertFalse(try create[0].decode(Bool.self, at: 0), role)
            }
        }
    }

    /// FORCE ROW LEVEL SECURITY applies the policies to the tables' owner:
    /// migration 0021's backfill, run by an owner that is not a superuser, saw
    /// no row and left documents waiting for SRI without an environment, which
    /// no claim takes. 0031 gives them theirs whatever the owner, and leaves
    /// both tables forced.
    func testWaitingSubmissionsGetTheirEnvironmentWhateverTheOwner() throws {
        // A document waiting for SRI with no environment, as 0021 left it
        // (the row rules refuse one now, so they are switched off for this).
        let changes = """
            ALTER TABLE document_submissions DISABLE TRIGGER USER;
            UPDATE document_submissions SET environment = NULL WHERE tenant_id = 900001;
            ALTER TABLE document_submissions ENABLE TRIGGER USER;
            """
        try withHostedOwner(migratedBefore: "0031", holding: changes) { conninfo, admin in
            // What 0021's backfill did as this owner: nothing.
            let owner = try Connection(conninfo: conninfo)
            let seen = try owner.query(
                """
                UPDATE document_submissions s SET environment = d.environment FROM documents d
                 WHERE d.tenant_id = s.tenant_id AND d.id = s.document_id AND s.environment IS NULL RETURNING 1
                """, [], prepared: false)
            XCTAssertEqual(seen.count, 0, "the policies hide every row from an owner that is not a superuser")

            let rest = try migrate(conninfo)
            XCTAssertEqual(rest.status, 0, rest.output)
            let environment = try admin.query(
                "SELECT environment FROM document_submissions WHERE tenant_id = 900001", [], prepared: false)
            XCTAssertEqual(try environment[0].decode(String?.self, at: 0), "sandbox")
            let forced = try admin.query(
                "SELECT bool_and(relforcerowsecurity) FROM pg_class WHERE relname IN ('documents', 'document_submissions')", [],
                prepared: false)
            XCTAssertTrue(try forced[0].decode(Bool.self, at: 0), "both tables force row-level security again")
        }
    }

    /// 0063 leaves each tenant one live verification token (its newest), also
    /// when the owner that migrates is not a superuser, from whom the table's
    /// forced policies hide every row: its first text changed nothing then,
    /// and 0067's unique index failed on the tokens it left.
    func testSupersededVerificationTokensAreInvalidatedWhateverTheOwner() throws {
        // Two live tokens for each tenant, as a database changed by hand may hold.
        let changes = """
            INSERT INTO email_verifications (tenant_id, id, token_digest, created_at, expires_at) VALUES
                (900001, 900035, sha256('verify-a-older'), now() - interval '2 days', now() + interval '1 day'),
                (900002, 900042, sha256('verify-b-newer'), now() - interval '1 minute', now() + interval '1 day');
            """
        try withHostedOwner(migratedBefore: "0063", holding: changes) { conninfo, admin in
            let rest = try migrate(conninfo)
            XCTAssertEqual(rest.status, 0, rest.output)
            let live = try admin.query(
                """
                SELECT id FROM email_verifications
                 WHERE tenant_id IN (900001, 900002) AND used_at IS NULL AND invalidated_at IS NULL ORDER BY id
                """, [], prepared: false)
            XCTAssertEqual(
                try (0..<live.count).map { try live[$0].decode(Int64.self, at: 0) }, [900031, 900042], "each tenant's newest stays live")
            let index = try admin.query(
                "SELECT indisvalid FROM pg_index WHERE indexrelid = 'email_verifications_one_live_per_tenant'::regclass", [],
                prepared: false)
            XCTAssertEqual(try (0..<index.count).map { try index[$0].decode(Bool.self, at: 0) }, [true])
            let forced = try admin.query(
                "SELECT relforcerowsecurity FROM pg_class WHERE relname = 'email_verifications'", [], prepared: false)
            XCTAssertTrue(try forced[0].decode(Bool.self, at: 0), "the table forces row-level security again")
        }
    }

    /// Roles found with attributes they must not have are reset by 0001 (and
    /// 0023 for comprobify_mailer), also by an owner that is not a superuser:
    /// the attributes such an owner may take away.
    func testRolesFoundWithAttributesAreResetByAnOwnerThatIsNotASuperuser() throws {
        func alter(_ sql: String) throws {
            try Migrator.retryingClusterCollisions { _ = try TestDatabase.query(sql) }
        }
        try alter("ALTER ROLE comprobify_auth CREATEDB")
        try alter("ALTER ROLE comprobify_mailer LOGIN CREATEROLE")
        defer {
            XCTAssertNoThrow(try alter("ALTER ROLE comprobify_auth NOCREATEDB"))
            XCTAssertNoThrow(try alter("ALTER ROLE comprobify_mailer NOLOGIN NOCREATEROLE"))
        }
        try withHostedOwner { conninfo, _ in
            let run = try migrate(conninfo)
            XCTAssertEqual(run.status, 0, run.output)
        }
        let attributes: PostgresQuery = """
            SELECT string_agg(rolname || ':' || rolcanlogin || rolsuper || rolcreatedb || rolcreaterole || rolbypassrls || rolreplication, ' ' ORDER BY rolname)
              FROM pg_roles WHERE rolname IN ('comprobify_auth', 'comprobify_mailer')
            """
        XCTAssertEqual(
            try TestDatabase.owner().query(attributes)[0].decode(String.self, at: 0),
            "comprobify_auth:falsefalsefalsefalsefalsefalse comprobify_mailer:falsefalsefalsefalsefalsefalse")
    }

    /// Where schema public belongs to another role (a database upgraded from
    /// PostgreSQL 14 or earlier), an owner that is not a superuser could not
    /// take CREATE on it from PUBLIC: refused before anything is applied.
    func testSchemaPublicOfAnotherOwnerIsRefusedToAnOwnerThatIsNotASuperuser() throws {
        try withHostedOwner { conninfo, superuser in
            // As PostgreSQL 14 and earlier made it: the bootstrap superuser's, and anyone may create there.
            try Connection(conninfo: superuser).execute(
                script: "ALTER SCHEMA public OWNER TO postgres; GRANT CREATE ON SCHEMA public TO PUBLIC")
            let run = try migrate(conninfo)
            XCTAssertNotEqual(run.status, 0, run.output)
            XCTAssertTrue(run.output.contains("schema public is owned by postgres"), run.output)
            let ledger = try Connection(conninfo: superuser).query("SELECT to_regclass('schema_migrations') IS NULL")
            XCTAssertTrue(try ledger[0].decode(Bool.self, at: 0))
        }
    }

    /// A database created by a superuser (`createdb` without `-O`, as a
    /// restore may be) leaves schema public to that superuser, its owner,
    /// whatever role owns the schema's objects: the refusal names the
    /// statement that mends it, which then lets the same migrate run.
    func testADatabaseOfAnotherOwnerTellsHowToHandItOver() throws {
        try withHostedOwner { conninfo, superuser in
            let admin = try Connection(conninfo: superuser)
            let role = try XCTUnwrap(URLComponents(string: conninfo)?.user)
            let database = try XCTUnwrap(URLComponents(string: conninfo)?.path.dropFirst())
            try admin.execute(script: "ALTER DATABASE \(database) OWNER TO CURRENT_USER")
            let refused = try migrate(conninfo)
            XCTAssertNotEqual(refused.status, 0, refused.output)
            let statement = "ALTER DATABASE \"\(database)\" OWNER TO \"\(role)\""
            XCTAssertTrue(refused.output.contains("schema public belongs to the database's owner"), refused.output)
            XCTAssertTrue(refused.output.contains(statement), refused.output)
            try admin.execute(script: statement)
            let run = try migrate(conninfo)
            XCTAssertEqual(run.status, 0, run.output)
        }
    }

    func testIdentifiersAreQuotedAsSQLWritesThem() {
        XCTAssertEqual(quotedIdentifier("cfy_owner"), "\"cfy_owner\"")
        XCTAssertEqual(quotedIdentifier("user"), "\"user\"", "a keyword")
        XCTAssertEqual(quotedIdentifier("a\"b-c"), "\"a\"\"b-c\"")
    }

    /// The service's own role given to `migrate` (the app's URL for the
    /// owner's) is named as the mistake, before anything is applied, rather
    /// than answered with advice about schema public's owner.
    func testMigratingAsTheServicesRoleSaysSo() throws {
        let run = try migrate(TestDatabase.appURL)
        XCTAssertNotEqual(run.status, 0, run.output)
        XCTAssertTrue(run.output.contains("connected as comprobify_app"), run.output)
        XCTAssertTrue(run.output.contains("schema's owner"), run.output)
        XCTAssertFalse(run.output.contains("ALTER SCHEMA"), run.output)
    }

    /// `serve` refuses a database whose ledger is older than the code it was
    /// built with (an upgrade that started the new servers before
    /// `comprobify migrate`), naming what it found and what to run; a ledger
    /// at or past its newest migration passes. `SchemaCheck.newestMigration`
    /// is the newest file of sql/migrations.
    func testServeRefusesADatabaseOlderThanItsCode() async throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: Self.migrations.path).filter { $0.hasSuffix(".sql") }.sorted()
        XCTAssertEqual(SchemaCheck.newestMigration, files.last, "a new migration names itself in SchemaCheck.newestMigration")
        let name = "migrate_\(UInt32.random(in: 0...UInt32.max))"
        try TestDatabase.query("CREATE DATABASE \(name)")
        defer { _ = try? TestDatabase.query("DROP DATABASE \(name) WITH (FORCE)") }
        func on(_ url: String) throws -> String {
            guard let range = url.range(of: "/postgres", options: .backwards) else {
                throw Unexpected(description: "the URL does not name the postgres database")
            }
            return url.replacingCharacters(in: range, with: "/\(name)")
        }
        let owner = try on(TestDatabase.ownerURL)
        var configuration = Configuration(databaseURL: try on(TestDatabase.appURL), secretBox: TestSecrets.box)
        configuration.port = 0
        func refusal() async throws -> String? {
            let pool = ConnectionPool(configuration: .init(conninfo: configuration.databaseURL, size: 1))
            defer { Task { await pool.shutdown() } }
            do {
                try await SchemaCheck.verify(pool: pool)
                return nil
            } catch let error as SchemaCheck.Behind {
                return error.description
            }
        }

        // A release from before schema_version() (migration 0093): every
        // migration older than it.
        let copy = FileManager.default.temporaryDirectory.appendingPathComponent("migrations-\(UUID().uuidString)")
        try FileManager.default.copyItem(at: Self.migrations, to: copy)
        defer { try? FileManager.default.removeItem(at: copy) }
        for name in try FileManager.default.contentsOfDirectory(atPath: copy.path) where name >= "0093_schema_version.sql" {
            try FileManager.default.removeItem(at: copy.appendingPathComponent(name))
        }
        try Migrator(directory: copy).run(on: try Connection(conninfo: owner))
        let older = try await refusal()
        do {
            _ = try await buildApplication(configuration: configuration, logger: Logger(label: "test"))
            XCTFail("serve must refuse a database older than its code")
        } catch let error as SchemaCheck.Behind {
            XCTAssertEqual(error.description, older)
        }
        XCTAssertEqual(
            older,
            "the database's schema is older than this server: its newest migration is older than \(SchemaCheck.newestMigration), "
                + "this server needs \(SchemaCheck.newestMigration). Run `comprobify migrate` as the schema's owner before starting "
                + "the servers of a new release")
        let binary = try Executable.run(
            try Executable.url(), ["serve"],
            environment: ["DATABASE_URL": configuration.databaseURL, "PORT": "0", "COMPROBIFY_SECRET_KEY": TestSecrets.keyText])
        XCTAssertEqual(binary.status, 1, binary.output)
        XCTAssertTrue(binary.output.contains("Run `comprobify migrate`"), binary.output)

        try Migrator(directory: Self.migrations).run(on: try Connection(conninfo: owner))
        let current = try await refusal()
        XCTAssertNil(current, "migrated: it serves")

        // A ledger whose newest row is one before (as after 0093, for a later release's check).
        let connection = try Connection(conninfo: owner)
        _ = try connection.query("DELETE FROM schema_migrations WHERE name = \(SchemaCheck.newestMigration)")
        let previous = files.dropLast().last ?? ""
        let behind = try await refusal()
        XCTAssertEqual(
            behind?.hasPrefix("the database's schema is older than this server: its newest migration is \(previous), "), true,
            behind ?? "nil")
        // A later release's migrations applied (its servers roll out after ours): it serves.
        _ = try connection.query("INSERT INTO schema_migrations (name, checksum) VALUES ('9999_later.sql', '')")
        let later = try await refusal()
        XCTAssertNil(later, "a newer ledger passes")
    }

    /// The checksums in `Migrator.revisions` are those of the files: the
    /// revised text in sql/migrations, the earlier ones in sql/earlier.
    func testTheRevisionsAreTheFiles() throws {
        let earlierFiles = try FileManager.default.contentsOfDirectory(atPath: Self.earlier.path).sorted()
        XCTAssertEqual(earlierFiles, Migrator.revisions.keys.sorted())
        for (name, revision) in Migrator.revisions {
            let now = try String(contentsOf: Self.migrations.appendingPathComponent(name), encoding: .utf8)
            XCTAssertEqual(Crypto.hex(Crypto.sha256(now)), revision.revised, name)
            let before = try String(contentsOf: Self.earlier.appendingPathComponent(name), encoding: .utf8)
            XCTAssertEqual(revision.earlier, [Crypto.hex(Crypto.sha256(before))], name)
        }
        // sql/README.md's script for plain psql accepts the same (name:earlier:revised).
        let readme = try String(
            contentsOf: Self.migrations.deletingLastPathComponent().appendingPathComponent("README.md"), encoding: .utf8)
        let accepted = Set(
            readme.matches(of: /(\d{4}_[a-z0-9_]+\.sql):([0-9a-f]{64}):([0-9a-f]{64})/).map {
                "\($0.output.1):\($0.output.2):\($0.output.3)"
            })
        let revisions = Set(
            Migrator.revisions.flatMap { name, revision in revision.earlier.map { "\(name):\($0):\(revision.revised)" } })
        XCTAssertEqual(accepted, revisions)
    }

    /// A database that applied the earlier text of 0001 or 0023 is not
    /// refused for it while the file is the revision; an edit of the revision,
    /// or any other recorded text, still is.
    func testAnEarlierTextOfARevisedMigrationIsAccepted() throws {
        try withDatabase { url in
            XCTAssertEqual(try migrate(url).status, 0)
            let connection = try Connection(conninfo: url)
            for name in ["0001_roles.sql", "0023_outbox_relay.sql"] {
                let before = try String(contentsOf: Self.earlier.appendingPathComponent(name), encoding: .utf8)
                try connection.query(
                    "UPDATE schema_migrations SET checksum = $1 WHERE name = $2", [Crypto.hex(Crypto.sha256(before)), name])
            }
            let again = try migrate(url)
            XCTAssertEqual(again.status, 0, again.output)
            XCTAssertTrue(again.output.contains("up to date"), again.output)

            let copy = FileManager.default.temporaryDirectory.appendingPathComponent("migrations-\(UUID().uuidString)")
            try FileManager.default.copyItem(at: Self.migrations, to: copy)
            defer { try? FileManager.default.removeItem(at: copy) }
            let file = copy.appendingPathComponent("0001_roles.sql")
            try (try String(contentsOf: file, encoding: .utf8) + "\nALTER ROLE comprobify_app BYPASSRLS;\n").write(
                to: file, atomically: true, encoding: .utf8)
            let edited = try migrate(url, directory: copy)
            XCTAssertNotEqual(edited.status, 0)
            XCTAssertTrue(edited.output.contains("0001_roles.sql was changed"), edited.output)

            try connection.query(
                "UPDATE schema_migrations SET checksum = $1 WHERE name = '0001_roles.sql'", [String(repeating: "0", count: 64)])
            let refused = try migrate(url)
            XCTAssertNotEqual(refused.status, 0)
            XCTAssertTrue(refused.output.contains("0001_roles.sql was changed"), refused.output)
        }
    }
}
