import Foundation
import HTTPTypes
import TestSupport
import XCTest

@testable import Comprobify

/// Hostile input through the HTTP client, one table per kind of input. Every
/// case is answered as API.md says and never with a 5xx; every error is a
/// problem document that names the offending field and leaks nothing internal;
/// no server log line is an error. What needs raw sockets (framing, header
/// bytes, bodies sent slowly or cut short) is in scripts/hostile.
final class HostileInputTests: XCTestCase {
    static let sqlish = [
        "'; DROP TABLE tenants; --", "1 OR 1=1", "' OR '1'='1", "\" OR \"\"=\"", "'); DELETE FROM api_keys; --",
        "' UNION SELECT token_digest FROM api_keys --", "$1", "$$; SELECT pg_sleep(10); $$", "\\", "\\'", "%s%s%n%x",
        "{{7*7}}${7*7}", "<script>alert(1)</script>", "Robert'); DROP TABLE documents;--",
    ]
    static let unicode = [
        "\u{202E}evil\u{202C}.exe",  // right-to-left override
        "\u{1F600}\u{1F389}\u{1F469}\u{200D}\u{1F469}\u{200D}\u{1F467}\u{200D}\u{1F466}\u{1F1EA}\u{1F1E8}",  // emoji, ZWJ, flag
        "e\u{301}\u{302}\u{303}\u{304}",  // combining marks
        "Z\u{324}\u{354}\u{367}\u{311}a\u{308}\u{316}",  // zalgo-ish
        "\u{FEFF}BOM at start", "zero\u{200B}width\u{200D}join\u{2060}", "日本語テキスト", "עברית ومرحبا",
        "\u{10FFFF} max scalar", "nonchars \u{FFFE}\u{FFFF}", "𝕳𝖊𝖑𝖑𝖔 \u{1D11E}", "line\u{2028}para\u{2029}sep",
        "tab\tnew\nline\rcr", "ctl \u{1}\u{1F}\u{7F}\u{80}\u{9F}",
    ]
    static let badPathIDs = [
        "0", "-1", "99999999999999999999", "abc", "1.5", "1e3", "9223372036854775808", "%201", "1%3B", "%27%20OR%201%3D1", "0x10",
        "+1", "%EF%BC%91", "%00", "1%00", "-0",
    ]

    // MARK: - Authentication

    func testEveryAuthenticationVariantIsA401OnEveryRoute() async throws {
        try await hostile { server in
            let a = try await server.party()
            _ = try await server.mintKey(a.key, label: "second")
            let secondID = try await server.keyID(a.key, label: "second")
            let revoked = try await server.mintKey(a.key, label: "to revoke")
            let revokedID = try await server.keyID(a.key, label: "to revoke")
            try await server.call(.delete, "/v1/keys/\(revokedID)", key: a.key).assertSuccess(label: "revoke")
            let accessKey = try await server.issue(a.key, issuer: a.issuer).string("document", "accessKey")
            let unknown = "cfy_test_" + Crypto.hex(Crypto.randomBytes(32))
            let variants: [(String, String?)] = [
                ("no Authorization", nil), ("Basic scheme", "Basic dXNlcjpwYXNz"), ("empty header", ""),
                ("Bearer without token", "Bearer"), ("Bearer and a space", "Bearer "), ("short token", "Bearer cfy_test_abc"),
                ("non-hex token", "Bearer cfy_test_" + String(repeating: "g", count: 64)),
                ("upper-case hex token", "Bearer cfy_test_" + String(repeating: "A", count: 64)),
                ("65 hex chars", "Bearer cfy_test_" + String(repeating: "a", count: 65)),
                ("unknown prefix", "Bearer cfy_prod_" + String(repeating: "a", count: 64)),
                ("unknown well-formed sandbox token", "Bearer " + unknown),
                ("unknown well-formed live token", "Bearer cfy_live_" + Crypto.hex(Crypto.randomBytes(32))),
                ("valid key with a suffix", "Bearer \(a.key)x"), ("valid key, Token scheme", "Token \(a.key)"),
                ("valid key, no scheme", a.key), ("valid key, Basic scheme", "Basic \(a.key)"),
                ("SQL as token", "Bearer '; DROP TABLE tenants; --"), ("1 OR 1=1 as token", "Bearer 1 OR 1=1"),
                ("revoked key", "Bearer \(revoked)"), ("admin token as tenant key", "Bearer \(adminToken)"),
                ("scheme run into the key", "Bearer\(a.key)"), ("longer scheme", "Bearerx \(a.key)"),
                ("tab after the scheme", "Bearer\t\(a.key)"), ("scheme cut short", "Beare \(a.key)"),
                ("prefix in upper case", "Bearer CFY_TEST_" + a.key.dropFirst(9)),
                ("prefix off by one letter", "Bearer cfy_tesT_" + a.key.dropFirst(9)),
            ]
            let routes: [(HTTPRequest.Method, String, String?, Int64?)] = [
                (.get, "/v1/tenants/me", nil, nil), (.post, "/v1/tenants/resend-verification", nil, nil),
                (.post, "/v1/tenants/promote", "{}", nil), (.get, "/v1/keys", nil, nil), (.post, "/v1/keys", #"{"label": "x"}"#, nil),
                (.delete, "/v1/keys/\(secondID)", nil, nil), (.get, "/v1/issuers", nil, nil),
                (.post, "/v1/issuers", issuerJSON(establishment: "002", emissionPoint: "002"), nil),
                (.get, "/v1/issuers/\(a.issuer)", nil, nil), (.get, "/v1/issuers/\(a.issuer)/sequentials", nil, nil),
                (.get, "/v1/documents", nil, a.issuer), (.post, "/v1/documents", documentJSON(), a.issuer),
                (.get, "/v1/documents/\(accessKey)", nil, a.issuer),
            ]
            for (method, path, body, issuer) in routes {
                for (name, value) in variants {
                    let headers: HTTPFields = value.map { [.authorization: $0] } ?? [:]
                    let reply = try await server.call(method, path, issuer: issuer, headers: headers, json: body)
                    reply.assertHostileProblem(401, "UNAUTHORIZED", label: "\(method) \(path) with \(name)")
                }
            }
            let lowerCase = try await server.call(.get, "/v1/tenants/me", headers: [.authorization: "bearer \(a.key)"])
            lowerCase.assertSuccess(label: "lower-case 'bearer' scheme (schemes are case-insensitive)")
            let shouting = try await server.call(.get, "/v1/tenants/me", headers: [.authorization: "BeArEr   \(a.key)"])
            shouting.assertSuccess(label: "mixed-case scheme and three spaces (1*SP)")
            // Nothing those requests did may have changed A.
            let me = try await server.call(.get, "/v1/tenants/me", key: a.key)
            XCTAssertEqual(try me.string("tenant", "environment"), "sandbox")
            let labels = try await server.keyLabels(a.key)
            XCTAssertTrue(labels.contains("second"), "second key not revoked by an unauthenticated DELETE")
            XCTAssertFalse(labels.contains("x"), "no key minted by an unauthenticated POST /v1/keys")

            let pending = try await server.signUp()
            let adminVariants: [(String, String?)] = [
                ("no Authorization", nil), ("Basic scheme", "Basic " + adminToken), ("empty header", ""),
                ("Bearer without token", "Bearer"), ("wrong token", "Bearer not-the-admin-token"),
                ("admin token with a suffix", "Bearer \(adminToken)x"), ("admin token prefix", "Bearer \(adminToken.dropLast())"),
                ("tenant key", "Bearer \(a.key)"), ("SQL as token", "Bearer ' OR 1=1 --"),
            ]
            let adminRoutes: [(HTTPRequest.Method, String, String?)] = [
                (.post, "/admin/v1/tenants/\(pending.id)/verify-email", nil),
                (.post, "/admin/v1/tenants/\(a.id)/keys", #"{"label": "by admin"}"#),
                (.delete, "/admin/v1/tenants/\(a.id)/keys/\(secondID)", nil),
            ]
            for (method, path, body) in adminRoutes {
                for (name, value) in adminVariants {
                    let headers: HTTPFields = value.map { [.authorization: $0] } ?? [:]
                    let reply = try await server.call(method, path, headers: headers, json: body)
                    reply.assertHostileProblem(401, "UNAUTHORIZED", label: "\(method) \(path) with \(name)")
                }
            }
            let still = try await server.call(.get, "/v1/tenants/me", key: pending.key)
            XCTAssertEqual(try still.string("tenant", "status"), "PENDING_VERIFICATION", "not verified by bad admin auth")
        }
    }

    // MARK: - Strings stored verbatim

    func testSQLLookingAndUnicodeStringsAreStoredVerbatim() async throws {
        try await hostile { server in
            let a = try await server.party()
            for (strings, firstPoint) in [(Self.sqlish, 100), (Self.unicode, 200)] {
                for (n, text) in strings.enumerated() {
                    try await server.assertStoredVerbatim(text, n: n, emissionPoint: firstPoint + n, in: a)
                }
            }
            try await server.assertGapless(a)
        }
    }

    func testSQLLookingStringsWhereTheyAreNotLegal() async throws {
        try await hostile { server in
            let a = try await server.party()
            for text in Self.sqlish {
                let q = percentEncoded(text)
                for field in ["documentType", "limit", "after"] {
                    let reply = try await server.call(.get, "/v1/documents?\(field)=\(q)", key: a.key, issuer: a.issuer)
                    reply.assertHostileProblem(400, "VALIDATION_ERROR", field: field, label: "\(field)=\(text)")
                }
                let header = try await server.call(.get, "/v1/documents", key: a.key, headers: [.issuerID: text])
                header.assertHostileProblem(400, "VALIDATION_ERROR", label: "X-Issuer-Id: \(text)")
                try await server.call(.get, "/v1/issuers/\(q)", key: a.key).assertHostileProblem(404, "NOT_FOUND", label: text)
                try await server.call(.get, "/v1/documents/\(q)", key: a.key, issuer: a.issuer)
                    .assertHostileProblem(404, "NOT_FOUND", label: text)
                try await server.call(.delete, "/v1/keys/\(q)", key: a.key).assertHostileProblem(404, "NOT_FOUND", label: text)
                try await server.call(.post, "/v1/tenants/verify-email", json: #"{"token": \#(jsonString(text))}"#)
                    .assertHostileProblem(400, "BAD_REQUEST", label: "verify-email token \(text)")
                let ruc = #"{"ruc": \#(jsonString(text)), "legalName": "x", "establishment": "001", "emissionPoint": "001"}"#
                try await server.call(.post, "/v1/issuers", key: a.key, json: ruc)
                    .assertHostileProblem(400, "VALIDATION_ERROR", field: "ruc", label: "ruc \(text)")
                try await server.call(.post, "/v1/keys", key: a.key, json: #"{"environment": \#(jsonString(text))}"#)
                    .assertHostileProblem(400, "VALIDATION_ERROR", field: "environment", label: "environment \(text)")
            }
            // As Idempotency-Keys they are legal, and replay.
            for (n, text) in Self.sqlish.enumerated() {
                let body = documentJSON(metadata: #"{"idem": \#(n)}"#)
                let first = try await server.issue(a.key, issuer: a.issuer, headers: [.idempotencyKey: text], body: body)
                first.assertSuccess(201, label: "Idempotency-Key \(text)")
                let again = try await server.issue(a.key, issuer: a.issuer, headers: [.idempotencyKey: text], body: body)
                XCTAssertEqual(again.status, 201, again.text)
                XCTAssertEqual(again.headers[.idempotentReplayed], "true", "Idempotency-Key \(text) replays")
                XCTAssertEqual(try again.int("document", "id"), try first.int("document", "id"))
            }
            for local in ["o'brien", "x'or'1'='1", "a\"b--", "drop;table"] {
                let email = "\(local)-\(Crypto.hex(Crypto.randomBytes(4)))@example.ec"
                let reply = try await server.call(.post, "/v1/tenants", json: #"{"email": \#(jsonString(email)), "name": "SQL email"}"#)
                reply.assertSuccess(201, label: "email \(email)")
                let me = try await server.call(.get, "/v1/tenants/me", key: try reply.string("apiKey"))
                XCTAssertEqual(try me.string("tenant", "email"), email)
            }
            try await server.assertGapless(a)
        }
    }

    func testLengthLimitsCountUnicodeScalars() async throws {
        try await hostile { server in
            let a = try await server.party()
            let cases: [(String, Int, String, @Sendable (String) -> String)] = [
                ("label", 100, "/v1/keys", { #"{"label": \#($0)}"# }),
                ("legalName", 300, "/v1/issuers", { issuerJSON(establishment: "003", extra: #""legalName": \#($0)"#) }),
                ("tradeName", 300, "/v1/issuers", { issuerJSON(establishment: "003", extra: #""tradeName": \#($0)"#) }),
                ("name", 200, "/v1/tenants", { #"{"email": "\#(TestServer.uniqueEmail("len"))", "name": \#($0)}"# }),
            ]
            for (field, limit, path, make) in cases {
                let key = path == "/v1/tenants" ? nil : a.key
                for (unit, what) in [("ñ", "2-byte"), ("日", "3-byte"), ("😀", "4-byte"), ("e\u{301}", "combining pair")] {
                    let pair = unit.unicodeScalars.count > 1
                    let fits = String(repeating: unit, count: pair ? limit / 2 : limit)
                    let tooLong = pair ? fits + "x" : String(repeating: unit, count: limit + 1)
                    XCTAssertEqual(fits.unicodeScalars.count, limit)
                    XCTAssertEqual(tooLong.unicodeScalars.count, limit + 1)
                    let reply = try await server.call(.post, path, key: key, json: make(jsonString(fits)))
                    reply.assertSuccess(201, label: "\(field) of \(limit) \(what) scalars")
                    var stored: String?
                    if path == "/v1/issuers" {
                        stored = try? reply.string("issuer", field)
                    } else if path == "/v1/tenants" {
                        stored = try? reply.string("tenant", field)
                    } else {
                        stored = try await server.keyLabels(a.key).first { sameScalars($0, fits) }
                    }
                    XCTAssertTrue(sameScalars(stored, fits), "\(field) of \(limit) \(what) scalars read back verbatim")
                    let refused = try await server.call(.post, path, key: key, json: make(jsonString(tooLong, ascii: unit == "😀")))
                    refused.assertHostileProblem(400, "VALIDATION_ERROR", field: field, label: "\(field) of \(limit + 1) \(what)")
                }
                try await server.call(.post, path, key: key, json: make(#""""#))
                    .assertHostileProblem(400, "VALIDATION_ERROR", field: field, label: "\(field) empty")
            }
        }
    }

    // MARK: - NUL, surrogates, invalid UTF-8

    /// A run of more than 30 combining marks (Unicode's stream-safe limit) in
    /// a string or a member's name is refused while parsing, named by where
    /// it is: Swift's comparisons put such a run in canonical order at a cost
    /// that grows with the square of its length, and a name of 256 KiB of two
    /// alternating marks held a core for seconds in each lookup of a member.
    /// 30 marks in a row are text like any other.
    func testLongRunsOfCombiningMarksAreRefused() async throws {
        try await hostile { server in
            let a = try await server.party()
            let marks = { (count: Int) in String(repeating: "\u{301}\u{316}", count: count / 2) + (count % 2 == 1 ? "\u{301}" : "") }
            let thirty = try await server.call(.post, "/v1/keys", key: a.key, json: #"{"label": \#(jsonString("a" + marks(30)))}"#)
            XCTAssertEqual(thirty.status, 201, thirty.text)
            let labels = try await server.call(.get, "/v1/keys", key: a.key).array("keys").compactMap { $0["label"]?.stringValue }
            XCTAssertTrue(labels.contains { $0.utf8.elementsEqual(("a" + marks(30)).utf8) }, "stored as sent")
            let cases: [(String, Int64?, String, String)] = [
                ("/v1/keys", nil, #"{"label": \#(jsonString("a" + marks(31)))}"#, "label"),
                // Escaped, and one scalar (U+0F73) that decomposes into two marks.
                ("/v1/keys", nil, #"{"label": "a\#(String(repeating: #"\u0316"#, count: 31))"}"#, "label"),
                ("/v1/keys", nil, #"{"label": \#(jsonString(String(repeating: "\u{F73}", count: 16)))}"#, "label"),
                ("/v1/keys", nil, #"{"label": \#(jsonString("a" + String(repeating: "\u{344}", count: 16)))}"#, "label"),
                // 256 KiB of alternating marks: a member's name is named by its object.
                ("/v1/keys", nil, #"{\#(jsonString("a" + marks(65536))): 1, "label": "x"}"#, "body"),
                (
                    "/v1/issuers", nil, issuerJSON(establishment: "005", extra: #""legalName": \#(jsonString("n" + marks(65536)))"#),
                    "legalName"
                ),
                (
                    "/v1/documents", a.issuer,
                    jsonObject(replacing(facturaMembers(), "documentType", with: jsonString("01" + marks(65536)))),
                    "documentType"
                ),
            ]
            for (path, issuer, body, field) in cases {
                let reply = try await server.call(.post, path, key: a.key, issuer: issuer, json: body)
                reply.assertHostileProblem(400, "VALIDATION_ERROR", field: field, label: "\(path) \(field) with a long run of marks")
                XCTAssertTrue(reply.text.contains("more than 30 combining marks in a row"), "\(path) \(field): \(reply.text.prefix(300))")
            }
            XCTAssertEqual(try TestDatabase.scalar("SELECT count(*) FROM documents WHERE tenant_id = $1", [a.id], as: Int.self), 0)
        }
    }

    func testNULLoneSurrogatesAndInvalidUTF8AreRefused() async throws {
        try await hostile { server in
            let a = try await server.party()
            let v = try await server.party()
            let admin = "/admin/v1/tenants/\(a.id)/keys"
            let targets: [(String, String?, Int64?, @Sendable (String) -> String, String)] = [
                ("/v1/keys", a.key, nil, { #"{"label": \#(jsonString($0))}"# }, "label"),
                ("/v1/keys", a.key, nil, { #"{"environment": \#(jsonString("sandbox" + $0))}"# }, "environment"),
                (
                    "/v1/issuers", a.key, nil, { issuerJSON(establishment: "004", extra: #""legalName": \#(jsonString("n" + $0))"#) },
                    "legalName"
                ),
                (
                    "/v1/issuers", a.key, nil,
                    { issuerJSON(establishment: "004", emissionPoint: "002", extra: #""tradeName": \#(jsonString($0))"#) }, "tradeName"
                ),
                (
                    "/v1/issuers", a.key, nil,
                    { issuerJSON(establishment: "004", emissionPoint: "003", extra: #""address": \#(jsonString($0))"#) }, "address"
                ),
                ("/v1/tenants", nil, nil, { #"{"email": "\#(TestServer.uniqueEmail("nul"))", "name": \#(jsonString("n" + $0))}"# }, "name"),
                (
                    "/v1/tenants", nil, nil,
                    { #"{"email": \#(jsonString("nul" + $0 + Crypto.hex(Crypto.randomBytes(3)) + "@example.ec")), "name": "n"}"# }, "email"
                ),
                ("/v1/tenants/verify-email", nil, nil, { #"{"token": \#(jsonString(String(repeating: "a", count: 64) + $0))}"# }, "token"),
                ("/v1/documents", a.key, a.issuer, { documentJSON(metadata: #"{"v": \#(jsonString($0))}"#) }, "metadata"),
                // In a member's name the NUL is named by the object that holds the name.
                ("/v1/documents", a.key, a.issuer, { documentJSON(metadata: #"{\#(jsonString("k" + $0)): 1}"#) }, "metadata"),
                (
                    "/v1/documents", a.key, a.issuer, { documentJSON(metadata: #"{"deep": [{"deeper": ["ok", \#(jsonString($0))]}]}"#) },
                    "metadata"
                ),
                (
                    "/v1/documents", a.key, a.issuer,
                    { jsonObject(replacing(facturaMembers(), "documentType", with: jsonString("01" + $0))) },
                    "documentType"
                ),
                (
                    "/v1/documents", a.key, a.issuer, { jsonObject(facturaMembers() + [("issueDate", jsonString(guayaquilDate() + $0))]) },
                    "issueDate"
                ),
                ("/v1/documents", a.key, a.issuer, { facturaJSON(item: "description", jsonString("Widget" + $0)) }, "items[0].description"),
                ("/v1/documents", a.key, a.issuer, { facturaJSON(item: "unitPrice", jsonString("10.75" + $0)) }, "items[0].unitPrice"),
                (
                    "/v1/documents", a.key, a.issuer,
                    { Bodies.factura(extra: #""additionalInfo": [{"name": "Pedido", "value": \#(jsonString($0))}]"#) },
                    "additionalInfo[0].value"
                ),
                (admin, adminToken, nil, { #"{"label": \#(jsonString($0))}"# }, "label"),
                (
                    "/v1/tenants/promote", v.key, nil, { promoteJSON(v.issuer, type: jsonString("01" + $0)) },
                    "initialSequentials[0].documentType"
                ),
            ]
            for (path, key, issuer, make, field) in targets {
                for text in ["\u{0}", "a\u{0}b", "trailing\u{0}"] {
                    let reply = try await server.call(.post, path, key: key, issuer: issuer, json: make(text))
                    // A NUL is refused while parsing, and named by where it is.
                    reply.assertHostileProblem(400, "VALIDATION_ERROR", field: field, label: "\(path) \(field) with a NUL")
                }
            }
            // Bytes that are not JSON inside a string value name its field too.
            for (bytes, what) in [
                (Array(#"{"label":"a"#.utf8) + [0] + Array(#"b"}"#.utf8), "raw NUL byte inside a string"),
                (Array(#"{"label":"a"#.utf8) + [0x0a] + Array(#"b"}"#.utf8), "raw line feed inside a string"),
                (Array(#"{"label":"a"#.utf8) + [0xff] + Array(#"b"}"#.utf8), "invalid UTF-8 inside a string"),
            ] {
                try await server.send(.post, "/v1/keys", key: a.key, bytes)
                    .assertHostileProblem(400, "VALIDATION_ERROR", field: "label", label: "POST /v1/keys \(what)")
            }
            for (bytes, what) in [
                (Array(#"{"la"#.utf8) + [0xff] + Array(#"bel":"a"}"#.utf8), "invalid UTF-8 in a member's name"),
                (Array(#"{"label":"a"}"#.utf8) + [0], "raw NUL after the value"),
                ([0] + Array(#"{"label":"a"}"#.utf8), "raw NUL before the value"),
            ] {
                try await server.send(.post, "/v1/keys", key: a.key, bytes)
                    .assertHostileProblem(400, "VALIDATION_ERROR", label: "POST /v1/keys \(what)")
            }

            for escape in [#"\ud800"#, #"\udc00"#, #"a\ud800b"#, #"\ud800\ud800"#, #"\udc00\ud800"#, #"x\ud83d"#, #"\udfff"#] {
                let bodies: [(String, Int64?, String)] = [
                    ("/v1/keys", nil, #"{"label":"\#(escape)"}"#),
                    ("/v1/documents", a.issuer, documentJSON(metadata: #"{"v":"\#(escape)"}"#)),
                    ("/v1/documents", a.issuer, documentJSON(metadata: #"{"\#(escape)":1}"#)),
                    ("/v1/documents", a.issuer, facturaJSON(item: "description", #""\#(escape)""#)),
                    ("/v1/tenants", nil, #"{"email":"\#(TestServer.uniqueEmail("sur"))","name":"\#(escape)"}"#),
                    (
                        "/v1/issuers", nil,
                        #"{"ruc":"\#(randomRUC())","legalName":"\#(escape)","establishment":"005","emissionPoint":"001"}"#
                    ),
                ]
                for (path, issuer, body) in bodies {
                    try await server.call(.post, path, key: path == "/v1/tenants" ? nil : a.key, issuer: issuer, json: body)
                        .assertHostileProblem(400, "VALIDATION_ERROR", label: "\(path) \(body)")
                }
            }
            let pair = try await server.call(.post, "/v1/keys", key: a.key, json: #"{"label":"pair \ud83d\ude00"}"#)
            pair.assertSuccess(201, label: "a valid escaped surrogate pair")
            let labels = try await server.keyLabels(a.key)
            XCTAssertTrue(labels.contains { sameScalars($0, "pair 😀") }, "escaped surrogate pair stored as one scalar")
            let invalid: [([UInt8], String)] = [
                ([0xff], "byte 0xFF"), ([0xc0, 0xaf], "overlong encoding"), ([0xed, 0xa0, 0x80], "UTF-8 encoded surrogate"),
                ([0xe6, 0x97], "truncated sequence"), ([0xf4, 0x90, 0x80, 0x80], "scalar above U+10FFFF"),
                ([0x80], "lone continuation byte"),
            ]
            for (bad, what) in invalid {
                let bodies: [(String, Int64?, [UInt8])] = [
                    ("/v1/keys", nil, Array(#"{"label":"a"#.utf8) + bad + Array(#""}"#.utf8)),
                    ("/v1/documents", a.issuer, Array(documentJSON(metadata: #"{"v":"a\#u{1}"}"#).utf8).replacing([1], with: bad)),
                    ("/v1/documents", a.issuer, Array(documentJSON(metadata: #"{"k\#u{1}":1}"#).utf8).replacing([1], with: bad)),
                    ("/v1/documents", a.issuer, Array(facturaJSON(item: "description", "\"W\u{1}\"").utf8).replacing([1], with: bad)),
                ]
                for (path, issuer, body) in bodies {
                    try await server.send(.post, path, key: a.key, issuer: issuer, body)
                        .assertHostileProblem(400, "VALIDATION_ERROR", label: "\(path) with \(what)")
                }
            }
        }
    }

    // MARK: - Numbers

    func testHugeAndMalformedNumbers() async throws {
        try await hostile { server in
            let a = try await server.party()
            let v = try await server.party()
            let badNumbers = [
                "1e400", "99999999999999999999999", "9223372036854775808", "-1", "0", "1.5", "\"1\"", "true", "null", "[1]", "{}",
                "-9223372036854775809", "1e-400", "NaN", "Infinity", "0x10", "01",
            ]
            for n in badNumbers {
                let body = #"{"initialSequentials":[{"issuerId":\#(n),"documentType":"01","sequential":1}]}"#
                // Not an id at all, also when the JSON itself is invalid.
                try await server.call(.post, "/v1/tenants/promote", key: v.key, json: body)
                    .assertHostileProblem(400, "VALIDATION_ERROR", label: "promote issuerId \(n)")
            }
            for n in badNumbers + ["1000000000", "999999999999", "1e9"] {
                let body = #"{"initialSequentials":[{"issuerId":\#(v.issuer),"documentType":"01","sequential":\#(n)}]}"#
                try await server.call(.post, "/v1/tenants/promote", key: v.key, json: body)
                    .assertHostileProblem(400, "VALIDATION_ERROR", label: "promote sequential \(n)")
            }
            for n in ["1e400", "99999999999999999999999", "1.5", "true"] {
                try await server.call(.post, "/v1/keys", key: a.key, json: #"{"label":\#(n)}"#)
                    .assertHostileProblem(400, "VALIDATION_ERROR", field: "label", label: "label \(n)")
                try await server.call(
                    .post, "/v1/issuers", key: a.key, json: #"{"ruc":\#(n),"legalName":"x","establishment":"001","emissionPoint":"001"}"#
                )
                .assertHostileProblem(400, "VALIDATION_ERROR", field: "ruc", label: "ruc \(n)")
                try await server.call(.post, "/v1/documents", key: a.key, issuer: a.issuer, json: #"{"documentType":\#(n)}"#)
                    .assertHostileProblem(400, "VALIDATION_ERROR", field: "documentType", label: "documentType \(n)")
            }
            let queries = [
                "after=99999999999999999999", "after=1e400", "after=-1", "after=1.5", "after=", "limit=1e400", "limit=99999999999999999999",
                "limit=0", "limit=201", "limit=-1", "limit=1.5", "limit=", "limit=%2010", "limit=+5", "limit=%2B5", "after=+1",
            ]
            for query in queries {
                let field = String(query.prefix { $0 != "=" })
                try await server.call(.get, "/v1/documents?\(query)", key: a.key, issuer: a.issuer)
                    .assertHostileProblem(400, "VALIDATION_ERROR", field: field, label: query)
            }
            try await server.call(.get, "/v1/documents?after=9223372036854775807", key: a.key, issuer: a.issuer)
                .assertSuccess(label: "after=9223372036854775807")
            let issuerHeaders: [(String, Int)] = [
                ("99999999999999999999", 404), ("9223372036854775808", 404), ("0", 404), ("1e400", 400), ("-1", 400), ("1.5", 400),
                ("abc", 400), ("", 400), ("0x10", 400), ("\(a.issuer),\(a.issuer)", 400),
            ]
            for (value, status) in issuerHeaders {
                let code = status == 404 ? "NOT_FOUND" : "VALIDATION_ERROR"
                try await server.call(.get, "/v1/documents", key: a.key, headers: [.issuerID: value])
                    .assertHostileProblem(status, code, label: "X-Issuer-Id \(value)")
                try await server.call(.post, "/v1/documents", key: a.key, headers: [.issuerID: value], json: documentJSON())
                    .assertHostileProblem(status, code, label: "POST document X-Issuer-Id \(value)")
            }
            try await server.call(.get, "/v1/documents", key: a.key).assertHostileProblem(400, "VALIDATION_ERROR", label: "no X-Issuer-Id")

            // Any number in metadata is the client's: stored as json, it comes
            // back exactly as written, whatever PostgreSQL's numeric could hold.
            let numbers =
                #"{"a":99999999999999999999999,"b":1e400,"c":-1e-400,"d":123456789012345678901234567890.123456789,"e":-0,"f":1E+2,"g":1.50,"h":0.1e-0}"#
            try await server.assertRoundTrip(metadata: numbers, in: a, label: "metadata with huge numbers")
            for n in ["1e131071", "1e-16383", "1e131072", "1e-16384", "1e1000000", "-1e1000000", "1e-1000000", "-0.0E-00"] {
                try await server.assertRoundTrip(metadata: #"{"x":\#(n)}"#, in: a, label: "metadata number \(n)")
            }
            // The longest number the server's JSON parser reads (1000 characters)
            // comes back as written; longer ones anywhere in a body are refused
            // while parsing (a 400 naming the body), never a 5xx.
            let longest = "-1." + String(repeating: "0", count: 993) + "1e-5"
            XCTAssertEqual(longest.count, 1000)
            try await server.assertRoundTrip(metadata: #"{"x":\#(longest)}"#, in: a, label: "metadata number of 1000 characters")
            for digits in [1001, 16000, 200_001] {
                try await server.issue(
                    a.key, issuer: a.issuer, body: documentJSON(metadata: #"{"x":1\#(String(repeating: "0", count: digits - 1))}"#)
                )
                .assertHostileProblem(400, "VALIDATION_ERROR", field: "body", label: "metadata number of \(digits) digits")
            }

            // Amounts are exact decimals: a huge, malformed or non-numeric one is
            // a 400 naming its path, never a 5xx nor a rounded float.
            let badAmounts = [
                "1e400", "99999999999999999999999", "9223372036854775808", "1000000000000", "-1", "-0.01", "1e-400", "1e131072",
                "1e-1000000", "123456789012345678901234567890.123456789", #""1e400""#, #""NaN""#, #""Infinity""#, #""-Infinity""#,
                #""0x10""#, #""01""#, #"".5""#, #""5.""#, #""+1""#, #"" 1""#, #""1 ""#, #""1,50""#, #""""#, #""abc""#, "true", "[]",
                "{}", #"["1"]"#, #"{"value": "1"}"#, jsonString("１"), jsonString("1" + String(repeating: "0", count: 200_000)),
            ]
            let amountFields: [(String, @Sendable (String) -> String)] = [
                ("items[0].quantity", { facturaJSON(item: "quantity", $0) }),
                ("items[0].unitPrice", { facturaJSON(item: "unitPrice", $0) }),
                ("items[0].discount", { facturaJSON(item: "discount", $0) }),
                ("payments[0].total", { Bodies.factura(extra: #""payments": [{"method": "01", "total": \#($0)}]"#) }),
            ]
            for (field, make) in amountFields {
                for n in badAmounts {
                    try await server.issue(a.key, issuer: a.issuer, body: make(n))
                        .assertHostileProblem(400, "VALIDATION_ERROR", field: field, label: "\(field) \(n.prefix(40))")
                }
            }
            for (field, n) in [
                ("items[0].quantity", "0.0000001"), ("items[0].unitPrice", "10.7500001"), ("items[0].discount", "0.505"),
                ("payments[0].total", "24.151"), ("items[0].quantity", "0"), ("payments[0].total", "0"),
            ] {
                let item = String(field.dropFirst("items[0].".count))
                let body = field.hasPrefix("payments") ? amountFields[3].1(n) : facturaJSON(item: item, n)
                try await server.issue(a.key, issuer: a.issuer, body: body)
                    .assertHostileProblem(400, "VALIDATION_ERROR", field: field, label: "\(field) \(n)")
            }
            // The same value written as any JSON number or decimal string is the same exact amount.
            for unitPrice in ["10.75", #""10.75""#, "1075e-2", "0.1075E+2", "10.750000", #""10.7500000000""#, "10.75e0"] {
                let reply = try await server.issue(a.key, issuer: a.issuer, body: facturaJSON(item: "unitPrice", unitPrice))
                reply.assertSuccess(201, label: "unitPrice \(unitPrice)")
                XCTAssertEqual(
                    reply.value(["document", "totals", "total"]), .string("24.15"), "unitPrice \(unitPrice): \(reply.text.prefix(300))")
            }
            // Nothing above may have promoted V or seeded its production counters.
            let me = try await server.call(.get, "/v1/tenants/me", key: v.key)
            XCTAssertEqual(try me.string("tenant", "environment"), "sandbox")
            let counters = try await server.call(.get, "/v1/issuers/\(v.issuer)/sequentials", key: v.key).array("sequentials")
            XCTAssertFalse(counters.contains { $0["environment"] == "production" }, "\(counters)")
            try await server.assertGapless(a)
        }
    }

    // MARK: - Nesting, types and values

    func testDeeplyNestedJSONIsRefused() async throws {
        try await hostile { server in
            let a = try await server.party()
            let v = try await server.party()
            let deepObject = String(repeating: #"{"a":"#, count: 10000) + "1" + String(repeating: "}", count: 10000)
            let deepArray = String(repeating: "[", count: 10000) + String(repeating: "]", count: 10000)
            let nestings = [
                ("objects", deepObject), ("arrays", deepArray), ("unclosed", String(repeating: "[", count: 10000)),
                ("mixed", String(repeating: #"{"a":["#, count: 5000) + String(repeating: "]}", count: 5000)),
            ]
            for (what, deep) in nestings {
                try await server.issue(a.key, issuer: a.issuer, body: documentJSON(metadata: #"{"x":\#(deep)}"#))
                    .assertHostileProblem(400, "VALIDATION_ERROR", label: "metadata nested 10000 levels (\(what))")
                try await server.issue(a.key, issuer: a.issuer, body: facturaJSON(item: "taxes", deep))
                    .assertHostileProblem(400, "VALIDATION_ERROR", label: "items[0].taxes nested 10000 levels (\(what))")
            }
            let arrays = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
            try await server.call(.post, "/v1/keys", key: a.key, json: arrays)
                .assertHostileProblem(400, "VALIDATION_ERROR", label: "body nested 100000 arrays")
            try await server.call(.post, "/v1/tenants/promote", key: v.key, json: #"{"initialSequentials":\#(deepArray)}"#)
                .assertHostileProblem(400, "VALIDATION_ERROR", label: "promote body nested 10000 levels")
            try await server.call(.post, "/v1/tenants", json: #"{"name":\#(deepObject)}"#)
                .assertHostileProblem(400, "VALIDATION_ERROR", label: "sign-up body nested 10000 levels")
            var nested = #"{"level":0}"#
            for i in 1..<40 { nested = #"{"level":\#(i),"child":\#(nested),"list":[\#(i),[\#(i)]]}"# }
            try await server.assertRoundTrip(metadata: nested, in: a, label: "metadata nested 40 levels")
            try await server.assertGapless(a)
        }
    }

    func testWrongTypesAndInvalidValuesNameTheField() async throws {
        try await hostile { server in
            let a = try await server.party()
            let v = try await server.party()
            let pending = try await server.signUp()
            let k = a.key
            let admin = "/admin/v1/tenants/\(a.id)/keys"
            let cases: [(String, String?, Int64?, String, [String])] = [
                ("/v1/keys", k, nil, "label", ["123", "true", "[]", "{}", "1.5", #""""#]),
                ("/v1/keys", k, nil, "environment", ["1", "true", #""SANDBOX""#, #""""#, #""prod""#, "[]", "{}", #""sandbox ""#]),
                (
                    "/v1/issuers", k, nil, "ruc",
                    [
                        "1790012345001", #""12345678901234""#, #""123456789012""#, #""123456789012a""#, #""""#, "[]",
                        jsonString("１２３４５６７８９０１２３"), jsonString("123456789012\n"),
                    ]
                ),
                ("/v1/issuers", k, nil, "legalName", ["1", "[]", "{}", #""""#, "true"]),
                ("/v1/issuers", k, nil, "tradeName", ["1", "[]", #""""#, "false"]),
                (
                    "/v1/issuers", k, nil, "establishment",
                    ["1", #""000""#, #""1""#, #""0001""#, #""abc""#, #""""#, "[]", jsonString("٠٠١")]
                ),
                ("/v1/issuers", k, nil, "emissionPoint", ["1", #""000""#, #""01""#, #""1000""#, #""a1b""#, "{}", #""001 ""#]),
                ("/v1/issuers", k, nil, "address", ["1", "[]", "{}", "true"]),
                (
                    "/v1/documents", k, a.issuer, "documentType",
                    [
                        "1", #""1""#, #""02""#, #""00""#, #""01 ""#, #""""#, "[]", "{}", #""99""#, "null", #""03""#, #""05""#, #""06""#,
                        #""07""#,
                    ]
                ),
                (
                    "/v1/documents", k, a.issuer, "issueDate",
                    [
                        #""2026-02-30""#, #""2026-13-01""#, #""20260101""#, "20260101", #""2026-1-1""#, #""""#, #""2026-01-01T00:00:00Z""#,
                        #""0000-01-01""#, #""99999-01-01""#, "[]", jsonString(guayaquilDate() + " "), #""9999-12-31""#,
                        #""0001-01-01""#, #""1970-01-01""#, #""1999-12-31""#, #""2100-01-01""#, jsonString(guayaquilDate(offset: 1)),
                        jsonString(guayaquilDate(offset: 366)),
                    ]
                ),
                (
                    "/v1/documents", k, a.issuer, "content",
                    ["[]", #""x""#, "1", "true", "[{}]", "null", "{}", #"{"total":"1.00"}"#]
                ),
                ("/v1/documents", k, a.issuer, "metadata", ["[]", #""x""#, "1", "true", "[{}]", "false", #""{}""#]),
                ("/v1/documents", k, a.issuer, "buyer", ["1", #""x""#, "[]", "true", "{}", #"[{"idType": "07"}]"#]),
                ("/v1/documents", k, a.issuer, "items", ["1", #""x""#, "[]", "{}", "[1]", "[[]]", "[null]", "[{}]", "true"]),
                (
                    "/v1/tenants", nil, nil, "email",
                    [
                        "1", #""""#, #""no-at""#, #""a@b""#, #""a @b.ec""#, jsonString("a@b.ec\n"), #"["a@b.ec"]"#, #""@example.ec""#,
                        #""a@@example.ec""#, jsonString(String(repeating: "x", count: 250) + "@example.ec"), "null",
                    ]
                ),
                ("/v1/tenants", nil, nil, "name", ["1", #""""#, "null", "[]", "{}", jsonString(String(repeating: "x", count: 201))]),
                (admin, adminToken, nil, "label", ["1", #""""#, "[]", jsonString(String(repeating: "x", count: 101))]),
                (admin, adminToken, nil, "environment", ["1", #""live""#, #""Production""#]),
            ]
            for (path, key, issuer, field, values) in cases {
                for value in values {
                    var members: [(String, String)] =
                        switch path {
                        case "/v1/issuers":
                            [
                                ("ruc", jsonString(randomRUC())), ("legalName", #""x""#), ("establishment", #""006""#),
                                ("emissionPoint", #""001""#),
                            ]
                        case "/v1/documents":
                            facturaMembers(metadata: #"{"erpId": "INV-1"}"#) + [("issueDate", jsonString(guayaquilDate()))]
                        case "/v1/tenants": [("email", jsonString(TestServer.uniqueEmail("typ"))), ("name", #""x""#)]
                        default: []
                        }
                    if let index = members.firstIndex(where: { $0.0 == field }) {
                        members[index].1 = value
                    } else {
                        members.append((field, value))
                    }
                    let body = "{" + members.map { "\(jsonString($0.0)): \($0.1)" }.joined(separator: ", ") + "}"
                    try await server.call(.post, path, key: key, issuer: issuer, json: body)
                        .assertHostileProblem(400, "VALIDATION_ERROR", field: field, label: "POST \(path) \(field)=\(value.prefix(40))")
                }
            }
            // issueDate is optional: null is as absent, today in Guayaquil.
            let nullDate = try await server.issue(
                k, issuer: a.issuer, body: jsonObject(facturaMembers() + [("issueDate", "null")]))
            nullDate.assertSuccess(201, label: "issueDate null")
            XCTAssertEqual(try nullDate.string("document", "issueDate"), guayaquilDate())
            // metadata is optional: null is as absent, an empty object.
            let noMetadata = try await server.issue(k, issuer: a.issuer, body: documentJSON(metadata: "null"))
            noMetadata.assertSuccess(201, label: "metadata null")
            XCTAssertEqual(noMetadata.value(["document", "metadata"]), .object([]), "metadata null reads back as {}")
            let required: [(String, String?, Int64?, String)] = [
                ("/v1/issuers", k, nil, "ruc"), ("/v1/documents", k, a.issuer, "documentType"), ("/v1/documents", k, a.issuer, "buyer"),
                ("/v1/documents", k, a.issuer, "items"), ("/v1/tenants", nil, nil, "email"),
                ("/v1/tenants/verify-email", nil, nil, "token"),
            ]
            for (path, key, issuer, field) in required {
                try await server.call(.post, path, key: key, issuer: issuer, json: "{}")
                    .assertHostileProblem(400, "VALIDATION_ERROR", field: field, label: "POST \(path) {}")
            }
            let routes: [(String, String?, Int64?)] = [
                ("/v1/keys", k, nil), ("/v1/issuers", k, nil), ("/v1/documents", k, a.issuer), ("/v1/tenants", nil, nil),
                ("/v1/tenants/verify-email", nil, nil), ("/v1/tenants/promote", v.key, nil), (admin, adminToken, nil),
            ]
            let malformed = [
                "[]", #""string""#, "1", "null", "true", "{", "{'label':'x'}", #"{"label":}"#, #"{"label":"x",}"#, "{} {}", #"{"a":NaN}"#,
                #"{"a":Infinity}"#, #"{"a":-}"#, #"{"a":01}"#, #"{"a":.5}"#, #"{"a":1.}"#, #"{"a":"\x41"}"#, #"{"a":"\u12"}"#,
                "{\"a\":\"tab\there\"}", "\u{FEFF}{}", #"{"a" 1}"#, "{,}",
            ]
            for (path, key, issuer) in routes {
                for body in malformed {
                    try await server.call(.post, path, key: key, issuer: issuer, json: body)
                        .assertHostileProblem(400, "VALIDATION_ERROR", label: "POST \(path) body \(body)")
                }
            }
            for (path, key, issuer) in routes
            where ["/v1/issuers", "/v1/documents", "/v1/tenants", "/v1/tenants/verify-email"].contains(path) {
                try await server.call(.post, path, key: key, issuer: issuer, json: "")
                    .assertHostileProblem(400, "VALIDATION_ERROR", label: "POST \(path) with no body")
            }
            let vi = v.issuer
            let sequentials = [
                "{}", #""x""#, "1", "true", "null", "[1]", "[[]]", "[null]",
                #"[{"issuerId":\#(vi),"documentType":"99","sequential":1}]"#, #"[{"issuerId":\#(vi),"documentType":"","sequential":1}]"#,
                #"[{"issuerId":\#(vi),"documentType":"01,03","sequential":1}]"#, #"[{"issuerId":\#(vi),"documentType":1,"sequential":1}]"#,
                #"[{"issuerId":\#(vi),"documentType":"01"}]"#, #"[{"documentType":"01","sequential":1}]"#,
                #"[{"issuerId":\#(vi),"documentType":"01","sequential":1},{"issuerId":\#(vi),"documentType":"01","sequential":2}]"#,
                #"[{"issuerId":\#(vi + 1_000_000),"documentType":"01","sequential":1}]"#,
            ]
            for value in sequentials {
                try await server.call(.post, "/v1/tenants/promote", key: v.key, json: #"{"initialSequentials":\#(value)}"#)
                    .assertHostileProblem(400, "VALIDATION_ERROR", label: "promote initialSequentials=\(value)")
            }
            try await server.call(.post, "/v1/keys", key: pending.key, json: "{}").assertHostileProblem(
                403, "FORBIDDEN", label: "pending mints")
            try await server.call(.post, "/v1/tenants/promote", key: pending.key).assertHostileProblem(
                403, "FORBIDDEN", label: "pending promotes")
            try await server.call(.post, "/v1/keys", key: k, json: #"{"environment": "production"}"#)
                .assertHostileProblem(403, "FORBIDDEN", label: "sandbox tenant mints a production key")
            try await server.call(.post, admin, key: adminToken, json: #"{"environment": "production"}"#)
                .assertHostileProblem(403, "FORBIDDEN", label: "admin mints a production key for a sandbox tenant")
        }
    }

    func testEdgeValuesThatAreLegal() async throws {
        try await hostile { server in
            let a = try await server.party()
            let b = try await server.party()
            let k = a.key
            // The legal edges: SRI's first year, a leap day in the past, yesterday and today in Guayaquil.
            for date in ["2000-01-01", "2024-02-29", "2000-02-29", guayaquilDate(offset: -1), guayaquilDate()] {
                let reply = try await server.issue(k, issuer: a.issuer, body: documentJSON(date: date))
                reply.assertSuccess(201, label: "issueDate \(date)")
                let parts = date.split(separator: "-").map(String.init)
                XCTAssertEqual(try reply.string("document", "issueDate"), date)
                XCTAssertEqual(String(try reply.string("document", "accessKey").prefix(8)), parts[2] + parts[1] + parts[0])
            }
            let today = try await server.issue(k, issuer: a.issuer, body: documentJSON())
            XCTAssertEqual(try today.string("document", "issueDate"), guayaquilDate(), "issueDate defaults to today in Guayaquil")
            // Just past them: before 2000, after today, not a day of the calendar.
            for date in ["2026-02-29", "1999-12-31", "2100-02-29", guayaquilDate(offset: 1), "9999-12-31", "0001-01-01", "1970-01-01"] {
                try await server.issue(k, issuer: a.issuer, body: documentJSON(date: date))
                    .assertHostileProblem(400, "VALIDATION_ERROR", field: "issueDate", label: "issueDate \(date)")
            }
            // A wide object well within 1 MiB must not cost the server more than
            // linear work: 25000 metadata members are read, then refused by name.
            let wide = "{" + (0..<25000).map { #""k\#($0)":\#($0)"# }.joined(separator: ",") + "}"
            let started = ContinuousClock.now
            let wideReply = try await server.issue(k, issuer: a.issuer, body: documentJSON(metadata: wide))
            XCTAssertLessThan(ContinuousClock.now - started, .seconds(5), "parsing a wide JSON object is slower than linear")
            wideReply.assertHostileProblem(400, "VALIDATION_ERROR", field: "metadata", label: "metadata with 25000 members")
            // The widest metadata that fits, 50 members, comes back in its order.
            let fifty = "{" + (0..<50).reversed().map { #""k\#($0)":\#($0).0"# }.joined(separator: ",") + "}"
            try await server.assertRoundTrip(metadata: fifty, in: a, label: "metadata with 50 members")
            try await server.issue(k, issuer: a.issuer, body: documentJSON(metadata: "{" + fifty.dropFirst().dropLast() + #","k50":0}"#))
                .assertHostileProblem(400, "VALIDATION_ERROR", field: "metadata", label: "metadata with 51 members")
            // Up to 16 KiB as JSON: a 16384-byte object is kept, one byte more is refused.
            let padding = #"{"pad":""# + String(repeating: "p", count: 16 * 1024 - 10) + #""}"#
            XCTAssertEqual(padding.utf8.count, 16 * 1024)
            try await server.assertRoundTrip(metadata: padding, in: a, label: "metadata of 16 KiB")
            try await server.issue(k, issuer: a.issuer, body: documentJSON(metadata: #"{"pad":"p"# + padding.dropFirst(8)))
                .assertHostileProblem(400, "VALIDATION_ERROR", field: "metadata", label: "metadata of 16 KiB + 1")
            // A long array is read in linear time; past the items' limit (1000) it
            // is refused by name, at it every line is issued.
            let line = jsonObject(replacing(facturaItem, "quantity", with: #""1""#).filter { $0.0 != "discount" })
            let many = "[" + Array(repeating: "{}", count: 100_000).joined(separator: ",") + "]"
            let manyStarted = ContinuousClock.now
            try await server.issue(k, issuer: a.issuer, body: jsonObject(replacing(facturaMembers(), "items", with: many)))
                .assertHostileProblem(400, "VALIDATION_ERROR", field: "items", label: "100000 items")
            XCTAssertLessThan(ContinuousClock.now - manyStarted, .seconds(5), "100000 items are refused in linear time")
            let thousand = "[" + Array(repeating: line, count: 1000).joined(separator: ",") + "]"
            let big = try await server.issue(k, issuer: a.issuer, body: jsonObject(replacing(facturaMembers(), "items", with: thousand)))
            big.assertSuccess(201, label: "1000 items")
            // 1000 × 10.75 = 10750.00, IVA 15 % on each line 1.61: 1610.00.
            XCTAssertEqual(big.value(["document", "totals", "total"]), .string("12360.00"), "1000 lines add up exactly")
            let odd = #"{"": "", " ": null, "\u00e9": [true, false, null, -0.0, 1e-07], "k": {"": {"": []}}}"#
            try await server.assertRoundTrip(metadata: odd, in: a, label: "metadata with empty keys, null, booleans, nested empties")
            let extra = #"{"label": "extra", "id": 1, "tenantId": \#(b.id), "environment": "sandbox", "active": false, "revokedAt": "x"}"#
            try await server.call(.post, "/v1/keys", key: k, json: extra).assertSuccess(201, label: "unknown extra fields are ignored")
            let keys = try await server.call(.get, "/v1/keys", key: k).array("keys")
            XCTAssertTrue(keys.contains { $0["label"] == "extra" && $0["active"] == .bool(true) }, "extra fields did not change the key")
            let issuer = try await server.call(
                .post, "/v1/issuers", key: k,
                json: issuerJSON(establishment: "008", extra: #""legalName": "extra", "sandbox": false, "id": 1, "tenantId": \#(b.id)"#))
            issuer.assertSuccess(201, label: "issuer with extra sandbox=false")
            XCTAssertEqual(issuer.value(["issuer", "sandbox"]), .bool(true), "extra sandbox=false ignored")

            // Duplicate JSON keys: a 400, whatever the member and wherever it is.
            let duplicates: [(String, String?, Int64?, String)] = [
                ("/v1/keys", k, nil, #"{"label":"dup-a","label":"dup-b"}"#),
                ("/v1/keys", k, nil, #"{"environment":"production","environment":"sandbox"}"#),
                ("/v1/keys", k, nil, #"{"label":"dup","label":null}"#),
                ("/v1/documents", k, a.issuer, jsonObject(facturaMembers() + [("documentType", #""99""#)])),
                ("/v1/documents", k, a.issuer, jsonObject([("documentType", #""99""#)] + facturaMembers())),
                ("/v1/documents", k, a.issuer, documentJSON(metadata: #"{"a":1,"a":2}"#)),
                ("/v1/documents", k, a.issuer, jsonObject(facturaMembers(metadata: #"{"a":1}"#) + [("metadata", "[1]")])),
                ("/v1/documents", k, a.issuer, jsonObject(facturaMembers() + [("items", "[]")])),
                ("/v1/documents", k, a.issuer, facturaJSON(item: "unitPrice", #""1", "unitPrice": "99999999999999999999""#)),
                (
                    "/v1/issuers", k, nil,
                    #"{"ruc":"\#(randomRUC())","ruc":"x","legalName":"d","establishment":"007","emissionPoint":"001"}"#
                ),
                (
                    "/v1/tenants", nil, nil,
                    #"{"email":"\#(TestServer.uniqueEmail("d1"))","email":"\#(TestServer.uniqueEmail("d2"))","name":"dup"}"#
                ),
                ("/v1/tenants/verify-email", nil, nil, #"{"token":"a","token":"b"}"#),
                ("/v1/tenants/promote", b.key, nil, #"{"initialSequentials":"x","initialSequentials":5}"#),
            ]
            for (path, key, issuer, body) in duplicates {
                try await server.call(.post, path, key: key, issuer: issuer, json: body)
                    .assertHostileProblem(400, "VALIDATION_ERROR", label: "POST \(path) duplicate keys \(body)")
            }
            try await server.assertGapless(a)
        }
    }

    func testExactlyOneMebibyteIsAccepted() async throws {
        try await hostile { server in
            let a = try await server.party()
            let mib = 1 << 20
            // A factura of about 1 MiB within the rules' limits: lines with the
            // longest description and details, whitespace for the last bytes.
            let text = String(repeating: "ñ", count: 300)
            let detail = #"{"name": \#(jsonString(text)), "value": \#(jsonString(text))}"#
            let line = jsonObject(
                replacing(facturaItem, "description", with: jsonString(text)).filter { $0.0 != "discount" }
                    + [("details", "[" + [detail, detail, detail].joined(separator: ", ") + "]")])
            func factura(lines: Int, padding: Int) -> String {
                let items = "[" + Array(repeating: line, count: lines).joined(separator: ",") + "]"
                return String(jsonObject(replacing(facturaMembers(metadata: #"{"erpId": "MIB"}"#), "items", with: items)).dropLast())
                    + String(repeating: " ", count: padding) + "}"
            }
            let lines = (mib - factura(lines: 0, padding: 0).utf8.count) / (line.utf8.count + 1)
            XCTAssertLessThanOrEqual(lines, 1000)
            let padding = mib - factura(lines: lines, padding: 0).utf8.count
            XCTAssertLessThan(padding, line.utf8.count + 1)
            let exact = factura(lines: lines, padding: padding)
            XCTAssertEqual(exact.utf8.count, mib)
            let issued = try await server.issue(a.key, issuer: a.issuer, body: exact)
            issued.assertSuccess(201, label: "a factura of exactly 1 MiB (\(lines) lines)")
            XCTAssertEqual(try? issued.array("document", "items").count, lines, "every line issued")
            try await server.issue(a.key, issuer: a.issuer, body: factura(lines: lines, padding: padding + 1))
                .assertHostileProblem(413, "PAYLOAD_TOO_LARGE", label: "a factura of 1 MiB + 1 byte")
            // Exactly 1 MiB whose metadata is over its 16 KiB: read, and refused by name.
            let (head, tail) = (String(documentJSON(metadata: #"{"pad": "X"}"#).split(separator: "X")[0]), #""}}"#)
            let oversized = head + String(repeating: "y", count: mib - head.utf8.count - tail.utf8.count) + tail
            XCTAssertEqual(oversized.utf8.count, mib)
            try await server.issue(a.key, issuer: a.issuer, body: oversized)
                .assertHostileProblem(400, "VALIDATION_ERROR", field: "metadata", label: "exactly 1 MiB of metadata")
            let over = head + String(repeating: "y", count: mib - head.utf8.count - tail.utf8.count + 1) + tail
            try await server.issue(a.key, issuer: a.issuer, body: over).assertHostileProblem(
                413, "PAYLOAD_TOO_LARGE", label: "1 MiB + 1 byte of metadata")
            try await server.assertGapless(a)
        }
    }

    /// Nested lists are read only as far as their rules' limits (a line's
    /// `taxes`: exactly 1), so a body of about 1 MiB of them is refused with a
    /// few errors per line and payment, each list's count named once; reading
    /// every element made half a million type errors, and filtering the
    /// rules' violations against them held a core for minutes.
    func testAMebibyteOfNestedListsIsRefusedNamingEachListOnce() async throws {
        try await hostile { server in
            let a = try await server.party()
            let taxes = "[" + Array(repeating: "1", count: 1000).joined(separator: ",") + "]"
            let items = "[" + Array(repeating: #"{"taxes":\#(taxes)}"#, count: 500).joined(separator: ",") + "]"
            let payments = "[" + Array(repeating: "{}", count: 1000).joined(separator: ",") + "]"
            let body = #"{"documentType":"01","items":\#(items),"payments":\#(payments)}"#
            XCTAssertGreaterThan(body.utf8.count, 1_000_000)
            XCTAssertLessThanOrEqual(body.utf8.count, 1 << 20)
            let reply = try await server.issue(a.key, issuer: a.issuer, body: body)
            reply.assertProblem(400, "VALIDATION_ERROR")
            let fields = reply.errorFields
            XCTAssertLessThan(fields.count, 10_000, "a few errors per line and payment")
            XCTAssertTrue(fields.contains("items[0].taxes[0]"), "the first tax's type")
            XCTAssertTrue(fields.contains("items[499].taxes"), "the count of the last line's taxes")
            XCTAssertFalse(fields.contains("items[0].taxes[1]"), "no element past the list's limit is read")
            XCTAssertTrue(fields.contains("payments[999].method"), "every payment's own faults")
            XCTAssertEqual(try TestDatabase.scalar("SELECT count(*) FROM documents WHERE tenant_id = $1", [a.id], as: Int.self), 0)
        }
    }

    // MARK: - Ids in paths, other tenants

    func testPathIDsThatAreNotPositiveIntegersAre404() async throws {
        try await hostile { server in
            let a = try await server.party()
            for bad in Self.badPathIDs {
                let cases: [(HTTPRequest.Method, String, String?, String?)] = [
                    (.get, "/v1/issuers/\(bad)", a.key, nil), (.get, "/v1/issuers/\(bad)/sequentials", a.key, nil),
                    (.delete, "/v1/keys/\(bad)", a.key, nil), (.post, "/admin/v1/tenants/\(bad)/verify-email", adminToken, nil),
                    (.post, "/admin/v1/tenants/\(bad)/keys", adminToken, "{}"),
                    (.delete, "/admin/v1/tenants/\(bad)/keys/1", adminToken, nil),
                    (.delete, "/admin/v1/tenants/\(a.id)/keys/\(bad)", adminToken, nil),
                ]
                for (method, path, key, body) in cases {
                    try await server.call(method, path, key: key, json: body).assertHostileProblem(
                        404, "NOT_FOUND", label: "\(method) \(path)")
                }
            }
            for big in ["9223372036854775807", "999999999999"] {
                try await server.call(.get, "/v1/issuers/\(big)", key: a.key).assertHostileProblem(404, "NOT_FOUND", label: big)
                try await server.call(.delete, "/v1/keys/\(big)", key: a.key).assertHostileProblem(404, "NOT_FOUND", label: big)
                try await server.call(.post, "/admin/v1/tenants/\(big)/verify-email", key: adminToken)
                    .assertHostileProblem(404, "NOT_FOUND", label: big)
            }
            let ak = try await server.issue(a.key, issuer: a.issuer).string("document", "accessKey")
            let changed = ak.dropLast() + (ak.last == "0" ? "1" : "0")
            let badKeys = [
                "0", "-1", "abc", String(repeating: "0", count: 49), String(repeating: "1", count: 50), ak + "0", String(ak.dropLast()),
                String(changed), "%20" + ak, ak + "%00", "1%27%20OR%20%271%27%3D%271", "%00",
            ]
            for bad in badKeys {
                try await server.call(.get, "/v1/documents/\(bad)", key: a.key, issuer: a.issuer)
                    .assertHostileProblem(404, "NOT_FOUND", label: "GET /v1/documents/\(bad)")
            }
            try await server.call(.get, "/v1/documents/\(ak)", key: a.key, issuer: a.issuer).assertSuccess(label: "the real access key")
        }
    }

    func testAnotherTenantsIDsAre404AndChangeNothing() async throws {
        try await hostile { server in
            let a = try await server.party()
            let b = try await server.party()
            let v = try await server.party()
            let bSecondKey = try await server.mintKey(b.key, label: "second")
            let bSecond = try await server.keyID(b.key, label: "second")
            let bInitial = try await server.keyID(b.key, label: "Initial sandbox key")
            let bDocument = try await server.issue(b.key, issuer: b.issuer).string("document", "accessKey")
            let countersBefore = try await server.call(.get, "/v1/issuers/\(b.issuer)/sequentials", key: b.key).text
            let documentsBefore = try await server.call(.get, "/v1/documents", key: b.key, issuer: b.issuer).value(["documents"])
            let cases: [(String, HTTPRequest.Method, String, String?, Int64?, HTTPFields, String?)] = [
                ("A reads B's issuer", .get, "/v1/issuers/\(b.issuer)", a.key, nil, [:], nil),
                ("A reads B's sequentials", .get, "/v1/issuers/\(b.issuer)/sequentials", a.key, nil, [:], nil),
                ("A issues on B's issuer", .post, "/v1/documents", a.key, b.issuer, [:], documentJSON()),
                (
                    "A issues on B's issuer with an Idempotency-Key", .post, "/v1/documents", a.key, b.issuer, [.idempotencyKey: "xt-1"],
                    documentJSON()
                ),
                ("A lists B's documents", .get, "/v1/documents", a.key, b.issuer, [:], nil),
                ("A reads B's document via A's issuer", .get, "/v1/documents/\(bDocument)", a.key, a.issuer, [:], nil),
                ("A reads B's document via B's issuer", .get, "/v1/documents/\(bDocument)", a.key, b.issuer, [:], nil),
                ("A revokes B's second key", .delete, "/v1/keys/\(bSecond)", a.key, nil, [:], nil),
                ("A revokes B's initial key", .delete, "/v1/keys/\(bInitial)", a.key, nil, [:], nil),
                ("admin revokes B's key under tenant A", .delete, "/admin/v1/tenants/\(a.id)/keys/\(bSecond)", adminToken, nil, [:], nil),
            ]
            for (label, method, path, key, issuer, headers, body) in cases {
                try await server.call(method, path, key: key, issuer: issuer, headers: headers, json: body)
                    .assertHostileProblem(404, "NOT_FOUND", label: label)
            }
            let entry = #"{"issuerId": \#(b.issuer), "documentType": "01", "sequential": 5}"#
            let own = #"{"issuerId": \#(v.issuer), "documentType": "01", "sequential": 5}"#
            for (label, list) in [
                ("V promotes naming B's issuer", entry), ("V promotes naming its own and B's issuer", own + ", " + entry),
            ] {
                try await server.call(.post, "/v1/tenants/promote", key: v.key, json: #"{"initialSequentials": [\#(list)]}"#)
                    .assertHostileProblem(400, "VALIDATION_ERROR", label: label)
            }
            let countersAfter = try await server.call(.get, "/v1/issuers/\(b.issuer)/sequentials", key: b.key).text
            XCTAssertEqual(countersAfter, countersBefore, "B's counters unchanged")
            let documentsAfter = try await server.call(.get, "/v1/documents", key: b.key, issuer: b.issuer).value(["documents"])
            XCTAssertEqual(documentsAfter, documentsBefore, "B's documents unchanged")
            try await server.call(.get, "/v1/tenants/me", key: bSecondKey).assertSuccess(label: "B's second key still works")
            let bKeys = try await server.call(.get, "/v1/keys", key: b.key).array("keys").compactMap { $0["id"]?.intValue }
            XCTAssertTrue(bKeys.contains(bSecond), "B's second key still listed")
            let aIssuers = try await server.call(.get, "/v1/issuers", key: a.key).array("issuers").compactMap { $0["id"]?.intValue }
            XCTAssertFalse(aIssuers.contains(b.issuer), "A's issuer list has no B issuer")
            let aKeys = try await server.call(.get, "/v1/keys", key: a.key).array("keys").compactMap { $0["id"]?.intValue }
            XCTAssertTrue(Set(aKeys).isDisjoint(with: bKeys), "A's key list has no B key")
            let vMe = try await server.call(.get, "/v1/tenants/me", key: v.key)
            XCTAssertEqual(try vMe.string("tenant", "environment"), "sandbox", "V still sandbox after cross-tenant promotions")
            // The same Idempotency-Key in two tenants: two different documents.
            let ra = try await server.issue(a.key, issuer: a.issuer, headers: [.idempotencyKey: "shared-key"], body: documentJSON())
            let rb = try await server.issue(b.key, issuer: b.issuer, headers: [.idempotencyKey: "shared-key"], body: documentJSON())
            ra.assertSuccess(201, label: "A uses Idempotency-Key shared-key")
            rb.assertSuccess(201, label: "B uses Idempotency-Key shared-key")
            XCTAssertNotEqual(try ra.int("document", "id"), try rb.int("document", "id"))
            XCTAssertNil(rb.headers[.idempotentReplayed], "Idempotency-Key is scoped to the tenant")
            try await server.assertGapless(a)
            try await server.assertGapless(b)
        }
    }

    // MARK: - Request ids, other requests, promotion

    func testRequestIDsAreEchoedWhenSaneAndReplacedOtherwise() async throws {
        try await hostile { server in
            let a = try await server.party()
            let unknown = "cfy_test_" + String(repeating: "0", count: 64)
            let good = [
                "abc-123_X.y", "a", String(repeating: "A", count: 128), "0.0.0", "---", "req_" + Crypto.hex(Crypto.randomBytes(16)),
            ]
            let paths: [(String, String?, Int)] = [
                ("/healthz", nil, 200), ("/v1/tenants/me", a.key, 200), ("/v1/nope", a.key, 404), ("/v1/keys", unknown, 401),
            ]
            for id in good {
                for (path, key, status) in paths {
                    let reply = try await server.call(.get, path, key: key, headers: [.requestID: id])
                    XCTAssertEqual(reply.status, status, reply.text)
                    XCTAssertEqual(reply.headers[.requestID], id, "echoed on \(path)")
                    if status >= 400 {
                        reply.assertHostileProblem(
                            status, status == 404 ? "NOT_FOUND" : "UNAUTHORIZED", label: "X-Request-Id \(id) on \(path)")
                        XCTAssertEqual(reply.value(["requestId"]), .string(id))
                    }
                }
            }
            // Bad ids the client can send as they are; tabs, non-ASCII bytes and
            // empty values are in scripts/hostile.
            let bad = [
                String(repeating: "A", count: 129), "a b", "a/b", "<script>", "a;b", "a,b", "a:b", "a%20b", "a+b",
                "'; DROP TABLE tenants; --",
            ]
            let badPaths: [(String, String?, Int)] = [("/healthz", nil, 200), ("/v1/keys", unknown, 401)]
            for id in bad {
                for (path, key, status) in badPaths {
                    let reply = try await server.call(.get, path, key: key, headers: [.requestID: id])
                    XCTAssertEqual(reply.status, status, reply.text)
                    let fresh = reply.headers[.requestID]
                    XCTAssertTrue(isSaneRequestID(fresh) && fresh != id, "bad X-Request-Id \(id) replaced on \(path): \(fresh ?? "none")")
                    if status >= 400 { reply.assertHostileProblem(401, "UNAUTHORIZED", label: "bad X-Request-Id \(id)") }
                }
            }
        }
    }

    func testOtherHostileRequests() async throws {
        try await hostile { server in
            let a = try await server.party()
            let keyID = try await server.keyID(a.key, label: "Initial sandbox key")
            try await server.call(.get, "/v1/nothing-here", key: a.key).assertHostileProblem(404, "NOT_FOUND", label: "unknown route")
            try await server.call(.get, "/admin/v1/tenants", key: adminToken).assertHostileProblem(
                404, "NOT_FOUND", label: "unknown admin route")
            let methods: [(HTTPRequest.Method, String)] = [
                (.put, "/v1/keys"), (.patch, "/v1/issuers"), (.delete, "/v1/tenants/me"), (.post, "/healthz"),
                (.put, "/v1/issuers/\(a.issuer)"),
                (.delete, "/v1/documents"),
            ]
            for (method, path) in methods {
                // A method a known path does not take is 404, as a path the API does not have (README).
                try await server.call(method, path, key: a.key).assertHostileProblem(404, "NOT_FOUND", label: "\(method) \(path)")
            }
            // A body is read as JSON whatever its Content-Type says (README).
            for type in ["text/plain", "application/x-www-form-urlencoded", "application/xml", nil, "application/json; charset=latin-1"] {
                try await server.send(.post, "/v1/keys", key: a.key, Array(#"{"label":"ctype"}"#.utf8), contentType: type)
                    .assertSuccess(201, label: "POST /v1/keys with Content-Type \(type ?? "none")")
            }
            try await server.send(
                .post, "/v1/keys", key: a.key, Array("label=x&environment=sandbox".utf8), contentType: "application/x-www-form-urlencoded"
            )
            .assertHostileProblem(400, "VALIDATION_ERROR", label: "POST /v1/keys form-encoded body")
            try await server.call(.get, "/v1/keys?label=%00&x=%ff&%zz", key: a.key).assertSuccess(label: "GET /v1/keys with junk query")
            try await server.call(.get, "/v1/documents?limit=10&limit=20", key: a.key, issuer: a.issuer).assertHostileProblem(
                400, "VALIDATION_ERROR", field: "limit", label: "limit twice")
            for value in ["%00", "%ff"] {
                try await server.call(.get, "/v1/documents?documentType=\(value)", key: a.key, issuer: a.issuer)
                    .assertHostileProblem(400, "VALIDATION_ERROR", field: "documentType", label: "documentType=\(value)")
            }
            try await server.issue(
                a.key, issuer: a.issuer, headers: [.idempotencyKey: String(repeating: "k", count: 256)], body: documentJSON()
            )
            .assertHostileProblem(400, "VALIDATION_ERROR", field: "Idempotency-Key", label: "Idempotency-Key of 256")
            let longest: HTTPFields = [.idempotencyKey: String(repeating: "k", count: 255)]
            try await server.issue(a.key, issuer: a.issuer, headers: longest, body: documentJSON())
                .assertSuccess(201, label: "Idempotency-Key of 255 characters")
            try await server.issue(a.key, issuer: a.issuer, headers: longest, body: documentJSON(metadata: #"{"another": "body"}"#))
                .assertHostileProblem(409, "CONFLICT", label: "Idempotency-Key reused with another body")
            try await server.call(.post, "/v1/tenants", json: #"{"email": "\#(a.tenant.email.uppercased())", "name": "dup"}"#)
                .assertHostileProblem(409, "CONFLICT", label: "sign-up with an existing email in upper case")
            try await server.call(.post, "/v1/keys/\(keyID)", key: a.key).assertHostileProblem(
                404, "NOT_FOUND", label: "POST to DELETE-only /v1/keys/:id")
            // Empty segments and a trailing slash are the keys' route; a dot
            // segment, another case or an encoded slash or dots are no route.
            for path in ["/v1//keys", "/v1/keys/", "//v1/keys"] {
                try await server.call(.get, path, key: a.key).assertSuccess(label: "GET \(path)")
            }
            for path in ["/v1/./keys", "/V1/KEYS", "/v1/keys%2F1", "/v1/issuers/%2e%2e"] {
                try await server.call(.get, path, key: a.key).assertHostileProblem(404, "NOT_FOUND", label: "GET \(path)")
            }
            for path in ["/openapi.yaml", "/metrics"] {
                let reply = try await server.call(.get, path)
                XCTAssertEqual(reply.status, 200, path)
            }
            try await server.assertGapless(a)
        }
    }

    func testASandboxKeyIsRefusedOnAProductionIssuer() async throws {
        try await hostile { server in
            let a = try await server.party()
            let v = try await server.party()
            let promotion = #"{"initialSequentials": [{"issuerId": \#(v.issuer), "documentType": "01", "sequential": 42}]}"#
            let promoted = try await server.call(.post, "/v1/tenants/promote", key: v.key, json: promotion)
            promoted.assertSuccess(label: "V promotes")
            let live = try promoted.string("apiKeys", 0, "apiKey")
            try await server.call(.get, "/v1/tenants/me", key: v.key).assertHostileProblem(
                401, "UNAUTHORIZED", label: "V's old sandbox key")
            try await server.call(.post, "/v1/tenants/promote", key: live).assertHostileProblem(409, "CONFLICT", label: "V promotes again")
            let sandbox = try await server.call(.post, "/v1/keys", key: live, json: #"{"label": "test rig", "environment": "sandbox"}"#)
            sandbox.assertSuccess(201, label: "V mints a sandbox key after promotion")
            let sandboxKey = try sandbox.string("apiKey")
            try await server.call(.post, "/v1/documents", key: sandboxKey, issuer: v.issuer, json: documentJSON())
                .assertHostileProblem(401, "UNAUTHORIZED", label: "sandbox key on a production issuer")
            try await server.call(.get, "/v1/documents", key: sandboxKey, issuer: v.issuer)
                .assertHostileProblem(401, "UNAUTHORIZED", label: "sandbox key lists a production issuer's documents")
            let document = try await server.issue(live, issuer: v.issuer, body: documentJSON())
            document.assertSuccess(201, label: "production key on the production issuer")
            XCTAssertEqual(try document.int("document", "sequential"), 42, "the first production document takes initialSequentials' 42")
            XCTAssertEqual(try document.string("document", "environment"), "production")
            try await server.call(.post, "/v1/documents", key: live, issuer: a.issuer, json: documentJSON())
                .assertHostileProblem(404, "NOT_FOUND", label: "production key on another tenant's sandbox issuer")
        }
    }

    /// Runs `body` on a test server and checks that it logged no error.
    func hostile(_ body: @escaping @Sendable (TestServer) async throws -> Void) async throws {
        let logs = LogCapture()
        try await TestServer.run(logs: logs, body)
        let errors = logs.lines.withLockedValue { $0 }.filter { $0.hasPrefix("error ") || $0.hasPrefix("critical ") }
        XCTAssertEqual(errors, [], "the server logged errors")
    }
}

// MARK: - Helpers

/// An active tenant with one sandbox issuer.
struct Party: Sendable {
    let tenant: TestServer.Tenant
    let issuer: Int64
    var id: Int64 { tenant.id }
    var key: String { tenant.key }
}

func randomRUC() -> String {
    String((0..<10).map { _ in "0123456789".randomElement()! }) + "001"
}

/// `text` as a JSON string; with `ascii`, every other scalar as \u escapes.
func jsonString(_ text: String, ascii: Bool = false) -> String {
    let plain = JSONValue.string(text).serialized
    guard ascii else { return plain }
    var out = ""
    for scalar in plain.unicodeScalars {
        if scalar.isASCII {
            out.unicodeScalars.append(scalar)
        } else {
            for unit in String(scalar).utf16 { out += String(format: "\\u%04x", unit) }
        }
    }
    return out
}

func issuerJSON(establishment: String, emissionPoint: String = "001", extra: String? = nil) -> String {
    var members = [#""ruc": "\#(randomRUC())""#, #""establishment": "\#(establishment)""#, #""emissionPoint": "\#(emissionPoint)""#]
    if let extra { members.append(extra) }
    if !(extra ?? "").contains(#""legalName""#) { members.append(#""legalName": "x""#) }
    return "{" + members.joined(separator: ", ") + "}"
}

/// A valid factura (Bodies.factura) with this metadata and issue date.
func documentJSON(metadata: String? = nil, date: String? = nil) -> String {
    Bodies.factura(metadata: metadata, issueDate: date)
}

/// The members of Bodies.factura's item, as raw JSON values, in order.
let facturaItem: [(String, String)] = [
    ("code", #""A-1""#), ("description", #""Widget""#), ("quantity", #""2""#), ("unitPrice", #""10.75""#), ("discount", #""0.50""#),
    ("taxes", #"[{"code": "2", "rateCode": "4"}]"#),
]

/// The members of Bodies.factura, as raw JSON values, for tests that replace,
/// repeat or add one; with `item`, its single item's members.
func facturaMembers(metadata: String? = nil, item: [(String, String)] = facturaItem) -> [(String, String)] {
    var members = [
        ("documentType", #""01""#), ("buyer", #"{"idType": "07", "id": "9999999999999", "name": "CONSUMIDOR FINAL"}"#),
        ("items", "[" + jsonObject(item) + "]"),
    ]
    if let metadata { members.append(("metadata", metadata)) }
    return members
}

/// An object of these members (raw JSON values), duplicates kept.
func jsonObject(_ members: [(String, String)]) -> String {
    "{" + members.map { "\(jsonString($0.0)): \($0.1)" }.joined(separator: ", ") + "}"
}

/// `members` with the value of `name` replaced (or added when absent).
func replacing(_ members: [(String, String)], _ name: String, with value: String) -> [(String, String)] {
    var members = members
    if let index = members.firstIndex(where: { $0.0 == name }) {
        members[index].1 = value
    } else {
        members.append((name, value))
    }
    return members
}

/// A factura whose item member `field` is `value` (raw JSON).
func facturaJSON(item field: String, _ value: String) -> String {
    jsonObject(facturaMembers(item: replacing(facturaItem, field, with: value)))
}

/// Today in America/Guayaquil, `offset` days later, as YYYY-MM-DD.
func guayaquilDate(offset: Int = 0) -> String {
    var calendar = Calendar(identifier: .gregorian)
    calendar.timeZone = TimeZone(identifier: "America/Guayaquil")!
    let day = calendar.date(byAdding: .day, value: offset, to: Date())!
    let parts = calendar.dateComponents([.year, .month, .day], from: day)
    return String(format: "%04d-%02d-%02d", parts.year!, parts.month!, parts.day!)
}

func promoteJSON(_ issuer: Int64, type: String) -> String {
    #"{"initialSequentials": [{"issuerId": \#(issuer), "documentType": \#(type), "sequential": 1}]}"#
}

/// As Python's urllib.parse.quote(text, safe=""): all but unreserved bytes escaped.
func percentEncoded(_ text: String) -> String {
    text.addingPercentEncoding(
        withAllowedCharacters: CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"))!
}

/// The same Unicode scalars (Swift's == would accept canonical equivalents).
func sameScalars(_ a: String?, _ b: String) -> Bool {
    a.map { Array($0.unicodeScalars) == Array(b.unicodeScalars) } ?? false
}

func isSaneRequestID(_ id: String?) -> Bool {
    guard let id, (1...128).contains(id.utf8.count) else { return false }
    return id.utf8.allSatisfy {
        (0x30...0x39).contains($0) || (0x41...0x5a).contains($0) || (0x61...0x7a).contains($0) || ".-_".utf8.contains($0)
    }
}

/// The same JSON value as written: members in the same order, numbers with
/// the same text, strings by scalars (metadata is stored as json, not jsonb).
func identical(_ a: JSONValue?, _ b: JSONValue?) -> Bool {
    switch (a, b) {
    case (.null?, .null?): return true
    case (.bool(let x)?, .bool(let y)?): return x == y
    case (.number(let x)?, .number(let y)?): return x == y
    case (.string(let x)?, .string(let y)?): return sameScalars(x, y)
    case (.array(let x)?, .array(let y)?): return x.count == y.count && zip(x, y).allSatisfy { identical($0, $1) }
    case (.object(let x)?, .object(let y)?):
        return x.count == y.count && zip(x, y).allSatisfy { sameScalars($0.0, $1.0) && identical($0.1, $1.1) }
    default: return false
    }
}

extension Reply {
    /// assertProblem, plus what scripts/hostile checked of every problem: a sane
    /// request id, a title, a well-formed errors array, nothing internal, and
    /// with `field`, errors that name it.
    func assertHostileProblem(
        _ status: Int, _ codes: Set<String>, field: String? = nil, label: String, file: StaticString = #filePath, line: UInt = #line
    ) {
        guard self.status == status, let code, codes.contains(code) else {
            XCTFail(
                "\(label): \(self.status) \(code ?? "-"), expected \(status) \(codes.sorted()): \(text.prefix(400))", file: file, line: line
            )
            return
        }
        // A 409 names one of the reasons openapi.yaml lists; nothing else names one.
        let reason = json?["reason"]?.stringValue
        if status == 409 {
            XCTAssertNotNil(
                reason.flatMap(APIError.ConflictReason.init(rawValue:)), "\(label): reason \(reason ?? "none")", file: file, line: line)
        }
        assertProblem(status, code, reason: status == 409 ? reason ?? "none" : nil, file: file, line: line)
        assertProblemShape(label: label, file: file, line: line)
        if let field {
            XCTAssertTrue(
                errorFields.contains { $0 == field || $0.hasPrefix(field + ".") || $0.hasPrefix(field + "[") },
                "\(label): errors do not name \(field): \(errorFields)", file: file, line: line)
        }
    }

    func assertHostileProblem(
        _ status: Int, _ code: String, field: String? = nil, label: String, file: StaticString = #filePath, line: UInt = #line
    ) {
        assertHostileProblem(status, [code], field: field, label: label, file: file, line: line)
    }

    /// One of `statuses`, never a 5xx; an error is a problem document with any contract code.
    func assertAnswer(_ statuses: Set<Int>, label: String, file: StaticString = #filePath, line: UInt = #line) {
        guard statuses.contains(status), status < 500 else {
            XCTFail("\(label): status \(status), expected one of \(statuses.sorted()): \(text.prefix(400))", file: file, line: line)
            return
        }
        if status >= 400 {
            let codes: Set<String> = [
                "VALIDATION_ERROR", "BAD_REQUEST", "UNAUTHORIZED", "FORBIDDEN", "NOT_FOUND", "CONFLICT", "PAYLOAD_TOO_LARGE",
                "RATE_LIMITED",
            ]
            assertHostileProblem(status, codes, label: label, file: file, line: line)
        }
    }

    func assertSuccess(_ status: Int = 200, label: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(self.status, status, "\(label): \(text.prefix(400))", file: file, line: line)
        // A reply that echoes a number longer than the test client's parser
        // reads (1000 characters) is checked by its first member.
        let ok = json.map { $0["ok"] == .bool(true) } ?? text.hasPrefix(#"{"ok":true,"#)
        XCTAssertTrue(ok, "\(label): no ok=true", file: file, line: line)
        XCTAssertTrue(
            isSaneRequestID(headers[.requestID]), "\(label): X-Request-Id \(headers[.requestID] ?? "none")", file: file, line: line)
    }

    private func assertProblemShape(label: String, file: StaticString, line: UInt) {
        XCTAssertTrue(
            isSaneRequestID(headers[.requestID]), "\(label): X-Request-Id \(headers[.requestID] ?? "none")", file: file, line: line)
        XCTAssertNotNil(json?["title"]?.stringValue, "\(label): no title", file: file, line: line)
        if code == "VALIDATION_ERROR" {
            let errors = (try? array("errors")) ?? []
            XCTAssertFalse(errors.isEmpty, "\(label): VALIDATION_ERROR without errors", file: file, line: line)
            for error in errors {
                XCTAssertTrue(
                    error["field"]?.stringValue != nil && error["message"]?.stringValue != nil, "\(label): \(error)", file: file, line: line
                )
            }
        }
        let leak = try! Regex(
            #"(SQLSTATE|syntax error|relation "|violates .* constraint|libpq|PQexec|pg_catalog|current_tenant_id|duplicate key|Fatal error|\.swift:|stack trace|Traceback|NIOCore|Hummingbird\.|PostgresError)"#
        ).ignoresCase()
        XCTAssertNil(
            text.firstMatch(of: leak), "\(label): the problem document leaks internals: \(text.prefix(400))", file: file, line: line)
    }
}

extension TestServer {
    func party() async throws -> Party {
        let tenant = try await activeTenant()
        return Party(tenant: tenant, issuer: try await createIssuer(tenant.key, ruc: randomRUC()))
    }

    /// A request whose body is `bytes` as they are.
    func send(
        _ method: HTTPRequest.Method, _ path: String, key: String? = nil, issuer: Int64? = nil, _ bytes: [UInt8],
        contentType: String? = "application/json"
    ) async throws -> Reply {
        try await call(method, path, key: key, issuer: issuer, headers: contentType.map { [.contentType: $0] } ?? [:], bytes: bytes)
    }

    func keyLabels(_ key: String) async throws -> [String] {
        try await call(.get, "/v1/keys", key: key).array("keys").compactMap { $0["label"]?.stringValue }
    }

    func keyID(_ key: String, label: String) async throws -> Int64 {
        let keys = try await call(.get, "/v1/keys", key: key).array("keys")
        return try XCTUnwrap(keys.last { $0["label"] == .string(label) }?["id"]?.intValue)
    }

    /// Issues a factura with this metadata; the 201 and a read back carry it
    /// exactly as written (json, not jsonb: member order and number literals kept).
    func assertRoundTrip(
        metadata: String, in party: Party, label: String, file: StaticString = #filePath, line: UInt = #line
    ) async throws {
        let reply = try await issue(party.key, issuer: party.issuer, body: documentJSON(metadata: metadata))
        reply.assertSuccess(201, label: label, file: file, line: line)
        guard reply.status == 201 else { return }
        let sent = try JSONParser.parse(Array(metadata.utf8))
        XCTAssertTrue(
            identical(reply.value(["document", "metadata"]), sent), "\(label) in the 201: \(reply.text.prefix(300))", file: file, line: line
        )
        let read = try await call(.get, "/v1/documents/\(try reply.string("document", "accessKey"))", key: party.key, issuer: party.issuer)
        XCTAssertTrue(identical(read.value(["document", "metadata"]), sent), "\(label) read back as written", file: file, line: line)
        XCTAssertNil(read.value(["document", "content"]), "\(label): no content member", file: file, line: line)
    }

    /// The string as a key label (raw and escaped), issuer names and address,
    /// tenant name and document metadata, each read back with the same scalars.
    func assertStoredVerbatim(_ text: String, n: Int, emissionPoint: Int, in a: Party) async throws {
        for ascii in [false, true] {
            let before = Set(try await call(.get, "/v1/keys", key: a.key).array("keys").compactMap { $0["id"]?.intValue })
            let minted = try await call(.post, "/v1/keys", key: a.key, json: #"{"label": \#(jsonString(text, ascii: ascii))}"#)
            minted.assertSuccess(201, label: "key label \(text) (escaped: \(ascii))")
            let new = try await call(.get, "/v1/keys", key: a.key).array("keys").filter { !before.contains($0["id"]?.intValue ?? 0) }
            XCTAssertEqual(new.count, 1)
            XCTAssertTrue(sameScalars(new.first?["label"]?.stringValue, text), "key label \(text) read back verbatim: \(new)")
            try await call(.get, "/v1/tenants/me", key: try minted.string("apiKey")).assertSuccess(
                label: "key labelled \(text) authenticates")
        }
        let point = String(format: "%03d", emissionPoint)
        let t = jsonString(text, ascii: n % 2 == 0)
        let issuerBody =
            #"{"ruc": "\#(randomRUC())", "legalName": \#(t), "tradeName": \#(t), "address": \#(t), "establishment": "001", "emissionPoint": "\#(point)"}"#
        let issuer = try await call(.post, "/v1/issuers", key: a.key, json: issuerBody)
        issuer.assertSuccess(201, label: "issuer names \(text)")
        let got = try await call(.get, "/v1/issuers/\(try issuer.int("issuer", "id"))", key: a.key)
        for field in ["legalName", "tradeName", "address"] {
            XCTAssertTrue(sameScalars(try? got.string("issuer", field), text), "issuer \(field) \(text) read back verbatim: \(got.text)")
        }
        let tenant = try await call(
            .post, "/v1/tenants", json: #"{"email": "\#(TestServer.uniqueEmail("v"))", "name": \#(jsonString(text, ascii: n % 2 == 1))}"#)
        tenant.assertSuccess(201, label: "tenant name \(text)")
        XCTAssertTrue(sameScalars(try? tenant.string("tenant", "name"), text))
        let me = try await call(.get, "/v1/tenants/me", key: try tenant.string("apiKey"))
        XCTAssertTrue(sameScalars(try? me.string("tenant", "name"), text), "tenant name \(text) read back verbatim: \(me.text)")
        let c = jsonString(text, ascii: n % 2 == 0)
        let metadata = #"{\#(c): \#(c), "nested": [\#(c), {"k": \#(c)}]}"#
        try await assertRoundTrip(metadata: metadata, in: a, label: "document metadata \(text)")
    }

    /// Every attempt that failed (400, 404, 409, 413) left no gap: type 01's
    /// sandbox sequentials are 1...n and the counter's next is n + 1.
    func assertGapless(_ party: Party, file: StaticString = #filePath, line: UInt = #line) async throws {
        // From the table: a listed document's metadata may hold numbers longer
        // than the test client's parser reads.
        let listed = try TestDatabase.scalar(
            """
            SELECT coalesce(string_agg(sequential::text, ',' ORDER BY sequential), '') FROM documents
            WHERE issuer_id = $1 AND document_type = '01' AND environment = 'sandbox'
            """, [party.issuer], as: String.self)
        let sequentials = listed.split(separator: ",").compactMap { Int64($0) }
        let expected = sequentials.isEmpty ? [] : Array(1...Int64(sequentials.count))
        XCTAssertEqual(sequentials.sorted(), expected, "gapless and unique", file: file, line: line)
        let counters = try await call(.get, "/v1/issuers/\(party.issuer)/sequentials", key: party.key).array("sequentials")
        let next = counters.first { $0["documentType"] == "01" && $0["environment"] == "sandbox" }?["next"]?.intValue
        XCTAssertEqual(next, Int64(sequentials.count + 1), "the counter's next", file: file, line: line)
    }
}
