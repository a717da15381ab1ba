import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOConcurrencyHelpers
import NIOCore
import Postgres
import TestSupport
import XCTest

@testable import Comprobify

let adminToken = "test-admin-token"

/// Log lines written while a server runs, to check what never reaches them.
final class LogCapture: Sendable {
    let lines = NIOLockedValueBox<[String]>([])

    var text: String { lines.withLockedValue { $0.joined(separator: "\n") } }

    struct Handler: LogHandler {
        let capture: LogCapture
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            let all = metadata.merging(event.metadata ?? [:]) { $1 }
            capture.lines.withLockedValue { $0.append("\(event.level) \(event.message) \(all)") }
        }
    }
}

/// The plan PostgreSQL keeps for `query` once it goes generic (what a
/// prepared statement may switch to after five runs), with `arguments` (SQL
/// text) for its parameters: as the server reads, the app role with a tenant
/// set, so that row-level security adds the tenant_id every index starts
/// with; sequential scans off, so that a small test table still shows the
/// index a large one would use. EXPLAIN's lines.
func genericPlan(_ query: PostgresQuery, arguments: String) throws -> String {
    let connection = try Connection(conninfo: TestDatabase.appURL)
    try connection.execute(
        script: """
            SELECT set_config('app.tenant_id', '1', false);
            SET plan_cache_mode = force_generic_plan; SET enable_seqscan = off; SET max_parallel_workers_per_gather = 0;
            PREPARE page AS \(query.sql)
            """)
    return try connection.query("EXPLAIN (COSTS OFF) EXECUTE page(\(unescaped: arguments))", prepared: false).rows
        .map { try $0.decode(String.self, at: 0) }.joined(separator: "\n")
}

/// Has PostgreSQL refuse every row of `tenant` inserted into `table` (a
/// trigger that raises), until the returned function is called: one kind of
/// write failing for a moment, as while the database is out of reach.
/// With `check`, the refusal is a CHECK constraint's of that name (SQLSTATE
/// 23514), as a rule of the schema that a value passed validation but not.
func refuseInserts(into table: String, ofTenant tenant: Int64, check: String? = nil) throws -> @Sendable () throws -> Void {
    let trigger = "refuse_\(table)_\(tenant)"
    let raise =
        check.map {
            "RAISE check_violation USING MESSAGE = 'new row for relation \"\(table)\" violates check constraint \"\($0)\"', CONSTRAINT = '\($0)'"
        } ?? "RAISE EXCEPTION '\(table) refused for now'"
    try TestDatabase.query(
        """
        CREATE FUNCTION \(trigger)() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN \(raise); END $$
        """)
    try TestDatabase.query(
        """
        CREATE TRIGGER \(trigger) BEFORE INSERT ON \(table) FOR EACH ROW
            WHEN (NEW.tenant_id = \(tenant)) EXECUTE FUNCTION \(trigger)()
        """)
    return {
        try TestDatabase.query("DROP TRIGGER IF EXISTS \(trigger) ON \(table)")
        try TestDatabase.query("DROP FUNCTION IF EXISTS \(trigger)()")
    }
}

extension Configuration {
    /// For a test that issues many facturas on one counter at once and checks
    /// their numbering, not the wait budget: room for a slow debug build beside
    /// the other test processes, with no 503 from the wait for the counter
    /// (the budget's own tests set theirs).
    mutating func waitLongForTheCounter() { poolWaitMilliseconds = 30_000 }
}

/// A live server on a free loopback port, over the test database as comprobify_app.
struct TestServer: Sendable {
    let port: Int

    static func run(
        configure: @Sendable (inout Configuration) -> Void = { _ in },
        logs: LogCapture? = nil,
        _ body: @escaping @Sendable (TestServer) async throws -> Void
    ) async throws {
        var configuration = Configuration(databaseURL: TestDatabase.appURL, secretBox: TestSecrets.box)
        configuration.host = "127.0.0.1"
        configuration.port = 0
        configuration.poolSize = 4
        configuration.adminToken = adminToken
        configuration.signupRateLimit = 0
        // Tests that send to SRI turn workers on for their own tenants only.
        configuration.sri.workers = 0
        // Only tests that deliver webhooks turn the workers on, for their own tenants.
        configuration.webhooks.workers = 0
        configure(&configuration)
        var logger = Logger(label: "test") { _ in
            logs.map { LogCapture.Handler(capture: $0) as any LogHandler } ?? SwiftLogNoOpLogHandler()
        }
        logger.logLevel = .trace
        let app = try await buildApplication(configuration: configuration, logger: logger)
        try await app.test(.live) { client in
            try await body(TestServer(port: client.port!))
        }
    }

    /// One request on its own connection (so tests can run many at once). The
    /// body is `json` (sent as application/json) or `bytes` as they are.
    func call(
        _ method: HTTPRequest.Method, _ path: String, key: String? = nil, issuer: Int64? = nil,
        headers: HTTPFields = [:], json: String? = nil, bytes: [UInt8]? = nil
    ) async throws -> Reply {
        var fields = headers
        if let key { fields[.authorization] = "Bearer \(key)" }
        if let issuer { fields[.issuerID] = String(issuer) }
        if json != nil, fields[.contentType] == nil { fields[.contentType] = "application/json" }
        let body = json.map { ByteBuffer(string: $0) } ?? bytes.map { ByteBuffer(bytes: $0) }
        let requestHeaders = fields
        let response = try await TestClient.withClient(host: "127.0.0.1", port: port) { client in
            try await client.execute(.init(path, method: method, headers: requestHeaders, body: body))
        }
        return Reply(status: Int(response.head.status.code), headers: response.head.headerFields, body: response.body)
    }

    // MARK: - Fixtures made through the public API

    struct Tenant: Sendable {
        let id: Int64
        let email: String
        let key: String
    }

    static func uniqueEmail(_ tag: String = "t") -> String {
        "\(tag)-\(Crypto.hex(Crypto.randomBytes(6)))@example.ec"
    }

    /// A new sandbox tenant (PENDING_VERIFICATION) and its initial key.
    func signUp(email: String? = nil) async throws -> Tenant {
        let email = email ?? TestServer.uniqueEmail()
        let reply = try await call(.post, "/v1/tenants", json: #"{"email": "\#(email)", "name": "Test S.A."}"#)
        XCTAssertEqual(reply.status, 201, reply.text)
        return Tenant(id: try reply.int("tenant", "id"), email: email, key: try reply.string("apiKey"))
    }

    /// A new tenant whose email is verified (through the admin route).
    func activeTenant() async throws -> Tenant {
        let tenant = try await signUp()
        let reply = try await call(.post, "/admin/v1/tenants/\(tenant.id)/verify-email", key: adminToken)
        XCTAssertEqual(reply.status, 200, reply.text)
        return tenant
    }

    func mintKey(_ key: String, label: String? = nil, environment: String = "sandbox") async throws -> String {
        let labelJSON = label.map { JSONValue.string($0).serialized } ?? "null"
        let reply = try await call(.post, "/v1/keys", key: key, json: #"{"label": \#(labelJSON), "environment": "\#(environment)"}"#)
        XCTAssertEqual(reply.status, 201, reply.text)
        return try reply.string("apiKey")
    }

    /// An issuer that can issue: a head office address and (unless `signing`
    /// is false) the test signing certificate.
    func createIssuer(
        _ key: String, ruc: String = "1790012345001", establishment: String = "001", emissionPoint: String = "001", signing: Bool = true
    ) async throws -> Int64 {
        let reply = try await call(
            .post, "/v1/issuers", key: key,
            json:
                #"{"ruc": "\#(ruc)", "legalName": "Empresa S.A.", "establishment": "\#(establishment)", "emissionPoint": "\#(emissionPoint)", "headOfficeAddress": "Av. Amazonas N34-451, Quito"}"#
        )
        XCTAssertEqual(reply.status, 201, reply.text)
        let id = try reply.int("issuer", "id")
        guard signing else { return id }
        let certificate = try await call(.put, "/v1/issuers/\(id)/certificate", key: key, json: TestSigning.uploadBody)
        XCTAssertEqual(certificate.status, 200, certificate.text)
        return id
    }

    /// Issues facturas 1 to 10 on a fresh counter, one after another, each
    /// checked for its number: 1 unforeseen, 2 to 9 foreseen right (eight in
    /// a row), 10 and the ones after in one round trip (`NumberForecast`).
    func issueUntilOneTrip(_ key: String, issuer: Int64) async throws {
        for expected in 1...10 {
            let reply = try await issue(key, issuer: issuer)
            XCTAssertEqual(try reply.int("document", "sequential"), Int64(expected), reply.text)
        }
    }

    /// The value of one series of /metrics (`name{labels}` as written there),
    /// 0 while it has none. The registry is this test process's, shared by
    /// every server the process runs.
    func metric(_ series: String) async throws -> Double {
        let text = try await call(.get, "/metrics").text
        let prefix = series + " "
        let line = text.split(separator: "\n").first { $0.hasPrefix(prefix) }
        return line.flatMap { Double($0.dropFirst(prefix.count)) } ?? 0
    }

    /// POST /v1/documents; without a body, a valid comprobante of `type`
    /// (a factura, or a credit note against a factura issued elsewhere).
    func issue(_ key: String, issuer: Int64, type: String = "01", headers: HTTPFields = [:], body: String? = nil) async throws -> Reply {
        try await call(.post, "/v1/documents", key: key, issuer: issuer, headers: headers, json: body ?? Bodies.body(for: type))
    }
}

/// A response as a client sees it.
struct Reply: Sendable {
    let status: Int
    let headers: HTTPFields
    let text: String
    let json: JSONValue?

    init(status: Int, headers: HTTPFields, body: ByteBuffer?) {
        self.status = status
        self.headers = headers
        text = body.map { String(buffer: $0) } ?? ""
        json = try? JSONParser.parse(Array(text.utf8))
    }

    func value(_ path: [Any]) -> JSONValue? {
        var current = json
        for step in path {
            switch (current, step) {
            case (.object?, let key as String): current = current?[key]
            case (.array(let items)?, let index as Int): current = items.indices.contains(index) ? items[index] : nil
            default: return nil
            }
        }
        return current
    }

    func int(_ path: Any...) throws -> Int64 {
        guard case .number(let text)? = value(path), let number = Int64(text) else {
            throw Unexpected(description: "no integer at \(path) in \(self.text)")
        }
        return number
    }

    func string(_ path: Any...) throws -> String {
        guard case .string(let text)? = value(path) else { throw Unexpected(description: "no string at \(path) in \(self.text)") }
        return text
    }

    func array(_ path: Any...) throws -> [JSONValue] {
        guard case .array(let items)? = value(path) else { throw Unexpected(description: "no array at \(path) in \(self.text)") }
        return items
    }

    func isNull(_ path: Any...) -> Bool {
        value(path) == .null
    }

    var code: String? {
        if case .string(let code)? = json?["code"] { return code }
        return nil
    }

    /// Asserts the RFC 9457 problem document of API.md with this status and
    /// code; a 409 names its `reason`, which must be the one given, and no
    /// other status carries one.
    func assertProblem(_ status: Int, _ code: String, reason: String? = nil, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(json?["reason"], reason.map { .string($0) }, "the problem's reason", file: file, line: line)
        if status == 409 {
            XCTAssertNotNil(reason, "a 409 test names the reason it expects", file: file, line: line)
        }
        XCTAssertEqual(self.status, status, text, file: file, line: line)
        XCTAssertEqual(self.code, code, text, file: file, line: line)
        XCTAssertEqual(headers[.contentType], "application/problem+json", file: file, line: line)
        XCTAssertEqual(json?["ok"], .bool(false), file: file, line: line)
        XCTAssertEqual(json?["status"], .number(String(status)), file: file, line: line)
        XCTAssertEqual(json?["type"], .string("about:blank"), file: file, line: line)
        XCTAssertNotNil(json?["detail"], file: file, line: line)
        XCTAssertNotNil(json?["instance"], file: file, line: line)
        XCTAssertEqual(json?["requestId"], headers[.requestID].map { .string($0) }, file: file, line: line)
        if status == 401 {
            XCTAssertEqual(headers[.wwwAuthenticate], "Bearer", file: file, line: line)
        }
    }

    /// The field names of a VALIDATION_ERROR.
    var errorFields: [String] {
        guard case .array(let items)? = json?["errors"] else { return [] }
        return items.compactMap { if case .string(let field)? = $0["field"] { return field } else { return nil } }
    }
}

struct Unexpected: Error, CustomStringConvertible {
    let description: String
}

extension JSONValue {
    var intValue: Int64? {
        if case .number(let text) = self { return Int64(text) }
        return nil
    }

    var stringValue: String? {
        if case .string(let text) = self { return text }
        return nil
    }
}
