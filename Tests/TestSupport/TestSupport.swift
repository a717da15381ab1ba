import Foundation
import Postgres

/// The databases started by scripts/test, shared by both test targets.
public enum TestDatabase {
    static func url(_ name: String) -> String {
        guard let url = ProcessInfo.processInfo.environment[name], !url.isEmpty else {
            fatalError("\(name) is not set: run the tests with scripts/test, which starts a throwaway PostgreSQL")
        }
        return url
    }

    /// The cluster's superuser (migrations, fixtures, assertions).
    public static var ownerURL: String { url("COMPROBIFY_TEST_OWNER_URL") }
    /// comprobify_app, the role the server uses.
    public static var appURL: String { url("COMPROBIFY_TEST_APP_URL") }

    /// A superuser connection for assertions and fixtures the API cannot make.
    public static func owner() throws -> Connection {
        try Connection(conninfo: ownerURL)
    }

    /// Runs one statement as the superuser and returns its rows.
    @discardableResult
    public static func query(_ sql: String, _ parameters: [any PostgresBindable] = []) throws -> QueryResult {
        try owner().query(sql, parameters, prepared: false)
    }

    public static func scalar<T: PostgresDecodable>(
        _ sql: String, _ parameters: [any PostgresBindable] = [], as type: T.Type = T.self
    ) throws -> T {
        try query(sql, parameters)[0].decode(T.self, at: 0)
    }

    /// A table name no other test uses.
    public static func uniqueTable(_ stem: String) -> String {
        "\(stem)_\(UInt32.random(in: 0...UInt32.max))"
    }
}

/// Runs `count` operations at once and returns their results in order.
public func concurrently<T: Sendable>(_ count: Int, _ operation: @escaping @Sendable (Int) async throws -> T) async throws -> [T] {
    try await withThrowingTaskGroup(of: (Int, T).self) { group in
        for index in 0..<count {
            group.addTask { (index, try await operation(index)) }
        }
        var results = [T?](repeating: nil, count: count)
        for try await (index, value) in group { results[index] = value }
        return results.map { $0! }
    }
}
