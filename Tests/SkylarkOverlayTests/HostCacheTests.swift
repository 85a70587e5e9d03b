import Foundation
import SkylarkWire
import Testing

@testable import SkylarkOverlay

@Suite("HostCache")
struct HostCacheTests {
    let defaults = [HostPort(host: "203.0.113.1", port: 7000), HostPort(host: "203.0.113.2", port: 7000)]
    let day0 = 1_700_000_000.0

    func endpoint(_ index: Int) -> HostPort {
        HostPort(host: "10.\(index / 65536 % 256).\(index / 256 % 256).\(index % 256)", port: 7000 + index % 100)
    }

    @Test("A new cache holds the defaults; an empty or blank file is refilled from them")
    func defaultsAndRefill() throws {
        let fresh = HostCache(defaults: defaults)
        #expect(fresh.count == 2)
        #expect(fresh.ranked(now: day0).allSatisfy { $0.isDefault })

        let empty = Array(#"{"format": 1, "entries": []}"#.utf8)
        for contents in [empty, [], Array("  \n".utf8)] {
            let cache = try HostCache(fileContents: contents, defaults: defaults)
            #expect(Set(cache.candidates(5, now: day0)) == Set(defaults))
        }
        #expect(HostCache(defaults: []).count == 0)
    }

    @Test("The file round-trips and is readable JSON with a comment")
    func persistence() throws {
        var cache = HostCache(defaults: defaults)
        cache.recordSuccess(defaults[0], rtt: 0.040, nodeID: [0xAB, 0x01], now: day0)
        cache.recordFailure(defaults[1], now: day0 + 1)
        cache.learn([(endpoint(1), nodeID: nil), (HostPort(host: "2001:db8::1", port: 7001), nodeID: [0xFF])], now: day0 + 2)
        let bytes = cache.fileContents()

        let reloaded = try HostCache(fileContents: bytes, defaults: defaults)
        #expect(reloaded.count == cache.count)
        #expect(reloaded.ranked(now: day0 + 10) == cache.ranked(now: day0 + 10))
        #expect(reloaded.fileContents() == bytes)

        let text = String(decoding: bytes, as: UTF8.self)
        #expect(text.contains("\"comment\""))
        #expect(text.contains("\"endpoint\" : \"[2001:db8::1]:7001\""))
        #expect(text.contains("\"nodeID\" : \"ab01\""))
        let object = try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
        #expect(object["format"] as? Int == 1)
        #expect((object["entries"] as? [Any])?.count == 4)
    }

    @Test("A hand-added entry with only an endpoint is accepted; defaults missing from the file are added")
    func handEditedFile() throws {
        let contents = Array(#"{"format": 1, "entries": [{"endpoint": "192.0.2.50:7000"}]}"#.utf8)
        let cache = try HostCache(fileContents: contents, defaults: defaults)
        #expect(cache.count == 3)
        #expect(cache.entry(for: HostPort(host: "192.0.2.50", port: 7000))?.successes == 0)
        #expect(cache.entry(for: defaults[0])?.isDefault == true)
        #expect(cache.entry(for: HostPort(host: "192.0.2.50", port: 7000))?.isDefault == false)
    }

    @Test("A corrupt file is a typed error")
    func corruptFile() {
        #expect(throws: HostCacheError.self) { try HostCache(fileContents: Array("not json".utf8), defaults: defaults) }
        let error = #expect(throws: HostCacheError.self) { try HostCache(fileContents: [0xFF, 0xFE, 0x00], defaults: defaults) }
        guard case .corrupt? = error else {
            Issue.record("expected .corrupt, got \(String(describing: error))")
            return
        }
        #expect(throws: HostCacheError.unsupportedFormat(9)) {
            try HostCache(fileContents: Array(#"{"format": 9, "entries": []}"#.utf8), defaults: defaults)
        }
        #expect(throws: HostCacheError.invalidEndpoint("nowhere")) {
            try HostCache(fileContents: Array(#"{"format": 1, "entries": [{"endpoint": "nowhere"}]}"#.utf8), defaults: defaults)
        }
        #expect(throws: HostCacheError.self) {
            try HostCache(fileContents: Array(#"{"format": 1, "entries": [{"successes": 3}]}"#.utf8), defaults: defaults)
        }
        #expect(throws: HostCacheError.self) {
            try HostCache(fileContents: Array(#"{"format": 1, "entries": [{"endpoint": "1.2.3.4:5", "failures": -1}]}"#.utf8), defaults: defaults)
        }
    }

    @Test("Endpoints are normalised: one entry per address however it is written")
    func normalisation() {
        var cache = HostCache(defaults: [])
        cache.learn(
            [
                (HostPort("127.0.0.1:7000")!, nodeID: nil),
                (HostPort(host: "127.0.0.1", port: 7000), nodeID: nil),
                (HostPort("[2001:DB8:0::1]:7000")!, nodeID: nil),
                (HostPort("[2001:db8::1]:7000")!, nodeID: nil),
                (HostPort("SN.Example.com:7000")!, nodeID: nil),
                (HostPort("sn.example.com:7000")!, nodeID: [1]),
                (HostPort(host: "1.2.3.4", port: 0), nodeID: nil),
            ], now: day0)
        #expect(cache.count == 3)
        #expect(Set(cache.ranked(now: day0).map(\.endpoint)) == ["127.0.0.1:7000", "[2001:db8::1]:7000", "sn.example.com:7000"])
        #expect(cache.entry(for: HostPort(host: "SN.EXAMPLE.COM", port: 7000))?.nodeID == "01")
    }

    @Test("Learning 1,000 endpoints never exceeds the capacity, and keeps the defaults")
    func capacity() {
        var cache = HostCache(defaults: defaults)
        for batch in 0..<20 {
            cache.learn((0..<50).map { (endpoint(batch * 50 + $0), nodeID: nil) }, now: day0 + Double(batch))
            #expect(cache.count <= 200)
        }
        #expect(cache.count == 200)
        #expect(defaults.allSatisfy { cache.entry(for: $0) != nil })

        var all = HostCache(defaults: defaults, capacity: 10)
        all.learn((0..<1000).map { (endpoint($0), nodeID: nil) }, now: day0)
        #expect(all.count == 10)
        // Proven supernodes are not pushed out by hearsay.
        var proven = HostCache(defaults: [], capacity: 5)
        for index in 0..<5 { proven.recordSuccess(endpoint(index), rtt: nil, nodeID: nil, now: day0) }
        proven.learn((100..<300).map { (endpoint($0), nodeID: nil) }, now: day0)
        #expect(Set(proven.candidates(5, now: day0)) == Set((0..<5).map(endpoint)))
    }

    @Test("A default that keeps failing is evicted; a healthy one is not")
    func defaultEviction() {
        var cache = HostCache(defaults: defaults, capacity: 4)
        for round in 0..<HostCache.defaultEvictionFailures { cache.recordFailure(defaults[1], now: day0 + Double(round)) }
        for index in 0..<4 { cache.recordSuccess(endpoint(index), rtt: nil, nodeID: nil, now: day0 + 20) }
        #expect(cache.count == 4)
        #expect(cache.entry(for: defaults[0]) != nil)
        #expect(cache.entry(for: defaults[1]) == nil)
    }

    @Test("Dead entries sink below live ones after two failures, however good their past")
    func deadEntriesSink() {
        var cache = HostCache(defaults: [])
        let veteran = endpoint(1), newcomer = endpoint(2), steady = endpoint(3)
        for round in 0..<50 { cache.recordSuccess(veteran, rtt: 0.01, nodeID: nil, now: day0 + Double(round)) }
        cache.learn([(newcomer, nodeID: nil)], now: day0)
        cache.recordSuccess(steady, rtt: 0.2, nodeID: nil, now: day0)
        cache.recordFailure(steady, now: day0 + 60)
        #expect(cache.ranked(now: day0 + 100).first?.endpoint == veteran.description)

        cache.recordFailure(veteran, now: day0 + 100)
        #expect(cache.ranked(now: day0 + 101).first?.endpoint == veteran.description, "one failure is a blip")
        cache.recordFailure(veteran, now: day0 + 102)
        #expect(cache.ranked(now: day0 + 103).last?.endpoint == veteran.description)

        // A success brings it straight back.
        cache.recordSuccess(veteran, rtt: 0.01, nodeID: nil, now: day0 + 200)
        #expect(cache.ranked(now: day0 + 201).first?.endpoint == veteran.description)
    }

    @Test("With 90 of 100 entries dead, the first 10 candidates are the 10 live ones")
    func liveFirst() {
        var cache = HostCache(defaults: [])
        let all = (0..<100).map(endpoint)
        cache.learn(all.map { ($0, nodeID: nil) }, now: day0)
        for (index, endpoint) in all.enumerated() {
            cache.recordSuccess(endpoint, rtt: 0.05, nodeID: nil, now: day0 + 1)
            if index % 10 != 0 {
                cache.recordFailure(endpoint, now: day0 + 2)
                cache.recordFailure(endpoint, now: day0 + 3)
            }
        }
        let live = Set(all.enumerated().filter { $0.offset % 10 == 0 }.map(\.element))
        #expect(Set(cache.candidates(10, now: day0 + 4)) == live)
        // Also by score alone, long after every back-off has expired.
        #expect(Set(cache.ranked(now: day0 + 86_400).prefix(10).compactMap { HostPort($0.endpoint) }) == live)
        #expect(Set(cache.candidates(10, now: day0 + 86_400)) == live)
    }

    @Test("Back-off holds a failing entry back, doubling per failure, then returns it")
    func backOff() {
        var cache = HostCache(defaults: [])
        let flaky = endpoint(1), other = endpoint(2)
        cache.learn([(flaky, nodeID: nil), (other, nodeID: nil)], now: day0)
        cache.recordFailure(flaky, now: day0)
        #expect(cache.candidates(5, now: day0 + 29) == [other])
        #expect(cache.candidates(5, now: day0 + 30).contains(flaky))

        cache.recordFailure(flaky, now: day0 + 30)
        cache.recordFailure(flaky, now: day0 + 31)
        #expect(HostCache.backOff(consecutiveFailures: 3) == 120)
        #expect(!cache.candidates(5, now: day0 + 150).contains(flaky))
        #expect(cache.candidates(5, now: day0 + 151).contains(flaky))
        #expect(HostCache.backOff(consecutiveFailures: 40) == 3600)
    }

    @Test("When everything is backing off, the least bad entries are still offered")
    func neverNothingToTry() {
        var cache = HostCache(defaults: [])
        cache.learn((0..<5).map { (endpoint($0), nodeID: nil) }, now: day0)
        for index in 0..<5 {
            for _ in 0...index { cache.recordFailure(endpoint(index), now: day0) }
        }
        #expect(cache.candidates(2, now: day0 + 1) == [endpoint(0), endpoint(1)])
        #expect(cache.candidates(0, now: day0 + 1) == [])
    }

    @Test("Dial order: every entry but the excluded ones, ready ones first, backed-off ones after")
    func dialOrder() {
        var cache = HostCache(defaults: [])
        cache.learn((0..<4).map { (endpoint($0), nodeID: nil) }, now: day0)
        cache.recordSuccess(endpoint(3), rtt: 0.01, nodeID: nil, now: day0)
        cache.recordFailure(endpoint(1), now: day0)
        let order = cache.dialOrder(now: day0 + 1, excluding: [endpoint(2)])
        #expect(order.count == 3)
        #expect(order.first == endpoint(3))
        #expect(order.last == endpoint(1))
        #expect(!order.contains(endpoint(2)))
        #expect(!cache.candidates(5, now: day0 + 1, excluding: [endpoint(3)]).contains(endpoint(3)))
    }

    @Test("RTT is smoothed with weight 1/8 and breaks ties")
    func rtt() throws {
        var cache = HostCache(defaults: [])
        cache.recordSuccess(endpoint(1), rtt: 0.100, nodeID: nil, now: day0)
        cache.recordSuccess(endpoint(1), rtt: 0.200, nodeID: nil, now: day0)
        #expect(cache.entry(for: endpoint(1))?.rttMilliseconds == 112.5)

        cache.recordSuccess(endpoint(2), rtt: 0.020, nodeID: nil, now: day0)
        cache.recordSuccess(endpoint(2), rtt: 0.020, nodeID: nil, now: day0)
        cache.recordSuccess(endpoint(3), rtt: 0.300, nodeID: nil, now: day0)
        cache.recordSuccess(endpoint(3), rtt: 0.300, nodeID: nil, now: day0)
        let order = cache.ranked(now: day0).map(\.endpoint)
        #expect(order == [endpoint(2), endpoint(1), endpoint(3)].map(\.description))
    }

    @Test("Old successes fade: a supernode seen today outranks one seen a month ago")
    func recency() {
        var cache = HostCache(defaults: [])
        for _ in 0..<5 { cache.recordSuccess(endpoint(1), rtt: nil, nodeID: nil, now: day0) }
        for _ in 0..<5 { cache.recordSuccess(endpoint(2), rtt: nil, nodeID: nil, now: day0 + 30 * 86_400) }
        #expect(cache.ranked(now: day0 + 30 * 86_400).map(\.endpoint) == [endpoint(2), endpoint(1)].map(\.description))
    }

    @Test("Failures of unknown endpoints are not recorded; successes of unknown ones are")
    func unknownEndpoints() {
        var cache = HostCache(defaults: [])
        cache.recordFailure(endpoint(1), now: day0)
        #expect(cache.count == 0)
        cache.recordSuccess(endpoint(1), rtt: nil, nodeID: [0x0F], now: day0)
        #expect(cache.entry(for: endpoint(1))?.nodeID == "0f")
        #expect(cache.entry(for: endpoint(1))?.lastSeen == day0)
    }
}
