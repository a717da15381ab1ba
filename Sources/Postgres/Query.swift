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
    /// Planned with its values every time it runs (sent unnamed, never
    /// prepared). For a statement whose best plan depends so much on its
    /// values that a generic plan, which PostgreSQL may switch a prepared
    /// statement to after five runs, would be far slower than a custom one;
    /// it costs a parse and a plan per run.
    public var plannedEachTime = false
    /// Never shares a connection with other pipelines (`ConnectionPool.pipeline`),
    /// for a read that may take long (a page of large rows): PostgreSQL runs the
    /// pipelines of a connection one after the other, so everything sent behind
    /// it, any caller's, would wait for it. It waits for a connection of its
    /// own instead, as a transaction does.
    public var runsAlone = false

    public init(stringLiteral value: String) {
        sql = value
        binds = []
    }

    public init(stringInterpolation: StringInterpolation) {
        sql = stringInterpolation.sql
        binds = stringInterpolation.binds
    }

    /// SQL with `$n` placeholders written by hand and their values, for tests
    /// of the wrapper itself and for a statement whose text is made once and
    /// reused on every request (`Database.authenticate`). A statement built
    /// from parts interpolates `SQLFragment`s instead.
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

        /// A piece of SQL with values of its own, shared by several statements
        /// or repeated (rows of a VALUES list): its values become the next
        /// `$n` here, in order.
        public mutating func appendInterpolation(_ fragment: SQLFragment) {
            for part in fragment.parts {
                switch part {
                case .sql(let text): sql += text
                case .value(let value): appendInterpolation(value)
                }
            }
        }

        /// Fragments one after another, `separator` (constant SQL) between them.
        public mutating func appendInterpolation(_ fragments: [SQLFragment], separator: String) {
            for (index, fragment) in fragments.enumerated() {
                if index > 0 { sql += separator }
                appendInterpolation(fragment)
            }
        }
    }
}

/// A piece of SQL and its values, kept apart until it goes into a
/// `PostgresQuery` (`"… \(fragment) …"`), where its values are numbered after
/// the statement's own: a fragment is written once and used in several
/// statements, or once per row, and still no caller counts `$n`.
///
///     let row: SQLFragment = "(\(number)::text, \(total)::numeric)"
///     let insert: PostgresQuery = "INSERT INTO t (number, total) VALUES \([row, row], separator: ", ")"
public struct SQLFragment: Sendable, ExpressibleByStringInterpolation {
    enum Part: Sendable {
        case sql(String)
        case value(any PostgresBindable)
    }

    var parts: [Part]

    public init(stringLiteral value: String) {
        parts = [.sql(value)]
    }

    public init(stringInterpolation: StringInterpolation) {
        parts = stringInterpolation.parts
    }

    public struct StringInterpolation: StringInterpolationProtocol {
        var parts: [Part] = []

        public init(literalCapacity: Int, interpolationCount: Int) {
            parts.reserveCapacity(interpolationCount * 2 + 1)
        }

        public mutating func appendLiteral(_ literal: String) {
            parts.append(.sql(literal))
        }

        /// A value: a parameter where the fragment is used.
        public mutating func appendInterpolation(_ value: some PostgresBindable) {
            parts.append(.value(value))
        }

        /// An optional value: NULL when nil.
        public mutating func appendInterpolation<Value: PostgresBindable>(_ value: Value?) {
            parts.append(.value(value))
        }

        /// A constant piece of SQL. Never a value that came from outside.
        public mutating func appendInterpolation(unescaped fragment: String) {
            parts.append(.sql(fragment))
        }
    }
}

/// Statements in a pipeline are queries like any other.
public typealias Statement = PostgresQuery

extension PostgresQuery {
    /// Whether the statement's first word (after blanks and comments) is one
    /// that begins, ends or splits a transaction, or runs code that might:
    /// BEGIN, START, COMMIT, END, ROLLBACK, ABORT, SAVEPOINT, RELEASE,
    /// PREPARE (TRANSACTION), CALL or DO. A pipeline with such a statement
    /// could leave a transaction open behind it, so it never shares its
    /// connection with other pipelines (`ConnectionPool.pipeline`).
    public var mayControlTransaction: Bool {
        var bytes = sql.utf8[...]
        // Blanks and comments first (block comments nest in PostgreSQL).
        while let first = bytes.first {
            if first == UInt8(ascii: " ") || (9...13).contains(first) {
                bytes = bytes.dropFirst()
            } else if bytes.starts(with: "--".utf8) {
                bytes = bytes.drop { $0 != UInt8(ascii: "\n") }
            } else if bytes.starts(with: "/*".utf8) {
                var depth = 0
                while !bytes.isEmpty {
                    if bytes.starts(with: "/*".utf8) {
                        depth += 1
                        bytes = bytes.dropFirst(2)
                    } else if bytes.starts(with: "*/".utf8) {
                        depth -= 1
                        bytes = bytes.dropFirst(2)
                        if depth == 0 { break }
                    } else {
                        bytes = bytes.dropFirst()
                    }
                }
            } else {
                break
            }
        }
        // The first word, up to 9 letters, upper-cased and packed into an
        // integer, 5 bits a letter (A is 1): nothing to allocate.
        var word: UInt64 = 0
        var length = 0
        for byte in bytes {
            guard let upper = PostgresQuery.upperLetter(byte) else { break }
            length += 1
            if length > 9 { return false }
            word = word << 5 | UInt64(upper - 64)
        }
        return PostgresQuery.transactionWords.contains(word)
    }

    private static func upperLetter(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"): byte
        case UInt8(ascii: "a")...UInt8(ascii: "z"): byte - 32
        default: nil
        }
    }

    private static let transactionWords: Set<UInt64> = Set(
        ["BEGIN", "START", "COMMIT", "END", "ROLLBACK", "ABORT", "SAVEPOINT", "RELEASE", "PREPARE", "CALL", "DO"].map {
            $0.utf8.reduce(0) { $0 << 5 | UInt64($1 - 64) }
        }
    )
}

/// `name` as a quoted SQL identifier, any double quote in it doubled: a name
/// with capitals, or spelled like a keyword (`user`), still names itself.
public func quotedIdentifier(_ name: String) -> String {
    "\"" + name.replacingOccurrences(of: "\"", with: "\"\"") + "\""
}
