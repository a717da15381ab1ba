import AsyncHTTPClient
import Foundation
import HTTPTypes
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Postgres
import TestSupport
import XCTest

@testable import Comprobify

/// Issue 16: webhooks, from POST /v1/webhooks to the signed, retried delivery.
final class WebhooksTests: XCTestCase {
    func testCreateListDeleteAndTheSecretShownOnce() async throws {
        let logs = LogCapture()
        try await TestServer.run(configure: { $0.webhooks.allowHTTP = true }, logs: logs) { server in
            let tenant = try await server.signUp()
            let created = try await server.call(
                .post, "/v1/webhooks", key: tenant.key, json: #"{"url": "https://erp.example.com/hooks/comprobify"}"#)
            XCTAssertEqual(created.status, 201, created.text)
            XCTAssertEqual(created.headers[.cacheControl], "no-store")
            let secret = try created.string("secret")
            XCTAssertNotNil(secret.wholeMatch(of: /whsec_[0-9a-f]{64}/))
            let id = try created.int("webhook", "id")
            XCTAssertEqual(try created.string("webhook", "url"), "https://erp.example.com/hooks/comprobify")
            XCTAssertEqual(
                try created.array("webhook", "events"),
                [.string("document.authorized"), .string("document.not_authorized"), .string("document.returned")],
                "all three events by default")
            XCTAssertEqual(try created.string("webhook", "environment"), "sandbox")

            let filtered = try await server.createWebhook(
                tenant.key, url: "http://127.0.0.1:9/x", events: ["document.returned", "document.returned"])
            let list = try await server.call(.get, "/v1/webhooks", key: tenant.key)
            XCTAssertEqual(list.status, 200, list.text)
            let hooks = try list.array("webhooks")
            XCTAssertEqual(hooks.map { $0["id"]?.intValue }, [id, filtered.id])
            XCTAssertEqual(hooks[1]["events"], .array([.string("document.returned")]), "duplicates folded")
            XCTAssertFalse(list.text.contains(secret), "the secret is shown once, at creation")
            XCTAssertFalse(list.text.contains("whsec_"))

            // Stored sealed: not in the row, not in pg_dump, not in the log.
            let stored = try TestDatabase.query("SELECT sealed_secret FROM webhook_endpoints WHERE id = $1", [id])
            let sealed = try stored[0].decode(Data.self, at: 0)
            XCTAssertFalse(String(decoding: sealed, as: UTF8.self).contains(String(secret.dropFirst(6).prefix(16))))
            XCTAssertEqual(
                try TestSecrets.box.open([UInt8](sealed), associatedData: WebhooksStore.associatedData(tenantID: tenant.id, webhookID: id)),
                Array(secret.utf8), "it opens with the master key, the tenant and the webhook id")
            XCTAssertThrowsError(
                try TestSecrets.box.open(
                    [UInt8](sealed), associatedData: WebhooksStore.associatedData(tenantID: tenant.id, webhookID: id + 1)))
            let dumpFile = FileManager.default.temporaryDirectory.appendingPathComponent("webhooks-\(UUID().uuidString).sql")
            defer { try? FileManager.default.removeItem(at: dumpFile) }
            let pgDump =
                FileManager.default.fileExists(atPath: "/usr/lib/postgresql/15/bin/pg_dump")
                ? "/usr/lib/postgresql/15/bin/pg_dump" : "pg_dump"
            let (status, output) = try runTool(
                pgDump, ["--data-only", "--table", "webhook_endpoints", "--file", dumpFile.path, TestDatabase.ownerURL])
            XCTAssertEqual(status, 0, output)
            let dump = try String(contentsOf: dumpFile, encoding: .utf8)
            XCTAssertTrue(dump.contains("erp.example.com"))
            XCTAssertFalse(dump.contains(String(secret.dropFirst(6))), "no plaintext secret in pg_dump")
            XCTAssertFalse(dump.contains(Data(secret.utf8).base64EncodedString().prefix(40)))
            XCTAssertFalse(logs.text.contains(String(secret.dropFirst(6))), "nor in the log")

            let deleted = try await server.call(.delete, "/v1/webhooks/\(id)", key: tenant.key)
            XCTAssertEqual(deleted.status, 200, deleted.text)
            try await server.call(.delete, "/v1/webhooks/\(id)", key: tenant.key).assertProblem(404, "NOT_FOUND")
            try await server.call(.delete, "/v1/webhooks/abc", key: tenant.key).assertProblem(404, "NOT_FOUND")
            try await server.call(.get, "/v1/webhooks/\(id)/deliveries", key: tenant.key).assertProblem(404, "NOT_FOUND")
            let after = try await server.call(.get, "/v1/webhooks", key: tenant.key)
            XCTAssertEqual(try after.array("webhooks").map { $0["id"]?.intValue }, [filtered.id])

            // Another tenant's webhook is not found, whatever the route.
            let other = try await server.signUp()
            try await server.call(.delete, "/v1/webhooks/\(filtered.id)", key: other.key).assertProblem(404, "NOT_FOUND")
            try await server.call(.get, "/v1/webhooks/\(filtered.id)/deliveries", key: other.key).assertProblem(404, "NOT_FOUND")
            let otherList = try await server.call(.get, "/v1/webhooks", key: other.key)
            XCTAssertEqual(try otherList.array("webhooks"), [])

            // Created and deleted, audited as done by the key; the refused
            // deletions (again, another tenant's) leave nothing.
            let keyID = try TestDatabase.scalar("SELECT id FROM api_keys WHERE tenant_id = $1", [tenant.id], as: Int64.self)
            let audit = try TestDatabase.query(
                """
                SELECT action, actor, actor_key_id, (details->>'webhookId')::bigint, details->>'url', details->>'environment'
                  FROM audit_events WHERE action LIKE 'webhook.%' AND tenant_id IN ($1, $2) ORDER BY id
                """, [tenant.id, other.id])
            XCTAssertEqual(
                try audit.rows.map { try $0.decode(String.self, at: 0) }, ["webhook.created", "webhook.created", "webhook.deleted"])
            XCTAssertEqual(try audit.rows.map { try $0.decode(Int64.self, at: 3) }, [id, filtered.id, id])
            XCTAssertEqual(try audit.rows.map { try $0.decode(Int64.self, at: 2) }, [keyID, keyID, keyID])
            XCTAssertEqual(try audit[0].decode(String.self, at: 1), "tenant")
            XCTAssertEqual(try audit[2].decode(String.self, at: 4), "https://erp.example.com/hooks/comprobify")
            XCTAssertEqual(try audit[2].decode(String.self, at: 5), "sandbox")
        }
    }

    func testValidationAndTheOrderOfAnswers() async throws {
        try await TestServer.run { server in
            let tenant = try await server.signUp()
            for (body, field) in [
                (#"{}"#, "url"),
                (#"{"url": 12}"#, "url"),
                (#"{"url": "ftp://example.com/x"}"#, "url"),
                (#"{"url": "http://erp.example.com/x"}"#, "url"),
                (#"{"url": "http://localhost:8080/x"}"#, "url"),
                (#"{"url": "https://user:pw@erp.example.com/x"}"#, "url"),
                (#"{"url": "not a url"}"#, "url"),
                (#"{"url": "https://erp.example.com/x", "events": []}"#, "events"),
                (#"{"url": "https://erp.example.com/x", "events": "document.authorized"}"#, "events"),
                (#"{"url": "https://erp.example.com/x", "events": ["document.signed"]}"#, "events"),
                (#"{"url": "https://erp.example.com/x", "events": [null]}"#, "events"),
            ] {
                let reply = try await server.call(.post, "/v1/webhooks", key: tenant.key, json: body)
                reply.assertProblem(400, "VALIDATION_ERROR")
                XCTAssertEqual(reply.errorFields, [field], body)
            }
            let both = try await server.call(.post, "/v1/webhooks", key: tenant.key, json: #"{"url": "x", "events": 1}"#)
            XCTAssertEqual(Set(both.errorFields), ["url", "events"], "all fields at once")

            // 401 before 400, whatever the body.
            let forged = "cfy_test_" + String(repeating: "0", count: 64)
            try await server.call(.post, "/v1/webhooks", key: forged, json: #"{"url": "ftp://x"}"#).assertProblem(401, "UNAUTHORIZED")
            try await server.call(.post, "/v1/webhooks", json: #"{"url": "https://erp.example.com/x"}"#).assertProblem(401, "UNAUTHORIZED")
            try await server.call(.get, "/v1/webhooks", key: forged).assertProblem(401, "UNAUTHORIZED")
            try await server.call(.delete, "/v1/webhooks/1", key: forged).assertProblem(401, "UNAUTHORIZED")
            try await server.call(.get, "/v1/webhooks/1/deliveries", key: forged).assertProblem(401, "UNAUTHORIZED")
        }
    }

    func testPrivateAddressesAreRefused() async throws {
        try await TestServer.run { server in
            let tenant = try await server.signUp()
            let privateURLs =
                [
                    "https://10.1.2.3/x", "https://169.254.169.254/latest/meta-data", "https://[::1]/x", "https://127.0.0.1/x",
                    "https://192.168.1.10/x", "https://172.16.0.1/x", "https://[fd00:ec2::254]/x", "https://[::ffff:10.0.0.1]/x",
                    "https://[fe80::1]/x", "https://0.0.0.0/x", "https://localhost/x", "https://LOCALHOST./x",
                    // IPv6 forms a gateway turns into private IPv4 addresses:
                    // NAT64, local-use NAT64, IPv4-translated, 6to4, Teredo.
                    "https://[64:ff9b::a9fe:a9fe]/x", "https://[64:ff9b:1::5db8:d70e]/x", "https://[::ffff:0:a00:1]/x",
                    "https://[2002:a9fe:a9fe::1]/x", "https://[2001:0:a00:1::5db8:d70e]/x", "https://[2001:0:5db8:d70e::f5ff:fefe]/x",
                    // Percent-encoded, shortened and numeric spellings of loopback.
                    "https://%31%32%37.0.0.1/x", "https://127.1/x", "https://2130706433/x", "https://0x7f.0.0.1/x",
                    "https://%6c%6f%63%61%6c%68%6f%73%74/x",
                    // A host that %-escapes end early for the C resolver (a NUL),
                    // or that hold a space or a delimiter once decoded.
                    "https://8.8.8.8%00.internal/x", "https://127.0.0.1%00.example.com/x", "https://erp%20x.example.com/x",
                    "https://erp%2fx.example.com/x", "https://erp%40x.example.com/x", "https://erp%25x.example.com/x",
                    "https://erp%C2%A0x.example.com/x", "https://erp%C2%85x.example.com/x", "https://erp%5Bx.example.com/x",
                ] + WebhooksTests.loopbackHostNames.map { "https://\($0)/x" }
            for url in privateURLs {
                let reply = try await server.call(.post, "/v1/webhooks", key: tenant.key, json: #"{"url": "\#(url)"}"#)
                reply.assertProblem(400, "VALIDATION_ERROR")
                XCTAssertEqual(reply.errorFields, ["url"], url)
            }
            let list = try await server.call(.get, "/v1/webhooks", key: tenant.key)
            XCTAssertEqual(try list.array("webhooks"), [], "nothing stored")
        }
        try await TestServer.run(configure: { $0.webhooks.allowHTTP = true }) { server in
            let tenant = try await server.signUp()
            for url in ["http://127.0.0.1:8080/x", "http://localhost:8080/x", "https://localhost/x", "http://LocalHost.:8080/x"] {
                let reply = try await server.call(.post, "/v1/webhooks", key: tenant.key, json: #"{"url": "\#(url)"}"#)
                XCTAssertEqual(reply.status, 201, "\(url): \(reply.text)")
            }
            // A scheme is case-insensitive: kept in lower case, the rest as written.
            for (url, kept) in [
                ("HTTP://127.0.0.1:8080/Upper", "http://127.0.0.1:8080/Upper"), ("Https://93.184.215.14/X", "https://93.184.215.14/X"),
            ] {
                let reply = try await server.call(.post, "/v1/webhooks", key: tenant.key, json: #"{"url": "\#(url)"}"#)
                XCTAssertEqual(reply.status, 201, "\(url): \(reply.text)")
                XCTAssertEqual(try reply.string("webhook", "url"), kept)
            }
            // Nor a loopback host written otherwise (in brackets, percent-escaped):
            // http names localhost or 127.0.0.1 plainly, as the table's rule reads it.
            for url in [
                "http://10.0.0.1/x", "https://169.254.169.254/x", "http://[::1]:8080/x", "http://erp.example.com/x",
                "http://[127.0.0.1]:8080/x", "http://%6cocalhost:8080/x", "http://localhost%2e:8080/x",
            ] {
                let reply = try await server.call(.post, "/v1/webhooks", key: tenant.key, json: #"{"url": "\#(url)"}"#)
                XCTAssertEqual(reply.errorFields, ["url"], "\(url): the allowance covers localhost and 127.0.0.1 only")
            }
        }
    }

    /// Host names of this machine that resolve to a loopback address (the
    /// machine's own name usually does, through /etc/hosts).
    static var loopbackHostNames: [String] {
        let name = ProcessInfo.processInfo.hostName
        var hints = addrinfo()
        hints.ai_family = AF_INET
        var list: UnsafeMutablePointer<addrinfo>?
        guard !name.isEmpty, name != "localhost", getaddrinfo(name, nil, &hints, &list) == 0, let first = list else { return [] }
        defer { freeaddrinfo(list) }
        let address = first.pointee.ai_addr.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr.s_addr }
        return UInt32(bigEndian: address) >> 24 == 127 ? [name] : []
    }

    func testAHostNameIsJudgedByWhatItResolvesTo() async throws {
        // An internationalized name is judged, and looked up, in its xn-- form.
        for written in ["https://ñandú.ec/x", "https://xn--and-6ma2c.ec/x", "https://XN--AND-6MA2C.EC./x"] {
            XCTAssertEqual(try WebhookURL.parse(written, allowHTTP: false).get().host, "xn--and-6ma2c.ec", written)
        }
        XCTAssertThrowsError(try WebhookURL.parse("https://%C3%B1and%C3%BA.ec/x", allowHTTP: false).get())
        let url = try WebhookURL.parse("https://rebind.example.com/x", allowHTTP: false).get()
        let answers: [String: [IPAddress]] = [
            "loopback": [IPAddress("127.0.0.1")!], "metadata": [IPAddress("169.254.169.254")!],
            "mixed": [IPAddress("93.184.215.14")!, IPAddress("10.0.0.7")!], "v6": [IPAddress("::1")!],
            "public": [IPAddress("93.184.215.14")!, IPAddress("2606:2800:21f:cb07:6820:80da:af6b:8b2c")!],
        ]
        for (name, addresses) in answers {
            let refusal = await AddressGuard.refusal(for: url, allowHTTP: false) { _ in addresses }
            XCTAssertEqual(refusal == nil, name == "public", "\(name): \(refusal ?? "allowed")")
        }
        let unresolved = await AddressGuard.refusal(for: url, allowHTTP: false) { _ in nil }
        XCTAssertNotNil(unresolved, "a delivery needs an address")
        let notYetInDNS = await AddressGuard.refusal(for: url, allowHTTP: false, requireAddress: false) { _ in nil }
        XCTAssertNil(notYetInDNS, "a new endpoint may not be in DNS yet")
        let publicAddresses = [IPAddress("93.184.215.14")!, IPAddress("2606:2800:21f:cb07:6820:80da:af6b:8b2c")!]
        let pinned = await AddressGuard.verdict(for: url, allowHTTP: false) { _ in publicAddresses + [publicAddresses[0]] }
        XCTAssertEqual(
            pinned, .allowed(pins: publicAddresses), "a delivery connects to the approved addresses, each once, not to a new lookup")
        let literal = try WebhookURL.parse("https://93.184.215.14/x", allowHTTP: false).get()
        let direct = await AddressGuard.verdict(for: literal, allowHTTP: false) { _ in
            XCTFail("an address is not looked up"); return nil
        }
        XCTAssertEqual(direct, .allowed(pins: []))
        let allowed = try WebhookURL.parse("http://localhost:8080/x", allowHTTP: true).get()
        let asked = await AddressGuard.refusal(for: allowed, allowHTTP: true) { _ in [IPAddress("127.0.0.1")!] }
        XCTAssertNil(asked, "the allowance covers localhost")
    }

    /// A delivery to a host name goes through a client of its own, pinned
    /// to the approved address: a connection it cannot make (here refused,
    /// the name pinned to a closed port) fails the attempt at once, not after
    /// the attempt's timeout (AsyncHTTPClient would try to connect again
    /// until then). WebhookDeliveryTests shows the same for IP addresses and
    /// localhost through the workers.
    func testAPinnedDeliveryFailsARefusedConnectionAtOnce() async throws {
        var settings = WebhookSettings()
        settings.timeoutMilliseconds = 5_000
        let listener = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: 0).get()
        let closedPort = try XCTUnwrap(listener.localAddress?.port)
        try await listener.close()
        // A name no resolver knows (.invalid): only the pin leads anywhere, so
        // a refused connection shows the pin was used (a lookup would fail
        // with an unknown host instead).
        let pin = (hosts: ["hooks.invalid"], address: IPAddress("127.0.0.1")!)
        let client = HTTPClient(
            eventLoopGroup: MultiThreadedEventLoopGroup.singleton, configuration: WebhookService.clientConfiguration(settings, pinning: pin)
        )
        let started = ContinuousClock.now
        do {
            _ = try await client.execute(HTTPClientRequest(url: "http://hooks.invalid:\(closedPort)/x"), timeout: .seconds(5))
            XCTFail("the port is closed")
        } catch {
            XCTAssertLessThan(ContinuousClock.now - started, .seconds(1), "failed at once: \(error)")
            XCTAssertTrue(String(describing: error).contains("refused"), "refused at the pinned address: \(error)")
        }
        try await client.shutdown()
    }

    /// A name's approved addresses are tried in turn, the next only when no
    /// connection could be made to the one before (here 127.0.0.2, where
    /// nothing listens): an answer of any status ends the attempt, and an
    /// attempt that reached none names each address's failure.
    func testANamesNextAddressIsTriedOnlyWhenNoConnectionWasMade() async throws {
        try await WebhookReceiver.run { receiver, port in
            var settings = WebhookSettings()
            settings.timeoutMilliseconds = 5_000
            let listening = IPAddress("127.0.0.1")!
            let refusing = IPAddress("127.0.0.2")!
            func post(_ path: String, to pins: [IPAddress]) async -> WebhooksStore.Outcome {
                let pending = WebhooksStore.Pending(
                    tenantID: 1, id: 1, endpointID: 1, eventID: "evt_1", url: "http://hooks.example.com:\(port)\(path)", sealedSecret: [],
                    previousSealedSecret: nil, body: Array("{}".utf8))
                return await WebhookService.post(
                    pending, secrets: [Array("secret".utf8)], to: pins, of: ["hooks.example.com"], settings: settings,
                    eventLoopGroup: MultiThreadedEventLoopGroup.singleton, started: .now, deadline: .now() + .seconds(5))
            }
            let second = await post("/ok/second", to: [refusing, listening])
            XCTAssertEqual(second.kind, "delivered", "\(second)")
            XCTAssertNil(second.error)
            XCTAssertEqual(receiver.hits("/ok/second").count, 1)

            let answered = await post("/dead/first", to: [listening, listening])
            XCTAssertEqual(answered.kind, "http_status", "\(answered)")
            XCTAssertEqual(receiver.hits("/dead/first").count, 1, "an answer, even a 500, is not posted again elsewhere")

            let none = await post("/ok/none", to: [refusing, IPAddress("127.0.0.3")!])
            XCTAssertEqual(none.kind, "connection", "\(none)")
            let error = none.error ?? ""
            XCTAssertTrue(error.hasPrefix("127.0.0.2: ") && error.contains("; 127.0.0.3: "), error)
            XCTAssertLessThan(none.durationMilliseconds, 1_000, "each refusal fails at once")
            XCTAssertEqual(receiver.hits("/ok/none").count, 0)
        }
    }

    /// While another address remains, one that never answers the connect (a
    /// listener whose backlog is full: its SYNs go unanswered) has only its
    /// share of the attempt's time, and the next one takes the POST within
    /// the timeout. Given the whole timeout, it left the next none.
    func testAnAddressThatNeverAnswersLeavesTheNextItsShare() async throws {
        try await WebhookReceiver.run { receiver, port in
            // 127.0.0.2 on the receiver's port: accepts nothing, its one place taken.
            let silent = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .serverChannelOption(.backlog, value: 0)
                .serverChannelOption(.autoRead, value: false)
                .bind(host: "127.0.0.2", port: port).get()
            let filler = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connect(host: "127.0.0.2", port: port)
                .get()
            var settings = WebhookSettings()
            settings.timeoutMilliseconds = 4_000
            let pending = WebhooksStore.Pending(
                tenantID: 1, id: 1, endpointID: 1, eventID: "evt_1", url: "http://hooks.example.com:\(port)/ok/share", sealedSecret: [],
                previousSealedSecret: nil, body: Array("{}".utf8))
            let started = ContinuousClock.now
            let outcome = await WebhookService.post(
                pending, secrets: [Array("secret".utf8)], to: [IPAddress("127.0.0.2")!, IPAddress("127.0.0.1")!], of: ["hooks.example.com"],
                settings: settings, eventLoopGroup: MultiThreadedEventLoopGroup.singleton, started: started,
                deadline: .now() + .milliseconds(4_000))
            let took = ContinuousClock.now - started
            try await filler.close()
            try await silent.close()
            XCTAssertEqual(outcome.kind, "delivered", "\(outcome)")
            XCTAssertGreaterThanOrEqual(took, .milliseconds(1_500), "the first address had its share, about half")
            XCTAssertLessThan(took, .milliseconds(3_900))
            XCTAssertEqual(receiver.hits("/ok/share").count, 1)
        }
    }

    /// Slow name lookups run on threads of their own, at most
    /// `maximumLookupsWaiting` at once: past that a lookup is not made (the
    /// name counts as not resolving) instead of queueing without end.
    func testNameLookupsWaitingAreBounded() async throws {
        let release = DispatchSemaphore(value: 0)
        let limit = AddressGuard.maximumLookupsWaiting
        try await withThrowingTaskGroup(of: [IPAddress]?.self) { group in
            // Frees the held lookups however the body ends (a failed wait throws).
            defer { for _ in 0..<limit { release.signal() } }
            // One lookup per tenant: the bound of all tenants together.
            for tenant in 0..<limit {
                group.addTask {
                    try await AddressGuard.boundedLookup("slow.example.com", tenantID: Int64(tenant)) { _ in
                        release.wait()
                        return [IPAddress("93.184.215.14")!]
                    }
                }
            }
            try await Self.waitForLookups(limit)
            let turnedAway = try await AddressGuard.boundedLookup("one-more.example.com", tenantID: Int64(limit)) { _ in
                XCTFail("a lookup past the limit is not made")
                return nil
            }
            XCTAssertNil(turnedAway)
            for _ in 0..<limit { release.signal() }
            var answered = 0
            for try await addresses in group where addresses != nil { answered += 1 }
            XCTAssertEqual(answered, limit)
        }
        XCTAssertEqual(AddressGuard.lookupsWaiting.withLockedValue { $0.total }, 0)
        XCTAssertEqual(AddressGuard.lookupsWaiting.withLockedValue { $0.byTenant }, [:])
        XCTAssertTrue(AddressGuard.lookupsWaiting.withLockedValue { $0.queued.isEmpty })
        let again = try await AddressGuard.boundedLookup("fast.example.com", tenantID: 1) { _ in [IPAddress("93.184.215.14")!] }
        XCTAssertEqual(again, [IPAddress("93.184.215.14")!])
    }

    /// One tenant's names that never answer hold at most
    /// `maximumLookupsPerTenant` lookups: its next one waits, without a
    /// thread, for one of them to end, while another tenant's lookup runs and
    /// answers at once.
    func testOneTenantsSlowNamesLeaveTheLookupsToOthers() async throws {
        let release = DispatchSemaphore(value: 0)
        let perTenant = AddressGuard.maximumLookupsPerTenant
        XCTAssertLessThan(perTenant, AddressGuard.lookupThreadCount, "a tenant must leave threads to the others")
        let slowTenant: Int64 = 7_000_001
        let queuedRan = NIOLockedValueBox(false)
        try await withThrowingTaskGroup(of: [IPAddress]?.self) { group in
            defer { for _ in 0..<perTenant { release.signal() } }
            for _ in 0..<perTenant {
                group.addTask {
                    try await AddressGuard.boundedLookup("never-answers.example.com", tenantID: slowTenant) { _ in
                        release.wait()
                        return nil
                    }
                }
            }
            try await Self.waitForLookups(perTenant)
            group.addTask {
                try await AddressGuard.boundedLookup("next.example.com", tenantID: slowTenant) { _ in
                    queuedRan.withLockedValue { $0 = true }
                    return [IPAddress("93.184.215.14")!]
                }
            }
            try await eventually("the tenant's next lookup queued", within: 10, every: 5) {
                AddressGuard.lookupsWaiting.withLockedValue { $0.queued[slowTenant]?.count ?? 0 } >= 1
            }
            XCTAssertFalse(queuedRan.withLockedValue { $0 }, "the tenant's next lookup waits for one of its places")
            let other = try await AddressGuard.boundedLookup("erp.example.com", tenantID: slowTenant + 1) { _ in
                [IPAddress("93.184.215.14")!]
            }
            XCTAssertEqual(other, [IPAddress("93.184.215.14")!], "another tenant's lookup is made at once")
            for _ in 0..<perTenant { release.signal() }
            var answered = 0
            for try await addresses in group where addresses != nil { answered += 1 }
            XCTAssertEqual(answered, 1, "the waiting lookup was made once a place was free")
        }
        XCTAssertTrue(queuedRan.withLockedValue { $0 })
        XCTAssertNil(AddressGuard.lookupsWaiting.withLockedValue { $0.byTenant[slowTenant] })
        XCTAssertNil(AddressGuard.lookupsWaiting.withLockedValue { $0.queued[slowTenant] })
    }

    /// A lookup still waiting for its tenant's place when its deadline passes
    /// (its caller gave up) is not made: the place goes to the next one.
    func testALookupWaitingPastItsDeadlineIsNotMade() async throws {
        let release = DispatchSemaphore(value: 0)
        let perTenant = AddressGuard.maximumLookupsPerTenant
        let tenant: Int64 = 7_000_201
        let lateRan = NIOLockedValueBox(false)
        let address = IPAddress("93.184.215.14")!
        @Sendable func held(_: String) -> [IPAddress]? {
            release.wait()
            return nil
        }
        @Sendable func late(_: String) -> [IPAddress]? {
            lateRan.withLockedValue { $0 = true }
            return [address]
        }
        @Sendable func next(_: String) -> [IPAddress]? { [address] }
        try await withThrowingTaskGroup(of: (String, [IPAddress]?).self) { group in
            defer { for _ in 0..<perTenant { release.signal() } }
            for _ in 0..<perTenant {
                group.addTask {
                    let answer = try await AddressGuard.boundedLookup("never-answers.example.com", tenantID: tenant, held)
                    return ("held", answer)
                }
            }
            try await Self.waitForLookups(perTenant)
            group.addTask {
                let deadline = NIODeadline.now() + .milliseconds(50)
                let answer = try await AddressGuard.boundedLookup("late.example.com", tenantID: tenant, deadline: deadline, late)
                return ("late", answer)
            }
            group.addTask {
                let answer = try await AddressGuard.boundedLookup("next.example.com", tenantID: tenant, next)
                return ("next", answer)
            }
            try await eventually("the two lookups queued", within: 10, every: 5) {
                AddressGuard.lookupsWaiting.withLockedValue { $0.queued[tenant]?.count ?? 0 } >= 2
            }
            try await Task.sleep(for: .milliseconds(100))
            for _ in 0..<perTenant { release.signal() }
            var answers: [String: [IPAddress]?] = [:]
            for try await (what, answer) in group where what != "held" { answers[what] = answer }
            XCTAssertEqual(answers["late"], .some(nil), "past its deadline: not made")
            XCTAssertEqual(answers["next"], .some([address]), "the place went to the next")
        }
        XCTAssertFalse(lateRan.withLockedValue { $0 })
        XCTAssertNil(AddressGuard.lookupsWaiting.withLockedValue { $0.byTenant[tenant] })
        XCTAssertNil(AddressGuard.lookupsWaiting.withLockedValue { $0.queued[tenant] })
    }

    /// A tenant's many ordinary lookups at once (its deliveries to several
    /// endpoints) all answer: past its places they wait their turn, none is
    /// taken for a name that does not resolve.
    func testManyQuickLookupsOfOneTenantAllAnswer() async throws {
        let tenant: Int64 = 7_000_101
        let count = AddressGuard.maximumLookupsPerTenant * 5
        let answers = try await withThrowingTaskGroup(of: [IPAddress]?.self) { group in
            for _ in 0..<count {
                group.addTask {
                    try await AddressGuard.boundedLookup("erp.example.com", tenantID: tenant) { _ in
                        Thread.sleep(forTimeInterval: 0.01)
                        return [IPAddress("93.184.215.14")!]
                    }
                }
            }
            var answers: [[IPAddress]?] = []
            for try await answer in group { answers.append(answer) }
            return answers
        }
        XCTAssertEqual(answers.count, count)
        XCTAssertTrue(answers.allSatisfy { $0 == [IPAddress("93.184.215.14")!] }, "\(answers)")
        XCTAssertNil(AddressGuard.lookupsWaiting.withLockedValue { $0.byTenant[tenant] })
    }

    /// Waits until `count` lookups are waiting or running; after 10 s fails
    /// the test and throws, and the caller's deferred release frees the
    /// lookups it holds, so that a regression fails instead of hanging the run.
    private static func waitForLookups(_ count: Int, file: StaticString = #filePath, line: UInt = #line) async throws {
        try await eventually("\(count) lookups started", within: 10, every: 5, file: file, line: line) {
            AddressGuard.lookupsWaiting.withLockedValue { $0.total } >= count
        }
    }

    func testAtMostTenPerTenantAndEnvironment() async throws {
        try await TestServer.run(configure: { $0.webhooks.allowHTTP = true }) { server in
            let tenant = try await server.signUp()
            try await withThrowingTaskGroup(of: Int.self) { group in
                for index in 0..<14 {
                    group.addTask {
                        try await server.call(
                            .post, "/v1/webhooks", key: tenant.key, json: #"{"url": "http://127.0.0.1:9/\#(index)"}"#
                        ).status
                    }
                }
                var statuses: [Int] = []
                for try await status in group { statuses.append(status) }
                XCTAssertEqual(statuses.filter { $0 == 201 }.count, 10, "concurrent creations never pass the limit")
                XCTAssertEqual(statuses.filter { $0 == 409 }.count, 4)
            }
            let refused = try await server.call(.post, "/v1/webhooks", key: tenant.key, json: #"{"url": "http://127.0.0.1:9/y"}"#)
            refused.assertProblem(409, "CONFLICT", reason: "LIMIT_REACHED")
            let first = try await server.call(.get, "/v1/webhooks", key: tenant.key).array("webhooks")[0]["id"]!.intValue!
            let deleted = try await server.call(.delete, "/v1/webhooks/\(first)", key: tenant.key)
            XCTAssertEqual(deleted.status, 200)
            let again = try await server.call(.post, "/v1/webhooks", key: tenant.key, json: #"{"url": "http://127.0.0.1:9/y"}"#)
            XCTAssertEqual(again.status, 201, "a deleted one frees its place")
        }
    }
}
