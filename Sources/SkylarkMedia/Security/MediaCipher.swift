import SkylarkCrypto

/// Why a media packet was not sealed or not accepted. On receive, every case means "drop the
/// packet"; the cases exist so the adapter can count them separately (an attack looks
/// different from a reordering network).
public enum MediaCipherError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The clear RTP header did not parse.
    case malformed(RTPError)
    /// Too short to hold the 16-byte tag, or the P bit set (Skylark never pads: GCM needs no
    /// block alignment).
    case invalidPacket(String)
    /// The tag did not verify: a bit changed anywhere (header or payload), the wrong key, or
    /// the wrong direction.
    case authenticationFailed
    /// This packet (SSRC, index) was already accepted.
    case replayed(ssrc: UInt32, index: UInt64)
    /// Older than the replay window: it cannot be told from a replay any more.
    case tooOld(ssrc: UInt32, index: UInt64, highest: UInt64)
    /// The sender asked to seal an index it has already used (or an older one): that would
    /// reuse a GCM nonce under the same key, which leaks plaintext and the authentication key.
    case sequenceNotAdvancing(ssrc: UInt32, index: UInt64, last: UInt64)
    /// 2^48 packets sent under one key (178 000 years of 20 ms frames); rekey.
    case indexExhausted
    /// Keys, salts, secrets or call IDs of the wrong size.
    case invalidKeyMaterial(String)
    /// OpenSSL failed for a reason other than authentication (should not happen).
    case crypto(String)

    public var description: String {
        switch self {
        case let .malformed(error): return "media packet: \(error)"
        case let .invalidPacket(why): return "invalid media packet: \(why)"
        case .authenticationFailed: return "media packet failed authentication"
        case let .replayed(ssrc, index): return "media packet replayed (SSRC \(ssrc), index \(index))"
        case let .tooOld(ssrc, index, highest): return "media packet too old (SSRC \(ssrc), index \(index), newest \(highest))"
        case let .sequenceNotAdvancing(ssrc, index, last): return "refusing to seal SSRC \(ssrc) index \(index) after \(last): nonce reuse"
        case .indexExhausted: return "media packet index exhausted; rekey"
        case let .invalidKeyMaterial(why): return "invalid media key material: \(why)"
        case let .crypto(why): return "media crypto failure: \(why)"
        }
    }
}

/// Per-packet media encryption for one call leg, both directions: AES-256-GCM over the RTP
/// payload, with the RTP header in clear and authenticated.
///
/// Packet layout (what goes into the UDP datagram or relay frame):
///
/// ```
/// +----------------------+--------------------------------+-----------+
/// | RTP header (clear)   | Opus payload, AES-256-GCM       | GCM tag   |
/// | 12 + 4·CC (+ ext) B  | ciphertext, same length         | 16 bytes  |
/// +----------------------+--------------------------------+-----------+
///   └── associated data ──┘
/// ```
///
/// The header stays readable so that relays can forward and captures can decode the stream as
/// RTP (sequence, timestamps, loss, jitter all visible in Wireshark) while the audio is not;
/// being the associated data, not one bit of it can be changed undetected.
///
/// **Nonce** (12 bytes), in the style of SRTP-GCM (RFC 7714 §8.1) with a 4-byte salt:
///
/// ```
///   0    1    2    3    4    5    6    7    8    9   10   11
/// +----+----+----+----+----+----+----+----+----+----+----+----+
/// | 00 | 00 |  SSRC XOR salt     |   ROC (32 bits)   |   SEQ   |
/// +----+----+----+----+----+----+----+----+----+----+----+----+
/// ```
///
/// where ROC ‖ SEQ is the 48-bit packet index (rollover counter << 16 | sequence number), all
/// big-endian. Uniqueness: within one direction's key, (SSRC, index) never repeats — the
/// sender refuses to reuse an index (`sequenceNotAdvancing`) — and XOR with a constant salt is a
/// bijection, so nonces never repeat. The salt keeps the nonces of a capture unpredictable from
/// its clear headers (RFC 7714's reason for salting too). Which key seals which direction is
/// fixed by the role, so the two sides never share a key.
///
/// **Replay**: the receiver keeps a `ReplayWindow` (128 packets) per SSRC. The index is
/// estimated from the clear sequence number (RFC 3711 §3.3.1), the window consulted before
/// decryption (cheap refusal) and moved only after the tag verified.
///
/// A value type: the state is the send indices and the receive windows, nothing else.
public struct MediaCipher: Sendable {
    public enum Role: Sendable, Equatable {
        case caller
        case callee
    }

    /// Bytes added to each payload (the GCM tag).
    public static let overhead = AESGCM.tagByteCount

    private let sendKey: MediaKeys.Direction
    private let receiveKey: MediaKeys.Direction
    /// The keys expanded once in OpenSSL contexts (nil only if OpenSSL could not allocate one:
    /// then each packet expands its key again).
    private let sender: AESGCMKey?
    private let receiver: AESGCMKey?
    /// The last index sealed, per SSRC we send with.
    private var lastSent: [UInt32: UInt64] = [:]
    /// The replay window per SSRC we receive from. Entries are created only by packets that
    /// authenticated, so only the peer can add them.
    private var windows: [UInt32: ReplayWindow] = [:]

    public init(keys: MediaKeys, role: Role) {
        switch role {
        case .caller: (sendKey, receiveKey) = (keys.callerToCallee, keys.calleeToCaller)
        case .callee: (sendKey, receiveKey) = (keys.calleeToCaller, keys.callerToCallee)
        }
        sender = try? AESGCMKey(sendKey.key)
        receiver = try? AESGCMKey(receiveKey.key)
    }

    /// Seals one RTP packet. Sequence numbers must advance (wrapping at 65 535 is fine); the
    /// rollover counter is tracked here.
    public mutating func seal(header: RTPHeader, payload: [UInt8]) throws(MediaCipherError) -> [UInt8] {
        guard !header.padding else { throw .invalidPacket("padding is not used with AES-GCM") }
        let headerBytes: [UInt8]
        do { headerBytes = try header.encode() } catch { throw .malformed(error) }
        let index: UInt64
        if let last = lastSent[header.ssrc] {
            index = RTPSequence.extend(header.sequenceNumber, near: last)
            guard index > last else { throw .sequenceNotAdvancing(ssrc: header.ssrc, index: index, last: last) }
        } else {
            // A stream's rollover counter starts at zero (as in SRTP), whatever its first sequence.
            index = UInt64(header.sequenceNumber)
        }
        guard index < 1 << 48 else { throw .indexExhausted }
        let sealed: [UInt8]
        do {
            let nonce = Self.nonce(salt: sendKey.salt, ssrc: header.ssrc, index: index)
            sealed =
                try sender?.seal(payload, nonce: nonce, authenticating: headerBytes)
                ?? AESGCM.seal(payload, key: sendKey.key, nonce: nonce, authenticating: headerBytes)
        } catch {
            throw .crypto(String(describing: error))
        }
        lastSent[header.ssrc] = index
        return headerBytes + sealed
    }

    /// Opens one packet from the peer: checks the header, the replay window and the tag, and
    /// returns the header and the plaintext payload.
    public mutating func open(_ packet: [UInt8]) throws(MediaCipherError) -> (header: RTPHeader, payload: [UInt8]) {
        let header: RTPHeader, payloadOffset: Int
        do { (header, payloadOffset) = try RTPHeader.decode(packet) } catch { throw .malformed(error) }
        guard !header.padding else { throw .invalidPacket("P bit set") }
        guard packet.count - payloadOffset >= AESGCM.tagByteCount else {
            throw .invalidPacket("\(packet.count - payloadOffset) bytes after the header, less than the \(AESGCM.tagByteCount)-byte tag")
        }
        let window = windows[header.ssrc] ?? ReplayWindow()
        let candidates: [UInt64]
        if let highest = window.highest {
            let index = RTPSequence.extend(header.sequenceNumber, near: highest)
            switch window.check(index) {
            case .fresh: break
            case .duplicate: throw .replayed(ssrc: header.ssrc, index: index)
            case .tooOld: throw .tooOld(ssrc: header.ssrc, index: index, highest: highest)
            }
            candidates = [index]
        } else {
            // The first packet we see from this SSRC: the sender started its counter at zero,
            // but if its first packets were lost across a sequence wrap, ours is already in
            // cycle one. Trying both costs one extra decryption for a bogus first packet and
            // saves the call from being undecryptable forever.
            let sequence = UInt64(header.sequenceNumber)
            candidates = [sequence, sequence + 0x1_0000]
        }
        let aad = Array(packet[0..<payloadOffset])
        let sealed = Array(packet[payloadOffset...])
        for index in candidates {
            let nonce = Self.nonce(salt: receiveKey.salt, ssrc: header.ssrc, index: index)
            do {
                let payload =
                    try receiver?.open(sealed, nonce: nonce, authenticating: aad)
                    ?? AESGCM.open(sealed, key: receiveKey.key, nonce: nonce, authenticating: aad)
                var updated = window
                updated.accept(index)
                windows[header.ssrc] = updated
                return (header, payload)
            } catch let error as CryptoError where error == .authenticationFailed {
                continue
            } catch {
                throw .crypto(String(describing: error))
            }
        }
        throw .authenticationFailed
    }

    /// The 12-byte GCM nonce for a packet (layout in the type's documentation).
    public static func nonce(salt: [UInt8], ssrc: UInt32, index: UInt64) -> [UInt8] {
        precondition(salt.count == MediaKeys.saltByteCount, "MediaKeys.Direction guarantees a 4-byte salt")
        var nonce = [UInt8](repeating: 0, count: AESGCM.nonceByteCount)
        nonce[2] = UInt8(truncatingIfNeeded: ssrc >> 24) ^ salt[0]
        nonce[3] = UInt8(truncatingIfNeeded: ssrc >> 16) ^ salt[1]
        nonce[4] = UInt8(truncatingIfNeeded: ssrc >> 8) ^ salt[2]
        nonce[5] = UInt8(truncatingIfNeeded: ssrc) ^ salt[3]
        for byte in 0..<6 {
            nonce[6 + byte] = UInt8(truncatingIfNeeded: index >> (8 * (5 - byte)))
        }
        return nonce
    }
}
