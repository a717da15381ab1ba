import Foundation
import Postgres
import SRI
import TestSupport
import XCTest

@testable import Comprobify

/// Sending to SRI against the real database and the local SRI (with the real
/// judges: the XSD and the XAdES verifier). Each test queues documents of its
/// own tenant and runs server processes whose workers claim only that tenant.
final class SubmissionTests: XCTestCase {
    /// An API server (no workers), a tenant with an issuer, and a local SRI.
    func run(_ body: @escaping @Sendable (TestServer, QueueTenant, LocalSRI) async throws -> Void) async throws {
        try await TestServer.run { server in
            let tenant = try await QueueTenant(server: server)
            try await LocalSRI.run { sri in
                try await body(server, tenant, sri)
            }
        }
    }

    // MARK: Transitions

    func testSignedIsReceivedThenAuthorized() async throws {
        try await run { server, tenant, sri in
            let key = try tenant.queue()
            let early = try await server.call(
                .get, "/v1/documents/\(key)/authorization", key: tenant.tenant.key, issuer: tenant.issuer)
            early.assertProblem(409, "CONFLICT", reason: "NOT_AUTHORIZED_YET")

            try await withSender(testSRISettings(url: sri.baseURL, tenants: [tenant.tenant.id])) { _ in
                try await tenant.waitFor([key])
            }
            let submission = try tenant.submission(key)
            XCTAssertEqual(submission.status, "AUTHORIZED")
            XCTAssertEqual(submission.attempts, 2)
            XCTAssertNil(submission.lastError)
            XCTAssertNil(submission.nextAttemptAt)
            XCTAssertFalse(submission.leased)
            XCTAssertEqual(submission.authorizationNumber, key)
            XCTAssertNotNil(submission.authorizedAt)
            XCTAssertEqual(try tenant.outcomes(key), ["reception:received", "authorization:authorized"])
            let receptions = await sri.receptions(key)
            XCTAssertEqual(receptions, 1)

            let reply = try await server.call(.get, "/v1/documents/\(key)/authorization", key: tenant.tenant.key, issuer: tenant.issuer)
            XCTAssertEqual(reply.status, 200, reply.text)
            XCTAssertEqual(reply.headers[.contentType], "application/xml; charset=utf-8")
            XCTAssertTrue(reply.text.hasPrefix("<autorizacion>"), reply.text)
            XCTAssertTrue(reply.text.contains("<estado>AUTORIZADO</estado>"))
            XCTAssertTrue(reply.text.contains("<numeroAutorizacion>\(key)</numeroAutorizacion>"))
            XCTAssertEqual(reply.text, submission.authorizationXML)

            let missing = try await server.call(
                .get, "/v1/documents/\(TestSigner.accessKey(sequential: 999, environment: .sandbox))/authorization",
                key: tenant.tenant.key, issuer: tenant.issuer)
            missing.assertProblem(404, "NOT_FOUND")
        }
    }

    func testAFacturaIssuedThroughTheAPIIsSentAndShowsWhereItStands() async throws {
        try await TestServer.run(configure: { $0.sri.gaugeIntervalMilliseconds = 200 }) { server in
            let tenant = try await server.signUp()
            let issuer = try await server.createIssuer(tenant.key)
            _ = try await server.call(.patch, "/v1/issuers/\(issuer)", key: tenant.key, json: #"{"headOfficeAddress": "Quito"}"#)
            _ = try await server.call(.put, "/v1/issuers/\(issuer)/certificate", key: tenant.key, json: TestSigning.uploadBody)
            let issued = try await server.issue(tenant.key, issuer: issuer, body: Bodies.factura())
            XCTAssertEqual(issued.status, 201, issued.text)
            XCTAssertEqual(try issued.string("document", "status"), "SIGNED")
            let key = try issued.string("document", "accessKey")
            // A series of /metrics, 0 while it has no value yet.
            func metric(_ series: String) async throws -> Double {
                let text = try await server.call(.get, "/metrics").text
                let line = text.split(separator: "\n").first { $0.hasPrefix(series + " ") }
                return line.flatMap { Double($0.dropFirst(series.count + 1)) } ?? 0
            }
            // The queue's gauge is published and counts the waiting documents
            // (of every tenant: this one, and whatever other tests left).
            var pending = 0.0
            let counted = Date().addingTimeInterval(15)
            while pending < 1 && Date() < counted {
                try await Task.sleep(for: .milliseconds(100))
                pending = try await metric("sri_documents_pending")
            }
            XCTAssertGreaterThanOrEqual(pending, 1, "sri_documents_pending counts the waiting factura")
            // The oldest waiting document's age: at least this factura's (of
            // every tenant: another test's older document may be the oldest).
            var oldest = 0.0
            let aged = Date().addingTimeInterval(15)
            while oldest < 0.2 && Date() < aged {
                try await Task.sleep(for: .milliseconds(100))
                oldest = try await metric("sri_oldest_pending_seconds")
            }
            XCTAssertGreaterThanOrEqual(oldest, 0.2, "sri_oldest_pending_seconds ages with the waiting factura")
            let received = #"sri_requests_total{service="reception",outcome="received"}"#
            let authorized = #"sri_requests_total{service="authorization",outcome="authorized"}"#
            let (receivedBefore, authorizedBefore) = (try await metric(received), try await metric(authorized))
            try await LocalSRI.run { sri in
                var settings = testSRISettings(url: sri.baseURL, tenants: [tenant.id])
                settings.workers = 1
                try await withSender(settings) { _ in
                    let deadline = Date().addingTimeInterval(30)
                    while Date() < deadline {
                        let reply = try await server.call(.get, "/v1/documents/\(key)", key: tenant.key, issuer: issuer)
                        if try reply.string("document", "status") == "AUTHORIZED" { break }
                        try await Task.sleep(for: .milliseconds(50))
                    }
                }
                let shown = try await server.call(.get, "/v1/documents/\(key)", key: tenant.key, issuer: issuer)
                XCTAssertEqual(try shown.string("document", "status"), "AUTHORIZED", shown.text)
                XCTAssertEqual(try shown.string("document", "sri", "authorizationNumber"), key)
                XCTAssertEqual(try shown.int("document", "sri", "attempts"), 2)
                XCTAssertTrue(shown.isNull("document", "sri", "lastError"))
                XCTAssertTrue(shown.isNull("document", "sri", "nextAttemptAt"))
                let receptions = await sri.receptions(key)
                XCTAssertEqual(receptions, 1, "the local SRI's XSD and signature checks passed once")
                // SRI received the very bytes GET .../xml serves, and xmlsec1 verifies them.
                let served = try await server.call(.get, "/v1/documents/\(key)/xml", key: tenant.key, issuer: issuer)
                let sent = await sri.comprobante(key)
                XCTAssertEqual(sent, served.text, "the same bytes as sent to SRI")
                XCTAssertNil(try IndependentCheck.signatureErrors(Array((sent ?? "").utf8), root: "factura"))
                let authorization = try await server.call(.get, "/v1/documents/\(key)/authorization", key: tenant.key, issuer: issuer)
                XCTAssertEqual(authorization.status, 200, authorization.text)
                XCTAssertTrue(authorization.text.contains("<estado>AUTORIZADO</estado>"))
            }
            // The two exchanges, in the metrics by service and outcome.
            let (receivedAfter, authorizedAfter) = (try await metric(received), try await metric(authorized))
            XCTAssertEqual(receivedAfter - receivedBefore, 1, received)
            XCTAssertEqual(authorizedAfter - authorizedBefore, 1, authorized)
            // Their durations, in buckets that reach past SRI_TIMEOUT_MS's default (20 s).
            let text = try await server.call(.get, "/metrics").text
            for bound in ["5.0", "20.0", "30.0", "120.0"] {
                XCTAssertTrue(
                    text.contains(#"sri_request_duration_seconds_bucket{service="reception",le="\#(bound)"}"#),
                    "a bucket at \(bound) s")
            }
        }
    }

    func testReturnedIsFinalWithSRIsMessages() async throws {
        try await run { _, tenant, sri in
            try await sri.faults(.init(reception: .init(returnWith: "45")))
            let key = try tenant.queue()
            try await withSender(testSRISettings(url: sri.baseURL, tenants: [tenant.tenant.id])) { _ in
                try await tenant.waitFor([key])
            }
            let submission = try tenant.submission(key)
            XCTAssertEqual(submission.status, "RETURNED")
            XCTAssertEqual(submission.attempts, 1)
            XCTAssertNil(submission.nextAttemptAt)
            XCTAssertTrue(submission.messages.contains(#""identifier":"45""#), submission.messages)
            XCTAssertTrue(submission.messages.contains(#""type":"ERROR""#), submission.messages)
            XCTAssertEqual(try tenant.outcomes(key), ["reception:returned"])
        }
    }

    func testABrokenSignatureIsNotAuthorized() async throws {
        try await run { _, tenant, sri in
            let key = try tenant.queue(tamper: true)
            try await withSender(testSRISettings(url: sri.baseURL, tenants: [tenant.tenant.id])) { _ in
                try await tenant.waitFor([key])
            }
            let submission = try tenant.submission(key)
            XCTAssertEqual(submission.status, "NOT_AUTHORIZED")
            XCTAssertNil(submission.authorizationNumber)
            XCTAssertNil(submission.nextAttemptAt)
            XCTAssertTrue(submission.messages.contains(#""identifier":"39""#), submission.messages)
            XCTAssertEqual(try tenant.outcomes(key), ["reception:received", "authorization:not_authorized"])
        }
    }

    // MARK: Lost answers and pending decisions

    func testA43AfterALostAnswerEndsAuthorized() async throws {
        try await run { _, tenant, sri in
            try await sri.faults(.init(reception: .init(loseAnswer: 1)))
            let key = try tenant.queue()
            try await withSender(testSRISettings(url: sri.baseURL, tenants: [tenant.tenant.id])) { _ in
                try await tenant.waitFor([key])
            }
            XCTAssertEqual(try tenant.submission(key).status, "AUTHORIZED")
            XCTAssertEqual(try tenant.outcomes(key), ["reception:connection", "reception:already_received", "authorization:authorized"])
            let receptions = await sri.receptions(key)
            XCTAssertEqual(receptions, 2)
        }
    }

    func testA70EndsAuthorized() async throws {
        try await run { _, tenant, sri in
            try await sri.faults(.init(reception: .init(returnWith: "70")))
            let key = try tenant.queue()
            try await withSender(testSRISettings(url: sri.baseURL, tenants: [tenant.tenant.id])) { _ in
                try await tenant.waitFor([key])
            }
            XCTAssertEqual(try tenant.submission(key).status, "AUTHORIZED")
            XCTAssertEqual(try tenant.outcomes(key), ["reception:already_received", "authorization:authorized"])
        }
    }

    /// The housekeeping purges exchanges older than SRI_EXCHANGE_RETENTION_DAYS
    /// (90 by default); younger ones stay, and the document still shows its
    /// status, its attempts and its authorization.
    func testExchangesPastTheirRetentionArePurgedAndTheDocumentStays() async throws {
        try await run { server, tenant, sri in
            let (old, young) = (try tenant.queue(), try tenant.queue())
            try await withSender(testSRISettings(url: sri.baseURL, tenants: [tenant.tenant.id])) { _ in
                try await tenant.waitFor([old, young])
            }
            try TestDatabase.query(
                """
                UPDATE sri_exchanges x SET created_at = now() - interval '91 days'
                  FROM documents d
                 WHERE d.tenant_id = x.tenant_id AND d.id = x.document_id AND d.tenant_id = $1 AND d.access_key = $2
                """, [tenant.tenant.id, old])
            // A server starting purges at once (as does every other test
            // server beside it: the purge crosses tenants).
            try await TestServer.run { _ in
                try await eventually("the old document's exchanges purged") { try tenant.outcomes(old).isEmpty }
            }
            XCTAssertEqual(try tenant.outcomes(young), ["reception:received", "authorization:authorized"], "the young ones stay")
            let shown = try await server.call(.get, "/v1/documents/\(old)", key: tenant.tenant.key, issuer: tenant.issuer)
            XCTAssertEqual(shown.status, 200, shown.text)
            XCTAssertEqual(try shown.string("document", "status"), "AUTHORIZED")
            XCTAssertEqual(try shown.int("document", "sri", "attempts"), 2, "the attempts are counted on the document")
            XCTAssertEqual(try shown.string("document", "sri", "authorizationNumber"), old)
            let authorization = try await server.call(
                .get, "/v1/documents/\(old)/authorization", key: tenant.tenant.key, issuer: tenant.issuer)
            XCTAssertEqual(authorization.status, 200, authorization.text)
            XCTAssertTrue(authorization.text.hasPrefix("<autorizacion>"), authorization.text)
        }
    }

    func testPendingAuthorizationsAreAskedAgain() async throws {
        try await run { _, tenant, sri in
            try await sri.faults(.init(authorization: .init(pending: 2, inProcess: 1)))
            let key = try tenant.queue()
            try await withSender(testSRISettings(url: sri.baseURL, tenants: [tenant.tenant.id])) { _ in
                try await tenant.waitFor([key])
            }
            let submission = try tenant.submission(key)
            XCTAssertEqual(submission.status, "AUTHORIZED")
            XCTAssertEqual(submission.attempts, 5)
            XCTAssertEqual(
                try tenant.outcomes(key),
                [
                    "reception:received", "authorization:pending", "authorization:pending", "authorization:pending",
                    "authorization:authorized",
                ])
        }
    }

    /// A document sent with `SRI_RESEND_EVERY` 2 to a local SRI given
    /// `faults`, followed to AUTHORIZED: its exchanges' outcomes, how many
    /// receptions SRI counted, and the document as the API shows it.
    func resentDocument(
        _ faults: SRISimulatorFaults, _ body: @escaping @Sendable ([String], Int, Reply) async throws -> Void
    ) async throws {
        try await run { server, tenant, sri in
            try await sri.faults(faults)
            let key = try tenant.queue()
            var settings = testSRISettings(url: sri.baseURL, tenants: [tenant.tenant.id])
            settings.resendEvery = 2
            try await withSender(settings) { _ in
                try await tenant.waitFor([key])
            }
            let shown = try await server.call(.get, "/v1/documents/\(key)", key: tenant.tenant.key, issuer: tenant.issuer)
            XCTAssertEqual(try shown.string("document", "status"), "AUTHORIZED", shown.text)
            try await body(try tenant.outcomes(key), await sri.receptions(key), shown)
        }
    }

    /// SRI lost a document it had received (a restart of its services): it
    /// answers no decision for ever, as for one still in its queue. The
    /// `resendEvery`-th exchange without a decision sends it again; SRI
    /// receives it anew and decides.
    func testADocumentSRILostIsSentAgainAndAuthorized() async throws {
        try await resentDocument(.init(authorization: .init(forget: 1))) { outcomes, receptions, shown in
            XCTAssertEqual(
                outcomes,
                [
                    "reception:received", "authorization:pending", "authorization:pending", "reception:received",
                    "authorization:authorized",
                ])
            XCTAssertEqual(receptions, 2)
            XCTAssertEqual(try shown.int("document", "sri", "attempts"), 5)
        }
    }

    /// A resend of a document SRI still has is answered 43: it stays
    /// RECEIVED, its messages untouched, and the run of asks goes on.
    func testAResendSRIAlreadyHasKeepsAskingForTheAuthorization() async throws {
        try await resentDocument(.init(authorization: .init(pending: 2))) { outcomes, receptions, shown in
            XCTAssertEqual(
                outcomes,
                [
                    "reception:received", "authorization:pending", "authorization:pending", "reception:already_received",
                    "authorization:authorized",
                ])
            XCTAssertEqual(receptions, 2)
            XCTAssertEqual(try shown.array("document", "sri", "messages").count, 0, "the 43 is in the exchange, not the document")
        }
    }

    // MARK: Transport faults

    func testServerErrorsAreRetriedUntilDecided() async throws {
        try await run { _, tenant, sri in
            // HTTP 500 with a SOAP fault at reception (nothing received), then at authorization.
            try await sri.faults(.init(reception: .init(http500: 2), authorization: .init(http500: 1)))
            let key = try tenant.queue()
            try await withSender(testSRISettings(url: sri.baseURL, tenants: [tenant.tenant.id])) { _ in
                try await tenant.waitFor([key])
            }
            let submission = try tenant.submission(key)
            XCTAssertEqual(submission.status, "AUTHORIZED")
            XCTAssertNil(submission.lastError)
            XCTAssertEqual(
                try tenant.outcomes(key),
                [
                    "reception:soap_fault", "reception:soap_fault", "reception:received", "authorization:soap_fault",
                    "authorization:authorized",
                ])
            // Each exchange is recorded with the status its answer came with.
            let statuses = try TestDatabase.query(
                "SELECT http_status FROM sri_exchanges WHERE tenant_id = $1 ORDER BY id", [tenant.tenant.id]
            ).rows.map { try $0.decode(Int.self, at: 0) }
            XCTAssertEqual(statuses, [500, 500, 200, 500, 200])
            XCTAssertEqual(submission.attempts, 5)
            // Three requests carried the key to reception; the first two were
            // answered 500 and received nothing (the third was no 43).
            let receptions = await sri.receptions(key)
            XCTAssertEqual(receptions, 3)
        }
    }

    func testATimeoutIsRetriedAndTheResendCountsAsReceived() async throws {
        try await run { _, tenant, sri in
            // The answer comes after the client's timeout (1 s), but SRI has the document.
            try await sri.faults(.init(reception: .init(delayMs: 1_500, delayCount: 1)))
            let key = try tenant.queue()
            try await withSender(testSRISettings(url: sri.baseURL, tenants: [tenant.tenant.id])) { _ in
                try await tenant.waitFor([key])
            }
            XCTAssertEqual(try tenant.submission(key).status, "AUTHORIZED")
            XCTAssertEqual(try tenant.outcomes(key), ["reception:timeout", "reception:already_received", "authorization:authorized"])
            let failures = try TestDatabase.scalar(
                "SELECT count(*) FROM sri_exchanges WHERE tenant_id = $1 AND error LIKE 'no answer within 1000 ms'", [tenant.tenant.id],
                as: Int.self)
            XCTAssertEqual(failures, 1)
        }
    }

    func testSRIDownThenTheQueueDrains() async throws {
        let port = try freeLoopbackPort()
        try await TestServer.run { server in
            let tenant = try await QueueTenant(server: server)
            let keys = try (0..<8).map { _ in try tenant.queue() }
            let url = "http://127.0.0.1:\(port)/comprobantes-electronicos-ws"
            // A lease far longer than the tests' 3 s: on a busy machine a
            // document claimed ahead could otherwise outlive its lease and be
            // sent again by the other worker (by design, and not what is tested).
            var settings = testSRISettings(url: url, tenants: [tenant.tenant.id])
            settings.leaseMilliseconds = 60_000
            // A refused connection fails its exchange at once, not after the timeout.
            settings.timeoutMilliseconds = 20_000
            try await withSender(settings) { _ in
                // Nobody listens: every exchange fails, and is retried.
                let deadline = Date().addingTimeInterval(30)
                while try keys.contains(where: { try tenant.submission($0).attempts < 3 }), Date() < deadline {
                    try await Task.sleep(for: .milliseconds(50))
                }
                for key in keys {
                    let submission = try tenant.submission(key)
                    XCTAssertEqual(submission.status, "SIGNED")
                    XCTAssertGreaterThanOrEqual(submission.attempts, 3)
                    XCTAssertTrue(submission.lastError?.hasPrefix("connection failed") == true, "\(submission.lastError ?? "nil")")
                    XCTAssertNotNil(submission.nextAttemptAt)
                }
                let slowest = try TestDatabase.scalar(
                    "SELECT max(duration_ms) FROM sri_exchanges WHERE tenant_id = $1 AND outcome = 'connection'", [tenant.tenant.id],
                    as: Int64.self)
                XCTAssertLessThan(slowest, 2_000, "a refused connection does not wait for the 20 s timeout")
                // SRI comes back.
                try await LocalSRI.run(port: port) { sri in
                    try await tenant.waitFor(keys)
                    for key in keys {
                        XCTAssertEqual(try tenant.submission(key).status, "AUTHORIZED")
                        XCTAssertNil(try tenant.submission(key).lastError)
                        // Sent once now that SRI answers; again only after an
                        // exchange that got no answer within the timeout (SRI may
                        // have read it: the resend then finds it received).
                        let receptions = await sri.receptions(key)
                        let exchanges = try tenant.outcomes(key)
                        let timeouts = exchanges.filter { $0 == "reception:timeout" }.count
                        XCTAssertTrue((1...(1 + timeouts)).contains(receptions), "\(receptions) receptions after \(exchanges)")
                    }
                }
            }
        }
    }

    // MARK: Where documents go

    func testSandboxGoesToTheTestURLAndProductionToTheProductionURL() async throws {
        try await run { _, tenant, testSRI in
            try await LocalSRI.run { productionSRI in
                let sandbox = try tenant.queue(environment: .sandbox)
                let production = try tenant.queue(environment: .production)
                let settings = testSRISettings(url: testSRI.baseURL, productionURL: productionSRI.baseURL, tenants: [tenant.tenant.id])
                try await withSender(settings) { _ in
                    try await tenant.waitFor([sandbox, production])
                }
                XCTAssertEqual(try tenant.submission(sandbox).status, "AUTHORIZED")
                XCTAssertEqual(try tenant.submission(production).status, "AUTHORIZED")
                let counts = (
                    await testSRI.receptions(sandbox), await testSRI.receptions(production),
                    await productionSRI.receptions(sandbox), await productionSRI.receptions(production)
                )
                XCTAssertEqual(counts.0, 1)
                XCTAssertEqual(counts.1, 0)
                XCTAssertEqual(counts.2, 0)
                XCTAssertEqual(counts.3, 1)
                XCTAssertTrue(try tenant.submission(production).authorizationXML?.contains("PRODUCCIÓN") == true)
            }
        }
    }

    /// SRI's test service hangs: sandbox documents hold at most three of the
    /// four workers, and production documents, due after them, go through.
    func testASlowSandboxSRIDoesNotHoldProductionDocumentsBack() async throws {
        try await run { _, tenant, testSRI in
            try await LocalSRI.run { productionSRI in
                try await testSRI.faults(.init(reception: .init(delayMs: 6_000)))
                let sandbox = try (0..<6).map { _ in try tenant.queue(environment: .sandbox) }
                var settings = testSRISettings(
                    url: testSRI.baseURL, productionURL: productionSRI.baseURL, tenants: [tenant.tenant.id], workers: 4)
                settings.timeoutMilliseconds = 20_000
                settings.leaseMilliseconds = 60_000
                XCTAssertEqual(settings.sandboxWorkers, 3)
                try await withSender(settings) { _ in
                    // The sandbox documents take what they may, and wait there.
                    try await eventually("three sandbox documents at SRI") {
                        var sent = 0
                        for key in sandbox { sent += await testSRI.receptions(key) }
                        return sent == 3
                    }
                    // Production documents issued now go through, well before
                    // the first sandbox answer (6 s).
                    let production = try (0..<2).map { _ in try tenant.queue(environment: .production) }
                    try await tenant.waitFor(production, timeout: 4)
                    for key in production {
                        XCTAssertEqual(try tenant.submission(key).status, "AUTHORIZED")
                    }
                    var inFlight = 0
                    for key in sandbox {
                        XCTAssertEqual(try tenant.submission(key).status, "SIGNED", "no sandbox answer yet")
                        inFlight += await testSRI.receptions(key)
                    }
                    XCTAssertEqual(inFlight, 3, "three sandbox documents at SRI's test service, no more")
                }
            }
        }
    }

    /// Tenants are served in turn: a document issued now by one tenant goes
    /// out beside another tenant's backlog issued before it, not after the
    /// whole of it.
    func testOneTenantsBacklogDoesNotHoldAnotherTenantsDocumentBack() async throws {
        try await run { server, bulk, sri in
            try await sri.faults(.init(latencyMs: 60))
            let other = try await QueueTenant(server: server, sequentialsAfter: 1000)
            let backlog = try (0..<40).map { _ in try bulk.queue() }
            // One worker: every exchange waits its turn.
            let settings = testSRISettings(url: sri.baseURL, tenants: [bulk.tenant.id, other.tenant.id], workers: 1)
            try await withSender(settings) { _ in
                try await eventually("the backlog's first receptions") { await sri.receptions(backlog[0]) == 1 }
                let key = try other.queue()
                try await other.waitFor([key], timeout: 10)
                XCTAssertEqual(try other.submission(key).status, "AUTHORIZED")
                var unsent = 0
                for backlogKey in backlog {
                    if await sri.receptions(backlogKey) == 0 { unsent += 1 }
                }
                // Oldest first across tenants, it would have waited for all
                // forty receptions (2.4 s at 60 ms each).
                XCTAssertGreaterThanOrEqual(unsent, 20, "authorized while most of the backlog had not been sent yet")
            }
        }
    }

    // MARK: Many processes, one queue

    func testTwoProcessesShareOneQueueAndReceiveEachDocumentOnce() async throws {
        try await run { _, tenant, sri in
            try await sri.faults(.init(latencyMs: 20))
            let keys = try (0..<40).map { _ in try tenant.queue() }
            let settings = testSRISettings(url: sri.baseURL, tenants: [tenant.tenant.id], workers: 4)
            try await withSender(settings) { _ in
                try await withSender(settings) { _ in
                    try await tenant.waitFor(keys, timeout: 90)
                }
            }
            for key in keys {
                XCTAssertEqual(try tenant.submission(key).status, "AUTHORIZED")
                let receptions = await sri.receptions(key)
                XCTAssertEqual(receptions, 1, "\(key) was sent to reception \(receptions) times")
            }
            let workers = try TestDatabase.scalar(
                "SELECT count(DISTINCT worker) FROM sri_exchanges WHERE tenant_id = $1", [tenant.tenant.id], as: Int.self)
            XCTAssertEqual(workers, 2, "both processes took part")
        }
    }

    func testWorkHeldByADeadProcessIsTakenOverWhenItsLeaseEnds() async throws {
        try await run { _, tenant, sri in
            let key = try tenant.queue()
            // A process claimed it and died: its lease runs for a minute.
            try TestDatabase.query(
                """
                UPDATE document_submissions SET leased_by = gen_random_uuid(), leased_until = now() + interval '1 minute'
                 WHERE tenant_id = $1
                """, [tenant.tenant.id])
            // A document of the same tenant queued after it, not leased: once
            // the sender has decided it, the sender has claimed past the leased one.
            let free = try tenant.queue()
            try await withSender(testSRISettings(url: sri.baseURL, tenants: [tenant.tenant.id])) { _ in
                try await tenant.waitFor([free])
                let untouched = try TestDatabase.scalar(
                    """
                    SELECT s.attempts = 0 AND s.leased_until > now()
                      FROM document_submissions s JOIN documents d ON d.tenant_id = s.tenant_id AND d.id = s.document_id
                     WHERE d.tenant_id = $1 AND d.access_key = $2
                    """, [tenant.tenant.id, key], as: Bool.self)
                XCTAssertTrue(untouched, "nobody touches it while the lease lasts")
                let receptions = await sri.receptions(key)
                XCTAssertEqual(receptions, 0)
                // Then the lease ends, and another process takes the document over.
                try TestDatabase.query(
                    "UPDATE document_submissions SET leased_until = now() WHERE tenant_id = $1 AND leased_until > now()", [tenant.tenant.id]
                )
                try await tenant.waitFor([key])
            }
            XCTAssertEqual(try tenant.submission(key).status, "AUTHORIZED")
        }
    }

    /// A document claimed ahead waits for a worker, leased: its lease is
    /// stamped again when its exchange starts, and one that lapsed meanwhile
    /// is left to the next claim.
    func testTheLeaseIsRenewedWhenTheExchangeStarts() async throws {
        try await run { _, tenant, _ in
            let key = try tenant.queue()
            try await withTestDatabase { database in
                let lease = UUID()
                let claimed = try await database.claimSRIWork(
                    lease: lease, limit: 1, sandboxLimit: 1, leaseMilliseconds: 1_000, tenants: [tenant.tenant.id])
                let document = try XCTUnwrap(claimed.first).documentID
                let load = SubmissionsStore.load(
                    tenantID: tenant.tenant.id, documentID: document, lease: lease, leaseMilliseconds: 600_000)
                let loaded = try await database.read(forTenantID: tenant.tenant.id, load)
                XCTAssertEqual(loaded?.accessKey, key)
                let left = try TestDatabase.scalar(
                    "SELECT extract(epoch FROM leased_until - now())::float8 FROM document_submissions WHERE document_id = $1",
                    [document], as: Double.self)
                XCTAssertGreaterThan(left, 500, "the lease runs from the start of the exchange")
                try TestDatabase.query(
                    "UPDATE document_submissions SET leased_until = now() - interval '1 second' WHERE document_id = $1", [document])
                let lapsed = try await database.read(forTenantID: tenant.tenant.id, load)
                XCTAssertNil(lapsed, "a lapsed lease is not taken up again")
            }
        }
    }

    /// A worker whose lease lapsed during its exchange (a paused process, a
    /// long wait for the database) cannot record over the claim that took the
    /// document over, even when that claim is its own process's: each claim
    /// leases under its own id.
    func testAWorkerPastItsLeaseDoesNotRecordOverALaterClaim() async throws {
        try await run { _, tenant, sri in
            // The first two receptions answer after 3 s.
            try await sri.faults(.init(reception: .init(delayMs: 3_000, delayCount: 2)))
            let key = try tenant.queue()
            // Four workers: sandbox documents may hold three (sandboxWorkers),
            // the one in flight and the one that takes it over.
            var settings = testSRISettings(url: sri.baseURL, tenants: [tenant.tenant.id], workers: 4)
            settings.timeoutMilliseconds = 20_000
            settings.leaseMilliseconds = 60_000
            try await withSender(settings) { _ in
                try await eventually("the first reception") { await sri.receptions(key) == 1 }
                // Its lease lapses while it waits for SRI's answer; the same
                // process claims the document again and sends it again.
                try TestDatabase.query("UPDATE document_submissions SET leased_until = now() WHERE tenant_id = $1", [tenant.tenant.id])
                try await eventually("the second reception") { await sri.receptions(key) == 2 }
                try await tenant.waitFor([key])
            }
            XCTAssertEqual(try tenant.submission(key).status, "AUTHORIZED")
            let receptions = try TestDatabase.query(
                "SELECT status_after, worker::text FROM sri_exchanges WHERE tenant_id = $1 AND service = 'reception' ORDER BY id",
                [tenant.tenant.id]
            ).rows.map { try $0.decode((String, String).self) }
            // The first answer, recorded first, changed nothing: its lease was
            // gone. The later claim's answer (43, already received) moved it.
            XCTAssertEqual(receptions.map(\.0), ["SIGNED", "RECEIVED"])
            XCTAssertEqual(Set(receptions.map(\.1)).count, 1, "both exchanges were this one process's")
            // Every exchange counts among the attempts, the one past its lease included.
            let exchanges = try TestDatabase.scalar(
                "SELECT count(*) FROM sri_exchanges WHERE tenant_id = $1", [tenant.tenant.id], as: Int.self)
            XCTAssertEqual(try tenant.submission(key).attempts, exchanges)
            XCTAssertEqual(exchanges, 3, "two receptions and one authorization")
        }
    }

    /// The database refuses the record of an exchange for a while (here a
    /// trigger on this tenant's exchanges): the worker tries it again, with
    /// backoff, and SRI's answer is kept once the record goes through, long
    /// before the lease would have ended and the document been sent again.
    func testARecordThatFailsIsTriedAgainWhileTheLeaseLasts() async throws {
        try await run { _, tenant, sri in
            let key = try tenant.queue()
            let heal = try refuseInserts(into: "sri_exchanges", ofTenant: tenant.tenant.id)
            defer { try? heal() }
            var settings = testSRISettings(url: sri.baseURL, tenants: [tenant.tenant.id])
            settings.leaseMilliseconds = 60_000
            let logs = LogCapture()
            try await withSender(settings, logs: logs) { _ in
                try await eventually("two tries of the record refused") {
                    logs.lines.withLockedValue { $0.count(where: { $0.contains("sri exchange not recorded yet") }) } >= 2
                }
                XCTAssertEqual(try tenant.submission(key).status, "SIGNED", "nothing recorded yet")
                try heal()
                try await tenant.waitFor([key], timeout: 20)
            }
            XCTAssertEqual(try tenant.submission(key).status, "AUTHORIZED")
            let receptions = await sri.receptions(key)
            XCTAssertEqual(receptions, 1, "the answer of the first reception was kept, not asked again")
            XCTAssertEqual(try tenant.outcomes(key), ["reception:received", "authorization:authorized"])
            XCTAssertEqual(try tenant.submission(key).attempts, 2)
            let text = logs.text
            XCTAssertTrue(text.contains("record_tries"), "the line of the exchange says how many tries its record took")
            XCTAssertFalse(text.contains("sri exchange not recorded ["), "no record was given up")
        }
    }

    /// A record tried again after a try that did commit (its commit's answer
    /// lost with the connection) finds its exchange under the claim's lease
    /// and does nothing: one exchange, counted once, the state moved once.
    /// Also when that try's commit is still under way as the record runs again:
    /// the row's lock makes the second wait for it and then see it.
    func testARecordTriedAgainAfterItCommittedDoesNothing() async throws {
        try await run { _, tenant, _ in
            let key = try tenant.queue()
            let tenantID = tenant.tenant.id
            let settings = testSRISettings(url: "http://127.0.0.1:9", tenants: [tenantID])
            try await withTestDatabase { database in
                /// Claims the document and reads it, as a worker does.
                func claim() async throws -> (QueuedDocument, UUID) {
                    let lease = UUID()
                    let claimed = try await database.claimSRIWork(
                        lease: lease, limit: 1, sandboxLimit: 1, leaseMilliseconds: 60_000, tenants: [tenantID])
                    let documentID = try XCTUnwrap(claimed.first).documentID
                    let loaded = try await database.read(
                        forTenantID: tenantID,
                        SubmissionsStore.load(tenantID: tenantID, documentID: documentID, lease: lease, leaseMilliseconds: 60_000))
                    return (try XCTUnwrap(loaded), lease)
                }
                /// The record's transaction, as SubmissionService runs it (a try
                /// again locks the row first).
                @Sendable func record(_ document: QueuedDocument, _ result: ExchangeResult, _ lease: UUID, again: Bool) async throws
                    -> SubmissionsStore.RecordOutcome
                {
                    let transition = Transition.after(
                        result, from: document.status, streak: document.streak, settings: settings, now: Date())
                    let statement = SubmissionsStore.record(
                        document: document, service: document.status == .signed ? .reception : .authorization, url: settings.testURL,
                        result: result, transition: transition, durationMilliseconds: 20, lease: lease, worker: UUID())
                    let lock = again ? [SubmissionsStore.lockForRecord(tenantID: tenantID, documentID: document.documentID)] : []
                    return try await database.transaction(forTenantID: tenantID, prologue: lock + [statement]) { _, results in
                        try SubmissionsStore.outcome(results[lock.count])
                    }
                }

                let (signed, first) = try await claim()
                let received = ExchangeResult.reception(.init(status: .received))
                let tries = [
                    try await record(signed, received, first, again: false), try await record(signed, received, first, again: true),
                ]
                XCTAssertEqual(tries, [.applied, .recordedBefore])
                XCTAssertEqual(try tenant.outcomes(key), ["reception:received"], "one exchange")
                XCTAssertEqual(try tenant.submission(key).status, "RECEIVED")
                XCTAssertEqual(try tenant.submission(key).attempts, 1, "counted once")

                // A try that has written its exchange and holds the row, its
                // commit not done yet (here an open transaction of the owner's).
                try TestDatabase.query("UPDATE document_submissions SET next_attempt_at = now() WHERE tenant_id = $1", [tenantID])
                let (receivedDocument, second) = try await claim()
                let inFlight = try TestDatabase.owner()
                let pid = try inFlight.query("SELECT pg_backend_pid()")[0].decode(Int32.self, at: 0)
                try inFlight.query("BEGIN")
                try inFlight.query(
                    """
                    UPDATE document_submissions SET attempts = attempts + 1, leased_by = NULL, leased_until = NULL,
                           next_attempt_at = now() + interval '1 minute'
                     WHERE tenant_id = $1 AND document_id = $2
                    """, [tenantID, receivedDocument.documentID])
                try inFlight.query(
                    """
                    INSERT INTO sri_exchanges (tenant_id, document_id, service, url, outcome, duration_ms, status_before, status_after,
                                               answer, worker, lease)
                    VALUES ($1, $2, 'authorization', 'http://127.0.0.1:9', 'pending', 20, 'RECEIVED', 'RECEIVED', '{}', $3::uuid, $4::uuid)
                    """, [tenantID, receivedDocument.documentID, UUID().uuidString, second.uuidString])
                let pending = ExchangeResult.authorization(.init(queriedAccessKey: key, count: 0, authorizations: []))
                let again = Task { try await record(receivedDocument, pending, second, again: true) }
                XCTAssertNotNil(TestDatabase.sessionBlocked(by: pid), "the try again waits for the row")
                try inFlight.query("COMMIT")
                let outcome = try await again.value
                XCTAssertEqual(outcome, .recordedBefore)
            }
            XCTAssertEqual(try tenant.outcomes(key), ["reception:received", "authorization:pending"], "one exchange a claim")
            XCTAssertEqual(try tenant.submission(key).attempts, 2, "each counted once")
            let leases = try TestDatabase.scalar(
                "SELECT count(DISTINCT lease) FROM sri_exchanges WHERE tenant_id = $1", [tenantID], as: Int.self)
            XCTAssertEqual(leases, 2, "each exchange names its claim")
        }
    }

    func testNoWorkersSendNothing() async throws {
        try await run { _, tenant, sri in
            let key = try tenant.queue()
            var settings = testSRISettings(url: sri.baseURL, tenants: [tenant.tenant.id])
            settings.workers = 0
            let logs = LogCapture()
            try await withSender(settings, logs: logs) { _ in
                try await Task.sleep(for: .milliseconds(500))
            }
            XCTAssertEqual(try tenant.submission(key).attempts, 0)
            let receptions = await sri.receptions(key)
            XCTAssertEqual(receptions, 0)
            // No sender was started at all, not one that had not sent yet: the
            // service ran (the service group logs its start and its end), and
            // the line a sender logs when it starts is missing.
            let lines = logs.text.split(separator: "\n")
            XCTAssertTrue(
                lines.contains { $0.hasPrefix("debug Starting service") && $0.contains("SubmissionService(") }, "\(lines.count) lines")
            XCTAssertTrue(
                lines.contains { $0.hasPrefix("debug Service finished") && $0.contains("SubmissionService(") }, "\(lines.count) lines")
            XCTAssertFalse(logs.text.contains("sending to SRI"))
        }
    }

    /// A queued document with no signed XML (written outside the server: one
    /// numbered before comprobantes has none) is not sent and does not hold
    /// its claim: it is logged and let go until the longest backoff, and a
    /// signed one queued beside it is sent and decided meanwhile.
    func testAQueuedDocumentWithoutXMLIsLetGoAndTheOthersAreSent() async throws {
        try await run { _, tenant, sri in
            let bare = try tenant.queue(withoutXML: true)
            let signed = try tenant.queue()
            let logs = LogCapture()
            var settings = testSRISettings(url: sri.baseURL, tenants: [tenant.tenant.id])
            settings.retryMaxMilliseconds = 30_000
            let start = Date()
            try await withSender(settings, logs: logs) { _ in
                try await tenant.waitFor([signed], in: ["AUTHORIZED"])
                try await Task.sleep(for: .milliseconds(500))
            }
            let submission = try tenant.submission(bare)
            XCTAssertEqual(submission.status, "SIGNED")
            XCTAssertEqual(submission.attempts, 0, "no exchange")
            XCTAssertFalse(submission.leased, "its claim let go")
            XCTAssertGreaterThan(
                submission.nextAttemptAt ?? .distantPast, start.addingTimeInterval(25), "looked at again after the longest backoff")
            XCTAssertEqual(try tenant.outcomes(bare), [])
            let receptions = await sri.receptions(bare)
            XCTAssertEqual(receptions, 0)
            let said = logs.lines.withLockedValue { $0 }.filter { $0.contains("a queued document has no signed XML") }
            XCTAssertEqual(said.count, 1, "said once, not at every poll: \(said)")
            XCTAssertTrue(said.allSatisfy { $0.hasPrefix("error ") }, "at error level: \(said)")
        }
    }

    func testOneLogLinePerExchangeWithoutTheXML() async throws {
        try await run { _, tenant, sri in
            let key = try tenant.queue()
            let logs = LogCapture()
            try await withSender(testSRISettings(url: sri.baseURL, tenants: [tenant.tenant.id]), logs: logs) { _ in
                try await tenant.waitFor([key])
            }
            XCTAssertTrue(logs.text.contains("SRI_PRODUCTION_URL is not SRI's"), "a local SRI as production is named at start")
            let lines = logs.lines.withLockedValue { $0 }.filter { $0.contains("sri exchange") }
            XCTAssertEqual(lines.count, 2, lines.joined(separator: "\n"))
            let documentID = try TestDatabase.scalar("SELECT id FROM documents WHERE access_key = $1", [key], as: Int64.self)
            for line in lines {
                XCTAssertFalse(line.contains(key), "no access key (it holds the issuer's RUC) in logs: \(line)")
                XCTAssertTrue(
                    ["\"document_id\": \(documentID),", "\"document_id\": \(documentID)]"].contains { line.contains($0) }, line)
                XCTAssertTrue(line.contains("duration_ms"), line)
                XCTAssertTrue(line.contains(#""document_status": "#), "the document's status, apart from any HTTP status: \(line)")
                XCTAssertTrue(
                    ["\"tenant_id\": \(tenant.tenant.id),", "\"tenant_id\": \(tenant.tenant.id)]"].contains { line.contains($0) }, line)
                XCTAssertFalse(line.contains("<"), "no XML in logs: \(line)")
            }
        }
    }
}

/// The state machine alone (no database, no SRI).
final class SubmissionStateTests: XCTestCase {
    var settings: SRISettings {
        var settings = SRISettings()
        settings.retryBaseMilliseconds = 1_000
        settings.retryMaxMilliseconds = 300_000
        settings.authorizationDelayMilliseconds = 3_000
        return settings
    }

    func testOnlySRIsOwnHostsCountAsSRI() {
        XCTAssertTrue(SRISettings.isSRI(SRISettings().productionURL))
        XCTAssertTrue(SRISettings.isSRI(SRISettings().testURL))
        XCTAssertTrue(SRISettings.isSRI("https://cel.sri.gob.ec./comprobantes-electronicos-ws"))
        for url in [
            "http://cel.sri.gob.ec/comprobantes-electronicos-ws", "https://cel.sri.gob.ec.example.com/ws", "https://notsri.gob.ec/ws",
            "http://127.0.0.1:8090/comprobantes-electronicos-ws", "not a url",
        ] {
            XCTAssertFalse(SRISettings.isSRI(url), url)
        }
    }

    func testBackoffDoublesUpToTheMaximum() {
        XCTAssertEqual(
            [1, 2, 3, 4, 9, 10, 64].map { settings.backoffMilliseconds(streak: $0) },
            [1_000, 2_000, 4_000, 8_000, 256_000, 300_000, 300_000])
    }

    func testReceptionAnswers() {
        let received = Transition.after(.reception(.init(status: .received)), from: .signed, streak: 3, settings: settings, now: Date())
        XCTAssertEqual(received.status, .received)
        XCTAssertEqual(received.nextAttemptMilliseconds, 3_000)
        XCTAssertEqual(received.streak, 0)

        let only43and70 = ReceptionAnswer(
            status: .returned,
            comprobantes: [
                .init(accessKey: "k", messages: [SRIMessage(identifier: "43", message: "x"), SRIMessage(identifier: "70", message: "y")])
            ])
        let already = Transition.after(.reception(only43and70), from: .signed, streak: 0, settings: settings, now: Date())
        XCTAssertEqual(already.status, .received)
        XCTAssertEqual(already.outcome, "already_received")

        let mixed = ReceptionAnswer(
            status: .returned,
            comprobantes: [
                .init(accessKey: "k", messages: [SRIMessage(identifier: "43", message: "x"), SRIMessage(identifier: "35", message: "y")])
            ])
        let returned = Transition.after(.reception(mixed), from: .signed, streak: 0, settings: settings, now: Date())
        XCTAssertEqual(returned.status, .returned)
        XCTAssertNil(returned.nextAttemptMilliseconds)
        XCTAssertEqual(returned.messages?.map(\.identifier), ["43", "35"])
    }

    func testAnyAutorizadoWins() throws {
        let answer = AuthorizationAnswer(
            queriedAccessKey: "k", count: 2,
            authorizations: [
                .init(status: .notAuthorized, messages: [SRIMessage(identifier: "39", message: "FIRMA INVALIDA")]),
                .init(status: .authorized, number: "k", date: "2026-12-01T10:15:32-05:00", element: Array("<autorizacion/>".utf8)),
            ])
        let transition = Transition.after(.authorization(answer), from: .received, streak: 0, settings: settings, now: Date())
        XCTAssertEqual(transition.status, .authorized)
        XCTAssertEqual(transition.authorization?.number, "k")
        XCTAssertEqual(transition.authorization?.date, Date(timeIntervalSince1970: 1_796_138_132))
        XCTAssertNil(transition.nextAttemptMilliseconds)
    }

    /// A `fechaAutorizacion` no SRI could give (a year 300000 once made the
    /// bound timestamp trap; a year past 9999 cannot be read back) is taken
    /// as the moment the answer came; a plausible one is kept.
    func testAnImplausibleAuthorizationDateIsTakenAsNow() throws {
        let now = Date(timeIntervalSince1970: 1_796_138_200)
        for (date, expected) in [
            ("300000-01-01T00:00:00Z", now), ("-300000-01-01T00:00:00Z", now), ("10000-01-01T00:00:00Z", now),
            ("1999-12-31T23:59:59Z", now), ("2026-12-03T10:15:32-05:00", now),
            ("2026-12-01T10:15:32-05:00", Date(timeIntervalSince1970: 1_796_138_132)),
        ] {
            let answer = AuthorizationAnswer(
                queriedAccessKey: "k", count: 1,
                authorizations: [.init(status: .authorized, number: "k", date: date, element: Array("<autorizacion/>".utf8))])
            let transition = Transition.after(.authorization(answer), from: .received, streak: 0, settings: settings, now: now)
            XCTAssertEqual(transition.status, .authorized, date)
            XCTAssertEqual(transition.authorization?.date, expected, date)
        }
    }

    /// SRI's texts are kept at most as long as SRI's ever are: an answer within
    /// the size limit cannot store megabytes with the document and each
    /// exchange. An authorization number longer than any SRI gives is not kept.
    func testLongTextsOfAnAnswerAreClipped() {
        let huge = String(repeating: "x", count: 100_000)
        let message = SRIMessage(identifier: huge, message: huge, additionalInformation: huge, type: huge)
        XCTAssertLessThan(message.json.serialized.utf8.count, 3_000)
        XCTAssertEqual(message.json["message"]?.stringValue?.count, 500)
        XCTAssertTrue(message.json["additionalInfo"]?.stringValue?.hasSuffix("…") == true)
        // One Character of a million combining marks is clipped by its scalars.
        let marks = SRIMessage(identifier: "43", message: "a" + String(repeating: "\u{301}", count: 1_000_000))
        XCTAssertEqual(marks.json["message"]?.stringValue?.unicodeScalars.count, 500)
        let pending = ExchangeResult.authorization(
            .init(
                queriedAccessKey: "k", count: 1,
                authorizations: [.init(status: .inProcess, number: huge, date: huge, environment: huge, messages: [message])]))
        XCTAssertLessThan(pending.answerJSON?.serialized.utf8.count ?? .max, 4_000)
        let granted = AuthorizationAnswer(
            queriedAccessKey: "k", count: 1,
            authorizations: [.init(status: .authorized, number: huge, date: "2026-12-01T10:15:32-05:00", element: Array("<a/>".utf8))])
        let transition = Transition.after(.authorization(granted), from: .received, streak: 0, settings: settings, now: Date())
        XCTAssertEqual(transition.authorization?.number, "k", "the queried access key, not 100 000 characters")
    }

    /// `fechaAutorizacion` without an offset, or in SRI's older form, is Ecuador's time.
    func testAnAuthorizationDateWithoutOffsetIsEcuadorsTime() {
        let expected = Date(timeIntervalSince1970: 1_796_138_132)  // 2026-12-01T15:15:32Z
        for text in ["2026-12-01T10:15:32", "2026-12-01T10:15:32.000", "01/12/2026 10:15:32", "2026-12-01T15:15:32Z"] {
            XCTAssertEqual(Transition.parseDate(text), expected, text)
        }
        XCTAssertNil(Transition.parseDate("yesterday"))
    }

    /// Every form SRI's answers use, read as Foundation's ISO 8601 formatter
    /// reads the same text; dates that do not exist and anything after the
    /// text are refused (the authorization then takes the answer's moment).
    func testAuthorizationDatesAreReadAsFoundationReadsThem() throws {
        let utc = Date(timeIntervalSince1970: 1_796_138_132)  // 2026-12-01T15:15:32Z
        let cases: [(String, Date)] = [
            ("2026-12-01T10:15:32-05:00", utc), ("2026-12-01T10:15:32-0500", utc), ("2026-12-01T20:45:32+05:30", utc),
            ("2026-12-01T15:15:32.250Z", utc + 0.25), ("2026-12-01T10:15:32.5-05:00", utc + 0.5),
            ("2026-12-01T10:15:32.123456789", utc + 0.123456789), ("2024-02-29T00:00:00Z", Date(timeIntervalSince1970: 1_709_164_800)),
            ("01/01/2000 00:00:00", Date(timeIntervalSince1970: 946_702_800)),
        ]
        for (text, expected) in cases {
            let parsed = try XCTUnwrap(Transition.parseDate(text), text)
            XCTAssertEqual(parsed.timeIntervalSince1970, expected.timeIntervalSince1970, accuracy: 1e-6, text)
        }
        for text in [
            "", "2026-12-01", "2026-12-01T10:15", "2026-02-30T10:15:32Z", "2025-02-29T10:15:32Z", "2026-04-31T00:00:00Z",
            "2026-13-01T10:15:32Z", "2026-00-01T10:15:32Z", "2026-12-00T10:15:32Z", "2026-12-01T24:00:00Z",
            "2026-12-01T10:60:00Z", "2026-12-01T10:15:60Z", "2026-12-01T10:15:32+24:00", "2026-12-01T10:15:32+05:60",
            "2026-12-01T10:15:32.", "2026-12-01T10:15:32.1234567890Z", "2026-12-01T10:15:32Z ", "2026-12-01T10:15:32-05",
            "2026-12-01 10:15:32", "01/12/2026 10:15:32Z", "01/12/2026 10:15:32.5", "1/12/2026 10:15:32", "２026-12-01T10:15:32Z",
            "+2026-12-01T10:15:32Z", "2026-12-01t10:15:32z",
        ] {
            XCTAssertNil(Transition.parseDate(text), text)
        }
        // Against Foundation's own reading, over dates from 2000 to 2099 and offsets either side.
        let formatter = ISO8601DateFormatter()
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2_000 {
            let moment = Date(timeIntervalSince1970: Double(Int.random(in: 946_684_800..<4_102_444_800, using: &generator)))
            formatter.timeZone = TimeZone(secondsFromGMT: 60 * 15 * Int.random(in: -48...48, using: &generator))
            let text = formatter.string(from: moment)
            XCTAssertEqual(Transition.parseDate(text), formatter.date(from: text), text)
            XCTAssertEqual(Transition.parseDate(text), moment, text)
        }
    }

    /// The local SRI's `fechaAutorizacion` is Ecuador's time, as SRI writes it.
    func testTheLocalSRIWritesEcuadorsTime() {
        XCTAssertEqual(SRISimulator.ecuadorTimestamp(Date(timeIntervalSince1970: 1_796_138_132.75)), "2026-12-01T10:15:32-05:00")
        XCTAssertEqual(SRISimulator.ecuadorTimestamp(Date(timeIntervalSince1970: 946_702_800)), "2000-01-01T00:00:00-05:00")
        XCTAssertEqual(SRISimulator.ecuadorTimestamp(Date(timeIntervalSince1970: 946_702_799)), "1999-12-31T23:59:59-05:00")
    }

    /// The record keeps up to 50 authorizations and 50 messages in all, and counts the rest.
    func testTheRecordKeepsTheFirstEntriesOfALongAnswer() {
        func count(_ value: JSONValue?) -> Int? {
            if case .array(let items)? = value { return items.count }
            return nil
        }
        let messages = (0..<70).map { SRIMessage(identifier: "\($0)", message: "m") }
        let returned = ExchangeResult.reception(.init(status: .returned, comprobantes: [.init(accessKey: "k", messages: messages)]))
        XCTAssertEqual(count(returned.answerJSON?["messages"]), 50)
        XCTAssertEqual(returned.answerJSON?["messagesOmitted"], JSONValue(Int64(20)))
        let pending = (0..<60).map { _ in AuthorizationAnswer.Authorization(status: .inProcess, messages: messages) }
        let answer = ExchangeResult.authorization(.init(queriedAccessKey: "k", count: 60, authorizations: pending))
        XCTAssertEqual(count(answer.answerJSON?["autorizaciones"]), 50)
        XCTAssertEqual(answer.answerJSON?["autorizacionesOmitted"], JSONValue(Int64(10)))
        guard case .array(let items)? = answer.answerJSON?["autorizaciones"] else { return XCTFail("no autorizaciones") }
        XCTAssertEqual(count(items.first?["messages"]), 50)
        // 50 messages in all, across the authorizations: the rest only counted.
        XCTAssertEqual(items.map { count($0["messages"]) }, [50] + Array(repeating: 0, count: 49))
        XCTAssertEqual(items.last?["messagesOmitted"], JSONValue(Int64(70)))
        let long = SRIMessage(
            identifier: "1", message: String(repeating: "m", count: 500), additionalInformation: String(repeating: "i", count: 2_000))
        let heavy = (0..<50).map { _ in AuthorizationAnswer.Authorization(status: .inProcess, messages: Array(repeating: long, count: 50)) }
        let heavyJSON = ExchangeResult.authorization(.init(queriedAccessKey: "k", count: 50, authorizations: heavy)).answerJSON
        XCTAssertLessThan(heavyJSON?.serialized.utf8.count ?? .max, 200_000, "not 50 × 50 messages of 2.5 kB")
        XCTAssertNil(ExchangeResult.reception(.init(status: .received)).answerJSON?["messagesOmitted"])
    }

    func testAReceivedDocumentIsSentAgainEveryResendEveryExchangesWithoutADecision() {
        var settings = settings
        settings.resendEvery = 3
        XCTAssertEqual(
            (0...7).map { settings.service(for: .received, streak: $0) },
            [
                .authorization, .authorization, .authorization, .reception, .authorization, .authorization, .reception, .authorization,
            ])
        XCTAssertEqual(settings.service(for: .signed, streak: 1), .reception)
        settings.resendEvery = 0
        XCTAssertEqual(settings.service(for: .received, streak: 3), .authorization, "0: never")

        let now = Date()
        func resend(_ answer: ReceptionAnswer) -> Transition {
            Transition.after(.reception(answer), from: .received, streak: 3, settings: settings, now: now)
        }
        func returnedWith(_ identifier: String, _ message: String) -> ReceptionAnswer {
            ReceptionAnswer(
                status: .returned, comprobantes: [.init(accessKey: "k", messages: [SRIMessage(identifier: identifier, message: message)])])
        }
        let received = resend(ReceptionAnswer(status: .received))
        XCTAssertEqual(received.status, .received)
        XCTAssertEqual(received.outcome, "received")
        XCTAssertEqual(received.streak, 4, "the run goes on: no first-ask priority, its backoff kept")
        XCTAssertEqual(received.nextAttemptMilliseconds, settings.authorizationDelayMilliseconds)

        let registered = resend(returnedWith("43", "CLAVE ACCESO REGISTRADA"))
        XCTAssertEqual(registered.status, .received)
        XCTAssertEqual(registered.outcome, "already_received")
        XCTAssertNil(registered.messages, "the document keeps its messages")
        XCTAssertEqual(registered.streak, 4)
        XCTAssertEqual(registered.nextAttemptMilliseconds, settings.backoffMilliseconds(streak: 4))

        let returned = resend(returnedWith("58", "CERTIFICADO CADUCADO"))
        XCTAssertEqual(returned.status, .received, "SRI received this comprobante before: not RETURNED now")
        XCTAssertEqual(returned.outcome, "returned")
        XCTAssertEqual(returned.messages?.map(\.identifier), ["58"], "why it waits, on the document")
        XCTAssertEqual(returned.streak, 4)
        XCTAssertNotNil(returned.nextAttemptMilliseconds)
    }

    func testPendingAndFailuresBackOffAndKeepTheStatus() {
        let pending = Transition.after(
            .authorization(.init(queriedAccessKey: "k", count: 0, authorizations: [])), from: .received, streak: 2, settings: settings,
            now: Date())
        XCTAssertEqual(pending.status, .received)
        XCTAssertEqual(pending.outcome, "pending")
        XCTAssertEqual(pending.nextAttemptMilliseconds, 4_000)
        XCTAssertNil(pending.lastError)

        let failures: [SRITransportError] = [
            .connection("refused"), .timeout(milliseconds: 20_000), .httpStatus(503),
            .soapFault(code: "soap:Server", message: "x", httpStatus: 500),
            .unparseable("not XML"),
        ]
        for error in failures {
            let failed = Transition.after(.failed(error), from: .signed, streak: 0, settings: settings, now: Date())
            XCTAssertEqual(failed.status, .signed)
            XCTAssertEqual(failed.lastError, error.description)
            XCTAssertEqual(failed.streak, 1)
            XCTAssertEqual(failed.nextAttemptMilliseconds, 1_000)
        }
    }
}
