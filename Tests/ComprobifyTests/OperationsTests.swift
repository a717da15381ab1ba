import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOConcurrencyHelpers
import Postgres
import TestSupport
import XCTest

@testable import Comprobify

#if canImport(Glibc)
    import Glibc
#endif

final class OperationsTests: XCTestCase {
    func testHealthReadinessAndOpenAPI() async throws {
        try await TestServer.run { server in
            let health = try await server.call(.get, "/healthz")
            XCTAssertEqual(health.status, 200)
            let ready = try await server.call(.get, "/readyz")
            XCTAssertEqual(ready.status, 200)
            let spec = try await server.call(.get, "/openapi.yaml")
            XCTAssertEqual(spec.status, 200)
            XCTAssertTrue(spec.text.hasPrefix("openapi: 3.1"), String(spec.text.prefix(40)))
        }
    }

    /// /readyz asks on a connection of its own: requests that hold every
    /// request connection (here the pool's one, waiting on a table lock) do
    /// not make it fail, where it used to wait behind them and answer 503.
    func testReadinessDoesNotWaitBehindRequests() async throws {
        try await TestServer.run(configure: {
            $0.poolSize = 1
            $0.poolWaitMilliseconds = 4_000
        }) { server in
            let tenant = try await server.signUp()
            let locker = try Postgres.Connection(conninfo: TestDatabase.ownerURL)
            try locker.execute(script: "BEGIN; LOCK TABLE api_keys IN ACCESS EXCLUSIVE MODE")
            async let held = server.call(.get, "/v1/keys", key: tenant.key)
            // The request holds the pool's one connection once its statement waits for the lock.
            XCTAssertNotNil(TestDatabase.sessionBlocked(by: locker.backendPID), "the request waits on the lock")
            let ready = try await server.call(.get, "/readyz")
            XCTAssertEqual(ready.status, 200, "the database answered within /readyz's second: \(ready.text)")
            try locker.execute(script: "ROLLBACK")
            let keys = try await held
            XCTAssertEqual(keys.status, 200, "the held request went on once the lock was gone")
        }
    }

    /// DB_POOL_WAIT_MS bounds a request's waits together. Here a request
    /// waits first for its tenant's one place (another request of the tenant
    /// holds it, itself waiting for a connection), then for the pool's one
    /// connection (another tenant's request holds it, waiting on a lock): it
    /// gives up once it has waited the pool wait in all, where each wait
    /// used to have the whole of it.
    func testARequestWaitsAtMostThePoolWaitInAll() async throws {
        try await TestServer.run(configure: {
            $0.poolSize = 1
            $0.tenantMaxConnections = 1
            $0.poolWaitMilliseconds = 800
        }) { server in
            let holder = try await server.signUp()
            let tenant = try await server.signUp()
            let locker = try Postgres.Connection(conninfo: TestDatabase.ownerURL)
            try locker.execute(script: "BEGIN; LOCK TABLE api_keys IN ACCESS EXCLUSIVE MODE")
            async let held = server.call(.get, "/v1/keys", key: holder.key)
            XCTAssertNotNil(TestDatabase.sessionBlocked(by: locker.backendPID), "the holder's request waits on the lock")
            let timed = { @Sendable () async throws -> (Reply, Duration) in
                let start = ContinuousClock.now
                let reply = try await server.call(.get, "/v1/keys", key: tenant.key)
                return (reply, ContinuousClock.now - start)
            }
            async let first = timed()
            try await Task.sleep(for: .milliseconds(150))
            let (second, waited) = try await timed()
            let (firstReply, firstWaited) = try await first
            try locker.execute(script: "ROLLBACK")
            XCTAssertEqual(firstReply.status, 503, firstReply.text)
            XCTAssertEqual(second.status, 503, second.text)
            // About 650 ms for its place, then what is left of the 800 for a
            // connection; each wait with the whole 800, it took about 1450.
            XCTAssertGreaterThanOrEqual(firstWaited, .milliseconds(750))
            XCTAssertGreaterThanOrEqual(waited, .milliseconds(750))
            XCTAssertLessThan(waited, .milliseconds(1_150), "the second wait had only what the first left")
            let keys = try await held
            XCTAssertEqual(keys.status, 200, "the held request went on once the lock was gone")
        }
    }

    /// A tenant's fresh keys wait in its lane: a key seen for the first time
    /// is looked up alone before its request takes a place, so a tenant that
    /// minted keys and sends one slow request with each holds its share of
    /// the pool, not a share per key. Here four fresh keys each mint a key
    /// while the tenant's row is locked (a mint holds it): two wait inside
    /// the server on the lock, the other two in the lane (503 after the pool
    /// wait), and another tenant's request finds a connection free.
    func testATenantsFreshKeysShareItsLane() async throws {
        try await TestServer.run(configure: {
            $0.poolSize = 4
            $0.tenantMaxConnections = 2
            $0.poolWaitMilliseconds = 1_000
        }) { server in
            let noisy = try await server.activeTenant()
            let quiet = try await server.activeTenant()
            var fresh: [String] = []
            for index in 0..<4 { fresh.append(try await server.mintKey(noisy.key, label: "fresh-\(index)")) }
            let freshKeys = fresh
            let locker = try TestDatabase.owner()
            try locker.query("BEGIN", prepared: false)
            try locker.query("SELECT 1 FROM tenants WHERE id = $1 FOR UPDATE", [noisy.id], prepared: false)
            let lockerPID = try locker.query("SELECT pg_backend_pid()", prepared: false)[0].decode(Int32.self, at: 0)
            async let mints = concurrently(freshKeys.count) { index in
                try await server.call(.post, "/v1/keys", key: freshKeys[index], json: #"{"label": "slow"}"#).status
            }
            XCTAssertNotNil(TestDatabase.sessionBlocked(by: lockerPID), "the noisy tenant's mints wait on its row")
            try await Task.sleep(for: .milliseconds(200))
            let started = ContinuousClock.now
            let reply = try await server.call(.get, "/v1/keys", key: quiet.key)
            let waited = ContinuousClock.now - started
            XCTAssertEqual(reply.status, 200, reply.text)
            XCTAssertLessThan(waited, .milliseconds(900), "it did not wait for the pool")
            // Held past the pool wait: the mints beyond the tenant's share give up.
            try await Task.sleep(for: .milliseconds(1_200))
            try locker.query("ROLLBACK", prepared: false)
            let statuses = try await mints
            XCTAssertEqual(statuses.sorted(), [201, 201, 503, 503], "two places for the tenant, whatever keys it uses")
        }
    }

    /// Probes that come at once share one ping: a flood of /readyz cannot
    /// queue pings on the probe's one connection past their second.
    func testConcurrentProbesShareOnePing() async {
        let pings = NIOLockedValueBox(0)
        let ping = SharedPing {
            pings.withLockedValue { $0 += 1 }
            try? await Task.sleep(for: .seconds(1))
            return true
        }
        let answers = await withTaskGroup(of: Bool.self) { group in
            for _ in 0..<50 { group.addTask { await ping.answer() } }
            return await group.reduce(into: [Bool]()) { $0.append($1) }
        }
        XCTAssertEqual(answers, Array(repeating: true, count: 50))
        XCTAssertEqual(pings.withLockedValue { $0 }, 1, "fifty probes at once, one ping")
        _ = await ping.answer()
        XCTAssertEqual(pings.withLockedValue { $0 }, 2, "a probe after the answer asks again")
    }

    func testReadinessIs503WhenTheDatabaseIsUnreachable() async throws {
        var configuration = Configuration(
            databaseURL: "postgresql://comprobify_app@127.0.0.1:1/none?connect_timeout=1", secretBox: TestSecrets.box)
        configuration.poolSize = 1
        let pool = makePool(configuration: configuration, logger: Logger(label: "test"))
        let router = buildRouter(configuration: configuration, database: Database(pool: pool), logger: Logger(label: "test"))
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await app.test(.live) { client in
            let ready = try await client.execute(uri: "/readyz", method: .get)
            XCTAssertEqual(ready.status, .serviceUnavailable)
            XCTAssertEqual(ready.headers[.contentType], "application/problem+json")
            let health = try await client.execute(uri: "/healthz", method: .get)
            XCTAssertEqual(health.status, .ok, "the process is alive")
            let keys = try await client.execute(
                uri: "/v1/keys", method: .get, headers: [.authorization: "Bearer " + APIToken.generate(.sandbox).plaintext]
            )
            XCTAssertEqual(keys.status, .serviceUnavailable)
            XCTAssertTrue(String(buffer: keys.body).contains("SERVICE_UNAVAILABLE"))
            // A credential without a token's shape is refused before any
            // database work: 401 even with the database out of reach.
            for credential in ["Bearer cfy_test_zz", "Bearer " + String(repeating: "x", count: 40), "Basic dXNlcjpwYXNz"] {
                let refused = try await client.execute(uri: "/v1/keys", method: .get, headers: [.authorization: credential])
                XCTAssertEqual(refused.status, .unauthorized, credential)
            }
        }
        await pool.shutdown()
    }

    /// While the database is out of reach every request fails alike: its
    /// warning is written once a second, the next line saying how many were
    /// left out, not once per request.
    func testTheDatabasesAbsenceIsWarnedAboutOnceASecondNotPerRequest() async throws {
        var configuration = Configuration(
            databaseURL: "postgresql://comprobify_app@127.0.0.1:1/none?connect_timeout=1", secretBox: TestSecrets.box)
        configuration.poolSize = 1
        let logs = LogCapture()
        let logger = Logger(label: "test", factory: { _ in LogCapture.Handler(capture: logs) })
        let pool = makePool(configuration: configuration, logger: logger)
        let router = buildRouter(configuration: configuration, database: Database(pool: pool), logger: logger)
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)), logger: logger)
        try await app.test(.live) { client in
            func call() async throws {
                let keys = try await client.execute(
                    uri: "/v1/keys", method: .get, headers: [.authorization: "Bearer " + APIToken.generate(.sandbox).plaintext])
                XCTAssertEqual(keys.status, .serviceUnavailable)
            }
            func warnings() -> [String] { logs.lines.withLockedValue { $0 }.filter { $0.contains("database unavailable") } }
            try await call()
            // The first line was written before the first answer went out.
            let firstAnswered = ContinuousClock.now
            for _ in 1..<20 { try await call() }
            // Within the second after the first line (a slow run says so rather than fail).
            if ContinuousClock.now - firstAnswered < .milliseconds(900) {
                XCTAssertEqual(warnings().count, 1, warnings().joined(separator: "\n"))
                XCTAssertTrue(warnings().first?.contains(#""like_it_left_out": 0"#) == true, warnings().joined(separator: "\n"))
                try await Task.sleep(until: firstAnswered + .milliseconds(1100))
                try await call()
                XCTAssertEqual(warnings().count, 2, warnings().joined(separator: "\n"))
                XCTAssertTrue(warnings().last?.contains(#""like_it_left_out": 19"#) == true, warnings().joined(separator: "\n"))
            } else {
                XCTAssertLessThan(warnings().count, 20, "at most one line a second: \(warnings().count) lines")
            }
        }
        await pool.shutdown()
    }

    /// A tenant at its share of connections (one here) while its first
    /// request is held up: the rest wait `DB_POOL_WAIT_MS` at the tenant's
    /// gate, never at the pool, and get 503. The server warns once (a line a
    /// second at most) and /metrics counts them by gate, where the pool's
    /// metrics would show it half idle. The hold is a lock on this tenant's
    /// own key rows, which its writes share-lock: no other test waits.
    func testATenantAtItsShareIsWarnedAboutAndCounted() async throws {
        let logs = LogCapture()
        try await TestServer.run(
            configure: {
                $0.poolSize = 2
                $0.tenantMaxConnections = 1
                $0.poolWaitMilliseconds = 200
            }, logs: logs
        ) { server in
            let tenant = try await server.activeTenant()
            func timeouts() async throws -> Double {
                let text = try await server.call(.get, "/metrics").text
                let line = text.split(separator: "\n").first {
                    $0.hasPrefix(#"db_tenant_gate_timeouts_total{gate="tenant",pool="requests"} "#)
                }
                return line.flatMap { Double($0.split(separator: " ").last ?? "") } ?? 0
            }
            let before = try await timeouts()
            let locked = DispatchSemaphore(value: 0)
            let (owner, tenantID) = (TestDatabase.ownerURL, tenant.id)
            let holder = Thread {
                guard let connection = try? Connection(conninfo: owner) else {
                    locked.signal()
                    return
                }
                _ = try? connection.execute(script: "BEGIN; SELECT 1 FROM api_keys WHERE tenant_id = \(tenantID) FOR UPDATE")
                locked.signal()
                _ = try? connection.execute(script: "SELECT pg_sleep(1); COMMIT")
            }
            holder.start()
            locked.wait()
            let replies = try await withThrowingTaskGroup(of: Reply.self) { group in
                for n in 0..<6 {
                    group.addTask { try await server.call(.post, "/v1/keys", key: tenant.key, json: #"{"label": "held-\#(n)"}"#) }
                }
                return try await group.reduce(into: [Reply]()) { $0.append($1) }
            }
            let turnedAway = replies.filter { (try? $0.string("detail")) == APIError.tenantBusy.detail }
            XCTAssertGreaterThanOrEqual(turnedAway.count, 4, replies.map(\.text).joined(separator: "\n"))
            XCTAssertTrue(turnedAway.allSatisfy { $0.status == 503 })
            let after = try await timeouts()
            XCTAssertEqual(after - before, Double(turnedAway.count))
            let warnings = logs.lines.withLockedValue { $0 }.filter { $0.contains("tenant at its share of database connections") }
            XCTAssertEqual(warnings.count, 1, logs.text)
            XCTAssertTrue(warnings.first?.contains(#""like_it_left_out": 0"#) == true, warnings.joined(separator: "\n"))
        }
    }

    /// A database that takes no writes (a standby reached after a failover,
    /// or one set read-only): /readyz is 503, so the balancer stops sending
    /// traffic, and a write is 503 with Retry-After, to be tried again.
    func testAReadOnlyDatabaseIsUnavailable() async throws {
        let readOnly =
            TestDatabase.appURL + (TestDatabase.appURL.contains("?") ? "&" : "?")
            + "options=-c%20default_transaction_read_only%3Don"
        try await TestServer.run { writable in
            let tenant = try await writable.activeTenant()
            try await TestServer.run(configure: { $0.databaseURL = readOnly }) { server in
                let ready = try await server.call(.get, "/readyz")
                ready.assertProblem(503, "SERVICE_UNAVAILABLE")
                let health = try await server.call(.get, "/healthz")
                XCTAssertEqual(health.status, 200, "the process is alive")
                let signUp = try await server.call(.post, "/v1/tenants", json: #"{"email": "\#(TestServer.uniqueEmail())", "name": "R"}"#)
                signUp.assertProblem(503, "SERVICE_UNAVAILABLE")
                XCTAssertNotNil(signUp.headers[.retryAfter], "a 503 says when to try again")
                let mint = try await server.call(.post, "/v1/keys", key: tenant.key, json: #"{"label": "ro"}"#)
                mint.assertProblem(503, "SERVICE_UNAVAILABLE")
                let keys = try await server.call(.get, "/v1/keys", key: tenant.key)
                XCTAssertEqual(keys.status, 200, "reads still work: \(keys.text)")
            }
        }
    }

    /// With METRICS_TOKEN set, /metrics answers only to it as a bearer token
    /// (401 otherwise, its body no metric); the other probes stay open.
    func testMetricsAskForTheirTokenWhenOneIsSet() async throws {
        let token = "metrics-" + Crypto.hex(Crypto.randomBytes(16))
        try await TestServer.run(configure: { $0.metricsToken = token }) { server in
            for key in [nil, "wrong-\(token)", token + "x", String(token.dropLast())] {
                let refused = try await server.call(.get, "/metrics", key: key)
                refused.assertProblem(401, "UNAUTHORIZED")
                XCTAssertFalse(refused.text.contains("http_requests_total"), refused.text)
            }
            let metrics = try await server.call(.get, "/metrics", key: token)
            XCTAssertEqual(metrics.status, 200, metrics.text)
            XCTAssertTrue(metrics.text.contains("http_requests_total"))
            let health = try await server.call(.get, "/healthz")
            XCTAssertEqual(health.status, 200)
        }
    }

    func testMetricsMoveWithTraffic() async throws {
        try await TestServer.run { server in
            let tenant = try await server.signUp()
            let issuer = try await server.createIssuer(tenant.key)
            func sample(_ line: String) async throws -> Double {
                let metrics = try await server.call(.get, "/metrics")
                XCTAssertEqual(metrics.status, 200)
                let match = metrics.text.split(separator: "\n").first { $0.hasPrefix(line + " ") }
                return match.flatMap { Double($0.split(separator: " ").last!) } ?? 0
            }
            let requests = #"http_requests_total{method="POST",route="/v1/documents",status="201"}"#
            let documents = #"documents_issued_total{document_type="04",environment="sandbox"}"#
            let beforeRequests = try await sample(requests)
            let beforeDocuments = try await sample(documents)
            for _ in 0..<3 { _ = try await server.issue(tenant.key, issuer: issuer, type: "04") }
            let afterRequests = try await sample(requests)
            let afterDocuments = try await sample(documents)
            XCTAssertGreaterThanOrEqual(afterRequests - beforeRequests, 3)
            XCTAssertGreaterThanOrEqual(afterDocuments - beforeDocuments, 3)
            // A promotion is counted.
            let promotions = "tenant_promotions_total"
            let beforePromotions = try await sample(promotions)
            let promoted = try await server.call(.post, "/v1/tenants/promote", key: (try await server.activeTenant()).key, json: "{}")
            XCTAssertEqual(promoted.status, 200, promoted.text)
            let afterPromotions = try await sample(promotions)
            XCTAssertGreaterThanOrEqual(afterPromotions - beforePromotions, 1)
            let text = try await server.call(.get, "/metrics").text
            for series in [
                "http_request_duration_seconds_bucket", "http_requests_in_flight", "db_pool_size", "db_pool_connections_in_use",
                "db_pool_wait_seconds",
            ] {
                XCTAssertTrue(text.contains(series), series)
            }
            // The requests' pool apart from the background work's.
            XCTAssertTrue(text.contains(#"db_pool_size{pool="requests"}"#), text)
            // A request on an issuer's path is counted by the route's pattern, never its raw path.
            let counters = try await server.call(.get, "/v1/issuers/\(issuer)/sequentials", key: tenant.key)
            XCTAssertEqual(counters.status, 200, counters.text)
            let after = try await server.call(.get, "/metrics").text
            XCTAssertTrue(after.contains(#"route="/v1/issuers/{id}/sequentials""#), "route patterns")
            XCTAssertFalse(after.contains("/v1/issuers/\(issuer)/"), "not raw paths")
        }
    }

    /// Every family GET /metrics exports has its `# TYPE` and a `# HELP` line
    /// saying what it counts (what `promtool check metrics` asks of it), and
    /// every metric the service's code makes has its text in `MetricHelp`:
    /// one made only later (a gate's wait, say) would otherwise go out bare.
    func testEveryMetricSaysWhatItCounts() async throws {
        try await TestServer.run { server in
            let tenant = try await server.signUp()
            _ = try await server.call(.get, "/v1/keys", key: tenant.key)
            let text = try await server.call(.get, "/metrics").text
            var types: [String: String] = [:]
            var helps: [String: String] = [:]
            for line in text.split(separator: "\n") where line.hasPrefix("# ") {
                let parts = line.split(separator: " ", maxSplits: 3).map(String.init)
                guard parts.count == 4 else { continue }
                if parts[1] == "TYPE" { types[parts[2]] = parts[3] }
                if parts[1] == "HELP" { helps[parts[2]] = parts[3] }
            }
            XCTAssertGreaterThanOrEqual(types.count, 20, text)
            for (name, _) in types {
                XCTAssertEqual(helps[name], MetricHelp.texts[name], "the HELP line of \(name)")
                XCTAssertFalse((helps[name] ?? "").isEmpty, "\(name) has no HELP line")
            }
            XCTAssertEqual(helps["http_requests_total"].map { $0.hasPrefix("Requests answered") }, true, text)
        }
        let sources = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Sources")
        let made = try NSRegularExpression(pattern: #"(Counter|Gauge|Timer|Meter|Recorder)\(\s*label: "([a-z_]+)""#)
        var names: Set<String> = []
        for case let file as URL in FileManager.default.enumerator(at: sources, includingPropertiesForKeys: nil)!
        where file.pathExtension == "swift" {
            let code = try String(contentsOf: file, encoding: .utf8)
            for match in made.matches(in: code, range: NSRange(code.startIndex..., in: code)) {
                names.insert(String(code[Range(match.range(at: 2), in: code)!]))
            }
        }
        XCTAssertGreaterThanOrEqual(names.count, 25, "the metrics made in Sources")
        for name in names.sorted() {
            XCTAssertFalse(MetricHelp.text(name).isEmpty, "\(name) has no text in MetricHelp")
        }
        XCTAssertEqual(Set(MetricHelp.texts.keys), names, "MetricHelp names only metrics the code makes")
    }

    /// Each request's line names what an operator traces a request by: its
    /// route and status, the tenant and key that sent it, and the address it
    /// came from; behind a trusted proxy (TRUST_PROXY=1), the hop the proxy
    /// appended to X-Forwarded-For.
    func testTheRequestLineNamesTheClientTheTenantAndTheKey() async throws {
        for trustProxy in [false, true] {
            let logs = LogCapture()
            try await TestServer.run(configure: { $0.trustProxy = trustProxy }, logs: logs) { server in
                let tenant = try await server.signUp()
                let keys = try await server.call(
                    .get, "/v1/keys", key: tenant.key, headers: [.forwardedFor: "198.51.100.1, 203.0.113.9"])
                XCTAssertEqual(keys.status, 200, keys.text)
                let keyID = try keys.int("keys", 0, "id")
                let line = logs.lines.withLockedValue { $0 }.last {
                    $0.hasPrefix("info request ") && $0.contains(#""route": /v1/keys"#)
                }
                let text = try XCTUnwrap(line, "no request line in:\n" + logs.text)
                for field in [
                    #""client": \#(trustProxy ? "203.0.113.9" : "127.0.0.1")"#, #""tenant_id": \#(tenant.id)"#,
                    #""key_id": \#(keyID)"#, #""method": GET"#, #""status": 200"#,
                ] {
                    XCTAssertTrue(text.contains(field), "\(field) in \(text)")
                }
            }
        }
    }

    /// A port another process listens on: serve says so in one line and
    /// exits 1, without warnings from its background work stopping with it.
    func testServeOnAPortInUseSaysSoAndExits() async throws {
        try await TestServer.run { server in
            let (status, output) = try Executable.run(
                try Executable.url(), ["serve"],
                environment: [
                    "DATABASE_URL": TestDatabase.appURL, "PORT": String(server.port), "HOST": "127.0.0.1",
                    "COMPROBIFY_SECRET_KEY": TestSecrets.keyText, "SRI_WORKERS": "0", "WEBHOOK_WORKERS": "0",
                ])
            XCTAssertEqual(status, 1, output)
            XCTAssertTrue(output.contains("cannot listen on 127.0.0.1:\(server.port): another process listens there"), output)
            XCTAssertFalse(output.contains("\"warning\""), output)
            XCTAssertFalse(output.contains("Error:"), output)
        }
    }

    /// A HOST that is no address and does not resolve: serve says so in one
    /// line naming the setting and exits 1, as for a port in use.
    func testServeOnAHostThatDoesNotResolveSaysSoAndExits() async throws {
        let (status, output) = try Executable.run(
            try Executable.url(), ["serve"],
            environment: [
                "DATABASE_URL": TestDatabase.appURL, "PORT": "0", "HOST": "no-such-host.invalid",
                "COMPROBIFY_SECRET_KEY": TestSecrets.keyText, "SRI_WORKERS": "0", "WEBHOOK_WORKERS": "0",
            ])
        XCTAssertEqual(status, 1, output)
        XCTAssertTrue(
            output.contains("cannot listen on no-such-host.invalid:0: HOST is neither an address nor a name this machine resolves"), output)
        XCTAssertFalse(output.contains("\"warning\""), output)
    }

    /// A new process shows every counter whose series are known in advance
    /// at 0, before anything happened: an alert on their rate reads 0, not
    /// "no data". (A process of its own: the tests share one registry.)
    func testCountersAreExportedAtZeroFromTheStart() async throws {
        let (process, server) = try await Self.serve(try Executable.url(), ["SRI_WORKERS": "0", "WEBHOOK_WORKERS": "0"])
        defer { if process.isRunning { process.terminate() } }
        let metrics = try await server.call(.get, "/metrics")
        XCTAssertEqual(metrics.status, 200)
        let lines = Set(metrics.text.split(separator: "\n").map(String.init))
        var expected = [
            #"documents_signed_ahead_total{outcome="hit"} 0"#, #"documents_signed_ahead_total{outcome="miss"} 0"#,
            "documents_stored_together_total 0", "tenant_promotions_total 0", "http_request_timeouts_total 0",
            "http_write_timeouts_total 0",
            #"documents_issued_total{document_type="01",environment="production"} 0"#,
        ]
        expected += ServiceMetrics.webhookOutcomes.map { #"webhook_deliveries_total{outcome="\#($0)"} 0"# }
        for (service, outcomes) in SubmissionMetrics.outcomes {
            expected += outcomes.map { #"sri_requests_total{service="\#(service.rawValue)",outcome="\#($0)"} 0"# }
        }
        XCTAssertEqual(expected.count, 7 + 5 + 16)
        for line in expected {
            XCTAssertTrue(lines.contains(line), "\(line) in\n\(metrics.text)")
        }
    }

    /// Roles that are not superusers yet are not held by row-level security the
    /// way comprobify_app is: a table owner, a member of comprobify_auth and a
    /// member of comprobify_mailer (the mail relay's role).
    func testServeRefusesTableOwnersAndMembersOfTheAuthenticator() async throws {
        let owner = "cfy_test_owner_\(UInt32.random(in: 0...UInt32.max))"
        let member = "cfy_test_member_\(UInt32.random(in: 0...UInt32.max))"
        let relay = "cfy_test_relay_\(UInt32.random(in: 0...UInt32.max))"
        let table = TestDatabase.uniqueTable("owned")
        try TestDatabase.query("CREATE ROLE \(owner) NOLOGIN")
        try TestDatabase.query("CREATE TABLE public.\(table) (id int)")
        try TestDatabase.query("ALTER TABLE public.\(table) OWNER TO \(owner)")
        try TestDatabase.query("CREATE ROLE \(member) NOLOGIN IN ROLE comprobify_auth")
        try TestDatabase.query("CREATE ROLE \(relay) NOLOGIN IN ROLE comprobify_mailer")
        defer {
            _ = try? TestDatabase.query("DROP TABLE public.\(table)")
            _ = try? TestDatabase.query("DROP ROLE \(owner)")
            _ = try? TestDatabase.query("DROP ROLE \(member)")
            _ = try? TestDatabase.query("DROP ROLE \(relay)")
        }
        for (role, reason) in [(owner, "owns tables"), (member, "member of comprobify_auth"), (relay, "member of comprobify_mailer")] {
            // The owner's login, acting as the role from the start of the session.
            let pool = ConnectionPool(configuration: .init(conninfo: TestDatabase.ownerURL + "?options=-c%20role%3D\(role)", size: 1))
            do {
                try await RoleCheck.verify(pool: pool)
                XCTFail("\(role) must be refused")
            } catch let error as RoleCheck.Refused {
                XCTAssertTrue(error.description.contains(reason), error.description)
                XCTAssertFalse(error.description.contains("superuser"), error.description)
            }
            await pool.shutdown()
        }
        // comprobify_app itself passes.
        let app = ConnectionPool(configuration: .init(conninfo: TestDatabase.appURL, size: 1))
        try await RoleCheck.verify(pool: app)
        await app.shutdown()
    }

    func testServeRefusesSuperusersAndRolesThatBypassRowLevelSecurity() async throws {
        var configuration = Configuration(databaseURL: TestDatabase.ownerURL, secretBox: TestSecrets.box)
        configuration.port = 0
        do {
            _ = try await buildApplication(configuration: configuration, logger: Logger(label: "test"))
            XCTFail("a superuser must be refused")
        } catch let error as RoleCheck.Refused {
            XCTAssertTrue(error.description.contains("superuser"), error.description)
        }
        let binary = try Executable.url()
        let result = try Executable.run(
            binary, ["serve"],
            environment: ["DATABASE_URL": TestDatabase.ownerURL, "PORT": "0", "COMPROBIFY_SECRET_KEY": TestSecrets.keyText])
        XCTAssertNotEqual(result.status, 0)
        XCTAssertTrue(result.output.contains("refusing to serve"), result.output)

        // A role that is no superuser but bypasses row-level security: refused too.
        let role = "bypass_\(UInt32.random(in: 0...UInt32.max))"
        let password = UUID().uuidString
        try TestDatabase.query("CREATE ROLE \(role) LOGIN NOSUPERUSER BYPASSRLS PASSWORD '\(password)'")
        defer { _ = try? TestDatabase.query("DROP ROLE \(role)") }
        var url = try XCTUnwrap(URLComponents(string: TestDatabase.ownerURL))
        url.user = role
        url.password = password
        configuration.databaseURL = try XCTUnwrap(url.string)
        do {
            _ = try await buildApplication(configuration: configuration, logger: Logger(label: "test"))
            XCTFail("a role that bypasses row-level security must be refused")
        } catch let error as RoleCheck.Refused {
            XCTAssertEqual(
                error.description,
                "refusing to serve as role \"\(role)\": it bypasses row-level security. Connect as comprobify_app.")
        }
    }

    /// A statement the database cancels for taking too long is a 503 that
    /// says so, not "cannot reach its database": here a request waits on a
    /// row another session holds past DB_STATEMENT_TIMEOUT_MS.
    func testAStatementThatRunsOutOfTimeIsToldAsSuch() async throws {
        let box = TenantBox()
        // Signed up on a server with the usual timeout: a loaded machine may
        // take longer than the short one for it.
        try await TestServer.run { server in box.tenant = try await server.signUp() }
        let tenant = try XCTUnwrap(box.tenant)
        let logs = LogCapture()
        try await TestServer.run(configure: { $0.statementTimeoutMilliseconds = 300 }, logs: logs) { server in
            let locker = try TestDatabase.owner()
            try locker.query("BEGIN", prepared: false)
            try locker.query("SELECT 1 FROM tenants WHERE id = $1 FOR UPDATE", [tenant.id], prepared: false)
            defer { _ = try? locker.query("ROLLBACK", prepared: false) }
            let reply = try await server.call(.post, "/v1/tenants/resend-verification", key: tenant.key)
            reply.assertProblem(503, "SERVICE_UNAVAILABLE")
            XCTAssertTrue(try reply.string("detail").contains("did not finish this request in time"), reply.text)
            XCTAssertEqual(reply.headers[.retryAfter], "1")
            XCTAssertTrue(logs.text.contains("database statement cancelled"), logs.text)
        }
    }

    func testTimeoutsOfTheAppRolesSessions() async throws {
        var configuration = Configuration(databaseURL: TestDatabase.appURL, secretBox: TestSecrets.box)
        configuration.poolSize = 1
        configuration.statementTimeoutMilliseconds = 200
        configuration.idleInTransactionTimeoutMilliseconds = 300
        configuration.poolWaitMilliseconds = 100
        let pool = makePool(configuration: configuration, logger: Logger(label: "test"))
        do {
            _ = try await pool.withConnection { try $0.query("SELECT pg_sleep(2)") }
            XCTFail("statement_timeout must cancel the statement")
        } catch let error as PostgresError {
            XCTAssertEqual(error.sqlState, SQLState.queryCanceled)
        }
        // A session left idle inside a transaction is ended by the server.
        do {
            _ = try await pool.withConnection { connection -> Int in
                try connection.query("BEGIN", prepared: false)
                Thread.sleep(forTimeInterval: 0.8)
                return try connection.query("SELECT 1")[0].decode(Int.self, at: 0)
            }
            XCTFail("idle_in_transaction_session_timeout must end the session")
        } catch let error as PostgresError {
            XCTAssertTrue(error.isUnavailable, "\(error)")
        }
        // Bounded pool wait: the only connection is held (outside any statement,
        // so no server timeout applies) until the waiter has given up.
        let release = DispatchSemaphore(value: 0)
        async let holder: Void = pool.withConnection { _ in _ = release.wait(timeout: .now() + 30) }
        while pool.inUse == 0 { try await Task.sleep(for: .milliseconds(5)) }
        do {
            _ = try await pool.withConnection { try $0.query("SELECT 1") }
            XCTFail("the wait for a connection is bounded")
        } catch let error as PostgresError {
            XCTAssertEqual(error.kind, .poolTimeout)
        }
        release.signal()
        try await holder
        let one = try await pool.withConnection { try $0.query("SELECT 1")[0].decode(Int.self, at: 0) }
        XCTAssertEqual(one, 1, "the pool recovered its connection")
        await pool.shutdown()
    }

    /// The server's sessions search the schemas as the definer functions do
    /// (migration 0029), so that a trigger fired under either keeps its plans.
    /// The path holds even when the role's defaults say otherwise (here the
    /// connection's options stand in for an `ALTER ROLE ... SET search_path`,
    /// which the role may run on itself).
    func testTheAppRolesSessionsSearchTheDefinerFunctionsPath() async throws {
        let url = TestDatabase.appURL
        let overridden = url + (url.contains("?") ? "&" : "?") + "options=-c%20search_path%3Dpg_temp%2Cpublic"
        var configuration = Configuration(databaseURL: overridden, secretBox: TestSecrets.box)
        configuration.poolSize = 1
        let pool = makePool(configuration: configuration, logger: Logger(label: "test"))
        let (session, definer) = try await pool.withConnection { connection in
            let session = try connection.query("SHOW search_path")[0].decode(String.self, at: 0)
            let definer = try connection.query(
                "SELECT c FROM pg_proc p, unnest(p.proconfig) AS c WHERE p.oid = 'claim_sri_work(uuid,integer,integer,integer,bigint[])'::regprocedure AND c LIKE 'search_path=%'"
            )[0].decode(String.self, at: 0)
            return (session, definer)
        }
        XCTAssertEqual(session, "pg_catalog, public, pg_temp")
        XCTAssertEqual("search_path=" + session, definer)
        await pool.shutdown()
    }

    /// Role defaults that would change what the server's transactions mean
    /// or how its answers are read (the role may `ALTER ROLE ... SET` them on
    /// itself; here the connection's options stand in) are set back on every
    /// session: read committed, bytea in hex. A database made read-only on
    /// purpose stays so (testAReadOnlyDatabaseIsUnavailable).
    func testTheAppRolesSessionsSetTheIsolationAndFormatsTheyAssume() async throws {
        let url = TestDatabase.appURL
        let hostile = ["default_transaction_isolation=serializable", "bytea_output=escape"]
            .map { "-c%20" + $0.replacingOccurrences(of: "=", with: "%3D") }.joined(separator: "%20")
        let overridden = url + (url.contains("?") ? "&" : "?") + "options=" + hostile
        for background in [false, true] {
            var configuration = Configuration(databaseURL: overridden, secretBox: TestSecrets.box)
            configuration.poolSize = 1
            configuration.backgroundPoolSize = 1
            let pool = makePool(configuration: configuration, logger: Logger(label: "test"), background: background)
            let settings = try await pool.withConnection { connection in
                try connection.query("SELECT current_setting('default_transaction_isolation'), '\\x01'::bytea::text")[0]
                    .decode((String, String).self)
            }
            XCTAssertEqual(settings.0, "read committed")
            XCTAssertEqual(settings.1, "\\x01")
            await pool.shutdown()
        }
    }

    /// Requests the HTTP/1.1 parser refuses get a 400 problem that says what
    /// is wrong in the client's terms, never the parser library's name
    /// (API.md: no internal names reach a client).
    func testMalformedRequestsAreRefusedInTheClientsTerms() async throws {
        try await TestServer.run { server in
            for (request, reason) in [
                ("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "HTTP/2 or a protocol upgrade"),
                ("GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n", "a malformed Content-Length"),
                ("GET /healthz HTTP/1.1\r\nHo st: x\r\n\r\n", "an invalid character in a header"),
                ("POST /v1/keys HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", "an unsupported Transfer-Encoding"),
            ] {
                let socket = try RawSocket(port: server.port)
                socket.send(request)
                let answer = socket.readAll(within: 5)
                XCTAssertTrue(answer.hasPrefix("HTTP/1.1 400 "), answer)
                XCTAssertTrue(answer.contains("The request is not valid HTTP/1.1: \(reason)"), answer)
                XCTAssertFalse(answer.lowercased().contains("parser"), answer)
            }
        }
    }

    /// Headers over a limit (their count, a field's size, their sum) get a
    /// 400 that names the limits, the count among them; at the limit they pass.
    func testRequestsOverTheHeaderLimitsAreToldTheLimits() async throws {
        try await TestServer.run { server in
            func fields(_ count: Int) -> String { (1...count).map { "X-H\($0): v\r\n" }.joined() }
            let limits = "at most 200 header fields, 16 KiB for the target or a header field, 64 KiB in all"
            for (name, request, refused) in [
                ("200 fields", "GET /healthz HTTP/1.1\r\nHost: x\r\n\(fields(199))\r\n", false),
                ("201 fields", "GET /healthz HTTP/1.1\r\nHost: x\r\n\(fields(200))\r\n", true),
                ("a 17 KiB field", "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: \(String(repeating: "b", count: 17 * 1024))\r\n\r\n", true),
            ] {
                let socket = try RawSocket(port: server.port)
                socket.send(request)
                let answer = socket.readInBursts(of: 1 << 20, pausing: .zero, within: 5) { $0.hasSuffix("}") }
                if refused {
                    XCTAssertTrue(answer.hasPrefix("HTTP/1.1 400 "), "\(name): \(answer)")
                    XCTAssertTrue(answer.contains(limits), "\(name): \(answer)")
                } else {
                    XCTAssertTrue(answer.hasPrefix("HTTP/1.1 200 "), "\(name): \(answer)")
                }
            }
        }
    }

    /// A request that does not keep its connection (HTTP/1.0 without
    /// keep-alive; a `close` token in any case, or among others) is answered
    /// and its connection closed right after, not at the idle timeout (30 s);
    /// HTTP/1.0 with `Connection: keep-alive`, and HTTP/1.1, keep theirs.
    func testConnectionsThatDoNotKeepAliveAreClosedAfterTheAnswer() async throws {
        try await TestServer.run { server in
            for request in [
                "GET /healthz HTTP/1.0\r\n\r\n",
                "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, close\r\n\r\n",
                "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: Close\r\n\r\n",
            ] {
                let socket = try RawSocket(port: server.port)
                socket.send(request)
                let answer = socket.readAll(within: 5)
                XCTAssertTrue(answer.hasPrefix("HTTP/1.1 200 "), "\(request): \(answer)")
                // readAll ends at the close or after 5 s of silence: only a closed connection is closed now.
                XCTAssertTrue(socket.waitForClose(within: 1), "\(request): closed after the answer")
            }
            for request in ["GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"] {
                let socket = try RawSocket(port: server.port)
                for _ in 1...2 {
                    socket.send(request)
                    let answer = socket.readInBursts(of: 1 << 20, pausing: .zero, within: 5) { $0.hasSuffix("}") }
                    XCTAssertTrue(answer.hasPrefix("HTTP/1.1 200 "), "\(request): \(answer)")
                }
                XCTAssertFalse(socket.waitForClose(within: 1), "\(request): kept open")
            }
        }
    }

    /// Bodies being read share the process's budget (`HTTP_BODY_BUDGET_MB`,
    /// here 1 MiB): while a client holds 700 kB of an unfinished body, a body
    /// that does not fit beside it is 503 with Retry-After, a small one is
    /// served, and once the first client goes its bytes are free again.
    func testBodiesBeingReadShareTheProcesssBudget() async throws {
        try await TestServer.run(configure: { $0.httpBodyBudgetMegabytes = 1 }) { server in
            let pad = String(repeating: "x", count: 500_000)
            let holder = try RawSocket(port: server.port)
            holder.send("POST /v1/tenants HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n")
            holder.send(#"{"name": ""# + String(repeating: "y", count: 700_000))
            var waited = 0
            while BodyBudget.shared.used < 700_000, waited < 100 {
                try await Task.sleep(for: .milliseconds(50))
                waited += 1
            }
            XCTAssertGreaterThanOrEqual(BodyBudget.shared.used, 700_000, "the held body is counted")
            let big = try await server.call(.post, "/v1/tenants", json: #"{"email": "a@example.ec", "name": "\#(pad)"}"#)
            big.assertProblem(503, "SERVICE_UNAVAILABLE")
            XCTAssertEqual(big.headers[.retryAfter], "1")
            let small = try await server.call(
                .post, "/v1/tenants", json: #"{"email": "\#(TestServer.uniqueEmail("budget"))", "name": "n"}"#)
            XCTAssertEqual(small.status, 201, small.text)
            withExtendedLifetime(holder) {}
            _ = consume holder
            waited = 0
            while BodyBudget.shared.used > 0, waited < 100 {
                try await Task.sleep(for: .milliseconds(50))
                waited += 1
            }
            XCTAssertEqual(BodyBudget.shared.used, 0, "a body given up gives its bytes back")
            let again = try await server.call(.post, "/v1/tenants", json: #"{"email": "a@example.ec", "name": "\#(pad)"}"#)
            again.assertProblem(400, "VALIDATION_ERROR")
        }
    }

    /// One peer holds at most its share of the budget
    /// (`HTTP_BODY_BUDGET_PER_ADDRESS_MB`, here 1 MiB of 4): while 127.0.0.1
    /// holds 700 kB of an unfinished body, its next body that does not fit
    /// beside it is 503 with Retry-After, though the process's budget has room,
    /// and the same body from 127.0.0.2 is read (and answered for what it says).
    func testOnePeerHoldsAtMostItsShareOfTheBodyBudget() async throws {
        try await TestServer.run(configure: {
            $0.httpBodyBudgetMegabytes = 4
            $0.httpBodyBudgetPerAddressMegabytes = 1
        }) { server in
            let request = "POST /v1/tenants HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n"
            let body = #"{"email": "a@example.ec", "name": "\#(String(repeating: "x", count: 500_000))"}"#
            let holder = try RawSocket(port: server.port, from: "127.0.0.1")
            holder.send(request + "Content-Length: 1000000\r\n\r\n" + #"{"name": ""# + String(repeating: "y", count: 700_000))
            try await eventually("the held body is counted for its peer") { BodyBudget.shared.held(by: "127.0.0.1") >= 700_000 }
            func answer(from source: String) throws -> String {
                let socket = try RawSocket(port: server.port, from: source)
                socket.send(request + "Content-Length: \(body.utf8.count)\r\n\r\n" + body)
                return socket.readAll(within: 5)
            }
            let same = try answer(from: "127.0.0.1")
            XCTAssertTrue(same.hasPrefix("HTTP/1.1 503 "), same)
            XCTAssertTrue(same.contains("\"SERVICE_UNAVAILABLE\""), same)
            XCTAssertTrue(same.lowercased().contains("\r\nretry-after: 1\r\n"), same)
            let other = try answer(from: "127.0.0.2")
            XCTAssertTrue(other.hasPrefix("HTTP/1.1 400 "), other)
            XCTAssertTrue(other.contains("\"VALIDATION_ERROR\""), other)
            XCTAssertEqual(BodyBudget.shared.held(by: "127.0.0.2"), 0, "a body read gives its bytes back")
            withExtendedLifetime(holder) {}
            _ = consume holder
            try await eventually("a body given up gives its peer's bytes back") {
                BodyBudget.shared.held(by: "127.0.0.1") == 0 && BodyBudget.shared.used == 0
            }
        }
    }

    func testIdleAndStalledClientsAreCutOff() async throws {
        try await TestServer.run(configure: { $0.httpIdleTimeoutSeconds = 1 }) { server in
            // Sends nothing at all.
            let silent = try RawSocket(port: server.port)
            XCTAssertTrue(silent.waitForClose(within: 5), "a silent connection is closed")
            // Stops in the middle of a request.
            let stalled = try RawSocket(port: server.port)
            stalled.send("POST /v1/tenants HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"email\":")
            XCTAssertTrue(stalled.waitForClose(within: 5), "a stalled request is cut off")
            let health = try await server.call(.get, "/healthz")
            XCTAssertEqual(health.status, 200)
        }
        // A request begun in the same packet as the end of the one before it
        // is timed too (the request clock, not the idle one, cuts it off).
        try await TestServer.run(configure: { $0.httpRequestTimeoutSeconds = 1 }) { server in
            let pipelined = try RawSocket(port: server.port)
            pipelined.send(
                "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nPOST /v1/tenants HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"email\":")
            XCTAssertTrue(pipelined.waitForClose(within: 5), "a pipelined request left unfinished is cut off by the request timeout")
        }
    }

    /// A request the request timeout cut off while its body was arriving has
    /// its answer delivered to no one: it is counted and logged as 499, not
    /// as the 400 a body that ended early would be.
    func testARequestCutOffIsCountedAs499() async throws {
        let logs = LogCapture()
        try await TestServer.run(configure: { $0.httpRequestTimeoutSeconds = 1 }, logs: logs) { server in
            func count(_ status: Int) async throws -> Double {
                let prefix = #"http_requests_total{method="POST",route="/v1/tenants",status="\#(status)"} "#
                let line = try await server.call(.get, "/metrics").text.split(separator: "\n").first { $0.hasPrefix(prefix) }
                return line.flatMap { Double($0.split(separator: " ").last ?? "") } ?? 0
            }
            let (before400, before499) = (try await count(400), try await count(499))
            let stalled = try RawSocket(port: server.port)
            stalled.send("POST /v1/tenants HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"email\":")
            XCTAssertTrue(stalled.waitForClose(within: 5), "a stalled request is cut off")
            try await eventually("the request counted") { try await count(499) - before499 == 1 }
            let after400 = try await count(400)
            XCTAssertEqual(after400, before400, "no 400 that no one received")
            let lines = logs.lines.withLockedValue { $0 }.filter { $0.contains("/v1/tenants") && $0.contains("duration_ms") }
            XCTAssertEqual(lines.count, 1, lines.joined(separator: "\n"))
            XCTAssertTrue(lines.first?.contains("499") == true, lines.joined(separator: "\n"))
        }
    }

    /// A client that takes less than 32 KiB of its waiting answer in each
    /// `HTTP_WRITE_TIMEOUT_S`, on average, is cut off; the server goes on
    /// serving. Here a streamed page of about 4 MB (eight facturas of 1000
    /// lines), both timeouts 1 s, the server's send buffers 64 KiB (so that
    /// the answer waits in the server, as it does on a slow link, not in a
    /// loopback connection's megabytes of kernel buffer): a client that reads
    /// it, or a page of three facturas sent whole, in bursts of 512 KiB with
    /// pauses of 1.5 s gets it whole (periods pass with nothing taken, and
    /// the idle timeout, which starts when the answer's end is handed to NIO,
    /// does not drop its end), and one with a 4 KiB receive buffer that reads
    /// nothing for 4 s finds the answer cut short and the connection closed.
    func testAClientThatStopsReadingItsAnswerIsCutOff() async throws {
        try await TestServer.run(configure: {
            $0.httpWriteTimeoutSeconds = 1
            $0.httpIdleTimeoutSeconds = 1
            $0.httpSendBufferBytes = 64 * 1024
            $0.listBytes = 2 << 20
        }) { server in
            let tenant = try await server.signUp()
            let issuer = try await server.createIssuer(tenant.key)
            let line = jsonObject(replacing(facturaItem, "description", with: jsonString(String(repeating: "d", count: 300))))
            let items = "[" + Array(repeating: line, count: 1000).joined(separator: ",") + "]"
            for _ in 0..<8 {
                try await server.issue(tenant.key, issuer: issuer, body: jsonObject(replacing(facturaMembers(), "items", with: items)))
                    .assertSuccess(201, label: "1000 lines")
            }
            let request =
                "GET /v1/documents?limit=100 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(tenant.key)\r\nX-Issuer-Id: \(issuer)\r\n\r\n"
            let patient = try RawSocket(port: server.port)
            patient.send(request)
            let whole = patient.readAll(within: 3)
            XCTAssertTrue(whole.hasSuffix("}\r\n0\r\n\r\n"), "a client that reads takes the whole page")
            XCTAssertGreaterThan(whole.utf8.count, 4_000_000)

            func timeouts() async throws -> String? {
                try await server.call(.get, "/metrics").text.split(separator: "\n").first { $0.hasPrefix("http_write_timeouts_total ") }
                    .map(String.init)
            }
            let before = try await timeouts()
            XCTAssertNotNil(before)
            // Three facturas fit the first read: one answer with its length,
            // whose end reaches NIO at once.
            let threeRequest = request.replacingOccurrences(of: "limit=100", with: "limit=3")
            let three = try RawSocket(port: server.port)
            three.send(threeRequest)
            let threeWhole = three.readAll(within: 3)
            XCTAssertTrue(
                threeWhole.contains("\r\ncontent-length: ") || threeWhole.contains("\r\nContent-Length: "), String(threeWhole.prefix(300)))
            XCTAssertGreaterThan(threeWhole.utf8.count, 1_500_000)
            for (name, asked, expected) in [("the streamed page", request, whole), ("three facturas", threeRequest, threeWhole)] {
                let bursty = try RawSocket(port: server.port, receiveBuffer: 16 * 1024)
                bursty.send(asked)
                let slow = bursty.readInBursts(of: 512 * 1024, pausing: .milliseconds(1500), within: 5) {
                    $0.utf8.count >= expected.utf8.count
                }
                XCTAssertEqual(slow.utf8.count, expected.utf8.count, "a client that reads \(name) in bursts takes it whole")
            }

            let stalled = try RawSocket(port: server.port, receiveBuffer: 4096)
            stalled.send(request)
            try await Task.sleep(for: .seconds(4))
            let cut = stalled.readAll(within: 3)
            XCTAssertTrue(cut.hasPrefix("HTTP/1.1 200 "), String(cut.prefix(200)))
            XCTAssertLessThan(cut.utf8.count, whole.utf8.count, "the answer was cut short")
            XCTAssertFalse(cut.hasSuffix("0\r\n\r\n"))
            XCTAssertTrue(stalled.waitForClose(within: 1), "the connection is closed")
            let after = try await timeouts()
            let counted = [before, after].map { Double($0?.split(separator: " ").last ?? "") }
            XCTAssertEqual(counted[0].map { $0 + 1 }, counted[1], "one write timeout counted: \(before ?? "") → \(after ?? "")")
            let health = try await server.call(.get, "/healthz")
            XCTAssertEqual(health.status, 200)
        }
    }

    /// HEAD of any route is its GET's status and headers without a body
    /// (RFC 9110, 9.3.2), its errors too: on one connection, a HEAD and then
    /// a GET are two whole answers, the HEAD's Content-Length that of the
    /// GET's body and no byte of a body after the HEAD's headers.
    func testHeadAnswersAsGetWithoutABody() async throws {
        try await TestServer.run { server in
            let tenant = try await server.signUp()
            for (path, key, status) in [
                ("/healthz", nil, 200), ("/v1/keys", tenant.key, 200), ("/v1/keys", nil, 401), ("/v1/nothing-here", tenant.key, 404),
            ] {
                let authorization = key.map { "Authorization: Bearer \($0)\r\n" } ?? ""
                let socket = try RawSocket(port: server.port)
                socket.send(
                    "HEAD \(path) HTTP/1.1\r\nHost: x\r\n\(authorization)\r\n"
                        + "GET \(path) HTTP/1.1\r\nHost: x\r\n\(authorization)Connection: close\r\n\r\n")
                let answers = socket.readAll(within: 5)
                let parts = answers.components(separatedBy: "\r\n\r\n")
                XCTAssertEqual(parts.count, 3, "two answers, the HEAD's with no body: \(answers)")
                guard parts.count == 3 else { continue }
                let head = parts[0].lowercased().components(separatedBy: "\r\n")
                let get = parts[1].lowercased().components(separatedBy: "\r\n")
                XCTAssertTrue(head[0].hasPrefix("http/1.1 \(status) "), "HEAD \(path): \(parts[0])")
                XCTAssertTrue(get[0].hasPrefix("http/1.1 \(status) "), "GET \(path): \(parts[1])")
                XCTAssertFalse(parts[2].isEmpty, "GET \(path) has a body")
                // The 404's detail names the method it was asked with.
                let length = parts[2].utf8.count + (status == 404 ? 1 : 0)
                XCTAssertTrue(head.contains("content-length: \(length)"), "HEAD \(path): \(parts[0])")
                XCTAssertTrue(get.contains("content-length: \(parts[2].utf8.count)"), "GET \(path): \(parts[1])")
            }
        }
        // A streamed answer (a list past its first read's bytes) has no
        // Content-Length: nor has its HEAD, and no body follows it either.
        try await TestServer.run(configure: { $0.listBytes = 1 }) { server in
            let tenant = try await server.signUp()
            let issuer = try await server.createIssuer(tenant.key)
            for _ in 0..<3 { _ = try await server.issue(tenant.key, issuer: issuer) }
            let fields = "Host: x\r\nAuthorization: Bearer \(tenant.key)\r\nX-Issuer-Id: \(issuer)\r\n"
            let socket = try RawSocket(port: server.port)
            socket.send("HEAD /v1/documents HTTP/1.1\r\n\(fields)\r\nGET /v1/documents HTTP/1.1\r\n\(fields)Connection: close\r\n\r\n")
            let answers = socket.readAll(within: 5)
            guard let end = answers.range(of: "\r\n\r\n") else { return XCTFail(answers) }
            let head = answers[..<end.lowerBound].lowercased().components(separatedBy: "\r\n")
            XCTAssertTrue(head[0].hasPrefix("http/1.1 200 "), answers)
            XCTAssertFalse(head.contains { $0.hasPrefix("content-length:") }, answers)
            let rest = answers[end.upperBound...]
            XCTAssertTrue(rest.hasPrefix("HTTP/1.1 200 "), "no body after the HEAD's headers: \(rest.prefix(200))")
            XCTAssertTrue(rest.lowercased().contains("transfer-encoding: chunked"), String(rest.prefix(400)))
            XCTAssertEqual(rest.components(separatedBy: "\"accessKey\"").count - 1, 3, "the GET streams the three documents")
        }
    }

    /// `comprobify serve` started on a free loopback port with `environment`
    /// added to what it needs, once it answers /healthz.
    private static func serve(_ binary: URL, _ environment: [String: String], output: Pipe? = nil) async throws -> (Process, TestServer) {
        let port = try freeLoopbackPort()
        let process = Process()
        process.executableURL = binary
        process.arguments = ["serve"]
        process.environment = [
            "DATABASE_URL": TestDatabase.appURL, "PORT": String(port), "HOST": "127.0.0.1", "LOG_LEVEL": "error",
            "COMPROBIFY_SECRET_KEY": TestSecrets.keyText,
        ].merging(environment) { $1 }
        process.standardOutput = output ?? FileHandle.nullDevice
        try process.run()
        let client = TestServer(port: port)
        var ready = false
        for _ in 0..<100 where !ready {
            ready = (try? await client.call(.get, "/healthz"))?.status == 200
            if !ready { try await Task.sleep(for: .milliseconds(100)) }
        }
        if !ready { process.terminate() }
        XCTAssertTrue(ready, "the server started")
        return (process, client)
    }

    /// An open-file limit too low for HTTP_MAX_CONNECTIONS is said at start
    /// (a warning naming the connections it leaves room for); one that cannot
    /// even hold the database connections stops the start, naming the limit.
    /// A master key that does not look random (all zeros) is said at start,
    /// a warning; the server starts. A random one is not.
    func testAMasterKeyThatDoesNotLookRandomIsSaid() throws {
        for (key, weak) in [(Data(repeating: 0, count: 32).base64EncodedString(), true), (TestSecrets.keyText, false)] {
            let process = Process()
            process.executableURL = try Executable.url()
            process.arguments = ["serve"]
            process.environment = [
                "DATABASE_URL": TestDatabase.appURL, "PORT": String(try freeLoopbackPort()), "HOST": "127.0.0.1",
                "LOG_LEVEL": "info", "COMPROBIFY_SECRET_KEY": key, "SRI_WORKERS": "0", "WEBHOOK_WORKERS": "0",
            ]
            let output = Pipe()
            process.standardOutput = output
            try process.run()
            defer { if process.isRunning { process.terminate() } }
            var read = ""
            for _ in 0..<100 where !read.contains("\"connection limits\"") {
                read += String(decoding: output.fileHandleForReading.availableData, as: UTF8.self)
            }
            let warned = read.split(separator: "\n").first { $0.contains("does not look random") }.map(String.init)
            XCTAssertEqual(warned != nil, weak, read)
            if let warned { XCTAssertTrue(warned.contains("\"level\":\"warning\""), warned) }
            XCTAssertFalse(read.contains(key), "the key is never written")
            XCTAssertTrue(process.isRunning, "a warning, not a refusal")
        }
    }

    func testAnOpenFileLimitTooLowIsSaidOrRefused() throws {
        let binary = try Executable.url()
        func start(files: Int, _ environment: [String: String]) throws -> (Process, Pipe) {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/bin/sh")
            process.arguments = ["-c", "ulimit -n \(files) && exec \"$0\" serve", binary.path]
            process.environment = [
                "DATABASE_URL": TestDatabase.appURL, "PORT": String(try freeLoopbackPort()), "HOST": "127.0.0.1",
                "LOG_LEVEL": "info", "COMPROBIFY_SECRET_KEY": TestSecrets.keyText, "SRI_WORKERS": "0", "WEBHOOK_WORKERS": "0",
            ].merging(environment) { $1 }
            let output = Pipe()
            process.standardOutput = output
            try process.run()
            return (process, output)
        }
        // 400 files: room for 259 clients beside 13 database connections, not 10,000.
        let (running, runningOutput) = try start(files: 400, [:])
        defer { if running.isRunning { running.terminate() } }
        // At info the start always writes lines ("connection limits" follows
        // the warning), so each read returns.
        var read = ""
        var warned = ""
        for _ in 0..<100 where warned.isEmpty && !read.contains("\"connection limits\"") {
            read += String(decoding: runningOutput.fileHandleForReading.availableData, as: UTF8.self)
            warned = read.split(separator: "\n").first { $0.contains("open-file limit") }.map(String.init) ?? ""
        }
        XCTAssertTrue(warned.contains("\"level\":\"warning\""), warned)
        XCTAssertTrue(warned.contains("\"max_connections\":\"259\""), warned)
        XCTAssertTrue(running.isRunning, "the server runs with what the limit allows")
        running.terminate()
        running.waitUntilExit()

        // 140 files: 128 kept for the process itself and 13 database connections do not fit.
        let (refused, refusedOutput) = try start(files: 140, [:])
        refused.waitUntilExit()
        let log = String(decoding: refusedOutput.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertEqual(refused.terminationStatus, 1, log)
        XCTAssertTrue(log.contains("cannot start") && log.contains("the open-file limit (140"), log)
    }

    /// A crash writes no core file: the process holds the master key and
    /// issuers' private keys. Its core limit is 0, soft and hard, whatever the
    /// shell that started it allowed.
    func testTheServerWritesNoCoreFile() async throws {
        let binary = try Executable.url()
        let (process, _) = try await Self.serve(binary, [:])
        defer { if process.isRunning { process.terminate() } }
        let limits = try String(contentsOfFile: "/proc/\(process.processIdentifier)/limits", encoding: .utf8)
        let core = try XCTUnwrap(limits.split(separator: "\n").first { $0.hasPrefix("Max core file size") })
        XCTAssertEqual(core.split(separator: " ", omittingEmptySubsequences: true).dropFirst(4).prefix(2), ["0", "0"], String(core))
    }

    /// `comprobify serve` with `environment` (and no queue workers: the
    /// database holds other tests' documents, whose exchanges with an SRI out
    /// of reach would outlast any grace), and one request of a tenant waiting
    /// inside it on the tenant's row, which `locker`'s open transaction holds.
    private static func serveWithARequestHeldOnALock(
        _ environment: [String: String], output: Pipe? = nil
    ) async throws -> (process: Process, locker: Connection, inFlight: Task<Reply, any Error>) {
        let box = TenantBox()
        try await TestServer.run { server in box.tenant = try await server.signUp() }
        let tenant = try XCTUnwrap(box.tenant)
        let (process, client) = try await Self.serve(
            try Executable.url(), environment.merging(["SRI_WORKERS": "0", "WEBHOOK_WORKERS": "0"]) { $1 }, output: output)
        do {
            let locker = try TestDatabase.owner()
            try locker.query("BEGIN", prepared: false)
            try locker.query("SELECT 1 FROM tenants WHERE id = $1 FOR UPDATE", [tenant.id], prepared: false)
            let inFlight = Task { try await client.call(.post, "/v1/tenants/resend-verification", key: tenant.key) }
            let lockerPID = try locker.query("SELECT pg_backend_pid()", prepared: false)[0].decode(Int32.self, at: 0)
            XCTAssertNotNil(TestDatabase.sessionBlocked(by: lockerPID), "the request is waiting inside the server")
            return (process, locker, inFlight)
        } catch {
            process.terminate()
            throw error
        }
    }

    func testSIGTERMLetsInFlightRequestsFinish() async throws {
        let (process, locker, inFlight) = try await Self.serveWithARequestHeldOnALock(["SHUTDOWN_GRACE_S": "10"])
        defer { if process.isRunning { process.terminate() } }
        kill(process.processIdentifier, SIGTERM)
        try await Task.sleep(for: .milliseconds(500))
        XCTAssertTrue(process.isRunning, "still draining the request in flight")
        try locker.query("COMMIT", prepared: false)
        let reply = try await inFlight.value
        XCTAssertEqual(reply.status, 200, reply.text)
        // The connection closes after it, and the answer says so.
        XCTAssertEqual(reply.headers[.connection], "close")
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0)
    }

    /// A stop that outlasts SHUTDOWN_GRACE_S cuts the request in flight
    /// short: the process says so at warning and exits 1, not 0 with a plain
    /// "stopped" as if everything had finished.
    func testAStopPastItsGraceSaysWhatItCutShortAndExitsOne() async throws {
        let output = Pipe()
        let (process, locker, inFlight) = try await Self.serveWithARequestHeldOnALock(
            ["SHUTDOWN_GRACE_S": "1", "LOG_LEVEL": "warning"], output: output)
        defer { if process.isRunning { process.terminate() } }
        kill(process.processIdentifier, SIGTERM)
        process.waitUntilExit()
        try locker.query("ROLLBACK", prepared: false)
        _ = try? await inFlight.value
        XCTAssertEqual(process.terminationStatus, 1, "a stop that cut work short is not a clean one")
        let log = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let lines = log.split(separator: "\n").filter { $0.contains("SHUTDOWN_GRACE_S ran out") }
        XCTAssertEqual(lines.count, 1, log)
        XCTAssertTrue(lines.first?.contains("\"level\":\"warning\"") ?? false, log)
    }

    /// With SHUTDOWN_READY_DELAY_S, a SIGTERM first turns /readyz to 503 while
    /// requests are still served, for that long; then the server stops.
    func testSIGTERMTurnsReadinessOffBeforeTheServerStops() async throws {
        let (process, client) = try await Self.serve(
            try Executable.url(), ["SHUTDOWN_GRACE_S": "10", "SHUTDOWN_READY_DELAY_S": "4", "SRI_WORKERS": "0", "WEBHOOK_WORKERS": "0"])
        defer { if process.isRunning { process.terminate() } }
        let ready = try await client.call(.get, "/readyz")
        XCTAssertEqual(ready.status, 200, "the server was ready")
        let signalled = ContinuousClock.now
        kill(process.processIdentifier, SIGTERM)
        var stopping: Reply?
        for _ in 0..<50 where stopping?.status != 503 {
            stopping = try? await client.call(.get, "/readyz")
            if stopping?.status != 503 { try await Task.sleep(for: .milliseconds(20)) }
        }
        let answer = try XCTUnwrap(stopping)
        answer.assertProblem(503, "SERVICE_UNAVAILABLE")
        XCTAssertEqual(answer.json?["detail"], .string("The server is stopping."))
        let health = try await client.call(.get, "/healthz")
        XCTAssertEqual(health.status, 200, "requests are still served")
        XCTAssertLessThan(ContinuousClock.now - signalled, .seconds(4), "all of it within the delay")
        XCTAssertTrue(process.isRunning)
        process.waitUntilExit()
        XCTAssertGreaterThanOrEqual(ContinuousClock.now - signalled, .seconds(4), "it kept serving for the delay")
        XCTAssertEqual(process.terminationStatus, 0)
    }

    /// The start-up line says which allocator serves the process: the server
    /// links jemalloc on Linux (Package.swift). A SIGTERM is logged at info
    /// when the stop begins and when it ends, each a JSON line like the rest.
    func testServerStartsOnJemallocAndLogsItsStop() throws {
        let binary = try Executable.url()
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("serve-\(UUID().uuidString).log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: log) }
        let process = Process()
        process.executableURL = binary
        process.arguments = ["serve"]
        process.environment = [
            "DATABASE_URL": TestDatabase.appURL, "PORT": "0", "HOST": "127.0.0.1", "LOG_LEVEL": "info",
            "COMPROBIFY_SECRET_KEY": TestSecrets.keyText, "SRI_WORKERS": "0", "WEBHOOK_WORKERS": "0",
        ]
        process.standardOutput = try FileHandle(forWritingTo: log)
        try process.run()
        defer { if process.isRunning { process.terminate() } }
        var listening: Substring?
        for _ in 0..<300 where listening == nil {
            let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
            listening = text.split(separator: "\n").first { $0.contains("\"message\":\"listening\"") }
            if listening == nil { Thread.sleep(forTimeInterval: 0.1) }
        }
        let line = try XCTUnwrap(listening, "the server logs its listening line")
        #if os(Linux)
            XCTAssertTrue(line.contains("\"allocator\":\"jemalloc 5."), String(line))
        #endif
        process.terminate()
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0)
        let lines = try String(contentsOf: log, encoding: .utf8).split(separator: "\n")
        let messages = lines.compactMap { (try? JSONParser.parse(Array($0.utf8)))?["message"]?.stringValue }
        XCTAssertEqual(messages.count, lines.count, "every line is a JSON object with a message")
        let stopping = try XCTUnwrap(messages.firstIndex { $0.hasPrefix("stopping: ") }, "\(messages)")
        XCTAssertEqual(messages.last, "stopped", "\(messages)")
        XCTAssertLessThan(stopping, messages.count - 1)
        XCTAssertTrue(lines[stopping].contains("\"level\":\"info\""), String(lines[stopping]))
    }
}

final class TenantBox: @unchecked Sendable {
    var tenant: TestServer.Tenant?
}

/// The built `comprobify` executable, beside the test bundle.
enum Executable {
    static func url() throws -> URL {
        if let path = ProcessInfo.processInfo.environment["COMPROBIFY_TEST_BIN"], !path.isEmpty {
            return URL(fileURLWithPath: path)
        }
        var directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        while directory.path != "/" {
            let candidate = directory.appendingPathComponent("comprobify")
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
            directory = directory.deletingLastPathComponent()
        }
        throw Unexpected(description: "the comprobify executable is not built (swift build --product comprobify)")
    }

    static func run(_ binary: URL, _ arguments: [String], environment: [String: String]) throws -> (status: Int32, output: String) {
        try runTool(binary.path, arguments, environment: environment)
    }
}

/// A bare TCP client, to behave as badly as real clients do.
final class RawSocket {
    let fd: Int32

    /// `receiveBuffer` sets SO_RCVBUF before connecting: a small one makes a
    /// client that stops reading fill the server's side soon. `source` is the
    /// loopback address it connects from (the kernel's choice when nil).
    init(port: Int, receiveBuffer: Int32? = nil, from source: String? = nil) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        if var size = receiveBuffer {
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        if let source {
            var local = sockaddr_in()
            local.sin_family = sa_family_t(AF_INET)
            local.sin_addr.s_addr = inet_addr(source)
            let bound = withUnsafePointer(to: &local) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard bound == 0 else { throw Unexpected(description: "cannot bind to \(source)") }
        }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard result == 0 else { throw Unexpected(description: "connect failed") }
    }

    deinit { close(fd) }

    func send(_ text: String) {
        _ = text.withCString { Glibc.send(fd, $0, strlen($0), 0) }
    }

    /// Everything the server sends until it closes the connection or
    /// `seconds` pass without a byte.
    func readAll(within seconds: Int) -> String {
        var timeout = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = recv(fd, &buffer, buffer.count, 0)
            if count <= 0 { return String(decoding: received, as: UTF8.self) }
            received.append(contentsOf: buffer[0..<count])
        }
    }

    /// What the server sends, read `burst` bytes at a time (as fast as they
    /// come) with `pause` between, until `done` says the text is whole, the
    /// server closes the connection, or `seconds` pass without a byte.
    func readInBursts(of burst: Int, pausing pause: Duration, within seconds: Int, until done: (String) -> Bool) -> String {
        var timeout = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 16 * 1024)
        var sincePause = 0
        while true {
            let count = recv(fd, &buffer, buffer.count, 0)
            if count <= 0 { break }
            received.append(contentsOf: buffer[0..<count])
            if done(String(decoding: received.suffix(64), as: UTF8.self)) { break }
            sincePause += count
            if sincePause >= burst {
                sincePause = 0
                usleep(UInt32(pause / .microseconds(1)))
            }
        }
        return String(decoding: received, as: UTF8.self)
    }

    /// True when the server closes the connection before `seconds` pass.
    func waitForClose(within seconds: Int) -> Bool {
        var timeout = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = recv(fd, &buffer, buffer.count, 0)
            if count == 0 { return true }
            if count < 0 { return errno == ECONNRESET }
        }
    }
}

final class SecretKeySettingTests: XCTestCase {
    /// serve refuses to start without a valid master key, and says why in one line.
    func testServeRefusesAMissingOrMalformedSecretKey() throws {
        let binary = try Executable.url()
        let cases: [(String?, String)] = [
            (nil, "COMPROBIFY_SECRET_KEY is not set"),
            ("not base64!", "COMPROBIFY_SECRET_KEY is not valid base64"),
            (Data(repeating: 7, count: 16).base64EncodedString(), "COMPROBIFY_SECRET_KEY must be base64 of 32 bytes, it decodes to 16"),
        ]
        for (key, message) in cases {
            var environment = ["DATABASE_URL": TestDatabase.appURL, "PORT": "0"]
            environment["COMPROBIFY_SECRET_KEY"] = key
            let result = try Executable.run(binary, ["serve"], environment: environment)
            XCTAssertEqual(result.status, 2, result.output)
            let lines = result.output.split(separator: "\n")
            XCTAssertEqual(lines.count, 1, result.output)
            XCTAssertTrue(result.output.contains(message), result.output)
            XCTAssertFalse(result.output.contains(key ?? "\u{0}"), "the value itself is never printed")
        }
    }
}
