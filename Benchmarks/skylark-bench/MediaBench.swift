import ArgumentParser
import COpus
import COpusShims
import Foundation
import SkylarkCrypto
import SkylarkMedia

#if canImport(Glibc)
    import Glibc
#endif

/// Cost per 20 ms frame of one call stream: plain libopus (the C functions, called directly)
/// against Skylark's whole per-stream media pipeline, the steps `CallMedia` takes for every
/// frame, in one run on the same audio:
///
/// - send: `OpusEncoder.encode` → `RTPHeader` → `MediaCipher.seal` (AES-256-GCM);
/// - receive: `RTPHeader.decode` (the SSRC check) → `MediaCipher.open` → `JitterBuffer.insert`
///   → `JitterBuffer.next` → `OpusDecoder.decode` (or FEC / concealment, as the buffer says).
///
/// Both use the settings calls use: 48 kHz mono, VOIP application, voice signal, 32 kb/s,
/// complexity 5, in-band FEC on, 10 % expected loss. Rounds alternate plain and pipeline over the
/// same frames; the figure per step is the median over rounds of the mean per frame. The overhead
/// is the median over rounds of each round's difference (pipeline − plain), so that a round slowed
/// by something else on the machine slows both halves of one difference rather than one median.
struct MediaBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "media",
        abstract: "Encode/decode/encrypt cost per stream: Skylark's media pipeline against plain libopus.")

    @Option(help: "Frames (20 ms each) per round.") var frames = 1500
    @Option(help: "Rounds (each: plain, then pipeline).") var rounds = 11
    @Option(help: "Opus complexity (0-10).") var complexity = 5
    @Option(help: "Opus bitrate, bit/s.") var bitrate = 32_000
    @Option(help: "A 48 kHz mono WAV to encode (default: a synthetic voice-like signal, 10 s looped).") var input: String?
    @Flag(help: "Print the results as one JSON object.") var json = false

    func validate() throws {
        guard frames >= 100, rounds >= 1, (0...10).contains(complexity), (6_000...510_000).contains(bitrate) else { throw ValidationError("bad options") }
    }

    struct Stage: Codable {
        var name: String
        var microseconds: Double
    }

    struct Report: Codable {
        var library: String
        var complexity: Int
        var bitrate: Int
        var frames: Int
        var rounds: Int
        var input: String
        var meanPacketBytes: Double
        var plain: [Stage]
        var pipeline: [Stage]
        var plainPerFrame: Double
        var pipelinePerFrame: Double
        var overheadMicroseconds: Double
        var overheadPercent: Double
        /// The smallest and largest per-round difference (pipeline − plain), µs per frame.
        var overheadRange: [Double]
        var plainStreamsPerCore: Double
        var pipelineStreamsPerCore: Double
        var playout: [String: Int]
    }

    func run() throws {
        let audio = try makeFrames()
        var plainRounds: [[Double]] = []
        var pipelineRounds: [[Double]] = []
        var packetBytes = 0.0
        var playout: [String: Int] = [:]
        for round in 1...rounds {
            let plain = try measurePlain(audio)
            let pipeline = try measurePipeline(audio)
            plainRounds.append(plain.stages)
            pipelineRounds.append(pipeline.stages)
            packetBytes = pipeline.meanPacketBytes
            playout = pipeline.playout
            FileHandle.standardError.write(
                Data(
                    "round \(round)/\(rounds): plain \(mediaFormat(plain.stages.reduce(0, +), 1)) µs, pipeline \(mediaFormat(pipeline.stages.reduce(0, +), 1)) µs per frame\n"
                        .utf8))
        }
        func medians(_ rows: [[Double]]) -> [Double] {
            (0..<rows[0].count).map { column in
                let values = rows.map { $0[column] }.sorted()
                return values.count % 2 == 1 ? values[values.count / 2] : (values[values.count / 2 - 1] + values[values.count / 2]) / 2
            }
        }
        let plain = medians(plainRounds)
        let pipeline = medians(pipelineRounds)
        let plainNames = ["opus_encode", "opus_decode"]
        let pipelineNames = [
            "OpusEncoder.encode", "RTPHeader + MediaCipher.seal", "RTPHeader.decode + MediaCipher.open", "JitterBuffer.insert + next",
            "OpusDecoder.decode (FEC / PLC as told)",
        ]
        let plainTotal = plain.reduce(0, +)
        let pipelineTotal = pipeline.reduce(0, +)
        let differences = zip(pipelineRounds, plainRounds).map { [$0.reduce(0, +) - $1.reduce(0, +)] }
        let overhead = medians(differences)[0]
        let report = Report(
            library: Opus.libraryVersion, complexity: complexity, bitrate: bitrate, frames: frames, rounds: rounds,
            input: input ?? "synthetic voice-like signal", meanPacketBytes: packetBytes,
            plain: zip(plainNames, plain).map { Stage(name: $0, microseconds: $1) },
            pipeline: zip(pipelineNames, pipeline).map { Stage(name: $0, microseconds: $1) },
            plainPerFrame: plainTotal, pipelinePerFrame: pipelineTotal,
            overheadMicroseconds: overhead, overheadPercent: 100 * overhead / plainTotal,
            overheadRange: [differences.map { $0[0] }.min() ?? 0, differences.map { $0[0] }.max() ?? 0],
            plainStreamsPerCore: 20_000 / plainTotal, pipelineStreamsPerCore: 20_000 / pipelineTotal, playout: playout)
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            print(table(report))
        }
    }

    private func table(_ report: Report) -> String {
        var lines: [String] = []
        lines.append(
            "media per 20 ms frame, one stream (encode one frame + decode one frame): \(report.library), complexity \(report.complexity), "
                + "\(report.bitrate / 1000) kb/s, FEC on; \(report.frames) frames x \(report.rounds) rounds (median of round means); "
                + "\(report.input); mean sealed packet \(mediaFormat(report.meanPacketBytes, 1)) B")
        lines.append("")
        lines.append("step                                          | plain libopus µs | Skylark pipeline µs")
        lines.append("----------------------------------------------|------------------|--------------------")
        func row(_ name: String, _ plain: Double?, _ pipeline: Double?) {
            lines.append(
                name.padding(toLength: 45, withPad: " ", startingAt: 0) + " | " + (plain.map { mediaFormat($0, 2) } ?? "").leftPad(16)
                    + " | " + (pipeline.map { mediaFormat($0, 2) } ?? "").leftPad(18))
        }
        row("encode", report.plain[0].microseconds, report.pipeline[0].microseconds)
        row("RTP header + AES-256-GCM seal", nil, report.pipeline[1].microseconds)
        row("send side", report.plain[0].microseconds, report.pipeline[0].microseconds + report.pipeline[1].microseconds)
        row("RTP parse + AES-256-GCM open (replay check)", nil, report.pipeline[2].microseconds)
        row("jitter buffer insert + next", nil, report.pipeline[3].microseconds)
        row("decode", report.plain[1].microseconds, report.pipeline[4].microseconds)
        row("receive side", report.plain[1].microseconds, report.pipeline[2].microseconds + report.pipeline[3].microseconds + report.pipeline[4].microseconds)
        row("per stream (send + receive)", report.plainPerFrame, report.pipelinePerFrame)
        lines.append("")
        lines.append(
            "pipeline overhead over plain libopus (median of the per-round differences): \(mediaFormat(report.overheadMicroseconds, 2)) µs per frame "
                + "(\(mediaFormat(report.overheadPercent, 1)) %); per round from \(mediaFormat(report.overheadRange[0], 2)) to \(mediaFormat(report.overheadRange[1], 2)) µs"
        )
        lines.append(
            "streams per core (20 ms / per-stream cost): plain \(mediaFormat(report.plainStreamsPerCore, 0)), pipeline \(mediaFormat(report.pipelineStreamsPerCore, 0))"
        )
        lines.append(
            "jitter buffer playout in the last round: " + report.playout.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        return lines.joined(separator: "\n")
    }

    // MARK: - Input

    /// `frames` frames of 960 samples: the WAV (looped) or a synthetic voice-like signal.
    private func makeFrames() throws -> [[Int16]] {
        let samples: [Int16]
        if let input {
            samples = try WAVFile(path: input).samples
            guard samples.count >= Opus.frameSampleCount else { throw ValidationError("\(input) is shorter than one frame") }
        } else {
            samples = Self.voiceLike(seconds: 10)
        }
        return (0..<frames).map { index in
            let start = (index * Opus.frameSampleCount) % (samples.count - samples.count % Opus.frameSampleCount)
            return Array(samples[start..<start + Opus.frameSampleCount])
        }
    }

    /// Voiced syllables (a gliding 90-220 Hz pitch with formant-shaped harmonics, 4 syllables a
    /// second), unvoiced noise bursts between some of them and short pauses: something that keeps
    /// the encoder in its speech modes, reproducible from a fixed seed.
    static func voiceLike(seconds: Int) -> [Int16] {
        let rate = Double(Opus.sampleRate)
        var state: UInt64 = 0x5EED_1234_ABCD_0001
        func noise() -> Double {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Double(Int64(bitPattern: state) >> 11) / Double(1 << 52)
        }
        var out: [Int16] = []
        out.reserveCapacity(seconds * Opus.sampleRate)
        var phase = 0.0
        for n in 0..<(seconds * Opus.sampleRate) {
            let t = Double(n) / rate
            let syllable = t * 4
            let position = syllable - syllable.rounded(.down)
            let index = Int(syllable)
            let pitch = 90 + 130 * (0.5 + 0.5 * sin(2 * .pi * 0.37 * t)) + 15 * sin(2 * .pi * 5 * t)
            phase += 2 * .pi * pitch / rate
            let formant1 = 500 + 300 * sin(2 * .pi * 0.9 * t + Double(index))
            let formant2 = 1500 + 700 * sin(2 * .pi * 0.6 * t + 2 * Double(index))
            var voiced = 0.0
            for harmonic in 1...30 {
                let frequency = pitch * Double(harmonic)
                guard frequency < 7_000 else { break }
                let gain = exp(-pow((frequency - formant1) / 250, 2)) + 0.6 * exp(-pow((frequency - formant2) / 350, 2)) + 0.02
                voiced += gain * sin(Double(harmonic) * phase)
            }
            let envelope = position < 0.75 ? sin(.pi * position / 0.75) : 0  // a pause after each syllable
            let fricative = index % 3 == 2 && position > 0.75 ? 0.25 * noise() : 0
            let value = 0.18 * envelope * voiced + fricative + 0.002 * noise()
            out.append(Int16(max(-1, min(1, value)) * 32_000))
        }
        return out
    }

    // MARK: - Plain libopus

    private func measurePlain(_ audio: [[Int16]]) throws -> (stages: [Double], bytes: Double) {
        var status: Int32 = OPUS_OK
        guard let encoder = opus_encoder_create(Int32(Opus.sampleRate), 1, OPUS_APPLICATION_VOIP, &status), status == OPUS_OK else {
            throw ValidationError("opus_encoder_create failed: \(status)")
        }
        defer { opus_encoder_destroy(encoder) }
        guard let decoder = opus_decoder_create(Int32(Opus.sampleRate), 1, &status), status == OPUS_OK else {
            throw ValidationError("opus_decoder_create failed: \(status)")
        }
        defer { opus_decoder_destroy(decoder) }
        // The settings OpusEncoder applies (opus_encoder_ctl is variadic: through the C shims).
        guard skylark_opus_encoder_set_signal(encoder, OPUS_SIGNAL_VOICE) == OPUS_OK, skylark_opus_encoder_set_bitrate(encoder, Int32(bitrate)) == OPUS_OK,
            skylark_opus_encoder_set_complexity(encoder, Int32(complexity)) == OPUS_OK, skylark_opus_encoder_set_inband_fec(encoder, 1) == OPUS_OK,
            skylark_opus_encoder_set_packet_loss_perc(encoder, 10) == OPUS_OK
        else { throw ValidationError("opus ctl failed") }
        let packet = UnsafeMutablePointer<UInt8>.allocate(capacity: 1500)
        let pcm = UnsafeMutablePointer<Int16>.allocate(capacity: 5760)
        defer {
            packet.deallocate()
            pcm.deallocate()
        }
        var encode: UInt64 = 0
        var decode: UInt64 = 0
        var bytes = 0
        for frame in audio {
            let t0 = LoadClock.now()
            let written = frame.withUnsafeBufferPointer { opus_encode(encoder, $0.baseAddress!, Int32(Opus.frameSampleCount), packet, 1500) }
            let t1 = LoadClock.now()
            guard written > 0 else { throw ValidationError("opus_encode failed: \(written)") }
            let decoded = opus_decode(decoder, packet, written, pcm, 5760, 0)
            let t2 = LoadClock.now()
            guard decoded == Int32(Opus.frameSampleCount) else { throw ValidationError("opus_decode gave \(decoded)") }
            encode += t1 - t0
            decode += t2 - t1
            bytes += Int(written)
        }
        let count = Double(audio.count)
        return ([Double(encode) / 1000 / count, Double(decode) / 1000 / count], Double(bytes) / count)
    }

    // MARK: - Skylark's pipeline

    private func measurePipeline(_ audio: [[Int16]]) throws -> (stages: [Double], meanPacketBytes: Double, playout: [String: Int]) {
        let encoder = try OpusEncoder(bitrate: bitrate, complexity: complexity, inbandFEC: true, expectedPacketLoss: 10)
        let decoder = try OpusDecoder()
        let keys = try MediaKeys.derive(sharedSecret: SecureRandom.bytes(32), callID: SecureRandom.bytes(16))
        var sender = MediaCipher(keys: keys, role: .caller)
        var receiver = MediaCipher(keys: keys, role: .callee)
        var jitter = JitterBuffer()
        let ssrc = UInt32.random(in: 1...UInt32.max)
        var sequence = UInt16.random(in: 0...UInt16.max)
        var timestamp = UInt32.random(in: 0...UInt32.max)
        var times = [UInt64](repeating: 0, count: 5)
        var bytes = 0
        var playout: [String: Int] = [:]
        var samplesOut = 0
        for (index, frame) in audio.enumerated() {
            // Send side, as CallMedia.packetsDue does it.
            let t0 = LoadClock.now()
            let opus = try encoder.encode(frame)
            let t1 = LoadClock.now()
            let header = RTPHeader(sequenceNumber: sequence, timestamp: timestamp, ssrc: ssrc, marker: index == 0)
            sequence &+= 1
            timestamp &+= UInt32(Opus.frameSampleCount)
            let packet = try sender.seal(header: header, payload: opus)
            let t2 = LoadClock.now()
            bytes += packet.count

            // Receive side, as CallMedia.receive and playOut do it: a steady path (5 ms), one
            // playout tick per frame.
            let now = Double(index) * Opus.frameDuration + 0.005
            guard let (clear, _) = try? RTPHeader.decode(packet), clear.ssrc == ssrc else { throw ValidationError("not our SSRC") }
            let (opened, payload) = try receiver.open(packet)
            let t3 = LoadClock.now()
            jitter.insert(sequence: opened.sequenceNumber, timestamp: opened.timestamp, payload: payload, arrival: now)
            let next = jitter.next(now: now)
            let t4 = LoadClock.now()
            let pcm: [Int16]
            switch next {
            case let .frame(payload)?:
                pcm = (try? decoder.decode(payload)) ?? decoder.concealLoss()
                playout["frame", default: 0] += 1
            case let .fec(following)?:
                pcm = (try? decoder.decodeFEC(from: following)) ?? decoder.concealLoss()
                playout["fec", default: 0] += 1
            case .conceal?:
                pcm = decoder.concealLoss()
                playout["conceal", default: 0] += 1
            case nil:
                pcm = [Int16](repeating: 0, count: Opus.frameSampleCount)
                playout["buffering", default: 0] += 1
            }
            let t5 = LoadClock.now()
            samplesOut += pcm.count
            times[0] += t1 - t0
            times[1] += t2 - t1
            times[2] += t3 - t2
            times[3] += t4 - t3
            times[4] += t5 - t4
        }
        guard samplesOut > 0 else { throw ValidationError("nothing decoded") }
        let count = Double(audio.count)
        return (times.map { Double($0) / 1000 / count }, Double(bytes) / count, playout)
    }
}

private extension String {
    func leftPad(_ width: Int) -> String { count >= width ? self : String(repeating: " ", count: width - count) + self }
}

private func mediaFormat(_ value: Double, _ decimals: Int) -> String { String(format: "%.\(decimals)f", value) }
