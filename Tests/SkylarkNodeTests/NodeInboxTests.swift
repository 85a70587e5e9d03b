import Foundation
import SkylarkOverlay
import SkylarkTraversal
import SkylarkWire
import Synchronization
import Testing

@testable import SkylarkNode

/// The reactor's inbox: nothing a remote party sends grows it past its limits, a flood from one
/// source does not crowd out another, and what is dropped is counted.
@Suite struct NodeInboxTests {
    static let flooder = HostPort(host: "198.51.100.7", port: 4000)
    static let caller = HostPort(host: "203.0.113.40", port: 7100)
    static let rtp: [UInt8] = [0x80, 111] + [UInt8](repeating: 7, count: 160)
    static let overlay: [UInt8] = DatagramKind.overlay([1, 2, 3])

    static func source(_ index: Int) -> HostPort { HostPort(host: "10.0.\(index / 250).\(index % 250)", port: 5000) }

    /// Pops what is ready without waiting (the inbox holds it already).
    static func drain(_ inbox: NodeInbox, most: Int) async -> [NodeEvent] {
        var events: [NodeEvent] = []
        while events.count < most, inbox.counters.datagramsWaiting + inbox.counters.eventsWaiting > 0, let event = await inbox.next() {
            events.append(event)
        }
        return events
    }

    @Test func aFloodFromOneSourceDoesNotCrowdOutAnother() async {
        let inbox = NodeInbox()
        for _ in 0..<10_000 { inbox.yield(.datagram(Self.rtp, from: Self.flooder, socket: 0)) }
        for _ in 0..<5 { #expect(inbox.yield(.datagram(Self.rtp, from: Self.caller, socket: 0))) }
        let counters = inbox.counters
        #expect(counters.datagramsWaiting == inbox.limits.datagramsPerSource + 5)
        #expect(counters.datagramsDroppedSourceFull == 10_000 - inbox.limits.datagramsPerSource)
        // Round robin: the caller's five come out among the first ten, not after the flood.
        let first = await Self.drain(inbox, most: 10)
        let fromCaller = first.filter {
            if case let .datagram(_, source, _) = $0 { return source == Self.caller }; return false
        }
        #expect(fromCaller.count == 5)
    }

    @Test func whenTheQueueIsFullTheFloodingSourcePaysNotTheQuietOne() async {
        let inbox = NodeInbox(limits: .init(datagrams: 64, datagramsPerSource: 64, sources: 16))
        for _ in 0..<1000 { inbox.yield(.datagram(Self.rtp, from: Self.flooder, socket: 0)) }
        #expect(inbox.counters.datagramsWaiting == 64)
        // The queue is full of the flood, yet each of the caller's packets gets in.
        for _ in 0..<10 { #expect(inbox.yield(.datagram(Self.rtp, from: Self.caller, socket: 0))) }
        let counters = inbox.counters
        #expect(counters.datagramsWaiting == 64)
        #expect(counters.datagramsDroppedLongestQueue == 10)
        let first = await Self.drain(inbox, most: 20)
        let fromCaller = first.filter {
            if case let .datagram(_, source, _) = $0 { return source == Self.caller }; return false
        }
        #expect(fromCaller.count == 10)
    }

    @Test func oneHostWithManySocketsIsOneSource() {
        let inbox = NodeInbox(limits: .init(datagrams: 2048, datagramsPerSource: 16, sources: 8))
        for port in 0..<1000 { inbox.yield(.datagram(Self.rtp, from: HostPort(host: "198.51.100.7", port: 10_000 + port), socket: 0)) }
        #expect(inbox.counters.datagramSources == 1)
        #expect(inbox.counters.datagramsWaiting == 16)
        #expect(inbox.yield(.datagram(Self.rtp, from: Self.caller, socket: 0)))
    }

    @Test func aNewSourceGetsInWhenTheTableOfSourcesIsFull() async {
        let inbox = NodeInbox(limits: .init(datagrams: 2048, datagramsPerSource: 64, sources: 4))
        for index in 0..<4 {
            for _ in 0..<10 { inbox.yield(.datagram(Self.rtp, from: Self.source(index), socket: 0)) }
        }
        #expect(inbox.counters.datagramSources == 4)
        // The caller is the fifth: a flooding source gives up its place rather than the caller being refused.
        #expect(inbox.yield(.datagram(Self.rtp, from: Self.caller, socket: 0)))
        let counters = inbox.counters
        #expect(counters.datagramSources == 4)
        #expect(counters.datagramsDroppedLongestQueue == 10)
        #expect(counters.datagramsWaiting == 31)
        let all = await Self.drain(inbox, most: 100)
        #expect(all.count == 31)
        #expect(
            all.contains {
                if case let .datagram(_, source, _) = $0 { return source == Self.caller }; return false
            })
    }

    @Test func manySourcesCannotPassTheTotalLimit() async {
        let inbox = NodeInbox(limits: .init(datagrams: 500, datagramsPerSource: 8, sources: 100))
        for round in 0..<20 {
            for index in 0..<300 { inbox.yield(.datagram(Self.overlay + [UInt8(round)], from: Self.source(index), socket: 0)) }
        }
        let counters = inbox.counters
        #expect(counters.datagramsWaiting <= 500)
        #expect(counters.datagramSources <= 100)
        #expect(counters.datagramsPeak <= 500)
        #expect(
            counters.datagramsDroppedQueueFull + counters.datagramsDroppedSourceFull + counters.datagramsDroppedLongestQueue
                == 20 * 300 - counters.datagramsWaiting)
        // Once taken, there is room again.
        _ = await Self.drain(inbox, most: 500)
        #expect(inbox.yield(.datagram(Self.overlay, from: Self.caller, socket: 0)))
    }

    @Test func datagramsOfNoKnownKindAreDroppedUnqueued() {
        let inbox = NodeInbox()
        #expect(!inbox.yield(.datagram([0x42, 1, 2, 3], from: Self.flooder, socket: 0)))
        #expect(!inbox.yield(.datagram([], from: Self.flooder, socket: 0)))
        #expect(inbox.yield(.datagram(Self.overlay, from: Self.flooder, socket: 0)))
        #expect(inbox.counters.datagramsUnknown == 2)
        #expect(inbox.counters.datagramsWaiting == 1)
    }

    @Test func aLinkWithTooManyMessagesWaitingIsRefusedAndOthersAreNot() async {
        let inbox = NodeInbox(limits: .init(messagesPerLink: 4))
        let busy: LinkID = 7
        let quiet: LinkID = 8
        for _ in 0..<4 { #expect(inbox.yield(.linkMessage(busy, OvLinkMessage()))) }
        #expect(!inbox.yield(.linkMessage(busy, OvLinkMessage())))
        #expect(inbox.yield(.linkMessage(quiet, OvLinkMessage())))
        #expect(inbox.counters.linkMessagesDropped == 1)
        // Taking one makes room for one more.
        guard case .linkMessage(busy, _)? = await inbox.next() else { Issue.record("expected the busy link's message"); return }
        #expect(inbox.yield(.linkMessage(busy, OvLinkMessage())))
        #expect(!inbox.yield(.linkMessage(busy, OvLinkMessage())))
    }

    @Test func ticksAreCoalesced() async {
        let inbox = NodeInbox()
        #expect(inbox.yield(.tick))
        #expect(!inbox.yield(.tick))
        #expect(inbox.yield(.mediaTick))
        #expect(!inbox.yield(.mediaTick))
        #expect(inbox.counters.eventsWaiting == 2)
        _ = await Self.drain(inbox, most: 2)
        #expect(inbox.yield(.tick))
    }

    @Test func eventsAndDatagramsTakeTurns() async {
        let inbox = NodeInbox()
        // A full queue of datagrams, then five messages of one link: served alternately, so the
        // messages are out within the first ten, not after the thousand datagrams.
        for index in 0..<1000 { inbox.yield(.datagram(Self.rtp, from: Self.source(index), socket: 0)) }
        for _ in 0..<5 { inbox.yield(.linkMessage(9, OvLinkMessage())) }
        let first = await Self.drain(inbox, most: 10)
        let messages = first.filter {
            if case .linkMessage = $0 { return true }; return false
        }
        let datagrams = first.filter {
            if case .datagram = $0 { return true }; return false
        }
        #expect(messages.count == 5)
        #expect(datagrams.count == 5)
    }

    @Test func controlRequestsBeyondTheLimitAreAnsweredBusy() {
        let inbox = NodeInbox(limits: .init(controlRequests: 2))
        let answers = Mutex<[Int: String]>([:])
        for index in 0..<3 {
            inbox.yield(.control(ControlRequest(command: .status), ControlReply { answer in answers.withLock { $0[index] = answer } }))
        }
        // The first two wait for the reactor; the third is answered at once.
        #expect(answers.withLock { $0[0] == nil && $0[1] == nil })
        #expect(answers.withLock { $0[2] }?.contains("busy") == true)
        #expect(inbox.counters.controlRefused == 1)
    }

    @Test(.timeLimit(.minutes(1)))
    func nextWaitsForAnEventEndsAfterFinishAndACancelledWaitLeavesTheInboxUsable() async {
        let inbox = NodeInbox()
        // A cancelled wait returns nil...
        let waiting = Task { await inbox.next() }
        waiting.cancel()
        #expect(await waiting.value == nil)
        // ...and the next one still gets what is posted later, from another thread.
        let later = Task { await inbox.next() }
        Thread.detachNewThread { inbox.yield(.tick) }
        guard case .tick? = await later.value else { Issue.record("expected the tick"); return }
        inbox.yield(.shutdown)
        inbox.finish()
        guard case .shutdown? = await inbox.next() else { Issue.record("what was queued before finish() is still taken"); return }
        #expect(await inbox.next() == nil)
    }

    @Test func fifoKeepsOrderAcrossCompaction() {
        var fifo = FIFO<Int>()
        var expected = 0
        for value in 0..<10_000 {
            fifo.push(value)
            if value % 3 == 0, let popped = fifo.pop() {
                #expect(popped == expected)
                expected += 1
            }
        }
        while let popped = fifo.pop() {
            #expect(popped == expected)
            expected += 1
        }
        #expect(expected == 10_000)
        #expect(fifo.isEmpty)
    }
}

/// The transport's jobs (dials, logins): past the limit a job is refused at once, and a finished
/// one makes room again.
@Suite struct JobCounterTests {
    @Test func pastTheLimitAJobIsRefusedUntilOneFinishes() {
        let counter = JobCounter()
        for _ in 0..<3 { #expect(counter.start(limit: 3)) }
        #expect(!counter.start(limit: 3))
        #expect(!counter.start(limit: 3))
        counter.finish()
        #expect(counter.start(limit: 3))
        #expect(!counter.start(limit: 3))
    }
}
