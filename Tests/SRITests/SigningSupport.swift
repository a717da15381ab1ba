import COpenSSL
import Foundation
import TestSupport
import XCTest

@testable import SRI

extension TestPKI {
    /// A PKCS#12 file holding several key bags and their certificates, in the
    /// given order, built with OpenSSL's PKCS12_add_* API (the CLI exports one key).
    func pkcs12(pairs names: [String], password: String = TestPKI.password) throws -> [UInt8] {
        var certificateBags: OpaquePointer?
        var keyBags: OpaquePointer?
        // The bags are copied into their safes, and the safes into the file.
        defer {
            OPENSSL_sk_pop_free(certificateBags, { PKCS12_SAFEBAG_free(OpaquePointer($0)) })
            OPENSSL_sk_pop_free(keyBags, { PKCS12_SAFEBAG_free(OpaquePointer($0)) })
        }
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
        defer { OPENSSL_sk_pop_free(safes, { PKCS7_free($0?.assumingMemoryBound(to: PKCS7.self)) }) }
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
