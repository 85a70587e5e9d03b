import SkylarkOverlay
import SkylarkTraversal
import SkylarkWire
import Synchronization

/// Everything on its way to the reactor, with a bound on all that a remote party can fill.
///
/// - Datagrams wait in a queue that is fair among sources: each source host (whatever its port)
///   has its own FIFO (at most `datagramsPerSource`), served round robin, so a flood from a few
///   hosts delays a call's media by at most one datagram per flooding host. At `datagrams` in
///   all, or `sources` hosts, the source with the most waiting makes room (its oldest, or its
///   place in the table), so a flood cannot push out a call's packets. Every drop is counted.
///   Datagrams of no known kind are dropped before they are queued.
/// - Messages from a link count against that link (at most `messagesPerLink` waiting); a link
///   past its limit is closed by its handler, so one link's flood costs only that link.
/// - Ticks are coalesced (one of each kind waits at most); control requests beyond
///   `controlRequests` waiting are answered "busy" at once.
/// - Link lifecycle events, finished jobs and shutdown are never dropped: there is at most a
///   handful per link or job.
///
/// Datagrams and other events take turns, so neither a datagram flood nor a busy link can hold
/// the other back. Producers are any thread; the one consumer is the reactor.
final class NodeInbox: Sendable {
    struct Limits: Sendable {
        var datagrams = 2048
        var datagramsPerSource = 256
        var sources = 1024
        var messagesPerLink = 256
        var controlRequests = 256
    }

    let limits: Limits
    private let state: Mutex<State>

    init(limits: Limits = Limits()) {
        self.limits = limits
        state = Mutex(State(limits: limits))
    }

    // MARK: Producers

    /// Posts an event; returns false when it was dropped (a full queue, a tick already waiting).
    @discardableResult
    func yield(_ event: NodeEvent) -> Bool {
        let (accepted, waiter, busy) = state.withLock { state in
            let accepted = state.push(event)
            defer { state.refusedControl = nil }
            return (accepted, accepted ? state.takeWaiter() : nil, state.refusedControl)
        }
        // Answered outside the lock: the reply may run the control server's write at once.
        busy?.succeed(Reactor.failure("the node is busy: too many control requests waiting"))
        waiter?.resume()
        return accepted
    }

    /// A link's send queue was full: the message was dropped.
    func countSendDropped() { state.withLock { $0.counters.linkSendsDropped += 1 } }

    /// A link was closed for sending faster than the node could take its messages.
    func countLinkClosedForFlooding() { state.withLock { $0.counters.linksClosedForFlooding += 1 } }

    /// No more events: the consumer's `next()` returns nil once the queue is empty.
    func finish() {
        let waiter = state.withLock { state in
            state.finished = true
            return state.takeWaiter()
        }
        waiter?.resume()
    }

    // MARK: Consumer

    /// The next event if one is waiting, without waiting (the in-memory network's nodes).
    func poll() -> NodeEvent? { state.withLock { $0.pop() } }

    /// The next event, waiting for one; nil after `finish()` once everything queued is taken, or
    /// when the waiting task is cancelled. One consumer at a time.
    func next() async -> NodeEvent? {
        while true {
            let (event, finished) = state.withLock { state in (state.pop(), state.finished) }
            if let event { return event }
            if finished || Task.isCancelled { return nil }
            await withTaskCancellationHandler {
                await withCheckedContinuation { (waiter: CheckedContinuation<Void, Never>) in
                    // Checked again under the lock: an event posted since the pop wakes us at once.
                    let ready = state.withLock { state in
                        if state.hasWork || state.finished || Task.isCancelled { return true }
                        state.waiter = waiter
                        return false
                    }
                    if ready { waiter.resume() }
                }
            } onCancel: {
                // Only this wait ends: a later next() waits again.
                state.withLock { $0.takeWaiter() }?.resume()
            }
        }
    }

    var counters: ControlResults.Queues { state.withLock { $0.snapshot() } }
}

extension NodeInbox {
    fileprivate struct State {
        let limits: Limits
        var events = FIFO<NodeEvent>()
        var datagrams: FairQueue
        var turn = false
        var tickWaiting = false
        var mediaTickWaiting = false
        var controlWaiting = 0
        var messagesWaiting: [LinkID: Int] = [:]
        var finished = false
        var waiter: CheckedContinuation<Void, Never>?
        /// A control request just refused, answered by `yield` once the lock is released.
        var refusedControl: ControlReply?
        var counters = ControlResults.Queues()

        init(limits: Limits) {
            self.limits = limits
            datagrams = FairQueue(total: limits.datagrams, perSource: limits.datagramsPerSource, sources: limits.sources)
        }

        mutating func push(_ event: NodeEvent) -> Bool {
            switch event {
            case let .datagram(bytes, source, socket):
                if DatagramKind(bytes) == .unknown {
                    counters.datagramsUnknown += 1
                    return false
                }
                return pushDatagram(.init(bytes: bytes, source: source, socket: socket))
            case let .localRelayPacket(packet):
                // Our own circuit's end: fair-queued like any source (it is remote traffic).
                return pushDatagram(.init(bytes: packet, source: FairQueue.localSource, socket: -1))
            case let .linkMessage(id, _):
                let waiting = messagesWaiting[id, default: 0]
                guard waiting < limits.messagesPerLink else {
                    counters.linkMessagesDropped += 1
                    return false
                }
                messagesWaiting[id] = waiting + 1
            case .tick:
                guard !tickWaiting else { return false }
                tickWaiting = true
            case .mediaTick:
                guard !mediaTickWaiting else { return false }
                mediaTickWaiting = true
            case let .control(_, promise):
                guard controlWaiting < limits.controlRequests else {
                    counters.controlRefused += 1
                    refusedControl = promise
                    return false
                }
                controlWaiting += 1
            default:
                break
            }
            events.push(event)
            counters.eventsPeak = max(counters.eventsPeak, events.count)
            return true
        }

        private mutating func pushDatagram(_ datagram: FairQueue.Datagram) -> Bool {
            if let drop = datagrams.push(datagram) {
                switch drop {
                case .sourceFull: counters.datagramsDroppedSourceFull += 1
                case .queueFull: counters.datagramsDroppedQueueFull += 1
                }
                return false
            }
            counters.datagramsPeak = max(counters.datagramsPeak, datagrams.count)
            return true
        }

        /// Datagrams and other events take turns while both wait.
        mutating func pop() -> NodeEvent? {
            turn.toggle()
            if turn || datagrams.isEmpty, let event = events.pop() {
                switch event {
                case let .linkMessage(id, _):
                    if let waiting = messagesWaiting[id] { messagesWaiting[id] = waiting > 1 ? waiting - 1 : nil }
                case .tick: tickWaiting = false
                case .mediaTick: mediaTickWaiting = false
                case .control: controlWaiting -= 1
                default: break
                }
                return event
            }
            guard let datagram = datagrams.pop() else { return nil }
            if datagram.source == FairQueue.localSource { return .localRelayPacket(datagram.bytes) }
            return .datagram(datagram.bytes, from: datagram.source, socket: datagram.socket)
        }

        var hasWork: Bool { !events.isEmpty || !datagrams.isEmpty }

        mutating func takeWaiter() -> CheckedContinuation<Void, Never>? {
            defer { waiter = nil }
            return waiter
        }

        func snapshot() -> ControlResults.Queues {
            var counters = self.counters
            counters.datagramsWaiting = datagrams.count
            counters.datagramSources = datagrams.sourceCount
            counters.datagramsDroppedLongestQueue = datagrams.droppedForOthers
            counters.eventsWaiting = events.count
            counters.datagramLimit = limits.datagrams
            return counters
        }
    }
}

/// Datagrams waiting for the reactor, one FIFO per source host, served round robin. Sources are
/// hosts, not host:port pairs, so one host cannot claim many shares by opening many sockets.
struct FairQueue {
    struct Datagram {
        var bytes: [UInt8]
        var source: HostPort
        var socket: Int
    }

    enum Drop: Equatable {
        case sourceFull
        case queueFull
    }

    /// Stands for the node itself (relay packets of its own circuits).
    static let localSource = HostPort(host: "local", port: 0)

    let total: Int
    let perSource: Int
    let sources: Int
    private var queues: [String: FIFO<Datagram>] = [:]
    /// Hosts with something waiting, in serving order. A host whose datagrams were all dropped
    /// for others may still be listed (skipped when its turn comes); `compactOrder` keeps such
    /// leftovers few.
    private var order = FIFO<String>()
    private(set) var count = 0
    /// Datagrams dropped from the longest queue to make room for another source's.
    private(set) var droppedForOthers = 0
    private var longestCache: String?

    init(total: Int, perSource: Int, sources: Int) {
        self.total = total
        self.perSource = perSource
        self.sources = sources
    }

    var isEmpty: Bool { count == 0 }
    var sourceCount: Int { queues.count }

    /// Queues a datagram; says why when it was dropped instead. When the queue (or its table of
    /// sources) is full, the source with the most waiting pays — longest-queue drop, as fair
    /// queueing routers do — so a flood cannot push out a quiet source's packets.
    mutating func push(_ datagram: Datagram) -> Drop? {
        let key = datagram.source.host
        let own = queues[key]?.count ?? 0
        guard own < perSource else { return .sourceFull }
        if own == 0, queues[key] == nil, queues.count >= sources {
            // A new source and no room in the table: the longest source gives up its place.
            guard let longest = longestSource(), longest != key, let queue = queues[longest], queue.count >= 2 else { return .queueFull }
            queues[longest] = nil
            count -= queue.count
            droppedForOthers += queue.count
            longestCache = nil
        }
        if count >= total {
            guard let longest = longestSource(), longest != key, (queues[longest]?.count ?? 0) > own + 1 else { return .queueFull }
            dropOldest(of: longest)
        }
        if var queue = queues.removeValue(forKey: key) {
            queue.push(datagram)  // taken out first so the FIFO is uniquely referenced while it grows
            queues[key] = queue
        } else {
            var queue = FIFO<Datagram>()
            queue.push(datagram)
            queues[key] = queue
            order.push(key)
            if order.count > 2 * sources { compactOrder() }
        }
        count += 1
        return nil
    }

    /// A source with more waiting than most: the one found last time while it still has more
    /// than a newcomer would (a flood keeps it so), else the longest after a scan of the table.
    private mutating func longestSource() -> String? {
        if let cached = longestCache, let queue = queues[cached], queue.count >= 2 { return cached }
        longestCache = queues.max { $0.value.count < $1.value.count }?.key
        return longestCache
    }

    private mutating func dropOldest(of source: String) {
        guard var queue = queues.removeValue(forKey: source), queue.pop() != nil else { return }
        count -= 1
        droppedForOthers += 1
        if !queue.isEmpty { queues[source] = queue }
    }

    /// The serving order without hosts that have nothing waiting, each host once.
    private mutating func compactOrder() {
        var seen = Set<String>()
        var kept = FIFO<String>()
        while let source = order.pop() {
            if queues[source] != nil, seen.insert(source).inserted { kept.push(source) }
        }
        order = kept
    }

    /// The next datagram: the oldest of the source whose turn it is.
    mutating func pop() -> Datagram? {
        while let source = order.pop() {
            // Listed but with nothing left (all dropped for others): skip it.
            guard var queue = queues.removeValue(forKey: source), let datagram = queue.pop() else { continue }
            if !queue.isEmpty {
                queues[source] = queue
                order.push(source)
            }
            count -= 1
            return datagram
        }
        return nil
    }
}

/// A first-in first-out queue over an array: popping moves a start index, and the array is
/// compacted once more than half of it has been taken.
struct FIFO<Element> {
    private var storage: [Element] = []
    private var start = 0

    var count: Int { storage.count - start }
    var isEmpty: Bool { count == 0 }

    mutating func push(_ element: Element) { storage.append(element) }

    mutating func pop() -> Element? {
        guard start < storage.count else { return nil }
        let element = storage[start]
        start += 1
        if start == storage.count {
            storage.removeAll(keepingCapacity: storage.count <= 1024)
            start = 0
        } else if start >= 64, start * 2 >= storage.count {
            storage.removeFirst(start)
            start = 0
        }
        return element
    }
}
