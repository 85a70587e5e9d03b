import Foundation
import Logging
import SkylarkCrypto
import SkylarkLoginServer
import SkylarkNode
import SkylarkOverlay
import SkylarkWire

/// A whole Skylark network in memory: a real login authority (SQLite accounts in a temporary
/// folder, its own RSA key), a signed network profile naming the default supernodes, and an
/// `InMemoryNetwork` of real node runtimes. For tests that need nodes together without root.
public final class InMemoryLab {
    public let network: InMemoryNetwork
    public let directory: String
    /// The default supernodes' addresses, as the profile lists them.
    public let supernodeAddresses: [String]
    private let login: InMemoryNetwork.LoginService
    private let loginKey: RSA.PublicKey

    /// `supernodes`: how many default supernodes the profile lists (at 203.0.113.21, .22, ...).
    public init(supernodes: Int = 5, latency: Double = 0.01) throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("skylark-memory-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let key = try RSA.PrivateKey(bits: 2048)
        loginKey = key.publicKey
        var configuration = LoginAuthority.Configuration()
        // Cheaper than the real cost: the exchange and its checks are what is under test here.
        configuration.passwordHashing = Scrypt.Parameters(n: 1 << 10, r: 8, p: 1)
        let store = try SQLiteAccountStore(path: "\(directory)/accounts.sqlite")
        let authority = try LoginAuthority(
            key: key, store: store, configuration: configuration,
            logger: Logger(label: "skylark.memory.login") { _ in SwiftLogNoOpLogHandler() })
        login = { request, source, now in Self.serve(request, authority: authority, from: source, now: now) }
        supernodeAddresses = (1...max(1, supernodes)).map { "203.0.113.\(20 + $0)" }
        let body = NetworkProfile(
            loginAddress: "203.0.113.10:7000", loginPublicKey: try key.publicKey.pem(), updateURL: nil, updatePublicKey: nil,
            supernodes: supernodeAddresses.map { "\($0):\(NodeConfiguration.defaultPort)" }, issuedAt: 1_750_000_000)
        let profile = try VerifiedProfile(document: try SignedDocument.sign(body, with: key))
        // SKYLARK_MEMORY_LOG=debug (or info, trace): the nodes' logs on standard error.
        var logger = Logger(label: "skylark.memory") { _ in SwiftLogNoOpLogHandler() }
        if let level = ProcessInfo.processInfo.environment["SKYLARK_MEMORY_LOG"].flatMap(Logger.Level.init(rawValue:)) {
            logger = Logger(label: "skylark.memory") { StreamLogHandler.standardError(label: $0) }
            logger.logLevel = level
        }
        network = InMemoryNetwork(profile: profile, login: login, directory: "\(directory)/nodes", latency: latency, logger: logger)
    }

    deinit { shutdown() }

    /// Stops every node and removes the lab's files.
    public func shutdown() {
        network.shutdown()
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Registers a user at the login authority (as `skylark register` does).
    public func register(_ name: String, password: String? = nil) throws {
        var exchange = try LoginClientExchange(.register(name: name, password: password ?? Self.password(name)), serverKey: loginKey, now: network.now)
        guard case .registered? = try exchange.receive(login(exchange.requestBytes, HostPort(host: "203.0.113.99", port: 40_000), network.now)) else {
            throw LabError.registrationFailed(name)
        }
    }

    /// Registers and starts the default supernodes (`--supernode always`), and waits until each is one.
    @discardableResult
    public func startSupernodes(configure: (inout NodeConfiguration) -> Void = { _ in }) throws -> [InMemoryNode] {
        var started: [InMemoryNode] = []
        for (index, address) in supernodeAddresses.enumerated() {
            let name = "sn\(index + 1)"
            try register(name)
            started.append(try network.start(name, password: Self.password(name), address: address, supernode: .always, configure: configure))
        }
        guard network.run(within: 30, until: { started.allSatisfy { $0.status()?.role == "supernode" } }) else {
            throw LabError.notReady("the default supernodes")
        }
        return started
    }

    /// Registers and starts a client (`--supernode never`) and waits until it is attached.
    @discardableResult
    public func startClient(
        _ name: String, address: String, reachability: InMemoryNetwork.Reachability = .public,
        configure: (inout NodeConfiguration) -> Void = { _ in }
    ) throws -> InMemoryNode {
        try register(name)
        let node = try network.start(
            name, password: Self.password(name), address: address, reachability: reachability, supernode: .never,
            configure: configure)
        guard network.run(within: 30, until: { node.status()?.presence == "online" }) else { throw LabError.notReady(name) }
        return node
    }

    /// Registers and starts many clients at once (at `address(index)`), then waits until every one
    /// is attached: one wait for all rather than one each.
    @discardableResult
    public func startClients(_ names: [String], address: (Int) -> String) throws -> [InMemoryNode] {
        var started: [InMemoryNode] = []
        for (index, name) in names.enumerated() {
            try register(name)
            started.append(try network.start(name, password: Self.password(name), address: address(index), supernode: .never))
        }
        guard network.run(within: 60, until: { started.allSatisfy { $0.status()?.presence == "online" } }) else {
            throw LabError.notReady("\(names.count) clients")
        }
        return started
    }

    /// Registers and starts a supernode that is not one of the profile's defaults (one joining the
    /// network later); it bootstraps through the defaults that are up.
    @discardableResult
    public func startExtraSupernode(_ name: String, address: String) throws -> InMemoryNode {
        try register(name)
        let node = try network.start(name, password: Self.password(name), address: address, supernode: .always)
        guard network.run(within: 30, until: { node.status()?.role == "supernode" && (node.status()?.dhtContacts ?? 0) > 0 }) else {
            throw LabError.notReady(name)
        }
        return node
    }

    public static func password(_ name: String) -> String { "password-\(name)-long-enough" }

    public enum LabError: Error, CustomStringConvertible {
        case registrationFailed(String)
        case notReady(String)

        public var description: String {
            switch self {
            case let .registrationFailed(name): return "could not register \(name)"
            case let .notReady(what): return "\(what) did not come up in time"
            }
        }
    }

    /// One login connection's worth of work: the framed request through `LoginConnection` and
    /// `LoginAuthority`, as the login server's socket adapter does it.
    static func serve(_ request: [UInt8], authority: LoginAuthority, from source: HostPort, now: Double) -> [UInt8] {
        var connection = LoginConnection()
        var answer: [UInt8] = []
        var pending = connection.receive(request)
        while !pending.isEmpty {
            switch pending.removeFirst() {
            case let .process(sealed): pending += connection.completed(authority.handle(sealed, from: source.description, now: now))
            case let .send(bytes): answer += bytes
            case .close: pending = []
            }
        }
        return answer
    }
}
