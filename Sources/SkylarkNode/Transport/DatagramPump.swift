import CShims
import Foundation
import Logging
import NIOCore
import SkylarkTraversal
import SkylarkWire
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Reads one of the node's UDP sockets on a thread of its own, up to 32 datagrams per system
/// call (`recvmmsg`). Relay packets of circuits this supernode carries are forwarded straight
/// from the receive buffer — the leg id rewritten where it lies, the whole batch sent with one
/// `sendmmsg` — and every other datagram goes to the reactor as an event.
///
/// Why not a SwiftNIO handler: relaying is a supernode's hottest path, and NIO's datagram read
/// and write paths cost an `AddressedEnvelope` and a new buffer per packet, plus the event loop's
/// bookkeeping per wake-up; against coturn that per-packet work was the whole difference
/// (Docs/PERFORMANCE.md). The socket's NIO channel stays, with reading off, for what the reactor
/// sends. The pump reads a duplicate of the socket's descriptor, so closing the channel first
/// cannot leave it reading a reused descriptor number.
final class DatagramPump: Sendable {
    private let socket: CInt
    private let wakeRead: CInt
    private let wakeWrite: CInt
    private let finished = DispatchSemaphore(value: 0)
    private let stopped = StopFlag()

    /// Starts reading `socket` (which stays the caller's); datagrams that are not relayed here
    /// reach `sink` as `.datagram(_, from:, socket: index)`.
    init(socket: CInt, index: Int, sink: NodeEventSink, relay: RelayForwarder, logger: Logger) throws {
        let own = fcntl(socket, F_DUPFD_CLOEXEC, 0)
        guard own >= 0 else { throw UDPSetupError(step: "dup of the UDP socket", code: errno) }
        // A socket pair rather than a pipe: it is created close-on-exec in one call.
        var ends: [CInt] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &ends) == 0 else {
            let code = errno
            close(own)
            throw UDPSetupError(step: "wake-up socket pair for the UDP reader", code: code)
        }
        self.socket = own
        wakeRead = ends[0]
        wakeWrite = ends[1]
        let loop = PumpLoop(socket: own, wake: ends[0], index: index, sink: sink, relay: relay)
        let finished = self.finished
        let stopped = self.stopped
        let name = "skylark-udp-\(index)"
        let thread = Thread {
            // Named from inside: what `top -H` and `perf` show (at most 15 characters).
            _ = skylark_name_this_thread(name)
            if let failure = loop.run(), !stopped.isSet {
                logger.error("UDP reader stopped: this port receives nothing more", metadata: ["udp.socket": "\(index)", "udp.error": "\(failure)"])
            }
            finished.signal()
        }
        thread.start()
    }

    /// Stops the reading thread and waits for it; the socket itself is the caller's to close.
    func stop() {
        guard stopped.set() else { return }
        var byte: UInt8 = 1
        _ = write(wakeWrite, &byte, 1)
        finished.wait()
        close(socket)
        close(wakeRead)
        close(wakeWrite)
    }

    deinit { stop() }

    /// A UDP socket bound to `address`, non-blocking, with room in the kernel for bursts of relay
    /// traffic while the reader is busy (the kernel caps it at net.core.rmem_max). No
    /// SO_REUSEADDR: on Linux it would let a second node bind the same UDP port and take its
    /// datagrams, where the user should be told the port is in use.
    static func boundSocket(_ address: SocketAddress) throws -> CInt {
        let family = address.protocol.rawValue
        let fd = Glibc.socket(family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw UDPSetupError(step: "UDP socket", code: errno) }
        var receiveBuffer: CInt = 4 << 20
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &receiveBuffer, socklen_t(MemoryLayout<CInt>.size))
        let bound = address.withSockAddr { pointer, length in bind(fd, pointer, socklen_t(length)) }
        guard bound == 0 else {
            let code = errno
            close(fd)
            throw UDPSetupError(step: "bind UDP \(address.ipAddress ?? "?"):\(address.port ?? 0)", code: code)
        }
        return fd
    }
}

/// A UDP port that could not be opened, said plainly: "bind UDP 0.0.0.0:7100: Address already
/// in use".
struct UDPSetupError: Error, CustomStringConvertible {
    var step: String
    var code: CInt

    var description: String { "\(step): \(String(cString: strerror(code)))" }
}

/// Set once, by `stop()`.
private final class StopFlag: Sendable {
    private let value = Atomic<Bool>(false)
    var isSet: Bool { value.load(ordering: .acquiring) }
    /// Sets the flag; false when it was already set.
    func set() -> Bool { !value.exchange(true, ordering: .acquiringAndReleasing) }
}

/// The reading thread's state; touched by that thread only (hence unchecked).
private final class PumpLoop: @unchecked Sendable {
    static let slots = 32
    static let slotBytes = 2048
    private static let addressCacheLimit = 16_384
    /// A target's route and address are checked again after this many seconds.
    private static let routeRecheck = 5.0
    /// Full batches read in a row before the wake-up pipe is looked at again, so that a flood
    /// cannot keep `stop()` waiting.
    private static let drainRounds = 16

    private let socket: CInt
    private let wake: CInt
    private let index: Int
    private let sink: NodeEventSink
    private let relay: RelayForwarder
    private let family: sa_family_t

    private let buffer: UnsafeMutableRawPointer
    private let receiveMessages: UnsafeMutablePointer<msghdr>
    private let receiveVectors: UnsafeMutablePointer<iovec>
    private let sources: UnsafeMutablePointer<sockaddr_storage>
    private let lengths: UnsafeMutablePointer<UInt32>
    private let sendMessages: UnsafeMutablePointer<msghdr>
    private let sendVectors: UnsafeMutablePointer<iovec>
    private let targets: UnsafeMutablePointer<sockaddr_storage>

    /// The circuit table names neighbours by `HostPort`: turning every packet's source into text
    /// (inet_ntop) and every target back into a socket address (inet_pton) is avoided by
    /// remembering recent conversions, a few thousand at most.
    private var peers: [PeerKey: HostPort] = [:]
    private var targetAddresses: [HostPort: (address: TargetAddress?, checkedAt: Double)] = [:]

    init(socket: CInt, wake: CInt, index: Int, sink: NodeEventSink, relay: RelayForwarder) {
        self.socket = socket
        self.wake = wake
        self.index = index
        self.sink = sink
        self.relay = relay
        var local = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &local) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(socket, $0, &length) } }
        family = local.ss_family
        let slots = Self.slots
        buffer = .allocate(byteCount: slots * Self.slotBytes, alignment: 16)
        receiveMessages = .allocate(capacity: slots)
        receiveVectors = .allocate(capacity: slots)
        sources = .allocate(capacity: slots)
        lengths = .allocate(capacity: slots)
        sendMessages = .allocate(capacity: slots)
        sendVectors = .allocate(capacity: slots)
        targets = .allocate(capacity: slots)
        sources.initialize(repeating: sockaddr_storage(), count: slots)
        targets.initialize(repeating: sockaddr_storage(), count: slots)
        lengths.initialize(repeating: 0, count: slots)
        sendVectors.initialize(repeating: iovec(), count: slots)
        sendMessages.initialize(repeating: msghdr(), count: slots)
        for slot in 0..<slots {
            receiveVectors[slot] = iovec(iov_base: buffer + slot * Self.slotBytes, iov_len: Self.slotBytes)
            receiveMessages[slot] = msghdr(
                msg_name: UnsafeMutableRawPointer(sources + slot), msg_namelen: 0,
                msg_iov: receiveVectors + slot, msg_iovlen: 1,
                msg_control: nil, msg_controllen: 0, msg_flags: 0)
        }
    }

    deinit {
        buffer.deallocate()
        receiveMessages.deallocate()
        receiveVectors.deallocate()
        sources.deallocate()
        lengths.deallocate()
        sendMessages.deallocate()
        sendVectors.deallocate()
        targets.deallocate()
    }

    /// Reads until woken through `wake`; returns why it stopped otherwise.
    func run() -> String? {
        var watched = [pollfd(fd: socket, events: Int16(POLLIN), revents: 0), pollfd(fd: wake, events: Int16(POLLIN), revents: 0)]
        while true {
            if poll(&watched, 2, -1) < 0 {
                if errno == EINTR { continue }
                return "poll: \(String(cString: strerror(errno)))"
            }
            if watched[1].revents != 0 { return nil }
            if watched[0].revents & Int16(POLLNVAL) != 0 { return "poll: the socket is no longer open" }
            if watched[0].revents & Int16(POLLERR) != 0 {
                // A pending socket error (an ICMP report): reading SO_ERROR clears it, so poll
                // does not report it again and again.
                var error: CInt = 0
                var length = socklen_t(MemoryLayout<CInt>.size)
                _ = getsockopt(socket, SOL_SOCKET, SO_ERROR, &error, &length)
            }
            // A full batch means more may be waiting: read again before sleeping (up to a point).
            // Otherwise back to poll, as a second read would mostly find the socket empty.
            var rounds = 0
            while rounds < Self.drainRounds, receiveBatch() == Self.slots { rounds += 1 }
        }
    }

    /// Reads one batch, forwards its relay packets and hands the rest to the reactor; returns
    /// how many datagrams it read.
    private func receiveBatch() -> Int {
        for slot in 0..<Self.slots {
            receiveMessages[slot].msg_namelen = socklen_t(MemoryLayout<sockaddr_storage>.size)
            receiveMessages[slot].msg_flags = 0
        }
        let received = Int(skylark_recvmmsg(socket, receiveMessages, lengths, UInt32(Self.slots), Int32(MSG_DONTWAIT)))
        guard received > 0 else { return 0 }
        let now = Moment.monotonicNow()
        var sends = 0
        for slot in 0..<received {
            // Larger than a slot: cut short by the kernel, dropped (no protocol here sends them).
            guard receiveMessages[slot].msg_flags & Int32(MSG_TRUNC) == 0,
                let source = peer(at: sources + slot)
            else { continue }
            let packet = UnsafeMutableRawBufferPointer(start: buffer + slot * Self.slotBytes, count: Int(lengths[slot]))
            if packet.count > RelayCircuits.headerByteCount, packet[0] == RelayCircuits.packetMarker,
                let forward = relay.table.route(
                    leg: RelayCircuits.LegKey(legIDAt: UnsafeRawBufferPointer(rebasing: packet[1...])),
                    from: .udp(source), byteCount: packet.count, now: now)
            {
                // Admission gives every leg a 16-byte id (SupernodeCore); anything else cannot be
                // written into this packet format.
                guard forward.legID.count == RelayCircuits.legIDByteCount else { continue }
                forward.legID.withUnsafeBytes { (packet.baseAddress! + 1).copyMemory(from: $0.baseAddress!, byteCount: RelayCircuits.legIDByteCount) }
                switch forward.endpoint {
                case let .udp(target):
                    guard let address = targetAddress(of: target, now: now) else { continue }
                    targets[sends] = address.storage
                    sendVectors[sends] = iovec(iov_base: packet.baseAddress, iov_len: packet.count)
                    sendMessages[sends] = msghdr(
                        msg_name: UnsafeMutableRawPointer(targets + sends), msg_namelen: address.length,
                        msg_iov: sendVectors + sends, msg_iovlen: 1,
                        msg_control: nil, msg_controllen: 0, msg_flags: 0)
                    sends += 1
                case let .link(id):
                    relay.sendOverLink(id, packet: Array(packet))
                }
                continue
            }
            sink.yield(.datagram(Array(packet), from: source, socket: index))
        }
        send(sends)
        return received
    }

    private func send(_ count: Int) {
        var next = 0
        while next < count {
            let sent = Int(skylark_sendmmsg(socket, sendMessages + next, UInt32(count - next), Int32(MSG_DONTWAIT)))
            if sent > 0 {
                next += sent
                continue
            }
            switch errno {
            case EINTR: continue
            // The socket's send buffer is full: the rest of the batch is lost, as on a congested link.
            case EAGAIN, ENOBUFS: return
            // This one datagram cannot go (no route, address family): skip it.
            default: next += 1
            }
        }
    }

    private func peer(at address: UnsafeMutablePointer<sockaddr_storage>) -> HostPort? {
        guard let key = PeerKey(address) else { return nil }
        if let known = peers[key] { return known }
        guard let converted = key.hostPort(address) else { return nil }
        if peers.count >= Self.addressCacheLimit { peers.removeAll(keepingCapacity: true) }
        peers[key] = converted
        return converted
    }

    private func targetAddress(of endpoint: HostPort, now: Double) -> TargetAddress? {
        if let known = targetAddresses[endpoint], now - known.checkedAt < Self.routeRecheck { return known.address }
        // A destination without a route is skipped (the send would fail with ENETUNREACH anyway).
        let converted = sharedRoutes.canReach(endpoint) ? TargetAddress(endpoint, socketFamily: family) : nil
        if targetAddresses.count >= Self.addressCacheLimit { targetAddresses.removeAll(keepingCapacity: true) }
        targetAddresses[endpoint] = (converted, now)
        return converted
    }
}

/// A datagram's source address as a dictionary key: family, port and address bits.
private struct PeerKey: Hashable {
    var high: UInt64 = 0
    var low: UInt64 = 0
    var familyAndPort: UInt32

    init?(_ storage: UnsafeMutablePointer<sockaddr_storage>) {
        let raw = UnsafeRawPointer(storage)
        switch Int32(storage.pointee.ss_family) {
        case AF_INET:
            let address = raw.load(as: sockaddr_in.self)
            low = UInt64(address.sin_addr.s_addr)
            familyAndPort = UInt32(AF_INET) << 16 | UInt32(address.sin_port)
        case AF_INET6:
            let address = raw.load(as: sockaddr_in6.self)
            familyAndPort = UInt32(AF_INET6) << 16 | UInt32(address.sin6_port)
            (high, low) = withUnsafeBytes(of: address.sin6_addr) { bytes in
                (bytes.loadUnaligned(fromByteOffset: 0, as: UInt64.self), bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
            }
        default:
            return nil
        }
    }

    func hostPort(_ storage: UnsafeMutablePointer<sockaddr_storage>) -> HostPort? {
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let raw = UnsafeRawPointer(storage)
        let port: UInt16
        let converted: UnsafePointer<CChar>?
        if Int32(storage.pointee.ss_family) == AF_INET {
            var address = raw.load(as: sockaddr_in.self)
            port = UInt16(bigEndian: address.sin_port)
            converted = inet_ntop(AF_INET, &address.sin_addr, &text, socklen_t(text.count))
        } else {
            var address = raw.load(as: sockaddr_in6.self)
            port = UInt16(bigEndian: address.sin6_port)
            converted = inet_ntop(AF_INET6, &address.sin6_addr, &text, socklen_t(text.count))
        }
        guard let converted else { return nil }
        return HostPort(host: String(cString: converted), port: Int(port))
    }
}

/// A relay target as the kernel wants it; an IPv4 target of an IPv6 socket is IPv4-mapped.
private struct TargetAddress {
    var storage = sockaddr_storage()
    var length: socklen_t = 0

    init?(_ endpoint: HostPort, socketFamily: sa_family_t) {
        guard let port = UInt16(exactly: endpoint.port) else { return nil }
        var ipv4 = in_addr()
        var ipv6 = in6_addr()
        if inet_pton(AF_INET, endpoint.host, &ipv4) == 1, Int32(socketFamily) != AF_INET6 {
            store(sockaddr_in(sin_family: sa_family_t(AF_INET), sin_port: port.bigEndian, sin_addr: ipv4, sin_zero: (0, 0, 0, 0, 0, 0, 0, 0)))
            return
        }
        if inet_pton(AF_INET6, endpoint.host, &ipv6) != 1 {
            guard inet_pton(AF_INET6, "::ffff:" + endpoint.host, &ipv6) == 1 else { return nil }
        }
        store(sockaddr_in6(sin6_family: sa_family_t(AF_INET6), sin6_port: port.bigEndian, sin6_flowinfo: 0, sin6_addr: ipv6, sin6_scope_id: 0))
    }

    private mutating func store<Address>(_ address: Address) {
        withUnsafeMutableBytes(of: &storage) { $0.storeBytes(of: address, as: Address.self) }
        length = socklen_t(MemoryLayout<Address>.size)
    }
}
