/// Environments of keys, issuers, counters and documents.
public enum Environment: String, Sendable, CaseIterable {
    case sandbox
    case production

    /// The digit the SRI access key uses (tipo de ambiente): 1 pruebas, 2 producción.
    var accessKeyDigit: Character { self == .sandbox ? "1" : "2" }
}
