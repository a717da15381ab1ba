import Foundation

/// The contract served at GET /openapi.yaml.
enum OpenAPIDocument {
    /// openapi.yaml from the working directory or beside the executable's package, if present.
    static func load() -> String? {
        let candidates = [
            FileManager.default.currentDirectoryPath + "/openapi.yaml",
            URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
                .deletingLastPathComponent()
                .appendingPathComponent("openapi.yaml").path,
        ]
        return candidates.lazy.compactMap { try? String(contentsOfFile: $0, encoding: .utf8) }.first
    }
}
