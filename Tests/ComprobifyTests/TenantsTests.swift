import HTTPTypes
import Postgres
import TestSupport
import XCTest

@testable import Comprobify

final class TenantsTests: XCTestCase {
    func testSignUpCreatesASandboxTenantWithOneKeyAndAQueuedVerification() async throws {
        try await TestServer.run { server in
            let email = TestServer.uniqueEmail("Mixed.Case")
            let reply = try await server.call(.post, "/v1/tenants", json: #"{"email": "\#(email)", "name": "Ñandú S.A."}"#)
            XCTAssertEqual(reply.status, 201, reply.text)
            XCTAssertEqual(reply.headers[.cacheControl], "no-store")
            XCTAssertEqual(try reply.string("tenant", "status"), "PENDING_VERIFICATION")
            XCTAssertEqual(try reply.string("tenant", "environment"), "sandbox")
            XCTAssertEqual(try reply.string("tenant", "name"), "Ñandú S.A.")
            XCTAssertTrue(reply.isNull("tenant", "promotedAt"))
            XCTAssertNotNil(try reply.string("tenant", "createdAt").wholeMatch(of: /\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z/))
            let key = try reply.string("apiKey")
            XCTAssertNotNil(key.wholeMatch(of: /cfy_test_[0-9a-f]{64}/))
            let id = try reply.int("tenant", "id")

            let keys = try await server.call(.get, "/v1/keys", key: key)
            XCTAssertEqual(try keys.array("keys").count, 1)
            XCTAssertEqual(try keys.string("keys", 0, "label"), "Initial sandbox key")
            XCTAssertEqual(try keys.string("keys", 0, "environment"), "sandbox")
            XCTAssertEqual(try keys.string("keys", 0, "prefix"), String(key.prefix(14)))
            XCTAssertFalse(keys.text.contains(key), "the plaintext is never listed")

            let owner = try TestDatabase.owner()
            let outbox = try owner.query("SELECT recipient, body FROM email_outbox WHERE tenant_id = $1", [id], prepared: false)
            XCTAssertEqual(outbox.count, 1)
            XCTAssertEqual(try outbox[0].decode(String.self, at: 0), email)
            let stored = try owner.query("SELECT token_digest FROM api_keys WHERE tenant_id = $1", [id], prepared: false)
            XCTAssertEqual(try stored[0].decode(Data.self, at: 0), Crypto.sha256(key), "only the digest is stored")
            let audit = try owner.query(
                "SELECT action, actor FROM audit_events WHERE tenant_id = $1 ORDER BY id", [id], prepared: false)
            XCTAssertEqual(try audit.rows.map { try $0.decode(String.self, at: 0) }, ["tenant.signed_up", "api_key.minted"])

            let duplicate = try await server.call(.post, "/v1/tenants", json: #"{"email": "\#(email.uppercased())", "name": "Other"}"#)
            duplicate.assertProblem(409, "CONFLICT", reason: "ALREADY_EXISTS")
        }
    }

    /// An address written with a combining accent is the same address as its
    /// composed form: the second sign-up is 409. Each is stored as sent.
    func testAnAccentComposedOrNotIsOneAddress() async throws {
        try await TestServer.run { server in
            let local = "jos\u{E9}" + Crypto.hex(Crypto.randomBytes(4))
            let composed = try await server.call(.post, "/v1/tenants", json: #"{"email": "\#(local)@example.ec", "name": "A"}"#)
            XCTAssertEqual(composed.status, 201, composed.text)
            let decomposed = local.decomposedStringWithCanonicalMapping
            XCTAssertNotEqual(Array(decomposed.unicodeScalars), Array(local.unicodeScalars))
            let again = try await server.call(.post, "/v1/tenants", json: #"{"email": "\#(decomposed)@example.ec", "name": "B"}"#)
            again.assertProblem(409, "CONFLICT", reason: "ALREADY_EXISTS")
            let first = try await server.call(.post, "/v1/tenants", json: #"{"email": "x\#(decomposed)@example.ec", "name": "C"}"#)
            let stored = try first.string("tenant", "email")
            XCTAssertEqual(Array(stored.unicodeScalars), Array("x\(decomposed)@example.ec".unicodeScalars), "stored as sent")
            // And the other way round: composed after decomposed, in any case.
            let upper = try await server.call(.post, "/v1/tenants", json: #"{"email": "X\#(local.uppercased())@EXAMPLE.EC", "name": "D"}"#)
            upper.assertProblem(409, "CONFLICT", reason: "ALREADY_EXISTS")
            // 254 characters as sent, which NFC would make 264 (U+0958 is two
            // in NFC): within the limit, and kept as sent.
            // (A local part of 64 bytes, the most: ten U+0958 are 30; the rest
            // in the domain's labels.)
            let growing =
                String(repeating: "\u{958}", count: 10) + Crypto.hex(Crypto.randomBytes(4)) + String(repeating: "a", count: 26)
                + "@" + String(repeating: "a", count: 63) + "." + String(repeating: "b", count: 63) + "."
                + String(repeating: "c", count: 63) + "." + String(repeating: "d", count: 14) + ".ec"
            XCTAssertEqual(growing.unicodeScalars.count, 254)
            let long = try await server.call(.post, "/v1/tenants", json: #"{"email": "\#(growing)", "name": "E"}"#)
            XCTAssertEqual(long.status, 201, long.text)
            XCTAssertEqual(Array(try long.string("tenant", "email").unicodeScalars), Array(growing.unicodeScalars))
        }
    }

    func testSignUpValidation() async throws {
        try await TestServer.run { server in
            for (body, field) in [
                (#"{"name": "X"}"#, "email"),
                (#"{"email": "not-an-email", "name": "X"}"#, "email"),
                (#"{"email": "a b@example.ec", "name": "X"}"#, "email"),
                (#"{"email": "a@\#(String(repeating: "x", count: 250)).ec", "name": "X"}"#, "email"),
                (#"{"email": "ok@example.ec", "name": ""}"#, "name"),
                (#"{"email": "ok@example.ec", "name": "\#(String(repeating: "n", count: 201))"}"#, "name"),
                (#"{"email": "ok@example.ec", "name": 7}"#, "name"),
                // An "@" followed by a combining mark is still a second "@".
                (#"{"email": "a@b@\u0301c.ec", "name": "X"}"#, "email"),
                (#"{"email": "a@example.ec\u0085", "name": "X"}"#, "email"),
                // Invisible characters: an address that looks like another's.
                (#"{"email": "ops\u200b@example.ec", "name": "X"}"#, "email"),
                (#"{"email": "ops@exam\u202eple.ec", "name": "X"}"#, "email"),
                (#"{"email": "ops@example.ec\u0090", "name": "X"}"#, "email"),
                (#"{"email": "ops\uffff@example.ec", "name": "X"}"#, "email"),
                // Addresses no mail could reach.
                (#"{"email": "c@example..ec", "name": "X"}"#, "email"),
                (#"{"email": "p@.example.ec", "name": "X"}"#, "email"),
                (#"{"email": "p@example.ec.", "name": "X"}"#, "email"),
                (#"{"email": "p@-x.ec", "name": "X"}"#, "email"),
                (#"{"email": "p@x_y.ec", "name": "X"}"#, "email"),
                (#"{"email": ".p@x.ec", "name": "X"}"#, "email"),
                (#"{"email": "p..x@x.ec", "name": "X"}"#, "email"),
                (#"{"email": "p@x.e", "name": "X"}"#, "email"),
                (#"{"email": "p@192.0.2.1", "name": "X"}"#, "email"),
                (#"{"email": "\#(String(repeating: "p", count: 65))@example.ec", "name": "X"}"#, "email"),
            ] {
                let reply = try await server.call(.post, "/v1/tenants", json: body)
                reply.assertProblem(400, "VALIDATION_ERROR")
                XCTAssertEqual(reply.errorFields, [field], body)
            }
            let name200 = String(repeating: "ñ", count: 200)
            let ok = try await server.call(.post, "/v1/tenants", json: #"{"email": "\#(TestServer.uniqueEmail())", "name": "\#(name200)"}"#)
            XCTAssertEqual(ok.status, 201, ok.text)
        }
    }

    static func outboxToken(_ tenantID: Int64) throws -> String {
        let body = try TestDatabase.scalar(
            "SELECT body FROM email_outbox WHERE tenant_id = $1 ORDER BY id DESC LIMIT 1", [tenantID], as: String.self
        )
        return String(body.suffix(64))
    }

    /// Once support has verified a tenant, the emailed link is a used token:
    /// 400, and no second verification in the audit log.
    func testTheEmailedTokenIsDeadOnceSupportVerified() async throws {
        try await TestServer.run { server in
            let tenant = try await server.signUp()
            let token = try TenantsTests.outboxToken(tenant.id)
            let support = try await server.call(.post, "/admin/v1/tenants/\(tenant.id)/verify-email", key: adminToken)
            XCTAssertEqual(support.status, 200, support.text)
            let late = try await server.call(.post, "/v1/tenants/verify-email", json: #"{"token": "\#(token)"}"#)
            late.assertProblem(400, "BAD_REQUEST")
            let verifications = try TestDatabase.scalar(
                "SELECT count(*) FROM audit_events WHERE tenant_id = $1 AND action = 'tenant.email_verified'", [tenant.id], as: Int64.self)
            XCTAssertEqual(verifications, 1)
        }
    }

    func testEmailVerificationIsSingleUseAndExpires() async throws {
        try await TestServer.run { server in
            let tenant = try await server.signUp()
            let forbidden = try await server.call(.post, "/v1/keys", key: tenant.key, json: "{}")
            forbidden.assertProblem(403, "FORBIDDEN")

            let token = try TenantsTests.outboxToken(tenant.id)
            // Any string that is not a live token is the same 400 BAD_REQUEST, empty or long.
            for unknown in ["", String(repeating: "f", count: 300)] {
                let reply = try await server.call(.post, "/v1/tenants/verify-email", json: #"{"token": "\#(unknown)"}"#)
                reply.assertProblem(400, "BAD_REQUEST")
            }
            let bad = try await server.call(.post, "/v1/tenants/verify-email", json: #"{"token": "nope"}"#)
            bad.assertProblem(400, "BAD_REQUEST")
            let ok = try await server.call(.post, "/v1/tenants/verify-email", json: #"{"token": "\#(token)"}"#)
            XCTAssertEqual(ok.status, 200, ok.text)
            let again = try await server.call(.post, "/v1/tenants/verify-email", json: #"{"token": "\#(token)"}"#)
            again.assertProblem(400, "BAD_REQUEST")
            let me = try await server.call(.get, "/v1/tenants/me", key: tenant.key)
            XCTAssertEqual(try me.string("tenant", "status"), "ACTIVE")
            XCTAssertEqual(try me.int("tenant", "id"), tenant.id)

            let resend = try await server.call(.post, "/v1/tenants/resend-verification", key: tenant.key)
            resend.assertProblem(409, "CONFLICT", reason: "ALREADY_VERIFIED")

            let other = try await server.signUp()
            try TestDatabase.query(
                "UPDATE email_verifications SET created_at = now() - interval '49 hours', expires_at = now() - interval '1 hour' WHERE tenant_id = $1",
                [other.id]
            )
            let expired = try await server.call(
                .post, "/v1/tenants/verify-email", json: #"{"token": "\#(try TenantsTests.outboxToken(other.id))"}"#)
            expired.assertProblem(400, "BAD_REQUEST")
            let actions = try TestDatabase.query("SELECT action FROM audit_events WHERE tenant_id = $1 ORDER BY id", [tenant.id])
            XCTAssertEqual(
                try actions.rows.map { try $0.decode(String.self, at: 0) }, ["tenant.signed_up", "api_key.minted", "tenant.email_verified"])
        }
    }

    func testResendInvalidatesEarlierTokensAndIsLimited() async throws {
        try await TestServer.run { server in
            let tenant = try await server.signUp()
            let first = try TenantsTests.outboxToken(tenant.id)
            for _ in 0..<5 {
                let reply = try await server.call(.post, "/v1/tenants/resend-verification", key: tenant.key)
                XCTAssertEqual(reply.status, 200, reply.text)
            }
            let limited = try await server.call(.post, "/v1/tenants/resend-verification", key: tenant.key)
            limited.assertProblem(429, "RATE_LIMITED")
            XCTAssertNotNil(limited.headers[.retryAfter].flatMap(Int.init))
            // Five resends, the sign-up's email aside: the detail counts what the limit counts.
            XCTAssertEqual(try limited.string("detail"), "At most 5 resends of the verification email an hour; try again later.")
            let stale = try await server.call(.post, "/v1/tenants/verify-email", json: #"{"token": "\#(first)"}"#)
            stale.assertProblem(400, "BAD_REQUEST")
            let latest = try await server.call(
                .post, "/v1/tenants/verify-email", json: #"{"token": "\#(try TenantsTests.outboxToken(tenant.id))"}"#)
            XCTAssertEqual(latest.status, 200, latest.text)
        }
    }

    /// Resends racing each other still stop at five an hour: the count is read
    /// with the tenant row held.
    func testConcurrentResendsStopAtTheLimit() async throws {
        try await TestServer.run(configure: { $0.poolSize = 8 }) { server in
            let tenant = try await server.signUp()
            let replies = try await concurrently(12) { _ in
                try await server.call(.post, "/v1/tenants/resend-verification", key: tenant.key)
            }
            XCTAssertEqual(replies.filter { $0.status == 200 }.count, 5, replies.map(\.text).joined(separator: "\n"))
            XCTAssertEqual(replies.filter { $0.status == 429 }.count, 7, replies.map(\.text).joined(separator: "\n"))
            XCTAssertEqual(
                try TestDatabase.scalar(
                    "SELECT count(*) FROM audit_events WHERE tenant_id = $1 AND action = 'tenant.verification_resent'", [tenant.id],
                    as: Int.self), 5)
        }
    }

    /// With TRUST_PROXY=1 the last X-Forwarded-For hop is kept to 255 code
    /// points, as the schema counts them, whatever characters it is made of.
    func testAForwardedForOfCombiningCharactersIsCutByCodePoints() async throws {
        try await TestServer.run(configure: {
            $0.trustProxy = true; $0.signupRateLimit = 5
        }) { server in
            let hop = Crypto.hex(Crypto.randomBytes(4)) + String(repeating: "e\u{301}", count: 200)
            let reply = try await server.call(
                .post, "/v1/tenants", headers: [.forwardedFor: hop], json: #"{"email": "\#(TestServer.uniqueEmail())", "name": "X"}"#)
            XCTAssertEqual(reply.status, 201, reply.text)
            let stored = String(String.UnicodeScalarView(hop.unicodeScalars.prefix(255)))
            XCTAssertEqual(
                try TestDatabase.scalar("SELECT count(*) FROM signup_attempts WHERE client_address = $1", [stored], as: Int.self), 1)
        }
    }

    func testSignUpRateLimitPerClientAddress() async throws {
        let address = "203.0.113.\(Int.random(in: 1...250))-\(Crypto.hex(Crypto.randomBytes(3)))"
        try await TestServer.run(configure: {
            $0.signupRateLimit = 2; $0.trustProxy = true
        }) { server in
            // The proxy appends the address it saw; what comes before it the
            // client wrote, and a new value each time gets it nothing.
            for hop in ["", "198.51.100.7, "] {
                let reply = try await server.call(
                    .post, "/v1/tenants", headers: [.forwardedFor: hop + address],
                    json: #"{"email": "\#(TestServer.uniqueEmail())", "name": "X"}"#
                )
                XCTAssertEqual(reply.status, 201, reply.text)
            }
            let limited = try await server.call(
                .post, "/v1/tenants", headers: [.forwardedFor: "10.0.0.\(Int.random(in: 1...250)), \(address)"],
                json: #"{"email": "\#(TestServer.uniqueEmail())", "name": "X"}"#
            )
            limited.assertProblem(429, "RATE_LIMITED")
            let retryAfter = try XCTUnwrap(limited.headers[.retryAfter].flatMap(Int.init))
            XCTAssertTrue((1...3600).contains(retryAfter))
            let otherAddress = try await server.call(
                .post, "/v1/tenants", headers: [.forwardedFor: address + "-other"],
                json: #"{"email": "\#(TestServer.uniqueEmail())", "name": "X"}"#
            )
            XCTAssertEqual(otherAddress.status, 201)
        }
        // Without TRUST_PROXY the header is ignored: the limit applies to the peer
        // address, so two "different" forwarded addresses share one allowance.
        // The peer is a loopback address of this test's own, from which no
        // other test has signed up within the hour.
        try await TestServer.run(configure: { $0.signupRateLimit = 1 }) { server in
            let peer = "127.\(Int.random(in: 1...254)).\(Int.random(in: 1...254)).\(Int.random(in: 1...254))"
            var statuses: [String] = []
            for hop in ["198.51.100.1", "198.51.100.2"] {
                let body = #"{"email": "\#(TestServer.uniqueEmail())", "name": "X"}"#
                let socket = try RawSocket(port: server.port, from: peer)
                socket.send(
                    "POST /v1/tenants HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Forwarded-For: \(hop)\r\n"
                        + "Connection: close\r\nContent-Length: \(body.utf8.count)\r\n\r\n" + body)
                statuses.append(String(socket.readAll(within: 5).prefix(12)))
            }
            XCTAssertEqual(statuses, ["HTTP/1.1 201", "HTTP/1.1 429"])
            XCTAssertEqual(
                try TestDatabase.scalar("SELECT count(*) FROM signup_attempts WHERE client_address = $1", [peer], as: Int.self), 1,
                "kept under the peer's address, not the header's")
        }
    }

    /// An IPv6 client is given a whole /64: the limit counts the /64, so
    /// addresses rotated within it share one allowance; another /64 has its
    /// own, and an IPv4-mapped address counts as its IPv4 address.
    func testSignUpRateLimitCountsAnIPv6ClientByItsSlash64() async throws {
        // Groups of four hex digits without a leading zero, written as the
        // limit writes a /64 (lower case, no leading zeros).
        func group() -> String { String(UInt16.random(in: 0x1000...0xfffe), radix: 16) }
        let (third, fourth) = (group(), group())
        let network = "2001:db8:\(third):\(fourth)"
        let neighbour = "2001:db8:\(third):\(String(UInt16(fourth, radix: 16)! + 1, radix: 16))"
        let ipv4 = "198.18.\(Int.random(in: 0...255)).\(Int.random(in: 1...254))"
        XCTAssertEqual(IPAddress("2001:0DB8:0001:00a0:1:2:3:4")?.clientNetwork, "2001:db8:1:a0::/64", "written one way whatever the input")
        XCTAssertEqual(IPAddress("::ffff:192.0.2.7")?.clientNetwork, "192.0.2.7")
        // A hop written with its port counts as its address; text that is no address is kept as it is.
        XCTAssertEqual(TenantsController.signupClient("192.0.2.7:51234"), "192.0.2.7")
        XCTAssertEqual(TenantsController.signupClient("[2001:db8:1:2::9]:443"), "2001:db8:1:2::/64")
        XCTAssertEqual(TenantsController.signupClient("2001:db8:1:2::9"), "2001:db8:1:2::/64")
        XCTAssertEqual(TenantsController.signupClient("unknown"), "unknown")
        XCTAssertEqual(TenantsController.signupClient("_hidden:1"), "_hidden:1")
        try await TestServer.run(configure: {
            $0.signupRateLimit = 2; $0.trustProxy = true
        }) { server in
            func signUp(from address: String) async throws -> Int {
                try await server.call(
                    .post, "/v1/tenants", headers: [.forwardedFor: address],
                    json: #"{"email": "\#(TestServer.uniqueEmail())", "name": "X"}"#
                ).status
            }
            var statuses: [Int] = []
            for address in ["\(network)::1", "\(network):0:0:0:2", "\(network):ffff:ffff:ffff:ffff", "\(neighbour)::1"] {
                statuses.append(try await signUp(from: address))
            }
            XCTAssertEqual(statuses, [201, 201, 429, 201], "the third is in the same /64, the fourth in another")
            XCTAssertEqual(
                try TestDatabase.scalar(
                    "SELECT count(*) FROM signup_attempts WHERE client_address = $1", ["\(network)::/64"], as: Int.self), 2,
                "two kept under the /64 (a refused attempt is not kept)")
            XCTAssertEqual(
                try TestDatabase.scalar(
                    "SELECT count(*) FROM signup_attempts WHERE client_address = $1", ["\(neighbour)::/64"], as: Int.self), 1)
            statuses = []
            for address in [ipv4, "::ffff:\(ipv4)", ipv4] {
                statuses.append(try await signUp(from: address))
            }
            XCTAssertEqual(statuses, [201, 201, 429], "an IPv4-mapped address is its IPv4 address")
        }
    }
}
