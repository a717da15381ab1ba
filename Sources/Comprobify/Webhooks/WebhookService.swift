import AsyncHTTPClient
import CoreMetrics
import Foundation
import Logging
import NIOCore
import NIOPosix
import Postgres
import ServiceLifecycle

/// Delivers webhook events. Up to `WEBHOOK_WORKERS` attempts run at once, at
/// most `perEndpoint` per endpoint across every process; the work comes from
/// webhook_deliveries, shared by every process:
///
/// 1. `claim_webhook_deliveries()` leases due deliveries to this process, across tenants;
/// 2. each is read as its tenant, lease still held, and its secret opened;
/// 3. one POST, signed, within `WEBHOOK_TIMEOUT_MS`;
/// 4. as the tenant again, one statement records the attempt, moves the
///    delivery on (delivered, retried later, or failed) and lets the lease go.
///
/// A crash between 3 and 4 loses only the answer: the lease ends and another
/// process delivers the event again, with the same id (at least once).
/// Webhooks have their own HTTP clients and workers, so a slow endpoint never
/// holds up the SRI exchanges.
struct WebhookService: Service {
    let database: Database
    let settings: WebhookSettings
    let secretBox: SecretBox
    let logger: Logger
    /// Where its HTTP clients run: BackgroundWork's event loop.
    let eventLoopGroup: any EventLoopGroup
    /// Whether requests keep PostgreSQL busy: then attempts start at its pace.
    let pressure: RequestPressure?
    /// Set when the process begins to stop: no more claims from then on.
    var shutdown: ShutdownSignal? = nil
    /// This process, as `webhook_delivery_attempts.worker`.
    let worker = UUID()

    /// The client of one attempt: no redirects, no decompression, the
    /// attempt's timeout, and `pinning` a host name to the address the guard
    /// approved (a shared client would resolve the name again). Each attempt
    /// has a client of its own so that a connection it cannot make (refused,
    /// an unreachable network) fails it at once, without AsyncHTTPClient's
    /// retries, which would hold the worker and one of the endpoint's places
    /// until the timeout. A shared client without those retries fails every
    /// request queued for the same host and port when one connection fails.
    static func clientConfiguration(
        _ settings: WebhookSettings, pinning pin: (hosts: [String], address: IPAddress)? = nil, connectTimeout: TimeAmount? = nil
    ) -> HTTPClient.Configuration {
        let timeout = TimeAmount.milliseconds(Int64(settings.timeoutMilliseconds))
        var configuration = HTTPClient.Configuration(
            redirectConfiguration: .disallow, timeout: .init(connect: connectTimeout ?? timeout, read: timeout))
        configuration.decompression = .disabled
        configuration.connectionPool.retryConnectionEstablishment = false
        if let pin {
            configuration.dnsOverride = Dictionary(pin.hosts.map { ($0, pin.address.description) }) { first, _ in first }
        }
        return configuration
    }

    /// At background priority (BackgroundWork): requests come first.
    func run() async throws {
        await BackgroundWork.run {
            await withDiscardingTaskGroup { group in
                group.addTask { await watchQueueDepth() }
                if settings.workers > 0 {
                    group.addTask { await dispatch() }
                }
            }
        }
    }

    /// Keeps up to `workers` attempts running: claims as many deliveries as
    /// there are free workers; when fewer are due, looks again after the poll
    /// interval or as soon as a worker is done. On shutdown it claims nothing
    /// more and lets the attempts in flight finish.
    private func dispatch() async {
        logger.info("delivering webhooks", metadata: ["workers": "\(settings.workers)", "worker": "\(worker)"])
        await ClaimLoop.run(
            workers: settings.workers, pace: { [pressure] in pressure?.pace },
            pollMilliseconds: settings.pollMilliseconds, what: "webhook deliveries", logger: logger, shutdown: shutdown,
            claim: { limit, _ in
                // A lease id per claim, as for SRI (SubmissionService).
                let lease = UUID()
                return try await database.claimWebhookDeliveries(
                    lease: lease, limit: limit, leaseMilliseconds: settings.leaseMilliseconds,
                    perEndpoint: settings.perEndpoint, perTenant: settings.perTenant, tenants: settings.tenantIDs?()
                ).map { (tenantID: $0.tenantID, deliveryID: $0.deliveryID, lease: lease) }
            },
            process: { item in await deliver(tenantID: item.tenantID, deliveryID: item.deliveryID, lease: item.lease) }
        )
    }

    /// One attempt for one claimed delivery, recorded with what it changed.
    private func deliver(tenantID: Int64, deliveryID: Int64, lease: UUID) async {
        let worker = self.worker
        let pending: WebhooksStore.Pending?
        do {
            pending = try await database.transaction(forTenantID: tenantID) { transaction, _ in
                try WebhooksStore.load(
                    transaction, tenantID: tenantID, deliveryID: deliveryID, lease: lease, leaseMilliseconds: settings.leaseMilliseconds)
            }
        } catch {
            logger.warning("cannot read a claimed webhook delivery", metadata: ["error": "\(error)"])
            return
        }
        guard let pending else { return }
        var secrets: [[UInt8]]
        let associatedData = WebhooksStore.associatedData(tenantID: tenantID, webhookID: pending.endpointID)
        do {
            secrets = [try secretBox.open(pending.sealedSecret, associatedData: associatedData)]
            // The secret a rotation replaced signs too while it lasts. Sealed
            // under the same master key, it opens when the current one does;
            // should it not, the delivery goes signed with the current one.
            if let previous = pending.previousSealedSecret {
                do {
                    secrets.append(try secretBox.open(previous, associatedData: associatedData))
                } catch {
                    logger.warning(
                        "a webhook's previous secret does not open: signed with the current one alone",
                        metadata: ["tenant_id": "\(tenantID)", "webhook_id": "\(pending.endpointID)", "error": "\(error.description)"])
                }
            }
        } catch {
            logger.error(
                "a webhook secret does not open",
                metadata: ["tenant_id": "\(tenantID)", "webhook_id": "\(pending.endpointID)", "error": "\(error.description)"])
            _ = try? await database.transaction(forTenantID: tenantID) { transaction, _ in
                try WebhooksStore.release(
                    transaction, deliveryID: deliveryID, lease: lease, retryMilliseconds: settings.retryBaseMilliseconds,
                    retryForSeconds: settings.retryForSeconds, error: "the webhook's signing secret cannot be opened with this master key")
            }
            return
        }
        // The lease now runs from about here (`load` stamped it again).
        let leaseEnds = ContinuousClock.now + .milliseconds(settings.leaseMilliseconds)
        let outcome = await attempt(pending, tenantID: tenantID, secrets: secrets)
        // Wiped once signed, as an issuer's key is.
        for index in secrets.indices {
            secrets[index].withUnsafeMutableBytes { _ = $0.initializeMemory(as: UInt8.self, repeating: 0) }
        }
        ServiceMetrics.webhookDelivery(outcome: outcome.kind)
        let about: Logger.Metadata = ["tenant_id": "\(tenantID)", "webhook_id": "\(pending.endpointID)", "event_id": "\(pending.eventID)"]
        // The endpoint's answer is worth keeping: a record that fails is tried
        // again while the lease lasts (LeasedRecord), so that the event is not
        // posted again for it. A try whose commit was lost with its answer may
        // have committed; the record then finds its attempt and does nothing.
        let recorded = await LeasedRecord.trying(until: leaseEnds) { error, tries, retryIn in
            var metadata = about
            metadata["error"] = "\(error)"
            metadata["record_tries"] = "\(tries)"
            if let retryIn {
                metadata["record_retry_in_ms"] = "\(retryIn.wholeMilliseconds)"
                logger.warning("webhook attempt not recorded yet", metadata: metadata)
            } else {
                // The lease ends and the event is delivered again: at least once.
                logger.warning("cannot record a webhook attempt", metadata: metadata)
            }
        } _: { tries in
            // A try again first locks the delivery's row: the earlier try's
            // commit may still be under way.
            let before: [PostgresQuery] = tries == 1 ? [] : [WebhooksStore.lockForRecord(deliveryID: deliveryID)]
            return try await database.transaction(forTenantID: tenantID, prologue: before) { transaction, _ in
                try WebhooksStore.record(
                    transaction, pending, outcome, lease: lease, worker: worker, retryBaseMilliseconds: settings.retryBaseMilliseconds,
                    retryForSeconds: settings.retryForSeconds)
            }
        }
        guard let (status, tries) = recorded else { return }
        if tries > 1 {
            var metadata = about
            metadata["record_tries"] = "\(tries)"
            if status == nil { metadata["recorded_before"] = "true" }
            logger.info("webhook attempt recorded", metadata: metadata)
        }
        if status == "failed" {
            logger.notice("a webhook delivery failed for good", metadata: about)
        }
    }

    /// The POST itself: the address check, the signature, the timeout.
    private func attempt(_ pending: WebhooksStore.Pending, tenantID: Int64, secrets: [[UInt8]]) async
        -> WebhooksStore.Outcome
    {
        let started = ContinuousClock.now
        // One deadline for the whole attempt, the name's lookup included: the
        // lease (WEBHOOK_TIMEOUT_MS + DB_POOL_WAIT_MS + 5 s) must outlast any attempt.
        let deadline = NIODeadline.now() + .milliseconds(Int64(settings.timeoutMilliseconds))
        func failure(_ kind: String, _ error: String) -> WebhooksStore.Outcome { Self.failure(kind, error, since: started) }
        var hosts: [String] = []
        var pins: [IPAddress] = []
        switch WebhookURL.parse(pending.url, allowHTTP: settings.allowHTTP) {
        case .failure(let refusal):
            return failure("refused_address", refusal.message)
        case .success(let url):
            let allowHTTP = settings.allowHTTP
            // Only a name lookup is raced against the deadline (it may block a
            // thread for long); an address in the URL is judged at once.
            let judged: AddressGuard.Verdict?
            if AddressGuard.needsLookup(url, allowHTTP: allowHTTP) {
                judged = await firstBefore(deadline) {
                    await AddressGuard.verdict(for: url, tenantID: tenantID, allowHTTP: allowHTTP, deadline: deadline)
                }
            } else {
                judged = await AddressGuard.verdict(for: url, tenantID: tenantID, allowHTTP: allowHTTP)
            }
            guard let verdict = judged else {
                return failure("timeout", "the host name did not resolve within \(settings.timeoutMilliseconds) ms")
            }
            switch verdict {
            case .refused(let refusal): return failure("refused_address", refusal)
            case .allowed(let addresses):
                // Keyed by the name as written too: the client takes it from the URL as is.
                hosts = [url.host] + [URL(string: pending.url)?.host].compactMap { $0 }
                pins = addresses
            }
        }
        return await Self.post(
            pending, secrets: secrets, to: pins, of: hosts, settings: settings, eventLoopGroup: eventLoopGroup, started: started,
            deadline: deadline)
    }

    /// The POST, through a client of its own for each address tried: a host
    /// name's approved addresses in turn, the next one only when no
    /// connection could be made to the one before (refused, unreachable, not
    /// answered: an IPv6 address first, say, on a network without IPv6) and
    /// the deadline has not passed. While others remain, an address has its
    /// share of the time left to connect, so that one that never answers
    /// leaves the next theirs. With no addresses (an IP address in the URL,
    /// the test allowance) the URL's host is connected to as it is.
    static func post(
        _ pending: WebhooksStore.Pending, secrets: [[UInt8]], to pins: [IPAddress], of hosts: [String], settings: WebhookSettings,
        eventLoopGroup: any EventLoopGroup, started: ContinuousClock.Instant, deadline: NIODeadline
    ) async -> WebhooksStore.Outcome {
        var next = 0
        var failures: [String] = []
        while true {
            let pin = pins.isEmpty ? nil : (hosts: hosts, address: pins[next])
            let left = pins.count - next
            next += 1
            var share: TimeAmount?
            if left > 1 {
                let time = deadline - NIODeadline.now()
                share = .nanoseconds(max(time.nanoseconds / Int64(left), 1_000_000))
            }
            let client = HTTPClient(
                eventLoopGroup: eventLoopGroup, configuration: clientConfiguration(settings, pinning: pin, connectTimeout: share))
            let (outcome, connected) = await send(
                client, pending, secrets: secrets, settings: settings, started: started, deadline: deadline)
            // Closed in the background: a TLS peer that never answers the
            // close may hold the shutdown for seconds (swift-nio-ssl waits up
            // to 5 s), which the delivery's lease does not cover; the attempt
            // is recorded meanwhile.
            Task { try? await client.shutdown() }
            guard !connected, let pin else { return outcome }
            failures.append("\(pin.address): \(outcome.error ?? outcome.kind)")
            guard next < pins.count, NIODeadline.now() < deadline else {
                guard failures.count > 1 else { return outcome }
                // No address took the connection: each one's failure is named.
                return .init(
                    kind: outcome.kind, responseCode: nil, durationMilliseconds: outcome.durationMilliseconds,
                    error: short(failures.joined(separator: "; ")))
            }
        }
    }

    private static func milliseconds(since started: ContinuousClock.Instant) -> Int {
        (ContinuousClock.now - started).wholeMilliseconds
    }

    private static func failure(
        _ kind: String, code: Int? = nil, _ error: String, since started: ContinuousClock.Instant
    ) -> WebhooksStore.Outcome {
        .init(kind: kind, responseCode: code, durationMilliseconds: milliseconds(since: started), error: short(error))
    }

    /// The POST, signed, within the attempt's deadline; `connected` false
    /// when no connection could be made (nothing was sent).
    private static func send(
        _ http: HTTPClient, _ pending: WebhooksStore.Pending, secrets: [[UInt8]], settings: WebhookSettings,
        started: ContinuousClock.Instant, deadline: NIODeadline
    ) async -> (outcome: WebhooksStore.Outcome, connected: Bool) {
        func elapsed() -> Int { milliseconds(since: started) }
        func failure(_ kind: String, code: Int? = nil, _ error: String, connected: Bool = true) -> (WebhooksStore.Outcome, Bool) {
            (Self.failure(kind, code: code, error, since: started), connected)
        }
        var request = HTTPClientRequest(url: pending.url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json; charset=utf-8")
        request.headers.add(name: "User-Agent", value: "Comprobify-Webhooks/1")
        request.headers.add(name: "Comprobify-Event-Id", value: pending.eventID)
        let timestamp = Int64(Date().timeIntervalSince1970)
        request.headers.add(
            name: WebhookSignature.headerName, value: WebhookSignature.header(secrets: secrets, timestamp: timestamp, body: pending.body))
        request.body = .bytes(ByteBuffer(bytes: pending.body))
        do {
            let response = try await http.execute(request, deadline: deadline)
            let code = Int(response.status.code)
            // The answer's body is read (bounded in size and time) and dropped;
            // only the status counts.
            _ = try? await response.body.collect(upTo: 64 << 10, before: deadline)
            // HTTP/1.1's parser takes any three digits; outside 100-599 there is
            // no status to store, and the answer is a broken one.
            guard (100...599).contains(code) else { return failure("connection", "answered with \(code), not an HTTP status") }
            if (200...299).contains(code) {
                return (.init(kind: "delivered", responseCode: code, durationMilliseconds: elapsed(), error: nil), true)
            }
            return failure("http_status", code: code, "HTTP \(code)")
        } catch let error as HTTPClientError {
            switch error {
            case .connectTimeout:
                return failure("timeout", "no connection made in the time given", connected: false)
            case .deadlineExceeded, .readTimeout, .writeTimeout, .getConnectionFromPoolTimeout:
                return failure("timeout", "no answer within \(settings.timeoutMilliseconds) ms")
            case .remoteConnectionClosed:
                return failure("connection", "closed by the endpoint before the answer was complete")
            default:
                return failure("connection", "\(error)")
            }
        } catch let error as NIOConnectionError {
            return failure(
                "connection", error.connectionErrors.last.map { "\($0.error)" } ?? "cannot connect to \(error.host)", connected: false)
        } catch let error as IOError
            where [ECONNREFUSED, ENETUNREACH, EHOSTUNREACH, EADDRNOTAVAIL, EAFNOSUPPORT].contains(error.errnoCode)
        {
            // A connect refused or with no route: an IP address in the URL,
            // or a name's address.
            return failure("connection", "\(error)", connected: false)
        } catch {
            return failure("connection", "\(error)")
        }
    }

    /// Publishes `webhook_oldest_pending_seconds` and
    /// `webhook_deliveries_pending` every 5 s (QueueGauge: less often while
    /// counting takes long).
    private func watchQueueDepth() async {
        let oldest = Gauge(label: "webhook_oldest_pending_seconds")
        let pending = Gauge(label: "webhook_deliveries_pending")
        await QueueGauge.run(every: .seconds(5), queue: "webhook", logger: logger) {
            let depth = try await database.webhookQueueDepth()
            oldest.record(depth.oldestSeconds)
            pending.record(Double(depth.pending))
            return depth.took
        }
    }

    /// At most 200 code points on one line (the database takes 300).
    static func short(_ text: String) -> String { Format.oneLine(text) }
}
