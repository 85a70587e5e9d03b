/// 16-bit RTP sequence numbers wrap every 65 536 packets (22 minutes at 50 packets/s), so
/// anything that orders packets over a whole call works on an *extended* sequence number:
/// the 16-bit value plus a count of wraps above it (SRTP's "packet index", RFC 3711 §3.3.1).
public enum RTPSequence {
    /// The extended number for `sequence` closest to `reference` (the highest extended number
    /// seen so far): a sequence number more than half the space (32 768) below the reference's
    /// low 16 bits is taken as having wrapped into the next cycle; one more than half above, as
    /// a late packet from the previous cycle. This is RFC 3711's ROC estimate in one function.
    /// Never goes below zero: nothing precedes the first cycle.
    public static func extend(_ sequence: UInt16, near reference: UInt64) -> UInt64 {
        let sameCycle = reference & ~0xFFFF | UInt64(sequence)
        if sameCycle > reference, sameCycle - reference > 0x8000, sameCycle >= 0x1_0000 {
            return sameCycle - 0x1_0000
        }
        if sameCycle < reference, reference - sameCycle > 0x8000 {
            let (next, overflow) = sameCycle.addingReportingOverflow(0x1_0000)
            return overflow ? sameCycle : next
        }
        return sameCycle
    }

    /// The same for 32-bit RTP timestamps (they wrap every 24.8 hours at 48 kHz); the first one
    /// (no reference yet) starts one cycle up, so a packet reordered before it still extends.
    public static func extend(timestamp: UInt32, near reference: UInt64?) -> UInt64 {
        guard let reference else { return UInt64(timestamp) + (1 << 32) }
        let sameCycle = reference & ~0xFFFF_FFFF | UInt64(timestamp)
        if sameCycle > reference, sameCycle - reference > 0x8000_0000, sameCycle >= 1 << 32 { return sameCycle - (1 << 32) }
        if sameCycle < reference, reference - sameCycle > 0x8000_0000 {
            let (next, overflow) = sameCycle.addingReportingOverflow(1 << 32)
            return overflow ? sameCycle : next
        }
        return sameCycle
    }
}
