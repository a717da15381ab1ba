import Foundation
import TestSupport
import XCTest

@testable import SRI

/// The signer against bare RSA with the same key, in the same process: the
/// XML work (parse, three canonicalizations, serialization) must stay small
/// next to the RSA operation (goal: 0.8 of its rate).
final class SigningPerformanceTests: XCTestCase {
    func testSignerKeepsUpWithBareRSA() throws {
        let pki = try TestPKI()
        let identity = try SigningIdentity(pkcs12: try pki.pkcs12(try pki.leaf("Bench Signer")), password: TestPKI.password, now: Date())
        let factura = Fixtures.factura
        let payload = [UInt8](repeating: 0x41, count: 1200)
        _ = try XAdESSigner.sign(factura, identity: identity, signingTime: Fixtures.signingTime)

        // CPU time of this thread, as `openssl speed` counts: the machine may be shared.
        func cpuSeconds() -> Double {
            var now = timespec()
            clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now)
            return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
        }
        func rate(_ body: () throws -> Void) rethrows -> Double {
            let iterations = 300
            let start = cpuSeconds()
            for _ in 0..<iterations { try body() }
            return Double(iterations) / (cpuSeconds() - start)
        }
        var best = (signer: 0.0, rsa: 0.0)
        for _ in 0..<3 {
            let rsa = rate { _ = payload.withUnsafeBytes { identity.sign($0, .sha256) } }
            let signer = try rate { _ = try XAdESSigner.sign(factura, identity: identity, signingTime: Fixtures.signingTime) }
            best = (max(best.signer, signer), max(best.rsa, rsa))
        }
        let ratio = best.signer / best.rsa
        print("signer \(Int(best.signer))/s, bare RSA-SHA256 \(Int(best.rsa))/s, ratio \(String(format: "%.2f", ratio))")
        // Timing is only meaningful on an optimized build and a quiet machine:
        // scripts/bench sets SRI_SIGNER_MIN_RATIO (0.8) where both hold.
        if let bar = ProcessInfo.processInfo.environment["SRI_SIGNER_MIN_RATIO"].flatMap(Double.init) {
            XCTAssertGreaterThanOrEqual(ratio, bar)
        }
    }
}
