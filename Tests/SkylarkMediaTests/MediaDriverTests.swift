import SkylarkTestSupport
import Testing

@testable import SkylarkMedia

/// The call and mixer media drivers on a virtual clock: no sockets, no sleeping; time is what
/// the test says it is, so late ticks, stalls and an hour-long call cost nothing to test.
@Suite struct MediaDriverTests {
    /// Keeps what it is given, for the test to read.
    final class Recorder: AudioSink {
        var samples: [Int16] = []
        func write(_ samples: [Int16]) throws(MediaError) { self.samples += samples }
    }

    static let secret = [UInt8](repeating: 0x5A, count: 32)
    static let callID = [UInt8](repeating: 0x11, count: 16)

    static func pair(caller tone: Double, callee other: Double, now: Double) throws -> (CallMedia, CallMedia, Recorder, Recorder) {
        let (heardByCaller, heardByCallee) = (Recorder(), Recorder())
        let caller = try CallMedia(
            sharedSecret: secret, callID: callID, role: .caller, ssrc: 1, peerSSRC: 2, source: ToneSource(hz: tone, amplitude: 0.3),
            sink: heardByCaller, sequence: 65_500, timestamp: 4_294_960_000, now: now)
        let callee = try CallMedia(
            sharedSecret: secret, callID: callID, role: .callee, ssrc: 2, peerSSRC: 1, source: ToneSource(hz: other, amplitude: 0.3),
            sink: heardByCallee, now: now)
        return (caller, callee, heardByCaller, heardByCallee)
    }

    /// Runs both ends every `step` seconds from `start` for `duration`, the network delaying each
    /// packet by `delay`.
    static func run(_ a: CallMedia, _ b: CallMedia, from start: Double, for duration: Double, step: Double = 0.02, delay: Double = 0.03) {
        var inFlight: [(at: Double, to: CallMedia, packet: [UInt8])] = []
        var now = start
        while now <= start + duration {
            for packet in a.packetsDue(now: now) { inFlight.append((now + delay, b, packet)) }
            for packet in b.packetsDue(now: now) { inFlight.append((now + delay, a, packet)) }
            for arrival in inFlight where arrival.at <= now { _ = arrival.to.receive(arrival.packet, now: now) }
            inFlight.removeAll { $0.at <= now }
            a.playOut(now: now)
            b.playOut(now: now)
            now += step
        }
    }

    @Test func aCallCarriesEachSidesVoiceToTheOtherInRealTime() throws {
        let (caller, callee, heardByCaller, heardByCallee) = try Self.pair(caller: 440, callee: 880, now: 1_000)
        #expect(callee.statistics(now: 1_000).playoutDriftPPM == nil, "no drift figure before any audio")
        Self.run(caller, callee, from: 1_000, for: 3)
        let sent = try #require(caller.statistics(now: 1_003).packetsSent)
        #expect((150...151).contains(sent), "50 packets a second: \(sent)")
        // Every frame due is played (silence while the buffer fills): the recording keeps time.
        let played = Double(heardByCallee.samples.count) / Double(Opus.sampleRate)
        #expect(abs(played - 3) < 0.1, "the callee's recording lasts the call: \(played) s")
        let tail = Array(heardByCallee.samples.suffix(Opus.sampleRate))
        let heard = try #require(AudioAnalysis.dominantFrequency(of: tail))
        #expect(abs(heard - 440) < 5, "the callee hears the caller's 440 Hz: \(heard)")
        let back = try #require(AudioAnalysis.dominantFrequency(of: Array(heardByCaller.samples.suffix(Opus.sampleRate))))
        #expect(abs(back - 880) < 5, "and the caller the callee's 880 Hz: \(back)")
        #expect(callee.statistics(now: 1_003).lossPercent ?? 0 == 0, "nothing lost, across the RTP sequence wrap")
        // The playout's drift correction is reported once audio plays (its value is DriftTests'
        // concern: it also trims the start-up excess over the buffer's target).
        #expect(callee.statistics(now: 1_003).playoutDriftPPM != nil, "a drift figure once audio plays")
    }

    @Test func lateTicksCatchUpAndAStallJumpsInsteadOfBursting() throws {
        let (caller, _, _, _) = try Self.pair(caller: 440, callee: 880, now: 0)
        var sent = 0
        // Ticks up to 180 ms late: every frame goes out.
        for now in [0.0, 0.07, 0.09, 0.2, 0.35, 0.5, 0.61, 0.79, 0.95, 1.0] { sent += caller.packetsDue(now: now).count }
        #expect(sent == 51, "every 20 ms frame up to 1 s, however the ticks fell: \(sent)")
        // More than `maximumCatchUp` frames behind (a stalled process): the clock jumps.
        let afterStall = caller.packetsDue(now: 6).count
        #expect(afterStall == 1, "a five-second stall sends the current frame, not a burst of 250: \(afterStall)")
        #expect(caller.packetsDue(now: 6.02).count == 1, "and the clock goes on from there")
    }

    @Test func packetsThatAreNotThePeersOrAreReplayedAreRefused() throws {
        let (caller, callee, _, _) = try Self.pair(caller: 440, callee: 880, now: 0)
        let packet = try #require(caller.packetsDue(now: 0).first)
        #expect(callee.receive(packet, now: 0.03))
        #expect(!callee.receive(packet, now: 0.04), "a replay is refused")
        var forged = packet
        forged[forged.count - 1] ^= 1
        #expect(!callee.receive(forged, now: 0.05), "a forged packet is refused")
        #expect(!caller.receive(packet, now: 0.05), "our own packets are not the peer's")
        let stranger = try CallMedia(
            sharedSecret: [UInt8](repeating: 1, count: 32), callID: Self.callID, role: .caller, ssrc: 1, peerSSRC: 2,
            source: SilenceSource(), sink: nil, now: 0)
        #expect(!callee.receive(try #require(stranger.packetsDue(now: 0.02).last), now: 0.06), "other keys, same SSRC: refused")
    }

    @Test func theMixerSendsEachParticipantEveryoneButThemselves() throws {
        let mixer = try MixerMedia<Int>(localName: nil, source: nil, sink: nil, now: 0)
        let tones = [440.0, 550.0, 660.0]
        var participants: [CallMedia] = []
        var recorders: [Recorder] = []
        for (index, hz) in tones.enumerated() {
            let callID = [UInt8](repeating: UInt8(index + 1), count: 16)
            let recorder = Recorder()
            participants.append(
                try CallMedia(
                    sharedSecret: Self.secret, callID: callID, role: .caller, ssrc: UInt32(10 + index), peerSSRC: UInt32(20 + index),
                    source: ToneSource(hz: hz, amplitude: 0.3), sink: recorder, conferenceLeg: true, now: 0))
            recorders.append(recorder)
            try mixer.addLeg(index, participant: "p\(index)", sharedSecret: Self.secret, callID: callID, ssrc: UInt32(20 + index), peerSSRC: UInt32(10 + index))
        }
        var now = 0.0
        while now <= 4 {
            for (index, participant) in participants.enumerated() {
                for packet in participant.packetsDue(now: now) { #expect(mixer.receive(packet, leg: index, now: now)) }
            }
            for (leg, packet) in mixer.tick(now: now) { _ = participants[leg].receive(packet, now: now) }
            for participant in participants { participant.playOut(now: now) }
            now += 0.02
        }
        for (index, recorder) in recorders.enumerated() {
            let tail = Array(recorder.samples.suffix(Opus.sampleRate))
            let own = AudioAnalysis.power(of: tail, at: tones[index])
            for (other, hz) in tones.enumerated() where other != index {
                let heard = AudioAnalysis.power(of: tail, at: hz)
                #expect(heard > 20 * max(own, 1), "p\(index) hears \(hz) Hz (\(heard)) far above its own \(tones[index]) Hz (\(own))")
            }
        }
        #expect(mixer.legStatistics(0)?.received ?? 0 > 150)
        #expect(mixer.leg(for: try #require(participants[1].packetsDue(now: now).first)) == 1, "packets are told apart by SSRC")
    }
}
