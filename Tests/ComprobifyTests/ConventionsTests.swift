import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import Postgres
import TestSupport
import XCTest

@testable import Comprobify

/// The "Conventions" section of API.md: problem documents, request ids,
/// authentication failures, body limits.
final class ConventionsTests: XCTestCase {
    func testUnknownRouteIsAProblemDocument() async throws {
        try await TestServer.run { server in
            let reply = try await server.call(.get, "/v1/nothing-here")
            reply.assertProblem(404, "NOT_FOUND")
            XCTAssertEqual(try reply.string("instance"), "/v1/nothing-here")
        }
    }

    func testRequestIDIsEchoedWhenSaneAndGeneratedOtherwise() async throws {
        try await TestServer.run { server in
            let echoed = try await server.call(.get, "/healthz", headers: [.requestID: "client-id_1.2"])
            XCTAssertEqual(echoed.headers[.requestID], "client-id_1.2")
            let replaced = try await server.call(.get, "/healthz", headers: [.requestID: "bad id <script>"])
            let fresh = try XCTUnwrap(replaced.headers[.requestID])
            XCTAssertNotEqual(fresh, "bad id <script>")
            XCTAssertTrue(fresh.allSatisfy { $0.isLetter || $0.isNumber })
            let problem = try await server.call(.get, "/v1/keys", headers: [.requestID: "trace-me"])
            XCTAssertEqual(try problem.string("requestId"), "trace-me")
        }
    }

    func testEveryAuthenticationFailureIsTheSame401() async throws {
        try await TestServer.run { server in
            let tenant = try await server.signUp()
            let revoked = try await server.call(.post, "/admin/v1/tenants/\(tenant.id)/keys", key: adminToken, json: "{}")
            let revokedKey = try revoked.string("apiKey")
            let keys = try await server.call(.get, "/v1/keys", key: tenant.key)
            let revokedID = try keys.array("keys").compactMap { $0["id"]?.intValue }.max()!
            let revocation = try await server.call(.delete, "/v1/keys/\(revokedID)", key: tenant.key)
            XCTAssertEqual(revocation.status, 200, revocation.text)

            let variants: [HTTPFields] = [
                [:],
                [.authorization: "Basic dXNlcjpwYXNz"],
                [.authorization: "Bearer"],
                [.authorization: "Bearer cfy_test_short"],
                [.authorization: "Bearer " + APIToken.generate(.sandbox).plaintext],
                [.authorization: "Bearer " + revokedKey],
                [.authorization: "Token " + tenant.key],
            ]
            var details = Set<String>()
            for headers in variants {
                let reply = try await server.call(.get, "/v1/keys", headers: headers)
                reply.assertProblem(401, "UNAUTHORIZED")
                details.insert(try reply.string("detail"))
            }
            XCTAssertEqual(details.count, 1, "the same message whatever the cause")
        }
    }

    /// A body with a Content-Encoding (gzip...) is refused naming the header,
    /// whether it is compressed or, mislabelled, plain JSON: read as sent it
    /// would be another body than the client meant. `identity` is the body as sent.
    func testAnEncodedBodyIsRefusedNamingContentEncoding() async throws {
        try await TestServer.run { server in
            let tenant = try await server.activeTenant()
            let contentEncoding = HTTPField.Name("Content-Encoding")!
            for encoding in ["gzip", "deflate, gzip", "br"] {
                let reply = try await server.call(
                    .post, "/v1/keys", key: tenant.key, headers: [contentEncoding: encoding], json: #"{"label": "encoded"}"#)
                reply.assertProblem(400, "VALIDATION_ERROR")
                XCTAssertEqual(reply.errorFields, ["Content-Encoding"], encoding)
            }
            let keys = try await server.call(.get, "/v1/keys", key: tenant.key)
            XCTAssertFalse(keys.text.contains("encoded"), "no key was minted: \(keys.text)")
            let identity = try await server.call(
                .post, "/v1/keys", key: tenant.key, headers: [contentEncoding: " Identity "], json: #"{"label": "plain"}"#)
            XCTAssertEqual(identity.status, 201, identity.text)
            // The order of answers holds (401 before 400), also for a chunked
            // body, which is read before the key is looked at.
            let chunked = try RawSocket(port: server.port)
            chunked.send(
                "POST /v1/keys HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer cfy_test_\(String(repeating: "0", count: 64))\r\n"
                    + "Content-Encoding: gzip\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n2\r\n{}\r\n0\r\n\r\n")
            let answer = chunked.readAll(within: 5)
            XCTAssertTrue(answer.hasPrefix("HTTP/1.1 401 "), answer)
        }
    }

    func testMalformedJSONWrongTypesAndOversizedBodies() async throws {
        try await TestServer.run { server in
            let tenant = try await server.activeTenant()
            let malformed = try await server.call(.post, "/v1/keys", key: tenant.key, json: #"{"label": "#)
            malformed.assertProblem(400, "VALIDATION_ERROR")
            XCTAssertEqual(malformed.errorFields, ["body"])

            let notObject = try await server.call(.post, "/v1/keys", key: tenant.key, json: "[1, 2]")
            notObject.assertProblem(400, "VALIDATION_ERROR")

            let wrongType = try await server.call(.post, "/v1/keys", key: tenant.key, json: #"{"label": 5, "environment": true}"#)
            wrongType.assertProblem(400, "VALIDATION_ERROR")
            XCTAssertEqual(Set(wrongType.errorFields), ["label", "environment"])

            let nul = try await server.call(.post, "/v1/keys", key: tenant.key, json: #"{"label": "a\u0000b"}"#)
            nul.assertProblem(400, "VALIDATION_ERROR")

            let huge = "{\"label\": \"" + String(repeating: "x", count: (1 << 20) + 10) + "\"}"
            let tooLarge = try await server.call(.post, "/v1/keys", key: tenant.key, json: huge)
            tooLarge.assertProblem(413, "PAYLOAD_TOO_LARGE")
            // Also on routes that never read a body.
            for (method, path) in [
                (HTTPRequest.Method.post, "/v1/tenants/resend-verification"), (.delete, "/v1/keys/1"), (.get, "/healthz"),
            ] {
                let reply = try await server.call(method, path, key: tenant.key, json: huge)
                reply.assertProblem(413, "PAYLOAD_TOO_LARGE")
            }
            XCTAssertEqual(
                try TestDatabase.scalar(
                    "SELECT count(*) FROM audit_events WHERE tenant_id = $1 AND action = 'tenant.verification_resent'", [tenant.id],
                    as: Int.self), 0, "the refused resend queued nothing")

            let extra = try await server.call(.post, "/v1/keys", key: tenant.key, json: #"{"label": "ok", "unknown": {"x": 1}}"#)
            XCTAssertEqual(extra.status, 201, "unknown fields are ignored")
            let count = try TestDatabase.scalar("SELECT count(*) FROM api_keys WHERE tenant_id = $1", [tenant.id], as: Int.self)
            XCTAssertEqual(count, 2, "only the valid request created a key")
        }
    }

    func testNothingInternalLeaksIntoErrors() async throws {
        try await TestServer.run { server in
            let tenant = try await server.activeTenant()
            let issuer = try await server.createIssuer(tenant.key)
            // An amount no decimal column could hold is refused by the rules, by name.
            let reply = try await server.issue(
                tenant.key, issuer: issuer, body: Bodies.factura().replacingOccurrences(of: #""10.75""#, with: "1e1000000"))
            reply.assertProblem(400, "VALIDATION_ERROR")
            XCTAssertEqual(reply.errorFields, ["items[0].unitPrice"])
            for leak in ["SQL", "sqlstate", "22003", "numeric", "postgres", "INSERT"] {
                XCTAssertFalse(reply.text.lowercased().contains(leak.lowercased()), "\(leak) in \(reply.text)")
            }
        }
    }
}

/// What a client sees when a transaction still fails on a serialization failure
/// or a deadlock after the pool's last retry, or outwaits the role's
/// lock_timeout: a retryable 503, never a 500.
final class ExhaustedRetryTests: XCTestCase {
    func testExhaustedRetriesAreA503WithRetryAfter() async throws {
        let router = Router(context: AppRequestContext.self)
        router.add(middleware: RequestMiddleware(logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })))
        for (path, sqlState) in [("conflict", "40001"), ("deadlock", "40P01"), ("lock-timeout", "55P03")] {
            router.get(RouterPath(path)) { _, _ -> Response in
                throw PostgresError(kind: .server, sqlState: SQLState(sqlState), message: "could not serialize access")
            }
        }
        try await Application(router: router).test(.router) { client in
            for path in ["/conflict", "/deadlock", "/lock-timeout"] {
                try await client.execute(uri: path, method: .get) { response in
                    XCTAssertEqual(response.status, .serviceUnavailable)
                    XCTAssertEqual(response.headers[.retryAfter], "1")
                    let body = String(buffer: response.body)
                    XCTAssertTrue(body.contains(#""code":"SERVICE_UNAVAILABLE""#), body)
                    XCTAssertFalse(body.contains("serialize"), body)
                }
            }
        }
    }
}
