/// One line of SRI's IVA table: the code pair a client names and the rate it
/// means. The rate always comes from here, never from the client.
public struct TaxRate: Sendable, Hashable {
    /// The tax: `"2"` for IVA.
    public let code: String
    /// SRI's `codigoPorcentaje`.
    public let rateCode: String
    /// The rate in percent (15 for 15 %).
    public let percent: ExactDecimal
    public let label: String
}

/// The taxes a comprobante line may carry, as SRI.md "Issuing" lists them.
public enum TaxTable {
    /// SRI's code for IVA, the only tax issued so far.
    public static let ivaCode = "2"

    /// Every IVA rate, by `codigoPorcentaje`.
    public static let iva: [TaxRate] = [
        rate("0", 0, "0 %"),
        rate("2", 12, "12 %"),
        rate("3", 14, "14 %"),
        rate("4", 15, "15 %"),
        rate("5", 5, "5 %"),
        rate("6", 0, "no objeto de impuesto"),
        rate("7", 0, "exento de IVA"),
        rate("10", 13, "13 %"),
    ]

    /// The rate of a tax code and rate code, or nil when the table has no such pair.
    public static func rate(code: String, rateCode: String) -> TaxRate? {
        guard code == ivaCode else { return nil }
        return iva.first { $0.rateCode == rateCode }
    }

    private static func rate(_ rateCode: String, _ percent: Int, _ label: String) -> TaxRate {
        TaxRate(code: ivaCode, rateCode: rateCode, percent: ExactDecimal(percent), label: label)
    }
}
