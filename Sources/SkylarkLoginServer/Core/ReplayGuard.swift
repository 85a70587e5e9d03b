/// Refuses login requests that are too old, from the future, or already seen. Sans-I/O.
///
/// A request id is remembered for twice the window (it could arrive `window` early or late),
/// which is exactly as long as a copy of it could still pass the timestamp check.
public struct ReplayGuard: Sendable {
    public enum Verdict: Equatable, Sendable {
        case fresh
        case stale
        case replayed
    }

    public let window: Double
    private var seen: [[UInt8]: Double] = [:]
    /// Insertion order, to forget expired ids without scanning the whole table.
    private var order: [(id: [UInt8], forgetAt: Double)] = []
    private var orderHead = 0

    public init(window: Double = 120) {
        self.window = window
    }

    public mutating func admit(requestID: [UInt8], timestamp: Double, now: Double) -> Verdict {
        forgetExpired(now: now)
        guard abs(now - timestamp) <= window else { return .stale }
        guard seen[requestID] == nil else { return .replayed }
        let forgetAt = now + 2 * window
        seen[requestID] = forgetAt
        order.append((requestID, forgetAt))
        return .fresh
    }

    public var rememberedCount: Int { seen.count }

    private mutating func forgetExpired(now: Double) {
        while orderHead < order.count, order[orderHead].forgetAt <= now {
            seen[order[orderHead].id] = nil
            orderHead += 1
        }
        if orderHead > 1024 && orderHead * 2 > order.count {
            order.removeFirst(orderHead)
            orderHead = 0
        }
    }
}
