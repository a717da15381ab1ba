import HTTPTypes
import TestSupport
import XCTest

@testable import Comprobify

final class IssuersTests: XCTestCase {
    func testCreateListShowAndValidate() async throws {
        try await TestServer.run { server in
            let tenant = try await server.signUp()  // pending tenants may create issuers
            let created = try await server.call(
                .post, "/v1/issuers", key: tenant.key,
                json:
                    #"{"ruc": "0990012345001", "legalName": "Comercial Ñ S.A.", "tradeName": "Ñ", "establishment": "002", "emissionPoint": "010", "address": "Av. 9 de Octubre"}"#
            )
            XCTAssertEqual(created.status, 201, created.text)
            let id = try created.int("issuer", "id")
            XCTAssertEqual(try created.string("issuer", "ruc"), "0990012345001")
            XCTAssertEqual(try created.string("issuer", "tradeName"), "Ñ")
            XCTAssertEqual(created.value(["issuer", "sandbox"]), .bool(true))

            let duplicate = try await server.call(
                .post, "/v1/issuers", key: tenant.key,
                json: #"{"ruc": "0990012345001", "legalName": "Other", "establishment": "002", "emissionPoint": "010"}"#
            )
            duplicate.assertProblem(409, "CONFLICT", reason: "ALREADY_EXISTS")

            let second = try await server.createIssuer(tenant.key, establishment: "002", emissionPoint: "011")
            let list = try await server.call(.get, "/v1/issuers", key: tenant.key)
            XCTAssertEqual(try list.array("issuers").compactMap { $0["id"]?.intValue }, [id, second])
            let show = try await server.call(.get, "/v1/issuers/\(id)", key: tenant.key)
            XCTAssertEqual(try show.string("issuer", "legalName"), "Comercial Ñ S.A.")
            XCTAssertEqual(try show.string("issuer", "tradeName"), "Ñ")

            let other = try await server.signUp()
            let hidden = try await server.call(.get, "/v1/issuers/\(id)", key: other.key)
            hidden.assertProblem(404, "NOT_FOUND")
            let otherList = try await server.call(.get, "/v1/issuers", key: other.key)
            XCTAssertEqual(try otherList.array("issuers").count, 0)
            for path in ["/v1/issuers/0", "/v1/issuers/abc", "/v1/issuers/-4", "/v1/issuers/\(id)/sequentials-x"] {
                let reply = try await server.call(.get, path, key: tenant.key)
                reply.assertProblem(404, "NOT_FOUND")
            }

            let base = #""legalName": "X", "establishment": "001", "emissionPoint": "001""#
            for (body, field) in [
                (#"{"ruc": "123", \#(base)}"#, "ruc"),
                (#"{"ruc": "17900123450011", \#(base)}"#, "ruc"),
                (#"{"ruc": 1790012345001, \#(base)}"#, "ruc"),
                (#"{"ruc": "179001234500a", \#(base)}"#, "ruc"),
                (#"{"ruc": "1790012345001", "legalName": "X", "establishment": "000", "emissionPoint": "001"}"#, "establishment"),
                (#"{"ruc": "1790012345001", "legalName": "X", "establishment": "01", "emissionPoint": "001"}"#, "establishment"),
                (#"{"ruc": "1790012345001", "legalName": "X", "establishment": "001", "emissionPoint": "000"}"#, "emissionPoint"),
                (#"{"ruc": "1790012345001", "legalName": "", "establishment": "001", "emissionPoint": "001"}"#, "legalName"),
                (
                    #"{"ruc": "1790012345001", "legalName": "\#(String(repeating: "x", count: 301))", "establishment": "001", "emissionPoint": "001"}"#,
                    "legalName"
                ),
                (#"{"ruc": "1790012345001", \#(base), "tradeName": ""}"#, "tradeName"),
                (#"{"ruc": "1790012345001", \#(base), "address": 5}"#, "address"),
            ] {
                let reply = try await server.call(.post, "/v1/issuers", key: tenant.key, json: body)
                reply.assertProblem(400, "VALIDATION_ERROR")
                XCTAssertEqual(reply.errorFields, [field], body)
            }
            XCTAssertEqual(try TestDatabase.scalar("SELECT count(*) FROM issuers WHERE tenant_id = $1", [tenant.id], as: Int.self), 2)

            // Each issuer created is audited as done by the key that made it;
            // the refused ones (the duplicate, the bad bodies) leave nothing.
            let keyID = try TestDatabase.scalar("SELECT id FROM api_keys WHERE tenant_id = $1", [tenant.id], as: Int64.self)
            let audit = try TestDatabase.query(
                """
                SELECT actor, actor_key_id, (details->>'issuerId')::bigint, details->>'ruc', details->>'establishment',
                       details->>'emissionPoint', (details->>'sandbox')::boolean
                  FROM audit_events WHERE tenant_id = $1 AND action = 'issuer.created' ORDER BY id
                """, [tenant.id])
            XCTAssertEqual(audit.rows.count, 2)
            XCTAssertEqual(try audit[0].decode(String.self, at: 0), "tenant")
            XCTAssertEqual(try audit.rows.map { try $0.decode(Int64.self, at: 1) }, [keyID, keyID])
            XCTAssertEqual(try audit.rows.map { try $0.decode(Int64.self, at: 2) }, [id, second])
            XCTAssertEqual(try audit[0].decode(String.self, at: 3), "0990012345001")
            XCTAssertEqual(try audit[0].decode(String.self, at: 4), "002")
            XCTAssertEqual(try audit[0].decode(String.self, at: 5), "010")
            XCTAssertEqual(try audit[0].decode(Bool.self, at: 6), true)
        }
    }

    /// A value the request's checks let through but a rule of the schema
    /// refuses (SQLSTATE 23514) is 400 "not accepted", naming no constraint
    /// (API.md: no internal names), and nothing is stored; the log names the
    /// constraint for the operator.
    func testARuleOfTheSchemaIs400WithoutItsName() async throws {
        let logs = LogCapture()
        try await TestServer.run(logs: logs) { server in
            let tenant = try await server.signUp()
            let heal = try refuseInserts(into: "issuers", ofTenant: tenant.id, check: "issuers_internal_rule_name")
            defer { XCTAssertNoThrow(try heal()) }
            let refused = try await server.call(
                .post, "/v1/issuers", key: tenant.key,
                json: #"{"ruc": "1790012345001", "legalName": "Regla S.A.", "establishment": "001", "emissionPoint": "001"}"#)
            refused.assertProblem(400, "BAD_REQUEST")
            XCTAssertEqual(try refused.string("detail"), "A value in the request is not accepted.")
            XCTAssertFalse(refused.text.contains("issuers_internal_rule_name"), refused.text)
            XCTAssertFalse(refused.text.contains("relation"), refused.text)
            let listed = try await server.call(.get, "/v1/issuers", key: tenant.key)
            XCTAssertEqual(try listed.array("issuers").count, 0, "nothing stored")
            XCTAssertTrue(logs.text.contains("issuers_internal_rule_name"), "the operator sees which rule")
        }
    }

    func testSequentialsListsEveryCounterInOrder() async throws {
        try await TestServer.run { server in
            let tenant = try await server.signUp()
            let issuer = try await server.createIssuer(tenant.key)
            let empty = try await server.call(.get, "/v1/issuers/\(issuer)/sequentials", key: tenant.key)
            XCTAssertEqual(try empty.array("sequentials").count, 0)
            for type in ["04", "01", "01"] {
                let reply = try await server.issue(tenant.key, issuer: issuer, type: type)
                XCTAssertEqual(reply.status, 201, reply.text)
            }
            let counters = try await server.call(.get, "/v1/issuers/\(issuer)/sequentials", key: tenant.key)
            XCTAssertEqual(
                counters.json?["sequentials"],
                .array([
                    .object([("documentType", "01"), ("environment", "sandbox"), ("next", JSONValue(3))]),
                    .object([("documentType", "04"), ("environment", "sandbox"), ("next", JSONValue(2))]),
                ])
            )
        }
    }

    /// GET /v1/issuers returns every issuer, unpaged, so a tenant has at most
    /// `IssuersStore.limit`: the next one is 409 and changes nothing, and
    /// concurrent creations never pass the limit.
    func testAtMostAThousandIssuers() async throws {
        try await TestServer.run { server in
            let tenant = try await server.activeTenant()
            // Three short of the limit, made as the database owner.
            try TestDatabase.query(
                """
                INSERT INTO issuers (tenant_id, ruc, legal_name, establishment, emission_point)
                SELECT $1, '1790012345001', 'Sucursal ' || g, lpad((g / 100 + 1)::text, 3, '0'), lpad((g % 100 + 1)::text, 3, '0')
                  FROM generate_series(0, $2 - 1) AS g
                """, [tenant.id, IssuersStore.limit - 3])
            let statuses = try await concurrently(6) { index in
                try await server.call(
                    .post, "/v1/issuers", key: tenant.key,
                    json:
                        #"{"ruc": "0990012345001", "legalName": "Race", "establishment": "001", "emissionPoint": "\#(String(format: "%03d", index + 1))"}"#
                ).status
            }
            XCTAssertEqual(statuses.sorted(), [201, 201, 201, 409, 409, 409], "concurrent creations never pass the limit")
            XCTAssertEqual(try IssuersTests.issuers(tenant.id), 1000)

            let refused = try await server.call(
                .post, "/v1/issuers", key: tenant.key,
                json: #"{"ruc": "0990012345001", "legalName": "One too many", "establishment": "002", "emissionPoint": "001"}"#)
            refused.assertProblem(409, "CONFLICT", reason: "LIMIT_REACHED")
            XCTAssertTrue(refused.text.contains("1000 issuers"), refused.text)
            let invalid = try await server.call(.post, "/v1/issuers", key: tenant.key, json: #"{"ruc": "1"}"#)
            invalid.assertProblem(400, "VALIDATION_ERROR")
            XCTAssertEqual(try IssuersTests.issuers(tenant.id), 1000, "nothing stored")
            let list = try await server.call(.get, "/v1/issuers", key: tenant.key)
            XCTAssertEqual(list.status, 200)
            XCTAssertEqual(try list.array("issuers").count, 1000)
        }
    }

    static func issuers(_ tenantID: Int64) throws -> Int {
        try TestDatabase.scalar("SELECT count(*) FROM issuers WHERE tenant_id = $1", [tenantID])
    }
}
