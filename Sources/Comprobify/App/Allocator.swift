#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Which allocator serves the process's memory, for the start-up log line.
///
/// The `comprobify` executable links jemalloc on Linux (Package.swift); a
/// process that loads this module without it (the test bundles) uses the
/// system's malloc. jemalloc answers `mallctl("version")`; the symbol is
/// looked up in the process's global scope, so nothing here depends on being
/// linked against it.
enum Allocator {
    static let description: String = {
        typealias MallCtl =
            @convention(c) (
                UnsafePointer<CChar>?, UnsafeMutableRawPointer?, UnsafeMutablePointer<Int>?, UnsafeMutableRawPointer?, Int
            ) -> Int32
        guard let process = dlopen(nil, RTLD_NOW) else { return "system malloc" }
        defer { dlclose(process) }
        guard let symbol = dlsym(process, "mallctl") else { return "system malloc" }
        let mallctl = unsafeBitCast(symbol, to: MallCtl.self)
        var version: UnsafePointer<CChar>?
        var length = MemoryLayout<UnsafePointer<CChar>?>.size
        guard mallctl("version", &version, &length, nil, 0) == 0, let version else { return "jemalloc" }
        return "jemalloc " + String(cString: version)
    }()
}
