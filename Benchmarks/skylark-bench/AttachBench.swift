import ArgumentParser
import Foundation
import NIOCore
import NIOPosix
import SkylarkCrypto
import SkylarkOverlay
import SkylarkWire
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// One real supernode process holding many attached, idle clients that send keepalives.
///
/// In a temporary folder the bench runs the real executables found next to it: `skylark-login
/// init` + `serve` on 127.0.0.1, `skylark register` for the supernode's user, and `skylark run
/// --supernode always`. It then issues credentials for N fresh Ed25519 identities itself, signing
/// them with the login server's key (the supernode only checks that signature), opens N links
/// from this process (SwiftNIO, `SecureLink` as a PEER initiator, a bounded number of handshakes
/// at a time), sends `Attach` on each and waits for `Attached`, then keeps every link idle with a
/// `Ping` every `--keepalive` seconds. The supernode's memory comes from /proc/PID/status (VmRSS
/// and its anonymous part RssAnon): after it settled with no clients, after all N attached and
/// after the idle period; per client = (after − baseline) / N. Its CPU time during the idle
/// period comes from /proc/PID/stat, the attached count from its own `skylark status --json`.
struct AttachBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "attach",
        abstract: "Memory per attached idle client of one real supernode process (N links with keepalives).")

    @Option(help: "Clients to attach.") var clients = 5000
    @Option(help: "Seconds to keep the clients idle (pings only) before the last measurement.") var idleSeconds: Double = 30
    @Option(help: "Seconds between a client's pings (the supernode closes links silent for 45 s).") var keepalive: Double = 10
    @Option(help: "Handshakes + attaches in flight at once.") var concurrency = 200
    @Option(help: "Event loop threads of the bench's clients.") var threads = 2
    @Option(help: "Seconds the supernode runs with no client before the baseline is taken.") var settleSeconds: Double = 5
    @Option(help: "RSA key size of the login server.") var keyBits = 2048
    @Flag(help: "Print the report as one JSON object on stdout (progress still goes to stderr).") var json = false
    @Flag(help: "Keep the temporary folder (logs, state) after the run.") var keep = false

    func validate() throws {
        guard clients >= 1, idleSeconds >= 0, keepalive > 0, concurrency >= 1, (1...16).contains(threads), settleSeconds >= 0 else {
            throw ValidationError("clients, concurrency and threads must be at least 1; times must not be negative")
        }
    }

    func run() async throws {
        let supervisor = AttachSupervisor.shared
        supervisor.installSignalHandlers()
        let started = Date()
        do {
            let report = try await measure(supervisor: supervisor)
            supervisor.cleanUp(keepDirectory: keep)
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                print(String(decoding: try encoder.encode(report), as: UTF8.self))
            } else {
                print(report.table)
            }
            attachProgress("done in \(attachFormat(Date().timeIntervalSince(started), 1)) s")
            if !report.passed { throw ExitCode(2) }
        } catch let exit as ExitCode {
            throw exit
        } catch {
            supervisor.showLogs()
            supervisor.cleanUp(keepDirectory: keep)
            throw error
        }
    }

    // MARK: - The run

    private func measure(supervisor: AttachSupervisor) async throws -> AttachReport {
        let bin = try AttachSupervisor.executableDirectory()
        let skylark = bin + "/skylark"
        let login = bin + "/skylark-login"
        for tool in [skylark, login] where !FileManager.default.isExecutableFile(atPath: tool) {
            throw AttachFailure("\(tool) is missing: build it (swift build -c release --product \(URL(fileURLWithPath: tool).lastPathComponent))")
        }
        // This process (N client sockets) and the supernode it spawns (N accepted sockets).
        let descriptors = try BenchSetup.raiseDescriptorLimit(wanted: 2 * clients + 1024, needed: clients + 512)
        attachProgress("descriptor limit (inherited by the supernode): \(descriptors)")

        let work = try supervisor.makeDirectory()
        attachProgress("work folder \(work)")
        let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        do {
            let report = try await measure(supervisor: supervisor, group: group, work: work, skylark: skylark, login: login)
            try? await group.shutdownGracefully()
            return report
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
    }

    private func measure(supervisor: AttachSupervisor, group: MultiThreadedEventLoopGroup, work: String, skylark: String, login: String) async throws
        -> AttachReport
    {

        // Login server.
        let password = "idle-bench-password"
        let loginServer = try await BenchSetup.startLoginServer(
            supervisor: supervisor, group: group, work: work, skylark: skylark, login: login, keyBits: keyBits, supernode: "idlesn", password: password)
        let profile = loginServer.profile
        let signer = loginServer.signer

        // Client credentials, signed here with the login server's key.
        let issueStart = Date()
        let identities = try BenchSetup.issueIdentities(names: (1...clients).map { String(format: "idle%05d", $0) }, signer: signer)
        attachProgress("issued \(clients) credentials in \(attachFormat(Date().timeIntervalSince(issueStart), 1)) s")

        // The supernode.
        let port = try await BenchSetup.freePort(group: group)
        let snState = work + "/sn"
        let supernode = try supervisor.spawn(
            "skylark run idlesn", skylark,
            [
                "run", "idlesn", "--network", profile, "--state", snState, "--supernode", "always",
                "--listen", "127.0.0.1:\(port)", "--no-console",
            ],
            environment: ["SKYLARK_PASSWORD": password], log: work + "/sn.log")
        let pid = supernode.processIdentifier
        try await supervisor.waitFor("the supernode to serve", timeout: 60, process: supernode) {
            (try? supervisor.status(skylark, state: snState))?.role == "supernode"
        }
        attachProgress("supernode up (pid \(pid), 127.0.0.1:\(port)); settling \(attachFormat(settleSeconds, 0)) s")
        let settleCPU0 = try AttachProc.cpuSeconds(pid)
        try await Task.sleep(for: .seconds(settleSeconds))
        let settleCPU1 = try AttachProc.cpuSeconds(pid)
        let baseline = try AttachProc.memory(pid)
        attachProgress("baseline: VmRSS \(attachFormat(baseline.vmRSSMiB, 1)) MiB, RssAnon \(attachFormat(baseline.rssAnonMiB, 1)) MiB")

        // Attach.
        let stats = AttachClientStats()
        let verifier = Verifier(loginKey: signer.publicKey)
        let attachStart = Date()
        let attachCPU0 = try AttachProc.cpuSeconds(pid)
        let (channels, failures) = try await attachAll(
            identities: identities, port: port, verifier: verifier, stats: stats, group: group, supervisor: supervisor,
            supernode: supernode)
        let attachSeconds = Date().timeIntervalSince(attachStart)
        if !failures.isEmpty {
            throw AttachFailure("\(failures.count) of \(clients) clients could not attach; first: \(failures[0])")
        }
        attachProgress("\(channels.count) clients attached in \(attachFormat(attachSeconds, 1)) s; waiting for the supernode to count them")
        var attachedSeen = 0
        try await supervisor.waitFor("the supernode to report \(clients) attached clients", timeout: 30, process: supernode) {
            attachedSeen = (try? supervisor.status(skylark, state: snState))?.attachedClients ?? -1
            return attachedSeen == clients
        }
        let attachCPU1 = try AttachProc.cpuSeconds(pid)
        let afterAttach = try AttachProc.memory(pid)
        attachProgress("all attached: VmRSS \(attachFormat(afterAttach.vmRSSMiB, 1)) MiB, RssAnon \(attachFormat(afterAttach.rssAnonMiB, 1)) MiB")

        // Idle with keepalives.
        let drops0 = stats.drops.load(ordering: .relaxed)
        let pings0 = stats.pingsSent.load(ordering: .relaxed)
        let pongs0 = stats.pongs.load(ordering: .relaxed)
        let idleCPU0 = try AttachProc.cpuSeconds(pid)
        let idleStart = Date()
        var remaining = idleSeconds
        while remaining > 0 {
            let step = min(10, remaining)
            try await Task.sleep(for: .seconds(step))
            remaining -= step
            guard supernode.isRunning else { throw AttachFailure("the supernode exited during the idle period") }
            attachProgress(
                "  idle \(attachFormat(idleSeconds - remaining, 0))/\(attachFormat(idleSeconds, 0)) s: pings \(stats.pingsSent.load(ordering: .relaxed) - pings0), "
                    + "pongs \(stats.pongs.load(ordering: .relaxed) - pongs0), drops \(stats.drops.load(ordering: .relaxed) - drops0)")
        }
        let idleCPU1 = try AttachProc.cpuSeconds(pid)
        let idleWall = Date().timeIntervalSince(idleStart)
        let afterIdle = try AttachProc.memory(pid)
        let finalStatus = try supervisor.status(skylark, state: snState)
        let dropsTotal = stats.drops.load(ordering: .relaxed)
        let drops = dropsTotal - drops0
        let pings = stats.pingsSent.load(ordering: .relaxed) - pings0
        let pongs = stats.pongs.load(ordering: .relaxed) - pongs0
        let firstDrop = stats.firstDropReason
        attachProgress(
            "after idle: VmRSS \(attachFormat(afterIdle.vmRSSMiB, 1)) MiB, RssAnon \(attachFormat(afterIdle.rssAnonMiB, 1)) MiB; supernode reports \(finalStatus.attachedClients ?? -1) clients"
        )

        // Stop the supernode before the clients go, so it is not busy with 5,000 departures.
        supervisor.stop(supernode)
        for channel in channels { channel.close(promise: nil) }

        return AttachReport(
            clients: clients, cores: ProcessInfo.processInfo.activeProcessorCount, benchThreads: threads, keepaliveSeconds: keepalive,
            idleSeconds: idleWall, attachSeconds: attachSeconds, attachCPUSeconds: attachCPU1 - attachCPU0,
            baseline: baseline, attached: afterAttach, idle: afterIdle,
            attachedReportedAfterAttach: attachedSeen, attachedReportedAfterIdle: finalStatus.attachedClients ?? -1,
            dropsDuringIdle: drops, dropsTotal: dropsTotal, firstDropReason: firstDrop, pingsDuringIdle: pings, pongsDuringIdle: pongs,
            idleCPUSeconds: idleCPU1 - idleCPU0, settleCPUSeconds: settleCPU1 - settleCPU0, settleSeconds: settleSeconds,
            supernodeThreads: afterIdle.threads
        ).finished()
    }

    /// Opens every client link, at most `concurrency` handshakes at a time; returns the attached
    /// channels and the reasons of those that failed.
    private func attachAll(
        identities: [LocalIdentity], port: Int, verifier: Verifier, stats: AttachClientStats, group: MultiThreadedEventLoopGroup,
        supervisor: AttachSupervisor, supernode: Process
    ) async throws -> ([any Channel], [String]) {
        let keepalive = TimeAmount.nanoseconds(Int64(self.keepalive * 1e9))
        var channels: [any Channel] = []
        var failures: [String] = []
        channels.reserveCapacity(identities.count)
        try await withThrowingTaskGroup(of: Result<any Channel, AttachFailure>.self) { tasks in
            var next = 0
            func addNext() {
                let identity = identities[next]
                let loop = group.next()
                tasks.addTask {
                    await Self.connect(identity: identity, port: port, verifier: verifier, stats: stats, keepalive: keepalive, loop: loop)
                }
                next += 1
            }
            while next < min(concurrency, identities.count) { addNext() }
            var done = 0
            let step = max(1, identities.count / 10)
            while let result = try await tasks.next() {
                done += 1
                switch result {
                case let .success(channel): channels.append(channel)
                case let .failure(failure): failures.append(failure.description)
                }
                if next < identities.count { addNext() }
                if done % step == 0 || done == identities.count {
                    attachProgress("  attached \(channels.count)/\(identities.count)\(failures.isEmpty ? "" : ", \(failures.count) failed")")
                }
                if done % 500 == 0, !supernode.isRunning { throw AttachFailure("the supernode exited while clients attached") }
            }
        }
        return (channels, failures)
    }

    private static func connect(
        identity: LocalIdentity, port: Int, verifier: Verifier, stats: AttachClientStats, keepalive: TimeAmount,
        loop: any EventLoop
    ) async -> Result<any Channel, AttachFailure> {
        let attached = loop.makePromise(of: Void.self)
        do {
            let channel = try await ClientBootstrap(group: loop)
                .connectTimeout(.seconds(10))
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let link = try SecureLink(role: .initiator(purpose: .peer), identity: identity, verifier: verifier)
                        try channel.pipeline.syncOperations.addHandler(IdleClientHandler(link: link, attached: attached, stats: stats, keepalive: keepalive))
                    }
                }
                .connect(host: "127.0.0.1", port: port)
                .get()
            do {
                try await attached.futureResult.get()
                return .success(channel)
            } catch {
                channel.close(promise: nil)
                return .failure(AttachFailure("\(identity.name ?? "?"): \(error)"))
            }
        } catch {
            attached.fail(error)  // never left pending
            return .failure(AttachFailure("\(identity.name ?? "?"): connect: \(error)"))
        }
    }
}

// MARK: - Client links

struct AttachFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

final class AttachClientStats: Sendable {
    let pingsSent = Atomic<Int>(0)
    let pongs = Atomic<Int>(0)
    let drops = Atomic<Int>(0)
    private let dropReason = Mutex<String?>(nil)

    func dropped(_ reason: String) {
        drops.wrappingAdd(1, ordering: .relaxed)
        dropReason.withLock { if $0 == nil { $0 = reason } }
    }

    var firstDropReason: String? { dropReason.withLock { $0 } }
}

/// One idle client: drives `SecureLink` as a PEER initiator, attaches, then pings every
/// `keepalive` (the first at a random moment within it, so the pings spread out).
final class IdleClientHandler: ChannelInboundHandler, SealingLinkHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    static let attachRequestID: UInt64 = 1
    var link: SecureLink
    private let attached: EventLoopPromise<Void>
    private let stats: AttachClientStats
    private let keepalive: TimeAmount
    private var context: ChannelHandlerContext?
    private var pinger: RepeatedTask?
    private var isAttached = false
    private var settled = false
    var closeReason: String?
    private var nextPingID: UInt64 = 2

    init(link: SecureLink, attached: EventLoopPromise<Void>, stats: AttachClientStats, keepalive: TimeAmount) {
        self.link = link
        self.attached = attached
        self.stats = stats
        self.keepalive = keepalive
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func channelActive(context: ChannelHandlerContext) {
        perform(link.start(), context: context)
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        context.eventLoop.scheduleTask(in: .seconds(20)) {
            if !handler.value.settled {
                handler.value.settle(.failure(AttachFailure("no Attached answer within 20 s")))
                handler.value.context?.close(promise: nil)
            }
        }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        perform(link.receive(buffer.readableBytesView, now: Date().timeIntervalSince1970), context: context)
    }

    func channelInactive(context: ChannelHandlerContext) {
        pinger?.cancel()
        pinger = nil
        let reason = closeReason ?? "closed by the supernode"
        if isAttached { stats.dropped(reason) }
        settle(.failure(AttachFailure("link closed before Attached: \(reason)")))
        self.context = nil
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        closeReason = closeReason ?? "\(error)"
        context.close(promise: nil)
    }

    private func settle(_ result: Result<Void, AttachFailure>) {
        guard !settled else { return }
        settled = true
        switch result {
        case .success: attached.succeed()
        case let .failure(failure): attached.fail(failure)
        }
    }

    private func ping() {
        guard let context, link.isEstablished else { return }
        sendPing(id: nextPingID, context: context)
        nextPingID += 1
        stats.pingsSent.wrappingAdd(1, ordering: .relaxed)
    }

    private func perform(_ actions: [SecureLink.Action], context: ChannelHandlerContext) {
        for action in actions {
            switch action {
            case let .send(bytes):
                context.writeAndFlush(wrapOutboundOut(ByteBuffer(bytes: bytes)), promise: nil)
            case .established:
                var message = OvLinkMessage()
                message.id = Self.attachRequestID
                message.attach = OvAttach()
                seal(message, context: context)
            case let .message(message):
                switch message.body {
                case .attached? where message.id == Self.attachRequestID:
                    isAttached = true
                    settle(.success(()))
                    let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
                    let first = TimeAmount.nanoseconds(Int64.random(in: 0..<max(1, keepalive.nanoseconds)))
                    pinger = context.eventLoop.scheduleRepeatedTask(initialDelay: first, delay: keepalive) { _ in handler.value.ping() }
                case .pong?:
                    stats.pongs.wrappingAdd(1, ordering: .relaxed)
                case let .refused(refused)?:
                    closeReason = "refused: \(refused.reason)"
                    context.close(promise: nil)
                case .ping?:
                    answerPing(message, context: context)
                default:
                    break  // handovers and the like: an idle client ignores them
                }
            case let .close(error):
                closeReason = error.description
                context.close(promise: nil)
            case .upgraded, .dialBack:
                break
            }
        }
    }
}

/// Identities made on several threads, each slot written once.
final class AttachIdentityBox: @unchecked Sendable {
    private let lock = NSLock()
    private var slots: [Result<LocalIdentity, AttachFailure>?]

    init(count: Int) { slots = Array(repeating: nil, count: count) }

    func set(_ index: Int, _ value: Result<LocalIdentity, AttachFailure>) {
        lock.lock()
        slots[index] = value
        lock.unlock()
    }

    func values() throws -> [LocalIdentity] {
        lock.lock()
        defer { lock.unlock() }
        return try slots.map { slot in
            guard let slot else { throw AttachFailure("an identity was not made") }
            return try slot.get()
        }
    }
}

// MARK: - The supernode's process

struct AttachMemory: Codable {
    var vmRSSKiB: Int
    var rssAnonKiB: Int
    var rssFileKiB: Int
    var vmHWMKiB: Int
    var threads: Int
    /// System-wide kernel slab (/proc/meminfo Slab and its unreclaimable part): socket structures
    /// of both ends of every link live there, outside any process's RSS. Indicative only.
    var systemSlabKiB: Int
    var systemSUnreclaimKiB: Int

    var vmRSSMiB: Double { Double(vmRSSKiB) / 1024 }
    var rssAnonMiB: Double { Double(rssAnonKiB) / 1024 }
}

enum AttachProc {
    static func memory(_ pid: Int32) throws -> AttachMemory {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { throw AttachFailure("cannot read /proc/\(pid)/status") }
        func field(_ name: String) -> Int {
            guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix(name + ":") }) else { return -1 }
            return Int(line.dropFirst(name.count + 1).split(whereSeparator: { $0 == " " || $0 == "\t" }).first ?? "") ?? -1
        }
        let meminfo = (try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8)) ?? ""
        func system(_ name: String) -> Int {
            guard let line = meminfo.split(separator: "\n").first(where: { $0.hasPrefix(name + ":") }) else { return -1 }
            return Int(line.dropFirst(name.count + 1).split(whereSeparator: { $0 == " " || $0 == "\t" }).first ?? "") ?? -1
        }
        return AttachMemory(
            vmRSSKiB: field("VmRSS"), rssAnonKiB: field("RssAnon"), rssFileKiB: field("RssFile"), vmHWMKiB: field("VmHWM"),
            threads: field("Threads"), systemSlabKiB: system("Slab"), systemSUnreclaimKiB: system("SUnreclaim"))
    }

    /// User + system CPU seconds of the process so far.
    static func cpuSeconds(_ pid: Int32) throws -> Double {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = text.lastIndex(of: ")")
        else { throw AttachFailure("cannot read /proc/\(pid)/stat") }
        // After "pid (comm) ": state is field 3, utime field 14, stime field 15.
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { throw AttachFailure("cannot parse /proc/\(pid)/stat") }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
}

/// The processes the bench started and its temporary folder; stopped and removed on every exit
/// path, including SIGINT and SIGTERM.
final class AttachSupervisor: @unchecked Sendable {
    static let shared = AttachSupervisor()

    private let lock = NSLock()
    private var children: [(label: String, process: Process, log: String?)] = []
    private var directory: String?
    private var signalSources: [any DispatchSourceSignal] = []

    struct NodeStatus: Decodable {
        var role: String
        var attachedClients: Int?
    }

    static func executableDirectory() throws -> String {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return URL(fileURLWithPath: exe).standardizedFileURL.deletingLastPathComponent().path
    }

    func installSignalHandlers() {
        for number in [SIGINT, SIGTERM] {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { [self] in
                FileHandle.standardError.write(Data("skylark-bench: signal \(number), stopping what the bench started\n".utf8))
                cleanUp(keepDirectory: false)
                exit(128 + number)
            }
            source.resume()
            lock.lock()
            signalSources.append(source)
            lock.unlock()
        }
    }

    func makeDirectory() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("skylark-attach-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        lock.lock()
        directory = path
        lock.unlock()
        return path
    }

    /// Starts a long-running child with its output in `log`.
    func spawn(_ label: String, _ executable: String, _ arguments: [String], environment: [String: String] = [:], log: String) throws -> Process {
        guard FileManager.default.createFile(atPath: log, contents: nil) else { throw AttachFailure("cannot create \(log)") }
        let output = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        defer { try? output.close() }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = output
        process.standardError = output
        lock.lock()
        defer { lock.unlock() }
        try process.run()
        children.append((label, process, log))
        return process
    }

    /// Runs a short command to completion; throws with its output if it fails.
    @discardableResult
    func runTool(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws -> String {
        let process = Process()
        let pipe = Pipe()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = pipe
        process.standardError = pipe
        lock.lock()
        do { try process.run() } catch { lock.unlock(); throw error }
        children.append(("\(URL(fileURLWithPath: executable).lastPathComponent) \(arguments.first ?? "")", process, nil))
        lock.unlock()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        lock.lock()
        children.removeAll { $0.process === process }
        lock.unlock()
        guard process.terminationStatus == 0 else {
            throw AttachFailure(
                "\(URL(fileURLWithPath: executable).lastPathComponent) \(arguments.joined(separator: " ")) failed (exit \(process.terminationStatus)): \(output)"
            )
        }
        return output
    }

    func status(_ skylark: String, state: String) throws -> NodeStatus {
        struct Answer: Decodable { var ok: Bool; var result: NodeStatus? }
        let output = try runTool(skylark, ["status", "--state", state, "--json"])
        let answer = try JSONDecoder().decode(Answer.self, from: Data(output.utf8))
        guard answer.ok, let result = answer.result else { throw AttachFailure("status refused: \(output)") }
        return result
    }

    /// Polls `condition` every 200 ms; fails if `process` exits or the time runs out.
    func waitFor(_ what: String, timeout: Double, process: Process, _ condition: () -> Bool) async throws {
        let deadline = Date().addingTimeInterval(timeout)
        while !condition() {
            guard process.isRunning else { throw AttachFailure("\(what): the process exited (status \(process.terminationStatus))") }
            guard Date() < deadline else { throw AttachFailure("\(what): not within \(Int(timeout)) s") }
            try await Task.sleep(for: .milliseconds(200))
        }
    }

    /// SIGTERM by PID, up to 10 s to exit, then SIGKILL.
    func stop(_ process: Process) {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGTERM)
        let deadline = Date().addingTimeInterval(10)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }

    func showLogs() {
        lock.lock()
        let logs = children.compactMap { child in child.log.map { (child.label, $0) } }
        lock.unlock()
        for (label, path) in logs {
            let lines = ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").suffix(15)
            FileHandle.standardError.write(Data("--- \(label) (\(path)), last lines:\n\(lines.joined(separator: "\n"))\n".utf8))
        }
    }

    /// Stops every child still running (newest first) and removes the folder.
    func cleanUp(keepDirectory: Bool) {
        lock.lock()
        let running = children.reversed().map(\.process)
        children = []
        let folder = directory
        directory = nil
        lock.unlock()
        for process in running { stop(process) }
        if let folder {
            if keepDirectory { FileHandle.standardError.write(Data("kept \(folder)\n".utf8)) } else { try? FileManager.default.removeItem(atPath: folder) }
        }
    }
}

// MARK: - Report

struct AttachReport: Codable {
    var clients: Int
    var cores: Int
    var benchThreads: Int
    var keepaliveSeconds: Double
    var idleSeconds: Double
    var attachSeconds: Double
    var attachCPUSeconds: Double
    var baseline: AttachMemory
    var attached: AttachMemory
    var idle: AttachMemory
    var attachedReportedAfterAttach: Int
    var attachedReportedAfterIdle: Int
    var dropsDuringIdle: Int
    var dropsTotal: Int
    var firstDropReason: String?
    var pingsDuringIdle: Int
    var pongsDuringIdle: Int
    var idleCPUSeconds: Double
    var settleCPUSeconds: Double
    var settleSeconds: Double
    var supernodeThreads: Int

    var bytesPerClientAttachedRSS = 0.0
    var bytesPerClientAttachedAnon = 0.0
    var bytesPerClientIdleRSS = 0.0
    var bytesPerClientIdleAnon = 0.0
    var passed = false

    static let targetBytesPerClient = 20_000.0

    /// Bytes per client of VmRSS and RssAnon growth from the baseline to `memory`.
    func perClient(_ memory: AttachMemory) -> (rss: Double, anon: Double) {
        (Double(memory.vmRSSKiB - baseline.vmRSSKiB) * 1024 / Double(clients), Double(memory.rssAnonKiB - baseline.rssAnonKiB) * 1024 / Double(clients))
    }

    /// Fills in the derived figures.
    func finished() -> AttachReport {
        var report = self
        (report.bytesPerClientAttachedRSS, report.bytesPerClientAttachedAnon) = perClient(attached)
        (report.bytesPerClientIdleRSS, report.bytesPerClientIdleAnon) = perClient(idle)
        report.passed = report.bytesPerClientIdleRSS <= Self.targetBytesPerClient && attachedReportedAfterIdle == clients && dropsTotal == 0
        return report
    }

    var table: String {
        func mib(_ kib: Int) -> String { attachFormat(Double(kib) / 1024, 1) }
        func row(_ label: String, _ memory: AttachMemory, perClient: Bool) -> String {
            let label = label.padding(toLength: 26, withPad: " ", startingAt: 0)
            var line = "\(label) | \(mib(memory.vmRSSKiB).leftPadded(9)) | \(mib(memory.rssAnonKiB).leftPadded(11))"
            if perClient {
                let (rss, anon) = self.perClient(memory)
                line += " | \(attachFormat(rss, 0).leftPadded(14)) | \(attachFormat(anon, 0).leftPadded(15))"
            } else {
                line += " | \("-".leftPadded(14)) | \("-".leftPadded(15))"
            }
            return line
        }
        let idleCPUShare = idleSeconds > 0 ? 100 * idleCPUSeconds / idleSeconds : 0
        let settleCPUShare = settleSeconds > 0 ? 100 * settleCPUSeconds / settleSeconds : 0
        let perClientIdle = bytesPerClientIdleRSS
        var lines: [String] = []
        lines.append(
            "supernode: \(clients) attached idle clients, keepalive every \(attachFormat(keepaliveSeconds, 0)) s, \(cores) cores (one real `skylark run --supernode always` process)"
        )
        lines.append("")
        lines.append("supernode memory           | VmRSS MiB | RssAnon MiB | RSS bytes/client | anon bytes/client")
        lines.append("---------------------------|-----------|-------------|------------------|------------------")
        lines.append(row("baseline (no client)", baseline, perClient: false))
        lines.append(row("all \(clients) attached", attached, perClient: true))
        lines.append(row("after \(attachFormat(idleSeconds, 0)) s idle", idle, perClient: true))
        lines.append("")
        lines.append(
            "per client after the idle period: \(attachFormat(perClientIdle, 0)) bytes = \(attachFormat(perClientIdle / 1024, 2)) KiB of VmRSS "
                + "(target ≤ 20 KB: \(perClientIdle <= Self.targetBytesPerClient ? "met" : "NOT met"))")
        lines.append(
            "attach: \(clients) handshakes + attaches in \(attachFormat(attachSeconds, 1)) s (\(attachFormat(Double(clients) / max(attachSeconds, 0.001), 0))/s); "
                + "supernode CPU \(attachFormat(attachCPUSeconds, 2)) s")
        lines.append("supernode status: attachedClients \(attachedReportedAfterAttach) after attach, \(attachedReportedAfterIdle) after the idle period")
        lines.append(
            "idle period: \(attachFormat(idleSeconds, 1)) s, \(pingsDuringIdle) pings, \(pongsDuringIdle) pongs, \(dropsDuringIdle) links dropped "
                + "(\(dropsTotal) in the whole run\(firstDropReason.map { "; first: \($0)" } ?? ""))")
        lines.append(
            "supernode CPU while idle: \(attachFormat(idleCPUSeconds, 2)) s over \(attachFormat(idleSeconds, 1)) s (\(attachFormat(idleCPUShare, 1)) % of one core); "
                + "with no client \(attachFormat(settleCPUSeconds, 2)) s over \(attachFormat(settleSeconds, 1)) s (\(attachFormat(settleCPUShare, 1)) %)")
        let slab = Double(idle.systemSlabKiB - baseline.systemSlabKiB) * 1024 / Double(2 * clients)
        let unreclaimable = Double(idle.systemSUnreclaimKiB - baseline.systemSUnreclaimKiB) * 1024 / Double(2 * clients)
        lines.append(
            "kernel (system-wide, outside RSS, indicative): slab +\(attachFormat(Double(idle.systemSlabKiB - baseline.systemSlabKiB) / 1024, 1)) MiB "
                + "for \(2 * clients) sockets (both ends) = \(attachFormat(slab, 0)) bytes/socket, of which unreclaimable \(attachFormat(unreclaimable, 0))")
        lines.append(
            "supernode threads: \(supernodeThreads); peak RSS (VmHWM) \(mib(idle.vmHWMKiB)) MiB; RssFile \(mib(baseline.rssFileKiB)) -> \(mib(idle.rssFileKiB)) MiB"
        )
        return lines.joined(separator: "\n")
    }
}

private extension String {
    func leftPadded(_ width: Int) -> String { count >= width ? self : String(repeating: " ", count: width - count) + self }
}

private func attachFormat(_ value: Double, _ decimals: Int) -> String { String(format: "%.\(decimals)f", value) }

private func attachProgress(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}
