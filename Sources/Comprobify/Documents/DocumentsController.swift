import Foundation
import Hummingbird
import NIOConcurrencyHelpers
import Postgres
import SRI

/// POST/GET /v1/documents, GET /v1/documents/:accessKey and its signed XML.
struct DocumentsController {
    let database: Database
    let signing: DocumentSigning
    /// About how many bytes of documents a list holds in memory at once (`ListBudget`).
    var listBytes = ListBudget.bytes
    /// How long the later pieces of a streamed page may wait, in all, for
    /// their tenant's place or a connection (HTTP_REQUEST_TIMEOUT_S).
    var streamPatience: Duration = .seconds(30)

    func addRoutes(to group: RouterGroup<TenantRequestContext>) {
        group.post("documents", use: issue)
        group.get("documents", use: list)
        // The list may be streamed, with no Content-Length: its HEAD keeps the
        // GET's headers as they are (the router's own HEAD of a GET would
        // answer the empty body's Content-Length: 0).
        group.head("documents") { request, context in Reply.head(of: try await list(request, context: context)) }
        group.get("documents/:accessKey", use: show)
        group.get("documents/:accessKey/xml", use: xml)
    }

    /// Issues a comprobante: validated before any database work, then in one
    /// transaction the counter's number, the access key, the XML (checked
    /// against the official XSD) and its XAdES-BES signature, and the stored
    /// document. Any failure rolls all of it back: no number is consumed.
    @Sendable func issue(_ request: Request, context: TenantRequestContext) async throws -> Response {
        let bytes = try await Input.collect(request, from: context.bodyPeer)
        let issuerID = try await database.checkAfterAuthenticating(for: context.token, facts: context.facts) {
            try ResolvedIssuer.requestedID(request)
        }
        // Each time the header was sent; more than once is refused below.
        let idempotencyKeys = request.headers[values: .idempotencyKey]
        let idempotencyKey = idempotencyKeys.first
        let input: Input
        let document: ComprobanteRequest
        do {
            // Any 400 of the body, unparseable JSON included, comes after the
            // key's 401 and the issuer's 404 (the order of every route).
            // The header's violation and the body's are reported together.
            let keyError = IssueRequest.idempotencyKeyProblem(idempotencyKeys)
            do {
                input = try Input.parse(bytes, of: request, allowEmpty: false)
                document = try ComprobanteRequest(input, today: .todayInEcuador(now: Date().timeIntervalSince1970))
            } catch let error as APIError where error.code == "VALIDATION_ERROR" {
                throw APIError.validation((keyError?.fieldErrors ?? []) + error.fieldErrors)
            }
            if let keyError { throw keyError }
        } catch {
            // A body refused with a single, well-formed Idempotency-Key: the
            // key may have answered this very body before a rule was made
            // stricter, and a repeat is answered what it was answered.
            if let key = idempotencyKey, IssueRequest.idempotencyKeyProblem(idempotencyKeys) == nil,
                (error as? APIError)?.code == "VALIDATION_ERROR"
            {
                let replay = DocumentsStore.replay(
                    key: key, issuer: issuerID, environment: context.token.environment, digest: Crypto.sha256(bytes))
                if let replayed = try await database.resolveIssuer(issuerID, context, also: replay) {
                    return Self.issued(replayed, replayed: true)
                }
            } else {
                try await database.resolveIssuer(issuerID, context)
            }
            throw error
        }
        // Only a request with an Idempotency-Key is compared with an earlier one.
        let bodyDigest = idempotencyKey.map { _ in Crypto.sha256(input.bytes) }

        let database = self.database
        let (json, replayed) = try await database.issuing(
            for: context.token, issuer: issuerID, documentType: document.comprobante.kind.rawValue
        ) {
            // A document sent with its number in one round trip stores only with
            // the number it was signed with; when the counter gives another,
            // nothing was stored and the request issues again, taking the number first.
            do {
                return try await issueOnce(
                    document, issuerID: issuerID, idempotencyKey: idempotencyKey, bodyDigest: bodyDigest, context: context,
                    signingAhead: true)
            } catch is DocumentsStore.ForecastMissed {
                context.logger.debug("the counter gave another number than the one foreseen: issuing again")
                return try await issueOnce(
                    document, issuerID: issuerID, idempotencyKey: idempotencyKey, bodyDigest: bodyDigest, context: context,
                    signingAhead: false)
            } catch is DocumentsStore.NotStoredTogether {
                context.logger.debug("the documents sent together were not stored: issuing alone")
                return try await issueOnce(
                    document, issuerID: issuerID, idempotencyKey: idempotencyKey, bodyDigest: bodyDigest, context: context,
                    signingAhead: false)
            }
        }
        if !replayed {
            ServiceMetrics.documentIssued(type: document.comprobante.kind.rawValue, environment: context.token.environment)
        }
        return Self.issued(json, replayed: replayed)
    }

    /// POST /v1/documents' 201: the document, marked when it replays an
    /// Idempotency-Key's first answer.
    static func issued(_ json: JSONValue, replayed: Bool) -> Response {
        var response = Reply.json(.created, [("document", json)])
        if replayed { response.headers[.idempotentReplayed] = "true" }
        return response
    }

    /// One transaction of `issue`: the number, the signed comprobante and the
    /// stored document, or the replay of an Idempotency-Key. With
    /// `signingAhead` the comprobante is signed before the counter's lock with
    /// the number this process foresees (`NumberForecast`), and kept if the
    /// counter gives that number (else signed again under the lock). On a
    /// `oneTrip` turn the counter's UPDATE, the document and COMMIT go in one
    /// round trip; that throws `ForecastMissed` when the counter gives another
    /// number. A request with an Idempotency-Key never goes in one round trip.
    /// Without `signingAhead`, or when nothing is foreseen, the number is taken
    /// first and the comprobante signed while the counter's row is locked.
    ///
    /// A factura on a `oneTrip` turn is offered to the turns ahead while it
    /// waits (`NumberForecast.waitForTurn(_:offering:)`): one that takes it
    /// stores it with its own, and this request answers with what became of
    /// it. Its own transaction then only ends: the taking one, of the same
    /// key, held the key's share lock through the commit. A turn whose time
    /// comes takes the offers behind it and stores them all in one statement.
    private func issueOnce(
        _ document: ComprobanteRequest, issuerID: Int64, idempotencyKey: String?, bodyDigest: Data?,
        context: TenantRequestContext, signingAhead: Bool
    ) async throws -> (JSONValue, Bool) {
        let key = context.token.digest
        // A document another request stored: the answer, whatever happens to
        // this transaction afterwards (it has nothing left to commit).
        let storedByAnother = NIOLockedValueBox<JSONValue?>(nil)
        do {
            return try await issueInTransaction(
                document, issuerID: issuerID, idempotencyKey: idempotencyKey, bodyDigest: bodyDigest, context: context,
                signingAhead: signingAhead, key: key, storedByAnother: storedByAnother)
        } catch {
            if let json = storedByAnother.withLockedValue({ $0 }) { return (json, false) }
            throw error
        }
    }

    private func issueInTransaction(
        _ document: ComprobanteRequest, issuerID: Int64, idempotencyKey: String?, bodyDigest: Data?,
        context: TenantRequestContext, signingAhead: Bool, key: Data, storedByAnother: NIOLockedValueBox<JSONValue?>
    ) async throws -> (JSONValue, Bool) {
        let signing = self.signing
        return try await database.transaction(
            for: context.token, facts: context.facts,
            prologue: [ResolvedIssuer.lookup(issuerID).query, CertificatesStore.signingMaterial(issuer: issuerID)]
        ) { transaction, principal, results -> (JSONValue, Bool) in
            // The pool runs a transaction again after a retryable error: a
            // document already stored by another request is not issued twice.
            if let json = storedByAnother.withLockedValue({ $0 }) { return (json, false) }
            let issuer = try ResolvedIssuer.resolve(
                try ResolvedIssuer.lookup(issuerID).decode(results[0]), keyEnvironment: principal.keyEnvironment)
            if let key = idempotencyKey, let bodyDigest,
                let replay = try DocumentsStore.claim(
                    transaction, key: key, issuer: issuer.id, environment: issuer.environment, digest: bodyDigest)
            {
                return (replay, true)
            }
            let now = Date()
            let xmlIssuer = try issuer.forXML { try CertificatesStore.problem(results[1], now: now) }
            let identity = try CertificatesStore.signingIdentity(
                results[1], transaction: transaction, tenant: principal.tenantID, issuer: issuer.id, secretBox: signing.secretBox,
                cache: signing.identities, now: now
            )
            let comprobante = document.comprobante
            var modifiedDocumentID: Int64?
            if case .creditNote(let note) = comprobante {
                modifiedDocumentID = try DocumentsStore.creditedFactura(transaction, issuer: issuer, note: note)
            }
            let prepared = try signing.prepare(comprobante, issuer: xmlIssuer)
            let body = DocumentBody.json(comprobante)
            let parts = AccessKey.Parts(
                issueDate: comprobante.issueDate, documentType: comprobante.kind.rawValue, ruc: issuer.ruc,
                environment: issuer.environment, establishment: issuer.establishment, emissionPoint: issuer.emissionPoint)
            let numericCode = AccessKey.randomNumericCode()
            func signed(_ sequential: Int, accessKey: String, xml: [UInt8]) -> DocumentsStore.Signed {
                DocumentsStore.Signed(
                    comprobante: comprobante, body: body, sequential: sequential, accessKey: accessKey, xml: xml,
                    metadata: document.metadata, modifiedDocumentID: modifiedDocumentID)
            }
            let turn = signing.numbers.ask(
                .init(issuer: issuer.id, documentType: comprobante.kind.rawValue), guessing: signingAhead)
            var settled = false
            defer { if !settled { signing.numbers.abandon(turn) } }
            var ahead: (accessKey: String, xml: [UInt8])?
            if let guess = turn.guess {
                // Anything that goes wrong here (a guess past the last number, say)
                // only means signing under the lock, where it counts.
                let accessKey = AccessKey.make(parts, sequential: guess, numericCode: numericCode)
                ahead = try? (
                    accessKey, signing.signed(prepared, accessKey: accessKey, sequential: guess, identity: identity, now: now)
                )
            }
            // A factura signed ahead for one round trip is offered to the turns
            // ahead (a keyed request and a credit note go on their own: a note
            // taken as given has no modified document's id, but its number).
            var offer: NumberForecast.Offer?
            if let guess = turn.guess, let ahead, turn.oneTrip, idempotencyKey == nil, comprobante.kind != .creditNote {
                offer = NumberForecast.Offer(turn: turn, key: key, document: signed(guess, accessKey: ahead.accessKey, xml: ahead.xml))
            }
            // In the order this process's requests asked: each takes its number
            // once the counter has answered the one before.
            let inTurn: Bool
            var taking: [NumberForecast.Offer] = []
            switch signing.numbers.waitForTurn(turn, offering: offer) {
            case .taken(let offer):
                // The turn that took it ends this turn, and stores or not.
                settled = true
                switch signing.numbers.outcome(of: offer) {
                case .stored(let json):
                    storedByAnother.withLockedValue { $0 = json }
                    return (json, false)
                case .notStored: throw DocumentsStore.NotStoredTogether()
                case .failed(let error): throw error
                }
            case .first(let offers):
                inTurn = true
                taking = offers
            case .late:
                inTurn = false
            }
            if let guess = turn.guess, let offer, !taking.isEmpty {
                return (try storeTogether(offer, taking, guess: guess, transaction: transaction, issuer: issuer, settled: &settled), false)
            }
            // A miss in one round trip ends the transaction, and the Idempotency-Key's
            // claim with it: a same-key request could then get ahead of this one
            // before it issues again. So a keyed request takes its number inside
            // the transaction that holds its claim, keeping a signature made ahead
            // when the counter agrees.
            if let guess = turn.guess, let ahead, turn.oneTrip, inTurn, idempotencyKey == nil {
                do {
                    let json = try DocumentsStore.store(
                        transaction, issuer: issuer, signed(guess, accessKey: ahead.accessKey, xml: ahead.xml),
                        idempotencyKey: idempotencyKey, takingNumber: true
                    ) { numbered in
                        // The counter has given the number (or refused, and
                        // nothing moved): the next turn sends its statement, which
                        // waits in PostgreSQL for the counter's row while this one commits.
                        signing.numbers.sent(numbered ? guess : nil, turn)
                        settled = true
                    }
                    ServiceMetrics.signedAhead(hit: true)
                    return (json, false)
                } catch {
                    // Whatever failed, nothing committed and the counter did not
                    // move: foresee nothing until a number is taken again.
                    if settled { signing.numbers.forget(turn.counter) }
                    if error is DocumentsStore.ForecastMissed { ServiceMetrics.signedAhead(hit: false) }
                    throw error
                }
            }
            // The counter's row stays locked from here to the commit.
            let sequential = try DocumentsStore.takeNumber(transaction, issuer: issuer, documentType: comprobante.kind.rawValue)
            signing.numbers.took(sequential, turn)
            settled = true
            do {
                let accessKey: String
                let xml: [UInt8]
                if let ahead, turn.guess == sequential {
                    (accessKey, xml) = ahead
                } else {
                    accessKey = AccessKey.make(parts, sequential: sequential, numericCode: numericCode)
                    // A tree is signed once: a guess used the first one.
                    let tree = turn.guess == nil ? prepared : try signing.prepare(comprobante, issuer: xmlIssuer)
                    xml = try signing.signed(tree, accessKey: accessKey, sequential: sequential, identity: identity, now: now)
                }
                return (
                    try DocumentsStore.store(
                        transaction, issuer: issuer, signed(sequential, accessKey: accessKey, xml: xml), idempotencyKey: idempotencyKey),
                    false
                )
            } catch {
                // The number taken is rolled back with the transaction.
                signing.numbers.forget(turn.counter)
                throw error
            }
        }
    }

    /// Stores `own` and the offers it took in one statement, and hands each
    /// taken turn what became of its document. Nothing stored for certain
    /// (another number from the counter, a statement the server refused):
    /// every request issues again on its own, this one too
    /// (`NotStoredTogether`), as one document might be what failed. Anything
    /// else (stored but the commit unanswered, a connection that broke once
    /// the statement and COMMIT were sent): all fail alike, as one document
    /// alone would, never issued again.
    private func storeTogether(
        _ own: NumberForecast.Offer, _ taking: [NumberForecast.Offer], guess: Int, transaction: Transaction, issuer: ResolvedIssuer,
        settled: inout Bool
    ) throws -> JSONValue {
        let numbers = signing.numbers
        let turns = [own.turn] + taking.map(\.turn)
        var stored = false
        var outcomes: [NumberForecast.Outcome] = Array(repeating: .notStored, count: taking.count)
        // Every taken turn gets an outcome, whatever happens here.
        defer { numbers.deliver(outcomes, to: taking) }
        do {
            let answers = try DocumentsStore.store(
                transaction, issuer: issuer, together: [own.document] + taking.map(\.document)
            ) { numbered in
                numbers.sent(numbered ? guess : nil, turns)
                settled = true
                stored = numbered
            }
            outcomes = answers.dropFirst().map { .stored($0) }
            for _ in turns { ServiceMetrics.signedAhead(hit: true) }
            ServiceMetrics.storedTogether(turns.count)
            return answers[0]
        } catch {
            if settled {
                numbers.forget(own.turn.counter)
            } else {
                // The counter never answered: the taken turns end here (this one in issueOnce).
                for offer in taking { numbers.abandon(offer.turn) }
            }
            guard !stored, DocumentsController.certainlyNothingStored(error) else {
                outcomes = Array(repeating: .failed(error), count: taking.count)
                throw error
            }
            if error is DocumentsStore.ForecastMissed { ServiceMetrics.signedAhead(hit: false) }
            throw DocumentsStore.NotStoredTogether()
        }
    }

    /// Whether `error`, from documents sent together before the counter's
    /// answer said they were stored, means for certain that nothing
    /// committed: the counter gave other numbers, the server refused the
    /// statement (so the pipeline's COMMIT was skipped), or the statement was
    /// refused before it was sent. A broken connection is no such certainty:
    /// the statement and COMMIT may have run with their answers lost.
    static func certainlyNothingStored(_ error: Error) -> Bool {
        switch error {
        case is DocumentsStore.ForecastMissed, is APIError: return true
        case let error as PostgresError: return error.kind == .refused || (error.kind == .server && !error.isUnavailable)
        default: return false
        }
    }

    @Sendable func list(_ request: Request, context: TenantRequestContext) async throws -> Response {
        let issuerID = try await database.checkAfterAuthenticating(for: context.token, facts: context.facts) {
            try ResolvedIssuer.requestedID(request)
        }
        let page: ListRequest
        do {
            page = try ListRequest(request)
        } catch {
            try await database.resolveIssuer(issuerID, context)
            throw error
        }
        let bytes = listBytes
        let (principal, found, rows) = try await database.read(
            for: context.token, facts: context.facts, ResolvedIssuer.lookup(issuerID),
            DocumentsStore.page(
                issuer: issuerID, after: page.after, limit: page.limit, documentType: page.documentType, status: page.status,
                environment: page.environment, bytes: bytes)
        )
        _ = try ResolvedIssuer.resolve(found, keyEnvironment: principal.keyEnvironment)
        // A full page points at its last id (API.md), however it is written.
        let nextAfter: JSONValue = rows.count == page.limit ? JSONValue(rows[rows.count - 1].id) : .null
        var first: [JSONValue] = []
        for row in rows {
            guard case .some(let document) = row.json else { break }
            first.append(document)
        }
        if first.count == rows.count {
            return Reply.json([("documents", .array(first)), ("nextAfter", nextAfter)])
        }
        // Only the bytes of the first read are kept while the rest streams.
        var written: [UInt8] = Array(#"{"ok":true,"documents":["#.utf8)
        for (index, document) in first.enumerated() {
            if index > 0 { written.append(UInt8(ascii: ",")) }
            document.write(to: &written)
        }
        let fetched = first.count
        first = []
        // Dropped once written: NIO keeps it only until the client has it.
        let head = NIOLockedValueBox<ByteBuffer?>(ByteBuffer(bytes: written))
        // The rest of the page, read and written a chunk at a time: the answer
        // is streamed, so a page of large documents never sits in memory whole.
        // Each chunk is its own read, authenticated and resolved again: a page's
        // documents are the ones its first read found, each shown as it is when
        // its chunk is read. A chunk whose read finds its tenant's share or the
        // pool busy (each wait is DB_POOL_WAIT_MS) asks again, within
        // `streamPatience` for the whole page: a page already begun is not cut
        // short because the tenant's own other requests hold its share a while.
        // A chunk that fails otherwise ends the answer short (the connection
        // closes before the chunked body's end, so no client takes it for a
        // whole page), and the failure is logged: the 200 was logged when the
        // answer started.
        let rest = rows[fetched...].map { (id: $0.id, reckoned: $0.reckoned) }
        let database = database
        let token = context.token
        let facts = context.facts
        let logger = context.logger
        let patience = streamPatience
        return Reply.jsonStream(logger: logger) { writer in
            let deadline = ContinuousClock.now + patience
            if let first = head.withLockedValue({ head in
                defer { head = nil }; return head
            }) {
                try await writer.write(first)
            }
            for chunk in ListBudget.chunks(rest.map(\.reckoned), bytes: min(bytes, ListBudget.streamedBytes)) {
                let ids = rest[chunk].map(\.id)
                let (principal, found, documents) = try await Self.whenFree(until: deadline) {
                    try await database.read(
                        for: token, facts: facts, ResolvedIssuer.lookup(issuerID), DocumentsStore.byIDs(issuer: issuerID, ids: ids))
                }
                _ = try ResolvedIssuer.resolve(found, keyEnvironment: principal.keyEnvironment)
                guard documents.map(\.id) == ids else {
                    throw APIError.internalError
                }
                var bytes: [UInt8] = []
                for (_, document) in documents {
                    bytes.append(UInt8(ascii: ","))
                    document.write(to: &bytes)
                }
                try await writer.write(ByteBuffer(bytes: bytes))
            }
            var tail: [UInt8] = Array(#"],"nextAfter":"#.utf8)
            nextAfter.write(to: &tail)
            tail.append(UInt8(ascii: "}"))
            try await writer.write(ByteBuffer(bytes: tail))
        }
    }

    /// `read`, asked again while it fails only because the tenant's share or
    /// the pool was busy for a whole wait, until `deadline`.
    static func whenFree<T>(until deadline: ContinuousClock.Instant, _ read: () async throws -> T) async throws -> T {
        while true {
            do {
                return try await read()
            } catch  where ContinuousClock.now < deadline && isBusy(error) {
                try await Task.sleep(for: .milliseconds(10))
            }
        }
    }

    /// The tenant's lane full (`TenantGate`) or no connection free in time.
    static func isBusy(_ error: any Error) -> Bool {
        if let error = error as? APIError { return error.detail == APIError.tenantBusy.detail }
        if let error = error as? PostgresError { return error.kind == .poolTimeout }
        return false
    }

    @Sendable func show(_ request: Request, context: TenantRequestContext) async throws -> Response {
        let accessKey = context.parameters.get("accessKey") ?? ""
        let document = try await database.readOfIssuer(request, context) { DocumentsStore.byAccessKey(issuer: $0, accessKey: accessKey) }
        guard let document else { throw APIError.notFound("No document of this issuer has this access key.") }
        return Reply.json([("document", document)])
    }

    /// The signed comprobante: the bytes sent to SRI, the same every time.
    @Sendable func xml(_ request: Request, context: TenantRequestContext) async throws -> Response {
        let accessKey = context.parameters.get("accessKey") ?? ""
        let xml = try await database.readOfIssuer(request, context) { DocumentsStore.xml(issuer: $0, accessKey: accessKey) }
        guard let stored = xml else { throw APIError.notFound("No document of this issuer has this access key.") }
        guard let bytes = stored else {
            throw APIError.conflict(.legacyDocument, "This document was numbered before comprobantes existed: it has no signed XML.")
        }
        return Reply.xml(bytes)
    }
}

/// The Idempotency-Key header of POST /v1/documents.
enum IssueRequest {
    static let idempotencyKeyError = APIError.validation(
        field: "Idempotency-Key", "The Idempotency-Key header must be 1 to 255 printable ASCII characters."
    )

    static let repeatedIdempotencyKeyError = APIError.validation(
        field: "Idempotency-Key", "The Idempotency-Key header must be sent once."
    )

    /// The violation of the header's values (each time it was sent), if they have one.
    static func idempotencyKeyProblem(_ keys: [String]) -> APIError? {
        guard let key = keys.first else { return nil }
        if !(1...255).contains(key.utf8.count) || !key.utf8.allSatisfy({ (0x20...0x7e).contains($0) }) {
            return idempotencyKeyError
        }
        return keys.count == 1 ? nil : repeatedIdempotencyKeyError
    }
}

/// The query of GET /v1/documents: `documentType`, `status`, `environment`,
/// `limit` (1–200, default 50), `after`.
struct ListRequest: Sendable {
    static let statuses = ["SIGNED", "RECEIVED", "RETURNED", "AUTHORIZED", "NOT_AUTHORIZED", DocumentsStore.legacyStatus]

    var documentType: String?
    var status: String?
    /// A promoted issuer keeps the documents it issued in sandbox: `production`
    /// lists only those SRI's production service receives.
    var environment: Environment?
    var limit = 50
    var after: Int64 = 0

    init(_ request: Request) throws {
        var query = PageQuery(request)
        documentType = query.oneOf("documentType", DocumentType.codes)
        status = query.oneOf("status", ListRequest.statuses)
        environment = query.oneOf("environment", Environment.allCases.map(\.rawValue)).flatMap(Environment.init(rawValue:))
        (limit, after) = query.page(afterMeaning: "a document id")
        try query.validated()
    }
}
