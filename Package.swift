// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "comprobify",
    platforms: [.macOS(.v14)],
    products: [
        .library(name: "Postgres", targets: ["Postgres"]),
        .library(name: "SRI", targets: ["SRI"]),
        .library(name: "Comprobify", targets: ["Comprobify"]),
        .executable(name: "comprobify", targets: ["comprobify"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.2"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CLibPQ",
            pkgConfig: "libpq",
            providers: [.apt(["libpq-dev"])]
        ),
        .systemLibrary(
            name: "COpenSSL",
            pkgConfig: "openssl",
            providers: [.apt(["libssl-dev"])]
        ),
        .systemLibrary(
            name: "CLibXML2",
            pkgConfig: "libxml-2.0",
            providers: [.apt(["libxml2-dev"])]
        ),
        .target(
            name: "Postgres",
            dependencies: [
                "CLibPQ",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Metrics", package: "swift-metrics"),
            ]
        ),
        .target(
            name: "SRI",
            dependencies: ["CLibXML2", "COpenSSL"],
            resources: [.copy("Schemas")]
        ),
        .target(
            name: "Comprobify",
            dependencies: [
                "Postgres",
                "SRI",
                "COpenSSL",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .executableTarget(
            name: "comprobify",
            dependencies: [
                "Comprobify",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            // jemalloc serves every allocation of the process (Swift runtime,
            // libpq, libxml2, OpenSSL) in fewer instructions than glibc's
            // malloc: counted, docs/adr/007-request-cpu.md, item 27. Linked
            // into the server only; the test bundles keep the system allocator.
            linkerSettings: [.linkedLibrary("jemalloc", .when(platforms: [.linux]))]
        ),
        .target(
            name: "TestSupport",
            dependencies: ["Postgres", "COpenSSL"],
            path: "Tests/TestSupport"
        ),
        .testTarget(
            name: "PostgresTests",
            dependencies: ["Postgres", "TestSupport"]
        ),
        .testTarget(
            name: "SRITests",
            dependencies: ["SRI", "TestSupport"]
        ),
        .testTarget(
            name: "ComprobifyTests",
            dependencies: [
                "SRI",
                "Comprobify",
                "TestSupport",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ]
        ),
    ]
)
