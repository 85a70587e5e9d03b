import Foundation
import SkylarkMedia
import Testing

@testable import SkylarkAudio

/// speexdsp's echo canceller as the call path drives it: the far end's voice goes to the speaker
/// (`played`), comes back into the microphone 40 ms later and 6 dB down (the lab's echo path),
/// and `captured` must take it out — while the near talker's own voice passes.
@Suite struct VoiceProcessingTests {
    static let frame = 960

    /// Deterministic noise with a speech-like spread of frequencies (what an echo canceller adapts on).
    struct Noise {
        var state: UInt64
        mutating func frame(amplitude: Double) -> [Int16] {
            (0..<VoiceProcessingTests.frame).map { _ in
                state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                let unit = Double(Int64(bitPattern: state) >> 11) / Double(1 << 52)
                return Int16(clamping: Int(unit * amplitude * Double(Int16.max)))
            }
        }
    }

    static func energy(_ frames: [[Int16]]) -> Double {
        frames.reduce(0.0) { sum, frame in sum + frame.reduce(0.0) { $0 + Double($1) * Double($1) } }
    }

    /// Runs `seconds` of far-end noise through the echo path; returns what the microphone sent,
    /// frame by frame, and the echo as it arrived.
    static func run(_ settings: VoiceProcessing, seconds: Int, nearTalker: Bool = false) -> (sent: [[Int16]], echo: [[Int16]], near: [[Int16]]) {
        let processor = VoiceProcessor(settings, frameSamples: frame, sampleRate: 48_000)
        var far = Noise(state: 7)
        var nearVoice = ToneSource(hz: 660, amplitude: 0.2)
        let delay = 48_000 * 40 / 1000
        var line = [Int16](repeating: 0, count: delay)
        var sent: [[Int16]] = []
        var echoes: [[Int16]] = []
        var nears: [[Int16]] = []
        for _ in 0..<(seconds * 50) {
            let played = far.frame(amplitude: 0.3)
            processor?.played(played)
            line += played.map { $0 / 2 }  // 6 dB down
            let echo = Array(line.prefix(frame))
            line.removeFirst(frame)
            let near = nearTalker ? nearVoice.nextFrame()! : [Int16](repeating: 0, count: frame)
            let microphone = zip(echo, near).map { Int16(clamping: Int($0) + Int($1)) }
            sent.append(processor?.captured(microphone) ?? microphone)
            echoes.append(echo)
            nears.append(near)
        }
        return (sent, echoes, nears)
    }

    @Test func theEchoOfTheFarEndIsRemovedFromTheMicrophone() throws {
        let settings = VoiceProcessing(echoCancellation: true, noiseSuppression: false, gainControl: false)
        let (sent, echo, _) = Self.run(settings, seconds: 8)
        // After 4 s to converge, over the last 4 s: echo return loss enhancement.
        let erle = 10 * log10(Self.energy(Array(echo.suffix(200))) / max(Self.energy(Array(sent.suffix(200))), 1))
        print("ERLE \(erle) dB")
        #expect(erle >= 20, "ERLE \(erle) dB")
    }

    @Test func withTheCancellerOffTheEchoGoesThrough() throws {
        let (sent, echo, _) = Self.run(VoiceProcessing(echoCancellation: false, noiseSuppression: false, gainControl: false), seconds: 2)
        #expect(sent == echo)
    }

    @Test func doubleTalkKeepsTheNearVoice() throws {
        let settings = VoiceProcessing(echoCancellation: true, noiseSuppression: false, gainControl: false)
        let (sent, _, near) = Self.run(settings, seconds: 8, nearTalker: true)
        let tail = Array(sent.suffix(200)).flatMap { $0 }
        let nearTail = Array(near.suffix(200)).flatMap { $0 }
        let kept = AudioAnalysis.power(of: tail, at: 660) / AudioAnalysis.power(of: nearTail, at: 660)
        print("near voice kept \(10 * log10(kept)) dB")
        #expect(10 * log10(kept) > -6, "near voice \(10 * log10(kept)) dB")
    }

    /// The device threads as a sound server drives them: the speaker's 60 ms buffer refills three
    /// blocks at once while the microphone delivers one block every 20 ms; the echo reaches the microphone 100 ms after a block is handed to the speaker
    /// (its buffer, then the room). `silentSpan`: blocks, from the middle, during which the
    /// speaker plays nothing at all (its device went away).
    static func runBursty(seconds: Int, silentSpan: Int = 0) -> (erle: Double, realignments: Int) {
        let settings = VoiceProcessing(echoCancellation: true, noiseSuppression: false, gainControl: false)
        let processor = VoiceProcessor(settings, frameSamples: frame, sampleRate: 48_000)!
        var far = Noise(state: 11)
        let delay = 48_000 / 10
        var playedSamples: [Int16] = []
        var captured = 0
        var echoes: [[Int16]] = [], sent: [[Int16]] = []
        let blocks = seconds * 50
        let silentStart = blocks / 2 - silentSpan / 2
        for block in 0..<blocks {
            // Every third tick the speaker takes three blocks at once.
            let silent = (silentStart..<silentStart + silentSpan).contains(block)
            if block % 3 == 0, !silent {
                for _ in 0..<3 {
                    let played = far.frame(amplitude: 0.3)
                    processor.played(played)
                    playedSamples += played
                }
            } else if silent, block % 3 == 0 {
                playedSamples += [Int16](repeating: 0, count: 3 * frame)
            }
            let microphone = (0..<frame).map { index -> Int16 in
                let source = captured + index - delay
                return source >= 0 && source < playedSamples.count ? playedSamples[source] / 2 : 0
            }
            captured += frame
            sent.append(processor.captured(microphone))
            echoes.append(microphone)
        }
        let erle = 10 * log10(energy(Array(echoes.suffix(150))) / max(energy(Array(sent.suffix(150))), 1))
        return (erle, processor.realignments)
    }

    @Test func aSpeakerThatWritesInBurstsIsStillCancelledAtOneAlignment() {
        let (erle, realignments) = Self.runBursty(seconds: 8)
        #expect(erle >= 20, "ERLE \(erle) dB")
        #expect(realignments == 1, "the reference was realigned \(realignments) times")
    }

    @Test func aSpeakerThatStopsAndComesBackIsRealignedAndCancelledAgain() {
        let (erle, realignments) = Self.runBursty(seconds: 10, silentSpan: 30)
        #expect(realignments == 2, "aligned when it started and again when it came back: \(realignments)")
        #expect(erle >= 20, "ERLE \(erle) dB over the last 3 s")
    }
}
