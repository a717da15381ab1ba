/// What a reception answer means for the document (shared/SRI.md, "Sending to SRI").
public enum ReceptionOutcome: Sendable, Equatable {
    /// RECIBIDA.
    case received
    /// DEVUELTA, but every error is 43 (CLAVE ACCESO REGISTRADA) or 70 (CLAVE DE
    /// ACCESO EN PROCESAMIENTO): SRI already has the document (an earlier answer
    /// was lost), so it counts as received.
    case alreadyReceived([SRIMessage])
    /// DEVUELTA for any other error: final.
    case returned([SRIMessage])

    /// The identifiers that mean "SRI already has this key".
    public static let alreadyReceivedIdentifiers: Set<String> = ["43", "70"]

    public init(_ answer: ReceptionAnswer) {
        switch answer.status {
        case .received:
            self = .received
        case .returned:
            // Warnings and notices do not count; a message without a tipo does.
            let errors = answer.messages.filter { $0.type != "ADVERTENCIA" && $0.type != "INFORMATIVO" }
            let known = !errors.isEmpty && errors.allSatisfy { Self.alreadyReceivedIdentifiers.contains($0.identifier) }
            self = known ? .alreadyReceived(answer.messages) : .returned(answer.messages)
        }
    }

    /// True when the document goes on to authorization.
    public var countsAsReceived: Bool {
        if case .returned = self { return false }
        return true
    }
}

/// What an authorization answer means for the document.
public enum AuthorizationOutcome: Sendable, Equatable {
    /// An `autorizacion` is AUTORIZADO: it wins over any other in the answer.
    case authorized(AuthorizationAnswer.Authorization)
    /// None is AUTORIZADO or EN PROCESO, and one is NO AUTORIZADO (the last such).
    case refused(AuthorizationAnswer.Authorization)
    /// No decision yet: no `autorizacion`, one EN PROCESO, or only states SRI
    /// does not document. Ask again later.
    case pending

    public init(_ answer: AuthorizationAnswer) {
        let all = answer.authorizations
        if let authorized = all.first(where: { $0.status == .authorized }) {
            self = .authorized(authorized)
        } else if all.contains(where: { $0.status == .inProcess }) {
            self = .pending
        } else if let refused = all.last(where: { $0.status == .notAuthorized }) {
            self = .refused(refused)
        } else {
            self = .pending
        }
    }
}
