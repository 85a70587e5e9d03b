import Foundation
import SkylarkTestSupport
import SkylarkTraversal
import SkylarkWire
import Synchronization
import Testing

@testable import SkylarkNode

#if canImport(Glibc)
    import Glibc
#endif

/// The UDP reader and relay fast path against real loopback sockets: relay packets of a circuit
/// leave with the other leg's id toward the other leg's neighbour, everything else reaches the
/// reactor's event stream.
@Suite struct DatagramPumpTests {
    /// A plain loopback UDP socket with a receive deadline.
    final class Peer {
        let fd: CInt
        let port: Int

        /// `reuseAddress`: a socket that asks to share its port (SO_REUSEADDR), as another
        /// program might.
        init(port requested: Int = 0, reuseAddress: Bool = false) throws {
            let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
            var one: CInt = 1
            if reuseAddress { setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<CInt>.size)) }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            address.sin_port = UInt16(requested).bigEndian
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let bound = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
            }
            guard bound else {
                close(fd)
                throw IOFailure(call: "bind")
            }
            var timeout = timeval(tv_sec: 5, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            self.fd = fd
            port = Int(UInt16(bigEndian: address.sin_port))
        }

        deinit { close(fd) }

        var hostPort: HostPort { HostPort(host: "127.0.0.1", port: port) }

        @discardableResult
        func send(_ bytes: [UInt8], to port: Int) -> Bool {
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            address.sin_port = UInt16(port).bigEndian
            let sent = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, bytes, bytes.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            return sent == bytes.count
        }

        /// The next datagram, or nil after the 5 s deadline.
        func receive() -> [UInt8]? {
            var buffer = [UInt8](repeating: 0, count: 4096)
            let count = recv(fd, &buffer, buffer.count, 0)
            return count < 0 ? nil : Array(buffer[..<count])
        }
    }

    struct IOFailure: Error { var call: String }

    /// A pump on a fresh loopback port, its events, and what it relays with.
    struct Harness {
        let socket: CInt
        let port: Int
        let pump: DatagramPump
        let events: NodeInbox
        let table: RelayTable

        init(index: Int = 0) throws {
            let sink = NodeInbox()
            table = RelayTable()
            let socket = try DatagramPump.boundSocket(try .init(ipAddress: "127.0.0.1", port: 0))
            var address = sockaddr_in()
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(socket, $0, &length) } }
            self.socket = socket
            port = Int(UInt16(bigEndian: address.sin_port))
            pump = try DatagramPump(socket: socket, index: index, sink: sink, relay: RelayForwarder(table: table, sink: sink), logger: silentLogger)
            self.events = sink
        }

        func stop() {
            pump.stop()
            close(socket)
        }

        /// The next datagram the reactor would see, within 5 s.
        func nextDatagram() async -> (bytes: [UInt8], from: HostPort, socket: Int)? {
            let events = self.events
            return await withTaskGroup(of: (bytes: [UInt8], from: HostPort, socket: Int)?.self) { group in
                group.addTask {
                    while let event = await events.next() {
                        if case let .datagram(bytes, from, socket) = event { return (bytes, from, socket) }
                    }
                    return nil
                }
                group.addTask {
                    try? await Task.sleep(for: .seconds(5))
                    return nil
                }
                let first = await group.next() ?? nil
                group.cancelAll()
                return first
            }
        }
    }

    static func legID(_ seed: UInt8) -> [UInt8] { (0..<16).map { seed &+ UInt8($0) } }

    /// A pump carrying one circuit between two loopback peers.
    struct Circuit {
        let harness: Harness
        let caller: Peer, callee: Peer
        let towardCaller = DatagramPumpTests.legID(0x10), towardCallee = DatagramPumpTests.legID(0x40)

        init() throws {
            (caller, callee) = (try Peer(), try Peer())
            harness = try Harness()
            try harness.table.admit(
                towardCaller: .init(id: towardCaller, endpoint: .udp(caller.hostPort)),
                towardCallee: .init(id: towardCallee, endpoint: .udp(callee.hostPort)), now: Date().timeIntervalSince1970)
        }
    }

    static func relayPacket(leg: [UInt8], payload: [UInt8]) -> [UInt8] { RelayCircuits.packet(leg: leg, payload: payload) }

    @Test(.timeLimit(.minutes(1)))
    func relayPacketLeavesWithTheOtherLegsIDTowardItsNeighbour() async throws {
        let circuit = try Circuit()
        let (harness, caller, callee) = (circuit.harness, circuit.caller, circuit.callee)
        let (towardCaller, towardCallee) = (circuit.towardCaller, circuit.towardCallee)
        defer { harness.stop() }
        let payload: [UInt8] = Array("sealed media".utf8)
        caller.send(Self.relayPacket(leg: towardCaller, payload: payload), to: harness.port)
        #expect(callee.receive() == Self.relayPacket(leg: towardCallee, payload: payload))
        // And back the other way.
        callee.send(Self.relayPacket(leg: towardCallee, payload: [1, 2, 3]), to: harness.port)
        #expect(caller.receive() == Self.relayPacket(leg: towardCaller, payload: [1, 2, 3]))
        #expect(harness.table.statistics.forwarded == 2)
    }

    @Test(.timeLimit(.minutes(1)))
    func aBurstIsForwardedWholeAndInOrder() async throws {
        let circuit = try Circuit()
        let (harness, caller, callee) = (circuit.harness, circuit.caller, circuit.callee)
        let (towardCaller, towardCallee) = (circuit.towardCaller, circuit.towardCallee)
        defer { harness.stop() }
        // 100 packets of 100 bytes: more than one 32-datagram batch, within the circuit's 32 kB/s burst.
        for sequence in 0..<100 {
            caller.send(Self.relayPacket(leg: towardCaller, payload: [UInt8(sequence)] + [UInt8](repeating: 0xAB, count: 82)), to: harness.port)
        }
        var sequences: [Int] = []
        while sequences.count < 100, let packet = callee.receive() {
            #expect(Array(packet[1...16]) == towardCallee)
            sequences.append(Int(packet[17]))
        }
        #expect(sequences == Array(0..<100))
    }

    @Test(.timeLimit(.minutes(1)))
    func aPacketFromAnotherAddressIsNotRelayedButReachesTheReactor() async throws {
        let circuit = try Circuit()
        let (harness, caller, callee) = (circuit.harness, circuit.caller, circuit.callee)
        let (towardCaller, towardCallee) = (circuit.towardCaller, circuit.towardCallee)
        defer { harness.stop() }
        let stranger = try Peer()
        let forged = Self.relayPacket(leg: towardCaller, payload: Array("forged".utf8))
        stranger.send(forged, to: harness.port)
        let seen = await harness.nextDatagram()
        #expect(seen?.bytes == forged)
        #expect(seen?.from == stranger.hostPort)
        // The callee's first datagram is the genuine one sent after the forged one.
        caller.send(Self.relayPacket(leg: towardCaller, payload: [7]), to: harness.port)
        #expect(callee.receive() == Self.relayPacket(leg: towardCallee, payload: [7]))
        #expect(harness.table.statistics.dropped == 1)
    }

    @Test(.timeLimit(.minutes(1)))
    func otherDatagramsReachTheReactorWithTheirSourceAndSocket() async throws {
        let harness = try Harness(index: 1)
        defer { harness.stop() }
        let peer = try Peer()
        // Too large for a receive slot (2,048 bytes): dropped, so the first event is the next one.
        peer.send([UInt8](repeating: 0xD5, count: 3000), to: harness.port)
        peer.send([0xD5, 1, 2, 3], to: harness.port)
        let seen = await harness.nextDatagram()
        #expect(seen?.bytes == [0xD5, 1, 2, 3])
        #expect(seen?.from == peer.hostPort)
        #expect(seen?.socket == 1)
    }

    @Test(.timeLimit(.minutes(1)))
    func stoppingEndsTheReaderAndLeavesTheSocketToItsOwner() async throws {
        let harness = try Harness()
        harness.pump.stop()
        harness.pump.stop()  // a second stop is harmless
        // The socket is still open and bound: the owner can still read from it.
        let peer = try Peer()
        peer.send([0xD5, 9], to: harness.port)
        var pollSet = pollfd(fd: harness.socket, events: Int16(POLLIN), revents: 0)
        #expect(poll(&pollSet, 1, 5_000) == 1)
        var buffer = [UInt8](repeating: 0, count: 16)
        #expect(recv(harness.socket, &buffer, buffer.count, 0) == 2)
        close(harness.socket)
    }

    @Test func bindingAPortInUseIsAClearError() throws {
        // Even when the holder of the port would share it: the node must not split a port's
        // datagrams with another program.
        let taken = try Peer(reuseAddress: true)
        let error = #expect(throws: UDPSetupError.self) { try DatagramPump.boundSocket(try .init(ipAddress: "127.0.0.1", port: taken.port)) }
        #expect(error?.description == "bind UDP 127.0.0.1:\(taken.port): Address already in use")
        // And the node's own port cannot be shared either.
        let harness = try Harness()
        defer { harness.stop() }
        #expect(throws: DatagramPumpTests.IOFailure.self) { try Peer(port: harness.port, reuseAddress: true) }
    }

    @Test(.timeLimit(.minutes(1)))
    func stoppingWorksDuringAFlood() async throws {
        let harness = try Harness()
        let flooding = Atomic<Bool>(true)
        let port = harness.port
        // Two senders keep the socket full of datagrams (for the reactor: not relay packets).
        let floods = (0..<2).map { _ in
            Thread {
                guard let peer = try? Peer() else { return }
                while flooding.load(ordering: .relaxed) { peer.send([0xD5] + [UInt8](repeating: 1, count: 100), to: port) }
            }
        }
        for flood in floods { flood.start() }
        // The reader is busy: the reactor's stream is filling up.
        #expect(await harness.nextDatagram() != nil)
        harness.stop()  // returns (within the time limit) although datagrams keep coming
        flooding.store(false, ordering: .relaxed)
    }
}

/// The media clock ticks while the reactor says there is audio, and is silent otherwise.
@Suite struct MediaClockTests {
    @Test(.timeLimit(.minutes(1)))
    func startingWakesTheClockAndStoppingAndStartingAgainResumesIt() async throws {
        let inbox = NodeInbox()
        let clock = MediaClock()
        let running = Task { await clock.run(inbox) }
        for _ in 0..<2 {
            clock.set(running: true)
            // Three ticks in a row (the inbox holds nothing else).
            for _ in 0..<3 {
                guard case .mediaTick? = await inbox.next() else { Issue.record("expected a media tick"); return }
            }
            clock.set(running: false)
        }
        running.cancel()
        await running.value  // run() returns once cancelled, also while waiting to be started
    }
}
