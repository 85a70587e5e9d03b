import CNIOLinux
import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

// The relay bench's load generator: plain POSIX UDP sockets on dedicated threads, so that the
// generator costs little and measures what arrives precisely. Senders pace every stream on a
// fine tick (100 µs by default; stream i of N sends in slot i·P/N of the P ticks of each packet
// period, so the streams are spread over the period as unrelated calls would be); receivers read in batches with recvmmsg.
//
// Every datagram carries, after whatever header the path needs (none, a TURN ChannelData
// header, or Skylark's 0xD6 + leg id), a 24-byte probe, little-endian:
//   0 magic "1BRS" (UInt32 0x53524231), 4 phase, 8 stream, 12 flags (bit 0: sent inside the
//   measurement window), 16 send time (CLOCK_MONOTONIC, ns).

enum LoadClock {
    @inline(__always) static func now() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return UInt64(time.tv_sec) &* 1_000_000_000 &+ UInt64(time.tv_nsec)
    }

    static func sleep(until nanos: UInt64) {
        var time = timespec(tv_sec: Int(nanos / 1_000_000_000), tv_nsec: Int(nanos % 1_000_000_000))
        while clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &time, nil) == EINTR {}
    }
}

enum Probe {
    static let magic: UInt32 = 0x5352_4231
    static let byteCount = 24
    /// Skylark relay packets: 0xD6 and a 16-byte leg id before the payload.
    static let relayMarker: UInt8 = 0xD6
    static let relayHeaderByteCount = 17
    /// Phase number used for Skylark's leg-binding packets (never counted).
    static let bindPhase: UInt32 = 0xFFFF_FFFF

    static func write(into base: UnsafeMutableRawPointer, phase: UInt32, stream: UInt32, inWindow: Bool, time: UInt64) {
        base.storeBytes(of: magic.littleEndian, toByteOffset: 0, as: UInt32.self)
        base.storeBytes(of: phase.littleEndian, toByteOffset: 4, as: UInt32.self)
        base.storeBytes(of: stream.littleEndian, toByteOffset: 8, as: UInt32.self)
        base.storeBytes(of: UInt32(inWindow ? 1 : 0).littleEndian, toByteOffset: 12, as: UInt32.self)
        base.storeBytes(of: time.littleEndian, toByteOffset: 16, as: UInt64.self)
    }
}

struct LoadFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

enum UDPSocket {
    static func loopback(port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        return address
    }

    /// A UDP socket bound to 127.0.0.1 on an ephemeral port.
    static func open(receiveBuffer: Int? = nil, receiveTimeoutMs: Int? = nil) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw LoadFailure("socket() failed: errno \(errno)") }
        var address = loopback(port: 0)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else {
            close(fd)
            throw LoadFailure("bind() failed: errno \(errno)")
        }
        if var size = receiveBuffer.map(Int32.init) {
            // SO_RCVBUFFORCE ignores net.core.rmem_max (needs CAP_NET_ADMIN); else the capped one.
            if setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, socklen_t(MemoryLayout<Int32>.size)) != 0 {
                _ = setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
            }
        }
        if let milliseconds = receiveTimeoutMs {
            var timeout = timeval(tv_sec: milliseconds / 1000, tv_usec: (milliseconds % 1000) * 1000)
            _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        }
        return fd
    }

    static func port(of fd: Int32) -> Int {
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    @discardableResult
    static func send(_ fd: Int32, _ bytes: UnsafeRawPointer, _ count: Int, to address: sockaddr_in) -> Int {
        var address = address
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, bytes, count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
    }

    @discardableResult
    static func send(_ fd: Int32, _ bytes: [UInt8], to address: sockaddr_in) -> Int {
        bytes.withUnsafeBytes { send(fd, $0.baseAddress!, $0.count, to: address) }
    }

    /// One datagram, or nil on timeout (SO_RCVTIMEO).
    static func receive(_ fd: Int32, maximum: Int = 2048) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: maximum)
        let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, maximum, 0) }
        guard count >= 0 else { return nil }
        return Array(buffer[0..<count])
    }
}

/// One stream as a sender sees it: its own socket, where it sends, and the bytes before the probe.
struct LoadStream {
    var fd: Int32
    var destination: sockaddr_in
    var header: [UInt8]
    var index: Int
}

/// Sends every stream at `rate` packets per second — its header, then `payloadBytes` bytes (the
/// probe and zeros) — from `threads` threads until stopped; counts what it sent inside the window.
final class LoadSenders: @unchecked Sendable {
    let phase: UInt32
    private let stop = Atomic<Bool>(false)
    private let inWindow = Atomic<Int>(0)
    private let total = Atomic<Int>(0)
    private let errors = Atomic<Int>(0)
    private let maximumLagNs = Atomic<UInt64>(0)
    private let done = DispatchGroup()

    var sentInWindow: Int { inWindow.load(ordering: .acquiring) }
    var sentTotal: Int { total.load(ordering: .acquiring) }
    var sendErrors: Int { errors.load(ordering: .acquiring) }
    /// Worst lateness of a tick behind its schedule (the generator falling behind shows here).
    var maximumLagMs: Double { Double(maximumLagNs.load(ordering: .acquiring)) / 1e6 }

    init(
        streams: [LoadStream], payloadBytes: Int, rate: Int, tickMicroseconds: Int, threads: Int, phase: UInt32, start: UInt64, windowStart: UInt64,
        windowEnd: UInt64
    ) {
        self.phase = phase
        let period = 1_000_000 / rate / tickMicroseconds
        let tick = UInt64(tickMicroseconds) * 1000
        let count = streams.count
        for thread in 0..<threads {
            let mine = streams.enumerated().filter { $0.offset % threads == thread }.map(\.element)
            done.enter()
            let worker = Thread { [self] in
                run(
                    streams: mine, count: count, payloadBytes: max(payloadBytes, Probe.byteCount), period: period, tickNanoseconds: tick, start: start,
                    windowStart: windowStart, windowEnd: windowEnd)
                done.leave()
            }
            worker.name = "load-send-\(thread)"
            worker.start()
        }
    }

    private func run(
        streams: [LoadStream], count: Int, payloadBytes: Int, period: Int, tickNanoseconds: UInt64, start: UInt64, windowStart: UInt64, windowEnd: UInt64
    ) {
        // Per stream: a buffer with its header and payload; the probe is rewritten per packet.
        let buffers = streams.map { stream -> UnsafeMutableRawPointer in
            let buffer = UnsafeMutableRawPointer.allocate(byteCount: stream.header.count + payloadBytes, alignment: 8)
            buffer.initializeMemory(as: UInt8.self, repeating: 0, count: stream.header.count + payloadBytes)
            stream.header.withUnsafeBytes { buffer.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            return buffer
        }
        defer { for buffer in buffers { buffer.deallocate() } }
        var slots = [[Int]](repeating: [], count: period)
        for (local, stream) in streams.enumerated() { slots[stream.index * period / max(count, 1)].append(local) }
        var tick: UInt64 = 0
        var sentWindow = 0
        var sent = 0
        var failed = 0
        var worstLag: UInt64 = 0
        while !stop.load(ordering: .relaxed) {
            let due = start &+ tick &* tickNanoseconds
            LoadClock.sleep(until: due)
            let woke = LoadClock.now()
            if woke > due { worstLag = max(worstLag, woke - due) }
            for local in slots[Int(tick % UInt64(period))] {
                let stream = streams[local]
                let buffer = buffers[local]
                let now = LoadClock.now()
                let counted = now >= windowStart && now < windowEnd
                Probe.write(into: buffer + stream.header.count, phase: phase, stream: UInt32(stream.index), inWindow: counted, time: now)
                let length = stream.header.count + payloadBytes
                if UDPSocket.send(stream.fd, buffer, length, to: stream.destination) == length {
                    sent += 1
                    if counted { sentWindow += 1 }
                } else {
                    failed += 1
                }
            }
            tick += 1
            if tick % 1000 == 0 {
                // Publish the counters now and then (and at the end).
                inWindow.add(sentWindow, ordering: .relaxed)
                total.add(sent, ordering: .relaxed)
                errors.add(failed, ordering: .relaxed)
                sentWindow = 0; sent = 0; failed = 0
            }
        }
        inWindow.add(sentWindow, ordering: .releasing)
        total.add(sent, ordering: .releasing)
        errors.add(failed, ordering: .releasing)
        var current = maximumLagNs.load(ordering: .relaxed)
        while worstLag > current {
            let (exchanged, original) = maximumLagNs.compareExchange(expected: current, desired: worstLag, ordering: .relaxed)
            if exchanged { break }
            current = original
        }
    }

    func stopAndWait() {
        stop.store(true, ordering: .releasing)
        done.wait()
    }
}

/// What one receiver saw of one phase.
final class PhaseTally {
    static let histogramMicroseconds = 200_000
    var received = 0
    var receivedInWindow = 0
    /// One-way delay of in-window packets, 1 µs bins; beyond the last bin: `overflow`.
    var histogram = [UInt32](repeating: 0, count: PhaseTally.histogramMicroseconds)
    var overflow = 0
    var perStream: [UInt32]
    /// Relayed packets whose leg id was not the one the stream's callee leg has.
    var wrongLeg = 0

    init(streams: Int) { perStream = [UInt32](repeating: 0, count: streams) }
}

/// Reads datagrams on one socket (recvmmsg, up to 64 at a time) and tallies probes per phase.
final class LoadReceiver: @unchecked Sendable {
    let fd: Int32
    let port: Int
    let address: sockaddr_in
    private let maximumStreams: Int
    private let stop = Atomic<Bool>(false)
    private let lock = NSLock()
    private var tallies: [UInt32: PhaseTally] = [:]
    private var foreign = 0
    /// Per stream, the leg id relayed packets must arrive with (Skylark phases).
    private var expectedLegs: [[UInt8]] = []
    private let done = DispatchGroup()

    init(maximumStreams: Int, index: Int) throws {
        fd = try UDPSocket.open(receiveBuffer: 8 << 20, receiveTimeoutMs: 200)
        port = UDPSocket.port(of: fd)
        address = UDPSocket.loopback(port: port)
        self.maximumStreams = maximumStreams
        done.enter()
        let worker = Thread { [self] in
            run()
            done.leave()
        }
        worker.name = "load-recv-\(index)"
        worker.start()
    }

    private func run() {
        let batch = 64
        let slot = 2048
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: batch * slot, alignment: 16)
        let vectors = UnsafeMutablePointer<iovec>.allocate(capacity: batch)
        let headers = UnsafeMutablePointer<CNIOLinux_mmsghdr>.allocate(capacity: batch)
        defer {
            buffer.deallocate()
            vectors.deallocate()
            headers.deallocate()
        }
        for index in 0..<batch {
            vectors[index] = iovec(iov_base: buffer + index * slot, iov_len: slot)
            var header = CNIOLinux_mmsghdr()
            header.msg_hdr.msg_iov = vectors + index
            header.msg_hdr.msg_iovlen = 1
            headers[index] = header
        }
        while !stop.load(ordering: .relaxed) {
            let count = CNIOLinux_recvmmsg(fd, headers, UInt32(batch), Int32(MSG_WAITFORONE), nil)
            guard count > 0 else { continue }  // timeout (SO_RCVTIMEO) or EINTR: check the stop flag
            let now = LoadClock.now()
            lock.lock()
            for index in 0..<Int(count) {
                let length = Int(headers[index].msg_len)
                var base = UnsafeRawPointer(buffer + index * slot)
                var available = length
                var leg: UnsafeRawPointer?
                if available > 0, base.load(as: UInt8.self) == Probe.relayMarker {
                    leg = base + 1
                    base += Probe.relayHeaderByteCount
                    available -= Probe.relayHeaderByteCount
                }
                guard available >= Probe.byteCount, UInt32(littleEndian: base.loadUnaligned(as: UInt32.self)) == Probe.magic else {
                    foreign += 1
                    continue
                }
                let phase = UInt32(littleEndian: base.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
                let stream = Int(UInt32(littleEndian: base.loadUnaligned(fromByteOffset: 8, as: UInt32.self)))
                let flags = UInt32(littleEndian: base.loadUnaligned(fromByteOffset: 12, as: UInt32.self))
                let sent = UInt64(littleEndian: base.loadUnaligned(fromByteOffset: 16, as: UInt64.self))
                guard phase != Probe.bindPhase else { continue }
                let tally: PhaseTally
                if let existing = tallies[phase] {
                    tally = existing
                } else {
                    tally = PhaseTally(streams: maximumStreams)
                    tallies[phase] = tally
                }
                tally.received += 1
                if stream < maximumStreams { tally.perStream[stream] &+= 1 }
                if let leg, stream < expectedLegs.count {
                    let matches = expectedLegs[stream].withUnsafeBytes { memcmp($0.baseAddress!, leg, Probe.relayHeaderByteCount - 1) == 0 }
                    if !matches { tally.wrongLeg += 1 }
                }
                guard flags & 1 != 0 else { continue }
                tally.receivedInWindow += 1
                let micros = now > sent ? Int((now - sent) / 1000) : 0
                if micros < PhaseTally.histogramMicroseconds { tally.histogram[micros] &+= 1 } else { tally.overflow += 1 }
            }
            lock.unlock()
        }
    }

    func expect(legs: [[UInt8]]) {
        lock.lock()
        expectedLegs = legs
        lock.unlock()
    }

    /// The tally of `phase` (removed: each phase is read once).
    func take(phase: UInt32) -> PhaseTally? {
        lock.lock()
        defer { lock.unlock() }
        return tallies.removeValue(forKey: phase)
    }

    func stopAndWait() {
        stop.store(true, ordering: .releasing)
        done.wait()
        close(fd)
    }
}

/// The merged view of a phase across receivers.
struct PhaseResult {
    var received = 0
    var receivedInWindow = 0
    var histogram = [UInt64](repeating: 0, count: PhaseTally.histogramMicroseconds)
    var overflow = 0
    var streamsWithNothing = 0
    var wrongLeg = 0

    init(tallies: [PhaseTally], streams: Int) {
        var perStream = [UInt64](repeating: 0, count: streams)
        for tally in tallies {
            received += tally.received
            receivedInWindow += tally.receivedInWindow
            overflow += tally.overflow
            wrongLeg += tally.wrongLeg
            for (bin, count) in tally.histogram.enumerated() where count > 0 { histogram[bin] += UInt64(count) }
            for index in 0..<min(streams, tally.perStream.count) { perStream[index] += UInt64(tally.perStream[index]) }
        }
        streamsWithNothing = perStream.filter { $0 == 0 }.count
    }

    /// Nearest-rank percentile of the in-window one-way delay, µs (nil if none).
    func percentile(_ p: Double) -> Double? {
        let total = histogram.reduce(0, +) + UInt64(overflow)
        guard total > 0 else { return nil }
        let rank = max(1, UInt64((p / 100 * Double(total)).rounded(.up)))
        var seen: UInt64 = 0
        for (bin, count) in histogram.enumerated() {
            seen += count
            if seen >= rank { return Double(bin) + 0.5 }
        }
        return Double(PhaseTally.histogramMicroseconds)
    }

    var mean: Double? {
        let total = histogram.reduce(0, +)
        guard total > 0 else { return nil }
        var sum = 0.0
        for (bin, count) in histogram.enumerated() where count > 0 { sum += (Double(bin) + 0.5) * Double(count) }
        return sum / Double(total)
    }
}

/// CPU time of a process and of its busiest thread, from /proc.
enum ProcCPU {
    static let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))

    /// utime + stime, seconds, from a /proc/.../stat line.
    static func parse(_ text: String) -> Double? {
        guard let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        return (user + system) / ticks
    }

    static func process(_ pid: Int32) -> Double? {
        (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)).flatMap(parse)
    }

    static func threads(_ pid: Int32) -> [String: Double] {
        let directory = "/proc/\(pid)/task"
        var result: [String: Double] = [:]
        for tid in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] {
            if let text = try? String(contentsOfFile: "\(directory)/\(tid)/stat", encoding: .utf8), let cpu = parse(text) { result[tid] = cpu }
        }
        return result
    }

    /// Seconds CPU `cpu` has been busy (user, nice, system, irq, softirq, steal) since boot,
    /// from /proc/stat: whatever ran there, this process or any other.
    static func cpuBusy(_ cpu: Int) -> Double? {
        guard let text = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
            let line = text.split(separator: "\n").first(where: { $0.hasPrefix("cpu\(cpu) ") })
        else { return nil }
        let fields = line.split(separator: " ").dropFirst().compactMap { Double($0) }
        guard fields.count >= 8 else { return nil }
        // user nice system idle iowait irq softirq steal
        return (fields[0] + fields[1] + fields[2] + fields[5] + fields[6] + fields[7]) / ticks
    }

    /// A snapshot to difference later.
    struct Snapshot {
        var process: Double
        var threads: [String: Double]
        var at: UInt64

        init(_ pid: Int32) {
            at = LoadClock.now()
            process = ProcCPU.process(pid) ?? 0
            threads = ProcCPU.threads(pid)
        }

        /// (process CPU seconds, busiest thread CPU seconds, wall seconds) since `earlier`.
        func since(_ earlier: Snapshot) -> (cpu: Double, busiestThread: Double, wall: Double) {
            var busiest = 0.0
            for (tid, cpu) in threads { busiest = max(busiest, cpu - (earlier.threads[tid] ?? 0)) }
            return (process - earlier.process, busiest, Double(at - earlier.at) / 1e9)
        }
    }
}
