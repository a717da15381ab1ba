/// SQL text and its parameters, written where they belong:
///
///     tx.query("SELECT label FROM api_keys WHERE id = \(keyID)")
///
/// sends `SELECT label FROM api_keys WHERE id = $1` with `keyID` as the bind, as
/// postgres-nio's `PostgresQuery` does. Every interpolated value becomes a
/// parameter, so nothing is ever spliced into the SQL text, the text stays the
/// same from call to call (one prepared statement serves them all), and no
/// caller counts `$n` by hand. Constant SQL fragments (a column list kept beside
/// its decoder) go in with `\(unescaped: fragment)`.
public struct PostgresQuery: Sendable, ExpressibleByStringInterpolation {
    public private(set) var sql: String
    public private(set) var binds: [any PostgresBindable]

    public init(stringLiteral value: String) {
        sql = value
        binds = []
    }

    public init(stringInterpolation: StringInterpolation) {
        sql = stringInterpolation.sql
        binds = stringInterpolation.binds
    }

    /// SQL with `$n` placeholders written by hand and their values, for the few
    /// callers that build a statement from parts (tests of the wrapper itself)
    /// or make its text once and reuse it (`Database.authenticate`).
    public init(_ sql: String, _ binds: [any PostgresBindable]) {
        self.sql = sql
        self.binds = binds
    }

    public struct StringInterpolation: StringInterpolationProtocol {
        var sql = ""
        var binds: [any PostgresBindable] = []

        public init(literalCapacity: Int, interpolationCount: Int) {
            sql.reserveCapacity(literalCapacity + interpolationCount * 3)
            binds.reserveCapacity(interpolationCount)
        }

        public mutating func appendLiteral(_ literal: String) {
            sql += literal
        }

        /// A value: becomes the next `$n` and its bind.
        public mutating func appendInterpolation(_ value: some PostgresBindable) {
            binds.append(value)
            sql += "$\(binds.count)"
        }

        /// An optional value: NULL when nil.
        public mutating func appendInterpolation<Value: PostgresBindable>(_ value: Value?) {
            binds.append(value)
            sql += "$\(binds.count)"
        }

        /// A constant piece of SQL (a column list, a table name in a test).
        /// Never a value that came from outside.
        public mutating func appendInterpolation(unescaped fragment: String) {
            sql += fragment
        }
    }
}

/// Statements in a pipeline are queries like any other.
public typealias Statement = PostgresQuery
