import Foundation
import HummingbirdTesting
import Logging
import NIOCore
import Postgres
import SRI
import ServiceLifecycle
import TestSupport
import XCTest

@testable import Comprobify

/// A signing identity made with the openssl CLI, once per test process.
enum TestSigner {
    static let identity: SigningIdentity = {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("queue-pki-\(UUID().uuidString)")
        try! FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        func openssl(_ arguments: [String]) {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["openssl"] + arguments
            process.currentDirectoryURL = directory
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try! process.run()
            process.waitUntilExit()
            precondition(process.terminationStatus == 0, "openssl \(arguments.first ?? "") failed")
        }
        openssl([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "key.pem", "-out", "cert.pem", "-days", "365",
            "-subj", "/C=EC/O=Comprobify Tests/CN=Firma de pruebas", "-addext", "basicConstraints=critical,CA:FALSE",
            "-addext", "keyUsage=critical,digitalSignature,nonRepudiation",
        ])
        openssl(["pkcs12", "-export", "-in", "cert.pem", "-inkey", "key.pem", "-passout", "pass:clave", "-out", "id.p12"])
        let bytes = [UInt8](try! Data(contentsOf: directory.appendingPathComponent("id.p12")))
        return try! SigningIdentity(pkcs12: bytes, password: "clave", now: Date())
    }()

    /// The access key of a factura of RUC 1790012345001, 001-001, on 2026-12-01.
    static func accessKey(sequential: Int, environment: Environment) -> String {
        let digits =
            "01122026" + "01" + "1790012345001" + (environment == .production ? "2" : "1") + "001001"
            + String(format: "%09d", sequential) + String(format: "%08d", Int.random(in: 0...99_999_999)) + "1"
        return digits + String(AccessKey.checkDigit(digits))
    }

    /// A factura built and signed by the SRI library, as issuing does.
    static func signedFactura(accessKey: String, sequential: Int, environment: Environment) throws -> [UInt8] {
        let input = ComprobanteInput(
            documentType: "01", issueDate: "2026-12-01",
            buyer: BuyerInput(idType: "07", id: "9999999999999", name: "CONSUMIDOR FINAL"),
            items: [ItemInput(description: "Café", quantity: "2", unitPrice: "10.75", taxes: [TaxInput(code: "2", rateCode: "4")])],
            payments: nil)
        let comprobante = try input.validated(today: ComprobanteDate(year: 2026, month: 12, day: 1)!)
        let issuer = ComprobanteIssuer(
            ruc: "1790012345001", legalName: "Comercial Andina S.A.", headOfficeAddress: "Av. Amazonas N34-451",
            establishment: "001", emissionPoint: "001", environment: environment == .production ? .production : .test)
        let xml = try ComprobanteXML.build(
            comprobante, issuer: issuer, numbering: ComprobanteNumbering(accessKey: accessKey, sequential: sequential))
        return try XAdESSigner.sign(xml, identity: identity, signingTime: Date())
    }
}

/// A tenant with an issuer, whose documents are made signed and queued
/// directly in the database (as the issuing transaction does).
struct QueueTenant: Sendable {
    let tenant: TestServer.Tenant
    let issuer: Int64
    private let counter: Counter

    /// `sequentialsAfter`: the first document queued is number
    /// `sequentialsAfter + 1` (two tenants of one test queue different access
    /// keys, which the local SRI tells apart).
    init(server: TestServer, sequentialsAfter: Int = 0) async throws {
        tenant = try await server.activeTenant()
        issuer = try await server.createIssuer(tenant.key)
        counter = Counter(sequentialsAfter)
    }

    final class Counter: @unchecked Sendable {
        private let lock = NSLock()
        private var value: Int
        init(_ value: Int) { self.value = value }
        func next() -> Int {
            lock.withLock {
                value += 1; return value
            }
        }
    }

    /// Signs a factura and queues it as SIGNED; returns its access key.
    /// `tamper` changes the signed bytes (a signature that no longer verifies);
    /// `withoutXML` stores the document as one numbered before comprobantes
    /// (no XML, body, total or buyer), queued all the same.
    @discardableResult
    func queue(environment: Environment = .sandbox, tamper: Bool = false, withoutXML: Bool = false) throws -> String {
        let sequential = counter.next()
        let key = TestSigner.accessKey(sequential: sequential, environment: environment)
        var xml = try TestSigner.signedFactura(accessKey: key, sequential: sequential, environment: environment)
        if tamper {
            let text = String(decoding: xml, as: UTF8.self).replacingOccurrences(of: "Café", with: "Cafe")
            xml = Array(text.utf8)
        }
        let connection = try TestDatabase.owner()
        let id = try connection.query(
            """
            INSERT INTO documents (tenant_id, issuer_id, document_type, environment, sequential, number, access_key, issue_date,
                                   metadata, body, xml, total, buyer_id_type, buyer_id)
            VALUES ($1, $2, '01', $3, $4, $5, $6, '2026-12-01', '{}', $7::json, $8::bytea, $9::numeric, $10::text, $11::text)
            RETURNING id
            """,
            [tenant.id, issuer, environment.rawValue, sequential, String(format: "001-001-%09d", sequential), key]
                + (withoutXML
                    ? [String?.none, Data?.none, String?.none, String?.none, String?.none]
                    : ["{}", Data(xml), "24.73", "07", "9999999999999"]),
            prepared: false)[0].decode(Int64.self, at: 0)
        try connection.query(
            "INSERT INTO document_submissions (tenant_id, document_id) VALUES ($1, $2)", [tenant.id, id], prepared: false)
        return key
    }

    struct Submission {
        let status: String
        let attempts: Int
        let lastError: String?
        let nextAttemptAt: Date?
        let messages: String
        let authorizationNumber: String?
        let authorizedAt: Date?
        let authorizationXML: String?
        let leased: Bool
    }

    func submission(_ key: String) throws -> Submission {
        let row = try TestDatabase.query(
            """
            SELECT s.status, s.attempts, s.last_error, s.next_attempt_at, s.messages::text, s.authorization_number,
                   s.authorized_at, convert_from(s.authorization_xml, 'UTF8'), s.leased_by IS NOT NULL
              FROM document_submissions s JOIN documents d ON d.tenant_id = s.tenant_id AND d.id = s.document_id
             WHERE d.tenant_id = $1 AND d.access_key = $2
            """, [tenant.id, key])[0]
        return Submission(
            status: try row.decode(String.self, at: 0), attempts: try row.decode(Int.self, at: 1),
            lastError: try row.decode(String?.self, at: 2), nextAttemptAt: try row.decode(Date?.self, at: 3),
            messages: try row.decode(String.self, at: 4), authorizationNumber: try row.decode(String?.self, at: 5),
            authorizedAt: try row.decode(Date?.self, at: 6), authorizationXML: try row.decode(String?.self, at: 7),
            leased: try row.decode(Bool.self, at: 8))
    }

    /// The outcomes of the document's exchanges, in order.
    func outcomes(_ key: String) throws -> [String] {
        try TestDatabase.query(
            """
            SELECT x.service || ':' || x.outcome FROM sri_exchanges x JOIN documents d ON d.tenant_id = x.tenant_id AND d.id = x.document_id
             WHERE d.tenant_id = $1 AND d.access_key = $2 ORDER BY x.id
            """, [tenant.id, key]
        ).rows.map { try $0.decode(String.self, at: 0) }
    }

    /// Waits until every key's status is one of `statuses`; fails after `timeout` seconds.
    func waitFor(
        _ keys: [String], in statuses: Set<String> = ["RETURNED", "AUTHORIZED", "NOT_AUTHORIZED"], timeout: TimeInterval = 60,
        file: StaticString = #filePath, line: UInt = #line
    ) async throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let states = try keys.map { try submission($0).status }
            if states.allSatisfy(statuses.contains) { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        let states = try keys.map { key in
            let submission = try submission(key)
            return "\(key.suffix(12)): \(submission.status) \(submission.attempts) \(submission.lastError ?? "")"
        }
        XCTFail("not all documents reached \(statuses.sorted()) in \(timeout) s: \(states)", file: file, line: line)
        throw Unexpected(description: "timed out")
    }
}

/// A local SRI on a free loopback port (or `port`), with its control API.
struct LocalSRI: Sendable {
    let simulator: SRISimulator
    let port: Int

    var baseURL: String { "http://127.0.0.1:\(port)/comprobantes-electronicos-ws" }

    /// On a free port (HummingbirdTesting's live mode picks it).
    static func run(_ body: @escaping @Sendable (LocalSRI) async throws -> Void) async throws {
        let simulator = SRISimulator(judges: .sri)
        let app = buildSimulator(simulator: simulator, port: 0, logger: Logger(label: "sri-simulator-test"))
        try await app.test(.live) { client in
            try await body(LocalSRI(simulator: simulator, port: client.port!))
        }
    }

    /// On a given port (SRI coming back where it was expected); the body may
    /// start before the port is open.
    static func run(port: Int, _ body: @escaping @Sendable (LocalSRI) async throws -> Void) async throws {
        let simulator = SRISimulator(judges: .sri)
        let logger = Logger(label: "sri-simulator-test")
        let app = buildSimulator(simulator: simulator, port: port, logger: logger)
        let group = ServiceGroup(configuration: .init(services: [app], logger: logger))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            do {
                try await body(LocalSRI(simulator: simulator, port: port))
            } catch {
                await group.triggerGracefulShutdown()
                throw error
            }
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
    }

    func faults(_ update: SRISimulatorFaults) async throws {
        try await simulator.setFaults(update)
    }

    func receptions(_ key: String) async -> Int {
        await simulator.receptionCount(key)
    }

    /// What SRI received for `key`: the comprobante the reception carried.
    func comprobante(_ key: String) async -> String? {
        await simulator.comprobante(key)
    }
}

/// Settings fast enough for tests; the backoff still doubles.
func testSRISettings(url: String, productionURL: String? = nil, tenants: [Int64], workers: Int = 2) -> SRISettings {
    var settings = SRISettings()
    settings.testURL = url
    settings.productionURL = productionURL ?? url
    settings.timeoutMilliseconds = 1_000
    settings.retryBaseMilliseconds = 50
    settings.retryMaxMilliseconds = 400
    settings.authorizationDelayMilliseconds = 100
    settings.leaseMilliseconds = 3_000
    settings.pollMilliseconds = 50
    settings.gaugeIntervalMilliseconds = 200
    settings.workers = workers
    settings.tenantIDs = tenants
    return settings
}

/// A server process that sends this tenant's documents to SRI.
func withSender(
    _ settings: SRISettings, logs: LogCapture? = nil, _ body: @escaping @Sendable (TestServer) async throws -> Void
) async throws {
    try await TestServer.run(configure: { $0.sri = settings }, logs: logs, body)
}
