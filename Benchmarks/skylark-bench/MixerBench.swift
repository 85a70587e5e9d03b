import ArgumentParser
import COpus
import COpusShims
import Foundation
import SkylarkCrypto
import SkylarkMedia

#if canImport(Glibc)
    import Glibc
#endif

/// Conference mixer CPU per 20 ms tick against the libopus floor, in one run.
///
/// For a conference of N participants of whom S speak (the rest are silent: their voice activity
/// detectors send nothing):
///
/// - **floor**: what no mixer can avoid with libopus — S `opus_decode` (one per active speaker)
///   and one `opus_encode` per distinct mix: S "everyone but you" mixes for the speakers (none
///   when only one speaks: there is no one else to hear) plus one shared mix for the listeners
///   (none when everyone speaks). Plain C calls, no mixing.
/// - **mixer**: Skylark's whole per-tick work at the mixing node: for each speaker's packet
///   `MediaCipher.open` (AES-256-GCM, replay window) → `ConferenceMixer.receive` (jitter
///   buffer); then `ConferenceMixer.tick` (decode, sum, N−1 mixes, limiter, encodes — one shared
///   by all listeners); then `MediaCipher.seal` of one packet per participant.
///
/// The speakers' packets are encoded and sealed before the timed loop (that is the
/// participants' work). CPU is the thread's CPU time (CLOCK_THREAD_CPUTIME_ID) over the loop;
/// rounds alternate floor and mixer, the figure is the median of the rounds.
struct MixerBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mixer",
        abstract: "Conference mixer CPU per 20 ms tick against the libopus floor; conferences per core.")

    @Option(help: "Participants per conference; repeat for several (default 6 and 25).") var participants: [Int] = []
    @Option(help: "Participants speaking at once (the others are silent).") var speakers = 3
    @Option(help: "20 ms ticks per round.") var ticks = 1500
    @Option(help: "Rounds (each: floor, then mixer).") var rounds = 5
    @Flag(help: "Print the results as one JSON object.") var json = false

    func validate() throws {
        guard speakers >= 1, ticks >= 100, rounds >= 1, participants.allSatisfy({ $0 >= 2 && $0 <= 64 }) else { throw ValidationError("bad options") }
    }

    struct Row: Codable {
        var participants: Int
        var speakers: Int
        var floorDecodes: Int
        var floorEncodes: Int
        var floorMicroseconds: Double
        var mixerMicroseconds: Double
        var ratio: Double
        var conferencesPerCore: Double
        /// Mean per tick, from the mixer's own counters.
        var mixerDecodesPerTick: Double
        var mixerEncodesPerTick: Double
        var packetsPerTick: Double
        /// What a mixer encoding every participant's mix separately would pay (floor decodes +
        /// N encodes, at the floor's measured cost per call).
        var withoutSharingMicroseconds: Double
    }

    func run() throws {
        let sizes = participants.isEmpty ? [6, 25] : participants
        let voice = MediaBench.voiceLike(seconds: 10)
        var rows: [Row] = []
        for size in sizes {
            let active = min(speakers, size)
            var floorRounds: [Double] = []
            var mixerRounds: [Double] = []
            var perCall = (encode: [Double](), decode: [Double]())
            var counters: ConferenceMixer.Counters?
            for round in 1...rounds {
                let streams = try speakerStreams(active, voice: voice)
                let floor = try measureFloor(streams, listeners: size - active)
                let mixer = try measureMixer(streams, participants: size)
                floorRounds.append(floor.total)
                perCall.encode.append(floor.encode)
                perCall.decode.append(floor.decode)
                mixerRounds.append(mixer.total)
                counters = mixer.counters
                FileHandle.standardError.write(
                    Data("N=\(size) S=\(active) round \(round)/\(rounds): floor \(fmt(floor.total, 1)) µs, mixer \(fmt(mixer.total, 1)) µs per tick\n".utf8))
            }
            let floor = BenchTiming.median(floorRounds), mixer = BenchTiming.median(mixerRounds)
            let encodes = Self.distinctMixes(speakers: active, listeners: size - active)
            let totals = counters!
            let ticksCounted = Double(max(totals.ticks, 1))
            rows.append(
                Row(
                    participants: size, speakers: active, floorDecodes: active, floorEncodes: encodes,
                    floorMicroseconds: floor, mixerMicroseconds: mixer, ratio: mixer / floor, conferencesPerCore: 20_000 / mixer,
                    mixerDecodesPerTick: Double(totals.decodes) / ticksCounted, mixerEncodesPerTick: Double(totals.encodes) / ticksCounted,
                    packetsPerTick: Double(totals.packetsOut) / ticksCounted,
                    withoutSharingMicroseconds: Double(active) * BenchTiming.median(perCall.decode) + Double(size) * BenchTiming.median(perCall.encode)))
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(rows), as: UTF8.self))
            return
        }
        print(
            "conference mixer per 20 ms tick: \(Opus.libraryVersion), complexity 5, 32 kb/s, FEC on; \(ticks) ticks x \(rounds) rounds (median); thread CPU time"
        )
        print("")
        print("  N | speaking | floor (dec+enc) µs | mixer µs | mixer/floor | conferences/core | dec/tick | enc/tick | pkts/tick | every mix encoded µs")
        print("----|----------|--------------------|----------|-------------|------------------|----------|----------|-----------|---------------------")
        for row in rows {
            let floorText = "\(fmt(row.floorMicroseconds, 1)) (\(row.floorDecodes)+\(row.floorEncodes))"
            var cells: [String] = [String(row.participants).leftPad(3), String(row.speakers).leftPad(8), floorText.leftPad(18)]
            cells.append(fmt(row.mixerMicroseconds, 1).leftPad(8))
            cells.append(fmt(row.ratio, 3).leftPad(11))
            cells.append(fmt(row.conferencesPerCore, 0).leftPad(16))
            cells.append(fmt(row.mixerDecodesPerTick, 2).leftPad(8))
            cells.append(fmt(row.mixerEncodesPerTick, 2).leftPad(8))
            cells.append(fmt(row.packetsPerTick, 1).leftPad(9))
            cells.append(fmt(row.withoutSharingMicroseconds, 1).leftPad(19))
            print(cells.joined(separator: " | "))
        }
    }

    // MARK: - Input

    struct SpeakerStream {
        var keys: MediaKeys
        /// Sealed RTP packets, one per tick, as they arrive at the mixer.
        var packets: [[UInt8]]
        /// The Opus payloads of the same packets, for the floor.
        var payloads: [[UInt8]]
    }

    /// Each speaker's `ticks` packets: the voice-like signal from a different offset, encoded
    /// and sealed with that participant's own keys.
    private func speakerStreams(_ count: Int, voice: [Int16]) throws -> [SpeakerStream] {
        try (0..<count).map { index in
            let encoder = try OpusEncoder(bitrate: 32_000, complexity: 5, inbandFEC: true, expectedPacketLoss: 10)
            let keys = try MediaKeys.derive(sharedSecret: SecureRandom.bytes(32), callID: SecureRandom.bytes(16))
            var cipher = MediaCipher(keys: keys, role: .caller)
            let ssrc = UInt32(index + 1)
            var packets: [[UInt8]] = []
            var payloads: [[UInt8]] = []
            let frames = voice.count / Opus.frameSampleCount
            for tick in 0..<ticks {
                let start = ((tick + index * 97) % frames) * Opus.frameSampleCount
                let payload = try encoder.encode(Array(voice[start..<start + Opus.frameSampleCount]))
                let header = RTPHeader(
                    sequenceNumber: UInt16(truncatingIfNeeded: tick), timestamp: UInt32(tick * Opus.frameSampleCount), ssrc: ssrc,
                    marker: tick == 0)
                packets.append(try cipher.seal(header: header, payload: payload))
                payloads.append(payload)
            }
            return SpeakerStream(keys: keys, packets: packets, payloads: payloads)
        }
    }

    // MARK: - Floor

    private func measureFloor(_ streams: [SpeakerStream], listeners: Int) throws -> (total: Double, encode: Double, decode: Double) {
        let encoderCount = Self.distinctMixes(speakers: streams.count, listeners: listeners)
        var encoders: [OpaquePointer] = []
        var decoders: [OpaquePointer] = []
        defer {
            encoders.forEach { opus_encoder_destroy($0) }
            decoders.forEach { opus_decoder_destroy($0) }
        }
        for _ in 0..<encoderCount { encoders.append(try PlainOpus.encoder()) }
        for _ in streams { decoders.append(try PlainOpus.decoder()) }
        let pcm = UnsafeMutablePointer<Int16>.allocate(capacity: 5760 * max(1, streams.count))
        let packet = UnsafeMutablePointer<UInt8>.allocate(capacity: 1500)
        defer {
            pcm.deallocate()
            packet.deallocate()
        }
        var decodeTime: UInt64 = 0
        var encodeTime: UInt64 = 0
        for tick in 0..<ticks {
            let t0 = BenchTiming.threadCPUNanoseconds()
            for (index, stream) in streams.enumerated() {
                let decoded = stream.payloads[tick].withUnsafeBufferPointer {
                    opus_decode(decoders[index], $0.baseAddress!, Int32($0.count), pcm + index * 5760, 5760, 0)
                }
                guard decoded == Int32(Opus.frameSampleCount) else { throw ValidationError("opus_decode gave \(decoded)") }
            }
            let t1 = BenchTiming.threadCPUNanoseconds()
            // One encode per distinct mix (each speaker's decoded frame stands in for a mix).
            for (index, encoder) in encoders.enumerated() {
                let written = opus_encode(encoder, pcm + (index % streams.count) * 5760, Int32(Opus.frameSampleCount), packet, 1500)
                guard written > 0 else { throw ValidationError("opus_encode failed: \(written)") }
            }
            let t2 = BenchTiming.threadCPUNanoseconds()
            decodeTime += t1 - t0
            encodeTime += t2 - t1
        }
        let perTick = Double(decodeTime + encodeTime) / 1000 / Double(ticks)
        return (perTick, Double(encodeTime) / 1000 / Double(ticks * max(1, encoderCount)), Double(decodeTime) / 1000 / Double(ticks * streams.count))
    }

    // MARK: - Mixer

    private func measureMixer(_ streams: [SpeakerStream], participants: Int) throws -> (total: Double, counters: ConferenceMixer.Counters) {
        let mixer = try ConferenceMixer()
        let names = (0..<participants).map { "p\($0)" }
        for name in names { try mixer.addRemote(name) }
        // The mixer's side of each leg: open what speakers send, seal what everyone gets.
        var inbound = streams.map { MediaCipher(keys: $0.keys, role: .callee) }
        var outbound = try names.map { _ in
            MediaCipher(keys: try MediaKeys.derive(sharedSecret: SecureRandom.bytes(32), callID: SecureRandom.bytes(16)), role: .callee)
        }
        var sequences = [UInt16](repeating: 0, count: participants)
        let index = Dictionary(uniqueKeysWithValues: names.enumerated().map { ($1, $0) })
        var sent = 0
        let start = BenchTiming.threadCPUNanoseconds()
        for tick in 0..<ticks {
            let now = Double(tick) * 0.02
            for speaker in streams.indices {
                let (header, payload) = try inbound[speaker].open(streams[speaker].packets[tick])
                mixer.receive(from: names[speaker], sequence: header.sequenceNumber, timestamp: header.timestamp, payload: payload, now: now)
            }
            let result = mixer.tick(now: now)
            for output in result.outputs {
                let leg = index[output.participant]!
                let header = RTPHeader(
                    sequenceNumber: sequences[leg], timestamp: UInt32(truncatingIfNeeded: tick * Opus.frameSampleCount),
                    ssrc: UInt32(1000 + leg), marker: output.startsTalkspurt)
                sequences[leg] &+= 1
                sent += try outbound[leg].seal(header: header, payload: output.payload).count
            }
        }
        let elapsed = BenchTiming.threadCPUNanoseconds() - start
        precondition(sent > 0, "the mixer sent nothing")
        return (Double(elapsed) / 1000 / Double(ticks), mixer.counters)
    }

    static func distinctMixes(speakers: Int, listeners: Int) -> Int {
        (speakers > 1 ? speakers : 0) + (listeners > 0 ? 1 : 0)
    }

    private func fmt(_ value: Double, _ decimals: Int) -> String { String(format: "%.\(decimals)f", value) }
}

private extension String {
    func leftPad(_ width: Int) -> String { count >= width ? self : String(repeating: " ", count: width - count) + self }
}
