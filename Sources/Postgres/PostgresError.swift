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
    }

    public let kind: Kind
    public let sqlState: String?
    public let message: String
    public let detail: String?
    public let constraint: String?

    public init(
        kind: Kind,
        sqlState: String? = nil,
        message: String,
        detail: String? = nil,
        constraint: String? = nil
    ) {
        self.kind = kind
        self.sqlState = sqlState
        self.message = message
        self.detail = detail
        self.constraint = constraint
    }

    /// True when the SQLSTATE belongs to the class, e.g. `"23"` (integrity constraint violation).
    public func hasClass(_ sqlClass: String) -> Bool {
        sqlState?.hasPrefix(sqlClass) ?? false
    }

    /// True when the SQLSTATE is exactly `code`, e.g. `"23505"` (unique violation).
    public func hasCode(_ code: String) -> Bool {
        sqlState == code
    }

    /// Serialization failure or deadlock: the whole transaction may simply be run again.
    public var isTransactionRetryable: Bool {
        sqlState == SQLState.serializationFailure || sqlState == SQLState.deadlockDetected
    }

    /// The database could not be reached or the connection was lost (including an
    /// administrator shutting the server down). The work may succeed on a new connection.
    public var isUnavailable: Bool {
        switch kind {
        case .connection, .poolTimeout, .poolClosed: return true
        case .decoding: return false
        case .server:
            return hasClass("08") || hasClass("57P") || hasCode(SQLState.cannotConnectNow)
        }
    }

    public var description: String {
        var text = "PostgresError(\(kind.rawValue)"
        if let sqlState { text += " \(sqlState)" }
        text += ": \(hasClass("22") ? PostgresError.redactingQuotes(message) : message)"
        if let constraint { text += " [constraint \(constraint)]" }
        return text + ")"
    }
}

extension PostgresError {
    /// Data exceptions (class 22) quote the offending input, which may be a
    /// parameter: `invalid input syntax for type integer: "..."`. Logs get the
    /// message with every quoted part elided.
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

/// SQLSTATE codes the wrapper and its users match on.
public enum SQLState {
    public static let uniqueViolation = "23505"
    public static let foreignKeyViolation = "23503"
    public static let checkViolation = "23514"
    public static let notNullViolation = "23502"
    public static let serializationFailure = "40001"
    public static let deadlockDetected = "40P01"
    public static let insufficientPrivilege = "42501"
    public static let invalidTextRepresentation = "22P02"
    public static let queryCanceled = "57014"
    public static let cannotConnectNow = "57P03"
    public static let lockNotAvailable = "55P03"
    public static let idleInTransactionTimeout = "25P03"
}
