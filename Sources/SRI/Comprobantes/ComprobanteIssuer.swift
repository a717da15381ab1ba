/// What the XML says of the issuer and the branch that issues: the
/// `infoTributaria` block and the issuer's part of `infoFactura` /
/// `infoNotaCredito`. The HTTP layer fills it from the issuer's row, already
/// validated there (SRI.md "Issuers"); the schema check catches the rest.
public struct ComprobanteIssuer: Sendable, Equatable {
    /// `ambiente`.
    public enum Environment: Int, Sendable {
        case test = 1
        case production = 2
    }

    /// `contribuyenteRimpe`.
    public enum Rimpe: String, Sendable {
        case emprendedor = "EMPRENDEDOR"
        case negocioPopular = "NEGOCIO_POPULAR"

        /// The legend the XML carries.
        public var legend: String {
            switch self {
            case .emprendedor: "CONTRIBUYENTE RÉGIMEN RIMPE"
            case .negocioPopular: "CONTRIBUYENTE NEGOCIO POPULAR - RÉGIMEN RIMPE"
            }
        }
    }

    /// `ruc`: 13 digits ending in 001.
    public var ruc: String
    /// `razonSocial`.
    public var legalName: String
    /// `nombreComercial`, omitted when nil.
    public var tradeName: String?
    /// `dirMatriz`.
    public var headOfficeAddress: String
    /// `dirEstablecimiento`, omitted when nil.
    public var address: String?
    /// `obligadoContabilidad`: `SI` / `NO`.
    public var accountingRequired: Bool
    /// `contribuyenteEspecial`, omitted when nil.
    public var specialTaxpayer: String?
    /// `agenteRetencion`, omitted when nil.
    public var withholdingAgent: String?
    /// `contribuyenteRimpe`, omitted when nil.
    public var rimpe: Rimpe?
    /// `estab`: 3 digits.
    public var establishment: String
    /// `ptoEmi`: 3 digits.
    public var emissionPoint: String
    public var environment: Environment

    public init(
        ruc: String, legalName: String, tradeName: String? = nil, headOfficeAddress: String, address: String? = nil,
        accountingRequired: Bool = false, specialTaxpayer: String? = nil, withholdingAgent: String? = nil,
        rimpe: Rimpe? = nil, establishment: String, emissionPoint: String, environment: Environment
    ) {
        self.ruc = ruc
        self.legalName = legalName
        self.tradeName = tradeName
        self.headOfficeAddress = headOfficeAddress
        self.address = address
        self.accountingRequired = accountingRequired
        self.specialTaxpayer = specialTaxpayer
        self.withholdingAgent = withholdingAgent
        self.rimpe = rimpe
        self.establishment = establishment
        self.emissionPoint = emissionPoint
        self.environment = environment
    }
}

/// The number a document takes when it is issued.
public struct ComprobanteNumbering: Sendable, Equatable {
    /// The 49-digit `claveAcceso`, computed by the caller.
    public var accessKey: String
    /// 1 to 999 999 999; written with 9 digits.
    public var sequential: Int

    public init(accessKey: String, sequential: Int) {
        self.accessKey = accessKey
        self.sequential = sequential
    }
}
