import Foundation
import Postgres
import TestSupport
import XCTest

final class ConnectionTests: XCTestCase {
    func testEveryParameterTypeRoundTripsWithNull() throws {
        let connection = try Connection(conninfo: TestDatabase.ownerURL)
        let bytes = Data([0, 1, 2, 0xfe, 0xff, 0x5c, 0x78])
        let moment = Date(timeIntervalSince1970: 1_772_366_400.123)  // 2026-03-01T12:00:00.123Z
        let row = try connection.query(
            "SELECT $1::bigint, $2::int, $3::text, $4::bool, $5::float8, $6::bytea, $7::timestamptz, $8::jsonb, $9::text, $10::bigint",
            [Int64.max, Int32.min, "hello", true, 2.5, bytes, moment, #"{"a": [1, "x"]}"#, String?.none, Int64?.none]
        )[0]
        XCTAssertEqual(try row.decode(Int64.self, at: 0), Int64.max)
        XCTAssertEqual(try row.decode(Int32.self, at: 1), Int32.min)
        XCTAssertEqual(try row.decode(String.self, at: 2), "hello")
        XCTAssertEqual(try row.decode(Bool.self, at: 3), true)
        XCTAssertEqual(try row.decode(Double.self, at: 4), 2.5)
        XCTAssertEqual(try row.decode(Data.self, at: 5), bytes)
        XCTAssertEqual(try row.decode(Date.self, at: 6).timeIntervalSince1970, moment.timeIntervalSince1970, accuracy: 0.000_001)
        XCTAssertEqual(try row.decode(String.self, at: 7), #"{"a": [1, "x"]}"#)
        XCTAssertNil(try row.decode(String?.self, at: 8))
        XCTAssertNil(try row.decode(Int64?.self, at: 9))
        XCTAssertEqual(try row.decode(Int.self, at: 1), Int(Int32.min))
    }

    /// Every connection has network timeouts (a silent database host fails the
    /// statement in flight instead of holding it for hours), unless the URL
    /// sets its own.
    func testNetworkTimeoutsDefaultUnlessTheURLSetsThem() throws {
        let plain = try Connection(conninfo: TestDatabase.ownerURL)
        for (keyword, value) in Connection.networkDefaults {
            XCTAssertEqual(plain.setting(keyword), value, keyword)
        }
        let separator = TestDatabase.ownerURL.contains("?") ? "&" : "?"
        let own = try Connection(conninfo: TestDatabase.ownerURL + separator + "connect_timeout=17&keepalives_idle=60")
        XCTAssertEqual(own.setting("connect_timeout"), "17")
        XCTAssertEqual(own.setting("keepalives_idle"), "60")
        XCTAssertEqual(own.setting("keepalives_count"), "3")
        XCTAssertEqual(try own.query("SELECT 1")[0].decode(Int.self, at: 0), 1)
    }

    /// Only an idle connection, out of any transaction, goes back to the pool.
    func testOnlyAnIdleConnectionIsReusable() throws {
        let connection = try Connection(conninfo: TestDatabase.ownerURL)
        XCTAssertTrue(connection.isReusable)
        try connection.query("BEGIN", prepared: false)
        XCTAssertFalse(connection.isReusable)
        XCTAssertThrowsError(try connection.query("SELECT 1/0", prepared: false))
        XCTAssertFalse(connection.isReusable, "a failed transaction")
        try connection.query("ROLLBACK", prepared: false)
        XCTAssertTrue(connection.isReusable)
    }

    func testUnicodeAndByteaRoundTripVerbatim() throws {
        let connection = try Connection(conninfo: TestDatabase.ownerURL)
        let texts = ["ñandú", "\u{202E}reversed", "👩🏽‍💻", "e\u{301}", "'; DROP TABLE tenants; --", "\\x00", "\"quoted\""]
        for text in texts {
            XCTAssertEqual(try connection.query("SELECT $1::text", [text])[0].decode(String.self, at: 0), text)
        }
        let all = Data((0...255).map { UInt8($0) })
        XCTAssertEqual(try connection.query("SELECT $1::bytea", [all])[0].decode(Data.self, at: 0), all)
        XCTAssertEqual(try connection.query("SELECT octet_length($1::bytea)", [all])[0].decode(Int.self, at: 0), 256)
        let array = ["a\"b", "c\\d", "ñ"]
        XCTAssertEqual(
            try connection.query("SELECT array_to_string($1::text[], '|')", [array])[0].decode(String.self, at: 0), "a\"b|c\\d|ñ")
    }

    func testByteaParametersTravelAsBytesInEveryWayOfSending() throws {
        let connection = try Connection(conninfo: TestDatabase.ownerURL)
        let all = Data((0...255).map { UInt8($0) })
        let big = Data((0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 31) })
        XCTAssertEqual(all.postgresBinary, all, "bytea goes in binary format")
        for value in [all, Data(), Data([0]), big] {
            // Binary: the server gets the bytes themselves (octet_length), not their hex.
            for prepared in [true, false] {
                let row = try connection.query("SELECT octet_length($1::bytea), $1::bytea", [value], prepared: prepared)[0]
                XCTAssertEqual(try row.decode(Int.self, at: 0), value.count)
                XCTAssertEqual(try row.decode(Data.self, at: 1), value)
            }
            let hex = value.map { String(format: "%02x", $0) }.joined()
            let results = try connection.pipeline([
                "SELECT \(value)::bytea, \("text beside it"), \(Data?.none)::bytea",
                "SELECT md5(\(value)::bytea) = md5(decode(\(hex), 'hex'))",
            ])
            XCTAssertEqual(try results[0][0].decode(Data.self, at: 0), value)
            XCTAssertEqual(try results[0][0].decode(String.self, at: 1), "text beside it")
            XCTAssertNil(try results[0][0].decode(Data?.self, at: 2))
            XCTAssertEqual(try results[1][0].decode(Bool.self, at: 0), true)
        }
        // Arrays of bytea still travel as text, element by element.
        XCTAssertEqual(
            try connection.query("SELECT array_length($1::bytea[], 1), ($1::bytea[])[2]", [[all, Data([7])]])[0].decode(Data.self, at: 1),
            Data([7]))
    }

    func testTimestampsDecodeFromAnyZoneOffset() throws {
        let connection = try Connection(conninfo: TestDatabase.ownerURL)
        try connection.query("SET TimeZone = 'America/Guayaquil'", prepared: false)
        let date = try connection.query("SELECT '2026-03-01 12:00:00.5+00'::timestamptz")[0].decode(Date.self, at: 0)
        XCTAssertEqual(date.timeIntervalSince1970, 1_772_366_400.5, accuracy: 0.000_001)
    }

    func testNullIntoNonOptionalIsAClearDecodingError() throws {
        let connection = try Connection(conninfo: TestDatabase.ownerURL)
        let row = try connection.query("SELECT NULL::text AS nothing")[0]
        XCTAssertThrowsError(try row.decode(String.self, at: 0)) { error in
            let error = error as? PostgresError
            XCTAssertEqual(error?.kind, .decoding)
            XCTAssertTrue(error?.message.contains("nothing") ?? false, error?.message ?? "")
            XCTAssertTrue(error?.message.contains("NULL") ?? false, error?.message ?? "")
        }
    }

    /// A row or column the result does not have is a decoding error when read,
    /// never a stop of the process (`results[0][0]` on no rows).
    func testAMissingRowOrColumnIsADecodingError() throws {
        let connection = try Connection(conninfo: TestDatabase.ownerURL)
        let none = try connection.query("SELECT 1 AS one WHERE false")
        XCTAssertEqual(none.count, 0)
        for read in [
            { _ = try none[0].decode(Int.self, at: 0) }, { _ = try none[0].decode(Int?.self, at: 0) },
            { _ = try none[-1].decode(Int.self, at: 0) },
        ] {
            XCTAssertThrowsError(try read()) { error in
                XCTAssertEqual((error as? PostgresError)?.kind, .decoding)
                XCTAssertTrue((error as? PostgresError)?.message.contains("does not exist") ?? false)
            }
        }
        XCTAssertThrowsError(try none[0].rfc3339Milliseconds(at: 0)) { error in
            XCTAssertEqual((error as? PostgresError)?.kind, .decoding, "\(error)")
        }
        XCTAssertTrue(none[0].isNull(at: 0))
        let one = try connection.query("SELECT 1 AS one")
        XCTAssertTrue(one[0].isNull(at: 7), "a column the result does not have reads as NULL")
        XCTAssertEqual(one.columnName(0), "one")
        XCTAssertEqual(one.columnName(7), "?")
        XCTAssertThrowsError(try one[0].decode(Int.self, at: 7)) { error in
            XCTAssertEqual((error as? PostgresError)?.kind, .decoding, "\(error)")
        }
        // Past what a C int holds: an error, not a trap.
        for column in [Int(Int32.max) + 1, Int.max, Int.min] {
            XCTAssertThrowsError(try one[0].rfc3339Milliseconds(at: column), "\(column)")
            XCTAssertThrowsError(try one[0].decode(Int.self, at: column), "\(column)")
            XCTAssertTrue(one[0].isNull(at: column))
        }
    }

    func testTypeMismatchIsAClearDecodingError() throws {
        let connection = try Connection(conninfo: TestDatabase.ownerURL)
        let row = try connection.query("SELECT 'abc'::text, 5::int")[0]
        XCTAssertThrowsError(try row.decode(Int64.self, at: 0)) { XCTAssertEqual(($0 as? PostgresError)?.kind, .decoding) }
        XCTAssertThrowsError(try row.decode(String.self, at: 1)) { XCTAssertEqual(($0 as? PostgresError)?.kind, .decoding) }
        XCTAssertThrowsError(try row.decode(Bool.self, at: 1)) { XCTAssertEqual(($0 as? PostgresError)?.kind, .decoding) }
        XCTAssertThrowsError(try row.decode(Int.self, at: 7)) { XCTAssertEqual(($0 as? PostgresError)?.kind, .decoding) }
    }

    func testServerErrorsCarrySQLStateAndConstraintButNotParameters() throws {
        let connection = try Connection(conninfo: TestDatabase.ownerURL)
        try connection.query("CREATE TEMP TABLE t (id int CONSTRAINT t_pk PRIMARY KEY)", prepared: false)
        try connection.query("INSERT INTO t VALUES ($1)", [7])
        XCTAssertThrowsError(try connection.query("INSERT INTO t VALUES ($1)", [7])) { error in
            let error = error as! PostgresError
            XCTAssertEqual(error.kind, .server)
            XCTAssertTrue(error.hasCode(SQLState.uniqueViolation))
            XCTAssertTrue(error.hasClass("23"))
            XCTAssertFalse(error.hasClass("22"))
            XCTAssertEqual(error.constraint, "t_pk")
            XCTAssertFalse(error.isTransactionRetryable)
        }
        let secret = "cfy_test_secret-value"
        XCTAssertThrowsError(try connection.query("SELECT $1::int", [secret])) { error in
            let error = error as! PostgresError
            XCTAssertEqual(error.sqlState, SQLState.invalidTextRepresentation)
            XCTAssertFalse(error.description.contains(secret), error.description)
        }
        // The connection is still usable after errors.
        XCTAssertEqual(try connection.query("SELECT 1")[0].decode(Int.self, at: 0), 1)
    }

    func testRowLevelSecurityViolationAsTheAppRole() throws {
        let connection = try Connection(conninfo: TestDatabase.appURL)
        XCTAssertThrowsError(
            try connection.query(
                "INSERT INTO issuers (tenant_id, ruc, legal_name, establishment, emission_point) VALUES (1, '1790012345001', 'X', '001', '001')"
            )
        ) { error in
            XCTAssertEqual((error as? PostgresError)?.sqlState, SQLState.insufficientPrivilege)
        }
    }

    func testPipelineRunsStatementsInOneImplicitTransaction() throws {
        let connection = try Connection(conninfo: TestDatabase.ownerURL)
        try connection.query("CREATE TEMP TABLE p (v int CHECK (v < 10))", prepared: false)
        let results = try connection.pipeline([
            Statement("INSERT INTO p VALUES ($1)", [1]),
            Statement("SELECT set_config('app.x', $1, true)", ["local"]),
            Statement("SELECT current_setting('app.x'), count(*) FROM p"),
        ])
        XCTAssertEqual(results.count, 3)
        XCTAssertEqual(try results[2][0].decode(String.self, at: 0), "local")
        XCTAssertEqual(try results[2][0].decode(Int.self, at: 1), 1)
        // A failure in the middle undoes the statements before it and skips those after.
        XCTAssertThrowsError(
            try connection.pipeline([
                Statement("INSERT INTO p VALUES ($1)", [2]),
                Statement("INSERT INTO p VALUES ($1)", [20]),
                Statement("INSERT INTO p VALUES ($1)", [3]),
            ])
        ) { XCTAssertEqual(($0 as? PostgresError)?.sqlState, SQLState.checkViolation) }
        XCTAssertEqual(
            try connection.query("SELECT array_to_string(array_agg(v ORDER BY v), ',') FROM p")[0].decode(String.self, at: 0), "1")
        XCTAssertFalse(connection.isInTransaction)
    }

    func testANotNullViolationNamesItsColumn() throws {
        let connection = try Connection(conninfo: TestDatabase.ownerURL)
        try connection.query("CREATE TEMP TABLE n (id int, sequential int NOT NULL)", prepared: false)
        XCTAssertThrowsError(try connection.query("INSERT INTO n VALUES (1, (SELECT 2 WHERE false))")) { error in
            let error = error as! PostgresError
            XCTAssertEqual(error.sqlState, SQLState.notNullViolation)
            XCTAssertEqual(error.column, "sequential")
            XCTAssertNil(error.constraint)
        }
        XCTAssertThrowsError(try connection.query("SELECT 1 / 0")) { XCTAssertNil(($0 as! PostgresError).column) }
    }

    /// The first statement's answer is read, and the caller told, while a later
    /// statement of the same pipeline still waits in the server: here for an
    /// advisory lock that only the callback releases. Were the answers read
    /// only at the end, the lock's wait would time out.
    func testThePipelinesFirstAnswerComesBeforeTheRestRun() throws {
        let connection = try Connection(conninfo: TestDatabase.ownerURL)
        let holder = try Connection(conninfo: TestDatabase.ownerURL)
        let key = Int.random(in: 1...1_000_000_000)
        try holder.query("SELECT pg_advisory_lock($1)", [key])
        try connection.query("SET lock_timeout = '20s'", prepared: false)
        var calls: [Bool] = []
        let results = try connection.pipeline(
            [Statement("SELECT $1::int", [7]), Statement("SELECT pg_advisory_lock($1)", [key]), Statement("SELECT 8")]
        ) { succeeded in
            calls.append(succeeded)
            _ = try? holder.query("SELECT pg_advisory_unlock($1)", [key])
        }
        XCTAssertEqual(calls, [true])
        XCTAssertEqual(results.count, 3)
        XCTAssertEqual(try results[0][0].decode(Int.self, at: 0), 7)
        XCTAssertEqual(try results[2][0].decode(Int.self, at: 0), 8)
        XCTAssertTrue(try connection.query("SELECT pg_advisory_unlock($1)", [key])[0].decode(Bool.self, at: 0))
        // A first statement that fails: told false, the error thrown, the
        // connection usable; a failure further on is not the first's.
        calls = []
        XCTAssertThrowsError(
            try connection.pipeline([Statement("SELECT 1 / 0"), Statement("SELECT 2")]) { calls.append($0) }
        ) { XCTAssertEqual(($0 as? PostgresError)?.sqlState?.code, "22012") }
        XCTAssertThrowsError(
            try connection.pipeline([Statement("SELECT 1"), Statement("SELECT 1 / 0")]) { calls.append($0) }
        ) { XCTAssertEqual(($0 as? PostgresError)?.sqlState?.code, "22012") }
        XCTAssertEqual(calls, [false, true])
        XCTAssertEqual(try connection.query("SELECT 3")[0].decode(Int.self, at: 0), 3)
        XCTAssertFalse(connection.isInTransaction)
    }

    func testLocalSettingsEndWithThePipeline() throws {
        let connection = try Connection(conninfo: TestDatabase.appURL)
        let results = try connection.pipeline([
            Statement("SELECT set_config('app.tenant_id', $1, true)", ["42"]),
            Statement("SELECT current_tenant_id()"),
        ])
        XCTAssertEqual(try results[1][0].decode(Int64?.self, at: 0), 42)
        // The next unit of work on the same connection starts with no tenant.
        XCTAssertNil(try connection.query("SELECT current_tenant_id()")[0].decode(Int64?.self, at: 0))
        XCTAssertEqual(try connection.query("SELECT current_setting('app.tenant_id', true)")[0].decode(String?.self, at: 0) ?? "", "")
    }

    func testBadConnectionStringFailsClearly() {
        XCTAssertThrowsError(try Connection(conninfo: "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2")) { error in
            XCTAssertEqual((error as? PostgresError)?.kind, .connection)
            XCTAssertTrue((error as? PostgresError)?.isUnavailable ?? false)
            XCTAssertTrue("\(error)".contains("port 1 failed"), "\(error)")
        }
    }

    /// A password written unescaped in a URL is misread by libpq as another
    /// part, which its error quotes: no part of the connection string it
    /// quotes reaches the error, its message or its description.
    func testAConnectionErrorQuotesNothingOfTheConnectionString() {
        let cases = [
            // '%' not followed by two hex digits: libpq quotes the whole password.
            ("postgresql://comprobify_app:Sup3r%ZZsecret@127.0.0.1:1/none?connect_timeout=2", "ZZsecret", "percent-encoded"),
            // A path libpq quotes in its answer (here a directory named like a secret).
            ("host=/nonexistent/Sup3rsecret port=1 dbname=none", "Sup3rsecret", "No such file or directory"),
            // A quote inside the password: libpq does not escape it where it quotes it.
            ("postgresql://comprobify_app:p\"w%ZZsecret@127.0.0.1:1/none?connect_timeout=2", "ZZsecret", "percent-encoded"),
            ("postgresql://comprobify_app:p%22w\"x%ZZsecret@127.0.0.1:1/none?connect_timeout=2", "ZZsecret", "percent-encoded"),
        ]
        for (conninfo, secret, kept) in cases {
            XCTAssertThrowsError(try Connection(conninfo: conninfo)) { error in
                guard let error = error as? PostgresError else { return XCTFail("\(error)") }
                XCTAssertEqual(error.kind, .connection)
                XCTAssertFalse(error.message.contains(secret), error.message)
                XCTAssertFalse("\(error)".contains(secret), "\(error)")
                XCTAssertTrue(error.message.contains(kept), "what failed is still said: \(error.message)")
            }
        }
    }
}
