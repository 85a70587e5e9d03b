import Foundation
import Logging
import NIOCore
import NIOPosix
import SkylarkOverlay
import SkylarkTraversal
import SkylarkWire
import Synchronization

/// `NodeTransport` over real sockets: TCP links through `NodeSockets` and `LinkHandler`, UDP
/// through the node's channels (sending) and `DatagramPump`s (reading), logins as background
/// jobs. The one implementation of the reactor's I/O with SwiftNIO.
final class NIOTransport: NodeTransport {
    let sockets: NodeSockets
    let udp: [any Channel]
    let udpPorts: [Int]
    private let jobs: AsyncStream<NodeJob>.Continuation
    private let inFlight = JobCounter()
    /// At most this many dials and logins run at once (the job stream buffers no more).
    static let jobLimit = 1024
    private let mediaClock: MediaClock
    private let logger: Logger

    init(sockets: NodeSockets, udp: [any Channel], jobs: AsyncStream<NodeJob>.Continuation, mediaClock: MediaClock, logger: Logger) {
        self.sockets = sockets
        self.udp = udp
        udpPorts = udp.map { $0.localAddress?.port ?? 0 }
        self.jobs = jobs
        self.mediaClock = mediaClock
        self.logger = logger
    }

    var relayTable: RelayTable { sockets.relay.table }

    func makeLinkID() -> LinkID { sockets.ids.make() }

    func dial(_ id: LinkID, endpoints: [HostPort], role: SecureLink.Role, connectTimeout: Double) {
        let sockets = self.sockets
        let timeout = TimeAmount.milliseconds(Int64(connectTimeout * 1000))
        run(refused: { sockets.sink.yield(.dialFailed(id, reason: "too many dials and logins in flight")) }) {
            if let failure = await sockets.dial(endpoints, role: role, id: id, connectTimeout: timeout) {
                sockets.sink.yield(.dialFailed(id, reason: failure))
            }
        }
    }

    func send(_ message: OvLinkMessage, on link: LinkID) { sockets.relay.handle(link)?.send(message) }

    func close(_ link: LinkID, reason: LinkCloseReason) { sockets.relay.handle(link)?.close(reason: reason) }

    func authenticate(_ link: LinkID, requestID: UInt64, identity: LocalIdentity) {
        sockets.relay.handle(link)?.authenticate(requestID: requestID, identity: identity)
    }

    func sendDatagram(_ bytes: [UInt8], to target: HostPort, socket: Int) {
        guard socket >= 0, socket < udp.count else { return }
        udp[socket].sendDatagram(bytes, to: target)
    }

    func relayFromLocal(_ packet: [UInt8]) { _ = sockets.relay.forwardFromLink(.local, packet: packet) }

    func loginDirect(_ request: LoginClientExchange.Request, profile: VerifiedProfile, timeout: Double) {
        let group = sockets.group
        let logger = self.logger
        let sink = sockets.sink
        let limit = Duration.milliseconds(Int64(timeout * 1000))
        run(refused: { sink.yield(.directLoginFinished(.failure(.serverError("too many dials and logins in flight")))) }) {
            do {
                let outcome = try await LoginClient.perform(request, profile: profile, group: group, timeout: limit, connectTimeout: limit, logger: logger)
                guard case let .loggedIn(credential) = outcome else {
                    sink.yield(.directLoginFinished(.failure(.protocolViolation("unexpected answer"))))
                    return
                }
                sink.yield(.directLoginFinished(.success(credential)))
            } catch let failure as LoginFailure {
                sink.yield(.directLoginFinished(.failure(failure)))
            } catch {
                sink.yield(.directLoginFinished(.failure(.serverError("\(error)"))))
            }
        }
    }

    func forwardLogin(_ request: [UInt8], to endpoint: HostPort, link: LinkID, requestID: UInt64) {
        let group = sockets.group
        let sink = sockets.sink
        run(refused: { sink.yield(.loginRelayDone(link: link, requestID: requestID, answer: nil)) }) {
            let answer = await LoginRelay.forward(request, to: endpoint, group: group, timeout: .seconds(10))
            sink.yield(.loginRelayDone(link: link, requestID: requestID, answer: answer))
        }
    }

    /// Hands `body` to the job task group, unless `jobLimit` jobs are already running: then it
    /// is refused at once (`refused` reports it, as the job itself would have failed), so the
    /// job stream and the tasks it starts stay bounded whatever remote parties make us dial.
    private func run(refused: () -> Void, _ body: @escaping @Sendable () async -> Void) {
        guard inFlight.start(limit: Self.jobLimit) else { return refused() }
        let inFlight = self.inFlight
        jobs.yield(
            NodeJob {
                await body()
                inFlight.finish()
            })
    }

    func setIdentity(_ identity: LocalIdentity) { sockets.identity.current = identity }

    func setSupernode(_ isSupernode: Bool) { sockets.role.isSupernode = isSupernode }

    func setMediaRunning(_ running: Bool) { mediaClock.set(running: running) }

    func firstInterfaceAddress() -> String? {
        guard let devices = try? System.enumerateDevices() else { return nil }
        for device in devices {
            guard let address = device.address, case .v4 = address, let ip = address.ipAddress, !ip.hasPrefix("127.") else { continue }
            return ip
        }
        return nil
    }
}

/// Jobs running now.
final class JobCounter: Sendable {
    private let count = Atomic<Int>(0)

    /// Counts one more unless `limit` are running; false then.
    func start(limit: Int) -> Bool {
        if count.wrappingAdd(1, ordering: .relaxed).newValue <= limit { return true }
        count.wrappingSubtract(1, ordering: .relaxed)
        return false
    }

    func finish() { count.wrappingSubtract(1, ordering: .relaxed) }
}
