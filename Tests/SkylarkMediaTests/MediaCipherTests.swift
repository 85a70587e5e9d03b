import SkylarkCrypto
import SkylarkTestSupport
import Testing

@testable import SkylarkMedia

@Suite("Media encryption")
struct MediaCipherTests {
    static let secret = (0..<32).map { UInt8($0) }
    static let callID = Array("call-0123456789ab".utf8)

    static func pair() throws -> (caller: MediaCipher, callee: MediaCipher) {
        let keys = try MediaKeys.derive(sharedSecret: secret, callID: callID)
        return (MediaCipher(keys: keys, role: .caller), MediaCipher(keys: keys, role: .callee))
    }

    static func header(_ sequence: UInt16, ssrc: UInt32 = 0x1122_3344) -> RTPHeader {
        RTPHeader(sequenceNumber: sequence, timestamp: UInt32(sequence) &* 960, ssrc: ssrc)
    }

    @Test("Both directions round-trip; the header stays readable RTP, the payload does not")
    func roundTrip() throws {
        var (caller, callee) = try Self.pair()
        let payload = Array("twenty milliseconds of opus".utf8)
        let packet = try caller.seal(header: Self.header(7), payload: payload)
        #expect(packet.count == 12 + payload.count + MediaCipher.overhead)
        // A capture shows a normal RTP header…
        let (clear, offset) = try RTPHeader.decode(packet)
        #expect(clear == Self.header(7))
        #expect(offset == 12)
        // …and no plaintext.
        #expect(Array(packet[12..<(12 + payload.count)]) != payload)

        let opened = try callee.open(packet)
        #expect(opened.header == Self.header(7))
        #expect(opened.payload == payload)

        let answer = try callee.seal(header: Self.header(1000, ssrc: 9), payload: [1, 2, 3])
        #expect(try caller.open(answer).payload == [1, 2, 3])
        // An empty payload is still authenticated.
        let empty = try caller.seal(header: Self.header(8), payload: [])
        #expect(try callee.open(empty).payload == [])
    }

    @Test("A flipped bit anywhere — header, ciphertext or tag — is refused")
    func tamper() throws {
        var (caller, callee) = try Self.pair()
        let header = RTPHeader(sequenceNumber: 42, timestamp: 1234, ssrc: 77, csrcs: [5])
        let packet = try caller.seal(header: header, payload: Array(0..<24))
        for bit in 0..<(packet.count * 8) {
            var receiver = callee  // a fresh copy: no replay state from other attempts
            #expect(throws: MediaCipherError.self, "bit \(bit)") { try receiver.open(flipping(packet, bit: bit)) }
        }
        #expect(throws: MediaCipherError.self) { try callee.open(Array(packet.dropLast())) }
        #expect(throws: MediaCipherError.self) { try callee.open(Array(packet.prefix(20))) }
        // The untouched packet still opens.
        #expect(try callee.open(packet).payload == Array(0..<24))
    }

    @Test("A replayed packet is refused; one inside the window but not seen yet is accepted")
    func replay() throws {
        var (caller, callee) = try Self.pair()
        let packets = try (0..<10).map { try caller.seal(header: Self.header(UInt16($0)), payload: [UInt8($0)]) }
        for index in [0, 1, 2, 4, 5, 6, 7, 8, 9] { _ = try callee.open(packets[index]) }
        #expect(throws: MediaCipherError.replayed(ssrc: 0x1122_3344, index: 5)) { try callee.open(packets[5]) }
        #expect(throws: MediaCipherError.replayed(ssrc: 0x1122_3344, index: 9)) { try callee.open(packets[9]) }
        // Reordered, within the window: fine, once.
        #expect(try callee.open(packets[3]).payload == [3])
        #expect(throws: MediaCipherError.replayed(ssrc: 0x1122_3344, index: 3)) { try callee.open(packets[3]) }
    }

    @Test("A packet older than the 128-packet window is refused even if never seen")
    func tooOld() throws {
        var (caller, callee) = try Self.pair()
        let packets = try (0..<200).map { try caller.seal(header: Self.header(UInt16(1000 + $0)), payload: [0]) }
        for packet in packets.dropFirst() { _ = try callee.open(packet) }
        #expect(throws: MediaCipherError.tooOld(ssrc: 0x1122_3344, index: 1000, highest: 1199)) { try callee.open(packets[0]) }
        // 127 behind the newest is still inside.
        var fresh = try Self.pair().callee
        for packet in packets.suffix(128).dropFirst() { _ = try fresh.open(packet) }
        #expect(try fresh.open(packets[72]).payload == [0])
    }

    @Test("Sequence numbers wrap at 65 535 without breaking decryption, even when the first packets before the wrap are lost")
    func wrapAround() throws {
        var (caller, callee) = try Self.pair()
        var late = try Self.pair().callee
        for step in 0..<100 {
            let sequence = UInt16(truncatingIfNeeded: 65_500 + step)
            let packet = try caller.seal(header: Self.header(sequence), payload: [UInt8(step)])
            #expect(try callee.open(packet).payload == [UInt8(step)])
            // This receiver only starts hearing the stream after the wrap (rollover counter 1).
            if step >= 40 { #expect(try late.open(packet).payload == [UInt8(step)]) }
        }
    }

    @Test("The sender refuses to reuse a packet index (GCM nonce reuse)")
    func senderNeverReusesNonce() throws {
        var caller = try Self.pair().caller
        _ = try caller.seal(header: Self.header(10), payload: [1])
        #expect(throws: MediaCipherError.sequenceNotAdvancing(ssrc: 0x1122_3344, index: 10, last: 10)) {
            try caller.seal(header: Self.header(10), payload: [2])
        }
        #expect(throws: MediaCipherError.self) { try caller.seal(header: Self.header(9), payload: [2]) }
        // Another SSRC has its own index space.
        _ = try caller.seal(header: Self.header(10, ssrc: 5), payload: [1])
        #expect(throws: MediaCipherError.self) {
            try caller.seal(header: RTPHeader(sequenceNumber: 11, timestamp: 0, ssrc: 0x1122_3344, padding: true), payload: [1])
        }
    }

    @Test("Direction keys differ; a packet reflected back to its sender, or from another call, is refused")
    func directionsAndCalls() throws {
        let keys = try MediaKeys.derive(sharedSecret: Self.secret, callID: Self.callID)
        #expect(keys.callerToCallee.key != keys.calleeToCaller.key)
        #expect(keys.callerToCallee.salt != keys.calleeToCaller.salt)
        #expect(keys.callerToCallee.key.count == 32 && keys.callerToCallee.salt.count == 4)
        #expect(try MediaKeys.derive(sharedSecret: Self.secret, callID: Self.callID) == keys)
        let otherCall = try MediaKeys.derive(sharedSecret: Self.secret, callID: Array("another-call".utf8))
        #expect(otherCall.callerToCallee.key != keys.callerToCallee.key)
        #expect(!keys.callerToCallee.description.contains("\(keys.callerToCallee.key)"))

        var caller = MediaCipher(keys: keys, role: .caller)
        let packet = try caller.seal(header: Self.header(1), payload: [9, 9])
        #expect(throws: MediaCipherError.authenticationFailed) { try caller.open(packet) }
        var stranger = MediaCipher(keys: otherCall, role: .callee)
        #expect(throws: MediaCipherError.authenticationFailed) { try stranger.open(packet) }
    }

    @Test("Bad key material is refused")
    func badKeyMaterial() {
        #expect(throws: MediaCipherError.self) { try MediaKeys.derive(sharedSecret: Array(Self.secret.prefix(31)), callID: Self.callID) }
        #expect(throws: MediaCipherError.self) { try MediaKeys.derive(sharedSecret: Self.secret, callID: []) }
        #expect(throws: MediaCipherError.self) { try MediaKeys.Direction(key: [UInt8](repeating: 0, count: 32), salt: [1, 2, 3]) }
        #expect(throws: MediaCipherError.self) { try MediaKeys.Direction(key: [UInt8](repeating: 0, count: 16), salt: [1, 2, 3, 4]) }
    }

    @Test("Nonce layout: 00 00 | SSRC XOR salt | ROC | SEQ")
    func nonceLayout() {
        let nonce = MediaCipher.nonce(salt: [0x01, 0x02, 0x03, 0x04], ssrc: 0x1122_3344, index: 0xAABB_CCDD_EEFF)
        #expect(nonce == [0x00, 0x00, 0x10, 0x20, 0x30, 0x40, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0xFF])
        // Distinct (SSRC, index) pairs give distinct nonces under one salt.
        let salt: [UInt8] = [9, 8, 7, 6]
        var seen = Set<[UInt8]>()
        for ssrc: UInt32 in [0, 1, 0xFFFF_FFFF] {
            for index: UInt64 in [0, 1, 0xFFFF, 0x1_0000, (1 << 48) - 1] { seen.insert(MediaCipher.nonce(salt: salt, ssrc: ssrc, index: index)) }
        }
        #expect(seen.count == 15)
    }

    @Test("Replay window: fresh, duplicate, too old; jumps clear the history")
    func replayWindow() {
        var window = ReplayWindow()
        #expect(window.check(500) == .fresh)
        window.accept(500)
        #expect(window.check(500) == .duplicate)
        #expect(window.check(499) == .fresh)
        #expect(window.check(373) == .fresh)  // 127 behind
        #expect(window.check(372) == .tooOld)  // 128 behind
        window.accept(450)
        #expect(window.check(450) == .duplicate)
        window.accept(700)
        #expect(window.highest == 700)
        #expect(window.check(500) == .tooOld)
        #expect(window.check(699) == .fresh)
        window.accept(701)
        #expect(window.check(700) == .duplicate)
        window.accept(0)  // far below: ignored, never traps
        #expect(window.highest == 701)
    }
}
