import Hummingbird
import Postgres
import SRI

/// An issuer resolved for a document route (resolveIssuer): the tenant's, and of
/// the key's environment.
struct ResolvedIssuer: Sendable {
    let id: Int64
    let ruc: String
    let establishment: String
    let emissionPoint: String
    let environment: Environment
    /// What the XML says about the issuer; nil `headOfficeAddress` means it cannot issue yet.
    let legalName: String
    let tradeName: String?
    let address: String?
    let headOfficeAddress: String?
    let accountingRequired: Bool
    let specialTaxpayer: String?
    let withholdingAgent: String?
    let rimpe: String?

    /// The document number `sequential` takes here: `NNN-NNN-NNNNNNNNN`.
    func number(_ sequential: Int) -> String {
        "\(establishment)-\(emissionPoint)-\(AccessKey.pad(sequential, 9))"
    }

    /// The `X-Issuer-Id` header: 400 when missing or not a number; a number that
    /// cannot be an id (0, too large) resolves to no issuer, hence 404.
    static func requestedID(_ request: Request) throws -> Int64 {
        guard let text = request.headers[.issuerID], !text.isEmpty, Format.digits(text) else {
            throw APIError.validation(field: "X-Issuer-Id", "The X-Issuer-Id header must be the numeric id of one of your issuers.")
        }
        return Int64(text) ?? 0
    }

    /// The issuer row read under the tenant's row-level security; nil when there
    /// is none (404, the same for another tenant's).
    static func lookup(_ id: Int64) -> Read<ResolvedIssuer?> {
        Read(
            """
            SELECT id, ruc, establishment, emission_point, sandbox, legal_name, trade_name, address, head_office_address,
                   accounting_required, special_taxpayer, withholding_agent, rimpe
              FROM issuers WHERE id = \(id)
            """
        ) { result in
            guard let row = result.first else { return nil }
            let (id, ruc, establishment, emissionPoint, sandbox) = try row.decode((Int64, String, String, String, Bool).self)
            let (legalName, tradeName, address, headOfficeAddress) = try row.decode((String, String?, String?, String?).self, from: 5)
            let (accountingRequired, specialTaxpayer, withholdingAgent, rimpe) = try row.decode(
                (Bool, String?, String?, String?).self, from: 9)
            return ResolvedIssuer(
                id: id, ruc: ruc, establishment: establishment, emissionPoint: emissionPoint,
                environment: sandbox ? .sandbox : .production, legalName: legalName, tradeName: tradeName, address: address,
                headOfficeAddress: headOfficeAddress, accountingRequired: accountingRequired, specialTaxpayer: specialTaxpayer,
                withholdingAgent: withholdingAgent, rimpe: rimpe
            )
        }
    }

    /// resolveIssuer once authentication has passed: no issuer is 404, an issuer
    /// of the other environment 401.
    static func resolve(_ found: ResolvedIssuer?, keyEnvironment: Environment) throws -> ResolvedIssuer {
        guard let issuer = found else { throw APIError.notFound("No issuer with this id.") }
        try checkEnvironment(key: keyEnvironment, issuer: issuer.environment)
        return issuer
    }

    /// The "Key environment + targeted issuer" table of the API keys documentation.
    static func checkEnvironment(key: Environment, issuer: Environment) throws {
        switch (key, issuer) {
        case (.sandbox, .sandbox), (.production, .production):
            return
        case (.sandbox, .production):
            throw APIError.unauthorized("A sandbox key cannot address a production issuer; use a production key.")
        case (.production, .sandbox):
            throw APIError.unauthorized("A production key cannot address a sandbox issuer; use a sandbox key.")
        }
    }

    /// The issuer as the XML states it; 409 when it lacks what the XML
    /// requires, naming everything it lacks at once, and then also what
    /// `certificateProblem` finds (`CertificatesStore.problem`, asked only
    /// then), what it lacks to sign: an issuer set up by hand is told all of
    /// it in one answer. A certificate problem alone is left to the signing
    /// identity's own 409.
    func forXML(certificateProblem: () throws -> String? = { nil }) throws -> ComprobanteIssuer {
        var missing: [String] = []
        // API.md takes any 13 digits for an issuer; the official XSDs take an
        // issuer's RUC only as ten digits and 001.
        if !ruc.hasSuffix("001") {
            missing.append(
                "its ruc \(ruc) does not end in 001, and SRI takes comprobantes only from a RUC that does "
                    + "(issue from an issuer created with the RUC as SRI registered it)")
        }
        if headOfficeAddress == nil {
            missing.append("it has no headOfficeAddress, which every comprobante states (set it with PATCH /v1/issuers/:id)")
        }
        // Issuers' names and addresses may hold any text (API.md: stored
        // verbatim), but the official XSD takes no line breaks in them and XML
        // 1.0 no other control characters, U+FFFE or U+FFFF: the rule of every
        // text of a comprobante.
        let texts = [
            ("legalName", legalName), ("tradeName", tradeName), ("headOfficeAddress", headOfficeAddress), ("address", address),
        ]
        for case let (field, text?) in texts where !ComprobanteInput.isComprobanteText(text) {
            missing.append(
                "its \(field) holds a character a comprobante cannot carry, a control character or line break, U+FFFE or U+FFFF "
                    + "(change it with PATCH /v1/issuers/:id)")
        }
        guard missing.isEmpty, let headOfficeAddress else {
            if let problem = try certificateProblem() { missing.append(problem) }
            throw APIError.conflict(.issuerNotReady, "The issuer cannot issue comprobantes: " + missing.joined(separator: "; ") + ".")
        }
        return ComprobanteIssuer(
            ruc: ruc, legalName: legalName, tradeName: tradeName, headOfficeAddress: headOfficeAddress, address: address,
            accountingRequired: accountingRequired, specialTaxpayer: specialTaxpayer, withholdingAgent: withholdingAgent,
            rimpe: rimpe.flatMap(ComprobanteIssuer.Rimpe.init(rawValue:)), establishment: establishment, emissionPoint: emissionPoint,
            environment: environment == .sandbox ? .test : .production
        )
    }

}

extension Database {
    /// resolveIssuer for a read of one of the issuer's things: the `X-Issuer-Id`
    /// header (400, answered after the credential), then in one round trip the
    /// authentication, the issuer and `read` of that issuer; then 404 for an
    /// issuer that is not the tenant's and 401 for one of the other environment.
    func readOfIssuer<Value>(
        _ request: Request, _ context: TenantRequestContext, _ read: (_ issuerID: Int64) -> Read<Value>
    ) async throws -> Value {
        let issuerID = try await checkAfterAuthenticating(for: context.token, facts: context.facts) {
            try ResolvedIssuer.requestedID(request)
        }
        let (principal, found, value) = try await self.read(
            for: context.token, facts: context.facts, ResolvedIssuer.lookup(issuerID), read(issuerID))
        _ = try ResolvedIssuer.resolve(found, keyEnvironment: principal.keyEnvironment)
        return value
    }

    /// resolveIssuer alone, for a request refused for its fields: the answer is
    /// 401 or 404 when those come first.
    func resolveIssuer(_ issuerID: Int64, _ context: TenantRequestContext) async throws {
        let (principal, found) = try await read(for: context.token, facts: context.facts, ResolvedIssuer.lookup(issuerID))
        _ = try ResolvedIssuer.resolve(found, keyEnvironment: principal.keyEnvironment)
    }

    /// The same, with `also` read in the same round trip: its value, once the
    /// issuer resolved.
    func resolveIssuer<A>(_ issuerID: Int64, _ context: TenantRequestContext, also: Read<A>) async throws -> A {
        let (principal, found, value) = try await read(for: context.token, facts: context.facts, ResolvedIssuer.lookup(issuerID), also)
        _ = try ResolvedIssuer.resolve(found, keyEnvironment: principal.keyEnvironment)
        return value
    }
}
