import Foundation
import SkylarkTraversal
import SkylarkWire

public enum HostCacheError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The file is not the JSON this type writes.
    case corrupt(String)
    /// The file was written by a newer format this build does not know.
    case unsupportedFormat(Int)
    /// An entry's endpoint is not HOST:PORT.
    case invalidEndpoint(String)

    public var description: String {
        switch self {
        case let .corrupt(why): return "host cache file is corrupt: \(why)"
        case let .unsupportedFormat(format): return "host cache file format \(format) is not supported"
        case let .invalidEndpoint(endpoint): return "host cache entry '\(endpoint)' is not HOST:PORT"
        }
    }
}

/// The supernodes this node knows (Skype's shared.xml): at most `capacity` endpoints with their
/// health, kept as human-readable JSON in the node's state folder. Sans-I/O: the caller reads and
/// writes the file and passes the time in (Unix seconds).
///
/// Scoring (higher is better; see `score(of:now:)`):
/// - success ratio with Laplace smoothing, (successes + 1) / (successes + failures + 2), so an
///   untried entry starts at ½ and one lucky answer is not a perfect record;
/// - plus the recency of the last success, 1 just after it and halving every 6 hours, so a
///   supernode seen this morning beats one seen last month;
/// - minus 1.25 per consecutive failure, so two failures in a row put any entry below every
///   entry that has not failed since its last success (dead entries sink fast);
/// - plus a small RTT term (at most 0.1) that decides between otherwise similar entries.
///
/// Back-off: after n consecutive failures an entry is held back from `candidates` for
/// 30 s × 2^(n−1), at most an hour, counted from its last attempt.
///
/// Eviction, when over capacity: lowest score first; entries from the network profile's defaults
/// are kept unless they have failed `defaultEvictionFailures` times in a row (or there are more
/// defaults than capacity). An empty cache is refilled from the defaults.
///
/// Endpoints are normalised (numeric addresses in their one spelling, host names in lower case,
/// written as `HostPort.description`), so "127.0.0.1:7000" is one entry however it was written.
public struct HostCache: Sendable {
    public struct Entry: Codable, Sendable, Equatable {
        /// HOST:PORT, normalised.
        public var endpoint: String
        /// The supernode's node id in hex, once learnt.
        public var nodeID: String?
        /// Last success, Unix seconds.
        public var lastSeen: Double?
        /// Last attempt, successful or not, Unix seconds.
        public var lastAttempt: Double?
        public var successes: Int
        public var failures: Int
        public var consecutiveFailures: Int
        /// Smoothed round-trip time (EWMA, weight 1/8 for each new sample as TCP does).
        public var rttMilliseconds: Double?
        /// From the network profile's default supernodes.
        public var isDefault: Bool

        public init(
            endpoint: String, nodeID: String? = nil, lastSeen: Double? = nil, lastAttempt: Double? = nil,
            successes: Int = 0, failures: Int = 0, consecutiveFailures: Int = 0,
            rttMilliseconds: Double? = nil, isDefault: Bool = false
        ) {
            self.endpoint = endpoint
            self.nodeID = nodeID
            self.lastSeen = lastSeen
            self.lastAttempt = lastAttempt
            self.successes = successes
            self.failures = failures
            self.consecutiveFailures = consecutiveFailures
            self.rttMilliseconds = rttMilliseconds
            self.isDefault = isDefault
        }

        /// Only `endpoint` is required, so a hand-added line such as {"endpoint": "host:7000"} works.
        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            self.endpoint = try container.decode(String.self, forKey: .endpoint)
            self.nodeID = try container.decodeIfPresent(String.self, forKey: .nodeID)
            self.lastSeen = try container.decodeIfPresent(Double.self, forKey: .lastSeen)
            self.lastAttempt = try container.decodeIfPresent(Double.self, forKey: .lastAttempt)
            self.successes = try container.decodeIfPresent(Int.self, forKey: .successes) ?? 0
            self.failures = try container.decodeIfPresent(Int.self, forKey: .failures) ?? 0
            self.consecutiveFailures = try container.decodeIfPresent(Int.self, forKey: .consecutiveFailures) ?? 0
            self.rttMilliseconds = try container.decodeIfPresent(Double.self, forKey: .rttMilliseconds)
            self.isDefault = try container.decodeIfPresent(Bool.self, forKey: .isDefault) ?? false
        }
    }

    /// The file's top level.
    private struct File: Codable {
        var comment: String?
        var format: Int
        var entries: [Entry]
    }

    public static let currentFormat = 1
    public static let defaultCapacity = 200
    /// A default entry is evicted only after this many failures in a row.
    public static let defaultEvictionFailures = 10
    static let recencyHalfLife = 6.0 * 3600
    static let failurePenalty = 1.25
    static let baseBackOff = 30.0
    static let maximumBackOff = 3600.0
    static let rttWeight = 1.0 / 8

    public let capacity: Int
    public let defaults: [HostPort]
    private let defaultKeys: Set<String>
    private var entries: [String: Entry] = [:]

    /// A cache holding only the defaults.
    public init(defaults: [HostPort], capacity: Int = HostCache.defaultCapacity) {
        self.init(defaults: defaults, capacity: capacity, loading: [])
    }

    /// A cache read from its file. Zero bytes (a file just created) is an empty cache, refilled
    /// from the defaults; anything unreadable is a typed error, after which the caller starts
    /// from `init(defaults:)`. Defaults missing from the file are added (a new profile may list
    /// new supernodes) and `isDefault` follows the current profile.
    public init(fileContents: [UInt8], defaults: [HostPort], capacity: Int = HostCache.defaultCapacity) throws(HostCacheError) {
        self.init(defaults: defaults, capacity: capacity, loading: try Self.parse(fileContents))
    }

    private static func parse(_ fileContents: [UInt8]) throws(HostCacheError) -> [Entry] {
        guard !fileContents.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }) else { return [] }
        let file: File
        do {
            file = try JSONDecoder().decode(File.self, from: Data(fileContents))
        } catch {
            throw .corrupt(describe(error))
        }
        guard file.format == currentFormat else { throw .unsupportedFormat(file.format) }
        var loaded: [Entry] = []
        for var entry in file.entries {
            guard let endpoint = HostPort(entry.endpoint) else { throw .invalidEndpoint(entry.endpoint) }
            guard entry.successes >= 0, entry.failures >= 0, entry.consecutiveFailures >= 0 else {
                throw .corrupt("negative counts for \(entry.endpoint)")
            }
            entry.endpoint = normalise(endpoint)
            loaded.append(entry)
        }
        return loaded
    }

    private init(defaults: [HostPort], capacity: Int, loading loaded: [Entry]) {
        precondition(capacity >= 1, "a host cache holds at least one entry")
        self.capacity = capacity
        self.defaults = defaults
        self.defaultKeys = Set(defaults.map(Self.normalise))
        for var entry in loaded where entries[entry.endpoint] == nil {  // first of duplicates wins
            entry.isDefault = defaultKeys.contains(entry.endpoint)
            entries[entry.endpoint] = entry
        }
        for key in defaults.map(Self.normalise) where entries[key] == nil {
            entries[key] = Entry(endpoint: key, isDefault: true)
        }
        // Without a clock here, the newest time in the file stands for "now" when scoring.
        let newest = entries.values.compactMap { [$0.lastSeen, $0.lastAttempt].compactMap { $0 }.max() }.max() ?? 0
        evictIfOverCapacity(now: newest)
        refillIfEmpty()
    }

    /// Pretty-printed JSON with sorted keys, entries in endpoint order (stable diffs).
    public func fileContents() -> [UInt8] {
        let file = File(
            comment: "Skylark host cache: supernodes this node has used or heard of, with their health. "
                + "Times are Unix seconds. Safe to edit or delete: it is refilled from the network profile's default supernodes.",
            format: Self.currentFormat,
            entries: entries.values.sorted { $0.endpoint < $1.endpoint })
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        // Encoding plain numbers, strings and booleans cannot fail.
        return Array(try! encoder.encode(file)) + [0x0A]
    }

    public var count: Int { entries.count }

    /// The entry for `endpoint`, if cached.
    public func entry(for endpoint: HostPort) -> Entry? {
        entries[Self.normalise(endpoint)]
    }

    // MARK: - Recording

    /// A supernode answered: counts it, clears its failure streak, and folds `rtt` (seconds) into
    /// the smoothed RTT. An endpoint not yet cached is added.
    public mutating func recordSuccess(_ endpoint: HostPort, rtt: Double?, nodeID: [UInt8]?, now: Double) {
        let key = Self.normalise(endpoint)
        var entry = entries[key] ?? Entry(endpoint: key, isDefault: defaultKeys.contains(key))
        entry.successes += 1
        entry.consecutiveFailures = 0
        entry.lastSeen = now
        entry.lastAttempt = now
        if let rtt, rtt >= 0, rtt.isFinite {
            let sample = rtt * 1000
            entry.rttMilliseconds = entry.rttMilliseconds.map { $0 + Self.rttWeight * (sample - $0) } ?? sample
        }
        if let nodeID { entry.nodeID = Self.hex(nodeID) }
        entries[key] = entry
        evictIfOverCapacity(now: now)
    }

    /// A supernode did not answer or refused us. Unknown endpoints are ignored: there is nothing
    /// worth remembering about an address that never worked and that nobody recommended.
    public mutating func recordFailure(_ endpoint: HostPort, now: Double) {
        let key = Self.normalise(endpoint)
        guard var entry = entries[key] else { return }
        entry.failures += 1
        entry.consecutiveFailures += 1
        entry.lastAttempt = now
        entries[key] = entry
    }

    /// Supernodes recommended by other supernodes' host-cache answers. Known endpoints only gain
    /// a node id; new ones start untried. Over capacity, the lowest scores go.
    public mutating func learn(_ endpoints: [(HostPort, nodeID: [UInt8]?)], now: Double) {
        for (endpoint, nodeID) in endpoints where (1...0xFFFF).contains(endpoint.port) && !endpoint.host.isEmpty {
            let key = Self.normalise(endpoint)
            var entry = entries[key] ?? Entry(endpoint: key, isDefault: defaultKeys.contains(key))
            if let nodeID { entry.nodeID = Self.hex(nodeID) }
            entries[key] = entry
        }
        evictIfOverCapacity(now: now)
    }

    // MARK: - Choosing

    /// Every entry, best first (ties by endpoint, so the order is deterministic).
    public func ranked(now: Double) -> [Entry] {
        entries.values
            .map { (entry: $0, score: Self.score(of: $0, now: now)) }
            .sorted { $0.score != $1.score ? $0.score > $1.score : $0.entry.endpoint < $1.entry.endpoint }
            .map(\.entry)
    }

    /// Up to `count` endpoints to try next: the best-scored entries that are not backing off.
    /// When every entry is backing off, the best-scored of them anyway, so a node always has
    /// something to try.
    public func candidates(_ count: Int, now: Double, excluding excluded: Set<HostPort> = []) -> [HostPort] {
        guard count > 0 else { return [] }
        let ranked = ranked(now: now).filter { HostPort($0.endpoint).map { !excluded.contains($0) } ?? false }
        var chosen = ranked.filter { !Self.isBackingOff($0, now: now) }
        if chosen.isEmpty { chosen = ranked }
        return chosen.prefix(count).compactMap { HostPort($0.endpoint) }
    }

    /// Every entry but `excluded`, in the order to dial them when nothing else will do (start-up
    /// with a mostly dead cache): ready entries best first, then those backing off, least bad
    /// first — so a node works through the whole cache instead of waiting out back-offs.
    public func dialOrder(now: Double, excluding excluded: Set<HostPort> = []) -> [HostPort] {
        let ranked = ranked(now: now).filter { HostPort($0.endpoint).map { !excluded.contains($0) } ?? false }
        let ready = ranked.filter { !Self.isBackingOff($0, now: now) }
        let waiting = ranked.filter { Self.isBackingOff($0, now: now) }
        return (ready + waiting).compactMap { HostPort($0.endpoint) }
    }

    /// The score described on the type.
    public static func score(of entry: Entry, now: Double) -> Double {
        let ratio = Double(entry.successes + 1) / Double(entry.successes + entry.failures + 2)
        let recency = entry.lastSeen.map { pow(0.5, max(0, now - $0) / recencyHalfLife) } ?? 0
        let penalty = failurePenalty * Double(entry.consecutiveFailures)
        let speed = entry.rttMilliseconds.map { 0.1 / (1 + max(0, $0) / 100) } ?? 0
        return ratio + recency - penalty + speed
    }

    /// Seconds an entry is held back after its last attempt: 0, then 30 s, 60 s, 120 s … 1 h.
    public static func backOff(consecutiveFailures: Int) -> Double {
        guard consecutiveFailures > 0 else { return 0 }
        return min(maximumBackOff, baseBackOff * pow(2, Double(min(consecutiveFailures - 1, 20))))
    }

    static func isBackingOff(_ entry: Entry, now: Double) -> Bool {
        guard entry.consecutiveFailures > 0, let lastAttempt = entry.lastAttempt else { return false }
        return now < lastAttempt + backOff(consecutiveFailures: entry.consecutiveFailures)
    }

    // MARK: - Internals

    private mutating func evictIfOverCapacity(now: Double) {
        guard entries.count > capacity else { return }
        let worstFirst = ranked(now: now).reversed()
        // Ordinary entries and defaults that look dead go first; healthy defaults only if the
        // profile itself lists more supernodes than the capacity.
        let evictable = worstFirst.filter { !$0.isDefault || $0.consecutiveFailures >= Self.defaultEvictionFailures }
        let protected = worstFirst.filter { $0.isDefault && $0.consecutiveFailures < Self.defaultEvictionFailures }
        for victim in evictable + protected {
            guard entries.count > capacity else { break }
            entries[victim.endpoint] = nil
        }
    }

    private mutating func refillIfEmpty() {
        guard entries.isEmpty else { return }
        for key in defaults.map(Self.normalise) {
            entries[key] = Entry(endpoint: key, isDefault: true)
        }
    }

    static func normalise(_ endpoint: HostPort) -> String {
        let host = IPAddressText.canonical(endpoint.host) ?? endpoint.host.lowercased()
        return HostPort(host: host, port: endpoint.port).description
    }

    private static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef")
        return String(bytes.flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 0x0F)]] })
    }

    private static func describe(_ error: any Error) -> String {
        switch error {
        case let DecodingError.dataCorrupted(context): return context.debugDescription
        case let DecodingError.keyNotFound(key, _): return "missing '\(key.stringValue)'"
        case let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context):
            let path = context.codingPath.map(\.stringValue).joined(separator: ".")
            return "\(path): \(context.debugDescription)"
        default: return "\(error)"
        }
    }
}
