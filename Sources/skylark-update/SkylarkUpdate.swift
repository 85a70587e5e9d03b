import ArgumentParser
import Foundation
import Logging
import NIOPosix
import SkylarkCLI
import SkylarkUpdateServer
import SkylarkWire

/// Names this executable in its failures and logs.
let tool = CommandLineTool(name: "skylark-update")

@main
struct SkylarkUpdate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "skylark-update",
        abstract: "The Skylark update server: a signed release manifest and the release files over HTTP.",
        subcommands: [Init.self, Publish.self, Serve.self])

    struct Init: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Make the update signing key (public half in DIR/update-public.pem).")

        @Option(help: "State folder.") var state: String
        @Option(help: "RSA key size in bits (at least 2048).") var keyBits = 3072

        func run() throws {
            let state = UpdateServerState(directory: state)
            do {
                try state.initialise(keyBits: keyBits)
                print("initialised \(state.directory)")
                print("update public key: \(state.publicKeyPath)")
            } catch {
                tool.fail("\(error)")
            }
        }
    }

    struct Publish: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Publish a release: copy its files and sign a new manifest.")

        @Option(help: "State folder made by 'init'.") var state: String
        @Option(help: "Release version, X.Y.Z; must be newer than the published one.") var version: String
        @Option(help: "A release file; repeat for several.") var file: [String] = []
        @Option(help: "Release notes.") var notes: String?
        @Option(help: "Days the manifest stays valid; clients refuse it afterwards.") var validForDays = 30

        func run() throws {
            guard validForDays > 0 else { tool.fail("--valid-for-days must be positive") }
            let state = UpdateServerState(directory: state)
            do {
                let manifest = try state.publish(
                    version: version, files: file, notes: notes, validFor: Int64(validForDays) * 86400,
                    now: Int64(Date().timeIntervalSince1970))
                print(
                    "published \(manifest.version) with \(manifest.files.count) file(s), valid until \(Date(timeIntervalSince1970: TimeInterval(manifest.expiresAt)))"
                )
                for entry in manifest.files { print("  \(entry.name)  \(entry.size) bytes  sha256 \(entry.sha256)") }
            } catch {
                tool.fail("\(error)")
            }
        }
    }

    struct Serve: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Serve the manifest and files over HTTP until SIGINT or SIGTERM.")

        @Option(help: "State folder made by 'init'.") var state: String
        @Option(help: "Address to listen on (HOST:PORT).") var listen: String
        @Option(help: "Log level: \(LogLevelName.all.joined(separator: ", ")).") var logLevel = "info"

        func run() async throws {
            let logger = tool.bootstrapLogging(level: logLevel, fallback: .info)
            let endpoint = tool.endpoint(listen, option: "--listen")
            let state = UpdateServerState(directory: state)
            guard FileManager.default.fileExists(atPath: state.keyPath) else {
                tool.fail(UpdateServerState.Failure.notInitialised(state.directory).description)
            }
            let pool = NIOThreadPool(numberOfThreads: 2)
            pool.start()
            let server = UpdateServer(state: state, listen: endpoint, group: MultiThreadedEventLoopGroup.singleton, threadPool: pool, logger: logger) {
                address in
                tool.announceListening(on: address)
            }
            try await tool.runUntilSignalled([server], logger: logger, threadPool: pool)
        }
    }
}
