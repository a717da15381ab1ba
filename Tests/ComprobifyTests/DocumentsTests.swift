import Foundation
import HTTPTypes
import NIOConcurrencyHelpers
import Postgres
import TestSupport
import XCTest

@testable import Comprobify

final class DocumentsTests: XCTestCase {
    /// A page filtered by type is its own statement, whose generic plan
    /// (PostgreSQL may switch a prepared statement to one after five runs)
    /// can read documents_by_issuer_and_type: one statement for both cases,
    /// `($n IS NULL OR d.document_type = $n)`, could only filter the issuer's
    /// documents, all of them for a type it has few of. A page filtered by a
    /// submission's status is planned with its values every time.
    func testListStatementsKeepTheirIndexesInGenericPlans() throws {
        let byType = DocumentsStore.page(issuer: 1, after: 0, limit: 50, documentType: "04", status: nil).query
        XCTAssertFalse(byType.plannedEachTime)
        let typePlan = try genericPlan(byType, arguments: "1000000, 1, 0, '04', NULL, 50")
        XCTAssertTrue(typePlan.contains("documents_by_issuer_and_type"), typePlan)
        // An environment's documents: through their own index, the environment
        // in its condition (a filter would walk the other environment's first).
        let byEnvironment = DocumentsStore.page(issuer: 1, after: 0, limit: 50, documentType: nil, status: nil, environment: .production)
        XCTAssertFalse(byEnvironment.query.plannedEachTime)
        let environmentPlan = try genericPlan(byEnvironment.query, arguments: "1000000, 1, 0, NULL, NULL, 'production', 50")
        XCTAssertTrue(environmentPlan.contains("documents_by_issuer_and_environment"), environmentPlan)
        let condition = environmentPlan.split(separator: "\n").first { $0.contains("Index Cond:") } ?? ""
        XCTAssertTrue(condition.contains("environment"), environmentPlan)
        let byStatus = DocumentsStore.page(issuer: 1, after: 0, limit: 50, documentType: nil, status: "RETURNED").query
        XCTAssertTrue(byStatus.plannedEachTime)
        XCTAssertFalse(DocumentsStore.page(issuer: 1, after: 0, limit: 50, documentType: nil, status: "LEGACY").query.plannedEachTime)
    }

    /// The reads of a list that may take long wait for a connection of their
    /// own (`PostgresQuery.runsAlone`): on a shared one, every read sent
    /// behind them, another tenant's included, would wait for them. A page of
    /// documents (by any filter), a further chunk of a streamed page, a page
    /// of a webhook's events and its deliveries; the short reads of the API
    /// share.
    func testLongListReadsShareNoConnection() {
        for status in [nil, "RETURNED", "LEGACY"] {
            for type in [nil, "01"] {
                XCTAssertTrue(
                    DocumentsStore.page(issuer: 1, after: 0, limit: 200, documentType: type, status: status).query.runsAlone,
                    "\(type ?? "any type"), \(status ?? "any status")")
            }
        }
        XCTAssertTrue(DocumentsStore.byIDs(issuer: 1, ids: [1, 2]).query.runsAlone)
        for status in [nil, "pending", "delivered", "failed"] {
            XCTAssertTrue(WebhooksStore.events(endpoint: 1, status: status, after: 0, limit: 100).query.runsAlone)
        }
        XCTAssertTrue(WebhooksStore.attempts(endpoint: 1, limit: 100).query.runsAlone)
        XCTAssertFalse(DocumentsStore.byAccessKey(issuer: 1, accessKey: String(repeating: "1", count: 49)).query.runsAlone)
        XCTAssertFalse(WebhooksStore.exists(1).query.runsAlone)
    }

    /// A credit note finds the factura it names by the number's sequential,
    /// through documents_sequential_unique (migration 0064 dropped the index
    /// on numbers), not by reading every factura of the issuer. Planned
    /// against session copies of the two tables (their indexes, 20 thousand
    /// facturas of one issuer, analyzed): on the test database's few rows a
    /// plan does not tell one index from another.
    func testACreditNotesFacturaIsFoundThroughItsSequential() throws {
        let connection = try Connection(conninfo: TestDatabase.ownerURL)
        try connection.execute(
            script: """
                CREATE TEMP TABLE documents (LIKE public.documents INCLUDING DEFAULTS INCLUDING INDEXES);
                CREATE TEMP TABLE document_submissions (LIKE public.document_submissions INCLUDING DEFAULTS INCLUDING INDEXES);
                INSERT INTO documents (tenant_id, id, issuer_id, document_type, environment, sequential, number, access_key, issue_date)
                SELECT 1, g, 1, '01', 'sandbox', g, '001-002-' || lpad(g::text, 9, '0'), k || sri_check_digit(k), '2026-03-01'
                  FROM generate_series(1, 20000) g,
                       LATERAL (SELECT '010320260117900123450011001002' || lpad(g::text, 9, '0') || '123456781' AS k) x;
                INSERT INTO document_submissions (tenant_id, document_id, environment) SELECT 1, id, 'sandbox' FROM documents;
                ANALYZE documents; ANALYZE document_submissions;
                SET plan_cache_mode = force_generic_plan; SET max_parallel_workers_per_gather = 0
                """)
        for (name, query) in [
            ("factura", DocumentsStore.factura(issuer: 1, environment: .sandbox, number: "001-002-000000007")),
            ("any_factura", DocumentsStore.anyFactura(issuer: 1, environment: .sandbox, number: "001-002-000000007")),
        ] {
            try connection.execute(script: "PREPARE \(name) AS \(query.sql)")
            let plan = try connection.query("EXPLAIN (COSTS OFF) EXECUTE \(unescaped: name)(1, 'sandbox', 7, '001-002-000000007')").rows
                .map { try $0.decode(String.self, at: 0) }.joined(separator: "\n")
            // The copy's index on (tenant, issuer, type, environment, sequential)
            // has a name of its own: its condition shows which it is.
            let documentsScan = plan.split(separator: "\n").drop { !$0.contains("on documents d") }.dropFirst().first ?? ""
            XCTAssertTrue(
                documentsScan.contains("Index Cond:") && documentsScan.contains("(sequential)::integer = $3"), "\(documentsScan)\n\(plan)")
            let found = try connection.query("EXECUTE \(unescaped: name)(1, 'sandbox', 7, '001-002-000000007')").rows
            XCTAssertEqual(found.count, 1, "factura 001-002-000000007 is found")
            let other = try connection.query("EXECUTE \(unescaped: name)(1, 'sandbox', 7, '001-003-000000007')").rows
            XCTAssertEqual(other.count, 0, "the number is compared, not only its sequential")
        }
        XCTAssertEqual(DocumentsStore.sequential(of: "001-002-000000007"), 7)
        XCTAssertEqual(DocumentsStore.sequential(of: "001-002-999999999"), 999_999_999)
    }

    /// A status filter reads from the page's cursor and the issuer's first
    /// document on, not the tenant's whole list of that status, and LEGACY
    /// only the documents without XML. Planned as the app reads (its own
    /// session copies of the two tables, under a policy like the tables'),
    /// 20 thousand AUTHORIZED documents of a large issuer, then 100 of a
    /// small one, 20 thousand of a third with 10 LEGACY ones among them.
    /// Each page's scans may read a few pages' worth of rows, never the rest.
    func testAStatusPageReadsNeitherTheTenantsOtherIssuersNorEarlierPages() throws {
        let connection = try Connection(conninfo: TestDatabase.appURL)
        try connection.execute(
            script: """
                SELECT set_config('app.tenant_id', '1', false);
                -- The copies in the place of the tables (the role's path searches pg_temp last);
                -- their 40 thousand rows without the role's statement timeout (a loaded machine).
                SET search_path = pg_temp, pg_catalog, public; SET statement_timeout = 0;
                CREATE TEMP TABLE documents (LIKE public.documents INCLUDING DEFAULTS INCLUDING INDEXES);
                CREATE TEMP TABLE document_submissions (LIKE public.document_submissions INCLUDING DEFAULTS INCLUDING INDEXES);
                ALTER TABLE documents ENABLE ROW LEVEL SECURITY; ALTER TABLE documents FORCE ROW LEVEL SECURITY;
                ALTER TABLE document_submissions ENABLE ROW LEVEL SECURITY; ALTER TABLE document_submissions FORCE ROW LEVEL SECURITY;
                CREATE POLICY own ON documents USING (tenant_id = current_tenant_id());
                CREATE POLICY own ON document_submissions USING (tenant_id = current_tenant_id());
                INSERT INTO documents (tenant_id, id, issuer_id, document_type, environment, sequential, number, access_key, issue_date, xml)
                SELECT 1, g, CASE WHEN g <= 20000 THEN 1 WHEN g <= 20100 THEN 2 ELSE 3 END, '01', 'sandbox', g,
                       '001-002-' || lpad(g::text, 9, '0'), k || sri_check_digit(k),
                       '2026-03-01', CASE WHEN g > 20100 AND g % 2000 = 0 THEN NULL ELSE '\\x00'::bytea END
                  FROM generate_series(1, 40100) g,
                       LATERAL (SELECT '010320260117900123450011001002' || lpad(g::text, 9, '0') || '123456781' AS k) x;
                INSERT INTO document_submissions (tenant_id, document_id, environment, status)
                SELECT 1, id, 'sandbox', 'AUTHORIZED' FROM documents WHERE xml IS NOT NULL;
                ANALYZE documents; ANALYZE document_submissions;
                SET max_parallel_workers_per_gather = 0
                """)
        func mostRowsAScanRead(_ issuer: Int64, after: Int64, status: String) throws -> (rows: Int, plan: String, found: Int) {
            let query = DocumentsStore.page(issuer: issuer, after: after, limit: 50, documentType: nil, status: status).query
            let arguments = query.binds.map { bind -> String in
                switch bind {
                case let value as Int64: return String(value)
                case let value as Int: return String(value)
                case let value as String: return "'\(value)'"
                default: return "NULL"
                }
            }
            try connection.execute(script: "DEALLOCATE ALL; PREPARE page AS \(query.sql)")
            let plan = try connection.query(
                "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) EXECUTE page(\(unescaped: arguments.joined(separator: ", ")))",
                prepared: false
            ).rows.map { try $0.decode(String.self, at: 0) }.joined(separator: "\n")
            let scans = plan.split(separator: "\n").filter { $0.contains("Scan") }
            let rows = scans.compactMap { line -> Int? in
                guard let range = line.range(of: "actual rows=") else { return nil }
                return Int(line[range.upperBound...].prefix { $0.isNumber })
            }
            let found = try connection.query("EXECUTE page(\(unescaped: arguments.joined(separator: ", ")))", prepared: false).rows.count
            return (rows.max() ?? 0, plan, found)
        }
        let small = try mostRowsAScanRead(2, after: 0, status: "AUTHORIZED")
        XCTAssertEqual(small.found, 50)
        XCTAssertLessThan(small.rows, 500, small.plan)
        let deep = try mostRowsAScanRead(1, after: 19_000, status: "AUTHORIZED")
        XCTAssertEqual(deep.found, 50)
        XCTAssertLessThan(deep.rows, 500, deep.plan)
        let legacy = try mostRowsAScanRead(3, after: 0, status: "LEGACY")
        XCTAssertEqual(legacy.found, 10)
        XCTAssertLessThan(legacy.rows, 500, legacy.plan)
    }

    func testIssuedDocumentsHaveTheSRILayout() async throws {
        try await TestServer.run { server in
            let tenant = try await server.signUp()
            let issuer = try await server.createIssuer(tenant.key, ruc: "1790012345001", establishment: "002", emissionPoint: "015")
            let reply = try await server.issue(
                tenant.key, issuer: issuer,
                body: Bodies.creditNote(facturaDate: "2026-02-27", metadata: #"{"total": 12.50, "items": [{"name": "Café ☕"}], "n": null}"#)
                    .replacingOccurrences(of: #""documentType": "04","#, with: #""documentType": "04", "issueDate": "2026-03-01","#)
            )
            XCTAssertEqual(reply.status, 201, reply.text)
            XCTAssertEqual(try reply.int("document", "sequential"), 1)
            XCTAssertEqual(try reply.string("document", "number"), "002-015-000000001")
            XCTAssertEqual(try reply.string("document", "environment"), "sandbox")
            XCTAssertEqual(try reply.string("document", "issueDate"), "2026-03-01")
            XCTAssertEqual(try reply.int("document", "issuerId"), issuer)
            XCTAssertEqual(try reply.string("document", "status"), "SIGNED")
            let key = try reply.string("document", "accessKey")
            XCTAssertTrue(AccessKey.isValid(key), key)
            XCTAssertTrue(key.hasPrefix("01032026" + "04" + "1790012345001" + "1" + "002015" + "000000001"), key)
            XCTAssertTrue(key.dropFirst(47).hasPrefix("1"), "emission type 1")
            let metadata = try XCTUnwrap(reply.value(["document", "metadata"]))
            XCTAssertEqual(metadata["total"], .number("12.50"))
            XCTAssertEqual(metadata["items"], .array([.object([("name", "Café ☕")])]))
            XCTAssertEqual(metadata["n"], .null)

            let today = try await server.issue(tenant.key, issuer: issuer)
            XCTAssertEqual(
                try today.string("document", "issueDate"), CalendarDate.todayInEcuador(now: Date().timeIntervalSince1970).description)
            XCTAssertEqual(try today.int("document", "sequential"), 1, "each document type has its own counter")
            // null is today too, as an absent issueDate.
            let nullDate = try await server.issue(tenant.key, issuer: issuer, body: Bodies.factura(extra: #""issueDate": null"#))
            XCTAssertEqual(nullDate.status, 201, nullDate.text)
            XCTAssertEqual(
                try nullDate.string("document", "issueDate"), CalendarDate.todayInEcuador(now: Date().timeIntervalSince1970).description)

            let fetched = try await server.call(.get, "/v1/documents/\(key)", key: tenant.key, issuer: issuer)
            XCTAssertEqual(fetched.status, 200)
            XCTAssertEqual(fetched.value(["document"]), reply.value(["document"]))
        }
    }

    func testSixtyFourConcurrentIssuesAreGaplessAndUnique() async throws {
        // 64 at once on one counter.
        try await TestServer.run(configure: {
            $0.poolSize = 8
            $0.waitLongForTheCounter()
        }) { server in
            let tenant = try await server.signUp()
            let issuer = try await server.createIssuer(tenant.key)
            let replies = try await concurrently(64) { _ in try await server.issue(tenant.key, issuer: issuer) }
            XCTAssertEqual(replies.map(\.status), Array(repeating: 201, count: 64))
            let sequentials = try replies.map { try $0.int("document", "sequential") }.sorted()
            XCTAssertEqual(sequentials, Array(1...64))
            for reply in replies { XCTAssertTrue(AccessKey.isValid(try reply.string("document", "accessKey"))) }
            XCTAssertEqual(Set(try replies.map { try $0.string("document", "accessKey") }).count, 64)
            // Signed ahead of the lock or under it, each XML is signed with its own number.
            for reply in replies { try await ComprobantesTests.assertSignedAsNumbered(server, tenant.key, issuer: issuer, reply) }
        }
    }

    /// One statement stores consecutive facturas of a counter: they store
    /// only with exactly the numbers the counter gives next, in order, each
    /// with its submission row, and answer as the document reads back. Any
    /// failure stores none of them and leaves the counter where it was.
    func testFacturasStoredTogetherTakeTheirNumbersAtOnceOrNotAtAll() async throws {
        try await TestServer.run { server in
            let tenant = try await server.signUp()
            let issuer = try await server.createIssuer(tenant.key)
            let first = try await server.issue(tenant.key, issuer: issuer)
            XCTAssertEqual(try first.int("document", "sequential"), 1)
            let pool = ConnectionPool(configuration: .init(conninfo: TestDatabase.appURL, size: 2))
            let database = Database(pool: pool)
            let request = try ComprobanteRequest(
                Input.parse(Array(Bodies.factura(metadata: #"{"batch": true}"#).utf8), allowEmpty: false),
                today: .todayInEcuador(now: Date().timeIntervalSince1970))
            let comprobante = request.comprobante
            let owner = try Connection(conninfo: TestDatabase.ownerURL)
            func counter() throws -> Int {
                try owner.query(
                    "SELECT next_sequential FROM sequentials WHERE issuer_id = \(issuer) AND document_type = '01'"
                )[0].decode(Int.self, at: 0)
            }
            func stored() throws -> [Int] {
                try owner.query(
                    """
                    SELECT d.sequential FROM documents d JOIN document_submissions s ON s.tenant_id = d.tenant_id AND s.document_id = d.id
                     WHERE d.issuer_id = \(issuer) AND s.status = 'SIGNED' ORDER BY d.id
                    """
                ).rows.map { try $0.decode(Int.self, at: 0) }
            }
            // Stores `sequentials` together, with `metadata` (one each, the request's by default).
            func storeTogether(_ sequentials: [Int], metadata: [String]? = nil) async throws -> [JSONValue] {
                let metadata = metadata ?? sequentials.map { _ in request.metadata }
                return try await database.transaction(forTenantID: tenant.id, prologue: [ResolvedIssuer.lookup(issuer).query]) {
                    transaction, results in
                    let found = try XCTUnwrap(try ResolvedIssuer.lookup(issuer).decode(results[0]))
                    let parts = AccessKey.Parts(
                        issueDate: comprobante.issueDate, documentType: "01", ruc: found.ruc, environment: found.environment,
                        establishment: found.establishment, emissionPoint: found.emissionPoint)
                    let documents = zip(sequentials, metadata).map { sequential, metadata in
                        DocumentsStore.Signed(
                            comprobante: comprobante, body: DocumentBody.json(comprobante), sequential: sequential,
                            accessKey: AccessKey.make(parts, sequential: sequential, numericCode: AccessKey.randomNumericCode()),
                            xml: Array("<factura/>".utf8), metadata: metadata, modifiedDocumentID: nil)
                    }
                    var answered: [Bool] = []
                    defer { XCTAssertEqual(answered.count, 1, "the counter's answer is reported once") }
                    return try DocumentsStore.store(transaction, issuer: found, together: documents) { answered.append($0) }
                }
            }
            XCTAssertEqual(try counter(), 2)
            let answers = try await storeTogether([2, 3, 4])
            XCTAssertEqual(try counter(), 5, "three numbers taken at once")
            XCTAssertEqual(try stored(), [1, 2, 3, 4], "in the order of their numbers, each with its submission")
            XCTAssertEqual(answers.map { $0["sequential"] }, [.number("2"), .number("3"), .number("4")])
            for answer in answers {
                XCTAssertEqual(answer["status"], .string("SIGNED"))
                guard case .string(let accessKey) = answer["accessKey"] else { return XCTFail("no access key in \(answer)") }
                let fetched = try await server.call(.get, "/v1/documents/\(accessKey)", key: tenant.key, issuer: issuer)
                XCTAssertEqual(
                    fetched.value(["document"]), try JSONParser.parse(Array(answer.serialized.utf8)),
                    "the answer is the document as it reads back")
            }
            // Numbers the counter does not give next: nothing stored, the counter unmoved.
            for numbers in [[6, 7], [4, 5], [3, 4, 5]] {
                do {
                    _ = try await storeTogether(numbers)
                    XCTFail("\(numbers) stored with the counter at 5")
                } catch is DocumentsStore.ForecastMissed {}
                XCTAssertEqual(try counter(), 5)
            }
            // A statement that fails (the column refuses the second document's
            // metadata, which the request's checks never let through) stores none.
            do {
                _ = try await storeTogether([5, 6], metadata: ["{}", "[1]"])
                XCTFail("metadata that is not an object stored")
            } catch let error as PostgresError {
                XCTAssertEqual(error.constraint, "document_metadata_is_object", "\(error)")
            }
            XCTAssertEqual(try counter(), 5)
            XCTAssertEqual(try stored(), [1, 2, 3, 4])
            _ = try await storeTogether([5, 6, 7, 8])
            XCTAssertEqual(try counter(), 9)
            XCTAssertEqual(try stored(), Array(1...8))
            await pool.shutdown()
        }
    }

    /// Under a burst on one counter, facturas signed while the one ahead of
    /// them commits are stored together with the next: each request still
    /// gets its own number, gapless, in a comprobante signed with it. A second
    /// process issuing on the same counter at once (its numbers make this
    /// one's guesses miss, and documents offered together store none) changes
    /// none of that.
    func testABurstOnOneCounterIsStoredTogetherAndStaysGapless() async throws {
        // Every answer's XML is read back: no rate limit. Bursts of 40 and 60
        // on one counter.
        let configure: @Sendable (inout Configuration) -> Void = {
            $0.poolSize = 16
            $0.rateLimitPerKey = 0
            $0.waitLongForTheCounter()
        }
        try await TestServer.run(configure: configure) { first in
            try await TestServer.run(configure: configure) { second in
                let tenant = try await first.signUp()
                let issuer = try await first.createIssuer(tenant.key)
                try await first.issueUntilOneTrip(tenant.key, issuer: issuer)
                // This test process's count, from /metrics (both servers share it).
                func storedTogether() async throws -> Double { try await first.metric("documents_stored_together_total") }
                let before = try await storedTogether()
                var replies: [Reply] = []
                var bursts = 0
                // Each request's own metadata: each answer must be its own request's document.
                func burst(_ count: Int, from: Int, _ server: @escaping @Sendable (Int) -> TestServer) async throws -> [Reply] {
                    try await concurrently(count) { index in
                        try await server(index).issue(
                            tenant.key, issuer: issuer, body: Bodies.factura(metadata: #"{"request": \#(from + index)}"#))
                    }
                }
                while try await storedTogether() == before, bursts < 5 {
                    replies += try await burst(40, from: replies.count) { _ in first }
                    bursts += 1
                }
                let together = try await storedTogether() - before
                XCTAssertGreaterThan(together, 0, "none stored together in \(bursts) bursts of 40")
                replies += try await burst(60, from: replies.count) { $0.isMultiple(of: 3) ? second : first }
                XCTAssertEqual(replies.map(\.status), Array(repeating: 201, count: replies.count))
                for (index, reply) in replies.enumerated() {
                    XCTAssertEqual(reply.value(["document", "metadata", "request"]), .number("\(index)"), "answer \(index)")
                }
                let sequentials = try replies.map { try $0.int("document", "sequential") }
                XCTAssertEqual(sequentials.sorted(), Array(11...Int64(10 + replies.count)))
                for (index, reply) in replies.enumerated() {
                    let accessKey = try reply.string("document", "accessKey")
                    let sequential = sequentials[index]
                    XCTAssertEqual(Int(accessKey.dropFirst(30).prefix(9)), Int(sequential), "the access key carries the sequential")
                    let xml = try await first.call(.get, "/v1/documents/\(accessKey)/xml", key: tenant.key, issuer: issuer)
                    XCTAssertEqual(xml.status, 200, xml.text)
                    XCTAssertTrue(xml.text.contains("<claveAcceso>\(accessKey)</claveAcceso>"), "document \(sequential)")
                    XCTAssertTrue(
                        xml.text.contains("<secuencial>\(AccessKey.pad(Int(sequential), 9))</secuencial>"), "document \(sequential)")
                    if index.isMultiple(of: 10) {
                        XCTAssertNil(try IndependentCheck.schemaErrors(Array(xml.text.utf8), documentType: "01"))
                        XCTAssertNil(try IndependentCheck.signatureErrors(Array(xml.text.utf8), root: "factura"))
                    }
                }
                let owner = try Connection(conninfo: TestDatabase.ownerURL)
                let rows = try owner.query(
                    """
                    SELECT count(*), count(s.document_id) FROM documents d
                      LEFT JOIN document_submissions s ON s.tenant_id = d.tenant_id AND s.document_id = d.id
                     WHERE d.issuer_id = \(issuer)
                    """)
                XCTAssertEqual(try rows[0].decode(Int.self, at: 0), 10 + replies.count)
                XCTAssertEqual(try rows[0].decode(Int.self, at: 1), 10 + replies.count, "each document has its submission")
            }
        }
    }

    /// A server whose issuer has issued 1 to 10 (so the next facturas go in one
    /// round trip), its factura counter's row held by `owner` (a transaction
    /// of the owner's), and six facturas sent at once (`burst`, each with its
    /// index as metadata `request`): the first's statement waits for the row,
    /// the others for their turns, as long as the row is held.
    private func withSixFacturasBehindAHeldCounter(
        logs: LogCapture? = nil,
        _ body: @escaping @Sendable (TestServer, TestServer.Tenant, Int64, Connection, Task<[Reply], any Error>) async throws -> Void
    ) async throws {
        let configure: @Sendable (inout Configuration) -> Void = {
            $0.poolSize = 16
            $0.issuingTurnWait = 30
        }
        try await TestServer.run(configure: configure, logs: logs) { server in
            let tenant = try await server.signUp()
            let issuer = try await server.createIssuer(tenant.key)
            try await server.issueUntilOneTrip(tenant.key, issuer: issuer)
            let owner = try Connection(conninfo: TestDatabase.ownerURL)
            try owner.query("BEGIN")
            try owner.query("SELECT 1 FROM sequentials WHERE issuer_id = \(issuer) AND document_type = '01' FOR UPDATE")
            let burst = Task {
                try await concurrently(6) { index in
                    try await server.issue(tenant.key, issuer: issuer, body: Bodies.factura(metadata: #"{"request": \#(index)}"#))
                }
            }
            try await body(server, tenant, issuer, owner, burst)
        }
    }

    /// Facturas offered together that the counter gives other numbers to
    /// store none, and each request issues again on its own: here the
    /// counter's row is held by another session while the first request's
    /// statement waits for it and the others queue behind, signed ahead; that
    /// session then takes two numbers itself, the first's and the second's
    /// guesses. Every request still answers 201 with its own document,
    /// gapless from there, signed as numbered.
    func testFacturasOfferedTogetherThatMissIssueAgainAlone() async throws {
        let logs = LogCapture()
        try await withSixFacturasBehindAHeldCounter(logs: logs) { server, tenant, issuer, owner, burst in
            // All six sign ahead as 11 to 16; the first's statement waits for the
            // row, the rest for their turns. The second's turn takes the four
            // offers behind it: 12 to 16, which the counter no longer gives.
            // The first's statement waits for the row (seen, whatever the
            // machine's load); then time for the others to sign and queue.
            XCTAssertNotNil(TestDatabase.sessionBlocked(by: owner.backendPID), "a statement waits for the counter's row")
            try await Task.sleep(for: .seconds(2))
            try owner.query(
                "UPDATE sequentials SET next_sequential = next_sequential + 2 WHERE issuer_id = \(issuer) AND document_type = '01'")
            try owner.query("COMMIT")
            let replies = try await burst.value
            XCTAssertEqual(replies.map(\.status), Array(repeating: 201, count: 6), replies.map(\.text).joined(separator: "\n"))
            for (index, reply) in replies.enumerated() {
                XCTAssertEqual(reply.value(["document", "metadata", "request"]), .number("\(index)"))
                try await ComprobantesTests.assertSignedAsNumbered(server, tenant.key, issuer: issuer, reply)
            }
            XCTAssertEqual(
                try replies.map { try $0.int("document", "sequential") }.sorted(), Array(13...18), "11 and 12 went to the other session")
            let alone = logs.text.components(separatedBy: "the documents sent together were not stored: issuing alone").count - 1
            // Five when all had signed by then; a request still signing leads the next batch, or goes alone.
            XCTAssertGreaterThanOrEqual(alone, 2, "the second's turn took offers behind it, and none stored")
        }
    }

    /// Facturas stored together whose connection breaks while their statement
    /// waits for the counter's row: the server cannot know whether the
    /// statement and COMMIT it sent ran, so every request of the statement
    /// fails alike, as one document alone would, and none is issued again
    /// (here nothing ran: the backends are ended while they wait). The first
    /// request's statement, alone, is ended the same way; the second's turn
    /// then takes the offers queued behind it. Nothing is stored, no number
    /// is taken, and the next factura takes 11.
    func testFacturasStoredTogetherWhoseConnectionBreaksFailAlikeAndTakeNoNumber() async throws {
        try await withSixFacturasBehindAHeldCounter { server, tenant, issuer, owner, burst in
            // Ends the backend whose statement waits for the counter's row, once there is one.
            let watcher = try Connection(conninfo: TestDatabase.ownerURL)
            func endTheWaitingStatement() async throws {
                // Those blocked by this test's hold on the row (tests running beside it hold rows of their own).
                let waiting: PostgresQuery = """
                    SELECT pid FROM pg_stat_activity
                     WHERE usename = 'comprobify_app' AND \(owner.backendPID) = ANY (pg_blocking_pids(pid))
                    """
                for _ in 0..<200 {
                    let pids = try watcher.query(waiting).rows.map { try $0.decode(Int64.self, at: 0) }
                    if let pid = pids.first {
                        XCTAssertEqual(pids.count, 1, "one statement at a time waits for the row: the others wait for their turns")
                        try watcher.query("SELECT pg_terminate_backend(\(pid))")
                        // Gone once PostgreSQL has ended it.
                        while try watcher.query("SELECT 1 FROM pg_stat_activity WHERE pid = \(pid)").rows.count > 0 {
                            try await Task.sleep(for: .milliseconds(10))
                        }
                        return
                    }
                    try await Task.sleep(for: .milliseconds(20))
                }
                XCTFail("no statement waited for the counter's row")
            }
            // All six sign ahead as 11 to 16; the first's statement waits for the
            // row, the rest for their turns, offering their documents. Once the
            // first's ends, the second's turn takes the four offers behind it.
            try await Task.sleep(for: .seconds(2))
            try await endTheWaitingStatement()
            try await endTheWaitingStatement()
            try owner.query("ROLLBACK")
            let replies = try await burst.value
            let failed = replies.filter { $0.status != 201 }
            XCTAssertGreaterThanOrEqual(failed.count, 3, "the first alone and at least two stored together failed")
            for reply in failed {
                // Each statement went with its COMMIT: the client is told the document may have been issued.
                reply.assertProblem(503, "SERVICE_UNAVAILABLE")
                XCTAssertNil(reply.headers[.retryAfter], "not an invitation to send it again as it was")
                XCTAssertEqual(reply.json?["detail"], .string(APIError.commitUncertain.detail), reply.text)
            }
            // Whatever the second's turn did not take issues once the row is free, from 11 on.
            let issued = replies.filter { $0.status == 201 }
            XCTAssertEqual(try issued.map { try $0.int("document", "sequential") }.sorted(), Array(11..<11 + Int64(issued.count)))
            let rows = try owner.query(
                """
                SELECT count(*), count(s.document_id) FROM documents d
                  LEFT JOIN document_submissions s ON s.tenant_id = d.tenant_id AND s.document_id = d.id
                 WHERE d.issuer_id = \(issuer)
                """)
            XCTAssertEqual(try rows[0].decode(Int.self, at: 0), 10 + issued.count, "no failed request stored its document")
            XCTAssertEqual(try rows[0].decode(Int.self, at: 1), 10 + issued.count)
            let next = try await server.issue(tenant.key, issuer: issuer)
            XCTAssertEqual(try next.int("document", "sequential"), 11 + Int64(issued.count), next.text)
            try await ComprobantesTests.assertSignedAsNumbered(server, tenant.key, issuer: issuer, next)
        }
    }

    /// Two processes issue on one counter, each foreseeing numbers from those
    /// it took: a guess misses whenever the other process took that number,
    /// and the request issues again. Every document is stored once, gapless,
    /// signed with its own number.
    func testTwoProcessesOnOneCounterStayGaplessAndSignedAsNumbered() async throws {
        // 40 at once on one counter below.
        let patient: @Sendable (inout Configuration) -> Void = { $0.waitLongForTheCounter() }
        try await TestServer.run(configure: patient) { first in
            try await TestServer.run(configure: patient) { second in
                let tenant = try await first.signUp()
                let issuer = try await first.createIssuer(tenant.key)
                func missed() async throws -> Double { try await first.metric(#"documents_signed_ahead_total{outcome="miss"}"#) }
                let missedBefore = try await missed()
                // In turn: each process foresees the number the other has just taken.
                for (expected, server) in [(1, first), (2, second), (3, first), (4, second)] {
                    let reply = try await server.issue(tenant.key, issuer: issuer)
                    XCTAssertEqual(reply.status, 201, reply.text)
                    XCTAssertEqual(try reply.int("document", "sequential"), Int64(expected))
                }
                let missedAfter = try await missed()
                XCTAssertEqual(missedAfter - missedBefore, 2, "3 was foreseen as 2 and 4 as 3")
                // At once, from both.
                let replies = try await concurrently(40) { index in
                    try await (index.isMultiple(of: 2) ? first : second).issue(tenant.key, issuer: issuer)
                }
                XCTAssertEqual(replies.map(\.status), Array(repeating: 201, count: 40))
                XCTAssertEqual(try replies.map { try $0.int("document", "sequential") }.sorted(), Array(5...44))
                for reply in replies { try await ComprobantesTests.assertSignedAsNumbered(first, tenant.key, issuer: issuer, reply) }
            }
        }
    }

    func testCountersOfIssuersAndTypesAreIndependentUnderConcurrency() async throws {
        try await TestServer.run(configure: { $0.poolSize = 8 }) { server in
            let tenant = try await server.signUp()
            let issuers = [
                try await server.createIssuer(tenant.key, emissionPoint: "001"),
                try await server.createIssuer(tenant.key, emissionPoint: "002"),
            ]
            let combos = issuers.flatMap { issuer in ["01", "04"].map { (issuer, $0) } }
            let replies = try await concurrently(48) { index in
                let (issuer, type) = combos[index % combos.count]
                return try await server.issue(tenant.key, issuer: issuer, type: type)
            }
            var seen: [String: [Int64]] = [:]
            for reply in replies {
                XCTAssertEqual(reply.status, 201, reply.text)
                let key = "\(try reply.int("document", "issuerId"))/\(try reply.string("document", "documentType"))"
                seen[key, default: []].append(try reply.int("document", "sequential"))
            }
            XCTAssertEqual(seen.count, 4)
            for (_, numbers) in seen { XCTAssertEqual(numbers.sorted(), Array(1...12)) }
        }
    }

    /// openapi.yaml's way to follow documents as they are issued: a client
    /// paging one documentType with `after` while facturas and credit notes
    /// are issued at once misses none (the type's ids commit in their order,
    /// its counter taking them in turn).
    func testPagingOneTypeWhileItIsIssuedMissesNone() async throws {
        // 60 at once on two counters.
        try await TestServer.run(configure: {
            $0.poolSize = 8
            $0.waitLongForTheCounter()
            $0.rateLimitBurst = 1_000
        }) { server in
            let tenant = try await server.signUp()
            let issuer = try await server.createIssuer(tenant.key)
            let issuing = NIOLockedValueBox(true)
            async let issued = concurrently(60) { index in
                let reply = try await server.issue(tenant.key, issuer: issuer, type: index % 3 == 2 ? "04" : "01")
                XCTAssertEqual(reply.status, 201, reply.text)
                return (try reply.string("document", "documentType"), try reply.int("document", "id"))
            }
            async let followed: [Int64] = {
                var seen: [Int64] = []
                var after: Int64 = 0
                var lastRound = false
                while true {
                    let page = try await server.call(
                        .get, "/v1/documents?documentType=01&limit=5&after=\(after)", key: tenant.key, issuer: issuer)
                    XCTAssertEqual(page.status, 200, page.text)
                    let ids = try page.array("documents").map { document -> Int64 in
                        guard case .number(let text) = document["id"] else { return 0 }
                        return try XCTUnwrap(Int64(text))
                    }
                    seen += ids
                    after = ids.last ?? after
                    if ids.count < 5 {
                        // A short page is the end for now; one more pass after the issuing ends.
                        if lastRound { return seen }
                        if !issuing.withLockedValue({ $0 }) { lastRound = true }
                        try await Task.sleep(for: .milliseconds(5))
                    }
                }
            }()
            let facturas = try await issued.filter { $0.0 == "01" }.map(\.1)
            issuing.withLockedValue { $0 = false }
            let seen = try await followed
            XCTAssertEqual(seen, facturas.sorted(), "every factura once, in id order")
        }
    }

    func testAFailureAfterTakingANumberLeavesNoGap() async throws {
        try await TestServer.run { server in
            let tenant = try await server.signUp()
            let issuer = try await server.createIssuer(tenant.key)
            let first = try await server.issue(tenant.key, issuer: issuer)
            XCTAssertEqual(try first.int("document", "sequential"), 1)
            // A fault injected after validation: the number is taken, the XML
            // signed, then the insert fails in the database.
            let trigger = "fail_after_number_\(tenant.id)"
            try TestDatabase.query(
                """
                CREATE FUNCTION \(trigger)() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN RAISE EXCEPTION 'injected failure' USING ERRCODE = 'XX001'; END $$
                """)
            try TestDatabase.query(
                """
                CREATE TRIGGER \(trigger) BEFORE INSERT ON documents FOR EACH ROW
                    WHEN (NEW.tenant_id = \(tenant.id) AND NEW.metadata::text LIKE '%fail-here%') EXECUTE FUNCTION \(trigger)()
                """)
            defer {
                _ = try? TestDatabase.query("DROP TRIGGER \(trigger) ON documents")
                _ = try? TestDatabase.query("DROP FUNCTION \(trigger)()")
            }
            let failed = try await server.issue(tenant.key, issuer: issuer, body: Bodies.factura(metadata: #"{"fail-here": true}"#))
            failed.assertProblem(500, "INTERNAL")
            let next = try await server.issue(tenant.key, issuer: issuer)
            XCTAssertEqual(try next.int("document", "sequential"), 2, "the aborted request left no hole")
        }
    }

    func testExhaustedCounterIs409() async throws {
        try await TestServer.run { server in
            let tenant = try await server.signUp()
            let issuer = try await server.createIssuer(tenant.key)
            _ = try await server.issue(tenant.key, issuer: issuer)
            try TestDatabase.query(
                "UPDATE sequentials SET next_sequential = 999999999 WHERE tenant_id = $1 AND issuer_id = $2", [tenant.id, issuer]
            )
            let last = try await server.issue(tenant.key, issuer: issuer)
            XCTAssertEqual(try last.int("document", "sequential"), 999_999_999)
            XCTAssertEqual(try last.string("document", "number"), "001-001-999999999")
            let over = try await server.issue(tenant.key, issuer: issuer)
            over.assertProblem(409, "CONFLICT", reason: "SEQUENTIAL_EXHAUSTED")
            // No next number to show: null, not 1000000000.
            let counters = try await server.call(.get, "/v1/issuers/\(issuer)/sequentials", key: tenant.key).array("sequentials")
            XCTAssertEqual(counters.first { $0["documentType"] == "01" }?["next"], .null, "\(counters)")
            XCTAssertEqual(counters.count, 1, "\(counters)")
        }
    }

    func testResolveIssuer() async throws {
        try await TestServer.run { server in
            let tenant = try await server.signUp()
            let issuer = try await server.createIssuer(tenant.key)
            let missing = try await server.call(.post, "/v1/documents", key: tenant.key, json: Bodies.factura())
            missing.assertProblem(400, "VALIDATION_ERROR")
            XCTAssertEqual(missing.errorFields, ["X-Issuer-Id"])
            for bad in ["abc", "-1", "1.5", " "] {
                let reply = try await server.call(.get, "/v1/documents", key: tenant.key, headers: [.issuerID: bad])
                reply.assertProblem(400, "VALIDATION_ERROR")
            }
            // Sent twice, even with the same id (read as one value, "7, 7": not a number).
            for second in [issuer, issuer + 1] {
                var twice = HTTPFields()
                twice.append(HTTPField(name: .issuerID, value: String(issuer)))
                twice.append(HTTPField(name: .issuerID, value: String(second)))
                for method in [HTTPRequest.Method.get, .post] {
                    let reply = try await server.call(method, "/v1/documents", key: tenant.key, headers: twice, json: Bodies.factura())
                    reply.assertProblem(400, "VALIDATION_ERROR")
                    XCTAssertEqual(reply.errorFields, ["X-Issuer-Id"], reply.text)
                }
            }
            let other = try await server.signUp()
            let otherIssuer = try await server.createIssuer(other.key)
            for id in [otherIssuer, 0, 99_999_999_999] {
                let issue = try await server.issue(tenant.key, issuer: id)
                issue.assertProblem(404, "NOT_FOUND")
                // A body that is not JSON at all is looked at after the issuer too.
                for body in ["{", "[]", "\"x\""] {
                    let broken = try await server.call(.post, "/v1/documents", key: tenant.key, issuer: id, json: body)
                    broken.assertProblem(404, "NOT_FOUND")
                }
                let list = try await server.call(.get, "/v1/documents", key: tenant.key, issuer: id)
                list.assertProblem(404, "NOT_FOUND")
            }
            XCTAssertEqual(try TestDatabase.scalar("SELECT count(*) FROM documents WHERE tenant_id = $1", [other.id], as: Int.self), 0)
            let ok = try await server.issue(tenant.key, issuer: issuer)
            XCTAssertEqual(ok.status, 201)
        }
    }

    func testEnvironmentMatrixThroughTheAPI() async throws {
        try await TestServer.run { server in
            let tenant = try await server.activeTenant()
            let issuer = try await server.createIssuer(tenant.key)
            // sandbox key → sandbox issuer: OK
            let sandboxIssue = try await server.issue(tenant.key, issuer: issuer)
            XCTAssertEqual(sandboxIssue.status, 201)
            let promoted = try await server.call(.post, "/v1/tenants/promote", key: tenant.key)
            XCTAssertEqual(promoted.status, 200, promoted.text)
            let live = try promoted.string("apiKeys", 0, "apiKey")
            // production key → production issuer: OK, with a production number
            let production = try await server.issue(live, issuer: issuer)
            XCTAssertEqual(production.status, 201, production.text)
            XCTAssertEqual(try production.string("document", "environment"), "production")
            XCTAssertEqual(try production.int("document", "sequential"), 1)
            XCTAssertEqual(Array(try production.string("document", "accessKey"))[23], "2")
            // The issuer lists both, and each environment's alone when asked.
            func listed(_ query: String) async throws -> [String] {
                let list = try await server.call(.get, "/v1/documents" + query, key: live, issuer: issuer)
                XCTAssertEqual(list.status, 200, list.text)
                return try list.array("documents").indices.map { try list.string("documents", $0, "accessKey") }
            }
            let sandboxKey = try sandboxIssue.string("document", "accessKey")
            let productionKey = try production.string("document", "accessKey")
            let all = try await listed("")
            XCTAssertEqual(all, [sandboxKey, productionKey])
            let onlyProduction = try await listed("?environment=production")
            XCTAssertEqual(onlyProduction, [productionKey])
            let onlySandbox = try await listed("?environment=sandbox&documentType=01&status=SIGNED")
            XCTAssertEqual(onlySandbox, [sandboxKey])
            let bad = try await server.call(.get, "/v1/documents?environment=live", key: live, issuer: issuer)
            bad.assertProblem(400, "VALIDATION_ERROR")
            XCTAssertEqual(bad.errorFields, ["environment"])
            // sandbox key (minted after promotion, allowed) → production issuer: 401 naming the sides
            let sandbox = try await server.mintKey(live, label: "test rig")
            XCTAssertTrue(sandbox.hasPrefix("cfy_test_"))
            let refused = try await server.issue(sandbox, issuer: issuer)
            refused.assertProblem(401, "UNAUTHORIZED")
            XCTAssertTrue(try refused.string("detail").contains("sandbox key cannot address a production issuer"))
            let listRefused = try await server.call(.get, "/v1/documents", key: sandbox, issuer: issuer)
            listRefused.assertProblem(401, "UNAUTHORIZED")
            // The sandbox key can still manage keys.
            let keys = try await server.call(.get, "/v1/keys", key: sandbox)
            XCTAssertEqual(keys.status, 200)
        }
    }

    func testIdempotentReplayConflictsAndRaces() async throws {
        try await TestServer.run(configure: { $0.poolSize = 8 }) { server in
            let tenant = try await server.signUp()
            let issuer = try await server.createIssuer(tenant.key)
            let second = try await server.createIssuer(tenant.key, emissionPoint: "002")
            let body = Bodies.factura(metadata: #"{"order": 1}"#)
            let first = try await server.issue(tenant.key, issuer: issuer, headers: [.idempotencyKey: "order-1"], body: body)
            XCTAssertEqual(first.status, 201)
            XCTAssertNil(first.headers[.idempotentReplayed])
            let replay = try await server.issue(tenant.key, issuer: issuer, headers: [.idempotencyKey: "order-1"], body: body)
            XCTAssertEqual(replay.status, 201)
            XCTAssertEqual(replay.headers[.idempotentReplayed], "true")
            XCTAssertEqual(replay.value(["document"]), first.value(["document"]))
            // Once SRI has decided, a replay is still the first response; GET shows the decision.
            try ComprobantesTests.authorize(try first.int("document", "id"))
            let later = try await server.issue(tenant.key, issuer: issuer, headers: [.idempotencyKey: "order-1"], body: body)
            XCTAssertEqual(later.headers[.idempotentReplayed], "true")
            XCTAssertEqual(later.value(["document"]), first.value(["document"]), "the first response again")
            XCTAssertEqual(try later.string("document", "status"), "SIGNED")
            let now = try await server.call(
                .get, "/v1/documents/\(try first.string("document", "accessKey"))", key: tenant.key, issuer: issuer)
            XCTAssertEqual(try now.string("document", "status"), "AUTHORIZED")

            let otherBody = try await server.issue(
                tenant.key, issuer: issuer, headers: [.idempotencyKey: "order-1"], body: Bodies.factura(metadata: #"{"order": 2}"#)
            )
            otherBody.assertProblem(409, "CONFLICT", reason: "IDEMPOTENCY_KEY_REUSED")
            let sameBytesOtherSpacing = try await server.issue(
                tenant.key, issuer: issuer, headers: [.idempotencyKey: "order-1"], body: Bodies.factura(metadata: #"{"order":1}"#)
            )
            sameBytesOtherSpacing.assertProblem(409, "CONFLICT", reason: "IDEMPOTENCY_KEY_REUSED")
            let otherIssuer = try await server.issue(tenant.key, issuer: second, headers: [.idempotencyKey: "order-1"], body: body)
            otherIssuer.assertProblem(409, "CONFLICT", reason: "IDEMPOTENCY_KEY_REUSED")

            // A failed request is not remembered.
            let invalid = try await server.issue(
                tenant.key, issuer: issuer, headers: [.idempotencyKey: "order-2"], body: #"{"documentType": "99"}"#)
            invalid.assertProblem(400, "VALIDATION_ERROR")
            let valid = try await server.issue(tenant.key, issuer: issuer, headers: [.idempotencyKey: "order-2"], body: body)
            XCTAssertEqual(valid.status, 201)
            XCTAssertNil(valid.headers[.idempotentReplayed])

            let badKey = try await server.issue(
                tenant.key, issuer: issuer, headers: [.idempotencyKey: String(repeating: "k", count: 256)], body: body)
            badKey.assertProblem(400, "VALIDATION_ERROR")

            // Racing duplicates: one document, every reply the same.
            for round in 0..<3 {
                let key = "race-\(round)"
                let replies = try await concurrently(16) { _ in
                    try await server.issue(tenant.key, issuer: issuer, headers: [.idempotencyKey: key], body: body)
                }
                XCTAssertEqual(replies.map(\.status), Array(repeating: 201, count: 16))
                XCTAssertEqual(Set(try replies.map { try $0.int("document", "id") }).count, 1)
                XCTAssertEqual(replies.filter { $0.headers[.idempotentReplayed] == nil }.count, 1)
            }
            let documents = try TestDatabase.scalar("SELECT count(*) FROM documents WHERE tenant_id = $1", [tenant.id], as: Int.self)
            XCTAssertEqual(documents, 5, "order-1, order-2 and one per race")
            XCTAssertEqual(
                try TestDatabase.scalar("SELECT max(sequential) FROM documents WHERE tenant_id = $1", [tenant.id], as: Int.self), 5,
                "replays took no number"
            )
            // Idempotency keys are per tenant.
            let stranger = try await server.signUp()
            let strangerIssuer = try await server.createIssuer(stranger.key)
            let theirs = try await server.issue(stranger.key, issuer: strangerIssuer, headers: [.idempotencyKey: "order-1"], body: body)
            XCTAssertEqual(theirs.status, 201)
            XCTAssertNil(theirs.headers[.idempotentReplayed])
        }
    }

    /// A repeat of a request accepted before a rule was made stricter (its
    /// body fails validation now) is answered what it was answered; the same
    /// body with another key, with another issuer, or once the key expired,
    /// is the 400 it now is.
    func testARepeatOfABodyThatNoLongerValidatesReplaysItsAnswer() async throws {
        try await TestServer.run { server in
            let tenant = try await server.signUp()
            let issuer = try await server.createIssuer(tenant.key)
            let second = try await server.createIssuer(tenant.key, emissionPoint: "002")
            let first = try await server.issue(tenant.key, issuer: issuer, headers: [.idempotencyKey: "then-valid"], body: Bodies.factura())
            XCTAssertEqual(first.status, 201, first.text)
            // As if the body had been accepted under an older rule: the key
            // remembers a body that fails validation today.
            let stricter = Bodies.factura(
                buyer: #"{"idType": "05", "id": "1712345678", "name": "José Núñez", "email": "jose@example..ec"}"#)
            try TestDatabase.query(
                "UPDATE idempotency_keys SET request_digest = sha256(convert_to($2, 'UTF8')) WHERE tenant_id = $1 AND key = 'then-valid'",
                [tenant.id, stricter])
            let repeated = try await server.issue(tenant.key, issuer: issuer, headers: [.idempotencyKey: "then-valid"], body: stricter)
            XCTAssertEqual(repeated.status, 201, repeated.text)
            XCTAssertEqual(repeated.headers[.idempotentReplayed], "true")
            XCTAssertEqual(repeated.value(["document"]), first.value(["document"]))
            for (key, target) in [("another-key", issuer), ("then-valid", second)] {
                let refused = try await server.issue(tenant.key, issuer: target, headers: [.idempotencyKey: key], body: stricter)
                refused.assertProblem(400, "VALIDATION_ERROR")
                XCTAssertEqual(refused.errorFields, ["buyer.email"], "\(key), issuer \(target)")
            }
            try TestDatabase.query(
                "UPDATE idempotency_keys SET created_at = now() - interval '25 hours', expires_at = now() - interval '1 hour' WHERE tenant_id = $1",
                [tenant.id])
            let expired = try await server.issue(tenant.key, issuer: issuer, headers: [.idempotencyKey: "then-valid"], body: stricter)
            expired.assertProblem(400, "VALIDATION_ERROR")
            XCTAssertEqual(
                try TestDatabase.scalar("SELECT count(*) FROM documents WHERE tenant_id = $1", [tenant.id], as: Int.self), 1)
        }
    }

    func testExpiredIdempotencyKeysArePurgedAndReusable() async throws {
        try await TestServer.run { server in
            let tenant = try await server.signUp()
            let issuer = try await server.createIssuer(tenant.key)
            let body = Bodies.factura()
            _ = try await server.issue(tenant.key, issuer: issuer, headers: [.idempotencyKey: "old"], body: body)
            try TestDatabase.query(
                "UPDATE idempotency_keys SET created_at = now() - interval '25 hours', expires_at = now() - interval '1 hour' WHERE tenant_id = $1",
                [tenant.id]
            )
            let fresh = try await server.issue(tenant.key, issuer: issuer, headers: [.idempotencyKey: "old"], body: body)
            XCTAssertEqual(fresh.status, 201)
            XCTAssertNil(fresh.headers[.idempotentReplayed], "an expired key starts over")
            XCTAssertEqual(try fresh.int("document", "sequential"), 2)
            // The key expires and the app role purges it in one transaction, so
            // no other server's housekeeping (tests run in parallel) sees it
            // expired first: this purge is the one that removes it.
            let session = try TestDatabase.owner()
            _ = try session.query("BEGIN", [])
            try session.query(
                "UPDATE idempotency_keys SET created_at = now() - interval '25 hours', expires_at = now() - interval '1 hour' WHERE tenant_id = $1",
                [tenant.id])
            _ = try session.query("SET LOCAL ROLE comprobify_app", [])
            let purged = try session.query("SELECT purge_expired()", [])[0].decode(Int64.self, at: 0)
            _ = try session.query("COMMIT", [])
            XCTAssertGreaterThanOrEqual(purged, 1, "the expired key is among the rows purged")
            XCTAssertEqual(
                try TestDatabase.scalar("SELECT count(*) FROM idempotency_keys WHERE tenant_id = $1", [tenant.id], as: Int.self), 0)
        }
    }

    func testListingPaginationAndValidation() async throws {
        try await TestServer.run { server in
            let tenant = try await server.signUp()
            let issuer = try await server.createIssuer(tenant.key)
            var ids: [Int64] = []
            for type in ["01", "04", "01", "01", "04"] {
                ids.append(try await server.issue(tenant.key, issuer: issuer, type: type).int("document", "id"))
            }
            func page(_ query: String) async throws -> ([Int64], Int64?) {
                let reply = try await server.call(.get, "/v1/documents\(query)", key: tenant.key, issuer: issuer)
                XCTAssertEqual(reply.status, 200, reply.text)
                let next: Int64? = reply.isNull("nextAfter") ? nil : try reply.int("nextAfter")
                return (try reply.array("documents").compactMap { $0["id"]?.intValue }, next)
            }
            var (items, next) = try await page("?limit=2")
            XCTAssertEqual(items, Array(ids[0..<2]))
            XCTAssertEqual(next, ids[1])
            (items, next) = try await page("?limit=2&after=\(ids[1])")
            XCTAssertEqual(items, Array(ids[2..<4]))
            XCTAssertEqual(next, ids[3])
            (items, next) = try await page("?limit=2&after=\(ids[3])")
            XCTAssertEqual(items, [ids[4]])
            XCTAssertNil(next)
            (items, next) = try await page("?limit=5")
            XCTAssertEqual(items, ids)
            XCTAssertEqual(next, ids[4], "a full page points at its last id")
            (items, next) = try await page("?limit=5&after=\(ids[4])")
            XCTAssertEqual(items, [])
            XCTAssertNil(next)
            (items, _) = try await page("")
            XCTAssertEqual(items, ids, "default limit 50")
            (items, _) = try await page("?documentType=04")
            XCTAssertEqual(items, [ids[1], ids[4]])
            (items, _) = try await page("?limit=200&after=0")
            XCTAssertEqual(items, ids)

            for (query, field) in [
                ("?limit=0", "limit"), ("?limit=201", "limit"), ("?limit=abc", "limit"), ("?after=-1", "after"),
                ("?after=x", "after"), ("?documentType=02", "documentType"), ("?limit=2&limit=3", "limit"),
                ("?documentType=01&documentType=04", "documentType"), ("?status=SIGNED&after=1&status=SIGNED", "status"),
                ("?after=1&after=", "after"), ("?status=NOPE", "status"), ("?environment=Production", "environment"),
            ] {
                let reply = try await server.call(.get, "/v1/documents\(query)", key: tenant.key, issuer: issuer)
                reply.assertProblem(400, "VALIDATION_ERROR")
                XCTAssertEqual(reply.errorFields, [field], query)
            }
            // Every violation at once, a repeated parameter's beside the others'.
            let both = try await server.call(.get, "/v1/documents?limit=2&limit=3&after=x", key: tenant.key, issuer: issuer)
            both.assertProblem(400, "VALIDATION_ERROR")
            XCTAssertEqual(both.errorFields, ["limit", "after"])
            let unknown = try await server.call(.get, "/v1/documents/" + String(repeating: "1", count: 49), key: tenant.key, issuer: issuer)
            unknown.assertProblem(404, "NOT_FOUND")
        }
    }

    /// A page of 200 ordinary documents is full, whatever their size: a client
    /// that stops at a page shorter than `limit` (API.md) misses none. Here
    /// 200 facturas with 7 KiB of metadata each, 1.7 MiB of JSON in all.
    func testAFullPageOfLargeDocumentsIsNotCutShort() async throws {
        // 200 issues on one counter, in rounds of 25 (no 429 from the key's rate).
        try await TestServer.run(configure: {
            $0.poolSize = 8
            $0.waitLongForTheCounter()
            $0.rateLimitPerKey = 0
        }) { server in
            let tenant = try await server.signUp()
            let issuer = try await server.createIssuer(tenant.key)
            let note = String(repeating: "n", count: 7 * 1024)
            var replies: [Reply] = []
            for _ in 0..<8 {
                replies += try await concurrently(25) { _ in
                    try await server.issue(tenant.key, issuer: issuer, body: Bodies.factura(metadata: #"{"note": "\#(note)"}"#))
                }
            }
            XCTAssertEqual(replies.map(\.status), Array(repeating: 201, count: 200))
            let ids = try replies.map { try $0.int("document", "id") }.sorted()
            let page = try await server.call(.get, "/v1/documents?limit=200", key: tenant.key, issuer: issuer)
            XCTAssertEqual(page.status, 200)
            XCTAssertGreaterThan(page.text.utf8.count, 3 << 19)
            XCTAssertEqual(try page.array("documents").compactMap { $0["id"]?.intValue }, ids)
            XCTAssertEqual(try page.int("nextAfter"), ids.last)
        }
    }

    /// Documents past the list's memory budget are read a chunk at a time and
    /// streamed, and the page is still as long as `limit` (API.md): here a
    /// budget of 12 KiB against documents of about 5.5 KiB each (4 KiB of
    /// metadata), so the first read brings two and each further read two more.
    func testAPageOverTheListBudgetIsStreamedWholeAndInOrder() async throws {
        try await TestServer.run(configure: { $0.listBytes = 12 * 1024 }) { server in
            let tenant = try await server.signUp()
            let issuer = try await server.createIssuer(tenant.key)
            let note = String(repeating: "n", count: 4 * 1024)
            var ids: [Int64] = []
            for _ in 0..<6 {
                let reply = try await server.issue(tenant.key, issuer: issuer, body: Bodies.factura(metadata: #"{"note": "\#(note)"}"#))
                ids.append(try reply.int("document", "id"))
            }
            // A document numbered before comprobantes existed: no body at all.
            ids.append(
                try TestDatabase.scalar(
                    """
                    INSERT INTO documents (tenant_id, issuer_id, document_type, environment, sequential, number, access_key, issue_date, metadata)
                    SELECT $1, $2, '04', 'sandbox', 99, '001-001-000000099', k || sri_check_digit(k), '2026-03-01', '{"old": true}'
                      FROM (SELECT '010320260417900123450011001001000000099123456781'::text AS k) x
                    RETURNING id
                    """, [tenant.id, issuer], as: Int64.self))
            var shown: [Int64: JSONValue] = [:]
            for id in ids {
                let key = try TestDatabase.scalar(
                    "SELECT access_key FROM documents WHERE tenant_id = $1 AND id = $2", [tenant.id, id], as: String.self)
                let reply = try await server.call(.get, "/v1/documents/\(key)", key: tenant.key, issuer: issuer)
                shown[id] = reply.value(["document"])
            }
            func page(_ query: String, streamed: Bool = true) async throws -> ([JSONValue], Int64?) {
                let reply = try await server.call(.get, "/v1/documents\(query)", key: tenant.key, issuer: issuer)
                XCTAssertEqual(reply.status, 200, reply.text)
                XCTAssertEqual(reply.value(["ok"]), .bool(true))
                // A streamed answer is chunked; one read whole has its length.
                XCTAssertEqual(reply.headers[.contentLength] == nil, streamed, query)
                XCTAssertEqual(reply.headers[.transferEncoding] == "chunked", streamed, query)
                return (try reply.array("documents"), reply.isNull("nextAfter") ? nil : try reply.int("nextAfter"))
            }
            var (documents, next) = try await page("?limit=5")
            XCTAssertEqual(documents.compactMap { $0["id"]?.intValue }, Array(ids[0..<5]), "a full page, not one cut at the budget")
            XCTAssertEqual(next, ids[4])
            for document in documents {
                XCTAssertEqual(document, shown[document["id"]?.intValue ?? 0], "each as GET /v1/documents/:accessKey shows it")
            }
            (documents, next) = try await page("?limit=2", streamed: false)
            XCTAssertEqual(documents.compactMap { $0["id"]?.intValue }, Array(ids[0..<2]), "two fit the first read")
            XCTAssertEqual(next, ids[1])
            (documents, next) = try await page("?limit=5&after=\(ids[4])", streamed: false)
            XCTAssertEqual(documents.compactMap { $0["id"]?.intValue }, Array(ids[5...]))
            XCTAssertNil(next, "a page shorter than limit ends the list")
            XCTAssertEqual(documents.last, shown[ids[6]])
            (documents, next) = try await page("?limit=200")
            XCTAssertEqual(documents.compactMap { $0["id"]?.intValue }, ids)
            XCTAssertNil(next)
            (documents, next) = try await page("?limit=6&status=SIGNED")
            XCTAssertEqual(
                documents.compactMap { $0["id"]?.intValue }, Array(ids[0..<6]), "the filter picks the page; the chunks follow it")
            XCTAssertEqual(next, ids[5])
        }
    }

    /// A tenant with 16 facturas of about 14 KiB each (230 KiB in all: past
    /// what the server keeps waiting for a client, 64 KiB, and the sockets'
    /// buffers), and a raw connection that has asked for them in one page.
    static func askForALargePage(_ server: TestServer) async throws -> (TestServer.Tenant, [Int64], RawSocket) {
        let tenant = try await server.activeTenant()
        let issuer = try await server.createIssuer(tenant.key)
        let note = String(repeating: "n", count: 12 * 1024)
        var ids: [Int64] = []
        for _ in 0..<16 {
            let reply = try await server.issue(tenant.key, issuer: issuer, body: Bodies.factura(metadata: #"{"note": "\#(note)"}"#))
            ids.append(try reply.int("document", "id"))
        }
        let socket = try RawSocket(port: server.port, receiveBuffer: 4 * 1024)
        socket.send(
            "GET /v1/documents?limit=50 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(tenant.key)\r\nX-Issuer-Id: \(issuer)\r\n\r\n")
        return (tenant, ids, socket)
    }

    /// A streamed page's later pieces wait for their tenant's share rather
    /// than end the answer short: here the page's client stops reading after
    /// its first bytes, another request of the tenant takes the tenant's one
    /// place and holds it on a lock for five times the pool wait, and the
    /// client then reads the rest. The pieces read after it are the whole page,
    /// the chunked body's end included.
    func testAStreamedPageWaitsForItsTenantsShareInsteadOfEndingShort() async throws {
        try await TestServer.run(configure: {
            $0.listBytes = 12 * 1024
            $0.poolSize = 2
            $0.tenantMaxConnections = 1
            $0.poolWaitMilliseconds = 300
            $0.httpSendBufferBytes = 4 * 1024
        }) { server in
            let (tenant, ids, socket) = try await Self.askForALargePage(server)
            // The answer has begun (its first bytes read); unread, the rest
            // fills the buffers within its first pieces.
            let begun = socket.readInBursts(of: 1 << 20, pausing: .zero, within: 20) { _ in true }
            try await Task.sleep(for: .milliseconds(300))
            let locker = try TestDatabase.owner()
            try locker.query("BEGIN", prepared: false)
            try locker.query("SELECT 1 FROM tenants WHERE id = $1 FOR UPDATE", [tenant.id], prepared: false)
            let lockerPID = try locker.query("SELECT pg_backend_pid()", prepared: false)[0].decode(Int32.self, at: 0)
            async let minted = server.call(.post, "/v1/keys", key: tenant.key, json: #"{"label": "holds the share"}"#)
            XCTAssertNotNil(TestDatabase.sessionBlocked(by: lockerPID), "the mint holds the tenant's place, waiting on its row")
            let reader = Task.detached { socket.readInBursts(of: 1 << 20, pausing: .zero, within: 20) { $0.hasSuffix("\r\n0\r\n\r\n") } }
            try await Task.sleep(for: .milliseconds(1_500))
            try locker.query("ROLLBACK", prepared: false)
            let text = begun + (await reader.value)
            let mint = try await minted
            XCTAssertEqual(mint.status, 201, mint.text)
            XCTAssertTrue(text.hasPrefix("HTTP/1.1 200"), String(text.prefix(200)))
            XCTAssertTrue(text.hasSuffix("\r\n0\r\n\r\n"), "the chunked body ends: \(text.suffix(200))")
            for id in ids { XCTAssertTrue(text.contains(#"{"id":\#(id),"#), "document \(id) in the page") }
        }
    }

    /// A streamed page whose later piece fails (here its key is revoked
    /// between the pieces: each piece reads as the key, which is then 401)
    /// cannot change its 200 any more: the server ends the chunked body
    /// without its last chunk and closes the connection, so that a client
    /// sees an answer cut short (never a page that looks whole), and says so
    /// in its log.
    func testAStreamedPageThatFailsPartWayEndsWithoutItsLastChunk() async throws {
        let logs = LogCapture()
        try await TestServer.run(
            configure: {
                $0.listBytes = 12 * 1024
                $0.httpSendBufferBytes = 4 * 1024
            }, logs: logs
        ) { server in
            let (tenant, ids, socket) = try await Self.askForALargePage(server)
            let begun = socket.readInBursts(of: 1 << 20, pausing: .zero, within: 20) { _ in true }
            try await Task.sleep(for: .milliseconds(300))
            try TestDatabase.owner().query("UPDATE api_keys SET revoked_at = now() WHERE tenant_id = $1", [tenant.id], prepared: false)
            let rest = socket.readInBursts(of: 1 << 20, pausing: .zero, within: 20) { $0.hasSuffix("\r\n0\r\n\r\n") }
            let text = begun + rest
            XCTAssertTrue(text.hasPrefix("HTTP/1.1 200"), String(text.prefix(200)))
            XCTAssertFalse(text.hasSuffix("\r\n0\r\n\r\n"), "no last chunk: \(text.suffix(200))")
            XCTAssertFalse(ids.allSatisfy { text.contains(#"{"id":\#($0),"#) }, "the page did not arrive whole")
            XCTAssertTrue(socket.waitForClose(within: 5), "the connection is closed")
            XCTAssertTrue(logs.text.contains("a streamed answer ended short"), logs.text.suffix(2000).description)
        }
    }

    /// Member names are compared byte for byte: "é" (one code point) and "é"
    /// (e + combining accent) are two members, and both are stored and returned.
    func testCanonicallyEquivalentMemberNamesStayDistinct() async throws {
        try await TestServer.run { server in
            let tenant = try await server.signUp()
            let issuer = try await server.createIssuer(tenant.key)
            let reply = try await server.issue(tenant.key, issuer: issuer, body: Bodies.factura(metadata: #"{"\u00e9": 1, "e\u0301": 2}"#))
            XCTAssertEqual(reply.status, 201, reply.text)
            guard case .object(let members)? = reply.value(["document", "metadata"]) else {
                return XCTFail("no metadata object in \(reply.text)")
            }
            XCTAssertEqual(members.map { Array($0.0.unicodeScalars) }, [["\u{E9}"], ["e", "\u{301}"]])
            XCTAssertEqual(members.map(\.1), [.number("1"), .number("2")])
            XCTAssertEqual(
                try TestDatabase.scalar(
                    "SELECT count(*) FROM documents d, json_object_keys(d.metadata) WHERE d.tenant_id = $1", [tenant.id], as: Int.self), 2)
        }
    }

    func testIssueValidation() async throws {
        try await TestServer.run { server in
            let tenant = try await server.signUp()
            let issuer = try await server.createIssuer(tenant.key)
            let factura = Bodies.factura()
            func with(_ member: String) -> String { String(factura.dropLast()) + ", " + member + "}" }
            for (body, field) in [
                (factura.replacingOccurrences(of: #""documentType": "01", "#, with: ""), "documentType"),
                (factura.replacingOccurrences(of: #""documentType": "01""#, with: #""documentType": "02""#), "documentType"),
                (factura.replacingOccurrences(of: #""documentType": "01""#, with: #""documentType": 1"#), "documentType"),
                (factura.replacingOccurrences(of: #""documentType": "01""#, with: #""documentType": "07""#), "documentType"),
                (with(#""issueDate": "2026-02-30""#), "issueDate"),
                (with(#""issueDate": "01/03/2026""#), "issueDate"),
                (with(#""metadata": [1]"#), "metadata"),
                (with(#""metadata": "x""#), "metadata"),
                (with(#""content": {"a": 1}"#), "content"),
            ] {
                let reply = try await server.issue(tenant.key, issuer: issuer, body: body)
                reply.assertProblem(400, "VALIDATION_ERROR")
                XCTAssertEqual(reply.errorFields, [field], body)
            }
            let deep = with(#""metadata": "# + String(repeating: #"{"a":"#, count: 500) + "1" + String(repeating: "}", count: 500))
            let nested = try await server.issue(tenant.key, issuer: issuer, body: deep)
            nested.assertProblem(400, "VALIDATION_ERROR")
            XCTAssertEqual(try TestDatabase.scalar("SELECT count(*) FROM documents WHERE tenant_id = $1", [tenant.id], as: Int.self), 0)
            XCTAssertEqual(try TestDatabase.scalar("SELECT count(*) FROM sequentials WHERE tenant_id = $1", [tenant.id], as: Int.self), 0)
        }
    }

    func testDocumentTypesMatchTheReferenceTable() throws {
        let rows = try TestDatabase.query("SELECT code FROM document_types ORDER BY code")
        XCTAssertEqual(try rows.rows.map { try $0.decode(String.self, at: 0) }, DocumentType.codes)
    }
}

final class CheckDigitAgreementTests: XCTestCase {
    /// The database's sri_check_digit() (used to fill keys and in a CHECK
    /// constraint) and the Swift rule give the same digit.
    func testDatabaseAndSwiftAgree() throws {
        var inputs = [
            String(repeating: "0", count: 48), String(repeating: "0", count: 47) + "6", String(repeating: "9", count: 48),
            String("0110201401099126726300120010010002742492823013317".prefix(48)),
            String("0312202201019007200200120029020004874985766297216".prefix(48)),
        ]
        for _ in 0..<300 {
            inputs.append(String((0..<48).map { _ in Character(String(Int.random(in: 0...9))) }))
        }
        let connection = try Postgres.Connection(conninfo: TestDatabase.appURL)
        let rows = try connection.query("SELECT sri_check_digit(d) FROM unnest($1::text[]) WITH ORDINALITY AS t(d, n) ORDER BY n", [inputs])
        XCTAssertEqual(rows.count, inputs.count)
        for (index, input) in inputs.enumerated() {
            XCTAssertEqual(try rows[index].decode(String.self, at: 0), String(AccessKey.checkDigit(input)), input)
        }
    }
}
