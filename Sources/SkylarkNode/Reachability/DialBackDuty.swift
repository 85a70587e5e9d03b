import SkylarkOverlay

/// The dial-backs a supernode carries out for others (a node asking whether it can be reached):
/// a TCP dial to each of up to two of its addresses and one UDP probe. The reactor opens the
/// dials and sends the probe; this keeps track of which dials are still out, and reports each
/// check once, when a dial got through, every dial ended, or its deadline passed.
struct DialBackDuty {
    struct Result: Equatable {
        var token: UInt64
        var tcpReached: Bool
        var udpSent: Bool
    }

    /// How long a dial-back may take, in seconds.
    static let timeout = 5.0

    private struct Pending {
        var links: Set<LinkID>
        var tcpReached = false
        var udpSent: Bool
        var deadline: Double
    }

    private var pending: [UInt64: Pending] = [:]

    var count: Int { pending.count }

    /// Dials `links` are out for `token`; a check with no dial at all is over at once.
    mutating func started(token: UInt64, links: Set<LinkID>, udpSent: Bool, now: Double) -> Result? {
        pending[token] = Pending(links: links, udpSent: udpSent, deadline: now + Self.timeout)
        return links.isEmpty ? finish(token) : nil
    }

    /// One of the dials ended; `reached`: it got through to the node (the dial-back completed).
    mutating func linkEnded(token: UInt64, link: LinkID, reached: Bool) -> Result? {
        guard var check = pending[token] else { return nil }
        check.links.remove(link)
        check.tcpReached = check.tcpReached || reached
        pending[token] = check
        return check.links.isEmpty || check.tcpReached ? finish(token) : nil
    }

    /// Checks whose deadline has passed, ended with what they reached so far.
    mutating func expire(now: Double) -> [Result] {
        pending.filter { $0.value.deadline <= now }.keys.sorted().compactMap { finish($0) }
    }

    private mutating func finish(_ token: UInt64) -> Result? {
        guard let check = pending.removeValue(forKey: token) else { return nil }
        return Result(token: token, tcpReached: check.tcpReached, udpSent: check.udpSent)
    }
}
