import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Just enough TURN (RFC 8656) to load a coturn server the way the Skylark relay is loaded: per
/// stream one allocation (Allocate, UDP transport) and one channel (ChannelBind to the peer);
/// after that the stream's media goes as ChannelData (4-byte header + payload) from the
/// client to the server, which sends the payload from the allocation's relayed address to the
/// peer: one datagram in, one out, as on a Skylark relay. Used against `turnserver --no-auth`,
/// so requests carry no MESSAGE-INTEGRITY (authentication applies to requests only, never to
/// ChannelData, so it does not change the per-datagram cost being measured).
enum TurnClient {
    static let cookie: UInt32 = 0x2112_A442
    static let channel: UInt16 = 0x4000

    enum Method: UInt16 {
        case allocate = 0x0003
        case channelBind = 0x0009
    }

    /// Allocates a relayed address for `fd` and binds channel 0x4000 to `peer` (127.0.0.1).
    /// Returns the relayed port.
    static func setUp(fd: Int32, server: sockaddr_in, peerPort: Int) throws -> Int {
        let allocate = try transact(fd: fd, server: server, method: .allocate, attributes: [(0x0019, [17, 0, 0, 0])])  // REQUESTED-TRANSPORT: UDP
        guard let relayed = attribute(0x0016, in: allocate), relayed.count >= 8 else { throw LoadFailure("TURN Allocate: no XOR-RELAYED-ADDRESS") }
        let relayedPort = Int((UInt16(relayed[2]) << 8 | UInt16(relayed[3])) ^ 0x2112)
        let peer = xorAddress(port: UInt16(peerPort), ipv4: 0x7F00_0001)
        _ = try transact(
            fd: fd, server: server, method: .channelBind,
            attributes: [(0x000C, [UInt8(channel >> 8), UInt8(channel & 0xFF), 0, 0]), (0x0012, peer)])  // CHANNEL-NUMBER, XOR-PEER-ADDRESS
        return relayedPort
    }

    /// The 4-byte ChannelData header for a payload of `length` bytes (no padding over UDP).
    static func channelDataHeader(length: Int) -> [UInt8] {
        [UInt8(channel >> 8), UInt8(channel & 0xFF), UInt8(length >> 8), UInt8(length & 0xFF)]
    }

    static func xorAddress(port: UInt16, ipv4: UInt32) -> [UInt8] {
        let xport = port ^ UInt16(cookie >> 16)
        let xaddress = ipv4 ^ cookie
        return [
            0, 0x01, UInt8(xport >> 8), UInt8(xport & 0xFF),
            UInt8(xaddress >> 24), UInt8((xaddress >> 16) & 0xFF), UInt8((xaddress >> 8) & 0xFF), UInt8(xaddress & 0xFF),
        ]
    }

    static func message(method: Method, transaction: [UInt8], attributes: [(UInt16, [UInt8])]) -> [UInt8] {
        var body: [UInt8] = []
        for (type, value) in attributes {
            body += [UInt8(type >> 8), UInt8(type & 0xFF), UInt8(value.count >> 8), UInt8(value.count & 0xFF)] + value
            while body.count % 4 != 0 { body.append(0) }
        }
        let type = method.rawValue
        return [
            UInt8(type >> 8), UInt8(type & 0xFF), UInt8(body.count >> 8), UInt8(body.count & 0xFF),
            UInt8(cookie >> 24), UInt8((cookie >> 16) & 0xFF), UInt8((cookie >> 8) & 0xFF), UInt8(cookie & 0xFF),
        ] + transaction + body
    }

    /// Sends a request and waits for its success response (retransmitting on silence).
    static func transact(fd: Int32, server: sockaddr_in, method: Method, attributes: [(UInt16, [UInt8])]) throws -> [UInt8] {
        let transaction = (0..<12).map { _ in UInt8.random(in: 0...255) }
        let request = message(method: method, transaction: transaction, attributes: attributes)
        for _ in 0..<6 {
            UDPSocket.send(fd, request, to: server)
            // The socket has a 500 ms receive timeout; skip anything that is not our answer.
            while let answer = UDPSocket.receive(fd) {
                guard answer.count >= 20, Array(answer[8..<20]) == transaction else { continue }
                let type = UInt16(answer[0]) << 8 | UInt16(answer[1])
                if type == method.rawValue | 0x0100 { return answer }
                if type == method.rawValue | 0x0110 {
                    var reason = "error response"
                    if let error = attribute(0x0009, in: answer), error.count >= 4 {
                        reason = "\(Int(error[2] & 0x07) * 100 + Int(error[3])) \(String(decoding: error[4...], as: UTF8.self))"
                    }
                    throw LoadFailure("TURN \(method): \(reason)")
                }
            }
        }
        throw LoadFailure("TURN \(method): no answer")
    }

    static func attribute(_ wanted: UInt16, in message: [UInt8]) -> [UInt8]? {
        var offset = 20
        while offset + 4 <= message.count {
            let type = UInt16(message[offset]) << 8 | UInt16(message[offset + 1])
            let length = Int(UInt16(message[offset + 2]) << 8 | UInt16(message[offset + 3]))
            guard offset + 4 + length <= message.count else { return nil }
            if type == wanted { return Array(message[(offset + 4)..<(offset + 4 + length)]) }
            offset += 4 + (length + 3) / 4 * 4
        }
        return nil
    }
}
