import Foundation
import Postgres
import TestSupport
import XCTest

/// The wrapper's query API: interpolated binds, tuple and named decoding,
/// arrays, SQLSTATE patterns and the bounded statement cache.
final class QueryTests: XCTestCase {
    func testInterpolatedValuesBecomeNumberedBindsAndNeverSQLText() throws {
        let hostile = "'; DROP TABLE pg_class; --"
        let limit: Int64? = nil
        let query: PostgresQuery = "SELECT \(hostile)::text, \(42)::int, \(limit)::bigint, \(unescaped: "'fragment'")::text"
        XCTAssertEqual(query.sql, "SELECT $1::text, $2::int, $3::bigint, 'fragment'::text")
        XCTAssertEqual(query.binds.count, 3)
        let connection = try Connection(conninfo: TestDatabase.ownerURL)
        let (text, number, nothing, fragment) = try connection.query(query)[0].decode((String, Int, Int64?, String).self)
        XCTAssertEqual(text, hostile)
        XCTAssertEqual(number, 42)
        XCTAssertNil(nothing)
        XCTAssertEqual(fragment, "fragment")
    }

    /// A fragment's values are numbered where it goes, in the order of the
    /// statement's text, once per use; its constant text is left as written.
    func testFragmentsTakeTheNextNumbersWhereTheyGo() throws {
        func row(_ name: String, _ total: Int?) -> SQLFragment { "(\(name)::text, \(total)::int, 'x$1')" }
        let rows = [row("a", 1), row("b'); --", nil), row("c", 3)]
        let query: PostgresQuery = """
            SELECT \(10)::int, v.name, v.total, v.literal, \(20)::int FROM (VALUES \(rows, separator: ", ")) AS v (name, total, literal)
             WHERE v.name <> \("z")
            """
        XCTAssertEqual(
            query.sql,
            """
            SELECT $1::int, v.name, v.total, v.literal, $2::int FROM (VALUES ($3::text, $4::int, 'x$1'), ($5::text, $6::int, 'x$1'), \
            ($7::text, $8::int, 'x$1')) AS v (name, total, literal)
             WHERE v.name <> $9
            """)
        let connection = try Connection(conninfo: TestDatabase.ownerURL)
        let result = try connection.query(query)
        XCTAssertEqual(result.count, 3)
        let decoded = try (0..<3).map { try result[$0].decode((Int, String, Int?, String, Int).self) }
        XCTAssertEqual(decoded.map(\.1), ["a", "b'); --", "c"])
        XCTAssertEqual(decoded.map(\.2), [1, nil, 3])
        XCTAssertEqual(decoded.map(\.3), ["x$1", "x$1", "x$1"])
        XCTAssertEqual(decoded.map(\.0), [10, 10, 10])
        XCTAssertEqual(decoded.map(\.4), [20, 20, 20])
    }

    func testOneSQLTextForEveryValueSoOnePreparedStatementServesThemAll() throws {
        let connection = try Connection(conninfo: TestDatabase.ownerURL)
        for value in 0..<20 {
            XCTAssertEqual(try connection.query("SELECT \(value)::int + 1")[0].decode(Int.self, at: 0), value + 1)
        }
        let prepared = try connection.query("SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE 'SELECT $1::int + 1%'")
        XCTAssertEqual(try prepared[0].decode(Int.self, at: 0), 1)
    }

    /// A statement planned each time is never prepared, alone or in a
    /// pipeline, so PostgreSQL plans it with its values at every run.
    func testAStatementPlannedEachTimeIsNeverPrepared() throws {
        let connection = try Connection(conninfo: TestDatabase.ownerURL)
        for value in 0..<8 {
            var alone: PostgresQuery = "SELECT \(value)::int * 3"
            alone.plannedEachTime = true
            XCTAssertEqual(try connection.query(alone)[0].decode(Int.self, at: 0), value * 3)
            var piped: PostgresQuery = "SELECT \(value)::int * 5"
            piped.plannedEachTime = true
            let answers = try connection.pipeline([piped, "SELECT \(value)::int * 7"])
            XCTAssertEqual(try answers[0][0].decode(Int.self, at: 0), value * 5)
            XCTAssertEqual(try answers[1][0].decode(Int.self, at: 0), value * 7)
        }
        let prepared = try connection.query(
            "SELECT statement FROM pg_prepared_statements WHERE statement LIKE 'SELECT $1::int *%' ORDER BY statement")
        XCTAssertEqual(try prepared.rows.map { try $0.decode(String.self, at: 0) }, ["SELECT $1::int * 7"])
    }

    func testPreparedStatementsPerConnectionAreBounded() throws {
        let connection = try Connection(conninfo: TestDatabase.ownerURL)
        let extra = 20
        for index in 0..<(Connection.maxPreparedStatements + extra) {
            // SQL built at run time: every text differs.
            let sql = PostgresQuery("SELECT $1::int + \(index)", [1])
            XCTAssertEqual(try connection.query(sql)[0].decode(Int.self, at: 0), 1 + index)
        }
        let results = try connection.pipeline([PostgresQuery("SELECT $1::int - 1", [5]), "SELECT count(*) FROM pg_prepared_statements"])
        XCTAssertEqual(try results[0][0].decode(Int.self, at: 0), 4)
        XCTAssertEqual(try results[1][0].decode(Int.self, at: 0), Connection.maxPreparedStatements)
    }

    func testRowsDecodeIntoTuplesFromAnOffsetAndByColumnName() throws {
        let connection = try Connection(conninfo: TestDatabase.ownerURL)
        let row = try connection.query("SELECT 1::bigint AS id, 'x'::text AS label, NULL::text AS note, true AS active")[0]
        let (id, label, note, active) = try row.decode((Int64, String, String?, Bool).self)
        XCTAssertEqual(id, 1)
        XCTAssertEqual(label, "x")
        XCTAssertNil(note)
        XCTAssertTrue(active)
        let (tail, flag) = try row.decode((String?, Bool).self, from: 2)
        XCTAssertNil(tail)
        XCTAssertTrue(flag)
        XCTAssertEqual(try row.decode(String.self, named: "label"), "x")
        XCTAssertEqual(try row.decode(Int64.self, named: "id"), 1)
        XCTAssertThrowsError(try row.decode(String.self, named: "missing")) { error in
            XCTAssertEqual((error as? PostgresError)?.kind, .decoding)
        }
        // A NULL where the tuple says non-optional is an error, never a default.
        XCTAssertThrowsError(try row.decode((Int64, String, String).self))
    }

    func testArraysDecode() throws {
        let connection = try Connection(conninfo: TestDatabase.ownerURL)
        let texts = ["plain", "with space", "quote\"d", "back\\slash", "comma,here", "{braces}", "NULL", "", "ñ👩🏽‍💻"]
        let row = try connection.query(
            """
            SELECT \(texts)::text[], ARRAY[1, -2, 9223372036854775807]::bigint[], '{}'::bigint[],
                   ARRAY['a', NULL]::text[], ARRAY[3, 4]::int[]
            """
        )[0]
        XCTAssertEqual(try row.decode([String].self, at: 0), texts)
        XCTAssertEqual(try row.decode([Int64].self, at: 1), [1, -2, Int64.max])
        XCTAssertEqual(try row.decode([Int64].self, at: 2), [])
        XCTAssertEqual(try row.decode([String?].self, at: 3), ["a", nil])
        XCTAssertThrowsError(try row.decode([String].self, at: 3), "a NULL element needs an optional element type")
        XCTAssertEqual(try row.decode([Int].self, at: 4), [3, 4])
        XCTAssertThrowsError(try row.decode([Int64].self, at: 0), "text[] is not bigint[]")
    }

    func testSQLStateMatchesCodesAndClassesAsValues() throws {
        let connection = try Connection(conninfo: TestDatabase.ownerURL)
        try connection.query("CREATE TEMP TABLE u (id int PRIMARY KEY)", prepared: false)
        try connection.query("INSERT INTO u VALUES (1)")
        func classify(_ body: () throws -> Void) -> String {
            do {
                try body()
                return "none"
            } catch let error as PostgresError {
                switch error.sqlState {
                case .uniqueViolation: return "unique"
                case .integrityConstraintViolation: return "integrity"
                case .dataException: return "data"
                default: return "other"
                }
            } catch {
                return "not a PostgresError"
            }
        }
        XCTAssertEqual(classify { try connection.query("INSERT INTO u VALUES (1)") }, "unique")
        XCTAssertEqual(classify { try connection.query("INSERT INTO u VALUES (NULL)") }, "integrity")
        XCTAssertEqual(classify { try connection.query("SELECT 1 / 0") }, "data")
        XCTAssertEqual(classify { try connection.query("SELECT * FROM no_such_table") }, "other")
        XCTAssertTrue(SQLState.integrityConstraintViolation ~= SQLState.checkViolation)
        XCTAssertFalse(SQLState.uniqueViolation ~= SQLState.checkViolation)
        XCTAssertEqual(SQLState.checkViolation.sqlClass, .integrityConstraintViolation)
    }
}

/// Timestamps as the answers and the statements write them.
final class TimestampFormatTests: XCTestCase {
    private func date(_ seconds: Double) -> Date { Date(timeIntervalSince1970: seconds) }

    func testFieldsPaddedFractionsTruncatedAndTheSuffixAppended() {
        XCTAssertEqual(Timestamp.format(date(0), fractionDigits: 3, suffix: "Z"), "1970-01-01T00:00:00.000Z")
        XCTAssertEqual(Timestamp.format(date(1_796_083_199.987654), fractionDigits: 3, suffix: "Z"), "2026-11-30T23:59:59.987Z")
        XCTAssertEqual(
            Timestamp.format(date(1_796_083_199.987654), fractionDigits: 6, separator: " ", suffix: "+00"),
            "2026-11-30 23:59:59.987654+00")
        XCTAssertEqual(Timestamp.format(date(1_796_083_199.987654), fractionDigits: 0), "2026-11-30T23:59:59")
        XCTAssertEqual(Timestamp.format(date(1_796_083_199.5), fractionDigits: 1), "2026-11-30T23:59:59.5")
        XCTAssertEqual(Timestamp.format(date(951_782_400), fractionDigits: 3, suffix: "Z"), "2000-02-29T00:00:00.000Z")
        // Before 1970: the fraction still counts up from the second before.
        XCTAssertEqual(Timestamp.format(date(-0.25), fractionDigits: 3, suffix: "Z"), "1969-12-31T23:59:59.750Z")
        XCTAssertEqual(Timestamp.format(date(-62_135_596_800), fractionDigits: 0), "0001-01-01T00:00:00")
        XCTAssertEqual(Timestamp.format(date(253_402_300_799), fractionDigits: 0, suffix: "Z"), "9999-12-31T23:59:59Z")
        // Five-digit years take the long way and still come out whole.
        XCTAssertEqual(Timestamp.format(date(253_402_300_800), fractionDigits: 2, suffix: "Z"), "10000-01-01T00:00:00.00Z")
    }

    /// Dates past Int64's microseconds, and NaN, are clamped, not trapped on.
    func testDatesOutOfRangeDoNotTrap() {
        for seconds in [1e13, -1e13, 1e300, -1e300, .infinity, -.infinity, .nan] {
            XCTAssertFalse(Timestamp.format(date(seconds), fractionDigits: 3, suffix: "Z").isEmpty, "\(seconds)")
        }
        XCTAssertTrue(Timestamp.format(date(1e300), fractionDigits: 0).hasPrefix("287"))
        XCTAssertEqual(Timestamp.format(date(.nan), fractionDigits: 0), "1970-01-01T00:00:00")
    }

    /// Separators and suffixes of more than one byte are written whole (a
    /// Character such as CR LF is one character of two bytes).
    func testSeparatorsAndSuffixesOfAnyWidth() {
        XCTAssertEqual(Timestamp.format(date(0), fractionDigits: 0, separator: "\r\n", suffix: "+00:00"), "1970-01-01\r\n00:00:00+00:00")
        XCTAssertEqual(Timestamp.format(date(0), fractionDigits: 1, separator: "é", suffix: " UTC"), "1970-01-01é00:00:00.0 UTC")
        XCTAssertEqual(Timestamp.format(date(0), fractionDigits: 0), "1970-01-01T00:00:00")
    }

    func testWhatIsWrittenParsesBackToTheSameMicrosecond() {
        for seconds in [0.0, 1_796_083_199.987654, -1.000001, 951_782_400.000001, 4_102_444_800.5] {
            let text = Timestamp.format(date(seconds), fractionDigits: 6, separator: " ", suffix: "+00")
            let parsed = Array(text.utf8).withUnsafeBufferPointer { Timestamp.parse($0) }
            XCTAssertEqual(parsed.map { ($0.timeIntervalSince1970 * 1_000_000).rounded() }, (seconds * 1_000_000).rounded(), text)
        }
    }
}

/// Timestamps as the API shows them, read from a row: checked against
/// PostgreSQL's own `to_char` of the same values.
final class TimestampColumnTests: XCTestCase {
    static let pattern = #"YYYY-MM-DD"T"HH24:MI:SS.MS"Z""#

    func testEveryMicrosecondIsCutToItsMillisecondAsPostgreSQLWritesIt() throws {
        let connection = try Connection(conninfo: TestDatabase.ownerURL)
        // Exact milliseconds (where arithmetic on a Double could give the one
        // before), every fraction width, no fraction, year 1 and year 9999,
        // then 2000 random microseconds over five centuries.
        let rows = try connection.query(
            """
            WITH t(v) AS (
                SELECT unnest(ARRAY['2026-12-02 21:44:25.028+00', '2026-12-02 21:44:25.999+00', '2026-12-02 21:44:25.001+00',
                                    '2026-12-02 21:44:25.5+00', '2026-12-02 21:44:25.12+00', '2026-12-02 21:44:25.123456+00',
                                    '2026-12-02 21:44:25+00', '0001-01-01 00:00:00.000001+00', '9999-12-31 23:59:59.999999+00',
                                    '2000-02-29 12:00:00.1+00']::timestamptz[])
                UNION ALL
                SELECT timestamptz '1900-01-01 00:00:00+00' + random() * interval '500 years' FROM generate_series(1, 1000)
                UNION ALL
                SELECT date_trunc('milliseconds', timestamptz '1990-01-01 00:00:00+00' + random() * interval '100 years')
                  FROM generate_series(1, 1000)
            )
            SELECT v, to_char(v AT TIME ZONE 'UTC', \(unescaped: "'" + Self.pattern + "'")), v::text FROM t
            """)
        XCTAssertEqual(rows.count, 2010)
        for row in rows.rows {
            let text = try row.decode(String.self, at: 2)
            XCTAssertEqual(try row.rfc3339Milliseconds(at: 0), try row.decode(String.self, at: 1), text)
        }
    }

    func testNullAndWhatIsNotAFourDigitYearsTimestamp() throws {
        let connection = try Connection(conninfo: TestDatabase.ownerURL)
        let row = try connection.query(
            "SELECT NULL::timestamptz, '10000-01-01 00:00:00.25+00'::timestamptz, now()::text, 1::bigint")[0]
        XCTAssertNil(try row.rfc3339Milliseconds(at: 0))
        // Past year 9999 (a date no document, key or certificate has) it is
        // refused, as decoding it as a Date refuses it.
        for column in [1, 2, 3] {
            XCTAssertThrowsError(try row.rfc3339Milliseconds(at: column)) { error in
                XCTAssertEqual((error as? PostgresError)?.kind, .decoding)
            }
        }
    }

    func testOnlyPostgreSQLsUTCTextIsRewritten() {
        for text in [
            "2026-12-02 21:44:25.028+01", "2026-12-02T21:44:25.028+00", "2026-12-02 21:44:25.+00", "2026-12-02 21:44:25.1234567+00",
            "2026-12-02 21:44:2x+00", "2026-12-02 21:44:25.028+00 BC", "10000-01-01 00:00:00+00", "", "2026-12-02 21:44:25.0a8+00",
        ] {
            var out = [UInt8](repeating: 0, count: 24)
            let rewritten = Array(text.utf8).withUnsafeBufferPointer { bytes in
                out.withUnsafeMutableBufferPointer { Timestamp.rfc3339Milliseconds(bytes, into: $0) }
            }
            XCTAssertFalse(rewritten, text)
            XCTAssertEqual(out, [UInt8](repeating: 0, count: 24), "nothing written for \(text)")
        }
    }
}
