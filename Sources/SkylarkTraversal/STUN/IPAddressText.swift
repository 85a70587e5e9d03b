/// Numeric IP addresses as text and as bytes, without the C resolver (no sockets in the cores).
/// IPv4 is dotted decimal; IPv6 is written the RFC 5952 way (lower case, no leading zeros, the
/// longest run of two or more zero groups shortened to "::", IPv4-mapped addresses as
/// ::ffff:a.b.c.d), so that one address always has one spelling and can be compared as text.
public enum IPAddressText {
    /// The 4 (IPv4) or 16 (IPv6) bytes of a numeric address, or nil if `text` is not one
    /// (host names, zone ids such as fe80::1%eth0, and brackets are not accepted).
    public static func bytes(of text: String) -> [UInt8]? {
        if text.contains(":") { return ipv6Bytes(Substring(text)) }
        return ipv4Bytes(Substring(text))
    }

    /// The text form of 4 or 16 address bytes; nil for any other count.
    public static func text(of bytes: [UInt8]) -> String? {
        switch bytes.count {
        case 4: return bytes.map(String.init).joined(separator: ".")
        case 16: return ipv6Text(bytes)
        default: return nil
        }
    }

    /// The one spelling of a numeric address ("2001:DB8:0::1" -> "2001:db8::1"), or nil when
    /// `text` is not a numeric address.
    public static func canonical(_ text: String) -> String? {
        bytes(of: text).flatMap(text(of:))
    }

    private static func ipv4Bytes(_ text: Substring) -> [UInt8]? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var result: [UInt8] = []
        for part in parts {
            guard (1...3).contains(part.count), part.allSatisfy({ $0.isASCII && $0.isNumber }),
                let value = UInt8(part)
            else { return nil }
            result.append(value)
        }
        return result
    }

    private static func ipv6Bytes(_ text: Substring) -> [UInt8]? {
        // At most one "::"; it stands for as many zero groups as the others leave room for.
        let halves = text.split(separator: "::", maxSplits: 2, omittingEmptySubsequences: false)
        guard halves.count <= 2 else { return nil }
        guard let head = groups(halves[0], allowIPv4Tail: halves.count == 1) else { return nil }
        if halves.count == 1 {
            return head.count == 16 ? head : nil
        }
        guard let tail = groups(halves[1], allowIPv4Tail: true), head.count + tail.count <= 14 else { return nil }
        return head + [UInt8](repeating: 0, count: 16 - head.count - tail.count) + tail
    }

    /// The bytes of colon-separated hex groups; the last group may be a dotted IPv4 address.
    private static func groups(_ text: Substring, allowIPv4Tail: Bool) -> [UInt8]? {
        if text.isEmpty { return [] }
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        var result: [UInt8] = []
        for (index, part) in parts.enumerated() {
            if index == parts.count - 1, allowIPv4Tail, part.contains(".") {
                guard let v4 = ipv4Bytes(part) else { return nil }
                result += v4
            } else {
                guard (1...4).contains(part.count), part.allSatisfy(\.isHexDigit), part.allSatisfy(\.isASCII),
                    let value = UInt16(part, radix: 16)
                else { return nil }
                result += [UInt8(value >> 8), UInt8(value & 0xFF)]
            }
        }
        return result.count <= 16 ? result : nil
    }

    private static func ipv6Text(_ bytes: [UInt8]) -> String {
        if bytes[0..<10].allSatisfy({ $0 == 0 }), bytes[10] == 0xFF, bytes[11] == 0xFF {
            return "::ffff:" + bytes[12..<16].map(String.init).joined(separator: ".")
        }
        let groups = (0..<8).map { UInt16(bytes[2 * $0]) << 8 | UInt16(bytes[2 * $0 + 1]) }
        // The longest run of zero groups (the first of equal runs), if it is at least two long.
        var bestStart = -1, bestLength = 0, runStart = -1
        for index in 0...8 {
            if index < 8, groups[index] == 0 {
                if runStart < 0 { runStart = index }
            } else if runStart >= 0 {
                if index - runStart > bestLength { bestStart = runStart; bestLength = index - runStart }
                runStart = -1
            }
        }
        let hex = groups.map { String($0, radix: 16) }
        guard bestLength >= 2 else { return hex.joined(separator: ":") }
        let before = hex[0..<bestStart].joined(separator: ":")
        let after = hex[(bestStart + bestLength)...].joined(separator: ":")
        return before + "::" + after
    }
}
