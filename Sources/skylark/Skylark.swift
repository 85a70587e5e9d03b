import ArgumentParser
import Foundation
import Logging
import NIOPosix
import SkylarkCLI
import SkylarkCrypto
import SkylarkNode
import SkylarkWire

@main
struct Skylark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "skylark",
        abstract: "The Skylark client.",
        version: SkylarkVersion.current.description,
        subcommands: [
            Register.self, Login.self, Update.self, Run.self, Status.self, BuddyCommand.self, Search.self, Msg.self,
            Inbox.self, Presence.self, Call.self, Answer.self, Hangup.self, Calls.self, Conf.self, AudioCommand.self, Mute.self, Unmute.self, Volume.self,
        ])
}

struct ClientOptions: ParsableArguments {
    @Option(help: "The network profile (network.json from 'skylark-login init').") var network: String
    @Option(help: "State folder (default ~/.skylark).") var state: String?
    @Option(help: "Log level: \(LogLevelName.all.joined(separator: ", ")).") var logLevel = "warning"

    var stateDirectory: String { state ?? ClientState.defaultDirectory() }

    func loadProfile() -> VerifiedProfile {
        do { return try VerifiedProfile.load(path: network) } catch { tool.fail("\(error)", code: 11) }
    }
}

struct Register: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Register a new user name. Password from SKYLARK_PASSWORD or a prompt.")

    @Argument(help: "The name to register.") var name: String
    @OptionGroup var options: ClientOptions

    func run() async throws {
        let logger = tool.bootstrapLogging(level: options.logLevel, fallback: .warning)
        let profile = options.loadProfile()
        let canonical: String
        do { canonical = try UserName.canonical(name) } catch { tool.fail(LoginFailure.invalidName(error.description).description, code: 10) }
        let password = readPassword(prompt: "Password for \(canonical): ", confirm: true)
        if let problem = PasswordPolicy.problem(with: password) { tool.fail(LoginFailure.weakPassword(problem).description, code: 10) }
        do {
            let outcome = try await LoginClient.perform(
                .register(name: canonical, password: password), profile: profile,
                group: MultiThreadedEventLoopGroup.singleton, logger: logger)
            guard case let .registered(registered) = outcome else { tool.fail("unexpected answer") }
            print("registered \(registered)")
        } catch {
            tool.fail(error.description, code: error.exitCode)
        }
    }
}

struct Login: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Check for updates, log in and store the credential in the state folder.")

    @Argument(help: "Your user name.") var name: String
    @OptionGroup var options: ClientOptions

    func run() async throws {
        let logger = tool.bootstrapLogging(level: options.logLevel, fallback: .warning)
        let profile = options.loadProfile()
        let group = MultiThreadedEventLoopGroup.singleton
        let canonical: String
        do { canonical = try UserName.canonical(name) } catch { tool.fail(LoginFailure.invalidName(error.description).description, code: 10) }

        await checkForUpdate(profile: profile)

        let state = ClientState(directory: options.stateDirectory)
        let identity: Ed25519.PrivateKey
        let publicKey: [UInt8]
        do {
            identity = try state.loadOrCreateIdentity()
            publicKey = try identity.publicKey().rawRepresentation()
        } catch {
            tool.fail("cannot load the identity key in \(state.directory): \(error)")
        }
        let password = readPassword(prompt: "Password for \(canonical): ", confirm: false)
        do {
            let outcome = try await LoginClient.perform(
                .login(name: canonical, password: password, userPublicKey: publicKey), profile: profile,
                group: group, logger: logger)
            guard case let .loggedIn(credential) = outcome else { tool.fail("unexpected answer") }
            do { try state.save(credential) } catch { tool.fail("cannot store the credential: \(error)") }
            let expiry = ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: TimeInterval(credential.expiresAt)))
            print("logged in as \(credential.name) (node id \(credential.nodeID.hexString), credential serial \(credential.serial), valid until \(expiry))")
        } catch {
            tool.fail(error.description, code: error.exitCode)
        }
    }
}

struct Update: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Check the update server; with --download, fetch and verify the release files.")

    @Option(help: "The network profile.") var network: String
    @Option(help: "Folder to download the verified release files into.") var download: String?

    func run() async throws {
        let profile: VerifiedProfile
        do { profile = try VerifiedProfile.load(path: network) } catch { tool.fail("\(error)", code: 11) }
        guard let url = profile.profile.updateURL, let key = profile.updateKey else { tool.fail(UpdateFailure.notConfigured.description, code: 8) }
        let client = UpdateClient(baseURL: url, key: key, group: MultiThreadedEventLoopGroup.singleton)
        do {
            let manifest = try await client.fetchManifest(now: Int64(Date().timeIntervalSince1970))
            switch UpdateCheck.status(of: manifest, running: SkylarkVersion.current) {
            case let .available(version): print("update available: \(version)")
            case let .upToDate(latest): print("up to date: running \(SkylarkVersion.current), latest \(latest)")
            }
            guard let download else { return }
            try FileManager.default.createDirectory(atPath: download, withIntermediateDirectories: true)
            for entry in manifest.files {
                let bytes = try await client.fetchFile(entry)
                try StateFiles.write(bytes, to: download + "/" + entry.name)
                print("verified \(entry.name) (\(entry.size) bytes, sha256 \(entry.sha256))")
            }
        } catch let failure as UpdateFailure {
            tool.fail(failure.description, code: failure.isUnreachable ? 6 : 8)
        }
    }
}

/// The update check before a login: never blocks it, unless the server serves a forgery.
func checkForUpdate(profile: VerifiedProfile) async {
    guard let url = profile.profile.updateURL, let key = profile.updateKey else { return }
    do {
        let manifest = try await UpdateClient(baseURL: url, key: key, group: MultiThreadedEventLoopGroup.singleton)
            .fetchManifest(now: Int64(Date().timeIntervalSince1970), timeout: .seconds(3))
        if case let .available(version) = UpdateCheck.status(of: manifest, running: SkylarkVersion.current) {
            print("update available: \(version)")
        }
    } catch {
        switch error {
        case .unsigned, .badSignature: tool.fail(error.description, code: 8)
        default: tool.warn(error.description)
        }
    }
}
