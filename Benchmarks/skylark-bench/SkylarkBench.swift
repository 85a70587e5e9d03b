import ArgumentParser
import Foundation
import Logging
import NIOCore
import NIOPosix
import SkylarkCrypto
import SkylarkLoginServer
import SkylarkNode
import SkylarkWire

/// Benchmarks that compare Skylark against an anchor measured in the same run.
@main
struct SkylarkBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "skylark-bench",
        abstract: "Skylark benchmarks (see Docs/PERFORMANCE.md).",
        subcommands: [
            LoginRate.self, OverlayBench.self, AttachBench.self, AudioMatch.self, AudioTones.self, AudioDelay.self, RelayBench.self, MediaBench.self,
            MixerBench.self, VoiceProcessingBench.self,
            MemoryScaleBench.self,
        ])
}

/// Logins per second through the real login server (TCP on loopback, full exchange) against the
/// rate the same number of threads reach doing only the server's own crypto per login: one RSA
/// private operation (unwrapping the session key) plus one scrypt password hash.
struct LoginRate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "login")

    @Option(help: "Server crypto threads to measure; repeat for several (default: 1 and every core).")
    var workers: [Int] = []
    @Option(help: "Seconds per measurement.") var seconds: Double = 10
    @Option(help: "RSA key size of the login server.") var keyBits = 3072
    @Option(help: "Concurrent clients per worker thread.") var clientsPerWorker = 4

    func run() async throws {
        LoggingSystem.bootstrap { _ in SwiftLogNoOpLogHandler() }
        let logger = Logger(label: "bench")
        let cores = ProcessInfo.processInfo.activeProcessorCount
        let counts = workers.isEmpty ? Array(Set([1, cores])).sorted() : workers
        let key = try RSA.PrivateKey(bits: keyBits)
        print("login rate vs crypto-bound rate; RSA-\(keyBits), scrypt N=2^14 r=8 p=1, \(seconds) s per figure, \(cores) cores")
        print("workers | crypto-bound logins/s | real logins/s | ratio | mean login latency")
        for count in counts {
            let anchor = try cryptoBoundRate(key: key, threads: count)
            let (rate, latency) = try await loginRate(key: key, threads: count, logger: logger)
            let line = String(format: "%7d | %21.2f | %13.2f | %4.1f %% | %.1f ms", count, anchor, rate, 100 * rate / anchor, latency * 1000)
            print(line)
        }
    }

    /// `threads` threads each loop over: RSA-OAEP decrypt of a wrapped 32-byte key + scrypt.
    func cryptoBoundRate(key: RSA.PrivateKey, threads: Int) throws -> Double {
        let wrapped = try key.publicKey.encrypt(AESGCM.makeKey())
        let salt = SecureRandom.bytes(16)
        let password = Array("benchmark-password".utf8)
        let deadline = Date().addingTimeInterval(seconds)
        let counter = Counter()
        let start = Date()
        DispatchQueue.concurrentPerform(iterations: threads) { _ in
            while Date() < deadline {
                _ = try! key.decrypt(wrapped)
                _ = try! Scrypt.derive(password: password, salt: salt)
                counter.add(1)
            }
        }
        return Double(counter.value) / Date().timeIntervalSince(start)
    }

    /// A real LoginServer with `threads` crypto threads; `clientsPerWorker * threads` clients
    /// log in over TCP in a loop.
    func loginRate(key: RSA.PrivateKey, threads: Int, logger: Logger) async throws -> (rate: Double, latency: Double) {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("skylark-bench-\(UUID())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try SQLiteAccountStore(path: directory + "/accounts.sqlite")
        let authority = try LoginAuthority(key: key, store: store, logger: logger)
        let pool = NIOThreadPool(numberOfThreads: threads)
        pool.start()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let bound = AsyncStream<Int>.makeStream()
        let server = LoginServer(
            authority: authority, configuration: .init(listen: HostPort(host: "127.0.0.1", port: 0)),
            group: group, threadPool: pool, logger: logger
        ) { address in
            bound.continuation.yield(address.port ?? 0)
        }
        let serverTask = Task { try await server.run() }
        var iterator = bound.stream.makeAsyncIterator()
        guard let port = await iterator.next() else { throw CleanExit.message("server did not start") }

        let profile = try VerifiedProfile(
            document: SignedDocument.sign(
                NetworkProfile(
                    loginAddress: "127.0.0.1:\(port)", loginPublicKey: try key.publicKey.pem(), updateURL: nil,
                    updatePublicKey: nil, supernodes: [], issuedAt: 0), with: key))
        let clients = threads * clientsPerWorker
        var identities: [[UInt8]] = []
        for index in 0..<clients {
            _ = try await LoginClient.perform(.register(name: "bench\(index)", password: "bench-password"), profile: profile, group: group, logger: logger)
            identities.append(try Ed25519.PrivateKey().publicKey().rawRepresentation())
        }

        let deadline = ContinuousClock.now + .seconds(seconds)
        let start = ContinuousClock.now
        let results = try await withThrowingTaskGroup(of: (Int, Duration).self) { tasks in
            for index in 0..<clients {
                let identity = identities[index]
                tasks.addTask {
                    var done = 0
                    var busy = Duration.zero
                    while ContinuousClock.now < deadline {
                        let began = ContinuousClock.now
                        _ = try await LoginClient.perform(
                            .login(name: "bench\(index)", password: "bench-password", userPublicKey: identity),
                            profile: profile, group: group, logger: logger)
                        busy += ContinuousClock.now - began
                        done += 1
                    }
                    return (done, busy)
                }
            }
            var total = 0
            var busy = Duration.zero
            for try await (done, time) in tasks {
                total += done
                busy += time
            }
            return (total, busy)
        }
        let elapsed = ContinuousClock.now - start
        serverTask.cancel()
        _ = try? await serverTask.value
        try await pool.shutdownGracefully()
        try await group.shutdownGracefully()
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let busy = Double(results.1.components.seconds) + Double(results.1.components.attoseconds) / 1e18
        return (Double(results.0) / seconds, busy / Double(max(results.0, 1)))
    }
}

final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    func add(_ n: Int) { lock.lock(); count += n; lock.unlock() }
    var value: Int { lock.lock(); defer { lock.unlock() }; return count }
}
