import Foundation
import Logging
import Postgres

/// One JSON object per line on standard output: time, level, message and metadata.
public struct JSONLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    private let label: String

    public init(label: String, level: Logger.Level) {
        self.label = label
        self.logLevel = level
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var members: [(String, JSONValue)] = [
            ("time", .string(Postgres.Timestamp.format(Date(), fractionDigits: 3) + "Z")),
            ("level", .string(event.level.rawValue)),
            ("logger", .string(label)),
            ("message", .string("\(event.message)")),
        ]
        let merged = metadata.merging(event.metadata ?? [:]) { $1 }
        for key in merged.keys.sorted() {
            members.append((key, JSONLogHandler.json(merged[key]!)))
        }
        let line = JSONValue.object(members).serialized + "\n"
        FileHandle.standardOutput.write(Data(line.utf8))
    }

    static func json(_ value: Logger.Metadata.Value) -> JSONValue {
        switch value {
        case .string(let text): return .string(text)
        case .stringConvertible(let value): return .string(value.description)
        case .array(let items): return .array(items.map(json))
        case .dictionary(let members): return .object(members.keys.sorted().map { ($0, json(members[$0]!)) })
        }
    }
}
