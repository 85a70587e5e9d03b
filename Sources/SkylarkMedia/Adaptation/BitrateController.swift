/// How a call's Opus encoder adapts to its path, from the far end's receiver reports: the
/// bitrate (12–64 kb/s), how many 20 ms frames go in one packet, and how much of the bitrate
/// in-band FEC may take. Sans-I/O: reports and time come in, the setting to apply comes out.
///
/// The controller reasons in *wire* bits per second — Opus plus the 56 bytes of IPv4, UDP, RTP
/// and GCM tag each packet costs — because that is what a narrow link carries: at 20 ms those
/// headers alone are 22.4 kb/s, so under a 24 kb/s bottleneck no Opus bitrate fits in 20 ms
/// packets, while 60 ms packets leave 16 kb/s for the voice.
///
/// Loss-based, in the manner of WebRTC's send-side controller, with the throughput the far end
/// measured as the capacity estimate:
/// - loss over 10 %: the wire rate drops by half the loss fraction, and — when a queue stands
///   behind the loss, so it is congestion, not random loss — to what got through (90 % of the
///   far end's throughput) if that is lower: one step to a rate that fits (and not again until
///   a report covers only time after that step);
/// - packets 60 ms slower than the fastest beyond twice the jitter (the far end's mean queueing
///   delay; jitter alone raises the mean too): a queue is building, and loss follows when it
///   overflows: to 85 % of the throughput, so it drains;
/// - loss under 2 %, queueing under 30 ms, the stream not paused (DTX) and 2 s since the last
///   decrease: 8 % up a report, but only to 92 % of the throughput measured when the path last
///   overflowed (its capacity), and past that by 2 % a report after 20 s without trouble — so
///   a call under a bottleneck stays under it instead of refilling the queue every few seconds;
/// - otherwise the rate holds, and FEC (the encoder's expected loss, the smoothed measured loss)
///   covers what is lost.
/// No report for 3 s after reports had come is taken as the path having collapsed: 30 % down a
/// second until reports return.
public struct BitrateController: Sendable {
    public struct Configuration: Sendable, Equatable {
        public var minimumBitrate = 12_000
        public var maximumBitrate = 64_000
        public var startBitrate = 32_000
        /// IPv4 (20) + UDP (8) + RTP (12) + GCM tag (16).
        public var packetOverheadBytes = 56
        /// The far end reports once a second; this long without one counts as a collapse.
        public var reportTimeout = 3.0
        public init() {}
    }

    /// What drove the current setting.
    public enum Reason: Sendable, Equatable, CustomStringConvertible {
        /// No report yet: the starting setting.
        case start
        /// Reports show a clean path: the bitrate climbs towards the maximum.
        case clearPath
        /// The far end lost this share of packets (percent) in the last interval.
        case loss(percent: Double)
        /// The far end received only this much (wire kb/s) while more was sent.
        case throughput(kbps: Double)
        /// The far end's packets waited this long (ms, mean) in a queue on the path.
        case queueing(milliseconds: Double)
        /// No report for this long (seconds).
        case reportsMissing(seconds: Double)

        public var description: String {
            switch self {
            case .start: return "start"
            case .clearPath: return "clear path"
            case let .loss(percent): return "loss \(Self.format(percent)) %"
            case let .throughput(kbps): return "far end receives \(Self.format(kbps)) kb/s"
            case let .queueing(delay): return "queueing \(Int(delay.rounded())) ms"
            case let .reportsMissing(seconds): return "no reports for \(Self.format(seconds)) s"
            }
        }

        private static func format(_ value: Double) -> String {
            let rounded = (value * 10).rounded() / 10
            return rounded == rounded.rounded() ? String(Int(rounded)) : String(rounded)
        }
    }

    public struct Setting: Sendable, Equatable {
        /// Opus bitrate, bits per second.
        public var bitrate: Int
        /// 20 ms frames per packet (1–3).
        public var framesPerPacket: Int
        /// The encoder's expected loss (percent), which sizes in-band FEC.
        public var expectedLossPercent: Int
        public var reason: Reason
    }

    public let configuration: Configuration
    public private(set) var setting: Setting
    /// The last round trip measured from a report's echo, seconds.
    public private(set) var roundTripTime: Double?
    private var previous: ReceiverReport?
    private var lastReportAt: Double?
    private var lastDecreaseAt = -Double.infinity
    private var lastCollapseStepAt = -Double.infinity
    /// What the far end received when the path last overflowed (loss or a queue): the path's
    /// capacity as far as we know, wire bits per second.
    private var capacity: Double?
    private var smoothedLoss = 0.0

    /// The state before the first report, when the stream's start is known: the first report
    /// then already covers an interval (from our clock), a second sooner than waiting for two.
    private var beforeFirstReport: (report: ReceiverReport, at: Double)?

    /// `start` and `firstSequence`: when and with which RTP sequence number our stream began
    /// (the far end extends its first sequence number one cycle up, as `ReceptionTracker` does).
    public init(configuration: Configuration = Configuration(), lossHint: Int = 10, start: Double? = nil, firstSequence: UInt16? = nil) {
        self.configuration = configuration
        setting = Setting(bitrate: configuration.startBitrate, framesPerPacket: 1, expectedLossPercent: lossHint, reason: .start)
        if let start, let firstSequence {
            let before = ReceiverReport(
                highestSequence: UInt32(firstSequence) + 0x1_0000 - 1, packetsReceived: 0, bytesReceived: 0, jitterMicroseconds: 0, sentAtMilliseconds: 0)
            beforeFirstReport = (before, start)
        }
    }

    /// Wire bits per second of a setting.
    public func wireRate(_ setting: Setting) -> Double {
        Double(setting.bitrate) + Double(configuration.packetOverheadBytes * 8) * 50 / Double(setting.framesPerPacket)
    }

    /// A report from the far end arrived at `now` (our clock, seconds).
    public mutating func handle(_ report: ReceiverReport, now: Double) {
        lastReportAt = now
        if report.echoMilliseconds != ReceiverReport.noEcho {
            let elapsed = ReceiverReport.milliseconds(now) &- report.echoMilliseconds &- report.heldMilliseconds
            // A wrapped (negative) or absurd value is a report from before a clock we do not know.
            if elapsed < 60_000 {
                let rtt = Double(elapsed) / 1000
                roundTripTime = rtt
            }
        }
        let previous: ReceiverReport
        let interval: Double
        if let last = self.previous {
            previous = last
            interval = Double(report.sentAtMilliseconds &- previous.sentAtMilliseconds) / 1000
        } else if let (before, start) = beforeFirstReport {
            previous = before
            interval = now - start
        } else {
            self.previous = report
            return
        }
        // Reports out of order, or too close together to measure a rate over.
        guard interval >= 0.25, interval < 60 else {
            if interval >= 60 { self.previous = report }
            return
        }
        self.previous = report
        let expected = Int(Int32(bitPattern: report.highestSequence &- previous.highestSequence))
        let received = Int(report.packetsReceived &- previous.packetsReceived)
        let bytes = Int(report.bytesReceived &- previous.bytesReceived)
        guard expected >= 0 else { return }
        let loss = expected > 0 ? min(1, max(0, 1 - Double(received) / Double(expected))) : 0
        if expected > 0 { smoothedLoss = 0.6 * smoothedLoss + 0.4 * loss }
        // What arrived, with the IP and UDP headers the far end did not count.
        let throughput = Double(bytes + received * 28) * 8 / interval
        let wire = wireRate(setting)
        // Jitter alone puts the mean over the fastest packet too (±30 ms at two routers: about
        // 50 ms, for good), while a standing queue delays every packet alike: what is over twice
        // the interarrival jitter the far end measured is queue.
        let queueing = max(0, Double(report.queueingMicroseconds) / 1e6 - 2 * Double(report.jitterMicroseconds) / 1e6)
        let sending = expected >= Int(interval * 50 / Double(setting.framesPerPacket) / 2)
        var target = wire
        var reason = setting.reason
        // The report after a decrease still covers time sent at the old rate: only one that began
        // after the decrease took effect may cut again.
        let afterLastDecrease = now - lastDecreaseAt >= interval + (roundTripTime ?? 0)
        if loss > 0.10, afterLastDecrease {
            // Random loss is not congestion: what got through is then just less than was sent,
            // not what the path can carry. Only with a queue behind the loss is the throughput the
            // path's capacity, and the rate goes there in one step.
            target = wire * (1 - loss / 2)
            reason = .loss(percent: loss * 100)
            if queueing > 0.060 || received == 0 {
                let fitting = received > 0 ? throughput * 0.9 : wire * 0.5
                if fitting < target {
                    target = fitting
                    reason = .throughput(kbps: throughput / 1000)
                }
                if received > 0 { capacity = throughput }
            }
            lastDecreaseAt = now
        } else if queueing > 0.060, sending, afterLastDecrease {
            // A queue is building on the path: below what gets through, so that it drains.
            target = min(wire * 0.85, received > 0 ? throughput * 0.85 : wire * 0.85)
            reason = .queueing(milliseconds: queueing * 1000)
            if received > 0 { capacity = throughput }
            lastDecreaseAt = now
        } else if loss < 0.02, queueing < 0.030, sending, now - lastDecreaseAt >= 2 {
            target = wire * 1.08 + 500
            reason = .clearPath
            if let capacity {
                // Under the rate that last filled the path: up to 92 % of it at once; over that
                // only by probing, 2 % a report, after 20 s without trouble.
                if wire < capacity * 0.92 {
                    target = min(target, capacity * 0.92)
                } else if now - lastDecreaseAt >= 20 {
                    target = wire * 1.02 + 500
                } else {
                    target = wire
                    reason = .throughput(kbps: capacity / 1000)
                }
            }
        } else if loss >= 0.02 {
            reason = .loss(percent: loss * 100)
        }
        setting = fit(wire: target, reason: reason)
    }

    /// When `handleTimeout` wants to run next (nil before the first report).
    public var nextTimeout: Double? {
        guard let lastReportAt else { return nil }
        return max(lastReportAt + configuration.reportTimeout, lastCollapseStepAt + 1)
    }

    /// No report for a while: the path may have collapsed under what we send.
    public mutating func handleTimeout(now: Double) {
        guard let lastReportAt, now - lastReportAt >= configuration.reportTimeout, now - lastCollapseStepAt >= 1 else { return }
        lastCollapseStepAt = now
        lastDecreaseAt = now
        setting = fit(wire: wireRate(setting) * 0.7, reason: .reportsMissing(seconds: now - lastReportAt))
    }

    /// The setting whose wire rate is `wire`: the shortest packets that leave a useful bitrate
    /// (20 ms from 20 kb/s of Opus, 40 ms from 14 kb/s, 60 ms below), clamped to the range.
    private func fit(wire: Double, reason: Reason) -> Setting {
        var frames = Opus.maximumFramesPerPacket
        for candidate in 1...Opus.maximumFramesPerPacket {
            let overhead = Double(configuration.packetOverheadBytes * 8) * 50 / Double(candidate)
            // Shorter packets than now only with headroom, so the size does not flap.
            let hysteresis = candidate < setting.framesPerPacket ? 2_000.0 : 0
            if wire - overhead >= (candidate == 1 ? 20_000 : 14_000) + hysteresis {
                frames = candidate
                break
            }
        }
        let overhead = Double(configuration.packetOverheadBytes * 8) * 50 / Double(frames)
        let bitrate = Int(min(Double(configuration.maximumBitrate), max(Double(configuration.minimumBitrate), wire - overhead)).rounded())
        let expectedLoss = Int(min(30, (smoothedLoss * 100).rounded(.up)))
        return Setting(bitrate: bitrate, framesPerPacket: frames, expectedLossPercent: expectedLoss, reason: reason)
    }
}
