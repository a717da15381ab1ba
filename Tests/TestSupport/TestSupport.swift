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
    /// comprobify_app through the cluster's Unix socket.
    public static var socketURL: String { url("COMPROBIFY_TEST_SOCKET_URL") }
    /// comprobify_app over TLS (`sslmode=require`); every other URL is plain.
    public static var tlsURL: String { url("COMPROBIFY_TEST_TLS_URL") }
    /// comprobify_app over TLS ended by scripts/lib/tls_proxy.py, which writes
    /// the server's answers in TLS records twice as large as PostgreSQL's own.
    public static var tlsProxyURL: String { url("COMPROBIFY_TEST_TLS_PROXY_URL") }

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

    /// The backend that is waiting for a lock held by backend `pid`, as soon as
    /// there is one; nil after `timeout` seconds. For tests that must act only
    /// once a request is queued behind a lock, whatever the machine's load.
    public static func sessionBlocked(by pid: Int32, timeout: TimeInterval = 30) -> Int32? {
        var blocked: Int32?
        _ = poll(timeout) {
            blocked = try query("SELECT pid FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid)) LIMIT 1", [pid]).first?
                .decode(Int32.self, at: 0)
            return blocked != nil
        }
        return blocked
    }

    /// True as soon as backend `pid` has exited; false after `timeout` seconds.
    public static func waitForBackendExit(_ pid: Int32, timeout: TimeInterval = 30) -> Bool {
        poll(timeout) { try scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", [pid], as: Int.self) == 0 }
    }

    private static func poll(_ timeout: TimeInterval, _ condition: () throws -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        repeat {
            if (try? condition()) == true { return true }
            usleep(5_000)
        } while Date() < deadline
        return false
    }

    /// A table name no other test uses.
    public static func uniqueTable(_ stem: String) -> String {
        "\(stem)_\(UInt32.random(in: 0...UInt32.max))"
    }
}

/// A TCP port that was free on 127.0.0.1 a moment ago (the kernel's choice).
public func freeLoopbackPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw POSIXError(.EMFILE) }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer -> Bool in
            bind(fd, pointer, length) == 0 && getsockname(fd, pointer, &length) == 0
        }
    }
    guard bound else { throw POSIXError(.EADDRNOTAVAIL) }
    return Int(UInt16(bigEndian: address.sin_port))
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
