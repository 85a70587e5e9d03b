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

/// Relay CPU per datagram and added latency on loopback: one real supernode process against
/// coturn, the same streams at the same rate and size, in one run.
///
/// For each stream count N, three phases, each with N fresh sender sockets paced by
/// `LoadSenders` and the same `LoadReceiver`s:
///
/// 1. **direct**: every stream straight to its receiver (the loopback baseline for latency);
/// 2. **skylark**: a real `skylark run --supernode always` process (the only supernode, so a
///    circuit is one circuit joining two legs on it), 2N links opened from here (a caller and a
///    callee per stream, each attached; callees publish a signed presence), one RelayRequest
///    per caller naming its callee; each callee leg is bound by one packet from its receiver,
///    then every caller sends `0xD6 + leg id + payload` to the supernode's UDP port;
/// 3. **coturn** (`--coturn`): `turnserver` on 127.0.0.1, one allocation and one channel per
///    stream (peer: the stream's receiver), ChannelData from the caller socket.
///
/// The server's CPU (utime + stime from /proc) over the measurement window, divided by the
/// datagrams it relayed in the window, is its CPU per relayed datagram (one received, one sent).
/// Latency is one-way, from the send time in the probe to the receiver's read.
struct RelayBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "relay",
        abstract: "Relay CPU per datagram and added latency of one real supernode, side by side with coturn.")

    @Option(help: "Concurrent streams to measure; repeat for several (default 100, 500, 1000).") var streams: [Int] = []
    @Option(help: "Packets per second per stream.") var rate = 50
    @Option(help: "Pacing tick of the senders, µs (a packet period must be a whole number of ticks).") var tickUs = 100
    @Option(help: "Bytes of a Skylark relay packet (0xD6 + 16-byte leg id + payload); coturn and the direct path carry the same payload.")
    var size = 200
    @Option(help: "Seconds of the measurement window.") var seconds: Double = 20
    @Option(help: "Seconds of traffic before the window.") var warmup: Double = 3
    @Option(help: "Seconds of the direct (no relay) baseline window.") var directSeconds: Double = 10
    @Option(help: "Seconds the server is watched idle (links or allocations up, no traffic) before the load.") var idleSeconds: Double = 5
    @Flag(help: "Also measure coturn (turnserver from apt) with the same streams.") var coturn = false
    @Option(help: "The skylark executable to run as the supernode (default: the one next to this bench).") var skylark: String?
    @Option(help: "turnserver --relay-threads (0: single-threaded mode).") var coturnThreads = 1
    @Option(help: "Sender threads of the load generator.") var senders = 1
    @Option(help: "Receiver threads (one socket each) of the load generator.") var receivers = 1
    @Option(help: "CPU the relay server (supernode, turnserver) is pinned to; the bench keeps to the others (default: the last CPU).")
    var serverCpu: Int?
    @Flag(help: "Pin nothing: server and load generator share all CPUs.") var noPin = false
    @Option(help: "Link handshakes + requests in flight at once.") var concurrency = 100
    @Option(help: "Event loop threads of the bench's links.") var threads = 1
    @Option(help: "RSA key size of the login server.") var keyBits = 2048
    @Flag(help: "Print the results as one JSON object on stdout (progress still goes to stderr).") var json = false
    @Flag(help: "Keep the temporary folder (logs, state) after the run.") var keep = false

    func validate() throws {
        guard rate >= 1, tickUs >= 10, 1_000_000 % rate == 0, (1_000_000 / rate) % tickUs == 0 else {
            throw ValidationError("a packet period (1 s / --rate) must be a whole number of --tick-us")
        }
        guard size >= Probe.relayHeaderByteCount + Probe.byteCount, size <= 1400 else { throw ValidationError("--size must be 41...1400") }
        guard streams.allSatisfy({ $0 >= 1 }), seconds > 0, warmup >= 0, directSeconds > 0, idleSeconds >= 0 else {
            throw ValidationError("bad counts or times")
        }
        guard (1...16).contains(senders), (1...16).contains(receivers), (1...16).contains(threads), concurrency >= 1 else {
            throw ValidationError("bad thread counts")
        }
    }

    var counts: [Int] { streams.isEmpty ? [100, 500, 1000] : streams }

    /// Set once in `measure`, before any server starts.
    private var pinning: (server: Int, generator: String)? {
        get { RelayBench.pinned.withLock { $0 } }
        nonmutating set { RelayBench.pinned.withLock { $0 = newValue } }
    }
    private static let pinned = Mutex<(server: Int, generator: String)?>(nil)

    /// `executable` and `arguments`, run through taskset when the server is pinned.
    private func pinned(_ executable: String, _ arguments: [String]) -> (String, [String]) {
        guard let pinning else { return (executable, arguments) }
        return ("/usr/bin/taskset", ["-c", "\(pinning.server)", executable] + arguments)
    }
    var payloadBytes: Int { size - Probe.relayHeaderByteCount }

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
            relayProgress("done in \(relayFormat(Date().timeIntervalSince(started), 1)) s")
        } catch {
            supervisor.showLogs()
            supervisor.cleanUp(keepDirectory: keep)
            throw error
        }
    }

    // MARK: - The run

    private func measure(supervisor: AttachSupervisor) async throws -> RelayReport {
        let bin = try AttachSupervisor.executableDirectory()
        let skylark = self.skylark ?? bin + "/skylark"
        let login = bin + "/skylark-login"
        for tool in [skylark, login] where !FileManager.default.isExecutableFile(atPath: tool) {
            throw LoadFailure("\(tool) is missing: build it (swift build -c release --product \(URL(fileURLWithPath: tool).lastPathComponent))")
        }
        var turnserver: String?
        var coturnVersion: String?
        if coturn {
            guard FileManager.default.isExecutableFile(atPath: "/usr/bin/turnserver") else {
                throw LoadFailure("/usr/bin/turnserver is missing: apt-get install -y coturn")
            }
            turnserver = "/usr/bin/turnserver"
            coturnVersion = (try? supervisor.runTool("/usr/bin/dpkg-query", ["-W", "-f=${Version}", "coturn"]))
        }
        let cores = ProcessInfo.processInfo.activeProcessorCount
        var pinning: (server: Int, generator: String)?
        if !noPin, cores >= 2, FileManager.default.isExecutableFile(atPath: "/usr/bin/taskset") {
            let server = serverCpu ?? cores - 1
            guard (0..<cores).contains(server) else { throw LoadFailure("--server-cpu must be 0...\(cores - 1)") }
            let generator = (0..<cores).filter { $0 != server }.map(String.init).joined(separator: ",")
            // Every thread of this process now, and those it starts later, keep off the server's CPU.
            try supervisor.runTool("/usr/bin/taskset", ["-a", "-p", "-c", generator, "\(getpid())"])
            pinning = (server, generator)
            relayProgress("relay servers pinned to CPU \(server); this bench (load generator, links) to CPU \(generator)")
        }
        self.pinning = pinning
        let maximum = counts.max() ?? 0
        let limit = try BenchSetup.raiseDescriptorLimit(wanted: 4 * maximum + 1024, needed: 2 * maximum + 512)
        relayProgress("descriptor limit (inherited by the servers): \(limit)")

        let work = try supervisor.makeDirectory()
        relayProgress("work folder \(work)")
        let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        var receiverSet: [LoadReceiver] = []
        do {
            for index in 0..<receivers { receiverSet.append(try LoadReceiver(maximumStreams: maximum, index: index)) }
            let context = try await prepare(supervisor: supervisor, group: group, work: work, skylark: skylark, login: login, maximum: maximum)
            var rows: [RelayRow] = []
            var phase: UInt32 = 1
            for count in counts {
                relayProgress("== \(count) streams")
                let direct = try await runDirect(count: count, receivers: receiverSet, phase: phase)
                phase += 1
                rows.append(direct.row)
                relayProgress(direct.row.summary)
                let relayed = try await runSkylark(
                    count: count, context: context, receivers: receiverSet, phase: phase, baseline: direct.result,
                    supervisor: supervisor, group: group, work: work, skylark: skylark)
                phase += 1
                rows.append(relayed)
                relayProgress(relayed.summary)
                if let turnserver {
                    let turned = try await runCoturn(
                        count: count, receivers: receiverSet, phase: phase, baseline: direct.result,
                        supervisor: supervisor, work: work, turnserver: turnserver)
                    phase += 1
                    rows.append(turned)
                    relayProgress(turned.summary)
                }
            }
            for receiver in receiverSet { receiver.stopAndWait() }
            try? await group.shutdownGracefully()
            return RelayReport(
                cores: ProcessInfo.processInfo.activeProcessorCount, rate: rate, relayPacketBytes: size, payloadBytes: payloadBytes,
                windowSeconds: seconds, directSeconds: directSeconds, warmupSeconds: warmup, senders: senders, receivers: receivers,
                tickMicroseconds: tickUs, serverCPU: pinning?.server, generatorCPUs: pinning?.generator, coturnThreads: coturn ? coturnThreads : nil,
                coturnVersion: coturnVersion, rows: rows)
        } catch {
            for receiver in receiverSet { receiver.stopAndWait() }
            try? await group.shutdownGracefully()
            throw error
        }
    }

    /// What every Skylark phase shares: the login server, the supernode's registered user, and
    /// the client identities (a caller and a callee per stream).
    struct Context: Sendable {
        var profile: String
        var password: String
        var verifier: Verifier
        var callers: [LocalIdentity]
        var callees: [LocalIdentity]
    }

    private func prepare(
        supervisor: AttachSupervisor, group: MultiThreadedEventLoopGroup, work: String, skylark: String, login: String,
        maximum: Int
    ) async throws -> Context {
        let password = "relay-bench-password"
        let loginServer = try await BenchSetup.startLoginServer(
            supervisor: supervisor, group: group, work: work, skylark: skylark, login: login, keyBits: keyBits, supernode: "relaysn", password: password)
        let profile = loginServer.profile
        let signer = loginServer.signer
        let issueStart = Date()
        let identities = try BenchSetup.issueIdentities(
            names: (1...maximum).flatMap { [String(format: "rcaller%05d", $0), String(format: "rcallee%05d", $0)] },
            signer: signer)
        relayProgress("issued \(identities.count) credentials in \(relayFormat(Date().timeIntervalSince(issueStart), 1)) s")
        return Context(
            profile: profile, password: password, verifier: Verifier(loginKey: signer.publicKey),
            callers: stride(from: 0, to: identities.count, by: 2).map { identities[$0] },
            callees: stride(from: 1, to: identities.count, by: 2).map { identities[$0] })
    }

    // MARK: - Phases

    /// Paces `streams` for warmup + window, measuring `server`'s CPU (if any) and this process's
    /// over the window; then drains and collects what the receivers saw.
    private func load(streams: [LoadStream], window: Double, phase: UInt32, server: Int32?, receivers: [LoadReceiver])
        async throws -> (
            result: PhaseResult, sent: Int, sentTotal: Int, errors: Int, lagMs: Double,
            server: (cpu: Double, busiestThread: Double, wall: Double, coreBusy: Double?)?,
            generator: (cpu: Double, busiestThread: Double, wall: Double)
        )
    {
        let start = LoadClock.now() + 100_000_000
        let windowStart = start + UInt64(warmup * 1e9)
        let windowEnd = windowStart + UInt64(window * 1e9)
        let senders = LoadSenders(
            streams: streams, payloadBytes: payloadBytes, rate: rate, tickMicroseconds: tickUs, threads: self.senders, phase: phase,
            start: start, windowStart: windowStart, windowEnd: windowEnd)
        do {
            let me = getpid()
            try await sleep(until: windowStart)
            // Everything the server's CPU did in the window (any process, softirq), to show what
            // else ran there: on a shared machine another job on that CPU disturbs the figures.
            let core = server != nil ? pinning?.server : nil
            let core0 = core.flatMap(ProcCPU.cpuBusy)
            let server0 = server.map { ProcCPU.Snapshot($0) }
            let self0 = ProcCPU.Snapshot(me)
            try await sleep(until: windowEnd)
            let server1 = server.map { ProcCPU.Snapshot($0) }
            let core1 = core.flatMap(ProcCPU.cpuBusy)
            let self1 = ProcCPU.Snapshot(me)
            try await sleep(until: windowEnd + 1_000_000_000)  // in-window packets still on their way
            senders.stopAndWait()
            try await Task.sleep(for: .milliseconds(200))
            let tallies = receivers.compactMap { $0.take(phase: phase) }
            var serverUse: (cpu: Double, busiestThread: Double, wall: Double, coreBusy: Double?)?
            if let server0, let server1 {
                let use = server1.since(server0)
                serverUse = (use.cpu, use.busiestThread, use.wall, core0.flatMap { start in core1.map { $0 - start } })
            }
            return (
                PhaseResult(tallies: tallies, streams: streams.count), senders.sentInWindow, senders.sentTotal, senders.sendErrors, senders.maximumLagMs,
                serverUse, self1.since(self0)
            )
        } catch {
            senders.stopAndWait()
            throw error
        }
    }

    private func sleep(until nanos: UInt64) async throws {
        let now = LoadClock.now()
        if nanos > now { try await Task.sleep(nanoseconds: nanos - now) }
    }

    private func openSenders(count: Int, receiveTimeoutMs: Int? = nil) throws -> [Int32] {
        var sockets: [Int32] = []
        do {
            for _ in 0..<count { sockets.append(try UDPSocket.open(receiveBuffer: nil, receiveTimeoutMs: receiveTimeoutMs)) }
        } catch {
            for fd in sockets { close(fd) }
            throw error
        }
        return sockets
    }

    private func runDirect(count: Int, receivers: [LoadReceiver], phase: UInt32) async throws -> (row: RelayRow, result: PhaseResult) {
        let sockets = try openSenders(count: count)
        defer { for fd in sockets { close(fd) } }
        let streams = (0..<count).map { LoadStream(fd: sockets[$0], destination: receivers[$0 % receivers.count].address, header: [], index: $0) }
        relayProgress("direct: \(count) streams straight to the receivers, \(relayFormat(warmup, 0)) s warm-up + \(relayFormat(directSeconds, 0)) s")
        let outcome = try await load(streams: streams, window: directSeconds, phase: phase, server: nil, receivers: receivers)
        let row = RelayRow(path: "direct", streams: count, wireBytes: payloadBytes, outcome: outcome, idleCPUPerSecond: nil, baseline: nil)
        return (row, outcome.result)
    }

    private func runSkylark(
        count: Int, context: Context, receivers: [LoadReceiver], phase: UInt32, baseline: PhaseResult, supervisor: AttachSupervisor,
        group: MultiThreadedEventLoopGroup, work: String, skylark: String
    ) async throws -> RelayRow {
        let port = try await BenchSetup.freePort(group: group)
        let state = work + "/sn-\(count)-\(phase)"
        let (snExecutable, snArguments) = pinned(
            skylark,
            [
                "run", "relaysn", "--network", context.profile, "--state", state, "--supernode", "always",
                "--listen", "127.0.0.1:\(port)", "--no-console",
            ])
        let supernode = try supervisor.spawn(
            "skylark run relaysn", snExecutable, snArguments,
            environment: ["SKYLARK_PASSWORD": context.password], log: state + ".log")
        let pid = supernode.processIdentifier
        let stats = RelayLinkStats()
        var channels: [any Channel] = []
        do {
            try await supervisor.waitFor("the supernode to serve", timeout: 60, process: supernode) {
                (try? supervisor.status(skylark, state: state))?.role == "supernode"
            }
            relayProgress("skylark: supernode up (pid \(pid), 127.0.0.1:\(port)); opening \(2 * count) links")
            let setupStart = Date()
            let links = try await openLinks(count: count, context: context, port: port, stats: stats, group: group, supernode: supernode)
            channels = links.flatMap { [$0.caller.channel, $0.callee.channel] }
            relayProgress(
                "skylark: \(2 * count) links attached, \(count) presences published in \(relayFormat(Date().timeIntervalSince(setupStart), 1)) s; "
                    + "watching the supernode idle \(relayFormat(idleSeconds, 0)) s")
            let idle0 = ProcCPU.Snapshot(pid)
            try await Task.sleep(nanoseconds: UInt64(idleSeconds * 1e9))
            let idle = ProcCPU.Snapshot(pid).since(idle0)

            let circuitStart = Date()
            let grants = try await requestCircuits(links: links, supernode: supernode)
            relayProgress("skylark: \(grants.count) circuits granted in \(relayFormat(Date().timeIntervalSince(circuitStart), 1)) s")
            guard let udp = grants.first.map(\.udpPort) else { throw LoadFailure("no circuit") }
            let relay = UDPSocket.loopback(port: udp)
            // Each callee leg is bound by one packet from the callee's address (its receiver).
            for (index, grant) in grants.enumerated() {
                var packet = [Probe.relayMarker] + grant.farLeg + [UInt8](repeating: 0, count: Probe.byteCount)
                packet.withUnsafeMutableBytes {
                    Probe.write(into: $0.baseAddress! + Probe.relayHeaderByteCount, phase: Probe.bindPhase, stream: UInt32(index), inWindow: false, time: 0)
                }
                UDPSocket.send(receivers[index % receivers.count].fd, packet, to: relay)
                if index % 200 == 199 { try await Task.sleep(for: .milliseconds(5)) }
            }
            try await Task.sleep(for: .milliseconds(300))
            for receiver in receivers { receiver.expect(legs: grants.map(\.farLeg)) }
            let sockets = try openSenders(count: count)
            defer { for fd in sockets { close(fd) } }
            let streams = grants.enumerated().map {
                LoadStream(fd: sockets[$0.offset], destination: relay, header: [Probe.relayMarker] + $0.element.leg, index: $0.offset)
            }
            relayProgress("skylark: \(count) streams through the supernode, \(relayFormat(warmup, 0)) s warm-up + \(relayFormat(seconds, 0)) s")
            let outcome = try await load(streams: streams, window: seconds, phase: phase, server: pid, receivers: receivers)
            guard supernode.isRunning else { throw LoadFailure("the supernode exited during the load") }
            let drops = stats.drops.load(ordering: .relaxed)
            if drops > 0 { relayProgress("skylark: WARNING \(drops) links dropped (first: \(stats.firstDropReason ?? "?"))") }
            var row = RelayRow(
                path: "skylark", streams: count, wireBytes: size, outcome: outcome, idleCPUPerSecond: idle.cpu / max(idle.wall, 0.001),
                baseline: baseline)
            row.linksDropped = drops
            row.serverThreads = ProcCPU.threads(pid).count
            stats.closing.store(true, ordering: .relaxed)
            for channel in channels { channel.close(promise: nil) }
            supervisor.stop(supernode)
            return row
        } catch {
            stats.closing.store(true, ordering: .relaxed)
            for channel in channels { channel.close(promise: nil) }
            supervisor.stop(supernode)
            throw error
        }
    }

    private func runCoturn(
        count: Int, receivers: [LoadReceiver], phase: UInt32, baseline: PhaseResult, supervisor: AttachSupervisor, work: String,
        turnserver: String
    ) async throws -> RelayRow {
        let port = try await freeUDPPort()
        let log = work + "/turnserver-\(count).log"
        let (turnExecutable, turnArguments) = pinned(
            turnserver,
            [
                "-n", "--no-cli", "--no-tls", "--no-dtls", "--no-tcp", "--no-tcp-relay", "--no-auth", "--allow-loopback-peers",
                "--listening-ip", "127.0.0.1", "--relay-ip", "127.0.0.1", "--listening-port", "\(port)",
                "--relay-threads", "\(coturnThreads)", "--min-port", "10000", "--max-port", "19999",
                "--no-rfc5780", "--no-stun", "--no-software-attribute", "--log-file", log, "--simple-log",
                "--pidfile", work + "/turnserver.pid",
            ])
        let process = try supervisor.spawn("turnserver", turnExecutable, turnArguments, log: work + "/turnserver-\(count).out")
        let pid = process.processIdentifier
        defer { supervisor.stop(process) }
        let server = UDPSocket.loopback(port: port)
        let sockets = try openSenders(count: count, receiveTimeoutMs: 500)
        defer { for fd in sockets { close(fd) } }
        // The first allocation also waits for the server to be up.
        let setupStart = Date()
        var ready = false
        for _ in 0..<20 where !ready {
            guard process.isRunning else { throw LoadFailure("turnserver exited (status \(process.terminationStatus)); see \(log)") }
            do {
                _ = try TurnClient.setUp(fd: sockets[0], server: server, peerPort: receivers[0].port)
                ready = true
            } catch {
                try await Task.sleep(for: .milliseconds(250))
            }
        }
        guard ready else { throw LoadFailure("turnserver did not answer an Allocate on 127.0.0.1:\(port)") }
        for index in 1..<max(count, 1) {
            _ = try TurnClient.setUp(fd: sockets[index], server: server, peerPort: receivers[index % receivers.count].port)
        }
        relayProgress(
            "coturn: turnserver pid \(pid) (127.0.0.1:\(port), --relay-threads \(coturnThreads)): \(count) allocations + channels in "
                + "\(relayFormat(Date().timeIntervalSince(setupStart), 1)) s; watching it idle \(relayFormat(idleSeconds, 0)) s")
        let idle0 = ProcCPU.Snapshot(pid)
        try await Task.sleep(nanoseconds: UInt64(idleSeconds * 1e9))
        let idle = ProcCPU.Snapshot(pid).since(idle0)
        let header = TurnClient.channelDataHeader(length: payloadBytes)
        let streams = (0..<count).map { LoadStream(fd: sockets[$0], destination: server, header: header, index: $0) }
        relayProgress("coturn: \(count) streams through turnserver, \(relayFormat(warmup, 0)) s warm-up + \(relayFormat(seconds, 0)) s")
        let outcome = try await load(streams: streams, window: seconds, phase: phase, server: pid, receivers: receivers)
        guard process.isRunning else { throw LoadFailure("turnserver exited during the load") }
        var row = RelayRow(
            path: "coturn", streams: count, wireBytes: header.count + payloadBytes, outcome: outcome,
            idleCPUPerSecond: idle.cpu / max(idle.wall, 0.001), baseline: baseline)
        row.serverThreads = ProcCPU.threads(pid).count
        return row
    }

    // MARK: - Skylark links

    struct StreamLinks: Sendable {
        var caller: BenchLink
        var callee: BenchLink
        var calleeName: String
        var supernodeUDP: Int
    }

    struct Grant: Sendable {
        var leg: [UInt8]
        var farLeg: [UInt8]
        var udpPort: Int
    }

    /// Per stream: the callee attaches and publishes its presence, then the caller attaches.
    private func openLinks(
        count: Int, context: Context, port: Int, stats: RelayLinkStats, group: MultiThreadedEventLoopGroup,
        supernode: Process
    ) async throws -> [StreamLinks] {
        try await bounded(count: count, supernode: supernode, what: "links") { index in
            let callee = try await BenchLink.open(identity: context.callees[index], port: port, verifier: context.verifier, stats: stats, loop: group.next())
            let attached = try await callee.request { $0.attach = OvAttach() }
            guard case let .attached(answer)? = attached.body else {
                throw LoadFailure("callee \(index + 1): no Attached: \(String(describing: attached.body))")
            }
            guard let udp = HostPort(answer.supernode.udpEndpoint) else { throw LoadFailure("the supernode advertises no UDP endpoint") }
            let now = Date().timeIntervalSince1970
            var record = OvPresenceRecord()
            record.name = context.callees[index].name ?? ""
            record.sequence = UInt64(now * 1000)
            record.publishedAtMs = Int64(now * 1000)
            record.expiresAtMs = Int64((now + 3000) * 1000)
            record.status = .online
            record.supernode = answer.supernode
            record.publicEndpoint = answer.observedEndpoint
            let signed = try SignedRecords.signPresence(record, identity: context.callees[index])
            let stored = try await callee.request { message in
                var publish = OvPublishPresence()
                publish.presence = signed
                message.publishPresence = publish
            }
            guard case .stored? = stored.body else { throw LoadFailure("callee \(index + 1): presence not stored: \(String(describing: stored.body))") }
            let caller = try await BenchLink.open(identity: context.callers[index], port: port, verifier: context.verifier, stats: stats, loop: group.next())
            let callerAttached = try await caller.request { $0.attach = OvAttach() }
            guard case .attached? = callerAttached.body else { throw LoadFailure("caller \(index + 1): no Attached") }
            return StreamLinks(caller: caller, callee: callee, calleeName: record.name, supernodeUDP: udp.port)
        }
    }

    private func requestCircuits(links: [StreamLinks], supernode: Process) async throws -> [Grant] {
        try await bounded(count: links.count, supernode: supernode, what: "circuits") { index in
            let stream = links[index]
            let answer = try await stream.caller.request { message in
                var request = OvRelayRequest()
                request.callID = Data(SecureRandom.bytes(16))
                request.callee = stream.calleeName
                message.relayRequest = request
            }
            guard case let .relayGranted(granted)? = answer.body, granted.legID.count == 16, granted.farLegID.count == 16 else {
                throw LoadFailure("stream \(index + 1): relay refused: \(String(describing: answer.body))")
            }
            return Grant(leg: Array(granted.legID), farLeg: Array(granted.farLegID), udpPort: stream.supernodeUDP)
        }
    }

    /// Runs `work` for 0..<count, at most `concurrency` at a time, results in index order.
    private func bounded<T: Sendable>(count: Int, supernode: Process, what: String, _ work: @escaping @Sendable (Int) async throws -> T) async throws -> [T] {
        var results = [T?](repeating: nil, count: count)
        try await withThrowingTaskGroup(of: (Int, T).self) { tasks in
            var next = 0
            while next < min(concurrency, count) {
                let index = next
                tasks.addTask { (index, try await work(index)) }
                next += 1
            }
            var done = 0
            let step = max(1, count / 5)
            while let (index, value) = try await tasks.next() {
                results[index] = value
                done += 1
                if next < count {
                    let index = next
                    tasks.addTask { (index, try await work(index)) }
                    next += 1
                }
                if done % step == 0 { relayProgress("  \(what): \(done)/\(count)") }
                if done % 200 == 0, !supernode.isRunning { throw LoadFailure("the supernode exited") }
            }
        }
        return results.map { $0! }
    }

    // MARK: - Helpers

    /// A UDP port below the ephemeral range (so the bench's own sockets cannot take it while the
    /// server starts) and above coturn's relay ports (10000-19999).
    private func freeUDPPort() async throws -> Int {
        for _ in 0..<200 {
            let port = Int.random(in: 20_000..<30_000)
            if BenchSetup.bindable(udp: port) { return port }
        }
        throw LoadFailure("no free UDP port in 20000-29999")
    }
}

// MARK: - Links

final class RelayLinkStats: Sendable {
    let drops = Atomic<Int>(0)
    let closing = Atomic<Bool>(false)
    private let reason = Mutex<String?>(nil)

    func dropped(_ why: String) {
        guard !closing.load(ordering: .relaxed) else { return }
        drops.wrappingAdd(1, ordering: .relaxed)
        reason.withLock { if $0 == nil { $0 = why } }
    }

    var firstDropReason: String? { reason.withLock { $0 } }
}

/// One client link to the supernode from the bench: `SecureLink` as a PEER initiator, requests
/// matched to answers by id, a Ping every 10 s, Pongs to the supernode's Pings.
struct BenchLink: Sendable {
    let channel: any Channel
    let handler: BenchLinkHandler

    static func open(identity: LocalIdentity, port: Int, verifier: Verifier, stats: RelayLinkStats, loop: any EventLoop) async throws -> BenchLink {
        let established = loop.makePromise(of: Void.self)
        do {
            let channel = try await ClientBootstrap(group: loop)
                .connectTimeout(.seconds(10))
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let link = try SecureLink(role: .initiator(purpose: .peer), identity: identity, verifier: verifier)
                        try channel.pipeline.syncOperations.addHandler(BenchLinkHandler(link: link, established: established, stats: stats))
                    }
                }
                .connect(host: "127.0.0.1", port: port)
                .get()
            try await established.futureResult.get()
            let handler = try await channel.pipeline.handler(type: BenchLinkHandler.self).get()
            return BenchLink(channel: channel, handler: handler)
        } catch {
            established.fail(error)
            throw error
        }
    }

    func request(_ fill: @escaping @Sendable (inout OvLinkMessage) -> Void) async throws -> OvLinkMessage {
        let handler = self.handler
        return try await channel.eventLoop.flatSubmit { handler.request(fill) }.get()
    }
}

final class BenchLinkHandler: ChannelInboundHandler, SealingLinkHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    var link: SecureLink
    private let established: EventLoopPromise<Void>
    private let stats: RelayLinkStats
    private var context: ChannelHandlerContext?
    private var pending: [UInt64: EventLoopPromise<OvLinkMessage>] = [:]
    private var nextID: UInt64 = 1
    private var pinger: RepeatedTask?
    private var isEstablished = false
    var closeReason: String?

    init(link: SecureLink, established: EventLoopPromise<Void>, stats: RelayLinkStats) {
        self.link = link
        self.established = established
        self.stats = stats
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func channelActive(context: ChannelHandlerContext) {
        perform(link.start(), context: context)
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        context.eventLoop.scheduleTask(in: .seconds(20)) {
            if !handler.value.isEstablished {
                handler.value.established.fail(LoadFailure("no handshake within 20 s"))
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
        if isEstablished { stats.dropped(reason) } else { established.fail(LoadFailure("link closed during the handshake: \(reason)")) }
        for (_, promise) in pending { promise.fail(LoadFailure("link closed: \(reason)")) }
        pending = [:]
        self.context = nil
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        closeReason = closeReason ?? "\(error)"
        context.close(promise: nil)
    }

    /// On the event loop: sends a request and returns its answer (20 s at most).
    func request(_ fill: (inout OvLinkMessage) -> Void) -> EventLoopFuture<OvLinkMessage> {
        guard let context else { return established.futureResult.eventLoop.makeFailedFuture(LoadFailure("link closed")) }
        var message = OvLinkMessage()
        message.id = nextID
        nextID += 1
        fill(&message)
        let promise = context.eventLoop.makePromise(of: OvLinkMessage.self)
        pending[message.id] = promise
        let id = message.id
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        context.eventLoop.scheduleTask(in: .seconds(20)) {
            handler.value.pending.removeValue(forKey: id)?.fail(LoadFailure("no answer within 20 s"))
        }
        seal(message, context: context)
        return promise.futureResult
    }

    private func ping() {
        guard let context, link.isEstablished else { return }
        sendPing(id: nextID, context: context)
        nextID += 1
    }

    private func perform(_ actions: [SecureLink.Action], context: ChannelHandlerContext) {
        for action in actions {
            switch action {
            case let .send(bytes):
                context.writeAndFlush(wrapOutboundOut(ByteBuffer(bytes: bytes)), promise: nil)
            case .established:
                isEstablished = true
                established.succeed()
                let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
                let first = TimeAmount.milliseconds(Int64.random(in: 1_000..<10_000))
                pinger = context.eventLoop.scheduleRepeatedTask(initialDelay: first, delay: .seconds(10)) { _ in handler.value.ping() }
            case let .message(message):
                if let promise = pending.removeValue(forKey: message.id) {
                    promise.succeed(message)
                } else if case .ping? = message.body {
                    answerPing(message, context: context)
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

// MARK: - Report

struct RelayRow: Codable {
    var path: String
    var streams: Int
    /// Bytes of each datagram the generator sends on this path.
    var wireBytes: Int
    var sentInWindow: Int
    var receivedInWindow: Int
    var lossPercent: Double
    var sendErrors: Int
    var streamsWithNothing: Int
    /// Relayed packets that arrived with another leg id than their callee leg's.
    var wrongLegID: Int
    var generatorLagMs: Double
    var windowSeconds: Double
    /// The relay's CPU over the window (nil on the direct path).
    var serverCPUSeconds: Double?
    var serverBusiestThreadSeconds: Double?
    var serverIdleCPUPerSecond: Double?
    var serverThreads: Int?
    var microsecondsPerDatagram: Double?
    /// After taking out what the server spent idle (keepalives, timers) over as long.
    var microsecondsPerDatagramNet: Double?
    var serverCorePercent: Double?
    /// What else ran on the server's CPU in the window (other processes, softirq not charged to
    /// the server), % of that CPU; nil when the server is not pinned.
    var othersOnServerCPUPercent: Double?
    var generatorCPUSeconds: Double
    var generatorMicrosecondsPerDatagram: Double
    var latencyP50: Double?
    var latencyP99: Double?
    var latencyP999: Double?
    var latencyMean: Double?
    var addedP50: Double?
    var addedP99: Double?
    var linksDropped: Int?

    init(
        path: String, streams: Int, wireBytes: Int,
        outcome: (
            result: PhaseResult, sent: Int, sentTotal: Int, errors: Int, lagMs: Double,
            server: (cpu: Double, busiestThread: Double, wall: Double, coreBusy: Double?)?,
            generator: (cpu: Double, busiestThread: Double, wall: Double)
        ),
        idleCPUPerSecond: Double?, baseline: PhaseResult?
    ) {
        self.path = path
        self.streams = streams
        self.wireBytes = wireBytes
        sentInWindow = outcome.sent
        receivedInWindow = outcome.result.receivedInWindow
        lossPercent = outcome.sent > 0 ? 100 * Double(outcome.sent - outcome.result.receivedInWindow) / Double(outcome.sent) : 0
        sendErrors = outcome.errors
        streamsWithNothing = outcome.result.streamsWithNothing
        wrongLegID = outcome.result.wrongLeg
        generatorLagMs = outcome.lagMs
        windowSeconds = outcome.generator.wall
        let relayed = Double(max(outcome.result.receivedInWindow, 1))
        if let server = outcome.server {
            serverCPUSeconds = server.cpu
            serverBusiestThreadSeconds = server.busiestThread
            serverCorePercent = 100 * server.cpu / max(server.wall, 0.001)
            if let busy = server.coreBusy { othersOnServerCPUPercent = max(0, 100 * (busy - server.cpu) / max(server.wall, 0.001)) }
            microsecondsPerDatagram = server.cpu * 1e6 / relayed
            if let idleCPUPerSecond {
                serverIdleCPUPerSecond = idleCPUPerSecond
                microsecondsPerDatagramNet = max(0, server.cpu - idleCPUPerSecond * server.wall) * 1e6 / relayed
            }
        }
        generatorCPUSeconds = outcome.generator.cpu
        generatorMicrosecondsPerDatagram = outcome.generator.cpu * 1e6 / Double(max(outcome.sent, 1))
        latencyP50 = outcome.result.percentile(50)
        latencyP99 = outcome.result.percentile(99)
        latencyP999 = outcome.result.percentile(99.9)
        latencyMean = outcome.result.mean
        if let baseline {
            if let own = latencyP50, let base = baseline.percentile(50) { addedP50 = own - base }
            if let own = latencyP99, let base = baseline.percentile(99) { addedP99 = own - base }
        }
    }

    var summary: String {
        var line = "\(path): \(streams) streams, sent \(sentInWindow), received \(receivedInWindow) (loss \(relayFormat(lossPercent, 3)) %)"
        if let microsecondsPerDatagram, let serverCorePercent {
            line +=
                "; server \(relayFormat(microsecondsPerDatagram, 2)) µs/datagram (net \(relayFormat(microsecondsPerDatagramNet ?? 0, 2))), "
                + "\(relayFormat(serverCorePercent, 1)) % of a core"
            if let othersOnServerCPUPercent { line += " (others on its CPU \(relayFormat(othersOnServerCPUPercent, 1)) %)" }
        }
        line +=
            "; one-way p50 \(relayFormat(latencyP50 ?? 0, 0)) µs, p99 \(relayFormat(latencyP99 ?? 0, 0)) µs; generator \(relayFormat(generatorMicrosecondsPerDatagram, 2)) µs/datagram"
        return line
    }
}

struct RelayReport: Codable {
    var cores: Int
    var rate: Int
    var relayPacketBytes: Int
    var payloadBytes: Int
    var windowSeconds: Double
    var directSeconds: Double
    var warmupSeconds: Double
    var senders: Int
    var receivers: Int
    var tickMicroseconds: Int
    var serverCPU: Int?
    var generatorCPUs: String?
    var coturnThreads: Int?
    var coturnVersion: String?
    var rows: [RelayRow]

    var table: String {
        var lines: [String] = []
        lines.append(
            "relay on 127.0.0.1: \(rate) packets/s per stream, payload \(payloadBytes) B (Skylark packet \(relayPacketBytes) B, "
                + "ChannelData \(payloadBytes + 4) B); window \(relayFormat(windowSeconds, 0)) s (direct \(relayFormat(directSeconds, 0)) s) after "
                + "\(relayFormat(warmupSeconds, 0)) s warm-up; generator \(senders) sender + \(receivers) receiver threads, \(tickMicroseconds) µs pacing tick; \(cores) cores"
                + (serverCPU.map { "; server pinned to CPU \($0), generator to CPU \(generatorCPUs ?? "?")" } ?? "; nothing pinned")
                + (coturnVersion.map { "; coturn \($0), --relay-threads \(coturnThreads ?? 0)" } ?? ""))
        lines.append("")
        lines.append(
            "streams | path    | datagrams/s | relayed in window | loss %  | server µs/datagram (net of idle) | server % of a core (busiest thread) | server idle % | others on server CPU % | one-way p50 / p99 / p99.9 µs | added p50 / p99 µs | generator µs/datagram"
        )
        lines.append(
            "--------|---------|-------------|-------------------|---------|----------------------------------|-------------------------------------|---------------|------------------------|------------------------------|--------------------|----------------------"
        )
        for row in rows {
            let rateText = relayFormat(Double(row.sentInWindow) / max(row.windowSeconds, 0.001), 0)
            var cpu = "-", share = "-", idle = "-", added = "-", others = "-"
            if let perDatagram = row.microsecondsPerDatagram {
                cpu = "\(relayFormat(perDatagram, 2)) (\(relayFormat(row.microsecondsPerDatagramNet ?? 0, 2)))"
                share =
                    "\(relayFormat(row.serverCorePercent ?? 0, 1)) (\(relayFormat(100 * (row.serverBusiestThreadSeconds ?? 0) / max(row.windowSeconds, 0.001), 1)))"
                idle = relayFormat(100 * (row.serverIdleCPUPerSecond ?? 0), 2)
                others = row.othersOnServerCPUPercent.map { relayFormat($0, 1) } ?? "-"
            }
            if let p50 = row.addedP50, let p99 = row.addedP99 { added = "\(relayFormat(p50, 0)) / \(relayFormat(p99, 0))" }
            let latency = "\(relayFormat(row.latencyP50 ?? 0, 0)) / \(relayFormat(row.latencyP99 ?? 0, 0)) / \(relayFormat(row.latencyP999 ?? 0, 0))"
            lines.append(
                [
                    String(row.streams).padded(7), row.path.padded(7), rateText.padded(11), "\(row.receivedInWindow)/\(row.sentInWindow)".padded(17),
                    relayFormat(row.lossPercent, 3).padded(7), cpu.padded(32), share.padded(35), idle.padded(13), others.padded(22), latency.padded(28),
                    added.padded(18),
                    relayFormat(row.generatorMicrosecondsPerDatagram, 2),
                ].joined(separator: " | "))
        }
        var notes: [String] = []
        for row in rows where row.sendErrors > 0 || row.streamsWithNothing > 0 || (row.linksDropped ?? 0) > 0 || row.generatorLagMs > 5 || row.wrongLegID > 0 {
            notes.append(
                "\(row.path) \(row.streams): send errors \(row.sendErrors), streams with nothing received \(row.streamsWithNothing), wrong leg id \(row.wrongLegID), "
                    + "links dropped \(row.linksDropped ?? 0), worst generator lag \(relayFormat(row.generatorLagMs, 1)) ms")
        }
        let counts = Array(Set(rows.map(\.streams))).sorted()
        for count in counts {
            let skylark = rows.first { $0.path == "skylark" && $0.streams == count }
            let coturn = rows.first { $0.path == "coturn" && $0.streams == count }
            if let skylark, let coturn, let own = skylark.microsecondsPerDatagram, let theirs = coturn.microsecondsPerDatagram {
                notes.append(
                    "\(count) streams: Skylark \(relayFormat(own, 2)) µs/datagram against coturn \(relayFormat(theirs, 2)) "
                        + "(ratio \(relayFormat(own / theirs, 2))): \(own <= theirs ? "no more CPU per datagram than coturn" : "MORE CPU per datagram than coturn")"
                )
            }
            if let skylark, count >= 1000, let share = skylark.serverCorePercent {
                let carries = share <= 100 && skylark.lossPercent <= 0.1
                notes.append(
                    "\(count) streams on one supernode: \(relayFormat(share, 1)) % of a core, loss \(relayFormat(skylark.lossPercent, 3)) %: "
                        + (carries ? "carried on one core" : "NOT carried on one core"))
            }
        }
        if !notes.isEmpty {
            lines.append("")
            lines.append(contentsOf: notes)
        }
        return lines.joined(separator: "\n")
    }
}

private extension String {
    func padded(_ width: Int) -> String { count >= width ? self : String(repeating: " ", count: width - count) + self }
}

func relayFormat(_ value: Double, _ decimals: Int) -> String { String(format: "%.\(decimals)f", value) }

func relayProgress(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}
