import Foundation
import NIOConcurrencyHelpers
import SRI

/// The computed part of a Document as API.md/SRI.md show it: buyer, items with
/// their subtotals and taxes, totals, payments, additional info and, for a
/// credit note, the modified document and the reason. Money is a decimal string
/// with 2 places; quantities and unit prices are the exact values the client
/// gave, as their shortest decimal text ("10.50" is "10.5").
/// Stored once, at issue, as the `body` of the document.
enum DocumentBody {
    static func json(_ comprobante: Comprobante) -> JSONValue {
        var members: [(String, JSONValue)] = [
            ("buyer", buyer(comprobante.buyer)),
            ("items", .array(comprobante.items.map(item))),
            ("totals", totals(comprobante.totals)),
        ]
        switch comprobante {
        case .factura(let factura):
            members.append(("payments", .array(factura.payments.map(payment))))
            members.append(("additionalInfo", .array(factura.additionalInfo.map(nameValue))))
        case .creditNote(let note):
            members.append(("additionalInfo", .array(note.additionalInfo.map(nameValue))))
            members.append(
                (
                    "modifiedDocument",
                    .object([
                        ("documentType", .string(note.modifiedDocument.documentType)),
                        ("number", .string(note.modifiedDocument.number)),
                        ("issueDate", .string(note.modifiedDocument.issueDate.iso)),
                    ])
                ))
            members.append(("reason", .string(note.reason)))
        }
        return .object(members)
    }

    static func money(_ value: ExactDecimal) -> JSONValue {
        .string(value.text(places: 2))
    }

    static func buyer(_ buyer: Buyer) -> JSONValue {
        .object([
            ("idType", .string(buyer.idType)),
            ("id", .string(buyer.id)),
            ("name", .string(buyer.name)),
            ("address", JSONValue(buyer.address)),
            ("email", JSONValue(buyer.email)),
        ])
    }

    static func item(_ item: LineItem) -> JSONValue {
        .object([
            ("code", JSONValue(item.code)),
            ("auxCode", JSONValue(item.auxCode)),
            ("description", .string(item.description)),
            ("quantity", .string(item.quantity.description)),
            ("unitPrice", .string(item.unitPrice.description)),
            ("discount", money(item.discount)),
            ("subtotal", money(item.subtotal)),
            (
                "taxes",
                .array(
                    item.taxes.map { tax in
                        .object([
                            ("code", .string(tax.code)), ("rateCode", .string(tax.rateCode)), ("rate", money(tax.rate)),
                            ("base", money(tax.base)), ("value", money(tax.value)),
                        ])
                    })
            ),
            ("details", .array(item.details.map(nameValue))),
        ])
    }

    static func totals(_ totals: Totals) -> JSONValue {
        .object([
            ("subtotal", money(totals.subtotal)),
            ("discount", money(totals.discount)),
            (
                "taxes",
                .array(
                    totals.taxes.map { tax in
                        .object([
                            ("code", .string(tax.code)), ("rateCode", .string(tax.rateCode)), ("rate", money(tax.rate)),
                            ("base", money(tax.base)), ("value", money(tax.value)),
                        ])
                    })
            ),
            ("tip", money(totals.tip)),
            ("total", money(totals.total)),
        ])
    }

    static func payment(_ payment: Payment) -> JSONValue {
        .object([
            ("method", .string(payment.method)),
            ("total", money(payment.total)),
            ("term", payment.term.map { JSONValue(Int64($0)) } ?? .null),
            ("termUnit", JSONValue(payment.termUnit)),
        ])
    }

    static func nameValue(_ pair: NameValue) -> JSONValue {
        .object([("name", .string(pair.name)), ("value", .string(pair.value))])
    }
}

/// Builds, checks and signs a comprobante's XML. `prepare` builds the tree and
/// checks it against the official schema before the number is taken; `signed`
/// writes the number in and signs: ahead of the counter's row lock when
/// `numbers` foresees the number, else while the lock is held.
struct DocumentSigning: Sendable {
    let secretBox: SecretBox
    let algorithm: SignatureAlgorithm
    let identities = SigningIdentityCache()
    var numbers = NumberForecast()

    /// Builds the comprobante and checks it against the official schema. A
    /// failure here or in `signed` is a bug, never the client's fault (500);
    /// the transaction rolls back, so no number is used.
    func prepare(_ comprobante: Comprobante, issuer: ComprobanteIssuer) throws -> PreparedComprobante {
        try PreparedComprobante.prepare(comprobante, issuer: issuer)
    }

    /// 409 when the issuer's stored key cannot sign (uploads are checked for
    /// that since they are opened, so only a key stored before can).
    func signed(_ prepared: PreparedComprobante, accessKey: String, sequential: Int, identity: SigningIdentity, now: Date) throws -> [UInt8]
    {
        do {
            return try prepared.signed(
                numbering: .init(accessKey: accessKey, sequential: sequential), identity: identity, algorithm: algorithm, signingTime: now)
        } catch .signing(.keyCannotSign) {
            throw DocumentSigning.keyCannotSign
        }
    }

    static let keyCannotSign = APIError.conflict(
        .certificateNotValid,
        "The issuer's private key cannot sign: upload its certificate again with PUT /v1/issuers/:id/certificate.")
}

/// The number this process expects a counter (issuer × document type) to hand
/// out next: one after the last it took there, plus one for each of its
/// requests on that counter that asked before this one and have not taken
/// their number yet. Under a steady stream of documents on one counter, a
/// request signs with it while the previous one still holds the counter's row
/// lock. It then takes the number and keeps that signature when the counter
/// agrees, or signs again with the real number, under the lock, when it does
/// not (another process issued on the counter, or a transaction rolled back).
/// After a miss the counter's next document signs under the lock too, without
/// a guess; after each further miss in a row twice as many do (at most
/// `maxUnguessed`), so that on a counter another process also issues on, where
/// most guesses miss, few signatures are made ahead in vain. A guess only
/// decides where the signing happens, never which number a document gets.
///
/// Once the counter has agreed with `agreementForOneTrip` guesses in a row, a
/// turn is `oneTrip`: the request sends the counter's UPDATE, the document
/// and COMMIT in one round trip (`DocumentsStore.store(takingNumber:)`), which
/// stores the document only if the counter gives the guessed number, so that
/// the row is locked only while PostgreSQL runs that statement and commits. A
/// miss there stores nothing (and PostgreSQL logs the refused row), and the
/// request issues again without a guess; so a counter that another process
/// also issues on, where guesses often miss, keeps taking the number first.
/// A request with an Idempotency-Key takes its number first on a `oneTrip`
/// turn too (`DocumentsController.issueOnce`).
///
/// The process's requests take their numbers in the order they asked
/// (`waitForTurn`): two requests signing ahead at once would otherwise reach
/// the counter in either order about as often, and the one that overtook
/// would take the other's number. A turn ends when the counter has answered
/// its request (`took`, `sent`), so the next request's statement waits in
/// PostgreSQL for the row while the one before commits. A request waits at
/// most `turnWait` for the ones ahead of it, and then takes the number first.
///
/// A `oneTrip` turn signed ahead offers its document while it waits
/// (`waitForTurn(_:offering:)`). When a turn's time comes, it takes the
/// offers of the turns right behind it that were signed with the next
/// numbers by the same key, and one statement stores them all
/// (`DocumentsStore.store(together:)`): the counter's row is locked, and
/// the commit flushed, once for all of them. The turns it took wait for what
/// happened to their documents (`outcome(of:)`), which it hands them
/// (`deliver`).
final class NumberForecast: @unchecked Sendable {
    struct Counter: Hashable, Sendable {
        let issuer: Int64
        let documentType: String
    }

    /// A request's place on its counter: handed out by `ask`, ended by `took`,
    /// `sent` or `abandon`.
    struct Turn: Sendable {
        let counter: Counter
        let ticket: Int
        /// The number to sign ahead with; nil: nothing known yet, or guesses missed lately.
        let guess: Int?
        /// Whether to send the guess with the document in one statement
        /// (`DocumentsStore.store(takingNumber:)`) rather than take the number first.
        let oneTrip: Bool
    }

    /// A `oneTrip` turn's document, signed with its guess, offered to the turns
    /// ahead of it. Its fields other than the constants are guarded by the
    /// forecast's lock.
    final class Offer: @unchecked Sendable {
        let turn: Turn
        /// The digest of the key that asked: only offers of the taking turn's
        /// own key are taken, so the share lock its transaction holds on that
        /// key covers every document it stores.
        let key: Data
        let document: DocumentsStore.Signed
        /// Taken by the turn ahead, which now ends this turn and stores the document.
        fileprivate var taken = false
        fileprivate var outcome: Outcome?

        init(turn: Turn, key: Data, document: DocumentsStore.Signed) {
            self.turn = turn
            self.key = key
            self.document = document
        }
    }

    /// What became of a document taken with others.
    enum Outcome: Sendable {
        /// Stored and committed: the document as the 201 shows it.
        case stored(JSONValue)
        /// Nothing was stored, for certain (the counter gave other numbers,
        /// or the server refused the statement): the request issues again on
        /// its own.
        case notStored
        /// Whether it was stored is unknown (the commit unanswered, the
        /// connection broken after the statement was sent): the request
        /// fails with this error, as one document alone would.
        case failed(Error)
    }

    /// Where a turn stands when `waitForTurn(_:offering:)` returns.
    enum Place {
        /// Every turn ahead has ended: this one takes its number now, with the
        /// offers it took (in the order of their numbers, after its own).
        case first(taking: [Offer])
        /// `turnWait` passed first; the offer, if any, was withdrawn.
        case late
        /// The turn ahead took this turn's offer: wait for `outcome(of:)`.
        case taken(Offer)
    }

    /// Documents one statement stores at most.
    static let mostTogether = 8

    private struct Entry {
        /// The last number taken here; nil before the first.
        var last: Int?
        /// Numbers to take without a guess before guessing again.
        var unguessed = 0
        /// Guesses the counter gave another number for, in a row.
        var misses = 0
        /// Guesses the counter agreed with in a row, since the last miss or failure.
        var agreed = 0

        mutating func hit() {
            misses = 0
            agreed += 1
        }

        mutating func miss() {
            misses += 1
            agreed = 0
            unguessed = min(1 << min(misses - 1, 30), NumberForecast.maxUnguessed)
        }
        /// Tickets of the requests that asked and have not taken (or given up) yet, oldest first.
        var waiting: [Int] = []
        /// Offers of waiting turns, by ticket.
        var offers: [Int: Offer] = [:]
    }

    // Guards `entries` and `nextTicket`; waiters for their turn sleep on it.
    private let condition = NSCondition()
    private var entries: [Counter: Entry] = [:]
    /// Tickets are numbered across counters, so that a turn from before the
    /// memory started over never shares its ticket with a later one.
    private var nextTicket = 0
    /// Counters remembered at most; past it the memory starts over.
    static let limit = 100_000
    /// The last sequential a counter gives (sequentials_next_in_range).
    static let lastSequential = 999_999_999
    /// How long a request waits for the requests ahead of it to take their numbers.
    let turnWait: TimeInterval
    /// The most numbers taken without a guess after misses in a row.
    static let maxUnguessed = 64
    /// Guesses in a row the counter must have agreed with before a turn is `oneTrip`.
    let agreementForOneTrip: Int

    /// `turnWait` unless configured (`Configuration.issuingTurnWait`).
    static let defaultTurnWait: TimeInterval = 0.05

    init(turnWait: TimeInterval = NumberForecast.defaultTurnWait, agreementForOneTrip: Int = 8) {
        self.turnWait = turnWait
        self.agreementForOneTrip = agreementForOneTrip
    }

    /// Every issuing request asks once, before taking its number, and ends its
    /// turn with `took`, `sent` or `abandon`. With `guessing` false the turn
    /// foresees nothing (a request issuing again after its guess missed).
    func ask(_ counter: Counter, guessing: Bool = true) -> Turn {
        condition.lock()
        defer { condition.unlock() }
        if entries.count >= NumberForecast.limit, entries[counter] == nil { entries.removeAll(keepingCapacity: true) }
        var entry = entries[counter, default: Entry()]
        var guess: Int?
        if guessing, let last = entry.last, entry.unguessed == 0 {
            let next = last + 1 + entry.waiting.count
            // Past the last sequential there is nothing to foresee: the counter refuses (409).
            if next <= NumberForecast.lastSequential { guess = next }
        }
        let turn = Turn(counter: counter, ticket: nextTicket, guess: guess, oneTrip: guess != nil && entry.agreed >= agreementForOneTrip)
        nextTicket += 1
        entry.waiting.append(turn.ticket)
        entries[counter] = entry
        return turn
    }

    /// Returns once every request that asked before `turn` on its counter has
    /// taken its number or given up (true), or after `turnWait` (false),
    /// whichever is first.
    @discardableResult
    func waitForTurn(_ turn: Turn) -> Bool {
        if case .late = waitForTurn(turn, offering: nil) { return false }
        return true
    }

    /// `waitForTurn`, offering the turn's document (signed with its guess) to
    /// the turns ahead. When the turn ahead takes it, this returns `taken` at
    /// once, and this turn is ended by the one that took it. When this turn's
    /// time comes first, it takes the offers of the turns right behind it that
    /// the same key signed with the next numbers, at most `mostTogether` in
    /// all; only a turn that offers takes.
    func waitForTurn(_ turn: Turn, offering offer: Offer?) -> Place {
        let deadline = Date(timeIntervalSinceNow: turnWait)
        condition.lock()
        defer { condition.unlock() }
        if let offer { entries[turn.counter]?.offers[turn.ticket] = offer }
        while let first = entries[turn.counter]?.waiting.first, first != turn.ticket,
            entries[turn.counter]?.waiting.contains(turn.ticket) == true
        {
            if let offer, offer.taken { return .taken(offer) }
            if !condition.wait(until: deadline) {
                if let offer, offer.taken { return .taken(offer) }
                entries[turn.counter]?.offers[turn.ticket] = nil
                return .late
            }
        }
        if let offer, offer.taken { return .taken(offer) }
        // Only the turn at the head takes (after the memory started over, a
        // turn no longer waiting takes nothing).
        guard let offer, var entry = entries[turn.counter], entry.waiting.first == turn.ticket, let guess = turn.guess else {
            entries[turn.counter]?.offers[turn.ticket] = nil
            return .first(taking: [])
        }
        entry.offers[turn.ticket] = nil
        var taking: [Offer] = []
        for ticket in entry.waiting.dropFirst() {
            guard taking.count + 1 < NumberForecast.mostTogether, let next = entry.offers[ticket], next.key == offer.key,
                next.turn.guess == guess + taking.count + 1
            else { break }
            next.taken = true
            entry.offers[ticket] = nil
            taking.append(next)
        }
        entries[turn.counter] = entry
        if !taking.isEmpty { condition.broadcast() }
        return .first(taking: taking)
    }

    /// Waits until the turn that took `offer` hands over what became of its document.
    func outcome(of offer: Offer) -> Outcome {
        condition.lock()
        defer { condition.unlock() }
        while true {
            if let outcome = offer.outcome { return outcome }
            condition.wait()
        }
    }

    /// Hands each taken offer what became of its document (`outcomes` in the same order).
    func deliver(_ outcomes: [Outcome], to offers: [Offer]) {
        condition.lock()
        defer { condition.unlock() }
        for (offer, outcome) in zip(offers, outcomes) where offer.outcome == nil { offer.outcome = outcome }
        condition.broadcast()
    }

    /// Records the number the counter handed out and whether the turn's guess matched it.
    func took(_ number: Int, _ turn: Turn) {
        let hit = turn.guess.map { $0 == number }
        end(turn) { entry in
            entry.last = number
            switch hit {
            case nil: entry.unguessed = max(0, entry.unguessed - 1)
            case true: entry.hit()
            case false: entry.miss()
            }
        }
        if let hit { ServiceMetrics.signedAhead(hit: hit) }
    }

    /// Ends the turn of a request that sent its guess in the statement that
    /// stores the document, once the counter has answered it: with the guess
    /// when the counter gave that number (the commit still to come), nil when
    /// it gave another or refused (nothing moved, nothing is foreseen until a
    /// number is taken again).
    func sent(_ guess: Int?, _ turn: Turn) {
        sent(guess, [turn])
    }

    /// `sent` for turns whose documents one statement stored together, signed
    /// with `first` and the numbers after it, in order.
    func sent(_ first: Int?, _ turns: [Turn]) {
        guard let counter = turns.first?.counter else { return }
        end(counter, tickets: turns.map(\.ticket)) { entry in
            if let first {
                entry.last = first + turns.count - 1
                for _ in turns { entry.hit() }
            } else {
                entry.miss()
            }
        }
    }

    /// After the transaction of a turn that took or sent its number failed,
    /// whatever the reason (a miss, the commit, the connection): nothing
    /// committed, so nothing is foreseen on the counter until a number is
    /// taken again, and the agreement starts over.
    func forget(_ counter: Counter) {
        condition.lock()
        defer { condition.unlock() }
        guard var entry = entries[counter] else { return }
        entry.unguessed = max(entry.unguessed, 1)
        entry.agreed = 0
        entries[counter] = entry
    }

    /// A request that asked and will not take a number (it failed first).
    func abandon(_ turn: Turn) {
        end(turn) { _ in }
    }

    private func end(_ turn: Turn, _ change: (inout Entry) -> Void) {
        end(turn.counter, tickets: [turn.ticket], change)
    }

    private func end(_ counter: Counter, tickets: [Int], _ change: (inout Entry) -> Void) {
        condition.lock()
        defer { condition.unlock() }
        guard var entry = entries[counter] else { return }
        change(&entry)
        entry.waiting.removeAll { tickets.contains($0) }
        for ticket in tickets { entry.offers[ticket] = nil }
        entries[counter] = entry
        condition.broadcast()
    }
}
