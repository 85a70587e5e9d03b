import SkylarkTestSupport
import SkylarkWire
import Testing

@testable import SkylarkTraversal

/// RFC 5769 test vectors (section 2.2 and 2.3): Binding success responses with SOFTWARE
/// "test vector", XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY (not checked here) and FINGERPRINT.
enum RFC5769 {
    static let transactionID = hex("b7e7a701 bc34d686 fa87dfae")

    static let ipv4Response = hex(
        """
        0101003c 2112a442 b7e7a701 bc34d686 fa87dfae
        8022000b 74657374 20766563 746f7220
        00200008 0001a147 e112a643
        00080014 2b91f599 fd9e90c3 8c7489f9 2af9ba53 f06be7d7
        80280004 c07d4c96
        """)

    static let ipv6Response = hex(
        """
        01010048 2112a442 b7e7a701 bc34d686 fa87dfae
        8022000b 74657374 20766563 746f7220
        00200014 0002a147 0113a9fa a5d3f179 bc25f4b5 bed2b9d9
        00080014 a382954e 4be67bf1 1784c97c 8292c275 bfe3ed41
        80280004 c8fb0b4c
        """)
}

@Suite("STUNMessage")
struct STUNMessageTests {
    let transactionID: [UInt8] = Array(1...12)

    @Test("CRC-32 matches the standard check value")
    func crcCheckValue() {
        #expect(CRC32.checksum(Array("123456789".utf8)) == 0xCBF4_3926)
        #expect(CRC32.checksum([UInt8]()) == 0)
    }

    @Test("Message types: Binding request 0x0001, success 0x0101, error 0x0111; every class and method round-trips")
    func messageTypes() throws {
        #expect(STUNMessage.bindingRequest(transactionID: transactionID).encoded().prefix(2) == [0x00, 0x01])
        #expect(STUNMessage(messageClass: .successResponse, method: .binding, transactionID: transactionID).encoded().prefix(2) == [0x01, 0x01])
        #expect(STUNMessage(messageClass: .errorResponse, method: .binding, transactionID: transactionID).encoded().prefix(2) == [0x01, 0x11])
        #expect(STUNMessage(messageClass: .indication, method: .binding, transactionID: transactionID).encoded().prefix(2) == [0x00, 0x11])
        for messageClass in STUNMessage.MessageClass.allCases {
            for method: UInt16 in [0x001, 0x003, 0x07F, 0x080, 0xABC, 0xFFF] {
                let message = STUNMessage(messageClass: messageClass, method: .init(method), transactionID: transactionID)
                let decoded = try STUNMessage.decode(message.encoded())
                #expect(decoded.messageClass == messageClass)
                #expect(decoded.method.rawValue == method)
            }
        }
    }

    @Test("Encode then decode gives the same message, with every padding length and with or without FINGERPRINT")
    func roundTrip() throws {
        for fingerprint in [false, true] {
            var message = STUNMessage(
                messageClass: .request, method: .binding, transactionID: transactionID, hasFingerprint: fingerprint)
            for length in 0...9 {
                message.attributes.append(.init(type: .init(0x8000 + UInt16(length)), value: (0..<length).map { UInt8($0 + 1) }))
            }
            message.addSoftware("skylark test")
            try message.addXORMappedAddress(HostPort(host: "203.0.113.5", port: 40000))
            try message.addMappedAddress(HostPort(host: "2001:db8::7", port: 1))
            let bytes = message.encoded()
            #expect(bytes.count % 4 == 0)
            #expect(Int(bytes[2]) << 8 | Int(bytes[3]) == bytes.count - 20)
            let decoded = try STUNMessage.decode(bytes)
            #expect(decoded == message)
            #expect(decoded.encoded() == bytes)
            #expect(try decoded.xorMappedAddress() == HostPort(host: "203.0.113.5", port: 40000))
            #expect(try decoded.mappedAddress() == HostPort(host: "2001:db8::7", port: 1))
            #expect(decoded.software == "skylark test")
        }
    }

    @Test("A Binding request is 28 bytes: header and FINGERPRINT; random ids come from the generator")
    func bindingRequest() throws {
        let request = STUNMessage.bindingRequest(transactionID: transactionID).encoded()
        #expect(request.count == 28)
        #expect(Array(request[4..<8]) == [0x21, 0x12, 0xa4, 0x42])
        #expect(Array(request[8..<20]) == transactionID)
        #expect(try STUNMessage.decode(request).hasFingerprint)

        var first = SeededGenerator(seed: 7), second = SeededGenerator(seed: 7)
        let a = STUNMessage.bindingRequest(using: &first), b = STUNMessage.bindingRequest(using: &second)
        #expect(a == b)
        #expect(STUNMessage.bindingRequest(using: &first).transactionID != a.transactionID)
    }

    @Test("RFC 5769 2.2: the IPv4 response decodes to 192.0.2.1:32853 and its FINGERPRINT verifies")
    func rfc5769IPv4() throws {
        let message = try STUNMessage.decode(RFC5769.ipv4Response)
        #expect(message.messageClass == .successResponse)
        #expect(message.method == .binding)
        #expect(message.transactionID == RFC5769.transactionID)
        #expect(message.hasFingerprint)
        #expect(message.software == "test vector")
        #expect(message.value(of: .messageIntegrity)?.count == 20)
        #expect(try message.xorMappedAddress() == HostPort(host: "192.0.2.1", port: 32853))
        #expect(message.attributes.map(\.type) == [.software, .xorMappedAddress, .messageIntegrity])

        // Writing the same address gives the RFC's bytes.
        var rebuilt = STUNMessage(messageClass: .successResponse, method: .binding, transactionID: RFC5769.transactionID)
        try rebuilt.addXORMappedAddress(HostPort(host: "192.0.2.1", port: 32853))
        #expect(rebuilt.attributes[0].value == hex("0001a147 e112a643"))
    }

    @Test("RFC 5769 2.3: the IPv6 response decodes to [2001:db8:1234:5678:11:2233:4455:6677]:32853")
    func rfc5769IPv6() throws {
        let message = try STUNMessage.decode(RFC5769.ipv6Response)
        #expect(message.hasFingerprint)
        #expect(try message.xorMappedAddress() == HostPort(host: "2001:db8:1234:5678:11:2233:4455:6677", port: 32853))

        var rebuilt = STUNMessage(messageClass: .successResponse, method: .binding, transactionID: RFC5769.transactionID)
        try rebuilt.addXORMappedAddress(HostPort(host: "2001:db8:1234:5678:11:2233:4455:6677", port: 32853))
        #expect(rebuilt.attributes[0].value == hex("0002a147 0113a9fa a5d3f179 bc25f4b5 bed2b9d9"))
    }

    @Test("Any flipped bit after the header's length field, up to the end, fails the FINGERPRINT")
    func flippedBitFailsFingerprint() {
        let vector = RFC5769.ipv4Response
        // Transaction id, SOFTWARE value, XOR-MAPPED-ADDRESS value, MESSAGE-INTEGRITY value and the CRC
        // itself: flipping any of those bits leaves the framing intact, so only the CRC can notice.
        let valueRanges = [8..<20, 24..<36, 40..<48, 52..<72, 76..<80]
        var checked = 0
        for range in valueRanges {
            for index in range {
                for bit in 0..<8 {
                    var damaged = vector
                    damaged[index] ^= 1 << bit
                    #expect(throws: STUNError.badFingerprint) { try STUNMessage.decode(damaged) }
                    checked += 1
                }
            }
        }
        #expect(checked == 448)
    }

    @Test("Framing errors are reported as such")
    func framingErrors() {
        let good = STUNMessage.bindingRequest(transactionID: transactionID).encoded()
        #expect(throws: STUNError.tooShort(count: 19)) { try STUNMessage.decode(Array(good.prefix(19))) }
        #expect(throws: STUNError.tooShort(count: 0)) { try STUNMessage.decode([]) }

        var topBits = good
        topBits[0] |= 0x80
        #expect(throws: STUNError.notSTUN) { try STUNMessage.decode(topBits) }
        var cookie = good
        cookie[7] ^= 1
        #expect(throws: STUNError.notSTUN) { try STUNMessage.decode(cookie) }

        #expect(throws: STUNError.badLength(declared: 8, available: 4)) { try STUNMessage.decode(Array(good.prefix(24))) }
        var unaligned = Array(good.prefix(20)) + [0, 0, 0]
        unaligned[3] = 3
        #expect(throws: STUNError.badLength(declared: 3, available: 3)) { try STUNMessage.decode(unaligned) }

        // An attribute claiming 9 bytes (12 with padding) where 8 follow.
        let truncated = Array(good.prefix(20)) + [0x80, 0x22, 0x00, 0x09, 1, 2, 3, 4, 5, 6, 7, 8]
        var fixed = truncated
        fixed[3] = 12
        #expect(throws: STUNError.truncatedAttribute(type: 0x8022, offset: 20)) { try STUNMessage.decode(fixed) }

        // FINGERPRINT followed by another attribute.
        var trailing = good + [0x80, 0x22, 0x00, 0x00]
        trailing[3] = 12
        #expect(throws: STUNError.fingerprintNotLast) { try STUNMessage.decode(trailing) }
    }

    @Test("Every truncation of a valid message is refused")
    func truncations() {
        let vector = RFC5769.ipv6Response
        for length in 0..<vector.count {
            #expect(throws: STUNError.self) { try STUNMessage.decode(Array(vector.prefix(length))) }
        }
    }

    @Test("2,000 seeded garbage and mutated buffers never crash: each decodes (and re-encodes) or throws")
    func garbageNeverCrashes() throws {
        var random = SeededGenerator(seed: 0x5EED_5EED)
        let seeds = [RFC5769.ipv4Response, RFC5769.ipv6Response, STUNMessage.bindingRequest(transactionID: transactionID).encoded()]
        var decoded = 0, refused = 0
        for round in 0..<2000 {
            var buffer: [UInt8]
            switch round % 4 {
            case 0:  // pure noise
                buffer = (0..<Int.random(in: 0...96, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) }
            case 1:  // a well-framed message of random attributes, sometimes with one byte changed
                var body: [UInt8] = []
                for _ in 0..<Int.random(in: 0...5, using: &random) {
                    let length = Int.random(in: 0...13, using: &random)
                    body += [UInt8.random(in: 0...255, using: &random), UInt8.random(in: 0...255, using: &random), 0, UInt8(length)]
                    body += (0..<STUNMessage.padded(length)).map { _ in UInt8.random(in: 0...255, using: &random) }
                }
                buffer = [0x01, 0x01, UInt8(body.count >> 8), UInt8(body.count & 0xFF), 0x21, 0x12, 0xA4, 0x42]
                buffer += (0..<12).map { _ in UInt8.random(in: 0...255, using: &random) } + body
                if Bool.random(using: &random) {
                    buffer[Int.random(in: 0..<buffer.count, using: &random)] = UInt8.random(in: 0...255, using: &random)
                }
            case 2:  // a real message with a few bytes changed
                buffer = seeds[round % seeds.count]
                for _ in 0..<Int.random(in: 1...3, using: &random) {
                    buffer[Int.random(in: 0..<buffer.count, using: &random)] = UInt8.random(in: 0...255, using: &random)
                }
            default:  // a real message cut or extended
                buffer = seeds[round % seeds.count]
                let cut = Int.random(in: 0...buffer.count, using: &random)
                buffer = Array(buffer.prefix(cut)) + (0..<Int.random(in: 0...8, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) }
            }
            do {
                let message = try STUNMessage.decode(buffer)
                // Whatever decodes must re-encode to something that decodes to the same message.
                #expect(try STUNMessage.decode(message.encoded()) == message)
                _ = try? message.xorMappedAddress()
                _ = try? message.mappedAddress()
                _ = try? message.errorCode()
                _ = try? message.unknownAttributes()
                _ = message.software
                decoded += 1
            } catch {
                refused += 1
            }
        }
        #expect(decoded + refused == 2000)
        #expect(decoded > 100, "the generator should produce valid messages too, or the walk is untested")
        #expect(refused > 100)
    }

    @Test("looksLikeSTUN tells STUN from Skylark datagrams (0xD5) and RTP (0x80-0xBF)")
    func demultiplexing() {
        #expect(STUNMessage.looksLikeSTUN(RFC5769.ipv4Response))
        #expect(STUNMessage.looksLikeSTUN(STUNMessage.bindingRequest(transactionID: transactionID).encoded()))
        var skylark = RFC5769.ipv4Response
        skylark[0] = 0xD5
        #expect(!STUNMessage.looksLikeSTUN(skylark))
        for first: UInt8 in [0x80, 0x90, 0xBF] {
            var rtp = [UInt8](repeating: 0, count: 40)
            rtp[0] = first
            #expect(!STUNMessage.looksLikeSTUN(rtp))
        }
        #expect(!STUNMessage.looksLikeSTUN(Array(RFC5769.ipv4Response.prefix(19))))
        var noCookie = RFC5769.ipv4Response
        noCookie[4] = 0
        #expect(!STUNMessage.looksLikeSTUN(noCookie))
    }

    @Test("ERROR-CODE and UNKNOWN-ATTRIBUTES round-trip; an odd UNKNOWN-ATTRIBUTES list is padded")
    func errorAttributes() throws {
        var message = STUNMessage(messageClass: .errorResponse, method: .binding, transactionID: transactionID)
        message.addErrorCode(.init(code: 420, reason: "Unknown Attribute"))
        message.addUnknownAttributes([.init(0x0003), .init(0x7777), .init(0x0031)])
        let decoded = try STUNMessage.decode(message.encoded())
        #expect(try decoded.errorCode() == .init(code: 420, reason: "Unknown Attribute"))
        #expect(try decoded.unknownAttributes() == [.init(0x0003), .init(0x7777), .init(0x0031)])
        #expect(message.encoded().count == 20 + (4 + 24) + (4 + 8), "21 bytes of ERROR-CODE and 6 of UNKNOWN-ATTRIBUTES, each padded")
    }

    @Test("Malformed address attributes and unwritable addresses are typed errors")
    func addressErrors() throws {
        var message = STUNMessage(messageClass: .successResponse, method: .binding, transactionID: transactionID)
        message.attributes = [.init(type: .xorMappedAddress, value: [0, 3, 0, 1, 1, 2, 3, 4])]
        #expect(throws: STUNError.unsupportedAddressFamily(3)) { try message.xorMappedAddress() }
        message.attributes = [.init(type: .mappedAddress, value: [0, 1, 0, 1, 1, 2, 3])]
        #expect(throws: STUNError.self) { try message.mappedAddress() }
        message.attributes = [.init(type: .xorMappedAddress, value: [0, 2, 0, 1, 1, 2, 3, 4])]
        #expect(throws: STUNError.self) { try message.xorMappedAddress() }
        message.attributes = []
        #expect(try message.xorMappedAddress() == nil)

        #expect(throws: STUNError.notAnIPAddress("example.com:80")) {
            try message.addXORMappedAddress(HostPort(host: "example.com", port: 80))
        }
        #expect(throws: STUNError.notAnIPAddress("1.2.3.4:70000")) {
            try message.addMappedAddress(HostPort(host: "1.2.3.4", port: 70000))
        }
    }

    @Test("SOFTWARE is cut at 763 bytes, on a character boundary")
    func softwareLimit() {
        var message = STUNMessage(messageClass: .successResponse, method: .binding, transactionID: transactionID)
        message.addSoftware(String(repeating: "é", count: 500))  // 2 bytes each
        #expect(message.value(of: .software)?.count == 762)
        #expect(message.software == String(repeating: "é", count: 381))
    }
}

@Suite("IPAddressText")
struct IPAddressTextTests {
    @Test("Canonical spellings follow RFC 5952")
    func canonical() {
        let cases: [(String, String?)] = [
            ("192.0.2.1", "192.0.2.1"),
            ("010.000.000.001", "10.0.0.1"),
            ("2001:DB8:0:0:0:0:0:1", "2001:db8::1"),
            ("2001:db8:1234:5678:0011:2233:4455:6677", "2001:db8:1234:5678:11:2233:4455:6677"),
            ("::", "::"),
            ("::1", "::1"),
            ("1::", "1::"),
            ("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"),
            ("2001:0:0:1:0:0:0:1", "2001:0:0:1::1"),
            ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
            ("::ffff:192.0.2.1", "::ffff:192.0.2.1"),
            ("64:ff9b::192.0.2.1", "64:ff9b::c000:201"),
            ("256.0.0.1", nil), ("1.2.3", nil), ("1.2.3.4.5", nil), ("+1.2.3.4", nil), ("", nil),
            ("1:2:3:4:5:6:7:8:9", nil), ("1::2::3", nil), ("12345::", nil), ("fe80::1%eth0", nil),
            ("example.com", nil), ("1:2:3:4:5:6:7::8", nil), (":::", nil), ("g::1", nil),
        ]
        for (input, expected) in cases {
            #expect(IPAddressText.canonical(input) == expected, "\(input)")
        }
        #expect(IPAddressText.text(of: [1, 2, 3]) == nil)
    }
}
