import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import Postgres
import XCTest

@testable import Comprobify

final class AccessKeyTests: XCTestCase {
    func testKnownRealKeysCarryACorrectCheckDigit() {
        XCTAssertTrue(AccessKey.isValid("0110201401099126726300120010010002742492823013317"))
        XCTAssertTrue(AccessKey.isValid("0312202201019007200200120029020004874985766297216"))
        XCTAssertFalse(AccessKey.isValid("0110201401099126726300120010010002742492823013318"))
        XCTAssertFalse(AccessKey.isValid("011020140109912672630012001001000274249282301331"))
        XCTAssertFalse(AccessKey.isValid("01102014010991267263001200100100027424928230133a7"))
    }

    /// An error kept in the database (webhook attempts: char_length at most
    /// 300) is cut by code points, not by the grapheme clusters Swift counts:
    /// ten letters, each with a hundred combining marks, are 1010 code points.
    func testOneLineIsCutByCodePoints() {
        let heavy = String(repeating: "e" + String(repeating: "\u{0301}", count: 100), count: 10)
        XCTAssertEqual(heavy.count, 10)
        let cut = Format.oneLine(heavy)
        XCTAssertEqual(cut.unicodeScalars.count, 200)
        XCTAssertEqual(cut.unicodeScalars.last, "…")
        XCTAssertEqual(Format.oneLine("first\r\nsecond\u{2028}third"), "first  second third")
        // No NUL or other control character reaches a text column (PostgreSQL
        // refuses a NUL, and a stored error that could not be written was an
        // attempt never recorded: the delivery was sent again for ever).
        XCTAssertEqual(Format.oneLine("x: \u{0}\u{1B}[31m\u{7F}\ty\u{9B}0m"), "x: \u{FFFD}\u{FFFD}[31m\u{FFFD} y\u{FFFD}0m")
        XCTAssertEqual(WebhookService.short("value \u{0} here"), "value \u{FFFD} here")
        let short = String(repeating: "x", count: 200)
        XCTAssertEqual(Format.oneLine(short), short, "200 code points are kept whole")
        XCTAssertEqual(Format.oneLine(short + "y").unicodeScalars.count, 200)
        XCTAssertEqual(WebhookService.short(heavy), cut)
        XCTAssertEqual(SRIClient.short(heavy), cut)
    }

    func testCheckDigitEdgeCases() {
        // Sum 0: 11 − 0 = 11 gives 0.
        XCTAssertEqual(AccessKey.checkDigit(String(repeating: "0", count: 48)), 0)
        // 6 × weight 2 = 12, 12 mod 11 = 1: 11 − 1 = 10 gives 1.
        XCTAssertEqual(AccessKey.checkDigit(String(repeating: "0", count: 47) + "6"), 1)
        // Weights run 2..7 from the right and repeat: a 1 in 7th place from the right has weight 2 again.
        XCTAssertEqual(AccessKey.checkDigit("1" + String(repeating: "0", count: 6)), 11 - 2)
        XCTAssertEqual(AccessKey.checkDigit("1" + String(repeating: "0", count: 5)), 11 - 7)
    }

    func testLayoutOfAGeneratedKey() {
        let key = AccessKey.make(
            .init(
                issueDate: CalendarDate(year: 2026, month: 3, day: 1)!, documentType: "04", ruc: "1790012345001",
                environment: .production, establishment: "002", emissionPoint: "015"
            ),
            sequential: 42, numericCode: "12345678"
        )
        XCTAssertEqual(key.count, 49)
        XCTAssertTrue(AccessKey.isValid(key))
        XCTAssertEqual(String(key.prefix(48)), "01032026" + "04" + "1790012345001" + "2" + "002015" + "000000042" + "12345678" + "1")
    }

    func testNumericCodesAreEightDigits() {
        for _ in 0..<200 {
            let code = AccessKey.randomNumericCode()
            XCTAssertEqual(code.count, 8)
            XCTAssertTrue(code.allSatisfy(\.isASCII) && code.allSatisfy(\.isNumber), code)
        }
    }

    func testCalendarDates() {
        XCTAssertNotNil(CalendarDate(iso: "2024-02-29"))
        XCTAssertNil(CalendarDate(iso: "2025-02-29"))
        XCTAssertNil(CalendarDate(iso: "2025-13-01"))
        XCTAssertNil(CalendarDate(iso: "2025-1-01"))
        XCTAssertNil(CalendarDate(iso: "０２０２-01-01"))
        // 2026-03-02 03:00 UTC is still March 1st in Guayaquil (UTC−5).
        XCTAssertEqual(CalendarDate.todayInEcuador(now: 1_772_420_400), CalendarDate(year: 2026, month: 3, day: 1))
    }
}

final class TokenTests: XCTestCase {
    func testGeneratedTokensHaveTheDocumentedShape() {
        let test = APIToken.generate(.sandbox)
        let live = APIToken.generate(.production)
        XCTAssertTrue(test.plaintext.wholeMatch(of: /cfy_test_[0-9a-f]{64}/) != nil, test.plaintext)
        XCTAssertTrue(live.plaintext.wholeMatch(of: /cfy_live_[0-9a-f]{64}/) != nil, live.plaintext)
        XCTAssertEqual(test.prefix.count, 14)
        XCTAssertNotEqual(APIToken.generate(.sandbox).plaintext, test.plaintext)
        XCTAssertEqual(test.digest.count, 32)
    }

    func testParsingRefusesAnythingButATokenShape() {
        let good = APIToken.generate(.sandbox).plaintext
        XCTAssertEqual(APIToken.parse(Substring(good))?.environment, .sandbox)
        XCTAssertNil(APIToken.parse(Substring(good.uppercased())))
        XCTAssertNil(APIToken.parse(Substring(good + "0")))
        XCTAssertNil(APIToken.parse(Substring(String(good.dropLast()))))
        XCTAssertNil(APIToken.parse(Substring("cfy_prod_" + String(good.dropFirst(9)))))
        XCTAssertNil(APIToken.parse(Substring("cfy_test_" + String(repeating: "g", count: 64))))
    }

    func testEnvironmentMatrixOfTheSeedDocumentation() {
        XCTAssertNoThrow(try ResolvedIssuer.checkEnvironment(key: .sandbox, issuer: .sandbox))
        XCTAssertNoThrow(try ResolvedIssuer.checkEnvironment(key: .production, issuer: .production))
        XCTAssertThrowsError(try ResolvedIssuer.checkEnvironment(key: .sandbox, issuer: .production)) { error in
            let error = error as! APIError
            XCTAssertEqual(error.status.code, 401)
            XCTAssertTrue(error.detail.contains("sandbox key cannot address a production issuer"), error.detail)
        }
        XCTAssertThrowsError(try ResolvedIssuer.checkEnvironment(key: .production, issuer: .sandbox)) { error in
            let error = error as! APIError
            XCTAssertEqual(error.status.code, 401)
            XCTAssertTrue(error.detail.contains("production key cannot address a sandbox issuer"), error.detail)
        }
    }

    func testRequestIDsAreEchoedOnlyWhenSane() {
        XCTAssertEqual(RequestMiddleware.requestID(from: "abc-123_X.y"), "abc-123_X.y")
        XCTAssertNotEqual(RequestMiddleware.requestID(from: "bad id"), "bad id")
        XCTAssertNotEqual(RequestMiddleware.requestID(from: String(repeating: "a", count: 129)).count, 129)
        XCTAssertEqual(RequestMiddleware.requestID(from: String(repeating: "a", count: 128)).count, 128)
        XCTAssertFalse(RequestMiddleware.requestID(from: nil).isEmpty)
    }
}

final class JSONParserTests: XCTestCase {
    func parse(_ text: String) throws -> JSONValue {
        try JSONParser.parse(Array(text.utf8))
    }

    func testNumbersKeepTheirExactText() throws {
        let value = try parse(#"{"big": 123456789012345678901234567890, "f": 2.50, "e": -1E+5}"#)
        XCTAssertEqual(value["big"], .number("123456789012345678901234567890"))
        XCTAssertEqual(value["f"], .number("2.50"))
        XCTAssertEqual(value.serialized, #"{"big":123456789012345678901234567890,"f":2.50,"e":-1E+5}"#)
    }

    func testStringsAndEscapes() throws {
        XCTAssertEqual(try parse(#""a\"b\\c\/\n\u00e9\ud83d\ude00""#), .string("a\"b\\c/\né😀"))
        XCTAssertEqual(JSONValue.string("a\"\n\u{1}").serialized, #""a\"\n\u0001""#)
        XCTAssertEqual(JSONValue.string("\\\r\t\u{1f}\u{7f}é😀/").serialized, #""\\\r\t\u001f\#u{7f}é😀/""#)
    }

    func testSerializedValuesParseBackToThemselves() throws {
        let value = JSONValue.object([
            ("s", .string("plain")), ("escaped", .string("q\"b\\n\nr\rt\tc\u{2}\u{1b}ñ€😀")), ("n", .number("-0.50")),
            ("t", true), ("f", false), ("z", .null), ("a", .array([.string(""), .array([]), .object([])])),
            ("raw", .raw(#"{"k":[1,2]}"#)),
        ])
        let bytes = value.utf8
        XCTAssertEqual(String(decoding: bytes, as: UTF8.self), value.serialized)
        let back = try JSONParser.parse(bytes)
        XCTAssertEqual(back["escaped"], value["escaped"])
        XCTAssertEqual(back["a"], value["a"])
        XCTAssertEqual(back["raw"]?["k"], .array([.number("1"), .number("2")]))
        XCTAssertEqual(back["n"], .number("-0.50"))
    }

    func testRefusals() {
        for bad in [
            #"{"a": "\u0000"}"#, #"{"a": "\ud800"}"#, #"{"a": "\udc00x"}"#, "{\"a\": \"\u{0001}\"}", #"{"a": 01}"#,
            #"{"a": 1.}"#, #"{"a": }"#, #"{"a": 1,}"#, "[1] x", #"{"a": tru}"#, "", #"{"a": "unterminated}"#,
        ] {
            XCTAssertThrowsError(try parse(bad), bad)
        }
        XCTAssertThrowsError(try JSONParser.parse([0x22, 0xff, 0x22]), "invalid UTF-8")
        XCTAssertThrowsError(try parse(String(repeating: "[", count: 100) + String(repeating: "]", count: 100)))
        XCTAssertNoThrow(try parse(String(repeating: "[", count: 60) + String(repeating: "]", count: 60)))
    }

    /// A string JSON allows but the API refuses (a NUL, a lone surrogate) is
    /// named by where it is; in a member's name, or any other error, it is the body.
    func testARefusedStringIsNamedByItsPath() throws {
        do {
            _ = try Input.parse(Array(#"{"metadata": {"a\u0000": 1}}"#.utf8), allowEmpty: false)
            XCTFail("a NUL in a member name is refused")
        } catch let error as APIError {
            XCTAssertTrue(error.fieldErrors.first?.message.contains("not allowed: a member name: NUL") ?? false, "\(error.fieldErrors)")
        }
        func field(_ text: String) -> String? {
            do {
                _ = try Input.parse(Array(text.utf8), allowEmpty: false)
                return nil
            } catch let error as APIError {
                return error.fieldErrors.first?.field
            } catch {
                return "unexpected \(error)"
            }
        }
        XCTAssertEqual(field(#"{"label": "a\u0000b"}"#), "label")
        XCTAssertEqual(field(#"{"items": [{"code": "x"}, {"description": "\ud800"}]}"#), "items[1].description")
        XCTAssertEqual(field(#"{"a": {"b": ["ok", "\udc00x"]}}"#), "a.b[1]")
        XCTAssertEqual(field(#"{"a\u0000": 1}"#), "body", "a member's name, named by its object: the body")
        XCTAssertEqual(field(#"{"metadata": {"ok": 1, "a\u0000": 1}}"#), "metadata", "a member's name, named by its object")
        XCTAssertEqual(field(#"{"items": [{"details": [{"\ud800": 1}]}]}"#), "items[0].details[0]")
        XCTAssertEqual(field(#"{"label": "a"#), "body", "JSON's grammar")
        XCTAssertEqual(field(#"{"label": "\u0000", "label": 1}"#), "label")
        XCTAssertEqual(field(#"["\u0000"]"#), "body", "an array as the body")
        XCTAssertEqual(field(#""\u0000""#), "body", "a string as the body")
    }

    func testRepeatedMembersAreRefused() throws {
        func failure(_ text: String) -> JSONParseError? {
            do {
                _ = try parse(text)
                return nil
            } catch {
                return error as? JSONParseError
            }
        }
        func repeated(_ text: String) -> String? { failure(text)?.repeatedName }
        func path(_ text: String) -> String? { failure(text)?.repeatedPath }
        XCTAssertEqual(repeated(#"{"a": 1, "a": 2}"#), "a")
        XCTAssertEqual(repeated(#"{"a": 1, "b": 2, "a": 3}"#), "a")
        XCTAssertEqual(repeated(#"{"o": {"q": "1", "q": "1000"}}"#), "q", "nested objects too")
        // Where it is, as a field path.
        XCTAssertEqual(path(#"{"a": 1, "a": 2}"#), "a")
        XCTAssertEqual(path(#"{"o": {"q": "1", "q": "1000"}}"#), "o.q")
        XCTAssertEqual(path(#"{"items": [{"q": 1}, {"x": {"q": 1}}, {"q": 1, "q": 2}]}"#), "items[2].q")
        XCTAssertEqual(path(#"{"m": [[{}, {"z": 0, "z": 0}]]}"#), "m[0][1].z")
        XCTAssertEqual(path(#"[{"a": [1, {"b": 1, "b": 1}]}]"#), "[0].a[1].b")
        XCTAssertNil(path(#"{"a": [1, }"#), "no path for other errors")
        // Names are found by a scan in small objects and through an index past
        // JSONParser.scannedMembers: repeats on both sides of that line.
        let names = (0..<(JSONParser.scannedMembers + 8)).map { "k\($0)" }
        let members = names.enumerated().map { #""\#($1)": \#($0)"# }
        XCTAssertNoThrow(try parse("{" + members.joined(separator: ", ") + "}"))
        XCTAssertEqual(repeated("{" + (members + [#""k3": "late""#]).joined(separator: ", ") + "}"), "k3")
        XCTAssertEqual(repeated("{" + (members + [#""k\#(names.count - 1)": 0"#]).joined(separator: ", ") + "}"), "k\(names.count - 1)")
        XCTAssertEqual(repeated(#"{"k1": 0, "k3": 1, "k3": "late"}"#), "k3")
        // Byte for byte in the scan too: "é" and "e" + combining accent are two names.
        guard case .object(let distinct) = try parse(#"{"\u00e9": 1, "e\u0301": 2}"#) else { return XCTFail("not an object") }
        XCTAssertEqual(distinct.map { Array($0.0.unicodeScalars) }, [["\u{E9}"], ["e", "\u{301}"]])
        let wide = (0..<(JSONParser.scannedMembers + 8)).map { #""n\#($0)": 0"# }
        guard case .object(let indexed) = try parse("{" + (wide + [#""\u00e9": 1, "e\u0301": 2"#]).joined(separator: ", ") + "}") else {
            return XCTFail("not an object")
        }
        XCTAssertEqual(indexed.count, wide.count + 2, "and through the index")
    }

    func testWideObjectsParseInOnePass() throws {
        let members = (0..<50_000).map { #""k\#($0)": \#($0)"# }.joined(separator: ",")
        let value = try parse("{" + members + #", "last": "k"}"#)
        guard case .object(let parsed) = value else { return XCTFail("not an object") }
        XCTAssertEqual(parsed.count, 50_001)
        XCTAssertEqual(value["last"], .string("k"))
        XCTAssertThrowsError(try parse("{" + members + #", "k7": "again"}"#), "a repeat past 50 000 members is found")
        XCTAssertEqual(value["k49999"], .number("49999"))
    }

    func testIntegersAcceptWholeNumbersOnly() {
        XCTAssertEqual(Input.integer(.number("5"), in: 1...10), 5)
        XCTAssertEqual(Input.integer(.number("5.0"), in: 1...10), 5)
        XCTAssertNil(Input.integer(.number("5.5"), in: 1...10))
        XCTAssertNil(Input.integer(.number("1e400"), in: 1...10))
        XCTAssertNil(Input.integer(.number("99999999999999999999999"), in: 1...Int64.max))
        XCTAssertNil(Input.integer(.string("5"), in: 1...10))
    }
}

final class RequestIDTests: XCTestCase {
    func testFreshIDsAre24HexCharactersOneProcessPrefixAndNeverRepeat() {
        let ids = (0..<10_000).map { _ in RequestMiddleware.requestID(from: nil) }
        XCTAssertEqual(Set(ids).count, ids.count, "no id twice")
        for id in ids {
            XCTAssertEqual(id.utf8.count, 24)
            XCTAssertTrue(id.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) }, id)
        }
        XCTAssertEqual(Set(ids.map { $0.prefix(12) }).count, 1, "one prefix per process")
        XCTAssertEqual(RequestMiddleware.requestID(from: "bad id!").utf8.count, 24, "an insane client id is replaced")
        XCTAssertEqual(RequestMiddleware.requestID(from: "client-id_1.2"), "client-id_1.2")
    }
}

final class NumberForecastTests: XCTestCase {
    func testGuessesCountTheRequestsAheadAndAMissSignsTheNextUnderTheLock() {
        let forecast = NumberForecast()
        let counter = NumberForecast.Counter(issuer: 1, documentType: "01")
        let opening = forecast.ask(counter)
        XCTAssertNil(opening.guess, "nothing known before the first number")
        forecast.took(1, opening)
        // Two requests ask before either takes: 2 and 3.
        let first = forecast.ask(counter)
        let second = forecast.ask(counter)
        XCTAssertEqual([first.guess, second.guess], [2, 3])
        forecast.took(2, first)
        forecast.took(3, second)
        // One gives up before taking: the next guess does not count it.
        forecast.abandon(forecast.ask(counter))
        let third = forecast.ask(counter)
        XCTAssertEqual(third.guess, 4)
        // Another process took 4: a miss, and the next request signs under the lock.
        forecast.took(5, third)
        let unguessed = forecast.ask(counter)
        XCTAssertNil(unguessed.guess)
        forecast.took(6, unguessed)
        let resumed = forecast.ask(counter)
        XCTAssertEqual(resumed.guess, 7, "guessing resumes after a number taken without a guess")
        forecast.abandon(resumed)
        XCTAssertNil(forecast.ask(NumberForecast.Counter(issuer: 1, documentType: "04")).guess, "each counter on its own")
        let last = NumberForecast.Counter(issuer: 2, documentType: "01")
        forecast.took(999_999_998, forecast.ask(last))
        XCTAssertEqual(forecast.ask(last).guess, 999_999_999)
        XCTAssertNil(forecast.ask(last).guess, "nothing past the last sequential")
    }

    /// After misses in a row, twice as many numbers each time are taken
    /// without a guess (1, 2, 4, ... at most maxUnguessed); a hit starts over.
    func testMissesInARowGuessLessAndLess() {
        let forecast = NumberForecast()
        let counter = NumberForecast.Counter(issuer: 1, documentType: "01")
        var number = 1
        forecast.took(number, forecast.ask(counter))
        // Takes unguessed numbers until a guess comes back; returns how many.
        func unguessedTakes() -> Int {
            var count = 0
            while true {
                let turn = forecast.ask(counter)
                number += 1
                if turn.guess != nil {
                    forecast.abandon(turn)
                    number -= 1
                    return count
                }
                forecast.took(number, turn)
                count += 1
            }
        }
        // Each guess misses: another process took the number first.
        func missOnce() {
            let turn = forecast.ask(counter)
            XCTAssertEqual(turn.guess, number + 1)
            number += 2
            forecast.took(number, turn)
        }
        var runs: [Int] = []
        for _ in 1...8 {
            missOnce()
            runs.append(unguessedTakes())
        }
        XCTAssertEqual(runs, [1, 2, 4, 8, 16, 32, 64, NumberForecast.maxUnguessed])
        // A hit starts over: the next miss takes one number without a guess.
        let hit = forecast.ask(counter)
        number += 1
        XCTAssertEqual(hit.guess, number)
        forecast.took(number, hit)
        missOnce()
        XCTAssertEqual(unguessedTakes(), 1)
        // A miss in one trip counts the same; a failure after the answer leaves one unguessed.
        let sent = forecast.ask(counter)
        forecast.sent(nil, sent)
        XCTAssertEqual(unguessedTakes(), 2, "the second miss in a row")
        let failed = forecast.ask(counter)
        number += 1
        forecast.sent(number, failed)
        forecast.forget(counter)
        XCTAssertEqual(unguessedTakes(), 1)
    }

    /// A turn goes in one round trip once the counter has agreed with
    /// `agreementForOneTrip` guesses in a row. A guess sent with the document
    /// ends its turn when the counter has answered: the next guesses go on
    /// from it, or, when the counter gave another number or the transaction
    /// failed after, stop until a number is taken again, and the agreement
    /// starts over. A request issuing again after a miss asks without guessing.
    func testOneTripTurnsComeAfterAgreementAndEndWithTheCountersAnswer() {
        let forecast = NumberForecast(agreementForOneTrip: 2)
        let counter = NumberForecast.Counter(issuer: 1, documentType: "01")
        forecast.took(1, forecast.ask(counter))
        for number in 2...3 {
            let turn = forecast.ask(counter)
            XCTAssertEqual(turn.guess, number)
            XCTAssertFalse(turn.oneTrip, "agreed \(number - 2) times so far")
            forecast.took(number, turn)
        }
        let first = forecast.ask(counter)
        let second = forecast.ask(counter)
        XCTAssertEqual([first.guess, second.guess], [4, 5])
        XCTAssertEqual([first.oneTrip, second.oneTrip], [true, true])
        forecast.sent(4, first)
        let behindSecond = forecast.ask(counter)
        XCTAssertEqual(behindSecond.guess, 6, "4 given and 5 asked for")
        forecast.abandon(behindSecond)
        forecast.sent(nil, second)
        let afterMiss = forecast.ask(counter)
        XCTAssertNil(afterMiss.guess, "the counter gave another number than 5")
        XCTAssertFalse(afterMiss.oneTrip)
        forecast.abandon(afterMiss)
        forecast.took(5, forecast.ask(counter, guessing: false))
        let again = forecast.ask(counter)
        XCTAssertEqual(again.guess, 6)
        XCTAssertFalse(again.oneTrip, "the agreement starts over after a miss")
        forecast.took(6, again)
        forecast.took(7, forecast.ask(counter))
        let agreedAgain = forecast.ask(counter)
        XCTAssertTrue(agreedAgain.oneTrip)
        forecast.sent(8, agreedAgain)
        forecast.forget(counter)
        let afterFailure = forecast.ask(counter)
        XCTAssertNil(afterFailure.guess, "the transaction of 8 failed after the counter's answer")
        forecast.took(8, afterFailure)
        XCTAssertFalse(forecast.ask(counter).oneTrip, "and the agreement starts over")
        // A miss when the number is taken first resets the agreement too.
        let other = NumberForecast.Counter(issuer: 2, documentType: "01")
        forecast.took(1, forecast.ask(other))
        forecast.took(2, forecast.ask(other))
        forecast.took(3, forecast.ask(other))
        let missed = forecast.ask(other)
        XCTAssertTrue(missed.oneTrip)
        forecast.took(9, missed)
        forecast.took(10, forecast.ask(other))
        XCTAssertFalse(forecast.ask(other).oneTrip)
        let third = NumberForecast.Counter(issuer: 3, documentType: "01")
        forecast.took(1, forecast.ask(third))
        XCTAssertNil(forecast.ask(third, guessing: false).guess, "asked without guessing")
        XCTAssertEqual(forecast.ask(third).guess, 3, "the request without a guess still counts as ahead")
    }

    /// A request takes its number after the requests that asked before it on
    /// its counter have taken theirs or given up; it waits for them at most
    /// `turnWait`, and never for another counter's.
    func testNumbersAreTakenInTheOrderTheRequestsAsked() throws {
        let forecast = NumberForecast(turnWait: 30)
        let counter = NumberForecast.Counter(issuer: 1, documentType: "01")
        forecast.took(1, forecast.ask(counter))
        let first = forecast.ask(counter)
        let second = forecast.ask(counter)
        let third = forecast.ask(counter)
        let order = NIOLockedValueBox<[String]>([])
        let secondDone = expectation(description: "second")
        let thirdDone = expectation(description: "third")
        for (turn, name, done) in [(third, "third", thirdDone), (second, "second", secondDone)] {
            Thread.detachNewThread {
                forecast.waitForTurn(turn)
                order.withLockedValue { $0.append(name) }
                forecast.took(turn.guess!, turn)
                done.fulfill()
            }
        }
        // Another counter's turn does not wait for these.
        let other = forecast.ask(NumberForecast.Counter(issuer: 2, documentType: "01"))
        XCTAssertTrue(forecast.waitForTurn(other))
        forecast.abandon(other)
        Thread.sleep(forTimeInterval: 0.2)
        XCTAssertEqual(order.withLockedValue { $0 }, [], "both wait while the first has not taken its number")
        order.withLockedValue { $0.append("first") }
        forecast.took(first.guess!, first)
        wait(for: [secondDone, thirdDone], timeout: 10)
        XCTAssertEqual(order.withLockedValue { $0 }, ["first", "second", "third"])
        XCTAssertEqual(forecast.ask(counter).guess, 5)

        // A request ahead that never ends its turn holds the next one up for turnWait only.
        let brief = NumberForecast(turnWait: 0.1)
        let stuck = brief.ask(counter)
        let behind = brief.ask(counter)
        let started = Date()
        XCTAssertFalse(brief.waitForTurn(behind), "not its turn: the wait ran out")
        XCTAssertGreaterThanOrEqual(Date().timeIntervalSince(started), 0.09)
        brief.abandon(stuck)
        brief.abandon(behind)
    }

    /// A document signed ahead for one round trip, as `issueOnce` offers it.
    private func offer(_ turn: NumberForecast.Turn, key: String) throws -> NumberForecast.Offer {
        let request = try ComprobanteRequest(
            Input.parse(Array(Bodies.factura().utf8), allowEmpty: false), today: .todayInEcuador(now: Date().timeIntervalSince1970))
        let document = DocumentsStore.Signed(
            comprobante: request.comprobante, body: .null, sequential: try XCTUnwrap(turn.guess), accessKey: "", xml: [],
            metadata: "{}", modifiedDocumentID: nil)
        return NumberForecast.Offer(turn: turn, key: Data(key.utf8), document: document)
    }

    /// A turn whose time comes takes the offers of the turns right behind it:
    /// signed by the same key with the next numbers, at most `mostTogether`
    /// in all. The turns it took return at once and wait for what it hands
    /// them; the first offer of another key, or with another number, ends
    /// the run, and its turn comes next as usual.
    func testATurnTakesTheOffersRightBehindItOfItsKeyAndNumbers() throws {
        let forecast = NumberForecast(turnWait: 30, agreementForOneTrip: 1)
        let counter = NumberForecast.Counter(issuer: 1, documentType: "01")
        forecast.took(1, forecast.ask(counter))
        forecast.took(2, forecast.ask(counter))
        let turns = (0..<5).map { _ in forecast.ask(counter) }
        XCTAssertEqual(turns.map(\.guess), [3, 4, 5, 6, 7])
        XCTAssertTrue(turns.allSatisfy(\.oneTrip))
        let offers = try zip(turns, ["K", "K", "K", "J", "K"]).map { try offer($0, key: $1) }
        let places = NIOLockedValueBox<[Int: String]>([:])
        let outcomes = NIOLockedValueBox<[Int: String]>([:])
        let behindDone = (1..<5).map { expectation(description: "turn \($0)") }
        for index in 1..<5 {
            Thread.detachNewThread {
                switch forecast.waitForTurn(turns[index], offering: offers[index]) {
                case .taken(let taken):
                    places.withLockedValue { $0[index] = "taken" }
                    switch forecast.outcome(of: taken) {
                    case .stored(let json): outcomes.withLockedValue { $0[index] = "stored \(json.serialized)" }
                    case .notStored: outcomes.withLockedValue { $0[index] = "not stored" }
                    case .failed: outcomes.withLockedValue { $0[index] = "failed" }
                    }
                case .first(let taking):
                    places.withLockedValue { $0[index] = "first taking \(taking.map { $0.turn.guess ?? 0 })" }
                    forecast.sent(turns[index].guess, [turns[index]] + taking.map(\.turn))
                case .late:
                    places.withLockedValue { $0[index] = "late" }
                    forecast.abandon(turns[index])
                }
                behindDone[index - 1].fulfill()
            }
        }
        Thread.sleep(forTimeInterval: 0.2)
        XCTAssertEqual(places.withLockedValue { $0 }, [:], "all wait while the first has not taken its number")
        guard case .first(let taking) = forecast.waitForTurn(turns[0], offering: offers[0]) else {
            return XCTFail("the first turn's time has come")
        }
        XCTAssertEqual(taking.map(\.turn.ticket), [turns[1].ticket, turns[2].ticket], "6 is another key's: the run ends there")
        // The taken turns return at once, before the counter has answered.
        let deadline = Date(timeIntervalSinceNow: 10)
        while places.withLockedValue({ $0.count }) < 2, Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
        XCTAssertEqual(places.withLockedValue { $0 }, [1: "taken", 2: "taken"])
        forecast.sent(3, [turns[0]] + taking.map(\.turn))
        forecast.deliver([.stored(.string("4")), .notStored], to: taking)
        wait(for: behindDone, timeout: 10)
        XCTAssertEqual(
            places.withLockedValue { $0 }, [1: "taken", 2: "taken", 3: "first taking []", 4: "first taking []"],
            "7 is behind another key's turn")
        XCTAssertEqual(outcomes.withLockedValue { $0 }, [1: "stored \"4\"", 2: "not stored"])
        XCTAssertEqual(forecast.ask(counter).guess, 8, "3 to 5 sent together, then 6 and 7")
    }

    /// When the turn that took offers fails before the counter answers, it
    /// ends the taken turns: the turn behind them comes at once, not after
    /// `turnWait`.
    func testTurnsTakenByAFailedStatementEndAndTheNextComesAtOnce() throws {
        let forecast = NumberForecast(turnWait: 30, agreementForOneTrip: 1)
        let counter = NumberForecast.Counter(issuer: 1, documentType: "01")
        forecast.took(1, forecast.ask(counter))
        forecast.took(2, forecast.ask(counter))
        let lead = forecast.ask(counter)
        let taken = forecast.ask(counter)
        let next = forecast.ask(counter)
        let takenOffer = try offer(taken, key: "K")
        let takenDone = expectation(description: "taken")
        Thread.detachNewThread {
            if case .taken(let offer) = forecast.waitForTurn(taken, offering: takenOffer),
                case .notStored = forecast.outcome(of: offer)
            {
                takenDone.fulfill()
            }
        }
        let deadline = Date(timeIntervalSinceNow: 10)
        var taking: [NumberForecast.Offer] = []
        while taking.isEmpty, Date() < deadline {
            Thread.sleep(forTimeInterval: 0.01)
            // Another key's offer is not taken: ask again with the same key once it is there.
            guard case .first(let offers) = forecast.waitForTurn(lead, offering: try offer(lead, key: "K")) else {
                return XCTFail("its time has come")
            }
            taking = offers
        }
        XCTAssertEqual(taking.map(\.turn.ticket), [taken.ticket])
        // The statement failed before the counter answered: the taken turn ends, then the taker's.
        for offer in taking { forecast.abandon(offer.turn) }
        forecast.deliver([.notStored], to: taking)
        forecast.abandon(lead)
        wait(for: [takenDone], timeout: 10)
        let started = Date()
        guard case .first = forecast.waitForTurn(next, offering: nil) else { return XCTFail("its time has come") }
        XCTAssertLessThan(Date().timeIntervalSince(started), 1, "no wait for turns that ended")
        forecast.abandon(next)
    }

    /// Documents sent together issue again alone only when nothing can have
    /// committed: never after a broken connection, which may have lost the
    /// answers of a statement and COMMIT that ran.
    func testOnlyACertainFailureOfDocumentsSentTogetherIssuesThemAgain() {
        XCTAssertTrue(DocumentsController.certainlyNothingStored(DocumentsStore.ForecastMissed()))
        XCTAssertTrue(DocumentsController.certainlyNothingStored(APIError.internalError))
        XCTAssertTrue(
            DocumentsController.certainlyNothingStored(
                PostgresError(kind: .server, sqlState: SQLState("23514"), message: "violates check constraint")))
        XCTAssertTrue(DocumentsController.certainlyNothingStored(PostgresError(kind: .refused, sqlState: nil, message: "too many")))
        XCTAssertFalse(DocumentsController.certainlyNothingStored(PostgresError(kind: .connection, sqlState: nil, message: "lost")))
        XCTAssertFalse(
            DocumentsController.certainlyNothingStored(
                PostgresError(kind: .server, sqlState: SQLState("57P01"), message: "terminating connection")))
        XCTAssertFalse(DocumentsController.certainlyNothingStored(CancellationError()))
    }

    /// Only a turn that offers takes; an offer signed with another number than
    /// the next is not taken (a turn between gave up); a withdrawn offer (its
    /// wait ran out) is not taken; and one statement takes `mostTogether`.
    func testOffersAreTakenOnlyInARunOfNumbersAndAtMostEight() throws {
        let counter = NumberForecast.Counter(issuer: 1, documentType: "01")
        func agreed(turnWait: TimeInterval = 30) -> NumberForecast {
            let forecast = NumberForecast(turnWait: turnWait, agreementForOneTrip: 1)
            forecast.took(1, forecast.ask(counter))
            forecast.took(2, forecast.ask(counter))
            return forecast
        }
        // Offers behind a turn that does not offer (a keyed request) stay.
        do {
            let forecast = agreed()
            let keyed = forecast.ask(counter)
            let behind = forecast.ask(counter)
            let waiting = expectation(description: "behind")
            let behindPlace = NIOLockedValueBox("")
            let behindOffer = try offer(behind, key: "K")
            Thread.detachNewThread {
                if case .first(let taking) = forecast.waitForTurn(behind, offering: behindOffer) {
                    behindPlace.withLockedValue { $0 = "first taking \(taking.count)" }
                }
                forecast.abandon(behind)
                waiting.fulfill()
            }
            Thread.sleep(forTimeInterval: 0.1)
            guard case .first(let none) = forecast.waitForTurn(keyed, offering: nil) else { return XCTFail("its time has come") }
            XCTAssertTrue(none.isEmpty)
            forecast.took(3, keyed)
            wait(for: [waiting], timeout: 10)
            XCTAssertEqual(behindPlace.withLockedValue { $0 }, "first taking 0")

        }
        // A guess that does not follow: the turn between gave up after the guesses were made.
        do {
            let forecast = agreed()
            let head = forecast.ask(counter)
            let quitter = forecast.ask(counter)
            let after = forecast.ask(counter)
            XCTAssertEqual([head.guess, quitter.guess, after.guess], [3, 4, 5])
            let afterOffer = try offer(after, key: "K")
            let afterPlace = NIOLockedValueBox("")
            let afterDone = expectation(description: "after")
            Thread.detachNewThread {
                if case .first(let taking) = forecast.waitForTurn(after, offering: afterOffer) {
                    afterPlace.withLockedValue { $0 = "first taking \(taking.count)" }
                }
                forecast.abandon(after)
                afterDone.fulfill()
            }
            forecast.abandon(quitter)
            Thread.sleep(forTimeInterval: 0.1)
            guard case .first(let gap) = forecast.waitForTurn(head, offering: try offer(head, key: "K")) else {
                return XCTFail("its time has come")
            }
            XCTAssertTrue(gap.isEmpty, "5 does not follow 3")
            forecast.abandon(head)
            wait(for: [afterDone], timeout: 10)
            XCTAssertEqual(afterPlace.withLockedValue { $0 }, "first taking 0")

        }
        // A wait that ran out withdraws the offer.
        do {
            let forecast = agreed(turnWait: 0.1)
            let slow = forecast.ask(counter)
            let late = forecast.ask(counter)
            guard case .late = forecast.waitForTurn(late, offering: try offer(late, key: "K")) else { return XCTFail("the wait ran out") }
            guard case .first(let withdrawn) = forecast.waitForTurn(slow, offering: try offer(slow, key: "K")) else {
                return XCTFail("its time has come")
            }
            XCTAssertTrue(withdrawn.isEmpty, "the late turn's offer was withdrawn")
            forecast.abandon(slow)
            forecast.abandon(late)

        }
        // Ten offers behind one turn: it takes seven, the eighth leads the rest.
        let forecast = agreed()
        let lead = forecast.ask(counter)
        let many = (0..<10).map { _ in forecast.ask(counter) }
        let manyOffers = try many.map { try offer($0, key: "K") }
        let manyPlaces = NIOLockedValueBox<[Int: String]>([:])
        let manyDone = many.indices.map { expectation(description: "turn \($0)") }
        for index in many.indices {
            Thread.detachNewThread {
                switch forecast.waitForTurn(many[index], offering: manyOffers[index]) {
                case .taken: manyPlaces.withLockedValue { $0[index] = "taken" }
                case .first(let taking):
                    manyPlaces.withLockedValue { $0[index] = "first taking \(taking.count)" }
                    forecast.sent(many[index].guess, [many[index]] + taking.map(\.turn))
                case .late: manyPlaces.withLockedValue { $0[index] = "late" }
                }
                manyDone[index].fulfill()
            }
        }
        Thread.sleep(forTimeInterval: 0.2)
        guard case .first(let seven) = forecast.waitForTurn(lead, offering: try offer(lead, key: "K")) else {
            return XCTFail("its time has come")
        }
        XCTAssertEqual(seven.count, NumberForecast.mostTogether - 1)
        XCTAssertEqual(seven.map { $0.turn.guess ?? 0 }, Array(4...10))
        forecast.sent(3, [lead] + seven.map(\.turn))
        wait(for: manyDone, timeout: 10)
        var expected = [Int: String]()
        for index in 0..<7 { expected[index] = "taken" }
        expected[7] = "first taking 2"
        expected[8] = "taken"
        expected[9] = "taken"
        XCTAssertEqual(manyPlaces.withLockedValue { $0 }, expected)
        XCTAssertEqual(forecast.ask(counter).guess, 14)
    }
}

final class JSONLogHandlerTests: XCTestCase {
    /// The request line's own writer gives the bytes of the generic one, whatever
    /// the handler already carries: nothing, the request id, keys before, between
    /// and after the line's, a key the line overrides, and text that needs escaping.
    func testTheRequestLineIsTheLineTheGenericPathWrites() throws {
        let time = Date(timeIntervalSince1970: 1_795_000_000.125)
        let fieldSets: [[(key: String, value: String)]] = [
            [("duration_ms", "0.42"), ("method", "GET"), ("route", "/healthz"), ("status", "200")],
            [
                ("duration_ms", "12.5"), ("key_id", "7"), ("method", "POST"), ("route", "/v1/documents"), ("status", "201"),
                ("tenant_id", "3"),
            ],
            [("duration_ms", "1.0"), ("method", "GET"), ("route", "unmatched \"quoted\"\n"), ("status", "404")],
        ]
        let handlerMetadata: [Logger.Metadata] = [
            [:],
            [JSONLogHandler.requestIDKey: .string("0a1b2c3d4e5f000000000001")],
            [
                JSONLogHandler.requestIDKey: .string("client-id"), "a": .string("first"), "mm": .stringConvertible(5),
                "zz": .array([.string("x")]), "route": .string("overridden"),
            ],
        ]
        for metadata in handlerMetadata {
            var handler = JSONLogHandler(label: "comprobify", level: .info)
            handler.metadata = metadata
            for fields in fieldSets {
                let fast = handler.line(time: time, level: .info, message: "request", sortedFields: fields)
                let generic = handler.line(
                    time: time, level: .info, message: "request",
                    metadata: Logger.Metadata(uniqueKeysWithValues: fields.map { ($0.key, .string($0.value)) }))
                XCTAssertEqual(String(decoding: fast, as: UTF8.self), String(decoding: generic, as: UTF8.self))
                let parsed = try JSONParser.parse(Array(fast.dropLast()))
                XCTAssertEqual(parsed["time"], .string("2026-11-18T11:06:40.125Z"))
                XCTAssertEqual(parsed["route"], .string(fields.first { $0.key == "route" }!.value))
                XCTAssertEqual(fast.last, UInt8(ascii: "\n"))
            }
        }
    }
}

final class LogThrottleTests: XCTestCase {
    /// The first line of a burst is written; those within the interval after it
    /// are counted, and the first one after it is written with that count.
    func testOneLineAnIntervalAndTheCountOfThoseLeftOut() {
        let throttle = LogThrottle(interval: .seconds(1))
        let start = ContinuousClock.now
        func at(_ milliseconds: Int) -> Int? { throttle.admit(now: start + .milliseconds(milliseconds)) }
        XCTAssertEqual(at(0), 0)
        XCTAssertNil(at(1))
        XCTAssertNil(at(500))
        XCTAssertNil(at(999))
        XCTAssertEqual(at(1000), 3)
        XCTAssertNil(at(1999))
        XCTAssertEqual(at(5000), 1, "a quiet spell: the next line is written at once")
        XCTAssertEqual(at(6000), 0)
        // Another kind's burst does not hide this kind's first line.
        XCTAssertEqual(throttle.admit("25006", now: start + .milliseconds(6001)), 0)
        XCTAssertNil(throttle.admit("25006", now: start + .milliseconds(6002)))
        XCTAssertNil(at(6500))
        XCTAssertEqual(throttle.admit("25006", now: start + .milliseconds(7002)), 1)
    }
}

final class JSONEscapeScanTests: XCTestCase {
    func naive(_ bytes: [UInt8]) -> Bool {
        !bytes.contains { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }
    }

    /// Every byte value at every position of the words and the tail, alone and
    /// next to its neighbours' extremes, and random buffers: the word-wise scan
    /// agrees with the byte-wise one.
    func testTheWordScanAgreesWithTheByteScan() {
        for length in [1, 7, 8, 9, 16, 17, 23] {
            for position in 0..<length {
                for value in 0...255 {
                    for filler: UInt8 in [UInt8(ascii: "a"), 0x20, 0x7F, 0x80, 0xFF] {
                        var bytes = [UInt8](repeating: filler, count: length)
                        bytes[position] = UInt8(value)
                        let scanned = bytes.withUnsafeBytes { JSONValue.needsNoEscaping($0) }
                        XCTAssertEqual(scanned, naive(bytes), "length \(length), byte \(value) at \(position) among \(filler)")
                    }
                }
            }
        }
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<20_000 {
            let bytes = (0..<Int.random(in: 0...40, using: &generator)).map { _ in
                // Mostly printable, sometimes one of the bytes that need escaping.
                Int.random(in: 0..<20, using: &generator) == 0
                    ? [0x00, 0x1F, 0x22, 0x5C, 0x21, 0x5B, 0x5D][Int.random(in: 0..<7, using: &generator)]
                    : UInt8.random(in: 0x20...0xFF, using: &generator)
            }
            XCTAssertEqual(bytes.withUnsafeBytes { JSONValue.needsNoEscaping($0) }, naive(bytes), "\(bytes)")
        }
    }
}

final class OutboundDeadlineTests: XCTestCase {
    /// Work that ignores cancellation (a name lookup on a thread) stops being
    /// waited for at the deadline; work that ends first gives its value.
    func testTheCallerStopsWaitingAtTheDeadline() async {
        let slow: @Sendable () async -> String = {
            await withCheckedContinuation { continuation in
                Thread.detachNewThread {
                    Thread.sleep(forTimeInterval: 3)
                    continuation.resume(returning: "late")
                }
            }
        }
        let started = ContinuousClock.now
        let missed = await firstBefore(.now() + .milliseconds(300), slow)
        XCTAssertNil(missed)
        XCTAssertLessThan(ContinuousClock.now - started, .seconds(2))
        let quick = await firstBefore(.now() + .seconds(30)) { "now" }
        XCTAssertEqual(quick, "now")
        // Work done in time is never answered as missed (the cancelled timer
        // once raced the value, and sometimes won).
        for round in 0..<2000 {
            let value = await firstBefore(.now() + .seconds(30)) { round }
            XCTAssertEqual(value, round)
            if value != round { break }
        }
    }
}

/// `comprobify serve`'s settings, as read from the environment.
final class ConfigurationTests: XCTestCase {
    private let base = [
        "DATABASE_URL": "postgresql://comprobify_app@127.0.0.1/comprobify",
        // 32 bytes: "0123456789abcdef0123456789abcdef".
        "COMPROBIFY_SECRET_KEY": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
    ]

    private func read(_ extra: [String: String]) throws -> Configuration {
        try Configuration.fromEnvironment(base.merging(extra) { $1 })
    }

    /// `Configuration.settingNames` (what `serve --help` lists) are the
    /// variables `fromEnvironment` reads, every one, and README's settings
    /// table names each; `serve --help` lists them all.
    func testTheSettingsListedAreTheOnesRead() throws {
        let source = try String(
            contentsOf: Self.packageRoot.appendingPathComponent("Sources/Comprobify/App/Configuration.swift"), encoding: .utf8)
        let read = Set(source.matches(of: /(?:env|integer)\("([A-Z_]+)"/).map { String($0.output.1) }).subtracting(["NAME"])
        XCTAssertEqual(Set(Configuration.settingNames), read)
        XCTAssertEqual(Configuration.settingNames.count, read.count, "each once")
        let readme = try String(contentsOf: Self.packageRoot.appendingPathComponent("README.md"), encoding: .utf8)
        for name in read { XCTAssertTrue(readme.contains("| `\(name)` |"), "README's table names \(name)") }
        let help = try Executable.run(try Executable.url(), ["serve", "--help"], environment: [:])
        XCTAssertEqual(help.status, 0, help.output)
        let listed = help.output.replacingOccurrences(of: "\n", with: " ")
        for name in read { XCTAssertTrue(listed.contains(" \(name),") || listed.contains(" \(name)."), "serve --help lists \(name)") }
    }

    /// A webhook delivery's lease covers the attempt and the wait for a
    /// connection to record it: a long DB_POOL_WAIT_MS lengthens it.
    func testAWebhookLeaseOutlastsTheAttemptAndTheWaitToRecordIt() throws {
        XCTAssertEqual(try read([:]).webhooks.leaseMilliseconds, 10_000 + 2_000 + 5_000)
        let patient = try read(["DB_POOL_WAIT_MS": "30000", "WEBHOOK_TIMEOUT_MS": "4000"])
        XCTAssertEqual(patient.webhooks.leaseMilliseconds, 4_000 + 30_000 + 5_000)
    }

    /// Every default the README's settings table gives is the one `serve`
    /// takes from an empty environment, and every setting the table gives a
    /// literal default for is checked here.
    func testTheDefaultsAreTheReadmesOnes() throws {
        let d = try read([:])
        let flag = { (on: Bool) in on ? "1" : "0" }
        let actual: [String: String] = [
            "HOST": d.host, "PORT": "\(d.port)", "DB_POOL_SIZE": "\(d.poolSize)", "DB_PIPELINE_PACK": "\(d.pipelinePack)",
            "DB_PIPELINE_DEPTH": "\(d.pipelineDepth)", "DB_BACKGROUND_POOL_SIZE": "\(d.backgroundPoolSize)",
            "BACKGROUND_BUSY_RATE": "\(d.backgroundBusyRate)", "DB_POOL_WAIT_MS": "\(d.poolWaitMilliseconds)",
            "DB_STATEMENT_TIMEOUT_MS": "\(d.statementTimeoutMilliseconds)",
            "DB_IDLE_IN_TX_TIMEOUT_MS": "\(d.idleInTransactionTimeoutMilliseconds)", "HTTP_IDLE_TIMEOUT_S": "\(d.httpIdleTimeoutSeconds)",
            "SHUTDOWN_GRACE_S": "\(d.shutdownGraceSeconds)", "SHUTDOWN_READY_DELAY_S": "\(d.shutdownReadyDelaySeconds)",
            "LOG_LEVEL": "\(d.logLevel)", "SIGNUP_RATE_LIMIT": "\(d.signupRateLimit)", "TRUST_PROXY": flag(d.trustProxy),
            "SRI_SIGNATURE_ALGORITHM": d.signatureAlgorithm.rawValue, "SRI_TEST_URL": d.sri.testURL,
            "SRI_PRODUCTION_URL": d.sri.productionURL, "SRI_WORKERS": "\(d.sri.workers)", "SRI_TIMEOUT_MS": "\(d.sri.timeoutMilliseconds)",
            "SRI_RETRY_BASE_MS": "\(d.sri.retryBaseMilliseconds)", "SRI_RETRY_MAX_MS": "\(d.sri.retryMaxMilliseconds)",
            "SRI_AUTHORIZATION_DELAY_MS": "\(d.sri.authorizationDelayMilliseconds)", "SRI_LEASE_MS": "\(d.sri.leaseMilliseconds)",
            "SRI_POLL_MS": "\(d.sri.pollMilliseconds)", "SRI_RESEND_EVERY": "\(d.sri.resendEvery)",
            "SRI_EXCHANGE_RETENTION_DAYS": "\(d.sri.exchangeRetentionDays)",
            "WEBHOOK_TIMEOUT_MS": "\(d.webhooks.timeoutMilliseconds)", "WEBHOOK_RETRY_BASE_MS": "\(d.webhooks.retryBaseMilliseconds)",
            "WEBHOOK_RETRY_FOR_S": "\(d.webhooks.retryForSeconds)", "WEBHOOK_WORKERS": "\(d.webhooks.workers)",
            "WEBHOOK_POLL_MS": "\(d.webhooks.pollMilliseconds)", "WEBHOOK_PER_TENANT": "\(d.webhooks.perTenant)",
            "WEBHOOK_RETENTION_DAYS": "\(d.webhooks.retentionDays)", "WEBHOOKS_ALLOW_HTTP": flag(d.webhooks.allowHTTP),
            "HTTP_MAX_CONNECTIONS": "\(d.httpMaxConnections)", "HTTP_MAX_CONNECTIONS_PER_ADDRESS": "\(d.httpMaxConnectionsPerAddress)",
            "HTTP_BODY_BUDGET_MB": "\(d.httpBodyBudgetMegabytes)",
            "HTTP_BODY_BUDGET_PER_ADDRESS_MB": "\(d.httpBodyBudgetPerAddressMegabytes)",
            "HTTP_REQUEST_TIMEOUT_S": "\(d.httpRequestTimeoutSeconds)",
            "HTTP_WRITE_TIMEOUT_S": "\(d.httpWriteTimeoutSeconds)", "RATE_LIMIT_PER_KEY": "\(d.rateLimitPerKey)",
            "RATE_LIMIT_BURST": "\(d.rateLimitBurst)",
        ]
        // The table's rows: | `NAME` | `default` | what it does |
        let readme = try String(contentsOf: Self.packageRoot.appendingPathComponent("README.md"), encoding: .utf8)
        var documented: [String: String] = [:]
        for line in readme.split(separator: "\n") where line.hasPrefix("| `") {
            let cells = line.split(separator: "|", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            guard cells.count > 3, cells[1].first == "`", cells[2].first == "`", cells[2].last == "`", cells[2].count > 2 else { continue }
            let name = String(cells[1].dropFirst().dropLast())
            guard name.allSatisfy({ $0.isUppercase || $0 == "_" }) else { continue }
            documented[name] = String(cells[2].dropFirst().dropLast())
        }
        XCTAssertEqual(documented.count, actual.count, "the table's literal defaults: \(documented.keys.sorted())")
        for (name, value) in actual.sorted(by: { $0.key < $1.key }) {
            XCTAssertEqual(documented[name], value, name)
        }
        // The one default the table gives in words.
        XCTAssertNil(d.tenantMaxConnections)
        XCTAssertEqual(d.effectiveTenantMaxConnections, d.poolSize / 2, "DB_TENANT_MAX_CONNECTIONS: half of DB_POOL_SIZE")
    }

    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    func testValuesAreReadAndEmptyOnesKeepTheDefault() throws {
        let defaults = try read([:])
        XCTAssertEqual(defaults.port, 8080)
        XCTAssertEqual(defaults.signatureAlgorithm, .rsaSHA256)
        XCTAssertEqual(defaults.sri.leaseMilliseconds, 60_000)
        XCTAssertFalse(defaults.trustProxy)
        let set = try read([
            "PORT": "9000", "DB_POOL_SIZE": "16", "SRI_SIGNATURE_ALGORITHM": "rsa-sha1", "TRUST_PROXY": "1", "SRI_TIMEOUT_MS": "5000",
            "SRI_LEASE_MS": "7001", "LOG_LEVEL": "WARNING", "WEBHOOKS_ALLOW_HTTP": "1", "SHUTDOWN_GRACE_S": "",
            "WEBHOOK_PER_TENANT": "3", "WEBHOOK_RETENTION_DAYS": "0", "DB_PIPELINE_PACK": "1", "HTTP_BODY_BUDGET_MB": "64",
            "HTTP_BODY_BUDGET_PER_ADDRESS_MB": "8",
            "SRI_EXCHANGE_RETENTION_DAYS": "0", "SRI_RESEND_EVERY": "0", "COMPROBIFY_ADMIN_TOKEN": "an-admin-token-of-32-characters",
            "METRICS_TOKEN": "0123456789abcdef",
        ])
        XCTAssertNil(defaults.adminToken)
        XCTAssertEqual(set.adminToken, "an-admin-token-of-32-characters")
        XCTAssertNil(defaults.metricsToken)
        XCTAssertEqual(set.metricsToken, "0123456789abcdef", "16 characters are enough")
        XCTAssertEqual(defaults.httpBodyBudgetMegabytes, 256)
        XCTAssertEqual(set.httpBodyBudgetMegabytes, 64)
        XCTAssertEqual(defaults.httpBodyBudgetPerAddressMegabytes, 64)
        XCTAssertEqual(set.httpBodyBudgetPerAddressMegabytes, 8)
        XCTAssertEqual(defaults.pipelinePack, 4)
        XCTAssertEqual(set.pipelinePack, 1)
        XCTAssertEqual(set.port, 9000)
        XCTAssertEqual(set.poolSize, 16)
        XCTAssertEqual(set.signatureAlgorithm, .rsaSHA1)
        XCTAssertTrue(set.trustProxy)
        XCTAssertEqual(set.sri.leaseMilliseconds, 7001)
        XCTAssertEqual(set.logLevel, .warning)
        XCTAssertTrue(set.webhooks.allowHTTP)
        XCTAssertEqual(set.webhooks.perTenant, 3)
        XCTAssertEqual(defaults.webhooks.perTenant, 8)
        XCTAssertEqual(set.webhooks.retentionDays, 0)
        XCTAssertEqual(defaults.webhooks.retentionDays, 30)
        XCTAssertEqual(set.sri.exchangeRetentionDays, 0)
        XCTAssertEqual(set.sri.resendEvery, 0)
        XCTAssertEqual(defaults.sri.exchangeRetentionDays, 90)
        XCTAssertEqual(set.shutdownGraceSeconds, defaults.shutdownGraceSeconds, "an empty value is the default")
    }

    /// A malformed setting stops the server before it starts, naming the variable.
    func testMalformedSettingsAreRefusedNamingTheVariable() {
        let cases: [([String: String], String)] = [
            (["DATABASE_URL": ""], "DATABASE_URL is not set"),
            (["PORT": "70000"], "PORT must be an integer from 0 to 65535"),
            (["DB_POOL_SIZE": "many"], "DB_POOL_SIZE must be an integer"),
            (["DB_POOL_SIZE": "+8"], "DB_POOL_SIZE must be an integer from 1 to 256, got \"+8\""),
            (["METRICS_TOKEN": "short-token"], "METRICS_TOKEN must be at least 16 characters"),
            (["METRICS_TOKEN": " 0123456789abcdef0123"], "METRICS_TOKEN must be at least 16 characters, with no whitespace"),
            (["PORT": "-0"], "PORT must be an integer from 0 to 65535"),
            (["DB_PIPELINE_PACK": "0"], "DB_PIPELINE_PACK must be an integer from 1 to 64"),
            (["HTTP_BODY_BUDGET_MB": "0"], "HTTP_BODY_BUDGET_MB must be an integer from 1 to 1048576"),
            (["HTTP_BODY_BUDGET_PER_ADDRESS_MB": "0"], "HTTP_BODY_BUDGET_PER_ADDRESS_MB must be an integer from 1 to 1048576"),
            (["SRI_TIMEOUT_MS": "60000"], "SRI_LEASE_MS must be longer than SRI_TIMEOUT_MS plus DB_POOL_WAIT_MS"),
            (["SRI_RESEND_EVERY": "1"], "SRI_RESEND_EVERY must be 0 (never) or at least 2"),
            (["SHUTDOWN_GRACE_S": "5", "SHUTDOWN_READY_DELAY_S": "5"], "SHUTDOWN_READY_DELAY_S must be shorter than SHUTDOWN_GRACE_S"),
            (["SHUTDOWN_GRACE_S": "0"], "SHUTDOWN_GRACE_S must be an integer from 1 to 3600"),
            (
                ["COMPROBIFY_ADMIN_TOKEN": "short-token"],
                "COMPROBIFY_ADMIN_TOKEN must be at least 16 characters (openssl rand -hex 32 makes one)"
            ),
            (
                ["COMPROBIFY_ADMIN_TOKEN": "0123456789abcdef0123\n"],
                "COMPROBIFY_ADMIN_TOKEN must not start or end with whitespace or a line break"
            ),
            (["SRI_TIMEOUT_MS": "5000", "SRI_LEASE_MS": "7000"], "SRI_LEASE_MS must be longer than SRI_TIMEOUT_MS plus DB_POOL_WAIT_MS"),
            (
                ["SRI_TIMEOUT_MS": "50000", "DB_POOL_WAIT_MS": "10000"],
                "SRI_LEASE_MS must be longer than SRI_TIMEOUT_MS plus DB_POOL_WAIT_MS"
            ),
            (["SRI_RETRY_BASE_MS": "5000", "SRI_RETRY_MAX_MS": "1000"], "SRI_RETRY_MAX_MS must not be shorter than SRI_RETRY_BASE_MS"),
            (["SRI_SIGNATURE_ALGORITHM": "rsa-md5"], "SRI_SIGNATURE_ALGORITHM must be rsa-sha256 or rsa-sha1"),
            (["SRI_TEST_URL": "ftp://sri.example"], "SRI_TEST_URL and SRI_PRODUCTION_URL must be http(s) URLs"),
            (
                ["SRI_PRODUCTION_URL": "https://celcer.sri.gob.ec/comprobantes-electronicos-ws"],
                "SRI_PRODUCTION_URL points at SRI's test service"
            ),
            (["SRI_TEST_URL": "https://CEL.sri.gob.ec/comprobantes-electronicos-ws"], "SRI_TEST_URL points at SRI's production service"),
            (
                ["SRI_PRODUCTION_URL": "https://celcer.sri.gob.ec./comprobantes-electronicos-ws"],
                "SRI_PRODUCTION_URL points at SRI's test service"
            ),
            (["SRI_TEST_URL": "https://cel.sri.gob.ec..:443/ws"], "SRI_TEST_URL points at SRI's production service"),
            (["SRI_TEST_URL": "http://"], "SRI_TEST_URL and SRI_PRODUCTION_URL must be http(s) URLs naming a host"),
            (["SRI_PRODUCTION_URL": "https:///comprobantes-electronicos-ws"], "must be http(s) URLs naming a host"),
            (["TRUST_PROXY": "yes"], "TRUST_PROXY must be 0 or 1"),
            (["WEBHOOKS_ALLOW_HTTP": "true"], "WEBHOOKS_ALLOW_HTTP must be 0 or 1"),
            (["WEBHOOK_RETENTION_DAYS": "-1"], "WEBHOOK_RETENTION_DAYS must be an integer from 0 to 36500"),
            (["LOG_LEVEL": "loud"], "LOG_LEVEL must be one of"),
            (["COMPROBIFY_SECRET_KEY": "c2hvcnQ="], "COMPROBIFY_SECRET_KEY"),
        ]
        // Every setting refused is named at once, not only the first.
        XCTAssertThrowsError(try read(["PORT": "x", "LOG_LEVEL": "loud", "TRUST_PROXY": "yes", "DATABASE_URL": ""])) { error in
            for words in ["PORT must be an integer", "LOG_LEVEL must be one of", "TRUST_PROXY must be 0 or 1", "DATABASE_URL is not set"] {
                XCTAssertTrue("\(error)".contains(words), "\(words): \(error)")
            }
        }
        for (extra, words) in cases {
            XCTAssertThrowsError(try read(extra), "\(extra)") { error in
                XCTAssertTrue("\(error)".contains(words), "\(extra): \(error)")
            }
        }
    }
}

final class ProblemTests: XCTestCase {
    /// A 409's `reason` is one openapi.yaml lists, and openapi.yaml lists no
    /// other: the Problem schema's enum is exactly `ConflictReason`.
    func testTheConflictReasonsAreTheOnesOpenAPIListsAndOnly409sCarryOne() throws {
        let spec = try String(
            contentsOf: ConfigurationTests.packageRoot.appendingPathComponent("openapi.yaml"), encoding: .utf8)
        let lines = spec.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let start = try XCTUnwrap(lines.firstIndex(of: "        reason:"), "the Problem schema's reason")
        let enumLine = try XCTUnwrap(lines[start...].firstIndex(of: "          enum:"))
        let listed = lines[(enumLine + 1)...].prefix { $0.hasPrefix("            - ") }.map { String($0.dropFirst(14)) }
        XCTAssertEqual(listed, APIError.ConflictReason.allCases.map(\.rawValue))
        for reason in APIError.ConflictReason.allCases {
            let document = Problem.document(.conflict(reason, "Because."), instance: "/v1/x", requestID: "r")
            XCTAssertTrue(document.contains(#""reason":"\#(reason.rawValue)""#), document)
            XCTAssertTrue(spec.contains("`\(reason.rawValue)`"), "openapi.yaml says what \(reason.rawValue) means")
        }
        let other = Problem.document(.notFound("No."), instance: "/v1/x", requestID: "r")
        XCTAssertFalse(other.contains("reason"), other)
    }
}
