import Foundation
import SRI
import XCTest

@testable import Comprobify

final class SecretBoxTests: XCTestCase {
    private static func randomKey() -> String {
        Data((0..<32).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
    }

    private let secret = Array("-----BEGIN PRIVATE KEY----- not really, but private".utf8)
    private let here = SecretBox.associatedData(tenantID: 7, issuerID: 42)

    func testSealedValueOpensWithTheSameAssociatedData() throws {
        let box = try SecretBox(currentKey: Self.randomKey())
        let sealed = box.seal(secret, associatedData: here)
        XCTAssertEqual(sealed.count, 1 + 4 + 12 + secret.count + 16)
        XCTAssertEqual(sealed[0], 1)
        XCTAssertEqual(sealed[1..<5].map { String(format: "%02x", $0) }.joined(), box.currentKeyID)
        XCTAssertNil(Data(sealed).range(of: Data(secret.prefix(16))), "the plaintext shows through")
        XCTAssertEqual(try box.open(sealed, associatedData: here), secret)
        XCTAssertEqual(try box.open(box.seal([], associatedData: here), associatedData: here), [])

        // A fresh nonce each time.
        XCTAssertNotEqual(box.seal(secret, associatedData: here), sealed)
    }

    func testWrongAssociatedDataFails() throws {
        let box = try SecretBox(currentKey: Self.randomKey())
        let sealed = box.seal(secret, associatedData: here)
        for other in [
            SecretBox.associatedData(tenantID: 7, issuerID: 43), SecretBox.associatedData(tenantID: 8, issuerID: 42),
            SecretBox.associatedData(tenantID: 74, issuerID: 2), [],
        ] {
            XCTAssertThrowsError(try box.open(sealed, associatedData: other)) { error in
                XCTAssertEqual(error as? SecretBoxError, .authenticationFailed)
            }
        }
    }

    func testEveryTamperedByteFails() throws {
        let box = try SecretBox(currentKey: Self.randomKey())
        let sealed = box.seal(secret, associatedData: here)
        for index in sealed.indices {
            var tampered = sealed
            tampered[index] ^= 0x01
            // The version byte, then the key's id, then what the tag covers.
            let expected: SecretBoxError =
                index == 0
                ? .malformed
                : index <= SecretBox.keyIDLength
                    ? .unknownKey(id: Hex.encode(Array(tampered[1...SecretBox.keyIDLength]))) : .authenticationFailed
            XCTAssertThrowsError(try box.open(tampered, associatedData: here), "byte \(index)") { error in
                XCTAssertEqual(error as? SecretBoxError, expected, "byte \(index)")
            }
        }
        XCTAssertThrowsError(try box.open(Array(sealed.dropLast()), associatedData: here)) { error in
            XCTAssertEqual(error as? SecretBoxError, .authenticationFailed, "a tag one byte short")
        }
        XCTAssertThrowsError(try box.open(Array(sealed.prefix(20)), associatedData: here)) { error in
            XCTAssertEqual(error as? SecretBoxError, .malformed)
        }
    }

    func testRotationOpensValuesSealedUnderAPreviousKey() throws {
        let old = Self.randomKey()
        let new = Self.randomKey()
        let before = try SecretBox(environment: [SecretBox.currentKeyVariable: old])
        let sealed = before.seal(secret, associatedData: here)

        let after = try SecretBox(environment: [
            SecretBox.currentKeyVariable: new, SecretBox.previousKeysVariable: "\(Self.randomKey()), \(old)",
        ])
        XCTAssertNotEqual(after.currentKeyID, before.currentKeyID)
        XCTAssertEqual(try after.open(sealed, associatedData: here), secret)
        // New values are sealed under the new key; the old box cannot open them.
        let resealed = after.seal(secret, associatedData: here)
        XCTAssertEqual(resealed[1..<5].map { String(format: "%02x", $0) }.joined(), after.currentKeyID)
        XCTAssertThrowsError(try before.open(resealed, associatedData: here)) { error in
            XCTAssertEqual(error as? SecretBoxError, .unknownKey(id: after.currentKeyID))
        }
        // A rolling restart's first step (README): a process that still seals
        // under the old key but knows the new one opens what the restarted
        // processes seal.
        let announced = try SecretBox(environment: [SecretBox.currentKeyVariable: old, SecretBox.previousKeysVariable: new])
        XCTAssertEqual(announced.currentKeyID, before.currentKeyID)
        XCTAssertEqual(try announced.open(resealed, associatedData: here), secret)
        XCTAssertEqual(try after.open(announced.seal(secret, associatedData: here), associatedData: here), secret)
        // Once the old key is dropped, its values no longer open.
        let dropped = try SecretBox(currentKey: new)
        XCTAssertThrowsError(try dropped.open(sealed, associatedData: here)) { error in
            XCTAssertEqual(error as? SecretBoxError, .unknownKey(id: before.currentKeyID))
        }
        // An old value resealed: under the new key, with the same associated data, the same secret.
        let moved = try after.resealed(sealed, associatedData: here)
        XCTAssertEqual(moved[1..<5].map { String(format: "%02x", $0) }.joined(), after.currentKeyID)
        XCTAssertEqual(try dropped.open(moved, associatedData: here), secret)
        XCTAssertThrowsError(try after.resealed(sealed, associatedData: Array("elsewhere".utf8))) { error in
            XCTAssertEqual(error as? SecretBoxError, .authenticationFailed)
        }
    }

    func testAKeyThatDoesNotLookRandomIsToldApart() throws {
        for (bytes, weak) in [
            (Array(repeating: UInt8(0), count: 32), true), ((0..<32).map { UInt8($0 % 4) }, true),
            (Array("dev-only-key-do-not-use-in-prod!".utf8), false), ((0..<32).map { UInt8($0) }, false),
        ] {
            XCTAssertEqual(try SecretBox(currentKey: Data(bytes).base64EncodedString()).currentKeyLooksWeak, weak, "\(bytes)")
        }
        for _ in 0..<100 {
            XCTAssertFalse(try SecretBox(currentKey: Self.randomKey()).currentKeyLooksWeak, "a random key")
        }
    }

    func testBadMasterKeysAreRejectedInOneLine() {
        let cases: [([String: String], SecretKeyError)] = [
            ([:], .missing(variable: "COMPROBIFY_SECRET_KEY")),
            (["COMPROBIFY_SECRET_KEY": "  "], .missing(variable: "COMPROBIFY_SECRET_KEY")),
            (["COMPROBIFY_SECRET_KEY": "not*base64!"], .notBase64(variable: "COMPROBIFY_SECRET_KEY")),
            (
                ["COMPROBIFY_SECRET_KEY": Data(repeating: 1, count: 16).base64EncodedString()],
                .wrongLength(variable: "COMPROBIFY_SECRET_KEY", bytes: 16)
            ),
            (
                ["COMPROBIFY_SECRET_KEY": Self.randomKey(), "COMPROBIFY_SECRET_KEY_PREVIOUS": "c2hvcnQ="],
                .wrongLength(variable: "COMPROBIFY_SECRET_KEY_PREVIOUS", bytes: 5)
            ),
        ]
        for (environment, expected) in cases {
            XCTAssertThrowsError(try SecretBox(environment: environment)) { error in
                XCTAssertEqual(error as? SecretKeyError, expected)
                let message = String(describing: error)
                XCTAssertFalse(message.contains("\n"), message)
                XCTAssertTrue(
                    message.hasPrefix(
                        expected == .wrongLength(variable: "COMPROBIFY_SECRET_KEY_PREVIOUS", bytes: 5)
                            ? "COMPROBIFY_SECRET_KEY_PREVIOUS" : "COMPROBIFY_SECRET_KEY "), message)
                for value in environment.values where value.count > 8 { XCTAssertFalse(message.contains(value)) }
            }
        }
    }

    func testDescriptionsCarryNoKeyMaterial() throws {
        let key = Self.randomKey()
        let previous = Self.randomKey()
        let box = try SecretBox(currentKey: key, previousKeys: [previous])
        let raw = try XCTUnwrap(Data(base64Encoded: key))
        var dumped = ""
        dump(box, to: &dumped)
        for text in [box.description, box.debugDescription, String(describing: box), String(reflecting: box), "\(box)", dumped] {
            XCTAssertTrue(text.contains(box.currentKeyID), text)
            XCTAssertFalse(text.contains(key))
            XCTAssertFalse(text.contains(previous))
            XCTAssertFalse(text.contains(raw.map { String(format: "%02x", $0) }.joined()))
        }
    }
}
