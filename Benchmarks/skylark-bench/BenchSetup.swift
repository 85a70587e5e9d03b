import Foundation
import NIOCore
import NIOPosix
import SkylarkCrypto
import SkylarkOverlay
import SkylarkWire

#if canImport(Glibc)
    import Glibc
#endif

/// What the process-level benchmarks (`attach`, `relay`) set up the same way: a login server
/// of their own on loopback, a registered supernode account, credentials issued in bulk with the
/// login server's key, free ports and enough file descriptors.
enum BenchSetup {
    /// A login server this bench started, and what its state folder holds.
    struct LoginServer {
        var port: Int
        var profile: String
        var signer: RSA.PrivateKey
    }

    /// Initialises and starts `skylark-login` in `work/login` on a free loopback port, waits until
    /// it listens, and registers `supernode` with `password` (for the bench's supernode to log in).
    static func startLoginServer(
        supervisor: AttachSupervisor, group: MultiThreadedEventLoopGroup, work: String, skylark: String, login: String,
        keyBits: Int, supernode: String, password: String
    ) async throws -> LoginServer {
        let port = try await freePort(group: group)
        let state = work + "/login"
        _ = try supervisor.runTool(login, ["init", "--state", state, "--public-address", "127.0.0.1:\(port)", "--key-bits", "\(keyBits)"])
        let server = try supervisor.spawn(
            "skylark-login", login, ["serve", "--state", state, "--listen", "127.0.0.1:\(port)", "--log-level", "warning"],
            log: work + "/login.log")
        try await supervisor.waitFor("the login server to listen", timeout: 30, process: server) {
            ((try? String(contentsOfFile: work + "/login.log", encoding: .utf8)) ?? "").contains("listening")
        }
        let profile = state + "/network.json"
        _ = try supervisor.runTool(
            skylark, ["register", supernode, "--network", profile, "--state", work + "/sn-register"],
            environment: ["SKYLARK_PASSWORD": password])
        let signer = try RSA.PrivateKey(pem: String(contentsOfFile: state + "/login-key.pem", encoding: .utf8))
        return LoginServer(port: port, profile: profile, signer: signer)
    }

    /// Fresh Ed25519 identities with credentials signed by the login server's key, on every core.
    static func issueIdentities(names: [String], signer: RSA.PrivateKey) throws -> [LocalIdentity] {
        let issuedAt = Int64(Date().timeIntervalSince1970) - 60
        let base = UInt64.random(in: 1...(UInt64.max >> 16)) << 16
        let workers = max(1, ProcessInfo.processInfo.activeProcessorCount)
        let results = AttachIdentityBox(count: names.count)
        DispatchQueue.concurrentPerform(iterations: workers) { worker in
            var index = worker
            while index < names.count {
                do {
                    let key = try Ed25519.PrivateKey()
                    let signed = try Credential.issue(
                        name: names[index], userPublicKey: try key.publicKey().rawRepresentation(), issuedAt: issuedAt,
                        lifetime: 24 * 3600, serial: base + UInt64(index), signer: signer)
                    let credential = try Credential.verify(signed, issuer: signer.publicKey, now: Int64(Date().timeIntervalSince1970))
                    results.set(index, .success(try LocalIdentity(key: key, credential: credential)))
                } catch {
                    results.set(index, .failure(AttachFailure("credential \(names[index]): \(error)")))
                }
                index += workers
            }
        }
        return try results.values()
    }

    /// A loopback port free for TCP and for UDP (a supernode listens on both).
    static func freePort(group: MultiThreadedEventLoopGroup) async throws -> Int {
        for _ in 0..<20 {
            let channel = try await ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).get()
            let port = channel.localAddress?.port ?? 0
            try await channel.close()
            if port > 0, bindable(udp: port) { return port }
        }
        throw AttachFailure("no free port on 127.0.0.1")
    }

    static func bindable(udp port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = UDPSocket.loopback(port: port)
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        } == 0
    }

    /// Raises RLIMIT_NOFILE to `wanted` (this process and the servers it spawns, which inherit
    /// it), or as far as the hard limit allows if that is at least `needed`.
    static func raiseDescriptorLimit(wanted: Int, needed: Int) throws -> Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { throw AttachFailure("getrlimit(RLIMIT_NOFILE) failed: errno \(errno)") }
        if limit.rlim_cur >= rlim_t(wanted) { return Int(limit.rlim_cur) }
        var raised = rlimit(rlim_cur: rlim_t(wanted), rlim_max: max(limit.rlim_max, rlim_t(wanted)))
        if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { return wanted }
        // Not allowed to raise the hard limit: go as far as it allows.
        raised = rlimit(rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max)
        if limit.rlim_max >= rlim_t(needed), setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { return Int(limit.rlim_max) }
        throw AttachFailure(
            """
            need at least \(needed) open files per process (this one and the servers it starts); the hard limit is \
            \(limit.rlim_max) and cannot be raised here (ulimit -Hn, or run as root / raise it in limits.conf)
            """)
    }
}
