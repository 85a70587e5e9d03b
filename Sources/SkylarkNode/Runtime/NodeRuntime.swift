import Foundation
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import SkylarkCrypto
import SkylarkOverlay
import SkylarkTraversal
import SkylarkWire
import Synchronization

/// Everything that reaches the reactor: socket events, finished background jobs, control
/// requests, the clock tick and shutdown.
enum NodeEvent: Sendable {
    case linkEstablished(LinkInfo)
    case linkUpgraded(LinkID, peer: PeerIdentity)
    case linkMessage(LinkID, OvLinkMessage)
    case linkClosed(LinkID, reason: LinkCloseReason)
    case dialFailed(LinkID, reason: String)
    case dialBackArrived(nonce: [UInt8])
    case datagram([UInt8], from: HostPort, socket: Int)
    case directLoginFinished(Result<Credential, LoginFailure>)
    case loginRelayDone(link: LinkID, requestID: UInt64, answer: [UInt8]?)
    case control(ControlRequest, ControlReply)
    /// A relay packet the supernode's own circuit table sent to this node itself.
    case localRelayPacket([UInt8])
    /// The 20 ms media clock.
    case mediaTick
    case tick
    case shutdown
}

/// Where the reactor's events are posted: bounded where a remote party can fill it (NodeInbox).
typealias NodeEventSink = NodeInbox

/// Work the reactor hands off (dials, logins, relays) so that it never waits on the network.
struct NodeJob: Sendable {
    let body: @Sendable () async -> Void
}

/// How a node run ended.
public enum NodeOutcome: Sendable, Equatable {
    case stopped
    case failed(String, exitCode: Int32)
}

/// A running `skylark` node: logs in, attaches to a supernode (or becomes one), and serves its
/// user's session and, as a supernode, the overlay. A `Service`: SIGTERM makes it sign off,
/// hand its clients over if it is a supernode, and stop.
///
/// Threads: NIO's event loops run the sockets; one reactor task owns every protocol core
/// (session, supernode, NAT probe, host cache, promotion) and is the only code that touches
/// them; blocking or slow work runs as jobs in the same task group.
public final class NodeRuntime: Service, Sendable {
    public let configuration: NodeConfiguration
    private let logger: Logger
    private let group: any EventLoopGroup
    private let console: Bool
    private let outcomeBox = OutcomeBox()
    private let onReady: @Sendable (ReadyInfo) -> Void

    public struct ReadyInfo: Sendable {
        public var listening: [HostPort]
        public var controlSocket: String
    }

    public init(
        configuration: NodeConfiguration, group: any EventLoopGroup, logger: Logger, console: Bool,
        onReady: @escaping @Sendable (ReadyInfo) -> Void = { _ in }
    ) {
        self.configuration = configuration
        self.group = group
        self.logger = logger
        self.console = console
        self.onReady = onReady
    }

    public var outcome: NodeOutcome? { outcomeBox.value.withLock { $0 } }

    public func run() async throws {
        let sink = NodeInbox()
        // NIOTransport never has more than its job limit waiting or running.
        let (jobs, jobSink) = AsyncStream.makeStream(of: NodeJob.self, bufferingPolicy: .bufferingOldest(NIOTransport.jobLimit))
        let files = NodeStateFiles(directory: configuration.stateDirectory)
        try StateFiles.makePrivateDirectory(files.directory)
        let identityKey = try files.client.loadOrCreateIdentity()
        let identity = IdentityBox(try LocalIdentity(key: identityKey, credential: nil))
        let verifier = Verifier(loginKey: configuration.profile.loginKey)
        let role = RoleFlag()
        let relay = RelayForwarder(table: RelayTable(limits: configuration.relayLimits), sink: sink)
        let sockets = NodeSockets(
            group: group, identity: identity, verifier: verifier, role: role, ids: LinkIDs(), sink: sink,
            idleTimeout: .seconds(Int64(configuration.linkIdleTimeout)), relay: relay, logger: logger)

        // Sockets first: a port that cannot be bound is a clear error before anything else.
        var listeners: [any Channel] = []
        var udp: [any Channel] = []
        var pumps: [DatagramPump] = []
        var control: (any Channel)?
        do {
            for endpoint in configuration.listen { listeners.append(try await sockets.listen(on: endpoint)) }
            if let first = configuration.listen.first {
                // The alternate port answers "reply from another port" probes (NAT detection).
                for (index, endpoint) in [first, HostPort(host: first.host, port: 0)].enumerated() {
                    let (channel, pump) = try await sockets.udp(on: endpoint, socket: index)
                    udp.append(channel)
                    pumps.append(pump)
                }
                relay.setUDP(udp[0])
            }
            control = try await ControlServer.bind(path: files.controlSocketPath, group: group, sink: sink)
        } catch {
            for pump in pumps { pump.stop() }
            for channel in listeners + udp { try? await channel.close() }
            throw error
        }
        let bound = listeners.compactMap { $0.localAddress.flatMap(HostPort.init(socketAddress:)) }
        // The node cannot do without its UDP port; if it ever closes before the end, say so loudly.
        let stopping = OutcomeBox()
        for channel in udp {
            let logger = self.logger
            let local = channel.localAddress.map { "\($0)" } ?? "?"
            channel.closeFuture.whenComplete { _ in
                if stopping.value.withLock({ $0 == nil }) { logger.error("UDP socket closed unexpectedly", metadata: ["udp.local": "\(local)"]) }
            }
        }
        onReady(ReadyInfo(listening: bound, controlSocket: files.controlSocketPath))
        let udpChannels = udp
        let configuration = self.configuration
        let logger = self.logger
        let console = self.console
        let outcomeBox = self.outcomeBox
        let mediaClock = MediaClock()

        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                group.addTask {
                    let transport = NIOTransport(sockets: sockets, udp: udpChannels, jobs: jobSink, mediaClock: mediaClock, logger: logger)
                    let reactor = Reactor(
                        configuration: configuration, files: files, identity: identity.current, verifier: verifier,
                        io: transport, listening: bound, sink: sink, logger: logger, console: console)
                    let outcome = await reactor.run(sink)
                    outcomeBox.value.withLock { $0 = outcome }
                    jobSink.finish()
                }
                group.addTask {
                    while !Task.isCancelled {
                        try? await Task.sleep(for: .milliseconds(100))
                        sink.yield(.tick)
                    }
                }
                group.addTask { await mediaClock.run(sink) }
                for await job in jobs { group.addTask { await job.body() } }
                group.cancelAll()
            }
        } onGracefulShutdown: {
            sink.yield(.shutdown)
        }
        stopping.value.withLock { $0 = .stopped }
        for pump in pumps { pump.stop() }
        for channel in listeners + udp { try? await channel.close() }
        try? await control?.close()
        unlink(files.controlSocketPath)
    }
}

final class OutcomeBox: Sendable {
    let value = Mutex<NodeOutcome?>(nil)
}

/// The media clock: a `.mediaTick` every 20 ms while a call or conference has audio to send,
/// and nothing otherwise — an idle node (a relaying supernode included) should not wake 50 times
/// a second for nothing. The reactor sends what is due by the monotonic clock, so a late tick is
/// caught up rather than drifting.
final class MediaClock: Sendable {
    private let running = Atomic<Bool>(false)
    private let wakeups: AsyncStream<Void>
    private let wake: AsyncStream<Void>.Continuation

    init() {
        (wakeups, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// Called by the reactor after every event; starting wakes the clock at once.
    func set(running value: Bool) {
        if running.exchange(value, ordering: .relaxed) != value, value { wake.yield() }
    }

    func run(_ sink: NodeEventSink) async {
        var iterator = wakeups.makeAsyncIterator()
        while !Task.isCancelled {
            if running.load(ordering: .relaxed) {
                try? await Task.sleep(for: .milliseconds(20), tolerance: .milliseconds(2))
                sink.yield(.mediaTick)
            } else if await iterator.next() == nil {
                return
            }
        }
    }
}
