import Foundation
import SkylarkOverlay
import SkylarkTraversal
import SkylarkWire
import Testing

/// Two call sessions against each other in memory, with a small model of how NATs translate
/// and filter UDP, and a relay that carries packets between the two supernode ends of a circuit.
@Suite("Call sessions")
struct CallSessionTests {
    struct Host {
        var name: String
        var nat: NATType
        var local: HostPort
        var publicIP: String
        /// Where a supernode saw this host's UDP (its reflexive candidate).
        var reflexive: HostPort?
    }

    /// Mappings and filters of both hosts' NATs.
    final class Network {
        var hosts: [String: Host]
        var mappings: [String: [HostPort: HostPort]] = [:]  // host -> destination -> mapped source
        var allowed: [String: Set<HostPort>] = [:]  // host -> remote endpoints it sent to
        var nextPort = 20_000
        var relayWorks = true
        var relayLegs: [[UInt8]: (host: String, otherLeg: [UInt8])] = [:]
        let supernode = HostPort(host: "203.0.113.21", port: 7100)

        init(_ a: Host, _ b: Host) {
            hosts = [a.name: a, b.name: b]
            for name in [a.name, b.name] {
                // Each host has talked to its supernode (STUN): that mapping is its reflexive candidate.
                if let mapped = send(from: name, to: supernode) { hosts[name]!.reflexive = hosts[name]!.nat == .open ? nil : mapped }
            }
        }

        /// The source address `to` sees for a packet from `host`, or nil if it cannot leave.
        func send(from name: String, to destination: HostPort) -> HostPort? {
            let host = hosts[name]!
            switch host.nat {
            case .udpBlocked: return nil
            case .open: return host.local
            case .portRestricted:
                allowed[name, default: []].insert(destination)
                return HostPort(host: host.publicIP, port: host.local.port)
            case .symmetric:
                allowed[name, default: []].insert(destination)
                if let mapped = mappings[name]?[destination] { return mapped }
                nextPort += 1
                let mapped = HostPort(host: host.publicIP, port: nextPort)
                mappings[name, default: [:]][destination] = mapped
                return mapped
            case .fullCone, .restricted, .unknown:
                preconditionFailure("this model has open, port-restricted, symmetric and UDP-blocked NATs")
            }
        }

        /// Whether a packet from `source` to `destination` reaches the host that owns `destination`.
        func owner(of destination: HostPort, from source: HostPort) -> String? {
            for (name, host) in hosts {
                switch host.nat {
                case .udpBlocked: continue
                case .open: if destination == host.local { return name }
                case .portRestricted:
                    if destination == HostPort(host: host.publicIP, port: host.local.port), allowed[name]?.contains(source) == true { return name }
                case .symmetric:
                    if mappings[name]?.values.contains(destination) == true, allowed[name]?.contains(source) == true { return name }
                case .fullCone, .restricted, .unknown:
                    preconditionFailure("this model has open, port-restricted, symmetric and UDP-blocked NATs")
                }
            }
            return nil
        }
    }

    struct Run {
        var caller: CallSession
        var callee: CallSession?
        var paths: [String: [CallSession.Path?]] = ["alice": [], "bob": []]
        var ended: [String: OvCallEndReason] = [:]
        var relayRequests: [[String]] = []
        /// Checks each side sent (not answers), when and where.
        var checksSent: [String: [(at: Double, route: MediaRoute)]] = [:]
        var now: Double = 0
    }

    static func candidates(_ host: Host) -> [OvMediaCandidate] {
        guard host.nat != .udpBlocked else { return [] }
        var out: [OvMediaCandidate] = []
        var local = OvMediaCandidate()
        local.kind = .host
        local.endpoint = host.local.description
        out.append(local)
        if let reflexive = host.reflexive {
            var candidate = OvMediaCandidate()
            candidate.kind = .reflexive
            candidate.endpoint = reflexive.description
            out.append(candidate)
        }
        return out
    }

    static func host(_ name: String, _ nat: NATType, _ index: Int) -> Host {
        Host(name: name, nat: nat, local: HostPort(host: "10.\(index).0.2", port: 7100), publicIP: "203.0.113.\(100 + index)")
    }

    /// Runs a call from alice to bob (bob answers at once) for `seconds` of virtual time.
    static func call(
        _ aliceNAT: NATType, _ bobNAT: NATType, seconds: Double = 4, peerNATKnown: Bool = true,
        during: (inout Run, Network) -> Void = { _, _ in }
    ) throws -> (Run, Network) {
        let network = Network(host("alice", aliceNAT, 1), host("bob", bobNAT, 2))
        let alice = network.hosts["alice"]!, bob = network.hosts["bob"]!
        var run = Run(
            caller: try CallSession(
                calling: "bob", callID: [UInt8](repeating: 7, count: 16), candidates: candidates(alice),
                natType: aliceNAT, peerNAT: peerNATKnown ? bobNAT : .unknown, ssrc: 1, now: 0))
        var pendingGrants: [(at: Double, granted: OvRelayGranted)] = []
        var legCounter: UInt8 = 0
        while run.now <= seconds {
            during(&run, network)
            var moved = true
            while moved {
                moved = false
                for side in ["alice", "bob"] {
                    while let action = side == "alice" ? run.caller.poll() : run.callee?.poll() {
                        moved = true
                        let other = side == "alice" ? "bob" : "alice"
                        switch action {
                        case let .signal(signal):
                            if other == "bob" {
                                if run.callee == nil, case let .offer(offer)? = signal.body {
                                    run.callee = try CallSession(
                                        offer: offer, callID: Array(signal.callID), from: "alice", candidates: candidates(bob),
                                        natType: bobNAT, ssrc: 2, now: run.now)
                                    run.callee!.answer(now: run.now)
                                } else {
                                    run.callee?.handleSignal(signal, now: run.now)
                                }
                            } else {
                                run.caller.handleSignal(signal, now: run.now)
                            }
                        case let .sendCheck(check, route):
                            if !check.response { run.checksSent[side, default: []].append((run.now, route)) }
                            let (target, circuit, overTCP) = (route.endpoint, route.circuit, route.overTCP)
                            if let circuit {
                                guard network.relayWorks, let leg = network.relayLegs[circuit] else { continue }
                                let farEnd = HostPort(host: "203.0.113.2\(leg.host == "alice" ? 1 : 2)", port: 7100)
                                if leg.host == "alice" {
                                    run.caller.handleCheck(
                                        check, arrivedVia: MediaRoute(endpoint: farEnd, circuit: leg.otherLeg, overTCP: overTCP), now: run.now + 0.03)
                                } else {
                                    run.callee?.handleCheck(
                                        check, arrivedVia: MediaRoute(endpoint: farEnd, circuit: leg.otherLeg, overTCP: overTCP), now: run.now + 0.03)
                                }
                            } else {
                                guard let source = network.send(from: side, to: target), let owner = network.owner(of: target, from: source), owner == other
                                else { continue }
                                if other == "alice" {
                                    run.caller.handleCheck(check, arrivedVia: .udp(source), now: run.now + 0.01)
                                } else {
                                    run.callee?.handleCheck(check, arrivedVia: .udp(source), now: run.now + 0.01)
                                }
                            }
                        case let .requestRelay(avoid):
                            guard side == "alice" else { continue }
                            run.relayRequests.append(avoid)
                            legCounter += 2
                            let own = [UInt8](repeating: legCounter, count: 16), far = [UInt8](repeating: legCounter + 1, count: 16)
                            // Packets alice sends into her leg come out at bob's end, and back.
                            network.relayLegs[own] = ("bob", far)
                            network.relayLegs[far] = ("alice", own)
                            var granted = OvRelayGranted()
                            granted.legID = Data(own)
                            granted.farLegID = Data(far)
                            granted.relays = ["sn1", "r\(legCounter)a", "r\(legCounter)b", "sn2"]
                            granted.farEndpoint = "203.0.113.22:7100"
                            pendingGrants.append((run.now + 0.05, granted))
                        case let .pathChanged(path):
                            run.paths[side, default: []].append(path)
                        case let .ended(reason, _):
                            run.ended[side] = reason
                        }
                    }
                }
                for (index, grant) in pendingGrants.enumerated().reversed() where grant.at <= run.now {
                    pendingGrants.remove(at: index)
                    run.caller.relayGranted(grant.granted, ownEnd: HostPort(host: "203.0.113.21", port: 7100), overTCP: aliceNAT == .udpBlocked, now: run.now)
                    moved = true
                }
            }
            run.now += 0.01
            if let deadline = run.caller.nextDeadline, deadline <= run.now { run.caller.handleTimeout(now: run.now) }
            if let deadline = run.callee?.nextDeadline, deadline <= run.now { run.callee?.handleTimeout(now: run.now) }
        }
        return (run, network)
    }

    @Test("Open and port-restricted: direct") func openToPortRestricted() throws {
        let (run, _) = try Self.call(.open, .portRestricted)
        #expect(run.caller.phase == .active && run.callee?.phase == .active)
        #expect(run.caller.path?.kind == .direct && run.callee?.path?.kind == .direct)
        #expect(run.relayRequests.isEmpty)
        #expect(run.caller.sharedSecret != nil && run.caller.sharedSecret == run.callee?.sharedSecret)
    }

    @Test("While media flows the path is checked once a second, not four times; when it stops, four again")
    func keepalivesGiveWayToMedia() throws {
        // Media both ways from 2 s to 6 s (every 20 ms), then silence (DTX, or the peer gone).
        let (run, _) = try Self.call(.open, .portRestricted, seconds: 8) { run, _ in
            guard run.now >= 2, run.now < 6, (run.now * 100).rounded().truncatingRemainder(dividingBy: 2) == 0 else { return }
            run.caller.mediaArrived(now: run.now)
            run.callee?.mediaArrived(now: run.now)
        }
        // On the active path (candidate pairs that never answered are checked on their own terms).
        let route = try #require(run.caller.path?.route)
        let sent = run.checksSent["alice", default: []].filter { $0.route == route }.map(\.at)
        let during = sent.filter { $0 >= 3 && $0 < 6 }.count
        let after = sent.filter { $0 >= 6.5 && $0 < 7.5 }.count
        #expect((2...4).contains(during), "3 s of media: \(during) checks")
        #expect((4...5).contains(after), "a second without media: \(after) checks")
        #expect(run.caller.phase == .active && run.ended.isEmpty)
    }

    @Test("Two port-restricted NATs: punched") func portRestrictedPair() throws {
        let (run, _) = try Self.call(.portRestricted, .portRestricted)
        #expect(run.caller.path?.kind == .punched && run.callee?.path?.kind == .punched)
        #expect(run.relayRequests.isEmpty)
    }

    @Test("Symmetric and port-restricted: relayed (requested at once), over UDP") func symmetricPair() throws {
        let (run, _) = try Self.call(.portRestricted, .symmetric)
        #expect(run.caller.path?.kind == .relayed && run.callee?.path?.kind == .relayed)
        #expect(run.caller.path?.relays.count == 4 && run.caller.path?.overTCP == false)
        #expect(run.relayRequests.count == 1)
    }

    @Test("UDP blocked: relayed over TCP") func udpBlocked() throws {
        let (run, _) = try Self.call(.udpBlocked, .open)
        #expect(run.caller.path?.kind == .relayed && run.caller.path?.overTCP == true)
        #expect(run.callee?.path?.kind == .relayed)
    }

    @Test("Unknown NAT: relay first, then up to the direct path, without ending the call") func relayedThenDirect() throws {
        // The peer's NATType is not known (no presence yet): a relay is asked for at once; the direct
        // path, found a little later, wins.
        let (run, _) = try Self.call(.portRestricted, .open, peerNATKnown: false)
        #expect(run.relayRequests.count == 1)
        #expect(run.caller.path?.kind == .direct)
        #expect(run.caller.phase == .active)
    }

    @Test("A relay that dies is replaced around its relays within 2 s") func relayDies() throws {
        var brokenAt: Double?
        var recoveredAt: Double?
        let (run, _) = try Self.call(.symmetric, .symmetric, seconds: 8) { run, network in
            if brokenAt == nil, run.caller.phase == .active, run.now >= 2 {
                // A relay of the first circuit dies: nothing passes through that circuit any more.
                network.relayLegs = network.relayLegs.filter { $0.key.first! > 3 }
                brokenAt = run.now
            }
            if let broken = brokenAt, recoveredAt == nil, run.relayRequests.count == 2, run.caller.path != nil, run.now > broken {
                recoveredAt = run.now
            }
        }
        #expect(run.relayRequests.count == 2)
        #expect(run.relayRequests.last == ["r2a", "r2b"], "the new circuit avoids the relays of the old one")
        let recovery = try #require(recoveredAt.flatMap { r in brokenAt.map { r - $0 } })
        #expect(recovery <= 2)
        #expect(run.caller.phase == .active && run.ended.isEmpty)
    }

    @Test("Checks with a wrong tag never make a path") func forgedChecks() throws {
        var forged = OvPathCheck()
        forged.callID = Data([UInt8](repeating: 7, count: 16))
        forged.transaction = 1
        forged.response = true
        forged.tag = Data([UInt8](repeating: 0, count: 16))
        let (run, _) = try Self.call(.udpBlocked, .udpBlocked, seconds: 0.5) { run, network in
            network.relayWorks = false
            run.caller.handleCheck(forged, arrivedVia: .udp(HostPort(host: "192.0.2.66", port: 1)), now: run.now)
        }
        #expect(run.caller.path == nil)
    }

    @Test("Declining ends the call on both sides; an unanswered call times out") func declineAndTimeout() throws {
        let network = Network(Self.host("alice", .open, 1), Self.host("bob", .open, 2))
        var caller = try CallSession(calling: "bob", candidates: Self.candidates(network.hosts["alice"]!), natType: .open, peerNAT: .open, ssrc: 1, now: 0)
        guard case let .signal(offerSignal)? = caller.poll(), case let .offer(offer)? = offerSignal.body else { Issue.record("no offer"); return }
        var callee = try CallSession(offer: offer, callID: Array(offerSignal.callID), from: "alice", candidates: [], natType: .open, ssrc: 2, now: 0)
        #expect(callee.phase == .ringing)
        callee.decline()
        guard case let .signal(end)? = callee.poll() else { Issue.record("no end signal"); return }
        caller.handleSignal(end, now: 1)
        #expect(caller.phase == .ended(.declined, "declined"))
        var unanswered = try CallSession(calling: "bob", candidates: [], natType: .open, peerNAT: .open, ssrc: 1, now: 0)
        unanswered.handleTimeout(now: 46)
        guard case .ended(.noAnswer, _) = unanswered.phase else { Issue.record("no timeout: \(unanswered.phase)"); return }
    }
}
