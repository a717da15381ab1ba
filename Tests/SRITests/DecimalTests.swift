import XCTest

@testable import SRI

final class DecimalTests: XCTestCase {
    private func d(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> ExactDecimal {
        do {
            return try ExactDecimal(parsing: text)
        } catch {
            XCTFail("\(text) did not parse: \(error)", file: file, line: line)
            return .zero
        }
    }

    private func parseError(_ text: String) -> ExactDecimal.ParseError? {
        do {
            _ = try ExactDecimal(parsing: text)
            return nil
        } catch {
            return error
        }
    }

    func testParsesDecimalTextExactly() {
        XCTAssertEqual(d("0.1").description, "0.1")
        XCTAssertEqual(d("0.1") + d("0.2"), d("0.3"))
        XCTAssertEqual(d("10.75").description, "10.75")
        XCTAssertEqual(d("-3.10").description, "-3.1")
        XCTAssertEqual(d("0").description, "0")
        XCTAssertEqual(d("-0").description, "0")
        XCTAssertFalse(d("-0").isNegative)
        XCTAssertEqual(d("24.150"), d("24.15"))
        XCTAssertEqual(d("123456789012.123456").description, "123456789012.123456")
    }

    func testParsesExponents() {
        XCTAssertEqual(d("1e2").description, "100")
        XCTAssertEqual(d("1E2").description, "100")
        XCTAssertEqual(d("1e+2").description, "100")
        XCTAssertEqual(d("1.5E-3").description, "0.0015")
        XCTAssertEqual(d("2.5e1").description, "25")
        XCTAssertEqual(d("12345e-2").description, "123.45")
        XCTAssertEqual(d("0e131071").description, "0")
        XCTAssertEqual(d("0.000e-5").description, "0")
    }

    func testRefusesWhatIsNotAJSONNumber() {
        for text in [
            "", " 1", "1 ", "+1", "01", "00.5", ".5", "5.", "1e", "1e+", "--1", "1..2", "NaN", "nan", "Infinity",
            "-Infinity", "inf", "0x10", "1,5", "1_000", "١", "1e2.5", "½",
        ] {
            XCTAssertEqual(parseError(text), .malformed, text)
        }
    }

    /// Every amount string that openapi.yaml's input patterns allow parses,
    /// and the strings the parser refuses are outside them.
    func testOpenAPIAmountPatternsAgreeWithTheParser() throws {
        let spec = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../openapi.yaml")
        let text = try String(contentsOf: spec, encoding: .utf8)
        let patterns = text.split(separator: "\n").compactMap { line -> String? in
            guard let start = line.range(of: "pattern: '^(0|[1-9]") else { return nil }
            return String(line[line.index(start.lowerBound, offsetBy: 10)...].dropLast())
        }
        XCTAssertEqual(patterns.count, 3, "AmountInput, discount and payment total")
        let samples = [
            "0", "7", "01", "007.5", "00.5", "10.75", "0.000001", "999999999999.999999", "1000000000000", ".5", "5.", "-1", "1e2",
            "1.1234567",
        ]
        for pattern in patterns {
            let regex = try NSRegularExpression(pattern: pattern)
            for sample in samples where regex.firstMatch(in: sample, range: NSRange(sample.startIndex..., in: sample)) != nil {
                XCTAssertNoThrow(try ExactDecimal(parsing: sample), "\(sample) matches \(pattern)")
            }
        }
    }

    /// Refused from the exponent alone: 1e999999999999999999999999, expanded,
    /// would never fit in memory, so these answers show nothing was expanded.
    func testExponentBombsAreRefusedWithoutExpansion() {
        XCTAssertEqual(parseError("1e131071"), .outOfRange)
        XCTAssertEqual(parseError("1e999999999999999999999999"), .outOfRange)
        XCTAssertEqual(parseError("1e-999999999999999999999999"), .outOfRange)
        XCTAssertEqual(parseError("1e-131071"), .outOfRange)
        XCTAssertEqual(parseError("-9.99e41"), .outOfRange)
        // Right at the limits.
        XCTAssertEqual(d("1e39").integerDigitCount, 40)
        XCTAssertEqual(parseError("1e40"), .outOfRange)
        XCTAssertEqual(d("1e-40").decimalPlaces, 40)
        XCTAssertEqual(parseError("1e-41"), .outOfRange)
    }

    func testRoundsHalfUpAtTheBoundaries() {
        XCTAssertEqual(d("0.125").rounded(places: 2), d("0.13"))
        XCTAssertEqual(d("1.005").rounded(places: 2), d("1.01"))
        XCTAssertEqual(d("0.015").rounded(places: 2), d("0.02"))
        XCTAssertEqual(d("0.0149999").rounded(places: 2), d("0.01"))
        XCTAssertEqual(d("0.124999999").rounded(places: 2), d("0.12"))
        XCTAssertEqual(d("0.005").rounded(places: 2), d("0.01"))
        XCTAssertEqual(d("0.0049").rounded(places: 2), d("0"))
        XCTAssertEqual(d("0.0005").rounded(places: 2), d("0"))
        XCTAssertEqual(d("9.995").rounded(places: 2), d("10"))
        XCTAssertEqual(d("999999999999.995").rounded(places: 2).description, "1000000000000")
        XCTAssertEqual(d("2.5").rounded(places: 0), d("3"))
        XCTAssertEqual(d("3.5").rounded(places: 0), d("4"))
        XCTAssertEqual(d("1.23").rounded(places: 4), d("1.23"))
        // Away from zero for negatives.
        XCTAssertEqual(d("-0.125").rounded(places: 2), d("-0.13"))
    }

    func testWritesFixedPlaces() {
        XCTAssertEqual(d("24.15").text(places: 2), "24.15")
        XCTAssertEqual(d("2").text(places: 6), "2.000000")
        XCTAssertEqual(d("0").text(places: 2), "0.00")
        XCTAssertEqual(d("0.05").text(places: 2), "0.05")
        XCTAssertEqual(d("0.000001").text(places: 6), "0.000001")
        XCTAssertEqual(d("-3.1").text(places: 2), "-3.10")
        XCTAssertEqual(d("7").text(places: 0), "7")
        XCTAssertEqual(d("1.005").text(places: 2), "1.01")
        XCTAssertEqual(d("1e2").text(places: 2), "100.00")
    }

    func testArithmeticAndOrder() {
        XCTAssertEqual(d("2") * d("10.75"), d("21.5"))
        XCTAssertEqual(d("0.000001") * d("0.000001"), d("0.000000000001"))
        XCTAssertEqual(
            (d("999999999999.999999") * d("999999999999.999999")).description,
            "999999999999999998000000.000000000001")
        XCTAssertEqual(d("1") - d("0.01"), d("0.99"))
        XCTAssertEqual(d("0.5") - d("2"), d("-1.5"))
        XCTAssertEqual(d("-0.5") + d("0.5"), .zero)
        XCTAssertEqual(d("-2") * d("-3"), d("6"))
        XCTAssertEqual(ExactDecimal(-42), d("-42"))
        XCTAssertEqual(d("21.5").dividedByPowerOfTen(2), d("0.215"))
        XCTAssertLessThan(d("0.1"), d("0.11"))
        XCTAssertLessThan(d("-2"), d("-1"))
        XCTAssertLessThan(d("-1"), d("0"))
        XCTAssertGreaterThan(d("100"), d("99.999999"))
        XCTAssertFalse(d("1.10") < d("1.1"))
        XCTAssertEqual(Set([d("1.5"), d("1.50"), d("15e-1")]).count, 1)
    }

    func testCountsDigits() {
        XCTAssertEqual(d("123456789012.34").integerDigitCount, 12)
        XCTAssertEqual(d("1234567890123").integerDigitCount, 13)
        XCTAssertEqual(d("0.5").integerDigitCount, 0)
        XCTAssertEqual(d("0").integerDigitCount, 0)
        XCTAssertEqual(d("1.123456").decimalPlaces, 6)
        XCTAssertEqual(d("1.1234560").decimalPlaces, 6)
        XCTAssertEqual(d("1.1234567").decimalPlaces, 7)
        XCTAssertEqual(d("1e-3").decimalPlaces, 3)
        XCTAssertTrue(d("3e1").isInteger)
        XCTAssertFalse(d("3.1").isInteger)
    }
}
