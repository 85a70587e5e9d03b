import Foundation
import SkylarkTestSupport
import Testing

@testable import SkylarkMedia

@Suite("Opus codec")
struct OpusTests {
    /// Encodes `frames` and decodes every packet in order.
    static func roundTrip(_ input: [[Int16]], encoder: OpusEncoder, decoder: OpusDecoder) throws -> (packets: [[UInt8]], output: [Int16]) {
        var packets = [[UInt8]]()
        var output = [Int16]()
        for frame in input {
            let packet = try encoder.encode(frame)
            packets.append(packet)
            output += try decoder.decode(packet)
        }
        return (packets, output)
    }

    /// A voice-like test signal: a tone whose pitch and loudness jump every 20 ms (continuous
    /// phase), so concealment cannot guess a frame from the one before it.
    static func warble(frameCount: Int, seed: UInt64) -> [Int16] {
        var random = SeededGenerator(seed: seed)
        var phase = 0.0
        var out = [Int16]()
        for _ in 0..<frameCount {
            let hz = Double.random(in: 200...900, using: &random)
            let amplitude = Double.random(in: 0.2...0.6, using: &random) * 32767
            for _ in 0..<Opus.frameSampleCount {
                out.append(Int16((amplitude * sin(2 * .pi * phase)).rounded()))
                phase += hz / Double(Opus.sampleRate)
                if phase >= 1 { phase -= 1 }
            }
        }
        return out
    }

    @Test("A 440 Hz tone survives the round trip: same pitch, correlation > 0.9 once the codec delay is aligned")
    func toneRoundTrip() throws {
        let encoder = try OpusEncoder()
        let decoder = try OpusDecoder()
        let input = tone(440, count: Opus.sampleRate)  // one second
        let (packets, output) = try Self.roundTrip(frames(input), encoder: encoder, decoder: decoder)
        #expect(packets.count == 50)
        #expect(output.count == input.count)
        // 32 kbit/s is 80 bytes per 20 ms frame on average (VBR).
        let average = packets.map(\.count).reduce(0, +) / packets.count
        #expect((40...160).contains(average), "average packet \(average) bytes")

        let pitch = try #require(AudioAnalysis.dominantFrequency(of: Array(output.dropFirst(4_800))))
        #expect(abs(pitch - 440) < 3, "decoded pitch \(pitch) Hz")

        // The decoded audio lags the input by about the encoder's look-ahead (312 samples = 6.5 ms).
        // A tone repeats every 109 samples, so the search stays within half a period of it.
        let lookahead = encoder.lookahead
        let alignment = try #require(AudioAnalysis.bestAlignment(of: output, against: input, lags: (lookahead - 50)...(lookahead + 50)))
        #expect(alignment.correlation > 0.9, "correlation \(alignment.correlation) at lag \(alignment.lag)")
        #expect(abs(alignment.lag - lookahead) <= 8, "lag \(alignment.lag), look-ahead \(lookahead)")
    }

    @Test("In-band FEC rebuilds a lost frame better than concealment does")
    func fecBeatsConcealment() throws {
        let input = Self.warble(frameCount: 60, seed: 7)
        let encoder = try OpusEncoder(bitrate: 32_000, complexity: 5, inbandFEC: true, expectedPacketLoss: 20)
        let reference = try OpusDecoder()
        let (packets, clean) = try Self.roundTrip(frames(input), encoder: encoder, decoder: reference)
        // The codec delay, measured on this non-periodic signal: close to the encoder's look-ahead.
        let lookahead = encoder.lookahead
        let delay = try #require(AudioAnalysis.bestAlignment(of: clean, against: input, lags: (lookahead - 100)...(lookahead + 100))).lag
        #expect(abs(delay - lookahead) <= 8, "measured delay \(delay), look-ahead \(lookahead)")

        var fecScores = [Double](), plcScores = [Double]()
        for lost in [20, 30, 40, 50] {
            let withFEC = try OpusDecoder(), withPLC = try OpusDecoder()
            for index in 0..<lost {
                _ = try withFEC.decode(packets[index])
                _ = try withPLC.decode(packets[index])
            }
            let recovered = try withFEC.decodeFEC(from: packets[lost + 1])
            let concealed = withPLC.concealLoss()
            #expect(recovered.count == Opus.frameSampleCount)
            #expect(concealed.count == Opus.frameSampleCount)
            // What the lost slot should have sounded like: the input, shifted by the codec delay.
            let start = lost * Opus.frameSampleCount - delay
            let expected = Array(input[start..<start + Opus.frameSampleCount])
            fecScores.append(AudioAnalysis.correlation(recovered, expected))
            plcScores.append(AudioAnalysis.correlation(concealed, expected))
        }
        for (fec, plc) in zip(fecScores, plcScores) { #expect(fec > plc, "FEC \(fec) vs PLC \(plc)") }
        #expect(fecScores.reduce(0, +) / Double(fecScores.count) > 0.5)
    }

    @Test("Concealment returns one 20 ms frame, before and after real packets, and fades out")
    func concealmentLength() throws {
        let decoder = try OpusDecoder()
        #expect(decoder.concealLoss().count == Opus.frameSampleCount)
        let encoder = try OpusEncoder()
        for frame in frames(tone(300, count: 10 * Opus.frameSampleCount)) { _ = try decoder.decode(try encoder.encode(frame)) }
        var last = [Int16]()
        for _ in 0..<50 {
            last = decoder.concealLoss()
            #expect(last.count == Opus.frameSampleCount)
        }
        #expect(AudioAnalysis.rms(last) < 100, "a second of concealment has faded to near silence")
    }

    @Test("Wrong frame sizes are a typed error", arguments: [0, 1, 480, 959, 961, 1_440, 3_840])
    func wrongFrameSize(count: Int) throws {
        let encoder = try OpusEncoder()
        #expect(throws: MediaError.wrongFrameSize(expected: 960, actual: count)) {
            try encoder.encode([Int16](repeating: 0, count: count))
        }
    }

    @Test("A corrupt packet throws libopus's own error text; random packets never crash the decoder")
    func corruptPackets() throws {
        let decoder = try OpusDecoder()
        // TOC code 3 (arbitrary frame count) with a frame count of zero: invalid (RFC 6716 §3.2.5).
        do {
            _ = try decoder.decode([0x03, 0x00])
            Issue.record("decoded an invalid packet")
        } catch {
            guard case let .opus(operation, code, reason) = error else { Issue.record("unexpected \(error)"); return }
            #expect(operation == "opus_decode")
            #expect(code == -4)
            #expect(reason == "corrupted stream")
        }
        #expect(throws: MediaError.self) { try decoder.decode([]) }
        #expect(throws: MediaError.self) { try decoder.decodeFEC(from: []) }

        var random = SeededGenerator(seed: 99)
        var decoded = 0, refused = 0
        for _ in 0..<500 {
            let packet = [UInt8].random(count: Int.random(in: 1...200, using: &random), using: &random)
            do {
                let pcm = try decoder.decode(packet)
                #expect(pcm.count <= 5_760)
                decoded += 1
            } catch {
                refused += 1
            }
        }
        #expect(decoded + refused == 500)
    }

    @Test("Settings go through to libopus and are read back; out-of-range settings are refused")
    func settings() throws {
        let encoder = try OpusEncoder(bitrate: 24_000, complexity: 3, inbandFEC: true, expectedPacketLoss: 15)
        #expect(encoder.bitrate == 24_000)
        #expect(encoder.complexity == 3)
        #expect(encoder.inbandFEC)
        #expect(encoder.expectedPacketLoss == 15)
        try encoder.setBitrate(64_000)
        try encoder.setComplexity(10)
        try encoder.setExpectedPacketLoss(0)
        try encoder.setInbandFEC(false)
        #expect(encoder.bitrate == 64_000)
        #expect(encoder.complexity == 10)
        #expect(encoder.expectedPacketLoss == 0)
        #expect(!encoder.inbandFEC)
        #expect(encoder.lookahead > 0 && encoder.lookahead < 960)

        #expect(throws: MediaError.self) { try encoder.setComplexity(11) }
        #expect(throws: MediaError.self) { try encoder.setComplexity(-1) }
        #expect(throws: MediaError.self) { try encoder.setBitrate(0) }
        #expect(throws: MediaError.self) { try encoder.setBitrate(32) }  // kbit/s by mistake
        #expect(throws: MediaError.self) { try encoder.setExpectedPacketLoss(101) }
        #expect(throws: MediaError.self) { try OpusEncoder(complexity: 42) }
        // A refused setting leaves the previous one in force.
        #expect(encoder.complexity == 10)
        #expect(Opus.libraryVersion.hasPrefix("libopus"))
    }

    @Test("Each encoder and decoder owns its handle: many created and dropped, each still works")
    func ownership() throws {
        let frame = tone(500, count: Opus.frameSampleCount)
        for _ in 0..<300 {
            let encoder = try OpusEncoder()
            let decoder = try OpusDecoder()
            #expect(try decoder.decode(try encoder.encode(frame)).count == Opus.frameSampleCount)
        }
        // A failing init after creation (bad complexity) frees the handle in deinit as well.
        for _ in 0..<100 { _ = try? OpusEncoder(complexity: 99) }
    }
}
