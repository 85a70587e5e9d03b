import ArgumentParser
import Foundation
import Logging
import NIOCore
import NIOPosix
import SkylarkCLI
import SkylarkCrypto
import SkylarkLoginServer
import SkylarkWire

/// Names this executable in its failures and logs.
let tool = CommandLineTool(name: "skylark-login")

@main
struct SkylarkLogin: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "skylark-login",
        abstract: "The Skylark login server: unique names, password checks, signed credentials.",
        subcommands: [Init.self, Serve.self])

    struct Init: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make the login key, an empty account store and the signed network profile (DIR/network.json).")

        @Option(help: "State folder.") var state: String
        @Option(help: "Address clients use to reach this server (HOST:PORT).") var publicAddress = "127.0.0.1:7000"
        @Option(help: "Base URL of the update server (http://HOST:PORT).") var updateURL: String?
        @Option(help: "PEM file of the update server's public key (its DIR/update-public.pem).") var updateKey: String?
        @Option(help: "A default supernode (HOST:PORT); repeat for several.") var supernode: [String] = []
        @Option(help: "RSA key size in bits (at least 2048).") var keyBits = 3072

        func run() throws {
            var options = LoginServerState.InitOptions(publicAddress: publicAddress)
            options.updateURL = updateURL
            options.supernodes = supernode
            options.keyBits = keyBits
            if let updateKey {
                guard let data = FileManager.default.contents(atPath: updateKey) else { tool.fail("cannot read update key \(updateKey)") }
                options.updatePublicKeyPEM = String(decoding: data, as: UTF8.self)
            }
            if (updateURL == nil) != (updateKey == nil) { tool.fail("--update-url and --update-key go together") }
            let state = LoginServerState(directory: state)
            do {
                try state.initialise(options, now: Int64(Date().timeIntervalSince1970))
                let fingerprint = try state.loadKey().publicKey.fingerprint().hexString
                print("initialised \(state.directory)")
                print("login key fingerprint: \(fingerprint)")
                print("network profile: \(state.profilePath)")
            } catch {
                tool.fail("\(error)")
            }
        }
    }

    struct Serve: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Serve registration and login over TCP until SIGINT or SIGTERM.")

        @Option(help: "State folder made by 'init'.") var state: String
        @Option(help: "Address to listen on (HOST:PORT).") var listen: String
        @Option(help: "Threads for password hashing and RSA (default: one per core).") var workers = System.coreCount
        @Option(help: "Credential lifetime in seconds.") var credentialLifetime: Int64 = 24 * 3600
        @Option(help: "Failed logins per name allowed within the window before delays start.") var nameFreeFailures = FailureThrottle.Policy.perName
            .freeFailures
        @Option(help: "Failed attempts per client address allowed within the window before delays start.") var addressFreeFailures = FailureThrottle.Policy
            .perAddress.freeFailures
        @Option(help: "First delay in seconds once the free failures are used; doubles per failure.") var lockoutBase = FailureThrottle.Policy.perName.baseDelay
        @Option(help: "Largest client clock difference accepted, in seconds.") var replayWindow: Double = 120
        @Option(help: "Log level: \(LogLevelName.all.joined(separator: ", ")).") var logLevel = "info"

        func run() async throws {
            let logger = tool.bootstrapLogging(level: logLevel, fallback: .info)
            let endpoint = tool.endpoint(listen, option: "--listen")
            let state = LoginServerState(directory: state)
            let authority: LoginAuthority
            do {
                var configuration = LoginAuthority.Configuration()
                configuration.credentialLifetime = credentialLifetime
                configuration.replayWindow = replayWindow
                configuration.nameThrottle.freeFailures = nameFreeFailures
                configuration.nameThrottle.baseDelay = lockoutBase
                configuration.addressThrottle.freeFailures = addressFreeFailures
                configuration.addressThrottle.baseDelay = lockoutBase
                authority = try LoginAuthority(key: try state.loadKey(), store: try state.openStore(), configuration: configuration, logger: logger)
            } catch {
                tool.fail("\(error)")
            }
            let pool = NIOThreadPool(numberOfThreads: max(1, workers))
            pool.start()
            let server = LoginServer(
                authority: authority, configuration: .init(listen: endpoint), group: MultiThreadedEventLoopGroup.singleton,
                threadPool: pool, logger: logger
            ) { address in
                tool.announceListening(on: address)
            }
            try await tool.runUntilSignalled([server], logger: logger, threadPool: pool)
        }
    }
}
