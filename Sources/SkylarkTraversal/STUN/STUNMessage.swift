import SkylarkWire

/// Why bytes are not a STUN message, or why an attribute cannot be read or written.
public enum STUNError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Fewer than the 20 bytes of a header.
    case tooShort(count: Int)
    /// The top two bits are not zero or the magic cookie is wrong: some other protocol
    /// (or RFC 3489 STUN, which had no cookie).
    case notSTUN
    /// The header's length field disagrees with the bytes that follow, or is not a multiple of 4.
    case badLength(declared: Int, available: Int)
    /// An attribute's declared length (with its padding) runs past the end of the message.
    case truncatedAttribute(type: UInt16, offset: Int)
    /// Attributes follow FINGERPRINT, which must be the last one.
    case fingerprintNotLast
    /// The FINGERPRINT does not match the bytes before it: damaged, or not STUN after all.
    case badFingerprint
    /// An attribute's value does not have the layout its type requires.
    case malformedAttribute(type: UInt16, reason: String)
    /// An address attribute's family is neither IPv4 (1) nor IPv6 (2).
    case unsupportedAddressFamily(UInt8)
    /// A transport address whose host is not a numeric IP address (STUN carries no names),
    /// or whose port is out of range.
    case notAnIPAddress(String)

    public var description: String {
        switch self {
        case let .tooShort(count): return "STUN: \(count) bytes is shorter than a header"
        case .notSTUN: return "not a STUN message (top bits or magic cookie)"
        case let .badLength(declared, available):
            return "STUN: length field says \(declared) bytes, \(available) follow the header"
        case let .truncatedAttribute(type, offset):
            return "STUN: attribute 0x\(String(type, radix: 16)) at offset \(offset) runs past the end"
        case .fingerprintNotLast: return "STUN: FINGERPRINT is not the last attribute"
        case .badFingerprint: return "STUN: FINGERPRINT does not match"
        case let .malformedAttribute(type, reason): return "STUN: attribute 0x\(String(type, radix: 16)): \(reason)"
        case let .unsupportedAddressFamily(family): return "STUN: address family \(family) is not IPv4 or IPv6"
        case let .notAnIPAddress(text): return "STUN: '\(text)' is not a numeric IP address and port"
        }
    }
}

/// One STUN message (RFC 5389 / RFC 8489 wire format): a 20-byte header — message type (class and
/// method), length, magic cookie 0x2112A442, 96-bit transaction id — then TLV attributes padded to
/// 4 bytes. Attributes are kept raw (type and value) so unknown ones survive; typed readers and
/// writers exist for the ones Skylark uses.
///
/// FINGERPRINT is not kept in `attributes`: `decode` checks it and sets `hasFingerprint`, and
/// `encoded()` computes a fresh one when `hasFingerprint` is true, so it can never be stale.
public struct STUNMessage: Sendable, Equatable {
    public static let magicCookie: UInt32 = 0x2112_A442
    public static let headerLength = 20
    public static let transactionIDLength = 12
    /// XORed into the CRC so a FINGERPRINT also tells STUN from other protocols that use CRC-32.
    static let fingerprintXOR: UInt32 = 0x5354_554E

    /// The two class bits of the message type.
    public enum MessageClass: UInt8, Sendable, CaseIterable {
        case request = 0b00
        case indication = 0b01
        case successResponse = 0b10
        case errorResponse = 0b11
    }

    /// The 12-bit method of the message type.
    public struct Method: Hashable, Sendable, CustomStringConvertible {
        public let rawValue: UInt16

        /// `rawValue` must fit in 12 bits.
        public init(_ rawValue: UInt16) {
            precondition(rawValue <= 0x0FFF, "a STUN method has 12 bits")
            self.rawValue = rawValue
        }

        public static let binding = Method(0x001)

        public var description: String { self == .binding ? "Binding" : "method 0x\(String(rawValue, radix: 16))" }
    }

    public struct AttributeType: Hashable, Sendable, CustomStringConvertible {
        public let rawValue: UInt16

        public init(_ rawValue: UInt16) { self.rawValue = rawValue }

        public static let mappedAddress = AttributeType(0x0001)
        public static let username = AttributeType(0x0006)
        public static let messageIntegrity = AttributeType(0x0008)
        public static let errorCode = AttributeType(0x0009)
        public static let unknownAttributes = AttributeType(0x000A)
        public static let realm = AttributeType(0x0014)
        public static let nonce = AttributeType(0x0015)
        public static let messageIntegritySHA256 = AttributeType(0x001C)
        public static let passwordAlgorithm = AttributeType(0x001D)
        public static let userhash = AttributeType(0x001E)
        public static let xorMappedAddress = AttributeType(0x0020)
        public static let passwordAlgorithms = AttributeType(0x8002)
        public static let alternateDomain = AttributeType(0x8003)
        public static let software = AttributeType(0x8022)
        public static let alternateServer = AttributeType(0x8023)
        public static let fingerprint = AttributeType(0x8028)

        /// Types below 0x8000 must be understood by the receiver; others may be ignored.
        public var isComprehensionRequired: Bool { rawValue < 0x8000 }

        public var description: String { "0x" + String(rawValue, radix: 16) }
    }

    public struct Attribute: Sendable, Equatable {
        public var type: AttributeType
        /// The value without padding.
        public var value: [UInt8]

        public init(type: AttributeType, value: [UInt8]) {
            self.type = type
            self.value = value
        }
    }

    /// An ERROR-CODE attribute: a code from 300 to 699 and a short reason phrase.
    public struct ErrorCode: Sendable, Equatable {
        public var code: Int
        public var reason: String

        public init(code: Int, reason: String) {
            self.code = code
            self.reason = reason
        }

        public static let badRequest = 400
        public static let unknownAttribute = 420
    }

    public var messageClass: MessageClass
    public var method: Method
    /// Always 12 bytes.
    public private(set) var transactionID: [UInt8]
    public var attributes: [Attribute]
    /// Decoded: the message carried a FINGERPRINT, and it matched. Encoding: append one.
    public var hasFingerprint: Bool

    /// `transactionID` must be 12 bytes (a programming error otherwise).
    public init(
        messageClass: MessageClass, method: Method, transactionID: [UInt8],
        attributes: [Attribute] = [], hasFingerprint: Bool = false
    ) {
        precondition(transactionID.count == Self.transactionIDLength, "a STUN transaction id is 12 bytes")
        self.messageClass = messageClass
        self.method = method
        self.transactionID = transactionID
        self.attributes = attributes
        self.hasFingerprint = hasFingerprint
    }

    // MARK: - Building

    /// A Binding request with a FINGERPRINT; `transactionID` (12 bytes) comes from the caller so
    /// that tests are deterministic — use `randomTransactionID(using:)` in real code.
    public static func bindingRequest(transactionID: [UInt8], software: String? = nil) -> STUNMessage {
        var message = STUNMessage(messageClass: .request, method: .binding, transactionID: transactionID, hasFingerprint: true)
        if let software { message.addSoftware(software) }
        return message
    }

    /// A Binding request with a fresh transaction id drawn from `generator`.
    public static func bindingRequest(using generator: inout some RandomNumberGenerator, software: String? = nil) -> STUNMessage {
        bindingRequest(transactionID: randomTransactionID(using: &generator), software: software)
    }

    public static func randomTransactionID(using generator: inout some RandomNumberGenerator) -> [UInt8] {
        (0..<transactionIDLength).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
    }

    // MARK: - Wire format

    /// The message type field: the method's 12 bits with the class's two bits at positions 4 and 8.
    var messageType: UInt16 {
        let m = method.rawValue
        let c = UInt16(messageClass.rawValue)
        return (m & 0x000F) | ((c & 0b01) << 4) | ((m & 0x0070) << 1) | ((c & 0b10) << 7) | ((m & 0x0F80) << 2)
    }

    /// The bytes on the wire. Attribute padding is zeros; a FINGERPRINT is appended last when
    /// `hasFingerprint` (a FINGERPRINT placed in `attributes` by hand is left out).
    public func encoded() -> [UInt8] {
        let kept = attributes.filter { $0.type != .fingerprint }
        var bodyLength = kept.reduce(0) { $0 + 4 + Self.padded($1.value.count) }
        if hasFingerprint { bodyLength += 8 }
        precondition(bodyLength <= 0xFFFF, "a STUN message body is at most 65535 bytes")

        var bytes: [UInt8] = []
        bytes.reserveCapacity(Self.headerLength + bodyLength)
        Self.append(messageType, to: &bytes)
        Self.append(UInt16(bodyLength), to: &bytes)
        Self.append(Self.magicCookie, to: &bytes)
        bytes += transactionID
        for attribute in kept {
            Self.append(attribute.type.rawValue, to: &bytes)
            Self.append(UInt16(attribute.value.count), to: &bytes)
            bytes += attribute.value
            bytes += [UInt8](repeating: 0, count: Self.padded(attribute.value.count) - attribute.value.count)
        }
        if hasFingerprint {
            // The header length already counts the FINGERPRINT, as the CRC must see it (15.5).
            let crc = CRC32.checksum(bytes) ^ Self.fingerprintXOR
            Self.append(AttributeType.fingerprint.rawValue, to: &bytes)
            Self.append(UInt16(4), to: &bytes)
            Self.append(crc, to: &bytes)
        }
        return bytes
    }

    /// Cheap demultiplexing test for a datagram on a port shared with Skylark's own datagrams
    /// (first byte 0xD5) and RTP (0x80–0xBF): at least a header, top two bits zero, magic cookie.
    public static func looksLikeSTUN(_ bytes: [UInt8]) -> Bool {
        bytes.count >= headerLength && bytes[0] & 0xC0 == 0 && readUInt32(bytes, at: 4) == magicCookie
    }

    /// Parses and validates a whole message. Any byte string is safe to pass: garbage throws.
    public static func decode(_ bytes: [UInt8]) throws(STUNError) -> STUNMessage {
        guard bytes.count >= headerLength else { throw .tooShort(count: bytes.count) }
        guard looksLikeSTUN(bytes) else { throw .notSTUN }
        let declared = Int(readUInt16(bytes, at: 2))
        let available = bytes.count - headerLength
        guard declared == available, declared % 4 == 0 else { throw .badLength(declared: declared, available: available) }

        let type = readUInt16(bytes, at: 0)
        let methodBits = (type & 0x000F) | ((type & 0x00E0) >> 1) | ((type & 0x3E00) >> 2)
        let classBits = UInt8(((type & 0x0010) >> 4) | ((type & 0x0100) >> 7))
        var message = STUNMessage(
            messageClass: MessageClass(rawValue: classBits)!,  // two bits: always one of the four cases
            method: Method(methodBits),
            transactionID: Array(bytes[8..<20]))

        var offset = headerLength
        while offset < bytes.count {
            // The body is a multiple of 4 and so is each attribute, so a 4-byte header fits here.
            let attributeType = readUInt16(bytes, at: offset)
            let length = Int(readUInt16(bytes, at: offset + 2))
            let valueStart = offset + 4
            guard valueStart + padded(length) <= bytes.count else {
                throw .truncatedAttribute(type: attributeType, offset: offset)
            }
            if attributeType == AttributeType.fingerprint.rawValue {
                guard length == 4 else { throw .malformedAttribute(type: attributeType, reason: "FINGERPRINT must be 4 bytes") }
                guard valueStart + 4 == bytes.count else { throw .fingerprintNotLast }
                let expected = CRC32.checksum(bytes[0..<offset]) ^ fingerprintXOR
                guard readUInt32(bytes, at: valueStart) == expected else { throw .badFingerprint }
                message.hasFingerprint = true
            } else {
                message.attributes.append(
                    Attribute(
                        type: AttributeType(attributeType), value: Array(bytes[valueStart..<(valueStart + length)])))
            }
            offset = valueStart + padded(length)
        }
        return message
    }

    // MARK: - Reading attributes

    /// The value of the first attribute of `type`, if any.
    public func value(of type: AttributeType) -> [UInt8]? {
        attributes.first { $0.type == type }?.value
    }

    /// XOR-MAPPED-ADDRESS: nil when absent, an error when present but malformed.
    public func xorMappedAddress() throws(STUNError) -> HostPort? {
        guard let value = value(of: .xorMappedAddress) else { return nil }
        return try Self.decodeAddress(value, type: .xorMappedAddress, mask: addressMask)
    }

    /// MAPPED-ADDRESS (not XORed; what RFC 3489 clients read): nil when absent.
    public func mappedAddress() throws(STUNError) -> HostPort? {
        guard let value = value(of: .mappedAddress) else { return nil }
        return try Self.decodeAddress(value, type: .mappedAddress, mask: nil)
    }

    /// SOFTWARE as text (invalid UTF-8 is repaired, not refused: it is only informative).
    public var software: String? {
        value(of: .software).map { String(decoding: $0, as: UTF8.self) }
    }

    public func errorCode() throws(STUNError) -> ErrorCode? {
        guard let value = value(of: .errorCode) else { return nil }
        guard value.count >= 4 else { throw .malformedAttribute(type: AttributeType.errorCode.rawValue, reason: "shorter than 4 bytes") }
        let hundreds = Int(value[2] & 0x07)
        let number = Int(value[3])
        guard (3...6).contains(hundreds), number < 100 else {
            throw .malformedAttribute(type: AttributeType.errorCode.rawValue, reason: "code \(hundreds)\(number) is out of range")
        }
        return ErrorCode(code: hundreds * 100 + number, reason: String(decoding: value[4...], as: UTF8.self))
    }

    public func unknownAttributes() throws(STUNError) -> [AttributeType]? {
        guard let value = value(of: .unknownAttributes) else { return nil }
        guard value.count % 2 == 0 else {
            throw .malformedAttribute(type: AttributeType.unknownAttributes.rawValue, reason: "odd length")
        }
        return stride(from: 0, to: value.count, by: 2).map { AttributeType(Self.readUInt16(value, at: $0)) }
    }

    // MARK: - Writing attributes

    /// Adds XOR-MAPPED-ADDRESS; `address.host` must be a numeric IPv4 or IPv6 address.
    public mutating func addXORMappedAddress(_ address: HostPort) throws(STUNError) {
        attributes.append(Attribute(type: .xorMappedAddress, value: try Self.encodeAddress(address, mask: addressMask)))
    }

    /// Adds MAPPED-ADDRESS (for RFC 3489 clients, which do not know the XOR form).
    public mutating func addMappedAddress(_ address: HostPort) throws(STUNError) {
        attributes.append(Attribute(type: .mappedAddress, value: try Self.encodeAddress(address, mask: nil)))
    }

    /// Adds SOFTWARE, cut to the 763 bytes RFC 8489 allows (at a character boundary).
    public mutating func addSoftware(_ name: String) {
        attributes.append(Attribute(type: .software, value: Self.utf8Prefix(name, maximumBytes: 763)))
    }

    /// Adds ERROR-CODE; `code` must be 300...699 (a programming error otherwise).
    public mutating func addErrorCode(_ error: ErrorCode) {
        precondition((300...699).contains(error.code), "STUN error codes are 300 to 699")
        let value: [UInt8] = [0, 0, UInt8(error.code / 100), UInt8(error.code % 100)]
        attributes.append(Attribute(type: .errorCode, value: value + Self.utf8Prefix(error.reason, maximumBytes: 763)))
    }

    public mutating func addUnknownAttributes(_ types: [AttributeType]) {
        var value: [UInt8] = []
        for type in types { Self.append(type.rawValue, to: &value) }
        attributes.append(Attribute(type: .unknownAttributes, value: value))
    }

    // MARK: - Helpers

    /// What XOR-MAPPED-ADDRESS is XORed with: the cookie, then (IPv6 only) the transaction id.
    private var addressMask: [UInt8] {
        var mask: [UInt8] = []
        Self.append(Self.magicCookie, to: &mask)
        return mask + transactionID
    }

    private static func encodeAddress(_ address: HostPort, mask: [UInt8]?) throws(STUNError) -> [UInt8] {
        guard let ip = IPAddressText.bytes(of: address.host), (0...0xFFFF).contains(address.port) else {
            throw .notAnIPAddress(address.description)
        }
        var value: [UInt8] = [0, ip.count == 4 ? 1 : 2]
        let port = UInt16(address.port)
        if let mask {
            append(port ^ UInt16(magicCookie >> 16), to: &value)
            value += zip(ip, mask).map { $0 ^ $1 }
        } else {
            append(port, to: &value)
            value += ip
        }
        return value
    }

    private static func decodeAddress(_ value: [UInt8], type: AttributeType, mask: [UInt8]?) throws(STUNError) -> HostPort {
        guard value.count >= 4 else { throw .malformedAttribute(type: type.rawValue, reason: "shorter than 4 bytes") }
        let family = value[1]
        let addressLength: Int
        switch family {
        case 1: addressLength = 4
        case 2: addressLength = 16
        default: throw .unsupportedAddressFamily(family)
        }
        guard value.count == 4 + addressLength else {
            throw .malformedAttribute(type: type.rawValue, reason: "\(value.count) bytes for address family \(family)")
        }
        var port = readUInt16(value, at: 2)
        var ip = Array(value[4...])
        if let mask {
            port ^= UInt16(magicCookie >> 16)
            ip = zip(ip, mask).map { $0 ^ $1 }
        }
        return HostPort(host: IPAddressText.text(of: ip)!, port: Int(port))  // 4 or 16 bytes: always formats
    }

    private static func utf8Prefix(_ text: String, maximumBytes: Int) -> [UInt8] {
        var result: [UInt8] = []
        for character in text {
            let bytes = Array(character.utf8)
            guard result.count + bytes.count <= maximumBytes else { break }
            result += bytes
        }
        return result
    }

    static func padded(_ length: Int) -> Int { (length + 3) & ~3 }

    static func readUInt16(_ bytes: [UInt8], at offset: Int) -> UInt16 {
        UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1])
    }

    static func readUInt32(_ bytes: [UInt8], at offset: Int) -> UInt32 {
        UInt32(readUInt16(bytes, at: offset)) << 16 | UInt32(readUInt16(bytes, at: offset + 2))
    }

    static func append(_ value: UInt16, to bytes: inout [UInt8]) {
        bytes += [UInt8(value >> 8), UInt8(value & 0xFF)]
    }

    static func append(_ value: UInt32, to bytes: inout [UInt8]) {
        append(UInt16(value >> 16), to: &bytes)
        append(UInt16(value & 0xFFFF), to: &bytes)
    }
}
