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
        JSONLogHandler.emit(line(time: Date(), level: event.level, message: event.message.description, metadata: event.metadata))
    }

    /// The bytes `log(event:)` writes for a line at `time` with `own` as the line's metadata.
    func line(time: Date, level: Logger.Level, message: String, metadata own: Logger.Metadata?) -> [UInt8] {
        let fields = (own ?? [:]).sorted { $0.key < $1.key }.map { (key: $0.key, value: JSONLogHandler.json($0.value)) }
        return line(time: time, level: level, message: message, fields: fields) { $0.write(to: &$1) }
    }

    /// Logs `message` at info with `fields` as the line's metadata, without
    /// building a `Logger.Metadata` dictionary on the way: the request line is
    /// written for every request. `fields` must be sorted by key.
    func info(_ message: String, sortedFields fields: [(key: String, value: String)]) {
        JSONLogHandler.emit(line(time: Date(), level: .info, message: message, sortedFields: fields))
    }

    /// The bytes of `info(_:sortedFields:)`'s line at `time`.
    func line(time: Date, level: Logger.Level, message: String, sortedFields fields: [(key: String, value: String)]) -> [UInt8] {
        line(time: time, level: level, message: message, fields: fields) { JSONValue.writeString($0, to: &$1) }
    }

    /// Every line: time, level, logger, message, then the line's `fields`
    /// (sorted by key, each value written by `write`) and the handler's
    /// metadata (the request id, mostly) merged in key order; a field of the
    /// line wins over the handler's entry of the same key.
    private func line<Value>(
        time: Date, level: Logger.Level, message: String, fields: [(key: String, value: Value)],
        write: (Value, inout [UInt8]) -> Void
    ) -> [UInt8] {
        var line: [UInt8] = []
        line.reserveCapacity(320)
        line.append(contentsOf: #"{"time":"#.utf8)
        JSONValue.writeString(JSONLogHandler.timestamp(time), to: &line)
        line.append(contentsOf: #","level":"#.utf8)
        JSONValue.writeString(level.rawValue, to: &line)
        line.append(contentsOf: #","logger":"#.utf8)
        JSONValue.writeString(label, to: &line)
        line.append(contentsOf: #","message":"#.utf8)
        JSONValue.writeString(message, to: &line)
        let own: [String]
        switch metadata.count {
        case 0: own = []
        case 1: own = metadata.keys.first.map { key in fields.contains { $0.key == key } ? [] : [key] } ?? []
        default: own = metadata.keys.filter { key in !fields.contains { $0.key == key } }.sorted()
        }
        func handlers(_ key: String) {
            JSONLogHandler.memberKey(key, to: &line)
            JSONLogHandler.json(metadata[key]!).write(to: &line)
        }
        var next = 0
        for field in fields {
            while next < own.count, own[next] < field.key {
                handlers(own[next])
                next += 1
            }
            JSONLogHandler.memberKey(field.key, to: &line)
            write(field.value, &line)
        }
        for key in own[next...] { handlers(key) }
        line.append(contentsOf: "}\n".utf8)
        return line
    }

    /// `,"key":` before a member's value, the request id's key written as `request_id`.
    private static func memberKey(_ key: String, to line: inout [UInt8]) {
        line.append(UInt8(ascii: ","))
        JSONValue.writeString(key == requestIDKey ? "request_id" : key, to: &line)
        line.append(UInt8(ascii: ":"))
    }

    /// Writes one whole line to standard output, under the lock.
    private static func emit(_ line: [UInt8]) {
        output.withLock {
            line.withUnsafeBytes { buffer in
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
