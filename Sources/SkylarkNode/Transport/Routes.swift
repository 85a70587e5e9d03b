import Foundation
import SkylarkWire
import Synchronization

/// Whether the kernel has a route to an address, from /proc/net/route (IPv4).
///
/// A datagram to an address without a route fails with ENETUNREACH, and SwiftNIO closes the whole
/// UDP socket on that error (it only forgives EMSGSIZE and EHOSTUNREACH). Call candidates include
/// peers' LAN addresses that are often unroutable from here, so every datagram the node sends is
/// checked first. The table is re-read every few seconds; IPv6 addresses are assumed routable.
final class Routes: Sendable {
    private struct Route { var destination: UInt32; var mask: UInt32 }
    private let state = Mutex<(routes: [Route], readAt: Double)>(([], -.infinity))
    private let path: String

    init(path: String = "/proc/net/route") { self.path = path }

    func canReach(_ endpoint: HostPort) -> Bool {
        guard let address = Self.ipv4(endpoint.host) else { return true }
        if address >> 24 == 127 { return true }
        let now = Moment.monotonicNow()
        let routes = state.withLock { state -> [Route] in
            if now - state.readAt > 5 {
                state.routes = read()
                state.readAt = now
            }
            return state.routes
        }
        // Without a readable table, do not second-guess the kernel.
        return routes.isEmpty || routes.contains { address & $0.mask == $0.destination & $0.mask }
    }

    private func read() -> [Route] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").dropFirst().compactMap { line in
            let fields = line.split(whereSeparator: { $0 == "\t" || $0 == " " })
            guard fields.count >= 8, let destination = UInt32(fields[1], radix: 16), let mask = UInt32(fields[7], radix: 16) else { return nil }
            // The file holds the addresses in host (little-endian) byte order.
            return Route(destination: destination.byteSwapped, mask: mask.byteSwapped)
        }
    }

    static func ipv4(_ host: String) -> UInt32? {
        let parts = host.split(separator: ".")
        guard parts.count == 4 else { return nil }
        var value: UInt32 = 0
        for part in parts {
            guard let byte = UInt8(part) else { return nil }
            value = value << 8 | UInt32(byte)
        }
        return value
    }
}
