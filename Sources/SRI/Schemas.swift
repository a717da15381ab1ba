import Foundation

/// SRI's official schemas and the W3C signature schema they import, vendored
/// byte for byte as published (Sources/SRI/Schemas).
public enum Schemas {
    /// The folder holding the `.xsd` files; imports between them resolve inside it.
    public static var folder: URL {
        Bundle.module.resourceURL!.appendingPathComponent("Schemas", isDirectory: true)
    }

    /// The schema file of one published version, e.g. `factura_V2.1.0.xsd`.
    public static func file(_ name: String) -> URL {
        folder.appendingPathComponent(name)
    }
}
