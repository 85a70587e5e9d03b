import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// A minimal HTTP/1.1 GET over NIO, enough for the update server: plain HTTP (integrity comes from
/// the manifest signature), one request per connection, a size cap and a deadline.
public struct HTTPFetcher: Sendable {
    public struct Response: Sendable {
        public var status: Int
        public var body: [UInt8]
    }

    public enum Failure: Error, Equatable, Sendable {
        case invalidURL
        case unreachable(String)
        case tooLarge(limit: Int)
        case timedOut
    }

    private let group: any EventLoopGroup

    public init(group: any EventLoopGroup) {
        self.group = group
    }

    /// Splits http://HOST[:PORT][/PATH] into its parts; nil for anything else.
    public static func parse(_ url: String) -> (host: String, port: Int, path: String)? {
        guard let components = URLComponents(string: url), components.scheme?.lowercased() == "http",
            let host = components.host, !host.isEmpty
        else { return nil }
        let path = components.percentEncodedPath.isEmpty ? "/" : components.percentEncodedPath
        let query = components.percentEncodedQuery.map { "?" + $0 } ?? ""
        return (host, components.port ?? 80, path + query)
    }

    public func get(_ url: String, maximumBodySize: Int, timeout: Duration) async throws(Failure) -> Response {
        guard let target = Self.parse(url) else { throw .invalidURL }
        let channel: NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>
        do {
            channel = try await ClientBootstrap(group: group)
                .connectTimeout(.seconds(3))
                .connect(host: target.host, port: target.port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHTTPClientHandlers()
                        return try NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>(wrappingChannelSynchronously: channel)
                    }
                }
        } catch {
            throw .unreachable(LoginClient.reason(error))
        }
        do {
            return try await withTimeout(timeout, onTimeout: { Failure.timedOut }) {
                try await channel.executeThenClose { inbound, outbound in
                    var headers = HTTPHeaders()
                    headers.add(name: "host", value: target.port == 80 ? target.host : "\(target.host):\(target.port)")
                    headers.add(name: "connection", value: "close")
                    headers.add(name: "user-agent", value: "skylark")
                    // One write: the server answers and closes as soon as it has the head, so a
                    // separate write of the end could meet a closed connection.
                    try await outbound.write(contentsOf: [
                        .head(HTTPRequestHead(version: .http1_1, method: .GET, uri: target.path, headers: headers)), .end(nil),
                    ])
                    var status = 0
                    var body: [UInt8] = []
                    for try await part in inbound {
                        switch part {
                        case let .head(head):
                            status = Int(head.status.code)
                            // Only a 200 body matters (and is size-checked); an error page is not a file.
                            if status != 200 { return Response(status: status, body: []) }
                        case let .body(buffer):
                            guard body.count + buffer.readableBytes <= maximumBodySize else { throw Failure.tooLarge(limit: maximumBodySize) }
                            body.append(contentsOf: buffer.readableBytesView)
                        case .end: return Response(status: status, body: body)
                        }
                    }
                    throw Failure.unreachable("connection closed before the response ended")
                }
            }
        } catch let failure as Failure {
            throw failure
        } catch {
            throw .unreachable(LoginClient.reason(error))
        }
    }
}
