import Foundation
import SkylarkTestSupport
import Testing

@testable import SkylarkMedia

/// A `ConferenceMixer` with remote participants who each send a tone through a real Opus
/// encoder (or nothing: a silent participant's voice activity detector sends no packets), and a
/// real Opus decoder per participant for what the mixer sends it.
///
/// Frame n of every speaker arrives at n × 20 ms; the mixer ticks 10 ms later. The jitter buffer
/// holds the first frame for one tick, so tick n plays frame n − 1 from the second tick on.
final class MixerRig {
    struct Speaker {
        var source: ToneSource
        let encoder: OpusEncoder
    }

    let mixer: ConferenceMixer
    private(set) var speakers: [String: Speaker] = [:]
    private var decoders: [String: OpusDecoder] = [:]
    /// Everything each remote participant was sent, decoded, in order.
    private(set) var heard: [String: [Int16]] = [:]
    /// What the local participant was given.
    private(set) var localHeard: [Int16] = []
    private(set) var ticks: [ConferenceMixer.Tick] = []
    var localSource: ToneSource?
    private(set) var frame = 0

    init(remotes: [String], local: String? = nil) throws {
        mixer = try ConferenceMixer()
        for name in remotes {
            try mixer.addRemote(name)
            decoders[name] = try OpusDecoder()
            heard[name] = []
        }
        mixer.setLocal(local)
    }

    func speak(_ name: String, hz: Double, amplitude: Double = 0.2) throws {
        speakers[name] = Speaker(source: ToneSource(hz: hz, amplitude: amplitude), encoder: try OpusEncoder())
    }

    func fallSilent(_ name: String) { speakers[name] = nil }

    @discardableResult
    func run(ticks count: Int) throws -> [ConferenceMixer.Tick] {
        var out: [ConferenceMixer.Tick] = []
        for _ in 0..<count {
            let now = Double(frame) * Opus.frameDuration
            for name in speakers.keys.sorted() {
                let pcm = speakers[name]!.source.read(count: Opus.frameSampleCount) ?? []
                let payload = try speakers[name]!.encoder.encode(pcm)
                mixer.receive(
                    from: name, sequence: UInt16(truncatingIfNeeded: 1_000 + frame), timestamp: UInt32(48_000 + frame * Opus.frameSampleCount),
                    payload: payload, now: now)
            }
            let localFrame = localSource?.read(count: Opus.frameSampleCount)
            let tick = mixer.tick(now: now + 0.010, localFrame: localFrame)
            for output in tick.outputs {
                heard[output.participant, default: []] += try decoders[output.participant]!.decode(output.payload)
            }
            if let local = tick.local { localHeard += local }
            ticks.append(tick)
            out.append(tick)
            frame += 1
        }
        return out
    }

    /// The last `frames` frames `name` heard (the codec's start-up excluded).
    func tail(_ name: String, frames: Int = 20) -> [Int16] { Array((heard[name] ?? []).suffix(frames * Opus.frameSampleCount)) }
}

/// The amplitude (sample units) of the `hz` component of `samples`: Goertzel power, scaled so a
/// sine of amplitude A over a whole number of cycles measures A.
func toneAmplitude(_ samples: [Int16], _ hz: Double) -> Double {
    guard !samples.isEmpty else { return 0 }
    return 2 * AudioAnalysis.power(of: samples, at: hz).squareRoot() / Double(samples.count)
}

func peak(_ samples: [Int16]) -> Int { samples.map { abs(Int($0)) }.max() ?? 0 }

@Suite("Conference mixer")
struct ConferenceMixerTests {
    /// Tones on multiples of 10 Hz (a whole number of cycles in the 400 ms analysed, so each
    /// Goertzel term sees only its own tone), not evenly spaced: the codec's intermodulation
    /// products of the others (2a − b, a + b − c) must not land on a participant's own tone.
    static let tones: [String: Double] = ["ann": 430, "ben": 710, "cat": 1_090, "dan": 1_370, "eve": 570]
    static let amplitude = 0.2
    static var sent: Double { amplitude * 32_767 }

    /// `samples` carries each of `present` at ≥ half the amplitude sent, and each of `absent` at
    /// under 5 % of it (−26 dB: the codec's noise floor, where a mixer that did not take the
    /// listener's own voice out would leave it at full level).
    static func expectTones(
        _ samples: [Int16], present: [Double], absent: [Double], sent: Double = sent, _ who: String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        #expect(samples.count >= 10 * Opus.frameSampleCount, "\(who) heard only \(samples.count) samples", sourceLocation: sourceLocation)
        for hz in present {
            let level = toneAmplitude(samples, hz)
            #expect(level > 0.5 * sent, "\(who): \(hz) Hz at \(Int(level)), sent \(Int(sent))", sourceLocation: sourceLocation)
        }
        for hz in absent {
            let level = toneAmplitude(samples, hz)
            #expect(level < 0.05 * sent, "\(who): own \(hz) Hz still at \(Int(level)), sent \(Int(sent))", sourceLocation: sourceLocation)
        }
    }

    // MARK: - Who hears what

    @Test("Three speakers: each hears the other two and not itself; one decode and one own encode per speaker")
    func threeSpeakers() throws {
        let names = ["ann", "ben", "cat"]
        let rig = try MixerRig(remotes: names)
        for name in names { try rig.speak(name, hz: Self.tones[name]!) }
        let ticks = try rig.run(ticks: 30)

        #expect(ticks[0].outputs.isEmpty && ticks[0].decodes == 0, "the jitter buffer holds the first frame one tick")
        for tick in ticks.dropFirst() {
            #expect(tick.activeSpeakers == names)
            #expect(tick.decodes == 3)
            #expect(tick.encodes == 3, "no listeners: no shared mix")
            #expect(tick.outputs.map(\.participant) == names)
            #expect(tick.outputs.allSatisfy { !$0.shared })
            #expect(tick.local == nil)
        }
        #expect(ticks[1].outputs.allSatisfy { $0.startsTalkspurt })
        #expect(ticks[2].outputs.allSatisfy { !$0.startsTalkspurt })
        for name in names {
            let others = names.filter { $0 != name }.map { Self.tones[$0]! }
            Self.expectTones(rig.tail(name), present: others, absent: [Self.tones[name]!], name)
        }
        #expect(rig.mixer.counters == ConferenceMixer.Counters(ticks: 30, decodes: 87, encodes: 87, sharedEncodes: 0, packetsOut: 87))
    }

    @Test("Silent participants are listeners: no decode, and all get the same payload from one shared encode")
    func listenersShareOneEncode() throws {
        let speakers = ["ann", "ben", "cat"], listeners = ["l1", "l2", "l3", "l4"]
        let rig = try MixerRig(remotes: speakers + listeners)
        for name in speakers { try rig.speak(name, hz: Self.tones[name]!) }
        let ticks = try rig.run(ticks: 30)

        for tick in ticks.dropFirst() {
            #expect(tick.activeSpeakers == speakers)
            #expect(tick.decodes == speakers.count, "silent participants cost no decode")
            #expect(tick.encodes == speakers.count + 1, "one own mix per speaker plus one shared")
            let shared = tick.outputs.filter(\.shared)
            #expect(shared.map(\.participant) == listeners)
            #expect(Set(shared.map(\.payload)).count == 1, "every listener gets the very same packet")
            #expect(tick.outputs.filter { !$0.shared }.map(\.participant) == speakers)
            #expect(!shared[0].payload.isEmpty)
        }
        #expect(ticks[1].outputs.allSatisfy { $0.startsTalkspurt })
        #expect(ticks[5].outputs.allSatisfy { !$0.startsTalkspurt })
        let counters = rig.mixer.counters
        #expect(counters.sharedEncodes == 29, "one shared encode per tick with audio")
        #expect(counters.decodes == 29 * 3)
        #expect(counters.encodes == 29 * 4)
        #expect(counters.packetsOut == 29 * 7)
        for listener in listeners {
            Self.expectTones(rig.tail(listener), present: speakers.map { Self.tones[$0]! }, absent: [], listener)
        }
        for name in speakers {
            Self.expectTones(rig.tail(name), present: speakers.filter { $0 != name }.map { Self.tones[$0]! }, absent: [Self.tones[name]!], name)
        }
    }

    @Test("A local participant at the mixer hears the remotes and not itself; the remotes hear it")
    func localParticipant() throws {
        let rig = try MixerRig(remotes: ["ann", "ben", "l1"], local: "me")
        #expect(rig.mixer.participants == ["me", "ann", "ben", "l1"])
        try rig.speak("ann", hz: Self.tones["ann"]!)
        try rig.speak("ben", hz: Self.tones["ben"]!)
        let mine = Self.tones["eve"]!
        rig.localSource = ToneSource(hz: mine, amplitude: Self.amplitude)
        let ticks = try rig.run(ticks: 30)

        #expect(ticks[0].activeSpeakers == ["me"])
        #expect(ticks[0].local == nil, "nobody else yet: the local participant hears nothing")
        for tick in ticks.dropFirst() {
            #expect(tick.activeSpeakers == ["me", "ann", "ben"])
            #expect(tick.decodes == 2, "the local frame needs no decode")
            #expect(tick.encodes == 3, "ann's and ben's own mixes and the listeners' one; the local mix is not encoded")
            #expect(tick.local?.count == Opus.frameSampleCount)
        }
        let local = Array(rig.localHeard.suffix(20 * Opus.frameSampleCount))
        Self.expectTones(local, present: [Self.tones["ann"]!, Self.tones["ben"]!], absent: [mine], "me")
        Self.expectTones(rig.tail("ann"), present: [mine, Self.tones["ben"]!], absent: [Self.tones["ann"]!], "ann")
        Self.expectTones(rig.tail("l1"), present: [mine, Self.tones["ann"]!, Self.tones["ben"]!], absent: [], "l1")

        // The local participant falls silent: it still hears the others, and costs nothing.
        rig.localSource = nil
        let quiet = try rig.run(ticks: 25)
        #expect(quiet.allSatisfy { $0.activeSpeakers == ["ann", "ben"] && $0.local != nil })
        let after = Array(rig.localHeard.suffix(20 * Opus.frameSampleCount))
        Self.expectTones(after, present: [Self.tones["ann"]!, Self.tones["ben"]!], absent: [mine], "me, silent")
        // And a silent local participant with no remote speaker hears nothing.
        rig.fallSilent("ann")
        rig.fallSilent("ben")
        let nobody = try rig.run(ticks: 10)
        #expect(nobody.suffix(5).allSatisfy { $0.local == nil && $0.outputs.isEmpty && $0.activeSpeakers.isEmpty })
    }

    @Test("A lone speaker gets nothing (nobody else speaks); the listeners get it; nobody speaking costs nothing")
    func loneSpeaker() throws {
        let rig = try MixerRig(remotes: ["ann", "ben", "cat"])
        let idle = try rig.run(ticks: 5)
        #expect(idle.allSatisfy { $0.outputs.isEmpty && $0.decodes == 0 && $0.encodes == 0 && $0.activeSpeakers.isEmpty })

        try rig.speak("ann", hz: Self.tones["ann"]!)
        let ticks = try rig.run(ticks: 30)
        for tick in ticks.dropFirst() {
            #expect(tick.activeSpeakers == ["ann"])
            #expect(tick.decodes == 1 && tick.encodes == 1)
            #expect(tick.outputs.map(\.participant) == ["ben", "cat"])
            #expect(tick.outputs.allSatisfy { $0.shared })
        }
        #expect(rig.heard["ann"]?.isEmpty == true, "ann alone: nothing to hear")
        Self.expectTones(rig.tail("ben"), present: [Self.tones["ann"]!], absent: [], "ben")
        #expect(rig.mixer.counters.ticks == 35)

        // The local participant alone: nothing for it either.
        let solo = try MixerRig(remotes: ["ann"], local: "me")
        solo.localSource = ToneSource(hz: 500, amplitude: 0.2)
        let soloTicks = try solo.run(ticks: 5)
        #expect(soloTicks.allSatisfy { $0.local == nil && $0.activeSpeakers == ["me"] && $0.encodes == 1 })
        #expect(soloTicks.allSatisfy { $0.outputs.map(\.participant) == ["ann"] && $0.outputs.allSatisfy { $0.shared } })
    }

    @Test("A speaker who falls silent stops costing a decode and becomes a listener of the shared mix")
    func speakerFallsSilent() throws {
        let names = ["ann", "ben", "cat"]
        let rig = try MixerRig(remotes: names)
        for name in names { try rig.speak(name, hz: Self.tones[name]!) }
        try rig.run(ticks: 20)
        rig.fallSilent("cat")
        let ticks = try rig.run(ticks: 30)
        // Concealment covers at most 60 ms of an empty buffer, then cat is a listener.
        let settled = try #require(ticks.firstIndex { $0.decodes == 2 })
        #expect(settled <= 5, "cat still decoded \(settled) ticks after it stopped")
        for tick in ticks[settled...] {
            #expect(tick.activeSpeakers == ["ann", "ben"])
            #expect(tick.decodes == 2 && tick.encodes == 3)
            #expect(tick.outputs.first { $0.participant == "cat" }?.shared == true)
        }
        Self.expectTones(rig.tail("cat"), present: [Self.tones["ann"]!, Self.tones["ben"]!], absent: [Self.tones["cat"]!], "cat")
        Self.expectTones(rig.tail("ann"), present: [Self.tones["ben"]!], absent: [Self.tones["ann"]!, Self.tones["cat"]!], "ann")
    }

    @Test("Ten remote participants: each hears the nine others and not itself")
    func tenParticipants() throws {
        let names = (0..<10).map { "p\($0)" }
        // Unevenly spaced (see `tones`): on an even grid the codec's intermodulation of nine
        // tones lands exactly on the tenth.
        let frequencies: [Double] = [320, 470, 610, 780, 930, 1_090, 1_270, 1_430, 1_610, 1_790]
        let hz = Dictionary(uniqueKeysWithValues: zip(names, frequencies))
        let amplitude = 0.08
        let rig = try MixerRig(remotes: names)
        for name in names { try rig.speak(name, hz: hz[name]!, amplitude: amplitude) }
        let ticks = try rig.run(ticks: 30)
        for tick in ticks.dropFirst() {
            #expect(tick.activeSpeakers == names)
            #expect(tick.decodes == 10 && tick.encodes == 10)
            #expect(tick.outputs.count == 10 && tick.outputs.allSatisfy { !$0.shared })
        }
        for name in names {
            Self.expectTones(rig.tail(name), present: names.filter { $0 != name }.map { hz[$0]! }, absent: [hz[name]!], sent: amplitude * 32_767, name)
            // Every tick after the first played each one's own packet (the buffer held the first).
            #expect(rig.mixer.framesMixed(of: name) == 29)
        }
        #expect(rig.mixer.framesMixed(of: "nobody") == nil)
    }

    // MARK: - Loudness

    @Test("Several full-scale speakers never clip: the limiter holds the mix under its ceiling, and every voice stays audible")
    func loudMixDoesNotClip() throws {
        let loud = ["ann", "ben", "cat", "dan"]
        let rig = try MixerRig(remotes: loud + ["l1"], local: "me")
        for name in loud { try rig.speak(name, hz: Self.tones[name]!, amplitude: 1.0) }
        try rig.run(ticks: 40)

        // The local participant gets PCM straight from the limiter: at most the ceiling (the
        // first frame's 1 ms attack aside), and never the rails.
        #expect(rig.localHeard.count == 39 * Opus.frameSampleCount)
        let localPeak = peak(Array(rig.localHeard.dropFirst(Opus.frameSampleCount)))
        #expect(localPeak <= Int(MixLimiter.ceiling), "local mix peak \(localPeak)")
        #expect(localPeak > Int(MixLimiter.ceiling) - 1_000, "limited to the ceiling, not far below it")
        #expect(peak(rig.localHeard) < 32_767, "not even the first frame touches the rails")

        for name in loud + ["l1"] {
            let decoded = rig.heard[name] ?? []
            #expect(decoded.count >= 30 * Opus.frameSampleCount)
            // All but the rarest samples stay at the limiter's ceiling: only codec overshoot goes above.
            let sorted = decoded.map { abs(Int($0)) }.sorted()
            let p99 = sorted.isEmpty ? 0 : sorted[sorted.count * 99 / 100]
            #expect(p99 <= Int(MixLimiter.ceiling) + 500, "\(name): 99th percentile \(p99)")
            let railed = decoded.filter { $0 == .max || $0 == .min }.count
            #expect(railed == 0, "\(name): \(railed) decoded samples at the rail, peak \(peak(decoded))")
            // Limited, not crushed: each other voice is still there at a fair share of the ceiling.
            let others = loud.filter { $0 != name }
            for other in others {
                let level = toneAmplitude(rig.tail(name), Self.tones[other]!)
                #expect(level > 0.6 * Double(MixLimiter.ceiling) / Double(others.count), "\(name) hears \(other) at only \(Int(level))")
            }
        }
    }

    @Test("The limiter: quiet mixes pass untouched, loud ones are held under the ceiling, and the gain recovers slowly")
    func limiter() {
        var limiter = MixLimiter()
        let quiet = (0..<960).map { Int32(10_000 * sin(2 * Double.pi * 500 * Double($0) / 48_000)) }
        #expect(limiter.apply(quiet).map(Int32.init) == quiet)
        #expect(limiter.gain == 1)

        let loud = (0..<960).map { Int32(90_000 * sin(2 * Double.pi * 500 * Double($0) / 48_000)) }
        let first = limiter.apply(loud)
        #expect(peak(first) <= 32_767)
        #expect(peak(Array(first.dropFirst(MixLimiter.attackSamples))) <= Int(MixLimiter.ceiling), "after the 1 ms attack")
        for _ in 0..<5 { #expect(peak(limiter.apply(loud)) <= Int(MixLimiter.ceiling)) }
        #expect(abs(limiter.gain - MixLimiter.ceiling / 90_000) < 0.01)

        // Quiet again: the gain climbs back about 5 % of the way per frame, not at once.
        let before = limiter.gain
        _ = limiter.apply(quiet)
        #expect(limiter.gain > before && limiter.gain < before + 0.06)
        for _ in 0..<200 { _ = limiter.apply(quiet) }
        #expect(limiter.gain > 0.999)

        // The extreme: Int32.min never traps.
        var extreme = MixLimiter()
        let out = extreme.apply([Int32.min, Int32.max, 0] + [Int32](repeating: 0, count: 957))
        #expect(out.count == 960)
    }

    // MARK: - Membership

    @Test("Packets from someone not in the mix are ignored; a removed participant is sent nothing more")
    func membership() throws {
        let rig = try MixerRig(remotes: ["ann", "ben", "cat"])
        try rig.mixer.addRemote("ann")
        #expect(rig.mixer.participants == ["ann", "ben", "cat"], "adding twice adds once")
        let encoder = try OpusEncoder()
        var mallory = ToneSource(hz: 900, amplitude: 0.5)
        for n in 0..<5 {
            let payload = try encoder.encode(mallory.read(count: Opus.frameSampleCount) ?? [])
            rig.mixer.receive(from: "mallory", sequence: UInt16(n), timestamp: UInt32(n * 960), payload: payload, now: Double(n) * 0.02)
        }
        #expect(rig.mixer.statistics(of: "mallory") == nil)
        let ticks = try rig.run(ticks: 5)
        #expect(ticks.allSatisfy { $0.outputs.isEmpty && $0.decodes == 0 })

        try rig.speak("ann", hz: 400)
        try rig.speak("ben", hz: 700)
        try rig.run(ticks: 5)
        #expect(rig.mixer.statistics(of: "ann")?.received == 5)
        rig.mixer.removeRemote("cat")
        #expect(rig.mixer.participants == ["ann", "ben"])
        let after = try rig.run(ticks: 5)
        #expect(after.allSatisfy { !$0.outputs.contains { $0.participant == "cat" } })
        #expect(after.allSatisfy { $0.encodes == 2 }, "no listener left: no shared encode")
    }
}

@Suite("Voice activity detector")
struct VoiceActivityDetectorTests {
    static func toneFrame(dBFS: Double, hz: Double = 440) -> [Int16] {
        // RMS of a sine is amplitude / √2.
        let amplitude = pow(10, dBFS / 20) * 2.0.squareRoot()
        return tone(hz, amplitude: amplitude, count: Opus.frameSampleCount)
    }

    static func noiseFrame(dBFS: Double, seed: UInt64) -> [Int16] {
        var random = SeededGenerator(seed: seed)
        // Uniform noise in ±a has an RMS of a / √3.
        let a = pow(10, dBFS / 20) * 32_768 * 3.0.squareRoot()
        return (0..<Opus.frameSampleCount).map { _ in Int16(Double.random(in: -a...a, using: &random).rounded()) }
    }

    static let silence = [Int16](repeating: 0, count: Opus.frameSampleCount)

    @Test("Levels: digital silence is −∞, a sine and noise measure what they were made at")
    func levels() {
        #expect(VoiceActivityDetector.level(of: Self.silence) == -.infinity)
        #expect(VoiceActivityDetector.level(of: []) == -.infinity)
        #expect(abs(VoiceActivityDetector.level(of: Self.toneFrame(dBFS: -20)) - -20) < 0.2)
        #expect(abs(VoiceActivityDetector.level(of: Self.noiseFrame(dBFS: -60, seed: 1)) - -60) < 1)
        #expect(abs(VoiceActivityDetector.level(of: [Int16](repeating: .max, count: 960))) < 0.01)
    }

    /// The detector's decision for each frame in turn.
    static func decisions(_ detector: inout VoiceActivityDetector, _ frames: [[Int16]]) -> [Bool] {
        frames.map { detector.isVoice($0) }
    }

    @Test("Silence and a quiet line (−60 dBFS noise) are not voice; a tone at −20 dBFS is")
    func voiceOrNot() {
        var detector = VoiceActivityDetector()
        #expect(detector.thresholdDBFS == -50 && detector.hangoverFrames == 15)
        let silent = Self.decisions(&detector, [[Int16]](repeating: Self.silence, count: 50))
        #expect(!silent.contains(true))
        let noise = Self.decisions(&detector, (0..<50).map { Self.noiseFrame(dBFS: -60, seed: UInt64($0)) })
        #expect(!noise.contains(true), "a quiet line is not voice")
        #expect(Self.decisions(&detector, [[]]) == [false])
        #expect(Self.decisions(&detector, [Self.toneFrame(dBFS: -20)]) == [true])

        // Either side of the −50 dBFS threshold.
        var fresh = VoiceActivityDetector()
        #expect(Self.decisions(&fresh, [Self.toneFrame(dBFS: -51), Self.toneFrame(dBFS: -49)]) == [false, true])
    }

    @Test("The hangover keeps sending for the configured frames after the voice stops, then stops")
    func hangover() {
        let voice = Self.toneFrame(dBFS: -20), softer = Self.toneFrame(dBFS: -30), line = Self.noiseFrame(dBFS: -60, seed: 9)
        var detector = VoiceActivityDetector(hangoverFrames: 3)
        #expect(Self.decisions(&detector, [voice] + [[Int16]](repeating: Self.silence, count: 5)) == [true, true, true, true, false, false])
        // Voice again restarts the hangover in full; a syllable break shorter than it is bridged.
        #expect(Self.decisions(&detector, [softer, Self.silence, softer, line, line, line, line]) == [true, true, true, true, true, true, false])

        var standard = VoiceActivityDetector()
        let after = Self.decisions(&standard, [voice] + [[Int16]](repeating: Self.silence, count: 20))
        #expect(after == [Bool](repeating: true, count: 16) + [Bool](repeating: false, count: 5), "300 ms of hangover")

        var none = VoiceActivityDetector(hangoverFrames: -4)
        #expect(none.hangoverFrames == 0)
        #expect(Self.decisions(&none, [voice, Self.silence]) == [true, false])
    }
}
