import Foundation
import SkylarkNode
import SkylarkOverlay
import SkylarkSimulation
import SkylarkWire
import Testing

/// Real node runtimes together in memory (`InMemoryLab`): the reactor's own policy — bootstrap,
/// login direct or relayed, attach, presence, messages — with no socket and no root, in virtual
/// time. `swift test --filter InMemory` runs these.
@Suite struct InMemoryNodeTests {
    @Test(.timeLimit(.minutes(2)))
    func inMemoryLoginAndAttach() throws {
        let lab = try InMemoryLab(supernodes: 3)
        defer { lab.shutdown() }
        let supernodes = try lab.startSupernodes()
        let alice = try lab.startClient("alice", address: "203.0.113.40")
        let status = try #require(alice.status())
        #expect(status.role == "client")
        #expect(status.loginPath == "direct")
        #expect(status.presence == "online")
        let attachedTo = try #require(status.supernode?.split(separator: " ").first.map(String.init))
        #expect(supernodes.map(\.name).contains(attachedTo))
        // The supernodes found each other: every one knows the other two.
        #expect(lab.network.run(within: 20) { supernodes.allSatisfy { ($0.status()?.dhtContacts ?? 0) >= 2 } })
    }

    @Test(.timeLimit(.minutes(2)))
    func inMemoryLoginRelayedThroughASupernodeWhenTheLoginServerIsUnreachable() throws {
        let lab = try InMemoryLab(supernodes: 2)
        defer { lab.shutdown() }
        try lab.startSupernodes()
        lab.network.loginBlocked.insert("dave")
        let dave = try lab.startClient("dave", address: "192.168.4.2", reachability: .udpBlocked(publicAddress: "203.0.113.104"))
        let status = try #require(dave.status())
        #expect(status.loginPath.hasPrefix("via supernode"))
        #expect(status.hostCacheRefresh == "tcp")
    }

    @Test(.timeLimit(.minutes(2)))
    func inMemoryBuddyRequestAndPresenceBothWays() throws {
        let lab = try InMemoryLab(supernodes: 3)
        defer { lab.shutdown() }
        try lab.startSupernodes()
        let alice = try lab.startClient("alice", address: "192.168.1.2", reachability: .nat(publicAddress: "203.0.113.101", symmetric: false))
        let bob = try lab.startClient("bob", address: "192.168.2.2", reachability: .nat(publicAddress: "203.0.113.102", symmetric: true))
        // A request is not consent: bob sees it with its text, alice sees no presence and may
        // not write to bob before he accepts.
        #expect(alice.result(ControlResults.Done.self, ControlRequest(command: .buddyAdd, name: "bob", text: "hi, it's alice")) != nil)
        #expect(lab.network.run(within: 10) { buddies(bob).contains { $0.name == "alice" } })
        let request = try #require(buddies(bob).first { $0.name == "alice" })
        #expect(request.state == "incoming" && request.requestText == "hi, it's alice")
        #expect(buddies(alice).first { $0.name == "bob" }?.state == "requested")
        #expect(presence(of: "bob", at: alice) != "online")
        let refused = try #require(alice.control(ControlRequest(command: .message, name: "bob", text: "too soon")))
        #expect(refused.contains("\"ok\":false") && refused.contains("bob is not your buddy yet"), "\(refused)")
        #expect(bob.result(ControlResults.Done.self, ControlRequest(command: .buddyAccept, name: "alice")) != nil)
        #expect(lab.network.run(within: 10) { presence(of: "bob", at: alice) == "online" && presence(of: "alice", at: bob) == "online" })
        // Away and back, then signing off, reach the other side within 3 s.
        #expect(alice.result(ControlResults.Done.self, ControlRequest(command: .presence, text: "away")) != nil)
        #expect(lab.network.run(within: 3) { presence(of: "alice", at: bob) == "away" })
        #expect(alice.result(ControlResults.Done.self, ControlRequest(command: .presence, text: "online")) != nil)
        #expect(lab.network.run(within: 3) { presence(of: "alice", at: bob) == "online" })
        lab.network.stop(bob)
        #expect(lab.network.run(within: 3) { presence(of: "bob", at: alice) == "offline" })
    }

    @Test(.timeLimit(.minutes(2)))
    func inMemoryMessagesOnlineAndDeliveredOffline() throws {
        let lab = try InMemoryLab(supernodes: 3)
        defer { lab.shutdown() }
        try lab.startSupernodes()
        let alice = try lab.startClient("alice", address: "203.0.113.40")
        var carol = try lab.startClient("carol", address: "192.168.3.2", reachability: .udpBlocked(publicAddress: "203.0.113.103"))
        befriend(alice, carol, in: lab)

        let online = try #require(alice.result(ControlResults.Message.self, ControlRequest(command: .message, name: "carol", text: "hello carol")))
        #expect(online.state == "delivered")
        #expect(lab.network.run(within: 5) { inbox(carol)?.messages.contains { $0.from == "alice" && $0.text == "hello carol" } == true })

        // Offline: stored on at least two supernodes, delivered at the next login, with a receipt.
        lab.network.stop(carol)
        #expect(lab.network.run(within: 10) { presence(of: "carol", at: alice) == "offline" })
        let stored = try #require(alice.result(ControlResults.Message.self, ControlRequest(command: .message, name: "carol", text: "while you were out")))
        #expect(stored.state == "stored")
        #expect((stored.replicas ?? 0) >= 2)
        carol = try lab.network.start(
            "carol", password: InMemoryLab.password("carol"), address: "192.168.3.2",
            reachability: .udpBlocked(publicAddress: "203.0.113.103"), supernode: .never)
        #expect(lab.network.run(within: 30) { inbox(carol)?.messages.contains { $0.text == "while you were out" } == true })
        #expect(
            lab.network.run(within: 10) {
                inbox(alice)?.outbox.contains { $0.to == "carol" && $0.state == "delivered" && $0.receipt == true } == true
            })
    }

    /// A caller's and callee's node that play a tone and answer at once.
    static func talker(_ hz: Int) -> (inout NodeConfiguration) -> Void {
        { configuration in
            configuration.microphone = "tone:\(hz)"
            configuration.autoAnswer = true
        }
    }

    @Test(.timeLimit(.minutes(3)))
    func inMemoryCallDirect() throws {
        let lab = try InMemoryLab(supernodes: 3)
        defer { lab.shutdown() }
        try lab.startSupernodes()
        let alice = try lab.startClient("alice", address: "203.0.113.40", configure: Self.talker(440))
        let bob = try lab.startClient(
            "bob", address: "192.168.2.2", reachability: .nat(publicAddress: "203.0.113.102", symmetric: false),
            configure: Self.talker(550))
        befriend(alice, bob, in: lab)
        // As in the lab: both know their NAT type (and have published it) before the call.
        #expect(lab.network.run(within: 20) { [alice, bob].allSatisfy { $0.status()?.natType != .unknown } })
        #expect(alice.result(ControlResults.Call.self, ControlRequest(command: .call, name: "bob")) != nil)
        #expect(lab.network.run(within: 10) { lastCall(alice)?.state == "active" && (lastCall(bob)?.packetsReceived ?? 0) >= 100 })
        #expect(lab.network.run(within: 5) { (lastCall(alice)?.packetsReceived ?? 0) >= 100 })
        let call = try #require(lastCall(alice))
        #expect(call.path == "direct")
        #expect(call.relays.isEmpty)
        #expect(alice.result(ControlResults.Call.self, ControlRequest(command: .hangup)) != nil)
        #expect(lab.network.run(within: 5) { lastCall(bob)?.state == "ended" })
    }

    @Test(.timeLimit(.minutes(3)))
    func inMemoryCallSurvivesWallClocksSteppedAnHourBackAndForward() throws {
        let lab = try InMemoryLab(supernodes: 3)
        defer { lab.shutdown() }
        try lab.startSupernodes()
        let alice = try lab.startClient("alice", address: "203.0.113.40", configure: Self.talker(440))
        let bob = try lab.startClient("bob", address: "203.0.113.41", configure: Self.talker(550))
        befriend(alice, bob, in: lab)
        #expect(alice.result(ControlResults.Call.self, ControlRequest(command: .call, name: "bob")) != nil)
        #expect(lab.network.run(within: 10) { (lastCall(alice)?.packetsReceived ?? 0) >= 100 && (lastCall(bob)?.packetsReceived ?? 0) >= 100 })
        // A wall clock set back an hour, and one set forward an hour, each for 5 s until NTP puts it
        // right: timers run on the monotonic clock, so audio keeps flowing both ways (50 packets a
        // second), the call stays up and both stay attached.
        for (stepped, seconds) in [(alice, -3_600.0), (bob, 3_600.0)] {
            let before = (alice: try #require(lastCall(alice)), bob: try #require(lastCall(bob)))
            stepped.stepWallClock(by: seconds)
            lab.network.run(for: 5)
            let after = (alice: try #require(lastCall(alice)), bob: try #require(lastCall(bob)))
            #expect(after.alice.state == "active" && after.bob.state == "active")
            #expect(after.alice.packetsReceived! - before.alice.packetsReceived! >= 225, "\(stepped.name) stepped \(seconds) s")
            #expect(after.bob.packetsReceived! - before.bob.packetsReceived! >= 225, "\(stepped.name) stepped \(seconds) s")
            #expect(alice.status()?.supernode != nil && bob.status()?.supernode != nil)
            // What leaves the node is wall time: the call's start, as the stepped clock now reads it.
            let startedAt = (stepped === alice ? after.alice : after.bob).startedAtMs
            let startedBefore = (stepped === alice ? before.alice : before.bob).startedAtMs
            #expect(abs(startedAt - startedBefore - seconds * 1000) < 1)
            stepped.stepWallClock(by: -seconds)
        }
        // And the call still ends when one side hangs up.
        #expect(alice.result(ControlResults.Call.self, ControlRequest(command: .hangup)) != nil)
        #expect(lab.network.run(within: 5) { lastCall(bob)?.state == "ended" })
    }

    @Test(.timeLimit(.minutes(3)))
    func inMemoryMuteSilencesTheMicrophoneAndVolumeScalesTheSpeaker() throws {
        let lab = try InMemoryLab(supernodes: 3)
        defer { lab.shutdown() }
        try lab.startSupernodes()
        let alice = try lab.startClient("alice", address: "203.0.113.40", configure: Self.talker(440))
        let bob = try lab.startClient("bob", address: "203.0.113.41") { configuration in
            Self.talker(550)(&configuration)
            configuration.speaker = "\(lab.directory)/bob-from-{peer}.wav"
        }
        befriend(alice, bob, in: lab)
        func speaker(_ node: InMemoryNode) -> Double { node.status()?.audio?.speakerDBFS ?? -96 }
        #expect(alice.result(ControlResults.Call.self, ControlRequest(command: .call, name: "bob")) != nil)
        // A 0.3 full-scale tone is about -13 dBFS.
        #expect(lab.network.run(within: 10) { speaker(bob) > -20 })
        let muted = try #require(alice.result(ControlResults.Audio.self, ControlRequest(command: .mute)))
        #expect(muted.muted)
        #expect(lab.network.run(within: 2) { speaker(bob) < -60 }, "bob still hears \(speaker(bob)) dBFS")
        #expect(lastCall(alice)?.state == "active")
        #expect(alice.result(ControlResults.Audio.self, ControlRequest(command: .unmute))?.muted == false)
        #expect(lab.network.run(within: 2) { speaker(bob) > -20 })
        // Half the volume is 6 dB down (against the steady level, not the one crossed on the way
        // back up from silence); out of range is refused and changes nothing.
        lab.network.run(for: 1)
        let loud = speaker(bob)
        #expect(bob.result(ControlResults.Audio.self, ControlRequest(command: .volume, text: "50"))?.volumePercent == 50)
        lab.network.run(for: 1)
        #expect(abs(speaker(bob) - (loud - 6)) <= 1.5, "\(loud) dBFS, then \(speaker(bob)) dBFS at 50 %")
        let refused = try #require(bob.control(ControlRequest(command: .volume, text: "250")))
        #expect(refused.contains("\"ok\":false") && refused.contains("0 to 200"))
        #expect(bob.status()?.audio?.volumePercent == 50)
    }

    @Test(.timeLimit(.minutes(3)))
    func inMemoryCallRelayedThroughFourSupernodesSurvivesARelayThatDies() throws {
        let lab = try InMemoryLab(supernodes: 5)
        defer { lab.shutdown() }
        let supernodes = try lab.startSupernodes(configure: Self.talker(990))
        // Symmetric NAT on one side, no UDP on the other: only a relay joins them.
        let alice = try lab.startClient(
            "alice", address: "192.168.1.2", reachability: .nat(publicAddress: "203.0.113.101", symmetric: true),
            configure: Self.talker(440))
        let bob = try lab.startClient(
            "bob", address: "192.168.3.2", reachability: .udpBlocked(publicAddress: "203.0.113.103"),
            configure: Self.talker(550))
        befriend(alice, bob, in: lab)
        #expect(alice.result(ControlResults.Call.self, ControlRequest(command: .call, name: "bob")) != nil)
        #expect(lab.network.run(within: 15) { lastCall(alice)?.state == "active" && (lastCall(bob)?.packetsReceived ?? 0) >= 50 })
        let call = try #require(lastCall(alice))
        #expect(call.path == "relayed")
        // Four relays; one may appear twice today (sn2 > sn3 > sn4 > sn2: issue 13 mends that).
        #expect(call.relays.count == 4)

        // A relay in the middle of the chain dies: the call re-routes around it and keeps going.
        let victimName = try #require(call.relays.dropFirst().first)
        let victim = try #require(supernodes.first { $0.name == victimName })
        let before = lastCall(bob)?.packetsReceived ?? 0
        let killedAt = lab.network.now
        lab.network.kill(victim)
        #expect(
            lab.network.run(within: 3) {
                guard let now = lastCall(alice) else { return false }
                return now.state == "active" && now.path != nil && !now.relays.contains(victimName)
            })
        #expect(lab.network.now - killedAt <= 2)
        #expect(lab.network.run(within: 5) { (lastCall(bob)?.packetsReceived ?? 0) >= before + 50 })
        #expect(lastCall(bob)?.state == "active")
    }

    @Test(.timeLimit(.minutes(3)))
    func inMemoryConferenceWhoseMixerDiesIsMixedElsewhere() throws {
        let lab = try InMemoryLab(supernodes: 4)
        defer { lab.shutdown() }
        try lab.startSupernodes(configure: Self.talker(990))
        let alice = try lab.startClient("alice", address: "203.0.113.40", configure: Self.talker(440))
        let bob = try lab.startClient(
            "bob", address: "192.168.2.2", reachability: .nat(publicAddress: "203.0.113.102", symmetric: false),
            configure: Self.talker(550))
        let carol = try lab.startClient(
            "carol", address: "192.168.3.2", reachability: .udpBlocked(publicAddress: "203.0.113.103"),
            configure: Self.talker(660))
        let frank = try lab.startClient("frank", address: "203.0.113.41", configure: Self.talker(880))
        let everyone = [alice, bob, carol, frank]
        for other in everyone.dropFirst() { befriend(alice, other, in: lab) }
        #expect(lab.network.run(within: 20) { everyone.allSatisfy { $0.status()?.natType != .unknown } })
        #expect(alice.result(ControlResults.Conference.self, ControlRequest(command: .conferenceStart, names: ["bob", "carol", "frank"])) != nil)
        #expect(lab.network.run(within: 15) { everyone.allSatisfy { conference($0)?.members.count == 4 } })
        let mixerName = try #require(conference(alice)?.mixer)
        let listeners = everyone.filter { $0.name != mixerName }
        #expect(lab.network.run(within: 15) { listeners.allSatisfy { (conference($0)?.leg?.packetsReceived ?? 0) >= 100 } })

        // The mixer dies: the next in the ranking takes over and audio comes back within 2 s.
        let mixer = try #require(lab.network.node(mixerName))
        let killedAt = lab.network.now
        lab.network.kill(mixer)
        let rest = everyone.filter { $0.isRunning }
        #expect(lab.network.run(within: 5) { rest.allSatisfy { conference($0)?.mixer != mixerName && conference($0)?.audioSinceMs != nil } })
        for node in rest {
            let resumed = try #require(conference(node)?.audioSinceMs)
            #expect(resumed / 1000 - killedAt <= 2, "\(node.name) heard the new mixer \(resumed / 1000 - killedAt) s after the old one died")
        }
        let next = try #require(conference(rest[0])?.mixer)
        let hearing = rest.filter { $0.name != next }
        let heard = Dictionary(uniqueKeysWithValues: hearing.map { ($0.name, conference($0)?.leg?.packetsReceived ?? 0) })
        #expect(lab.network.run(within: 5) { hearing.allSatisfy { (conference($0)?.leg?.packetsReceived ?? 0) >= heard[$0.name]! + 100 } })
    }
}

func buddies(_ node: InMemoryNode) -> [ControlResults.BuddyEntry] {
    node.result([ControlResults.BuddyEntry].self, ControlRequest(command: .buddyList)) ?? []
}

func presence(of name: String, at node: InMemoryNode) -> String? {
    buddies(node).first { $0.name == name }?.presence
}

func inbox(_ node: InMemoryNode) -> ControlResults.Inbox? {
    node.result(ControlResults.Inbox.self, ControlRequest(command: .inbox))
}

/// Makes two buddies: a asks, b consents; both then see each other online.
func befriend(_ a: InMemoryNode, _ b: InMemoryNode, in lab: InMemoryLab) {
    #expect(a.result(ControlResults.Done.self, ControlRequest(command: .buddyAdd, name: b.name)) != nil)
    #expect(lab.network.run(within: 10) { buddies(b).contains { $0.name == a.name } })
    #expect(b.result(ControlResults.Done.self, ControlRequest(command: .buddyAccept, name: a.name)) != nil)
    #expect(lab.network.run(within: 10) { presence(of: b.name, at: a) == "online" && presence(of: a.name, at: b) == "online" })
}

func lastCall(_ node: InMemoryNode) -> ControlResults.Call? {
    node.result([ControlResults.Call].self, ControlRequest(command: .calls))?.last
}

func conference(_ node: InMemoryNode) -> ControlResults.Conference? {
    node.result([ControlResults.Conference].self, ControlRequest(command: .conferenceStatus))?.last
}
