import COpenSSL
import Foundation

/// Runs a program and returns its exit status and its output (stdout then
/// stderr). `tool` is a path, or a name looked up on PATH; `environment`, when
/// given, replaces the inherited one.
@discardableResult
public func runTool(
    _ tool: String, _ arguments: [String], in directory: URL? = nil, environment: [String: String]? = nil
) throws -> (status: Int32, output: String) {
    let process = Process()
    if tool.hasPrefix("/") {
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = arguments
    } else {
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [tool] + arguments
    }
    if let directory { process.currentDirectoryURL = directory }
    if let environment { process.environment = environment }
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

public struct ToolFailed: Error, CustomStringConvertible {
    public let description: String

    public init(description: String) {
        self.description = description
    }
}

/// The directories of the PKIs still alive, removed when the process exits:
/// a PKI held in a static (one per test process) is never deinitialized, and
/// its keys would stay in the temporary directory after every run.
private final class PKIDirectories: @unchecked Sendable {
    static let shared = PKIDirectories()

    private let lock = NSLock()
    private var directories: Set<URL> = []
    private var handlerInstalled = false

    func add(_ directory: URL) {
        lock.withLock {
            directories.insert(directory)
            if !handlerInstalled {
                handlerInstalled = true
                atexit { PKIDirectories.shared.removeAll() }
            }
        }
    }

    func remove(_ directory: URL) {
        _ = lock.withLock { directories.remove(directory) }
    }

    private func removeAll() {
        for directory in lock.withLock({ directories }) {
            try? FileManager.default.removeItem(at: directory)
        }
    }
}

/// A throwaway PKI made with the `openssl` CLI: a CA and leaves signed by it
/// with `openssl ca`, whose -startdate/-enddate give any validity window.
public final class TestPKI: @unchecked Sendable {
    public let directory: URL
    private let lock = NSLock()
    private var counter = 0

    public static let password = "clave Ñ s3creta"

    public init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("sri-pki-\(UUID().uuidString)")
        PKIDirectories.shared.add(directory)
        try FileManager.default.createDirectory(at: directory.appendingPathComponent("newcerts"), withIntermediateDirectories: true)
        try Data().write(to: url("index.txt"))
        try Data("4F3A2B1C0D9E8F71\n".utf8).write(to: url("serial"))
        let config = """
            [ ca ]
            default_ca = test_ca
            [ test_ca ]
            dir = \(directory.path)
            database = $dir/index.txt
            new_certs_dir = $dir/newcerts
            serial = $dir/serial
            default_md = sha256
            policy = policy_any
            unique_subject = no
            email_in_dn = no
            string_mask = utf8only
            [ policy_any ]
            countryName = optional
            organizationName = optional
            commonName = supplied
            [ signing ]
            basicConstraints = critical, CA:FALSE
            keyUsage = critical, digitalSignature, nonRepudiation
            [ encipherment ]
            basicConstraints = critical, CA:FALSE
            keyUsage = critical, keyEncipherment, dataEncipherment
            [ ca_signing ]
            basicConstraints = critical, CA:TRUE
            keyUsage = critical, digitalSignature, keyCertSign
            """
        try Data(config.utf8).write(to: url("ca.cnf"))
        try openssl([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", path("ca.key"), "-out", path("ca.pem"),
            "-days", "3650", "-utf8", "-subj", "/C=EC/O=Autoridad de Pruebas Ñ/CN=Comprobify Test CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        ])
    }

    deinit {
        try? FileManager.default.removeItem(at: directory)
        PKIDirectories.shared.remove(directory)
    }

    public func url(_ name: String) -> URL { directory.appendingPathComponent(name) }
    public func path(_ name: String) -> String { url(name).path }

    @discardableResult
    public func openssl(_ arguments: [String]) throws -> String {
        let (status, output) = try runTool("openssl", arguments, in: directory)
        guard status == 0 else { throw ToolFailed(description: "openssl \(arguments.joined(separator: " ")): \(output)") }
        return output
    }

    /// A key (`rsa:2048`, `rsa:1024`, `ec`) and a certificate for it signed by
    /// the CA; returns the base name of `<name>.key` and `<name>.pem`.
    public func leaf(
        _ commonName: String, key: String = "rsa:2048", profile: String = "signing",
        from start: String = "20250101000000Z", until end: String = "20401231235959Z"
    ) throws -> String {
        let name = lock.withLock {
            counter += 1
            return "leaf\(counter)"
        }
        var request = ["req", "-new", "-nodes", "-keyout", path("\(name).key"), "-out", path("\(name).csr"), "-utf8"]
        request += ["-subj", "/C=EC/O=Ñandú & Hijos, S.A./CN=\(commonName)"]
        if key == "ec" {
            request += ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
        } else {
            request += ["-newkey", key]
        }
        try openssl(request)
        try openssl([
            "ca", "-batch", "-config", path("ca.cnf"), "-cert", path("ca.pem"), "-keyfile", path("ca.key"),
            "-in", path("\(name).csr"), "-out", path("\(name).pem"), "-notext", "-utf8",
            "-startdate", start, "-enddate", end, "-extensions", profile,
        ])
        return name
    }

    /// The leaf `name`'s key certified again by the CA under the extensions
    /// `profile` of ca.cnf (`signing`, `encipherment`, `ca_signing`).
    public func leaf(_ name: String, reissuedAs profile: String) throws -> String {
        let copy = "\(name)-\(profile)-\(UUID().uuidString)"
        try FileManager.default.copyItem(at: url("\(name).key"), to: url("\(copy).key"))
        try FileManager.default.copyItem(at: url("\(name).csr"), to: url("\(copy).csr"))
        try openssl([
            "ca", "-batch", "-config", path("ca.cnf"), "-cert", path("ca.pem"), "-keyfile", path("ca.key"),
            "-in", path("\(copy).csr"), "-out", path("\(copy).pem"), "-notext", "-utf8",
            "-startdate", "20250101000000Z", "-enddate", "20401231235959Z", "-extensions", profile,
        ])
        return copy
    }

    /// The leaf `name`'s key certified again by the CA under another serial
    /// number (`openssl x509 -set_serial`: decimal, or hex after 0x).
    public func leaf(_ name: String, reissuedWithSerial serial: String) throws -> String {
        let copy = "\(name)-serial-\(UUID().uuidString)"
        try FileManager.default.copyItem(at: url("\(name).key"), to: url("\(copy).key"))
        try openssl([
            "x509", "-req", "-in", path("\(name).csr"), "-CA", path("ca.pem"), "-CAkey", path("ca.key"),
            "-set_serial", serial, "-days", "3650", "-out", path("\(copy).pem"),
        ])
        return copy
    }

    /// A leaf whose private key parses and matches its certificate yet cannot
    /// sign: the key's modulus, and the one the CA certifies for it, is a real
    /// key's less one (even), which OpenSSL's RSA refuses.
    public func leafWithKeyThatCannotSign(_ commonName: String) throws -> String {
        try leaf(commonName) { integers in
            // An odd modulus ends in an odd hex digit, so taking one away borrows nothing.
            guard let digit = integers[1].last?.hexDigitValue, digit % 2 == 1 else {
                throw ToolFailed(description: "unexpected RSA modulus: \(integers[1])")
            }
            integers[1] = integers[1].dropLast() + String(digit - 1, radix: 16, uppercase: true)
        }
    }

    /// A leaf whose RSA key, and the public key the CA certifies for it, has
    /// the public exponent `exponent` (hex): one no key generator makes, such as 1.
    public func leaf(_ commonName: String, publicExponent exponent: String) throws -> String {
        try leaf(commonName) { integers in integers[2] = exponent }
    }

    /// A leaf whose RSA private key is over 8 KiB of DER (its private
    /// exponent 9,000 bytes long) while its public key is the certificate's
    /// 2048-bit one: what a key of more than 14,000 bits would take.
    public func leafWithOverlongKey(_ commonName: String) throws -> String {
        try leaf(commonName) { integers in integers[3] = String(repeating: "7F", count: 9_000) }
    }

    /// A self-signed signing certificate (its issuer is its subject,
    /// `/C=EC/CN=<commonName>`, as UTF-8) and its key, not from the CA.
    public func selfSigned(_ commonName: String) throws -> String {
        let name = "self-\(UUID().uuidString)"
        try openssl([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", path("\(name).key"), "-out", path("\(name).pem"),
            "-days", "30", "-utf8", "-subj", "/C=EC/CN=\(commonName)",
            "-addext", "basicConstraints=critical,CA:FALSE", "-addext", "keyUsage=critical,digitalSignature,nonRepudiation",
        ])
        return name
    }

    /// How `leaf(_:slowKey:)` makes its key sign slowly.
    public enum SlowKey: Sendable {
        /// dp + (p − 1) · 2^3000: the same value modulo p − 1, 3000 bits longer.
        case unreducedCRTExponent
        /// dp + 2: OpenSSL's check of each CRT result fails, and it signs again with d.
        case wrongCRTExponent
        /// d + (p − 1)(q − 1) · 2^3000, with the CRT values as they were.
        case longPrivateExponent
        /// e + (p − 1)(q − 1): a 2048-bit public exponent that d still inverts.
        case longPublicExponent
    }

    /// A leaf whose RSA key makes correct signatures, each many times slower
    /// than its size asks for, as a key crafted against the signer would.
    public func leaf(_ commonName: String, slowKey: SlowKey) throws -> String {
        try leaf(commonName) { integers in
            let (e, d, p, q, dp) = (Big(integers[2]), Big(integers[3]), Big(integers[4]), Big(integers[5]), Big(integers[6]))
            let phi = p.minusOne * q.minusOne
            switch slowKey {
            case .unreducedCRTExponent: integers[6] = (dp + p.minusOne.shifted(by: 3000)).hex
            case .wrongCRTExponent: integers[6] = (dp + Big("2")).hex
            case .longPrivateExponent: integers[3] = (d + phi.shifted(by: 3000)).hex
            case .longPublicExponent: integers[2] = (e + phi).hex
            }
        }
    }

    /// A leaf whose RSA key's integers (version, n, e, d, p, q, dp, dq, qinv,
    /// as upper-case hex) `change` rewrites; the CA then certifies the
    /// changed public key. Built with `openssl asn1parse -genconf`.
    private func leaf(_ commonName: String, changingKey change: (inout [String]) throws -> Void) throws -> String {
        let name = try leaf(commonName)
        try openssl(["rsa", "-in", path("\(name).key"), "-traditional", "-out", path("\(name).rsa")])
        var integers = try openssl(["asn1parse", "-in", path("\(name).rsa")]).split(separator: "\n")
            .filter { $0.contains("INTEGER") }.map { String($0.split(separator: ":").last ?? "") }
        guard integers.count == 9 else { throw ToolFailed(description: "unexpected RSA key layout: \(integers)") }
        try change(&integers)
        let fields = ["version", "n", "e", "d", "p", "q", "dp", "dq", "qinv"]
        let config = "asn1=SEQUENCE:rsa\n[rsa]\n" + zip(fields, integers).map { "\($0)=INTEGER:0x\($1)\n" }.joined()
        try Data(config.utf8).write(to: url("\(name).asn1"))
        try openssl(["asn1parse", "-genconf", path("\(name).asn1"), "-noout", "-out", path("\(name).der")])
        try openssl(["rsa", "-inform", "DER", "-in", path("\(name).der"), "-out", path("\(name).key")])
        try openssl(["rsa", "-in", path("\(name).key"), "-pubout", "-out", path("\(name).pub")])
        try openssl([
            "x509", "-req", "-in", path("\(name).csr"), "-CA", path("ca.pem"), "-CAkey", path("ca.key"),
            "-force_pubkey", path("\(name).pub"), "-days", "3650", "-out", path("\(name).pem"),
        ])
        return name
    }

    /// `openssl pkcs12 -export` of a leaf with the CA in the chain.
    public func pkcs12(_ name: String, password: String = TestPKI.password, options: [String] = []) throws -> [UInt8] {
        let output = "\(name)-\(UUID().uuidString).p12"
        var arguments = ["pkcs12", "-export", "-in", path("\(name).pem"), "-certfile", path("ca.pem")]
        if !options.contains("-nokeys") { arguments += ["-inkey", path("\(name).key")] }
        arguments += ["-passout", "pass:\(password)", "-out", path(output)] + options
        try openssl(arguments)
        return try [UInt8](Data(contentsOf: url(output)))
    }

    public func der(_ name: String) throws -> [UInt8] {
        try openssl(["x509", "-in", path("\(name).pem"), "-outform", "DER", "-out", path("\(name).der")])
        return try [UInt8](Data(contentsOf: url("\(name).der")))
    }
}

/// A non-negative big integer (OpenSSL's BIGNUM), written and read as
/// upper-case hex as `openssl asn1parse` shows a key's integers.
private final class Big {
    private let number: OpaquePointer

    init(_ hex: String) {
        var parsed: OpaquePointer?
        precondition(BN_hex2bn(&parsed, hex) > 0, "not hex: \(hex)")
        number = parsed!
    }

    private init(made: (OpaquePointer, OpaquePointer) -> Int32) {
        number = BN_new()!
        let scratch = BN_CTX_new()!
        defer { BN_CTX_free(scratch) }
        precondition(made(number, scratch) == 1, "a big-integer operation failed")
    }

    deinit { BN_free(number) }

    var hex: String {
        let text = BN_bn2hex(number)!
        defer { CRYPTO_free(text, #fileID, #line) }
        return String(cString: text)
    }

    var minusOne: Big {
        Big { result, _ in BN_copy(result, self.number) == nil ? 0 : BN_sub_word(result, 1) }
    }

    func shifted(by bits: Int32) -> Big {
        Big { result, _ in BN_lshift(result, self.number, bits) }
    }

    static func + (left: Big, right: Big) -> Big {
        Big { result, _ in BN_add(result, left.number, right.number) }
    }

    static func * (left: Big, right: Big) -> Big {
        Big { result, scratch in BN_mul(result, left.number, right.number, scratch) }
    }
}
