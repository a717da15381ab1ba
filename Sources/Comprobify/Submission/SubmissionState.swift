import Foundation
import Postgres
import SRI

/// Where a signed document stands with SRI (`document_submissions.status`).
enum SubmissionStatus: String, Sendable {
    case signed = "SIGNED"
    case received = "RECEIVED"
    case returned = "RETURNED"
    case authorized = "AUTHORIZED"
    case notAuthorized = "NOT_AUTHORIZED"

    /// RETURNED, AUTHORIZED and NOT_AUTHORIZED wait for nothing more.
    var isFinal: Bool { self != .signed && self != .received }

    /// The webhook event a final status announces.
    var webhookEvent: String? {
        switch self {
        case .authorized: "document.authorized"
        case .notAuthorized: "document.not_authorized"
        case .returned: "document.returned"
        case .signed, .received: nil
        }
    }
}

/// SRI's two offline services.
enum SRIService: String, Sendable {
    case reception
    case authorization
}

/// What one exchange with SRI produced: an answer, or why there was none.
enum ExchangeResult: Sendable {
    case reception(ReceptionAnswer)
    case authorization(AuthorizationAnswer)
    case failed(SRITransportError)
}

/// The authorization SRI gave, as kept on the submission.
struct GrantedAuthorization: Sendable, Equatable {
    let number: String
    let date: Date
    /// The `<autorizacion>` element as received.
    let element: [UInt8]
}

/// What an exchange does to a submission: its new status and what is written
/// with it (shared/SRI.md, "Sending to SRI").
struct Transition: Sendable, Equatable {
    var status: SubmissionStatus
    /// The `outcome` of the exchange record and of `sri_requests_total`.
    var outcome: String
    /// SRI's messages to keep; nil keeps the current ones.
    var messages: [SRIMessage]?
    var authorization: GrantedAuthorization?
    /// Why the exchange failed; nil after an answer.
    var lastError: String?
    /// Exchanges in a row without progress, this one included.
    var streak: Int
    /// When the next exchange is due, from now; nil once the status is final.
    var nextAttemptMilliseconds: Int?
    /// The HTTP status of the answer, when known.
    var httpStatus: Int?

    /// The transition of a submission in `status`, `streak` exchanges into a run
    /// without progress, after `result`.
    static func after(_ result: ExchangeResult, from status: SubmissionStatus, streak: Int, settings: SRISettings, now: Date) -> Transition
    {
        switch result {
        case .failed(let error):
            return Transition(
                status: status, outcome: error.outcome, messages: nil, authorization: nil, lastError: error.description,
                streak: streak + 1, nextAttemptMilliseconds: settings.backoffMilliseconds(streak: streak + 1),
                httpStatus: error.httpStatus)
        case .reception(let answer) where status == .received:
            // A resend of a document SRI had received (SRISettings.service).
            // It stays RECEIVED whatever the answer, and the run's streak goes
            // on (its backoff with it, and no first-ask priority in the claim:
            // a document SRI keeps losing costs an exchange every few minutes,
            // not a fresh run of them). RECIBIDA (SRI had lost it) has its
            // authorization asked for after the usual delay; 43/70 change
            // nothing; DEVUELTA for another reason is not final here (SRI
            // received this very comprobante before) but its messages are
            // shown on the document, the one trace of why it waits.
            let outcome = ReceptionOutcome(answer)
            let received = outcome == .received
            var messages: [SRIMessage]? = nil
            if case .returned(let returned) = outcome { messages = returned }
            return Transition(
                status: .received, outcome: received ? "received" : outcome.countsAsReceived ? "already_received" : "returned",
                messages: messages, lastError: nil, streak: streak + 1,
                nextAttemptMilliseconds: received
                    ? settings.authorizationDelayMilliseconds : settings.backoffMilliseconds(streak: streak + 1),
                httpStatus: 200)
        case .reception(let answer):
            switch ReceptionOutcome(answer) {
            case .received:
                return Transition(
                    status: .received, outcome: "received", messages: [], lastError: nil, streak: 0,
                    nextAttemptMilliseconds: settings.authorizationDelayMilliseconds, httpStatus: 200)
            case .alreadyReceived(let messages):
                return Transition(
                    status: .received, outcome: "already_received", messages: messages, lastError: nil, streak: 0,
                    nextAttemptMilliseconds: settings.authorizationDelayMilliseconds, httpStatus: 200)
            case .returned(let messages):
                return Transition(
                    status: .returned, outcome: "returned", messages: messages, lastError: nil, streak: 0,
                    nextAttemptMilliseconds: nil, httpStatus: 200)
            }
        case .authorization(let answer):
            switch AuthorizationOutcome(answer) {
            case .authorized(let granted):
                let authorization = GrantedAuthorization(
                    // SRI's numbers are the 49-digit access key (37 digits before
                    // 2018); anything empty or longer than 64 is not one.
                    number: granted.number.flatMap { $0.isEmpty || $0.count > 64 ? nil : $0 } ?? answer.queriedAccessKey ?? "",
                    date: granted.date.flatMap(Self.parseDate).flatMap { Self.plausible($0, now: now) } ?? now,
                    element: granted.element)
                return Transition(
                    status: .authorized, outcome: "authorized", messages: granted.messages, authorization: authorization,
                    lastError: nil, streak: 0, nextAttemptMilliseconds: nil, httpStatus: 200)
            case .refused(let refusal):
                return Transition(
                    status: .notAuthorized, outcome: "not_authorized", messages: refusal.messages, lastError: nil, streak: 0,
                    nextAttemptMilliseconds: nil, httpStatus: 200)
            case .pending:
                let inProcess = answer.authorizations.last { $0.status == .inProcess }
                return Transition(
                    status: status, outcome: "pending", messages: inProcess.map(\.messages), lastError: nil,
                    streak: streak + 1, nextAttemptMilliseconds: settings.backoffMilliseconds(streak: streak + 1),
                    httpStatus: 200)
            }
        }
    }

    /// An authorization date SRI could have given: from 2000 to a day past
    /// `now`. Anything else (a year 300000, say) is taken as `now` rather
    /// than stored: PostgreSQL and every reader of the document expect a date
    /// of this era.
    static func plausible(_ date: Date, now: Date) -> Date? {
        (946_684_800...now.timeIntervalSince1970 + 86_400).contains(date.timeIntervalSince1970) ? date : nil
    }

    /// `fechaAutorizacion`: ISO 8601 with an offset (`Z`, `±hh:mm` or
    /// `±hhmm`), with or without 1 to 9 digits of fractions of a second
    /// (SRI's answers); without an offset (xs:dateTime allows it) or as
    /// `dd/MM/yyyy HH:mm:ss` (older answers), in Ecuador's time (UTC−5).
    /// Nil for anything else, a date that does not exist included (a 30
    /// February, an hour 24). Read by hand: Foundation's formatters, made for
    /// each answer, took a tenth of a sender's CPU (ADR 008).
    static func parseDate(_ text: String) -> Date? {
        var text = text
        return text.withUTF8 { bytes -> Date? in
            var cursor = Timestamp.Cursor(bytes: bytes)
            let year: Int
            let month: Int
            let day: Int
            let older = bytes.count > 2 && bytes[2] == UInt8(ascii: "/")
            if older {
                guard let d = cursor.number(2), cursor.expect(UInt8(ascii: "/")), let m = cursor.number(2),
                    cursor.expect(UInt8(ascii: "/")),
                    let y = cursor.number(4), cursor.expect(UInt8(ascii: " "))
                else { return nil }
                (year, month, day) = (y, m, d)
            } else {
                guard let y = cursor.number(4), cursor.expect(UInt8(ascii: "-")), let m = cursor.number(2),
                    cursor.expect(UInt8(ascii: "-")),
                    let d = cursor.number(2), cursor.expect(UInt8(ascii: "T"))
                else { return nil }
                (year, month, day) = (y, m, d)
            }
            guard let hour = cursor.number(2), cursor.expect(UInt8(ascii: ":")), let minute = cursor.number(2),
                cursor.expect(UInt8(ascii: ":")),
                let second = cursor.number(2)
            else { return nil }
            // The older form ends with its seconds.
            if older, !cursor.atEnd { return nil }
            var fraction = 0.0
            if cursor.expect(UInt8(ascii: ".")) {
                var scale = 0.1
                var digits = 0
                while let digit = cursor.digit() {
                    fraction += Double(digit) * scale
                    scale /= 10
                    digits += 1
                }
                guard (1...9).contains(digits) else { return nil }
            }
            // Ecuador's time unless the text names its offset.
            var offsetSeconds = -5 * 3600
            if cursor.expect(UInt8(ascii: "Z")) {
                offsetSeconds = 0
            } else if let sign = cursor.expect(UInt8(ascii: "+")) ? 1 : cursor.expect(UInt8(ascii: "-")) ? -1 : nil {
                guard let hours = cursor.number(2), hours <= 23 else { return nil }
                _ = cursor.expect(UInt8(ascii: ":"))
                guard let minutes = cursor.number(2), minutes <= 59 else { return nil }
                offsetSeconds = sign * (hours * 3600 + minutes * 60)
            }
            guard cursor.atEnd, (1...12).contains(month), (1...31).contains(day), hour <= 23, minute <= 59, second <= 59
            else { return nil }
            let days = Timestamp.daysFromCivil(year: year, month: month, day: day)
            // A day past its month's end (31 April) comes back as another date.
            guard Timestamp.civilFromDays(days) == (year, month, day) else { return nil }
            let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offsetSeconds
            return Date(timeIntervalSince1970: Double(seconds) + fraction)
        }
    }
}

extension SRITransportError {
    /// The outcome label of a failed exchange.
    var outcome: String {
        switch self {
        case .connection: "connection"
        case .timeout: "timeout"
        case .httpStatus: "http_status"
        case .soapFault: "soap_fault"
        case .unparseable: "unparseable"
        }
    }

    var httpStatus: Int? {
        switch self {
        case .httpStatus(let status), .soapFault(_, _, let status): status
        case .unparseable: 200
        default: nil
        }
    }
}

extension SRIMessage {
    /// `{identifier, message, additionalInfo, type}`, as the document shows it,
    /// each text at most as long as SRI's ever are (`Format.clipped`): an answer
    /// within the size limit could otherwise carry megabytes in one message,
    /// stored with the document and with each exchange for as long as SRI
    /// keeps answering so.
    var json: JSONValue {
        .object([
            ("identifier", .string(Format.clipped(identifier, atMost: 16))),
            ("message", .string(Format.clipped(message, atMost: 500))),
            ("additionalInfo", additionalInformation.map { .string(Format.clipped($0, atMost: 2_000)) } ?? .null),
            ("type", .string(Format.clipped(type, atMost: 32))),
        ])
    }
}

extension ExchangeResult {
    /// The most entries the record keeps of an answer's authorizations, and
    /// of its messages in all (SRI sends a handful; an answer of thousands
    /// would make every exchange's row megabytes): the first ones, and how
    /// many were left out. The messages are counted across the
    /// authorizations: 50 of each of 50 authorizations made a row of 6.4 MB,
    /// written again at every retry of a document SRI keeps "in process".
    static let keptEntries = 50

    /// SRI's answer as the exchange record keeps it: never the comprobante,
    /// at most `keptEntries` authorizations and `keptEntries` messages in all
    /// (`<list>Omitted` counts the rest of a list).
    var answerJSON: JSONValue? {
        var messagesLeft = ExchangeResult.keptEntries
        func kept<T>(_ name: String, _ list: [T], most: Int, _ json: (T) -> JSONValue) -> [(String, JSONValue)] {
            let entries: [(String, JSONValue)] = [(name, .array(list.prefix(most).map(json)))]
            guard list.count > most else { return entries }
            return entries + [(name + "Omitted", JSONValue(Int64(list.count - most)))]
        }
        func messages(_ list: [SRIMessage]) -> [(String, JSONValue)] {
            let most = min(messagesLeft, list.count)
            messagesLeft -= most
            return kept("messages", list, most: most, \.json)
        }
        switch self {
        case .failed:
            return nil
        case .reception(let answer):
            return .object([("estado", .string(answer.status.rawValue))] + messages(answer.messages))
        case .authorization(let answer):
            let items = kept("autorizaciones", answer.authorizations, most: ExchangeResult.keptEntries) { item in
                .object(
                    [
                        ("estado", .string(Format.clipped(item.status.description, atMost: 32))),
                        ("numero", item.number.map { .string(Format.clipped($0, atMost: 64)) } ?? .null),
                        ("fecha", item.date.map { .string(Format.clipped($0, atMost: 64)) } ?? .null),
                        ("ambiente", item.environment.map { .string(Format.clipped($0, atMost: 32)) } ?? .null),
                    ] + messages(item.messages))
            }
            return .object([("count", JSONValue(Int64(answer.count)))] + items)
        }
    }

    var error: String? {
        if case .failed(let error) = self { return error.description }
        return nil
    }
}
