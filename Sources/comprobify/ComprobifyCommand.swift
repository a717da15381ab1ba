import ArgumentParser
import Comprobify
import Foundation
import Hummingbird
import Logging
import NIOCore
import Postgres
import ServiceLifecycle

#if canImport(Glibc)
    import Glibc
#endif

/// Writes `comprobify: <message>` to standard error.
func complain(_ message: String) {
    FileHandle.standardError.write(Data("comprobify: \(message)\n".utf8))
}

/// DATABASE_URL; when it is not set, says so and exits 2.
func databaseURL(_ environment: [String: String]) throws -> String {
    guard let url = environment["DATABASE_URL"], !url.isEmpty else {
        complain("DATABASE_URL is not set")
        throw ExitCode(2)
    }
    return url
}

@main
struct ComprobifyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "comprobify",
        abstract: "Multi-tenant API for Ecuadorian electronic tax documents.",
        subcommands: [Serve.self, Migrate.self, Reseal.self, SRISimulatorCommand.self]
    )
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the HTTP server (settings from the environment; see README).",
        discussion: """
            Every setting is an environment variable; README.md's "Configuration" (in the image: \
            /usr/share/doc/comprobify/README.md) says what each does and its default. DATABASE_URL and \
            COMPROBIFY_SECRET_KEY are required. A setting refused stops the start (exit 2), naming every one refused.

            Settings: \(Configuration.settingNames.joined(separator: ", ")).
            """
    )

    /// No core file, whatever the shell's `ulimit -c`: the server holds the
    /// master key and the issuers' private keys in memory, and a crash must not
    /// write them to disk. The hard limit goes too, so nothing in the process
    /// can raise it again.
    static func disableCoreFiles() {
        var none = rlimit(rlim_cur: 0, rlim_max: 0)
        #if canImport(Glibc)
            _ = setrlimit(__rlimit_resource_t(RLIMIT_CORE.rawValue), &none)
        #else
            _ = setrlimit(RLIMIT_CORE, &none)
        #endif
    }

    /// The development defaults of docker-compose.yml, which anyone can read.
    static let developmentSecrets = [
        ("COMPROBIFY_SECRET_KEY", "ZGV2LW9ubHkta2V5LWRvLW5vdC11c2UtaW4tcHJvZCE="),
        ("COMPROBIFY_ADMIN_TOKEN", "dev-admin-token-not-for-production"),
    ]

    func run() async throws {
        Serve.disableCoreFiles()
        let configuration: Configuration
        do {
            configuration = try Configuration.fromEnvironment(ProcessInfo.processInfo.environment)
        } catch {
            complain("\(error)")
            throw ExitCode(2)
        }
        LoggingSystem.bootstrap { JSONLogHandler(label: $0, level: configuration.logLevel) }
        var logger = Logger(label: "comprobify")
        logger.logLevel = configuration.logLevel
        let environment = ProcessInfo.processInfo.environment
        for (name, value) in Serve.developmentSecrets where environment[name] == value {
            logger.warning("\(name) is docker-compose.yml's development value, which is public: set your own anywhere but a laptop")
        }
        if configuration.secretBox.currentKeyLooksWeak {
            logger.warning(
                "COMPROBIFY_SECRET_KEY does not look random (fewer than 16 different bytes of 32): make one with `openssl rand -base64 32`, then move what it sealed with `comprobify reseal`"
            )
        }
        let app: any ApplicationProtocol
        let shutdown = ShutdownSignal()
        do {
            app = try await buildApplication(configuration: configuration, logger: logger, shutdown: shutdown)
        } catch {
            logger.critical("cannot start", metadata: ["error": "\(error)"])
            throw ExitCode(1)
        }
        /// The one line saying why the server cannot listen; its exit code.
        func cannotListen(_ why: String) -> ExitCode {
            logger.critical("cannot listen on \(configuration.host):\(configuration.port): \(why)")
            return ExitCode(1)
        }
        let completion = ShutdownSignal.Completion()
        var groupConfiguration = ServiceGroupConfiguration(
            // Services stop in reverse order: the notice first, so that the
            // background queues stop claiming while the HTTP server drains;
            // the completion last, once everything else has finished.
            services: [
                completion, app,
                ShutdownSignal.Notice(shutdown, readyDelay: .seconds(configuration.shutdownReadyDelaySeconds), logger: logger),
            ],
            gracefulShutdownSignals: [.sigterm, .sigint], logger: logger
        )
        groupConfiguration.maximumGracefulShutdownDuration = .seconds(configuration.shutdownGraceSeconds)
        // The group's own lines, at debug, named as every other line is.
        groupConfiguration.logging.keys.signalKey = "signal"
        groupConfiguration.logging.keys.gracefulShutdownSignalsKey = "graceful_shutdown_signals"
        groupConfiguration.logging.keys.cancellationSignalsKey = "cancellation_signals"
        groupConfiguration.logging.keys.serviceKey = "service"
        groupConfiguration.logging.keys.servicesKey = "services"
        groupConfiguration.logging.keys.errorKey = "error"
        do {
            try await ServiceGroup(configuration: groupConfiguration).run()
            if completion.cutShort {
                logger.warning(
                    "stopped after SHUTDOWN_GRACE_S ran out: requests, SRI exchanges or webhook deliveries still under way were cut short",
                    metadata: ["grace_s": "\(configuration.shutdownGraceSeconds)"])
                throw ExitCode(1)
            }
            logger.info("stopped")
        } catch let exit as ExitCode {
            throw exit
        } catch let error as IOError where error.errnoCode == EADDRINUSE {
            throw cannotListen("another process listens there (PORT and HOST choose another)")
        } catch is SocketAddressError.UnknownHost {
            throw cannotListen("HOST is neither an address nor a name this machine resolves")
        } catch {
            logger.critical("stopped", metadata: ["error": "\(error)"])
            throw ExitCode(1)
        }
    }
}

struct Migrate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Apply the SQL migrations as the schema owner (DATABASE_URL).",
        discussion: "With COMPROBIFY_APP_PASSWORD set, also lets comprobify_app log in with that password."
    )

    @Option(help: "Folder of NNNN_name.sql files.")
    var directory = "sql/migrations"

    func run() throws {
        let environment = ProcessInfo.processInfo.environment
        let url = try databaseURL(environment)
        do {
            let connection = try Connection(conninfo: url)
            let applied = try Migrator(directory: URL(fileURLWithPath: directory)).run(on: connection)
            print(applied.isEmpty ? "migrations: up to date" : "migrations: applied \(applied.joined(separator: ", "))")
            if let password = environment["COMPROBIFY_APP_PASSWORD"], !password.isEmpty {
                try Migrator.grantLogin(on: connection, password: password)
                print("migrations: comprobify_app may log in")
            }
        } catch {
            complain("\(error)")
            throw ExitCode(1)
        }
    }
}

struct Reseal: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Seal every stored secret under the current master key (COMPROBIFY_SECRET_KEY).",
        discussion: """
            Issuers' private keys and webhook secrets sealed under a key in COMPROBIFY_SECRET_KEY_PREVIOUS \
            are opened and sealed again under COMPROBIFY_SECRET_KEY, each row in its own transaction, as the \
            schema owner (DATABASE_URL). Afterwards the previous keys are no longer needed. Safe to run again \
            and while servers run.
            """
    )

    @Option(name: .customLong("tenant"), help: "Only this tenant's rows (repeat for several).")
    var tenants: [Int64] = []

    func run() throws {
        Serve.disableCoreFiles()
        let environment = ProcessInfo.processInfo.environment
        let url = try databaseURL(environment)
        let secretBox: SecretBox
        do {
            secretBox = try SecretBox(environment: environment)
        } catch {
            complain("\(error)")
            throw ExitCode(2)
        }
        let connection: Connection
        do {
            connection = try Connection(conninfo: url)
        } catch {
            complain("\(error)")
            throw ExitCode(1)
        }
        var resealer = Resealer(connection: connection, secretBox: secretBox)
        resealer.tenants = tenants.isEmpty ? nil : tenants
        let report = resealer.run()
        print(
            "reseal: \(report.certificates) issuer keys and \(report.webhooks) webhook secrets sealed again under master key \(secretBox.currentKeyID)"
        )
        for failure in report.failures { complain("cannot open \(failure)") }
        if let stopped = report.stopped { complain("stopped before the end: \(stopped)") }
        guard report.failures.isEmpty, report.stopped == nil else { throw ExitCode(1) }
    }
}
