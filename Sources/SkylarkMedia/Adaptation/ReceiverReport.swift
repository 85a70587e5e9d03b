/// What one side of a call tells the other, once a second, about the audio it receives: the
/// counts the sender needs to see loss and throughput, and timestamps for the round-trip time.
/// In the spirit of an RTCP receiver report (RFC 3550 §6.4.2) but sealed like the media itself:
/// it travels as an RTP packet of its own SSRC and payload type (`CallMedia`), so the supernodes
/// on a relayed path see a small packet a second go by, never the figures in it.
///
/// Counters are cumulative and wrap at 2^32, so a lost report costs nothing: the next one
/// covers both intervals.
///
/// ```
///  byte 0       version (1)
///  1 ..< 5      highest sequence number received, extended (low 32 bits)
///  5 ..< 9      packets received
///  9 ..< 13     bytes received (RTP packets as they arrived, before decryption)
///  13 ..< 17    interarrival jitter, µs
///  17 ..< 21    sent at: the reporter's clock, ms (wraps)
///  21 ..< 25    echo: "sent at" of the last report the reporter received, or 0xFFFFFFFF
///  25 ..< 29    held: ms between receiving that report and sending this one
///  29 ..< 33    queueing delay: how much longer than the fastest the last interval's packets
///               took on their way, µs (mean)
/// ```
/// The reporter's clock is never compared with ours: the round trip is our clock now, minus the
/// echo of our own "sent at", minus the time the far end held it (RFC 3550 §6.4.1's LSR/DLSR).
public struct ReceiverReport: Sendable, Equatable {
    public static let version: UInt8 = 1
    public static let byteCount = 33
    public static let noEcho = UInt32.max

    public var highestSequence: UInt32
    public var packetsReceived: UInt32
    public var bytesReceived: UInt32
    public var jitterMicroseconds: UInt32
    public var sentAtMilliseconds: UInt32
    public var echoMilliseconds: UInt32
    public var heldMilliseconds: UInt32
    public var queueingMicroseconds: UInt32

    public init(
        highestSequence: UInt32, packetsReceived: UInt32, bytesReceived: UInt32, jitterMicroseconds: UInt32, sentAtMilliseconds: UInt32,
        echoMilliseconds: UInt32 = ReceiverReport.noEcho, heldMilliseconds: UInt32 = 0, queueingMicroseconds: UInt32 = 0
    ) {
        self.highestSequence = highestSequence
        self.packetsReceived = packetsReceived
        self.bytesReceived = bytesReceived
        self.jitterMicroseconds = jitterMicroseconds
        self.sentAtMilliseconds = sentAtMilliseconds
        self.echoMilliseconds = echoMilliseconds
        self.heldMilliseconds = heldMilliseconds
        self.queueingMicroseconds = queueingMicroseconds
    }

    public enum DecodingError: Error, Equatable, Sendable, CustomStringConvertible {
        case wrongLength(Int)
        case unsupportedVersion(UInt8)
        public var description: String {
            switch self {
            case let .wrongLength(count): return "receiver report of \(count) bytes (expected \(ReceiverReport.byteCount))"
            case let .unsupportedVersion(version): return "receiver report version \(version) (expected \(ReceiverReport.version))"
            }
        }
    }

    public init(decoding bytes: [UInt8]) throws(DecodingError) {
        guard bytes.count == Self.byteCount else { throw .wrongLength(bytes.count) }
        guard bytes[0] == Self.version else { throw .unsupportedVersion(bytes[0]) }
        func word(_ at: Int) -> UInt32 {
            UInt32(bytes[at]) << 24 | UInt32(bytes[at + 1]) << 16 | UInt32(bytes[at + 2]) << 8 | UInt32(bytes[at + 3])
        }
        self.init(
            highestSequence: word(1), packetsReceived: word(5), bytesReceived: word(9), jitterMicroseconds: word(13), sentAtMilliseconds: word(17),
            echoMilliseconds: word(21), heldMilliseconds: word(25), queueingMicroseconds: word(29))
    }

    public func encoded() -> [UInt8] {
        var bytes = [Self.version]
        bytes.reserveCapacity(Self.byteCount)
        for value in [
            highestSequence, packetsReceived, bytesReceived, jitterMicroseconds, sentAtMilliseconds, echoMilliseconds, heldMilliseconds, queueingMicroseconds,
        ] {
            bytes += [
                UInt8(truncatingIfNeeded: value >> 24), UInt8(truncatingIfNeeded: value >> 16), UInt8(truncatingIfNeeded: value >> 8),
                UInt8(truncatingIfNeeded: value),
            ]
        }
        return bytes
    }
}

/// The receive side's counts for its reports: every media packet that authenticated, by its
/// extended sequence number (the cipher has already refused duplicates and replays), and how
/// long it took compared with the fastest.
///
/// Queueing delay: a packet's transit is its arrival minus its media time (timestamp / 48 kHz);
/// the two clocks are unrelated, but the difference between transits is the extra time a packet
/// spent queued. The fastest transit seen is the reference; it rises by 2 ms a second on its
/// own, so the clocks' drift (300 ppm: 0.3 ms a second) and a longer route are forgotten, while
/// a queue that builds within seconds shows. The first packets of a call cross an empty queue,
/// so even a queue that fills at once is measured.
public struct ReceptionTracker: Sendable {
    public private(set) var packetsReceived = 0
    public private(set) var bytesReceived = 0
    private var first: UInt64?
    private var highest: UInt64?
    private var highestTimestamp: UInt64?
    private var fastest: (transit: Double, at: Double)?
    private var queueingSum = 0.0
    private var queueingCount = 0
    /// The mean queueing delay of the interval last reported, seconds.
    public private(set) var queueing = 0.0

    public init() {}

    public var hasReceived: Bool { highest != nil }

    /// Records a packet's media time as well (`timestamp` at 48 kHz) and its arrival, for the
    /// queueing delay.
    public mutating func record(sequence: UInt16, timestamp: UInt32, bytes: Int, arrival now: Double) {
        let extended = RTPSequence.extend(timestamp: timestamp, near: highestTimestamp)
        if highestTimestamp.map({ extended > $0 }) ?? true { highestTimestamp = extended }
        let transit = now - Double(extended) / Double(Opus.sampleRate)
        let reference = fastest.map { $0.transit + 0.002 * (now - $0.at) } ?? transit
        if transit <= reference {
            fastest = (transit, now)
        } else {
            queueingSum += transit - reference
        }
        queueingCount += 1
        record(sequence: sequence, bytes: bytes)
    }

    public mutating func record(sequence: UInt16, bytes: Int) {
        // One cycle up, so a packet reordered before the first one has an extended number too.
        let extended = highest.map { RTPSequence.extend(sequence, near: $0) } ?? UInt64(sequence) + 0x1_0000
        packetsReceived += 1
        bytesReceived += bytes
        if highest.map({ extended > $0 }) ?? true { highest = extended }
        if first.map({ extended < $0 }) ?? true { first = extended }
    }

    /// Packets the sender numbered that never arrived (RFC 3550 A.3: expected − received).
    public var packetsLost: Int {
        guard let first, let highest else { return 0 }
        return max(0, Int(highest - first + 1) - packetsReceived)
    }

    public var lossPercent: Double? {
        guard let first, let highest else { return nil }
        return 100 * Double(packetsLost) / Double(highest - first + 1)
    }

    /// The report for the interval that ends now (the queueing delay starts afresh).
    public mutating func report(jitterMilliseconds: Double, sentAt now: Double, echoing peer: (sentAtMilliseconds: UInt32, arrivedAt: Double)?)
        -> ReceiverReport
    {
        if queueingCount > 0 { queueing = queueingSum / Double(queueingCount) }
        queueingSum = 0
        queueingCount = 0
        return ReceiverReport(
            highestSequence: UInt32(truncatingIfNeeded: highest ?? 0), packetsReceived: UInt32(truncatingIfNeeded: packetsReceived),
            bytesReceived: UInt32(truncatingIfNeeded: bytesReceived), jitterMicroseconds: UInt32(max(0, min(jitterMilliseconds * 1000, 1e9))),
            sentAtMilliseconds: ReceiverReport.milliseconds(now), echoMilliseconds: peer?.sentAtMilliseconds ?? ReceiverReport.noEcho,
            heldMilliseconds: peer.map { UInt32(max(0, min((now - $0.arrivedAt) * 1000, 1e9))) } ?? 0,
            queueingMicroseconds: UInt32(max(0, min(queueing * 1e6, 1e9))))
    }
}

extension ReceiverReport {
    /// A monotonic time in seconds as the wrapping millisecond count reports carry.
    public static func milliseconds(_ seconds: Double) -> UInt32 {
        UInt32(truncatingIfNeeded: Int64((seconds * 1000).rounded(.down)))
    }
}
