import Foundation
import NIOCore
import NIOPosix
import SkylarkCrypto
import SkylarkNode
import SkylarkTestSupport
import SkylarkWire
import Testing

@testable import SkylarkUpdateServer

/// The update server over real loopback HTTP, fetched with the client's UpdateClient/HTTPFetcher.
@Suite struct UpdateServerHTTPTests {
    /// Starts an UpdateServer on 127.0.0.1, port 0; runs `body` with its base URL; always stops it.
    func withServer<T: Sendable>(_ state: UpdateServerState, _ body: (String, Int, MultiThreadedEventLoopGroup) async throws -> T) async throws -> T {
        try await withLoopbackServer({ group, pool, onBound in
            UpdateServer(state: state, listen: HostPort(host: "127.0.0.1", port: 0), group: group, threadPool: pool, logger: silentLogger, onBound: onBound)
        }) { port, group in
            try await body("http://127.0.0.1:\(port)", port, group)
        }
    }

    /// Sends `request` as is on a raw TCP connection and returns everything until the server closes.
    func raw(_ request: String, port: Int, group: any EventLoopGroup) async throws -> String {
        String(decoding: try await rawExchange(port: port, group: group, sending: Array(request.utf8)), as: UTF8.self)
    }

    @Test(.timeLimit(.minutes(1)))
    func manifestAndFilesDownloadAndVerify() async throws {
        let fixture = try StateFixture.make()
        defer { fixture.remove() }
        let archive = sampleBytes(200_000, seed: 7)
        let readme = Array("read me\n".utf8)
        let published = try fixture.state.publish(
            version: "0.2.0",
            files: [
                try fixture.input("skylark-0.2.0.tar.gz", archive),
                try fixture.input("README", readme),
            ],
            notes: "release", validFor: 30 * 86400, now: epoch)
        try await withServer(fixture.state) { base, _, group in
            let client = UpdateClient(baseURL: base, key: fixture.publicKey, group: group)
            let manifest = try await client.fetchManifest(now: epoch + 60)
            #expect(manifest == published)
            #expect(try await client.fetchFile(manifest.files[0]) == archive)
            #expect(try await client.fetchFile(manifest.files[1]) == readme)

            // Pinned to another key, the same bytes are refused.
            let impostorKey = TestKeys.other.publicKey
            await #expect(throws: UpdateFailure.badSignature) {
                try await UpdateClient(baseURL: base, key: impostorKey, group: group).fetchManifest(now: epoch + 60)
            }
            // An entry whose hash the server's file does not match.
            var lying = manifest.files[1]
            lying.sha256 = SHA256.hash(Array("read ME\n".utf8)).hexString
            await #expect(throws: UpdateFailure.fileHashMismatch(name: "README")) { try await client.fetchFile(lying) }
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func unknownPathsAre404AndKeysAreNeverServed() async throws {
        let fixture = try StateFixture.make()
        defer { fixture.remove() }
        try await withServer(fixture.state) { base, port, group in
            let client = UpdateClient(baseURL: base, key: fixture.publicKey, group: group)
            // Nothing published yet: the manifest is missing.
            await #expect(throws: UpdateFailure.httpStatus(404, url: base + "/manifest.json")) {
                try await client.fetchManifest(now: epoch)
            }
            #expect(UpdateFailure.httpStatus(404, url: base).isUnreachable)

            try fixture.state.publish(version: "0.2.0", files: [try fixture.input("a.bin", [1, 2, 3])], notes: nil, validFor: 86400, now: epoch)
            _ = try await client.fetchManifest(now: epoch)
            // (An entry larger than the 404 page: see NetworkClientTests for the small-file case.)
            let missing = ReleaseManifest.File(
                name: "b.bin", size: 100, sha256: SHA256.hash([UInt8](repeating: 0, count: 100)).hexString,
                path: "releases/0.2.0/b.bin")
            await #expect(throws: UpdateFailure.httpStatus(404, url: base + "/releases/0.2.0/b.bin")) {
                try await client.fetchFile(missing)
            }

            let fetcher = HTTPFetcher(group: group)
            for path in [
                "/update-key.pem", "/update-public.pem", "/releases/../update-key.pem", "/releases/0.2.0/../../update-key.pem",
                "/releases/%2e%2e/update-key.pem", "/nothing",
            ] {
                let response = try await fetcher.get(base + path, maximumBodySize: 64 * 1024, timeout: .seconds(5))
                #expect(response.status == 404, "\(path)")
                #expect(!String(decoding: response.body, as: UTF8.self).contains("PRIVATE KEY"), "\(path)")
            }
            // The raw request line is not normalised by any client library here.
            let traversal = try await raw("GET /releases/0.2.0/../../update-key.pem HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", port: port, group: group)
            #expect(traversal.hasPrefix("HTTP/1.1 404"))
            #expect(!traversal.contains("PRIVATE KEY"))
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func otherMethodsAre405AndHeadHasNoBody() async throws {
        let fixture = try StateFixture.make()
        defer { fixture.remove() }
        try fixture.state.publish(version: "0.2.0", files: [try fixture.input("a.bin", [1, 2, 3])], notes: nil, validFor: 86400, now: epoch)
        let manifestSize = try #require(readBytes(fixture.state.manifestPath)).count
        try await withServer(fixture.state) { _, port, group in
            for method in ["POST", "PUT", "DELETE"] {
                let answer = try await raw(
                    "\(method) /manifest.json HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    port: port, group: group)
                #expect(answer.hasPrefix("HTTP/1.1 405"), "\(method): \(answer.prefix(40))")
            }
            let head = try await raw("HEAD /manifest.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", port: port, group: group)
            #expect(head.hasPrefix("HTTP/1.1 200"))
            #expect(head.lowercased().contains("content-length: \(manifestSize)"))
            #expect(head.hasSuffix("\r\n\r\n"), "a HEAD answer has no body")

            // Keep-alive: two GETs on one connection, both answered.
            let twice = try await raw(
                "GET /releases/0.2.0/a.bin HTTP/1.1\r\nHost: x\r\n\r\nGET /manifest.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                port: port, group: group)
            #expect(twice.components(separatedBy: "HTTP/1.1 200").count == 3, "\(twice.prefix(200))")
        }
    }
}
