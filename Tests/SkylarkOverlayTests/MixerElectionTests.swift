import SkylarkOverlay
import SkylarkWire
import Testing

/// A candidate's measured capability. The defaults fit a conference of 30 with room to spare
/// (4 idle cores → 100, 10 Mb/s → 156, no own limit) behind a port-restricted NAT.
func mixerCapability(
    _ name: String, nat: String = "port-restricted", supernode: Bool = false, cores: Double = 4, kbps: UInt32 = 10_000,
    room: UInt32 = 0, supernodeName: String = ""
) -> OvMixerCapability {
    var capability = OvMixerCapability()
    capability.name = name
    capability.natType = nat
    capability.supernode = supernode
    capability.idleCores = cores
    capability.upstreamKbps = kbps
    capability.room = room
    capability.supernodeName = supernodeName
    return capability
}

@Suite("Mixer election")
struct MixerElectionTests {
    static func names(_ capabilities: [OvMixerCapability], participants: Set<String> = [], size: Int = 4) -> [String] {
        MixerElection.rank(capabilities, participants: participants, conferenceSize: size).map(\.name)
    }

    // MARK: - Room

    @Test("Room is the least of idle cores / 0.04, uplink kb/s / 64 and the node's own limit")
    func roomIsTheScarcestResource() {
        #expect(MixerElection.room(of: mixerCapability("a", cores: 1, kbps: 100_000)) == 25)  // CPU bound
        #expect(MixerElection.room(of: mixerCapability("a", cores: 8, kbps: 640)) == 10)  // uplink bound
        #expect(MixerElection.room(of: mixerCapability("a", cores: 8, kbps: 100_000, room: 7)) == 7)  // its own limit
        #expect(MixerElection.room(of: mixerCapability("a", cores: 0.5, kbps: 1_000, room: 40)) == 12)
        // room 0 means "no own limit", not "no room".
        #expect(MixerElection.room(of: mixerCapability("a", cores: 2, kbps: 6_400, room: 0)) == 50)
    }

    @Test("A node with no idle CPU, no uplink or nonsense measurements has no room (never a crash)")
    func noRoomForNonsense() {
        #expect(MixerElection.room(of: mixerCapability("a", cores: 0)) == 0)
        #expect(MixerElection.room(of: mixerCapability("a", kbps: 0)) == 0)
        #expect(MixerElection.room(of: mixerCapability("a", cores: -3)) == 0)
        #expect(MixerElection.room(of: mixerCapability("a", cores: .nan)) == 0)
        #expect(MixerElection.room(of: mixerCapability("a", cores: -.infinity)) == 0)
        // Absurdly many cores are still bounded by the uplink.
        #expect(MixerElection.room(of: mixerCapability("a", cores: .infinity, kbps: 6_400)) == 100)
        #expect(MixerElection.room(of: mixerCapability("a", cores: 1e300, kbps: .max)) == Int(Double(UInt32.max) / 64))
    }

    // MARK: - Reachability

    @Test("Reachability: public supernode 3, open/full cone 2, (port-)restricted 1, symmetric 0, UDP-blocked or unknown −1")
    func reachabilityScores() {
        #expect(MixerElection.reachability(of: mixerCapability("a", nat: "symmetric", supernode: true)) == 3)
        #expect(MixerElection.reachability(of: mixerCapability("a", nat: "open")) == 2)
        #expect(MixerElection.reachability(of: mixerCapability("a", nat: "full-cone")) == 2)
        #expect(MixerElection.reachability(of: mixerCapability("a", nat: "restricted")) == 1)
        #expect(MixerElection.reachability(of: mixerCapability("a", nat: "port-restricted")) == 1)
        #expect(MixerElection.reachability(of: mixerCapability("a", nat: "symmetric")) == 0)
        #expect(MixerElection.reachability(of: mixerCapability("a", nat: "udp-blocked")) == -1)
        #expect(MixerElection.reachability(of: mixerCapability("a", nat: "")) == -1)
        #expect(MixerElection.reachability(of: mixerCapability("a", nat: "something-new")) == -1)
    }

    @Test("A public supernode outside the conference outranks a participant, even one with an open address")
    func supernodeOutranksNATedParticipant() throws {
        let ranked = MixerElection.rank(
            [
                mixerCapability("alice", nat: "open", cores: 16, kbps: 100_000),
                mixerCapability("bob", nat: "port-restricted"),
                mixerCapability("zed-supernode", nat: "open", supernode: true),
            ],
            participants: ["alice", "bob"], conferenceSize: 2)
        #expect(ranked.map(\.name) == ["zed-supernode", "alice", "bob"])
        let first = try #require(ranked.first)
        #expect(first.reason.contains("public supernode"), "\(first.reason)")
        #expect(first.reason.contains("outside the conference"), "\(first.reason)")
        #expect(first.capability == mixerCapability("zed-supernode", nat: "open", supernode: true), "the candidate carries its capability")
    }

    @Test("Open and full cone before port-restricted before symmetric before UDP-blocked and unknown, whatever the names")
    func reachabilityOrder() {
        // Names run against the expected order so a name tie-break alone would get it backwards.
        let capabilities = [
            mixerCapability("a-blocked", nat: "udp-blocked"),
            mixerCapability("b-unknown", nat: ""),
            mixerCapability("c-symmetric", nat: "symmetric"),
            mixerCapability("d-restricted", nat: "port-restricted"),
            mixerCapability("e-fullcone", nat: "full-cone"),
            mixerCapability("f-open", nat: "open"),
        ]
        let participants = Set(capabilities.map(\.name))
        let ranked = Self.names(capabilities, participants: participants, size: 6)
        #expect(ranked == ["e-fullcone", "f-open", "d-restricted", "c-symmetric", "a-blocked", "b-unknown"])
        // Same input in any order, same ranking: everyone holds the same failover list.
        #expect(Self.names(capabilities.reversed(), participants: participants, size: 6) == ranked)
        #expect(
            Self.names(
                [capabilities[3], capabilities[0], capabilities[5], capabilities[1], capabilities[4], capabilities[2]],
                participants: participants, size: 6) == ranked)
    }

    // MARK: - Room first

    @Test("A candidate without room for the whole conference ranks behind every one that fits, however reachable")
    func noRoomRanksLast() throws {
        let capabilities = [
            mixerCapability("super-small-cpu", nat: "open", supernode: true, cores: 0.2),  // 5 by CPU
            mixerCapability("super-small-uplink", nat: "open", supernode: true, kbps: 320),  // 5 by uplink
            mixerCapability("super-own-limit", nat: "open", supernode: true, room: 5),  // 5 by its own limit
            mixerCapability("symmetric-ok", nat: "symmetric", cores: 1),  // 25
            mixerCapability("blocked-ok", nat: "udp-blocked", cores: 1),  // 25
        ]
        let ranked = MixerElection.rank(capabilities, participants: ["symmetric-ok", "blocked-ok"], conferenceSize: 6)
        #expect(ranked.map(\.name) == ["symmetric-ok", "blocked-ok", "super-own-limit", "super-small-cpu", "super-small-uplink"])
        for candidate in ranked.prefix(2) {
            #expect(!candidate.reason.contains("too little"), "\(candidate.name): \(candidate.reason)")
            #expect(candidate.reason.contains("room for 25"), "\(candidate.name): \(candidate.reason)")
        }
        for candidate in ranked.suffix(3) {
            #expect(candidate.reason.contains("room for 5 (too little for this conference)"), "\(candidate.name): \(candidate.reason)")
        }
        // Exactly enough room fits.
        #expect(Self.names(capabilities, participants: ["symmetric-ok", "blocked-ok"], size: 5).prefix(3).allSatisfy { $0.hasPrefix("super") })
    }

    @Test("When no candidate has room they are still ranked (best effort), by reachability")
    func nobodyFits() {
        let ranked = Self.names([mixerCapability("a", nat: "symmetric", room: 2), mixerCapability("b", nat: "open", room: 3)], size: 10)
        #expect(ranked == ["b", "a"])
    }

    // MARK: - Participants, room buckets, names

    @Test("At equal reachability a participant beats a node outside the conference")
    func participantBeatsOutsider() throws {
        let ranked = MixerElection.rank(
            [
                mixerCapability("aaa-outsider", nat: "open", cores: 16, kbps: 1_000_000),
                mixerCapability("zzz-member", nat: "open", cores: 1),
            ],
            participants: ["zzz-member"], conferenceSize: 3)
        #expect(ranked.map(\.name) == ["zzz-member", "aaa-outsider"])
        #expect(ranked[0].reason.contains("in the conference"))
        #expect(ranked[1].reason.contains("outside the conference"))
        // But better reachability still wins over membership.
        #expect(
            Self.names(
                [mixerCapability("member", nat: "symmetric"), mixerCapability("outsider", nat: "full-cone")],
                participants: ["member"], size: 2) == ["outsider", "member"])
    }

    @Test("Then more room in whole conferences' worth; near-equal machines tie and the name decides")
    func roomBucketsThenNames() {
        // Conference of 4: room 8 is 2 conferences' worth, room 12 is 3.
        #expect(Self.names([mixerCapability("a", cores: 0.32), mixerCapability("b", cores: 0.48)], size: 4) == ["b", "a"])
        // 9 and 11 are both 2 conferences' worth: a tie, the name decides.
        #expect(Self.names([mixerCapability("b", cores: 0.44), mixerCapability("a", cores: 0.36)], size: 4) == ["a", "b"])
        // Beyond 4 conferences' worth more room does not count.
        #expect(Self.names([mixerCapability("b", cores: 16), mixerCapability("a", cores: 0.64)], size: 4) == ["a", "b"])
    }

    @Test("The ranking is deterministic: equal candidates are ordered by name")
    func nameTieBreak() {
        let capabilities = ["carol", "alice", "dave", "bob"].map { mixerCapability($0) }
        #expect(Self.names(capabilities) == ["alice", "bob", "carol", "dave"])
        #expect(Self.names(capabilities.reversed()) == ["alice", "bob", "carol", "dave"])
    }

    @Test("Duplicate names count once (the first capability) and nameless ones not at all")
    func duplicatesAndEmptyNames() throws {
        let ranked = MixerElection.rank(
            [
                mixerCapability("bob", nat: "symmetric"),
                mixerCapability("", nat: "open", supernode: true),
                mixerCapability("alice", nat: "port-restricted"),
                mixerCapability("bob", nat: "open", supernode: true),
            ],
            participants: ["alice", "bob"], conferenceSize: 2)
        #expect(ranked.map(\.name) == ["alice", "bob"])
        #expect(ranked[1].capability.natType == "symmetric")
        #expect(MixerElection.rank([], participants: ["alice"], conferenceSize: 2).isEmpty)
        // A conference size of 0 is treated as 1 (never a division by zero).
        #expect(Self.names([mixerCapability("a", cores: 0.04)], size: 0) == ["a"])
    }

    @Test("The reason says why: reachability, membership, idle cores, uplink and room")
    func reasonText() {
        let ranked = MixerElection.rank(
            [
                mixerCapability("open", nat: "open", cores: 2.04, kbps: 2_000),
                mixerCapability("unknown", nat: "", cores: 1, kbps: 1_000),
                mixerCapability("sym", nat: "symmetric", cores: 1, kbps: 1_000),
            ],
            participants: ["open"], conferenceSize: 2)
        let reasons = Dictionary(uniqueKeysWithValues: ranked.map { ($0.name, $0.reason) })
        #expect(reasons["open"] == "public address, in the conference, 2.0 idle cores, 2000 kb/s up: room for 31")
        #expect(reasons["unknown"] == "unknown reachability, outside the conference, 1.0 idle cores, 1000 kb/s up: room for 15")
        #expect(reasons["sym"]?.hasPrefix("symmetric NAT, outside the conference") == true)
    }
}
