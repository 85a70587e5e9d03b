/// CRC-32 with the IEEE 802.3 polynomial (reflected 0xEDB88320, initial and final value all ones):
/// the checksum zlib and Ethernet use, and the one STUN's FINGERPRINT is defined over
/// (RFC 5389 section 15.5). Written here because the only other CRC on the system would be zlib's,
/// and one table-driven loop is cheaper than a new system-library dependency.
enum CRC32 {
    private static let table: [UInt32] = (0..<256).map { index in
        var value = UInt32(index)
        for _ in 0..<8 {
            value = value & 1 == 1 ? (value >> 1) ^ 0xEDB8_8320 : value >> 1
        }
        return value
    }

    static func checksum(_ bytes: some Sequence<UInt8>) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc = (crc >> 8) ^ table[Int((crc ^ UInt32(byte)) & 0xFF)]
        }
        return crc ^ 0xFFFF_FFFF
    }
}
