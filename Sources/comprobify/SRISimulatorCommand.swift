import ArgumentParser
import Comprobify
import Hummingbird
import Logging
import ServiceLifecycle

/// `comprobify sri-simulator`: the local SRI (docs/sri-simulator.md).
struct SRISimulatorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sri-simulator",
        abstract: "Run a local SRI: both offline web services and a control API (docs/sri-simulator.md).",
        discussion: """
            Point SRI_TEST_URL and SRI_PRODUCTION_URL at http://HOST:PORT/comprobantes-electronicos-ws \
            (or at http://HOST:PORT: both paths are served).
            """
    )

    @Option(help: "Address to listen on.")
    var host = "127.0.0.1"

    @Option(help: "Port to listen on.")
    var port = 8090

    @Option(name: .customLong("latency-ms"), help: "Time added to every answer, in milliseconds.")
    var latencyMilliseconds = 0

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be between 0 and 65535") }
        guard latencyMilliseconds >= 0 else { throw ValidationError("--latency-ms must be ≥ 0") }
    }

    func run() async throws {
        // One JSON object per line, as `serve` logs.
        LoggingSystem.bootstrap { JSONLogHandler(label: $0, level: .info) }
        let logger = Logger(label: "sri-simulator")
        let simulator = SRISimulator(judges: .sri, latencyMilliseconds: latencyMilliseconds)
        let app = buildSimulator(simulator: simulator, host: host, port: port, logger: logger)
        let group = ServiceGroup(
            configuration: .init(services: [app], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        )
        try await group.run()
    }
}
