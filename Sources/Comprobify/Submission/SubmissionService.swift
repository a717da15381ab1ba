import CoreMetrics
import Foundation
import Logging
import NIOConcurrencyHelpers
import Postgres
import SRI
import ServiceLifecycle

/// Sends every signed document to SRI and follows it to a decision
/// (shared/SRI.md, "Sending to SRI"). Up to `SRI_WORKERS` exchanges run at once;
/// the work comes from the queue in PostgreSQL, shared by every process:
///
/// 1. `claim_sri_work()` leases due documents across tenants, under a lease id
///    drawn for that claim: a worker that outlived its lease cannot record over
///    a later claim of the same document, this process's included;
/// 2. each is read, as its tenant, with the lease still held;
/// 3. one exchange with SRI (reception when SIGNED, authorization when RECEIVED,
///    reception again when SRI has long given no decision: `SRISettings.service`);
/// 4. as the tenant again, one statement records the exchange, moves the
///    document to its next state and lets the lease go, in one commit.
///
/// A failed record (4) is tried again, with backoff, while the lease lasts. A
/// crash between 3 and 4, or a record that failed until the lease ended, loses
/// only the answer: another worker takes the document and sends it again, and
/// SRI answers 43.
struct SubmissionService: Service {
    let database: Database
    let client: SRIClient
    let settings: SRISettings
    let logger: Logger
    /// Whether requests keep PostgreSQL busy: then exchanges start at its pace.
    let pressure: RequestPressure?
    /// Set when the process begins to stop: no more claims from then on.
    var shutdown: ShutdownSignal? = nil
    /// This process, as `sri_exchanges.worker`.
    let worker = UUID()

    /// A document this process claimed, under the claim's lease.
    typealias Claimed = (tenantID: Int64, documentID: Int64, environment: Environment, lease: UUID)

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

    /// Keeps up to `workers` exchanges running: claims as many documents as
    /// there are free workers; when fewer are due, looks again after the poll
    /// interval or as soon as a worker is done. On shutdown it claims nothing
    /// more and lets the exchanges in flight finish.
    private func dispatch() async {
        if !SRISettings.isSRI(settings.productionURL) {
            // Right for local work (compose points it at the local SRI); a
            // deployment that kept it would mark production documents
            // AUTHORIZED that SRI never received.
            logger.warning(
                "SRI_PRODUCTION_URL is not SRI's: production documents are sent there, and what it answers is final",
                metadata: ["production_url": "\(settings.productionURL)"])
        }
        logger.info(
            "sending to SRI",
            metadata: [
                "workers": "\(settings.workers)", "worker": "\(worker)", "test_url": "\(settings.testURL)",
                "production_url": "\(settings.productionURL)",
            ])
        await ClaimLoop.run(
            workers: settings.workers, pace: { [pressure] in pressure?.pace },
            pollMilliseconds: settings.pollMilliseconds, what: "SRI work", logger: logger, shutdown: shutdown,
            // Sandbox documents only into the workers they may hold
            // (SRISettings.sandboxWorkers); those claimed ahead wait for them.
            limited: .init(places: settings.sandboxWorkers, contains: { (item: Claimed) in item.environment == .sandbox }),
            claim: { limit, sandboxRoom in
                // Production first, then sandbox documents up to their room.
                let lease = UUID()
                return try await database.claimSRIWork(
                    lease: lease, limit: limit, sandboxLimit: sandboxRoom, leaseMilliseconds: settings.leaseMilliseconds,
                    tenants: settings.tenantIDs
                ).map { (tenantID: $0.tenantID, documentID: $0.documentID, environment: $0.environment, lease: lease) }
            },
            process: { item in await process(tenantID: item.tenantID, documentID: item.documentID, lease: item.lease) }
        )
    }

    /// One exchange for one claimed document, recorded with what it changed.
    private func process(tenantID: Int64, documentID: Int64, lease: UUID) async {
        let worker = self.worker
        let document: QueuedDocument?
        do {
            document = try await database.read(
                forTenantID: tenantID,
                SubmissionsStore.load(
                    tenantID: tenantID, documentID: documentID, lease: lease, leaseMilliseconds: settings.leaseMilliseconds))
        } catch {
            logger.warning("cannot read a claimed document", metadata: ["error": "\(error)"])
            return
        }
        guard let document else { return }
        guard let xml = document.xml else {
            // Nothing to send; look again much later rather than spin.
            logger.error("a queued document has no signed XML", metadata: ["tenant_id": "\(tenantID)", "document_id": "\(documentID)"])
            _ = try? await database.transaction(forTenantID: tenantID) { transaction, _ in
                try SubmissionsStore.release(
                    transaction, tenantID: tenantID, documentID: documentID, lease: lease,
                    retryMilliseconds: settings.retryMaxMilliseconds)
            }
            return
        }

        // The lease now runs from about here (`load` stamped it again).
        let leaseEnds = ContinuousClock.now + .milliseconds(settings.leaseMilliseconds)

        let baseURL = settings.baseURL(for: document.environment)
        let service = settings.service(for: document.status, streak: document.streak)
        let url = SRIClient.join(baseURL, service == .reception ? SRIClient.receptionPath : SRIClient.authorizationPath)
        let start = ContinuousClock.now
        let result: ExchangeResult
        do {
            switch service {
            case .reception: result = .reception(try await client.validate(signed: xml, accessKey: document.accessKey, baseURL: baseURL))
            case .authorization: result = .authorization(try await client.authorize(accessKey: document.accessKey, baseURL: baseURL))
            }
        } catch {
            result = .failed(error)
        }
        let elapsed = ContinuousClock.now - start
        let milliseconds = elapsed.wholeMilliseconds
        let transition = Transition.after(result, from: document.status, streak: document.streak, settings: settings, now: Date())
        SubmissionMetrics.exchange(service: service, outcome: transition.outcome, duration: elapsed)

        var metadata: Logger.Metadata = [
            "tenant_id": "\(tenantID)", "document_id": "\(documentID)", "service": "\(service.rawValue)",
            "outcome": "\(transition.outcome)",
            "duration_ms": "\(milliseconds)", "document_status": "\(transition.status.rawValue)", "attempt": "\(document.attempts + 1)",
        ]
        if let error = transition.lastError { metadata["error"] = "\(error)" }
        if let next = transition.nextAttemptMilliseconds, transition.lastError != nil || transition.outcome == "pending" {
            metadata["retry_in_ms"] = "\(next)"
        }
        let record = SubmissionsStore.record(
            document: document, service: service, url: url, result: result, transition: transition,
            durationMilliseconds: milliseconds, lease: lease, worker: worker)
        // A decision waits for its commit's WAL flush (this pool commits
        // without it otherwise): once its webhook event or its status has
        // been seen, a database crash cannot undo it and have it made again
        // under another event id.
        let durable: [PostgresQuery] = transition.status.webhookEvent == nil ? [] : ["SET LOCAL synchronous_commit = on"]
        // SRI's answer is worth keeping: a record that fails (the database out
        // of reach for a moment) is tried again, with backoff, while the lease
        // lasts (LeasedRecord). A try whose commit was lost with its answer may
        // have committed; the record then finds its exchange and does nothing
        // (recordedBefore).
        let recorded = await LeasedRecord.trying(until: leaseEnds) { error, tries, retryIn in
            metadata["record_error"] = "\(error)"
            if let retryIn {
                var retry = metadata
                retry["record_retry_in_ms"] = "\(retryIn.wholeMilliseconds)"
                logger.warning("sri exchange not recorded yet", metadata: retry)
            } else {
                // The lease ends and the exchange is made again (a resend gets 43).
                metadata["record_tries"] = "\(tries)"
                logger.warning("sri exchange not recorded", metadata: metadata)
            }
        } _: { tries in
            // A try again first locks the submission's row (lockForRecord):
            // the earlier try's commit may still be under way.
            let before = durable + (tries == 1 ? [] : [SubmissionsStore.lockForRecord(tenantID: tenantID, documentID: documentID)])
            // The record goes in the transaction's first round trip, with BEGIN.
            return try await database.transaction(forTenantID: tenantID, prologue: before + [record]) { transaction, results in
                let outcome = try SubmissionsStore.outcome(results[before.count])
                // A decision is announced to the tenant's webhooks in the same commit.
                if outcome == .applied, let event = transition.status.webhookEvent {
                    let rows = try transaction.query(
                        "SELECT \(unescaped: DocumentsStore.columns) FROM \(unescaped: DocumentsStore.from) WHERE d.id = \(documentID)")
                    if let row = rows.first {
                        try WebhooksStore.recordEvent(
                            transaction, type: event, document: DocumentsStore.document(row), environment: document.environment)
                    }
                }
                return outcome
            }
        }
        guard let (outcome, tries) = recorded else { return }
        switch outcome {
        case .applied: break
        case .leaseLost: metadata["lease_lost"] = "true"
        case .recordedBefore: metadata["recorded_before"] = "true"
        }
        if tries > 1 { metadata["record_tries"] = "\(tries)" }
        logger.info("sri exchange", metadata: metadata)
    }

    /// Refreshes `sri_documents_pending` and `sri_oldest_pending_seconds`
    /// (QueueGauge: less often while counting takes long).
    private func watchQueueDepth() async {
        await QueueGauge.run(every: .milliseconds(settings.gaugeIntervalMilliseconds), queue: "sri", logger: logger) {
            let depth = try await database.sriQueueDepth()
            SubmissionMetrics.queue(pending: depth.pending, oldestSeconds: depth.oldestSeconds)
            return depth.took
        }
    }
}

/// The SRI series: `sri_requests_total{service,outcome}`,
/// `sri_request_duration_seconds{service}`, `sri_documents_pending`,
/// `sri_oldest_pending_seconds`.
enum SubmissionMetrics {
    private static let counters = NIOLockedValueBox<[String: CoreMetrics.Counter]>([:])
    private static let timers: [SRIService: CoreMetrics.Timer] = [
        .reception: CoreMetrics.Timer(label: "sri_request_duration_seconds", dimensions: [("service", "reception")]),
        .authorization: CoreMetrics.Timer(label: "sri_request_duration_seconds", dimensions: [("service", "authorization")]),
    ]
    private static let pending = Gauge(label: "sri_documents_pending")
    private static let oldest = Gauge(label: "sri_oldest_pending_seconds")

    /// Each service's outcomes (`Transition.outcome`, `ExchangeError.outcome`).
    static let outcomes: [SRIService: [String]] = {
        let failures = ["connection", "timeout", "http_status", "soap_fault", "unparseable"]
        return [
            .reception: ["received", "already_received", "returned"] + failures,
            .authorization: ["authorized", "not_authorized", "pending"] + failures,
        ]
    }()

    /// `sri_requests_total` at 0 for every service and outcome, and the timers.
    static func exportAtZero() {
        _ = timers
        for (service, names) in outcomes {
            for outcome in names { _ = counter(service: service, outcome: outcome) }
        }
    }

    private static func counter(service: SRIService, outcome: String) -> CoreMetrics.Counter {
        let key = "\(service.rawValue) \(outcome)"
        return counters.withLockedValue { cache in
            if let counter = cache[key] { return counter }
            let counter = CoreMetrics.Counter(
                label: "sri_requests_total", dimensions: [("service", service.rawValue), ("outcome", outcome)])
            cache[key] = counter
            return counter
        }
    }

    static func exchange(service: SRIService, outcome: String, duration: Duration) {
        counter(service: service, outcome: outcome).increment()
        let (seconds, attoseconds) = duration.components
        timers[service]?.recordNanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }

    static func queue(pending count: Int64, oldestSeconds: Double) {
        pending.record(count)
        oldest.record(oldestSeconds)
    }
}
