import Hummingbird
import Postgres

/// POST/GET /v1/issuers, GET /v1/issuers/:id and its sequentials.
struct IssuersController {
    let database: Database

    func addRoutes(to group: RouterGroup<TenantRequestContext>) {
        group.post("issuers", use: create)
        group.get("issuers", use: list)
        group.get("issuers/:id", use: show)
        group.patch("issuers/:id", use: update)
        group.get("issuers/:id/sequentials", use: sequentials)
    }

    /// The issuer takes the tenant's environment from the tenant row this
    /// transaction holds locked, so one created while the tenant is being promoted
    /// either commits first (and is promoted with the others) or comes after the
    /// promotion and is refused, its sandbox key revoked (401); a production key
    /// then creates a production issuer with all its counters. Past
    /// `IssuersStore.limit` issuers, 409.
    @Sendable func create(_ request: Request, context: TenantRequestContext) async throws -> Response {
        let input = try await database.input(request, context)
        let parsed = Result { try NewIssuer(input) }
        let issuer = try await database.transactionAddingToRoster(for: context.token, facts: context.facts, count: IssuersStore.count) {
            transaction, principal, count in
            let new = try parsed.get()
            try IssuersStore.requireRoom(count: count)
            return try IssuersStore.create(transaction, new, actorKeyID: principal.keyID)
        }
        return Reply.json(.created, [("issuer", issuer)])
    }

    @Sendable func list(_ request: Request, context: TenantRequestContext) async throws -> Response {
        let (_, issuers) = try await database.read(for: context.token, facts: context.facts, IssuersStore.all)
        return Reply.json([("issuers", .array(issuers))])
    }

    @Sendable func show(_ request: Request, context: TenantRequestContext) async throws -> Response {
        let id = Format.pathID(context.parameters.get("id"))
        let (_, issuer) = try await database.read(for: context.token, facts: context.facts, IssuersStore.one(id ?? 0))
        return Reply.json([("issuer", issuer)])
    }

    /// Changes what the XML says about the issuer; documents issued before keep
    /// what they said. The branch identity (RUC, establishment, emission point) is fixed.
    /// A key of the other environment is 401, as for documents: a sandbox key
    /// kept for a test rig does not change what production comprobantes say.
    @Sendable func update(_ request: Request, context: TenantRequestContext) async throws -> Response {
        let id = Format.pathID(context.parameters.get("id"))
        let bytes = try await Input.collect(request, from: context.bodyPeer)
        let changes: IssuerChanges
        do {
            changes = try await database.checkAfterAuthenticating(for: context.token, facts: context.facts) {
                guard id != nil else { throw IssuersStore.notFound }
                return try IssuerChanges(Input.parse(bytes, of: request, allowEmpty: false))
            }
        } catch let error as APIError where error.status == .badRequest {
            // The order of every route: the key's 401, the issuer's 404 (and a
            // key of the other environment's 401), then the body's 400.
            let (principal, environment) = try await database.read(
                for: context.token, facts: context.facts, IssuersStore.environment(id ?? 0))
            guard let environment else { throw IssuersStore.notFound }
            try ResolvedIssuer.checkEnvironment(key: principal.keyEnvironment, issuer: environment)
            throw error
        }
        let issuer = try await database.transaction(
            for: context.token, facts: context.facts, prologue: [IssuersStore.environment(id ?? 0).query]
        ) { transaction, principal, results in
            guard let environment = try IssuersStore.environment(id ?? 0).decode(results[0]) else { throw IssuersStore.notFound }
            try ResolvedIssuer.checkEnvironment(key: principal.keyEnvironment, issuer: environment)
            return try IssuersStore.update(transaction, id: id ?? 0, changes, actorKeyID: principal.keyID)
        }
        return Reply.json([("issuer", issuer)])
    }

    @Sendable func sequentials(_ request: Request, context: TenantRequestContext) async throws -> Response {
        let id = Format.pathID(context.parameters.get("id")) ?? 0
        let (_, exists, counters) = try await database.read(
            for: context.token, facts: context.facts, IssuersStore.exists(id), IssuersStore.counters(id)
        )
        guard exists else { throw IssuersStore.notFound }
        return Reply.json([("sequentials", .array(counters))])
    }
}

/// The body of POST /v1/issuers.
struct NewIssuer: Sendable {
    let ruc: String
    let legalName: String
    let tradeName: String?
    let establishment: String
    let emissionPoint: String
    let address: String?
    let tax: IssuerTaxData

    init(_ input: Input) throws {
        var input = input
        let ruc = input.formatted("ruc", required: true, rule: "exactly 13 digits") { Format.digits($0, count: 13) }
        let legalName = input.string("legalName", required: true, length: 1...300)
        tradeName = input.string("tradeName", required: false, length: 1...300)
        let establishment = input.formatted(
            "establishment", required: true, rule: "3 digits other than \"000\"", matches: Format.branchCode)
        let emissionPoint = input.formatted(
            "emissionPoint", required: true, rule: "3 digits other than \"000\"", matches: Format.branchCode)
        address = input.string("address", required: false, length: 1...300)
        tax = IssuerTaxData(&input)
        try input.validated()
        guard let ruc, let legalName, let establishment, let emissionPoint else { throw APIError.internalError }
        self.ruc = ruc
        self.legalName = legalName
        self.establishment = establishment
        self.emissionPoint = emissionPoint
    }
}

/// The fields the SRI XML needs about an issuer beyond its branch identity
/// (SRI.md, "Issuers"). Absent and null are both nil here.
struct IssuerTaxData: Sendable {
    var headOfficeAddress: String?
    var accountingRequired: Bool?
    var specialTaxpayer: String?
    var withholdingAgent: String?
    var rimpe: String?

    static let rimpeValues = ["EMPRENDEDOR", "NEGOCIO_POPULAR"]

    init(_ input: inout Input) {
        headOfficeAddress = input.string("headOfficeAddress", required: false, length: 1...300)
        accountingRequired = input.boolean("accountingRequired")
        specialTaxpayer = input.formatted("specialTaxpayer", required: false, rule: "3 to 13 letters or digits") { text in
            (3...13).contains(text.utf8.count)
                && text.utf8.allSatisfy { (48...57).contains($0) || (65...90).contains($0) || (97...122).contains($0) }
        }
        withholdingAgent = input.formatted("withholdingAgent", required: false, rule: "1 to 8 digits") { text in
            (1...8).contains(text.utf8.count) && Format.digits(text)
        }
        if case .null? = input.value["rimpe"] {
            rimpe = nil
        } else {
            rimpe = input.choice("rimpe", required: false, allowed: IssuerTaxData.rimpeValues)
        }
    }
}

/// The body of PATCH /v1/issuers/:id: the members present change, null clears
/// an optional one. `ruc`, `establishment` and `emissionPoint` cannot change.
struct IssuerChanges: Sendable {
    static let changeable: Set<String> = [
        "legalName", "tradeName", "address", "headOfficeAddress", "accountingRequired", "specialTaxpayer", "withholdingAgent", "rimpe",
    ]

    let present: Set<String>
    let legalName: String?
    let tradeName: String?
    let address: String?
    let tax: IssuerTaxData

    init(_ input: Input) throws {
        var input = input
        for field in ["ruc", "establishment", "emissionPoint"] where input.has(field) {
            input.fail(field, "\(field) identifies the branch and its numbering; it cannot change. Create another issuer instead.")
        }
        legalName = input.string("legalName", required: false, length: 1...300)
        if input.has("legalName"), legalName == nil, case .null? = input.value["legalName"] {
            input.fail("legalName", "legalName cannot be null.")
        }
        tradeName = input.string("tradeName", required: false, length: 1...300)
        address = input.string("address", required: false, length: 1...300)
        tax = IssuerTaxData(&input)
        try input.validated()
        present = Set(IssuerChanges.changeable.filter { input.has($0) })
    }
}
