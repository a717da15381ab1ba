/// The one error type of the wrapper.
///
/// Server errors carry the raw five-character SQLSTATE and the server's message,
/// detail and constraint name. Query parameters never appear here: they may be
/// tokens or tax ids. `description` leaves out `detail`, because the server
/// copies column values into it ("Key (email)=(...) already exists"), and elides
/// the input that data exceptions quote in their message.
public struct PostgresError: Error, Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        /// The server answered the statement with an error; `sqlState` is set.
        case server
        /// The connection could not be made, or broke while in use.
        case connection
        /// No connection became free within the pool's wait timeout.
        case poolTimeout
        /// The pool has been shut down.
        case poolClosed
        /// A column's value did not match the Swift type asked for.
        case decoding
        /// The wrapper refused the statement, the caller's mistake rather than
        /// an outage: more parameters than the protocol carries (65535),
        /// refused before anything is sent, the connection kept; or COPY in a
        /// pipeline, whose connection, left in COPY, is discarded.
        case refused
    }

    public let kind: Kind
    public let sqlState: SQLState?
    public let message: String
    public let detail: String?
    public let constraint: String?
    /// The column the error is tied to, when PostgreSQL names one (a not-null violation does).
    public let column: String?
    /// The server function that raised it (never translated, unlike `message`).
    public let sourceFunction: String?
    /// The connection was lost once COMMIT had been sent (`Transaction.commit(after:)`,
    /// or the pool's own COMMIT): the transaction may have committed, and
    /// nothing on this side can tell. Work that must not happen twice is
    /// looked up before it is done again.
    public private(set) var commitUncertain = false

    public init(
        kind: Kind,
        sqlState: SQLState? = nil,
        message: String,
        detail: String? = nil,
        constraint: String? = nil,
        column: String? = nil,
        sourceFunction: String? = nil
    ) {
        self.kind = kind
        self.sqlState = sqlState
        self.message = message
        self.detail = detail
        self.constraint = constraint
        self.column = column
        self.sourceFunction = sourceFunction
    }

    /// True when the SQLSTATE belongs to the class, e.g. `"23"` (integrity constraint violation).
    public func hasClass(_ sqlClass: String) -> Bool {
        sqlState?.code.hasPrefix(sqlClass) ?? false
    }

    /// True when the SQLSTATE is exactly `code`, e.g. `.uniqueViolation`.
    public func hasCode(_ code: SQLState) -> Bool {
        sqlState == code
    }

    /// Serialization failure or deadlock: the whole transaction may simply be run again.
    public var isTransactionRetryable: Bool {
        switch sqlState {
        case .serializationFailure, .deadlockDetected: return true
        default: return false
        }
    }

    /// The connection broke or the server ended the session (class 08, 57P): unlike
    /// a statement's error, the work sent may or may not have run.
    public var isConnectionLoss: Bool {
        kind == .connection || (kind == .server && (hasClass("08") || hasClass("57P")))
    }

    /// This error as met while COMMIT was on its way or running: a lost
    /// connection leaves the outcome unknown (`commitUncertain`); any other
    /// error (the server refused a statement, so COMMIT did not run) is as it was.
    func whileCommitting() -> PostgresError {
        var error = self
        if isConnectionLoss { error.commitUncertain = true }
        return error
    }

    /// The database could not be reached or the connection was lost (including an
    /// administrator shutting the server down), or it takes no writes: a standby
    /// (the connection reached a demoted primary after a failover) or a database
    /// set read-only. The work may succeed on a new connection.
    public var isUnavailable: Bool {
        switch kind {
        case .connection, .poolTimeout, .poolClosed: return true
        case .decoding, .refused: return false
        case .server:
            return hasClass("08") || hasClass("57P") || hasCode(.cannotConnectNow) || hasCode(.readOnlySQLTransaction)
        }
    }

    public var description: String {
        var text = "PostgresError(\(kind.rawValue)"
        if let sqlState { text += " \(sqlState.code)" }
        text += ": \(hasClass("22") ? PostgresError.redactingQuotes(message) : message)"
        if let constraint { text += " [constraint \(constraint)]" }
        if commitUncertain { text += " [while committing: the transaction may have committed]" }
        return text + ")"
    }
}

extension PostgresError {
    /// Data exceptions (class 22) quote the offending input, which may be a
    /// parameter: `invalid input syntax for type integer: "..."`. Logs get the
    /// message with every quoted part elided.
    /// `redactingQuotes`, unless the text libpq quotes may itself hold a
    /// quote (`quotesMayNest`: the connection string has one, written or
    /// percent-encoded): then only what comes before the message's first quote
    /// and after its last is kept, since the quotes cannot be paired.
    static func redactingQuotes(_ message: String, quotesMayNest: Bool) -> String {
        guard quotesMayNest else { return redactingQuotes(message) }
        guard let first = message.firstIndex(of: "\"") else { return message }
        let last = message.lastIndex(of: "\"") ?? first
        guard first < last else { return message[..<first] + "\"…" }
        return message[..<first] + "\"…\"" + message[message.index(after: last)...]
    }

    static func redactingQuotes(_ message: String) -> String {
        var out = ""
        var inQuote = false
        for char in message {
            if char == "\"" {
                out.append(inQuote ? "…\"" : "\"")
                inQuote.toggle()
            } else if !inQuote {
                out.append(char)
            }
        }
        return out
    }
}

/// A five-character SQLSTATE, or a two-character class of them, matched as a
/// value: `switch error.sqlState { case .uniqueViolation: ...; case .integrityConstraintViolation: ... }`.
/// A class pattern matches every code of its class, as GRDB's `ResultCode ~=` does.
public struct SQLState: Sendable, Hashable, CustomStringConvertible, ExpressibleByStringLiteral {
    public let code: String

    public init(_ code: String) {
        self.code = code
    }

    public init(stringLiteral value: String) {
        self.code = value
    }

    /// The two-character class of a code ("23" for "23505").
    public var sqlClass: SQLState { SQLState(String(code.prefix(2))) }

    public var isClass: Bool { code.utf8.count == 2 }

    public var description: String { code }

    /// A class pattern matches the codes of its class; a code pattern only itself.
    public static func ~= (pattern: SQLState, value: SQLState) -> Bool {
        pattern.isClass ? value.code.hasPrefix(pattern.code) : pattern.code == value.code
    }

    public static func ~= (pattern: SQLState, value: SQLState?) -> Bool {
        value.map { pattern ~= $0 } ?? false
    }

    // Classes.
    public static let connectionException: SQLState = "08"
    public static let dataException: SQLState = "22"
    public static let integrityConstraintViolation: SQLState = "23"
    public static let transactionRollback: SQLState = "40"
    public static let insufficientResources: SQLState = "53"
    public static let operatorIntervention: SQLState = "57"

    // Codes.
    public static let uniqueViolation: SQLState = "23505"
    public static let foreignKeyViolation: SQLState = "23503"
    public static let checkViolation: SQLState = "23514"
    public static let notNullViolation: SQLState = "23502"
    public static let serializationFailure: SQLState = "40001"
    public static let deadlockDetected: SQLState = "40P01"
    public static let insufficientPrivilege: SQLState = "42501"
    public static let undefinedFunction: SQLState = "42883"
    public static let invalidTextRepresentation: SQLState = "22P02"
    public static let queryCanceled: SQLState = "57014"
    public static let adminShutdown: SQLState = "57P01"
    public static let cannotConnectNow: SQLState = "57P03"
    public static let lockNotAvailable: SQLState = "55P03"
    public static let idleInTransactionTimeout: SQLState = "25P03"
    public static let readOnlySQLTransaction: SQLState = "25006"
}
