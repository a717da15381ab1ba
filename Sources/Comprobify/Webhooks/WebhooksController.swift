import Hummingbird
import NIOCore
import Postgres

/// POST/GET /v1/webhooks, PATCH/DELETE /v1/webhooks/:id, POST
/// /v1/webhooks/:id/rotate-secret, GET /v1/webhooks/:id/deliveries and
/// /v1/webhooks/:id/events, and POST /v1/webhooks/:id/deliveries/:eventId/redeliver.
/// A webhook belongs to the environment of the key that created it: keys see,
/// delete and read the history of their own environment's webhooks only.
struct WebhooksController {
    let database: Database
    let secretBox: SecretBox
    let settings: WebhookSettings

    /// How long creation waits for the host's addresses.
    static let creationLookupSeconds: Int64 = 2

    func addRoutes(to group: RouterGroup<TenantRequestContext>) {
        group.post("webhooks", use: create)
        group.get("webhooks", use: list)
        group.patch("webhooks/:id", use: update)
        group.delete("webhooks/:id", use: delete)
        group.post("webhooks/:id/rotate-secret", use: rotateSecret)
        group.get("webhooks/:id/deliveries", use: deliveries)
        group.get("webhooks/:id/events", use: events)
        group.post("webhooks/:id/deliveries/:eventId/redeliver", use: redeliver)
    }

    /// 201 with the secret, shown this once. Fields are checked before any
    /// database work (answered after the credential); the host's addresses are
    /// looked up once the key is known (a stranger cannot make the server ask
    /// a DNS server of its choosing) and before the transaction, so no
    /// connection waits on DNS.
    @Sendable func create(_ request: Request, context: TenantRequestContext) async throws -> Response {
        let input = try await database.input(request, context)
        let allowHTTP = settings.allowHTTP
        let parsed = try await database.checkAfterAuthenticating(for: context.token, facts: context.facts) {
            try WebhookRequest(input, allowHTTP: allowHTTP)
        }
        let tenantID = try await database.authenticate(for: context.token, facts: context.facts).tenantID
        let refusal = await Self.refusal(of: parsed.url, tenantID: tenantID, allowHTTP: allowHTTP)
        let secretBox = self.secretBox
        let created = try await database.transactionHoldingTenantRow(
            for: context.token, facts: context.facts, tenantRow: WebhooksStore.tenantRow
        ) { transaction, principal, _ in
            if let refusal { throw APIError.validation(field: "url", refusal) }
            return try WebhooksStore.create(
                transaction, tenantID: principal.tenantID, keyID: principal.keyID, environment: principal.keyEnvironment,
                url: parsed.url.text, events: parsed.events, secretBox: secretBox)
        }
        return Reply.json(.created, [("webhook", created.webhook), ("secret", .string(created.secret))], noStore: true)
    }

    /// The active webhooks of the key's environment, oldest first. One round trip.
    @Sendable func list(_ request: Request, context: TenantRequestContext) async throws -> Response {
        let (principal, all) = try await database.read(for: context.token, facts: context.facts, WebhooksStore.active)
        let mine = all.filter { $0.environment == principal.keyEnvironment.rawValue }.map(\.json)
        return Reply.json([("webhooks", .array(mine))])
    }

    /// Changes a webhook's url or events in place: its id, secret, history
    /// and pending deliveries stay (they go to the new url). The order of
    /// every route: the key's 401, the webhook's 404, then the body's 400; a
    /// new url's host is looked up as at creation, once all that passed and
    /// before the transaction.
    @Sendable func update(_ request: Request, context: TenantRequestContext) async throws -> Response {
        let id = Format.pathID(context.parameters.get("id")) ?? 0
        let bytes = try await Input.collect(request, from: context.bodyPeer)
        let allowHTTP = settings.allowHTTP
        let (principal, environment) = try await database.read(for: context.token, facts: context.facts, WebhooksStore.exists(id))
        guard environment == principal.keyEnvironment.rawValue else { throw WebhooksStore.notFound }
        let changes = try WebhookChanges(try Input.parse(bytes, of: request, allowEmpty: false), allowHTTP: allowHTTP)
        if let url = changes.url, let refusal = await Self.refusal(of: url, tenantID: principal.tenantID, allowHTTP: allowHTTP) {
            throw APIError.validation(field: "url", refusal)
        }
        let webhook = try await database.transaction(for: context.token, facts: context.facts) { transaction, principal, _ in
            try WebhooksStore.update(
                transaction, id: id, environment: principal.keyEnvironment, url: changes.url?.text, events: changes.events,
                actorKeyID: principal.keyID)
        }
        return Reply.json([("webhook", webhook)])
    }

    /// Why the host of a url given by a tenant is refused, from what it
    /// resolves to; nil when allowed. A name whose lookup takes longer than
    /// `creationLookupSeconds` is taken as not in DNS yet: allowed now,
    /// checked before every delivery.
    static func refusal(of url: WebhookURL, tenantID: Int64, allowHTTP: Bool) async -> String? {
        let deadline = NIODeadline.now() + .seconds(creationLookupSeconds)
        return await firstBefore(deadline) {
            await AddressGuard.refusal(for: url, tenantID: tenantID, allowHTTP: allowHTTP, requireAddress: false, deadline: deadline)
        } ?? nil
    }

    /// Deletes a webhook; its pending deliveries are given up.
    @Sendable func delete(_ request: Request, context: TenantRequestContext) async throws -> Response {
        let id = Format.pathID(context.parameters.get("id")) ?? 0
        try await database.transaction(for: context.token, facts: context.facts) { transaction, principal, _ in
            try WebhooksStore.delete(transaction, id: id, environment: principal.keyEnvironment, actorKeyID: principal.keyID)
        }
        return Reply.json([])
    }

    /// A new signing secret, shown this once; the one it replaces keeps
    /// signing beside it for `previousSecretExpiresInSeconds` (a day unless
    /// asked). The order of every route: the key's 401, the webhook's 404,
    /// then the body's 400 (not JSON, or a bad field), judged once the
    /// webhook is found; a body over 1 MiB is 413 before all.
    @Sendable func rotateSecret(_ request: Request, context: TenantRequestContext) async throws -> Response {
        let id = Format.pathID(context.parameters.get("id")) ?? 0
        let bytes = try await Input.collect(request, from: context.bodyPeer)
        let parsed = Result { try SecretRotationRequest(try Input.parse(bytes, of: request, allowEmpty: true)) }
        let secretBox = self.secretBox
        let rotated = try await database.transaction(for: context.token, facts: context.facts) { transaction, principal, _ in
            try WebhooksStore.rotateSecret(
                transaction, tenantID: principal.tenantID, id: id, environment: principal.keyEnvironment, request: parsed,
                actorKeyID: principal.keyID, secretBox: secretBox)
        }
        return Reply.json([("webhook", rotated.webhook), ("secret", .string(rotated.secret))], noStore: true)
    }

    /// Sends an event to the webhook again, now: its delivery, ended
    /// (delivered or failed) or waiting for its next retry, is due at once, with
    /// the same event id and body. 404 when the webhook is not the key's
    /// environment's active one or has no delivery of that event (never
    /// subscribed, or purged past `WEBHOOK_RETENTION_DAYS`).
    @Sendable func redeliver(_ request: Request, context: TenantRequestContext) async throws -> Response {
        let id = Format.pathID(context.parameters.get("id")) ?? 0
        let eventID = context.parameters.get("eventId") ?? ""
        let status = try await database.transaction(for: context.token, facts: context.facts) { transaction, principal, _ in
            try WebhooksStore.redeliver(transaction, endpoint: id, eventID: eventID, environment: principal.keyEnvironment)
        }
        return Reply.json([("deliveryStatus", .string(status))])
    }

    /// The webhook's last 100 attempts, newest first. One round trip.
    @Sendable func deliveries(_ request: Request, context: TenantRequestContext) async throws -> Response {
        let id = Format.pathID(context.parameters.get("id")) ?? 0
        let (principal, environment, attempts) = try await database.read(
            for: context.token, facts: context.facts, WebhooksStore.exists(id), WebhooksStore.attempts(endpoint: id, limit: 100))
        guard environment == principal.keyEnvironment.rawValue else { throw WebhooksStore.notFound }
        return Reply.json([("deliveries", .array(attempts))])
    }
}

extension WebhooksController {
    /// The events sent (or to be sent) to the webhook, oldest first, each with
    /// where its delivery stands; `status=failed` lists the events it missed,
    /// to send again with `redeliver`. Paged as documents are (`limit`,
    /// `after`, `nextAfter`). The order of every route: the key's 401, the
    /// webhook's 404, then the query's 400. One round trip.
    @Sendable func events(_ request: Request, context: TenantRequestContext) async throws -> Response {
        let id = Format.pathID(context.parameters.get("id")) ?? 0
        let status: String?
        let page: (limit: Int, after: Int64)
        do {
            var query = PageQuery(request)
            status = query.oneOf("status", WebhooksStore.deliveryStatuses)
            page = query.page(afterMeaning: "the nextAfter of a page")
            try query.validated()
        } catch {
            let (principal, environment) = try await database.read(for: context.token, facts: context.facts, WebhooksStore.exists(id))
            guard environment == principal.keyEnvironment.rawValue else { throw WebhooksStore.notFound }
            throw error
        }
        let (principal, environment, events) = try await database.read(
            for: context.token, facts: context.facts, WebhooksStore.exists(id),
            WebhooksStore.events(endpoint: id, status: status, after: page.after, limit: page.limit))
        guard environment == principal.keyEnvironment.rawValue else { throw WebhooksStore.notFound }
        let nextAfter = events.count == page.limit ? events.last.map { JSONValue($0.id) } : nil
        return Reply.json([("events", .array(events.map(\.json))), ("nextAfter", nextAfter ?? .null)])
    }
}

/// The fields of POST /v1/webhooks.
struct WebhookRequest: Sendable {
    let url: WebhookURL
    let events: [WebhookEventType]

    init(_ input: Input, allowHTTP: Bool) throws {
        var input = input
        let url = Self.url(&input, required: true, allowHTTP: allowHTTP)
        let events = Self.events(&input)
        try input.validated()
        guard let url else { throw APIError.validation(field: "url", "url is required.") }
        self.url = url
        self.events = events ?? WebhookEventType.allCases
    }

    /// `url`, checked by the rules that need no network; nil when absent (an
    /// error when `required`) or refused. Null is refused: a webhook has a url.
    static func url(_ input: inout Input, required: Bool, allowHTTP: Bool) -> WebhookURL? {
        if input.value["url"] == .null, !required {
            input.fail("url", "url cannot be null: leave it out to keep the webhook's.")
            return nil
        }
        guard let text = input.string("url", required: required, length: 1...WebhookURL.maximumLength) else { return nil }
        switch WebhookURL.parse(text, allowHTTP: allowHTTP) {
        case .success(let parsed): return parsed
        case .failure(let refusal):
            input.fail("url", refusal.message)
            return nil
        }
    }

    /// `events`, each once in the order first given; nil when absent.
    static func events(_ input: inout Input) -> [WebhookEventType]? {
        let allowed = WebhookEventType.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")
        switch input.value["events"] {
        case nil:
            return nil
        case .array(let items)? where !items.isEmpty:
            var chosen: [WebhookEventType] = []
            for item in items {
                guard case .string(let name) = item, let type = WebhookEventType(rawValue: name) else {
                    input.fail("events", "events must list event types among \(allowed).")
                    return nil
                }
                if !chosen.contains(type) { chosen.append(type) }
            }
            return chosen
        default:
            input.fail("events", "events must be a non-empty array of event types among \(allowed).")
            return nil
        }
    }
}

/// The body of PATCH /v1/webhooks/:id: `url`, `events`, or both; at least one.
struct WebhookChanges: Sendable {
    let url: WebhookURL?
    let events: [WebhookEventType]?

    init(_ input: Input, allowHTTP: Bool) throws {
        var input = input
        url = WebhookRequest.url(&input, required: false, allowHTTP: allowHTTP)
        events = WebhookRequest.events(&input)
        if !input.has("url"), !input.has("events") {
            input.fail("body", "Give url, events or both.")
        }
        try input.validated()
    }
}

/// The body of POST /v1/webhooks/:id/rotate-secret (it may be empty).
struct SecretRotationRequest: Sendable {
    /// How long the replaced secret keeps signing: a day unless asked.
    static let defaultKeepSeconds: Int64 = 86_400
    /// At most a week.
    static let longestKeepSeconds: Int64 = 604_800

    let keepPreviousSeconds: Int64

    init(_ input: Input) throws {
        var input = input
        var seconds = SecretRotationRequest.defaultKeepSeconds
        let field = "previousSecretExpiresInSeconds"
        if input.has(field) {
            if let value = Input.integer(input.value[field], in: 0...SecretRotationRequest.longestKeepSeconds) {
                seconds = value
            } else {
                input.fail(
                    field,
                    "\(field) must be an integer from 0 (the replaced secret stops signing at once) to \(SecretRotationRequest.longestKeepSeconds) (a week)."
                )
            }
        }
        try input.validated()
        keepPreviousSeconds = seconds
    }
}
