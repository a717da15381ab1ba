import HTTPTypes
import Postgres
import TestSupport
import XCTest

@testable import Comprobify

/// The issuer data the SRI XML needs (SRI.md, "Issuers"): created with the
/// issuer, changed by PATCH, never the branch identity.
final class IssuerTaxDataTests: XCTestCase {
    func testCreateWithTaxDataAndDefaults() async throws {
        try await TestServer.run { server in
            let tenant = try await server.signUp()
            let full = try await server.call(
                .post, "/v1/issuers", key: tenant.key,
                json: """
                    {"ruc": "1790012345001", "legalName": "Acme", "establishment": "001", "emissionPoint": "001",
                     "headOfficeAddress": "Av. Amazonas N1, Quito", "accountingRequired": true, "specialTaxpayer": "ABC123",
                     "withholdingAgent": "12345678", "rimpe": "NEGOCIO_POPULAR"}
                    """)
            XCTAssertEqual(full.status, 201, full.text)
            XCTAssertEqual(try full.string("issuer", "headOfficeAddress"), "Av. Amazonas N1, Quito")
            XCTAssertEqual(full.value(["issuer", "accountingRequired"]), .bool(true))
            XCTAssertEqual(try full.string("issuer", "specialTaxpayer"), "ABC123")
            XCTAssertEqual(try full.string("issuer", "withholdingAgent"), "12345678")
            XCTAssertEqual(try full.string("issuer", "rimpe"), "NEGOCIO_POPULAR")

            let created = try await server.call(
                .post, "/v1/issuers", key: tenant.key,
                json: #"{"ruc": "1790012345001", "legalName": "Bare", "establishment": "002", "emissionPoint": "001"}"#)
            let bare = try created.int("issuer", "id")
            let shown = try await server.call(.get, "/v1/issuers/\(bare)", key: tenant.key)
            XCTAssertTrue(shown.isNull("issuer", "headOfficeAddress"))
            XCTAssertEqual(shown.value(["issuer", "accountingRequired"]), .bool(false))
            XCTAssertTrue(shown.isNull("issuer", "specialTaxpayer"))
            XCTAssertTrue(shown.isNull("issuer", "withholdingAgent"))
            XCTAssertTrue(shown.isNull("issuer", "rimpe"))
        }
    }

    func testInvalidTaxDataNamesEveryFieldAndCreatesNothing() async throws {
        try await TestServer.run { server in
            let tenant = try await server.signUp()
            let reply = try await server.call(
                .post, "/v1/issuers", key: tenant.key,
                json: """
                    {"ruc": "1790012345001", "legalName": "Acme", "establishment": "001", "emissionPoint": "001",
                     "headOfficeAddress": "", "accountingRequired": "yes", "specialTaxpayer": "AB",
                     "withholdingAgent": "123456789", "rimpe": "GRANDE"}
                    """)
            reply.assertProblem(400, "VALIDATION_ERROR")
            XCTAssertEqual(
                Set(reply.errorFields), ["headOfficeAddress", "accountingRequired", "specialTaxpayer", "withholdingAgent", "rimpe"])
            for (field, value) in [
                ("specialTaxpayer", #""12345678901234""#), ("specialTaxpayer", #""AB-12""#), ("withholdingAgent", #""12a""#),
                ("withholdingAgent", "12"), ("accountingRequired", "null"), ("rimpe", #""emprendedor""#),
                ("headOfficeAddress", "\"\(String(repeating: "x", count: 301))\""),
            ] {
                let bad = try await server.call(
                    .post, "/v1/issuers", key: tenant.key,
                    json:
                        #"{"ruc": "1790012345001", "legalName": "A", "establishment": "001", "emissionPoint": "001", "\#(field)": \#(value)}"#
                )
                bad.assertProblem(400, "VALIDATION_ERROR")
                XCTAssertEqual(bad.errorFields, [field], "\(field): \(value)")
            }
            XCTAssertEqual(try TestDatabase.scalar("SELECT count(*) FROM issuers WHERE tenant_id = $1", [tenant.id], as: Int.self), 0)
        }
    }

    func testPatchChangesOnlyWhatItNamesAndIsAudited() async throws {
        try await TestServer.run { server in
            let tenant = try await server.signUp()
            let id = try await server.createIssuer(tenant.key)
            let first = try await server.call(
                .patch, "/v1/issuers/\(id)", key: tenant.key,
                json: #"{"headOfficeAddress": "Quito", "rimpe": "EMPRENDEDOR", "tradeName": "Acme Store", "accountingRequired": true}"#)
            XCTAssertEqual(first.status, 200, first.text)
            XCTAssertEqual(first.value(["ok"]), .bool(true))
            XCTAssertEqual(try first.string("issuer", "headOfficeAddress"), "Quito")
            XCTAssertEqual(try first.string("issuer", "rimpe"), "EMPRENDEDOR")
            XCTAssertEqual(try first.string("issuer", "tradeName"), "Acme Store")
            XCTAssertEqual(first.value(["issuer", "accountingRequired"]), .bool(true))

            // null clears an optional field; absent members stay as they were.
            let second = try await server.call(
                .patch, "/v1/issuers/\(id)", key: tenant.key, json: #"{"rimpe": null, "legalName": "Acme 2"}"#)
            XCTAssertEqual(second.status, 200, second.text)
            XCTAssertTrue(second.isNull("issuer", "rimpe"))
            XCTAssertEqual(try second.string("issuer", "legalName"), "Acme 2")
            XCTAssertEqual(try second.string("issuer", "headOfficeAddress"), "Quito")
            XCTAssertEqual(try second.string("issuer", "tradeName"), "Acme Store")
            XCTAssertEqual(second.value(["issuer", "accountingRequired"]), .bool(true))

            let fetched = try await server.call(.get, "/v1/issuers/\(id)", key: tenant.key)
            XCTAssertEqual(try fetched.string("issuer", "legalName"), "Acme 2")
            XCTAssertEqual(
                try TestDatabase.scalar(
                    "SELECT count(*) FROM audit_events WHERE tenant_id = $1 AND action = 'issuer.updated'", [tenant.id], as: Int.self), 2)
        }
    }

    func testPatchRefusesTheBranchIdentityAndBadValuesAndChangesNothing() async throws {
        try await TestServer.run { server in
            let tenant = try await server.signUp()
            let id = try await server.createIssuer(tenant.key)
            for field in ["ruc", "establishment", "emissionPoint"] {
                let reply = try await server.call(
                    .patch, "/v1/issuers/\(id)", key: tenant.key, json: #"{"\#(field)": "002", "headOfficeAddress": "Guayaquil"}"#)
                reply.assertProblem(400, "VALIDATION_ERROR")
                XCTAssertEqual(reply.errorFields, [field])
            }
            let invalid = try await server.call(
                .patch, "/v1/issuers/\(id)", key: tenant.key,
                json: #"{"legalName": null, "specialTaxpayer": "x", "headOfficeAddress": "Guayaquil"}"#)
            invalid.assertProblem(400, "VALIDATION_ERROR")
            XCTAssertEqual(Set(invalid.errorFields), ["legalName", "specialTaxpayer"])
            let unchanged = try await server.call(.get, "/v1/issuers/\(id)", key: tenant.key)
            XCTAssertEqual(
                try unchanged.string("issuer", "headOfficeAddress"), "Av. Amazonas N34-451, Quito", "a refused PATCH changes nothing")
            XCTAssertEqual(
                try TestDatabase.scalar(
                    "SELECT count(*) FROM audit_events WHERE tenant_id = $1 AND action = 'issuer.updated'", [tenant.id], as: Int.self), 0)

            let other = try await server.signUp()
            let foreign = try await server.call(.patch, "/v1/issuers/\(id)", key: other.key, json: #"{"headOfficeAddress": "Guayaquil"}"#)
            foreign.assertProblem(404, "NOT_FOUND")
            for path in ["/v1/issuers/0", "/v1/issuers/abc"] {
                let missing = try await server.call(.patch, path, key: tenant.key, json: #"{"headOfficeAddress": "Guayaquil"}"#)
                missing.assertProblem(404, "NOT_FOUND")
            }
            // 401, then 404, then the body's 400, whatever the body.
            for (path, key) in [("/v1/issuers/abc", tenant.key), ("/v1/issuers/0", tenant.key), ("/v1/issuers/\(id)", other.key)] {
                for body in ["{", "[]", #"{"ruc": "002"}"#] {
                    let missing = try await server.call(.patch, path, key: key, json: body)
                    missing.assertProblem(404, "NOT_FOUND")
                }
            }
            let badBody = try await server.call(.patch, "/v1/issuers/\(id)", key: tenant.key, json: "[]")
            badBody.assertProblem(400, "VALIDATION_ERROR")
            let anonymous = try await server.call(.patch, "/v1/issuers/\(id)", json: #"{"ruc": "1"}"#)
            anonymous.assertProblem(401, "UNAUTHORIZED")
            // The database holds the branch identity even against a direct update.
            // issuers_identity_is_fixed refuses it (refuse_change: SQLSTATE 23000, its reason).
            let branch = "SELECT establishment FROM issuers WHERE id = $1"
            let establishment = try TestDatabase.scalar(branch, [id], as: String.self)
            XCTAssertNotEqual(establishment, "009")
            XCTAssertThrowsError(try TestDatabase.query("UPDATE issuers SET establishment = '009' WHERE id = $1", [id])) { error in
                let refused = error as? PostgresError
                XCTAssertEqual(refused?.sqlState, "23000", "\(error)")
                XCTAssertTrue(refused?.message.contains("establishment and emission point are fixed") == true, "\(error)")
            }
            XCTAssertEqual(try TestDatabase.scalar(branch, [id], as: String.self), establishment)
        }
    }
}
