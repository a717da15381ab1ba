import Foundation
import Logging
import NIOConcurrencyHelpers
import Postgres

/// One JSON object per line on standard output: time, level, message and
/// metadata. Lines from concurrent requests never interleave: each is written
/// whole, under a lock, with one `write(2)`.
public struct JSONLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    private let label: String

    /// Hummingbird names its request id `hb.request.id`; the middleware puts the
    /// service's own id (X-Request-Id) there, and the log line calls it `request_id`.
    static let requestIDKey = "hb.request.id"

    private static let output = NIOLock()

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
            ("time", .string(JSONLogHandler.timestamp(Date()))),
            ("level", .string(event.level.rawValue)),
            ("logger", .string(label)),
            ("message", .string(event.message.description)),
        ]
        // The line's metadata wins over the handler's; merged only when both have some.
        let merged: Logger.Metadata
        if let own = event.metadata, !own.isEmpty {
            merged = metadata.isEmpty ? own : metadata.merging(own) { $1 }
        } else {
            merged = metadata
        }
        members.reserveCapacity(4 + merged.count)
        for (key, value) in merged.sorted(by: { $0.key < $1.key }) {
            members.append((key == JSONLogHandler.requestIDKey ? "request_id" : key, JSONLogHandler.json(value)))
        }
        var line: [UInt8] = []
        line.reserveCapacity(256)
        JSONValue.object(members).write(to: &line)
        line.append(UInt8(ascii: "\n"))
        JSONLogHandler.output.withLock {
            line.withUnsafeMutableBytes { buffer in
                var offset = 0
                while offset < buffer.count {
                    let written = write(STDOUT_FILENO, buffer.baseAddress! + offset, buffer.count - offset)
                    if written <= 0 {
                        if written < 0, errno == EINTR { continue }
                        return
                    }
                    offset += written
                }
            }
        }
    }

    static func json(_ value: Logger.Metadata.Value) -> JSONValue {
        switch value {
        case .string(let text): return .string(text)
        case .stringConvertible(let value): return .string(value.description)
        case .array(let items): return .array(items.map(json))
        case .dictionary(let members): return .object(members.keys.sorted().map { ($0, json(members[$0]!)) })
        }
    }

    /// RFC 3339 in UTC with milliseconds: `2026-12-01T10:00:00.123Z`.
    static func timestamp(_ date: Date) -> String {
        Timestamp.format(date, fractionDigits: 3, suffix: "Z")
    }
}
