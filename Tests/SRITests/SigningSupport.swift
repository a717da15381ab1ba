import COpenSSL
import Foundation
import XCTest

@testable import SRI

/// Runs a tool; returns its exit status and its output (stdout then stderr).
@discardableResult
func runTool(_ tool: String, _ arguments: [String], in directory: URL? = nil) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = [tool] + arguments
    if let directory { process.currentDirectoryURL = directory }
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

struct ToolFailed: Error, CustomStringConvertible {
    let description: String
}

/// A throwaway PKI made with the `openssl` CLI: a CA and leaves signed by it
/// with `openssl ca`, whose -startdate/-enddate give any validity window.
final class TestPKI: @unchecked Sendable {
    let directory: URL
    private let lock = NSLock()
    private var counter = 0

    static let password = "clave Ñ s3creta"

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("sri-pki-\(UUID().uuidString)")
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
    }

    func url(_ name: String) -> URL { directory.appendingPathComponent(name) }
    func path(_ name: String) -> String { url(name).path }

    @discardableResult
    func openssl(_ arguments: [String]) throws -> String {
        let (status, output) = try runTool("openssl", arguments, in: directory)
        guard status == 0 else { throw ToolFailed(description: "openssl \(arguments.joined(separator: " ")): \(output)") }
        return output
    }

    /// A key (`rsa:2048`, `rsa:1024`, `ec`) and a certificate for it signed by
    /// the CA; returns the base name of `<name>.key` and `<name>.pem`.
    func leaf(
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

    /// `openssl pkcs12 -export` of a leaf with the CA in the chain.
    func pkcs12(_ name: String, password: String = TestPKI.password, options: [String] = []) throws -> [UInt8] {
        let output = "\(name)-\(UUID().uuidString).p12"
        var arguments = ["pkcs12", "-export", "-in", path("\(name).pem"), "-certfile", path("ca.pem")]
        if !options.contains("-nokeys") { arguments += ["-inkey", path("\(name).key")] }
        arguments += ["-passout", "pass:\(password)", "-out", path(output)] + options
        try openssl(arguments)
        return try [UInt8](Data(contentsOf: url(output)))
    }

    func der(_ name: String) throws -> [UInt8] {
        try openssl(["x509", "-in", path("\(name).pem"), "-outform", "DER", "-out", path("\(name).der")])
        return try [UInt8](Data(contentsOf: url("\(name).der")))
    }

    /// A PKCS#12 file holding several key bags and their certificates, in the
    /// given order, built with OpenSSL's PKCS12_add_* API (the CLI exports one key).
    func pkcs12(pairs names: [String], password: String = TestPKI.password) throws -> [UInt8] {
        var certificateBags: OpaquePointer?
        var keyBags: OpaquePointer?
        for (index, name) in names.enumerated() {
            let key = try readPEM(name + ".key") { PEM_read_bio_PrivateKey($0, nil, nil, nil) }
            let certificate = try readPEM(name + ".pem") { PEM_read_bio_X509($0, nil, nil, nil) }
            defer {
                EVP_PKEY_free(key)
                X509_free(certificate)
            }
            var localKeyID = [UInt8](repeating: UInt8(index + 1), count: 4)
            guard let certificateBag = PKCS12_add_cert(&certificateBags, certificate),
                let keyBag = PKCS12_add_key(&keyBags, key, 0, 2048, NID_pbe_WithSHA1And3_Key_TripleDES_CBC, password)
            else { throw ToolFailed(description: "PKCS12_add_cert/key failed") }
            PKCS12_add_localkeyid(certificateBag, &localKeyID, 4)
            PKCS12_add_localkeyid(keyBag, &localKeyID, 4)
            PKCS12_add_friendlyname_utf8(keyBag, index == 0 ? "Encryption Key" : "Signing Key", -1)
        }
        var safes: OpaquePointer?
        guard PKCS12_add_safe(&safes, certificateBags, -1, 0, nil) == 1,
            PKCS12_add_safe(&safes, keyBags, -1, 0, nil) == 1,
            let file = PKCS12_add_safes(safes, 0)
        else { throw ToolFailed(description: "PKCS12_add_safe(s) failed") }
        defer { PKCS12_free(file) }
        guard PKCS12_set_mac(file, password, -1, nil, 0, 2048, nil) == 1 else { throw ToolFailed(description: "PKCS12_set_mac failed") }
        let length = i2d_PKCS12(file, nil)
        var bytes = [UInt8](repeating: 0, count: Int(length))
        bytes.withUnsafeMutableBufferPointer { buffer in
            var cursor = buffer.baseAddress
            _ = i2d_PKCS12(file, &cursor)
        }
        return bytes
    }

    private func readPEM(_ name: String, _ read: (OpaquePointer) -> OpaquePointer?) throws -> OpaquePointer {
        guard let bio = BIO_new_file(path(name), "r") else { throw ToolFailed(description: "cannot open \(name)") }
        defer { BIO_free(bio) }
        guard let value = read(bio) else { throw ToolFailed(description: "cannot read \(name)") }
        return value
    }
}

enum Fixtures {
    /// A factura valid against factura_V2.1.0.xsd, with text that C14N must
    /// escape (& < > " ' ]]>), accents and emoji, in elements and attributes.
    static let factura: [UInt8] = Array(facturaText.utf8)

    static let facturaText = #"""
        <?xml version="1.0" encoding="UTF-8"?>
        <factura id="comprobante" version="2.1.0">
          <infoTributaria>
            <ambiente>1</ambiente>
            <tipoEmision>1</tipoEmision>
            <razonSocial>Compañía Ñandú &amp; Hijos S.A.</razonSocial>
            <nombreComercial>Ñandú "Tienda" 'Central'</nombreComercial>
            <ruc>1790012345001</ruc>
            <claveAcceso>0112202601179001234500110010010000000011234567813</claveAcceso>
            <codDoc>01</codDoc>
            <estab>001</estab>
            <ptoEmi>001</ptoEmi>
            <secuencial>000000001</secuencial>
            <dirMatriz>Av. Amazonas N12-34 y Colón, Quito</dirMatriz>
          </infoTributaria>
          <infoFactura>
            <fechaEmision>01/12/2026</fechaEmision>
            <obligadoContabilidad>NO</obligadoContabilidad>
            <tipoIdentificacionComprador>05</tipoIdentificacionComprador>
            <razonSocialComprador>José Núñez</razonSocialComprador>
            <identificacionComprador>1712345678</identificacionComprador>
            <direccionComprador>Quito</direccionComprador>
            <totalSinImpuestos>21.00</totalSinImpuestos>
            <totalDescuento>0.50</totalDescuento>
            <totalConImpuestos>
              <totalImpuesto>
                <codigo>2</codigo>
                <codigoPorcentaje>4</codigoPorcentaje>
                <baseImponible>21.00</baseImponible>
                <valor>3.15</valor>
              </totalImpuesto>
            </totalConImpuestos>
            <propina>0.00</propina>
            <importeTotal>24.15</importeTotal>
            <moneda>DOLAR</moneda>
            <pagos>
              <pago>
                <formaPago>01</formaPago>
                <total>24.15</total>
                <plazo>30</plazo>
                <unidadTiempo>dias</unidadTiempo>
              </pago>
            </pagos>
          </infoFactura>
          <detalles>
            <detalle>
              <codigoPrincipal>A-1</codigoPrincipal>
              <descripcion>Widget &amp; &lt;gadget&gt; "quoted" 'single' ]]&gt; 🚀 ñáéíóú</descripcion>
              <cantidad>2</cantidad>
              <precioUnitario>10.75</precioUnitario>
              <descuento>0.50</descuento>
              <precioTotalSinImpuesto>21.00</precioTotalSinImpuesto>
              <detallesAdicionales>
                <detAdicional nombre="Color &amp; &lt;tono&gt; &quot;x&quot;" valor="Rojo 'vivo' ]]&gt;"/>
              </detallesAdicionales>
              <impuestos>
                <impuesto>
                  <codigo>2</codigo>
                  <codigoPorcentaje>4</codigoPorcentaje>
                  <tarifa>15</tarifa>
                  <baseImponible>21.00</baseImponible>
                  <valor>3.15</valor>
                </impuesto>
              </impuestos>
            </detalle>
          </detalles>
          <infoAdicional>
            <campoAdicional nombre="Email">jose@example.ec</campoAdicional>
            <campoAdicional nombre="Nota">a &amp; b &lt; c &gt; d "e" 'f' ]]&gt; 😀 Ünïcödé</campoAdicional>
          </infoAdicional>
        </factura>
        """#

    /// 2026-12-01T10:00:00-05:00.
    static let signingTime = Date(timeIntervalSince1970: 1_796_137_200)
}
