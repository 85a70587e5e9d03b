import Foundation
import NIOCore
import NIOPosix
import SkylarkCrypto
import SkylarkNode
import SkylarkTestSupport
import SkylarkWire
import Testing

/// The client's TCP and HTTP adapters against loopback sockets the test controls.
@Suite struct NetworkClientTests {
    func withGroup<T>(_ body: (MultiThreadedEventLoopGroup) async throws -> T) async throws -> T {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let result: Result<T, any Error>
        do { result = .success(try await body(group)) } catch { result = .failure(error) }
        try await group.shutdownGracefully()
        return try result.get()
    }

    @Test(.timeLimit(.minutes(1)))
    func loginAgainstAClosedPortIsServerUnreachable() async throws {
        try await withGroup { group in
            let port = try await closedPort(group: group)
            let profile = try signedProfile(loginPort: port)
            do throws(LoginFailure) {
                _ = try await LoginClient.perform(
                    .register(name: "alice", password: "alice-password"), profile: profile,
                    group: group, logger: silentLogger)
                Issue.record("registered against a closed port")
            } catch {
                guard case let .serverUnreachable(address, _) = error else {
                    Issue.record("expected serverUnreachable, got \(error)")
                    return
                }
                #expect(address == "127.0.0.1:\(port)")
                #expect(error.exitCode == 6)
            }
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func aServerThatNeverAnswersTimesOut() async throws {
        try await withGroup { group in
            try await withRawServer(group: group, respond: { _ in nil }) { server in
                let profile = try signedProfile(loginPort: server.port)
                await #expect(throws: LoginFailure.timedOut(address: "127.0.0.1:\(server.port)")) {
                    try await LoginClient.perform(
                        .register(name: "alice", password: "alice-password"), profile: profile,
                        group: group, timeout: .milliseconds(300), logger: silentLogger)
                }
            }
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func aServerThatHangsUpWithoutAnsweringIsAProtocolViolation() async throws {
        try await withGroup { group in
            // Answers half a frame, then closes.
            try await withRawServer(group: group, respond: { $0.count > 4 ? [0, 0, 0, 50, 1, 2, 3] : nil }) { server in
                let profile = try signedProfile(loginPort: server.port)
                let failure = await #expect(throws: LoginFailure.self) {
                    try await LoginClient.perform(
                        .register(name: "alice", password: "alice-password"), profile: profile,
                        group: group, logger: silentLogger)
                }
                guard case .protocolViolation? = failure else {
                    Issue.record("expected protocolViolation, got \(String(describing: failure))")
                    return
                }
            }
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func httpFetcherAgainstAClosedPortIsUnreachable() async throws {
        try await withGroup { group in
            let port = try await closedPort(group: group)
            let fetcher = HTTPFetcher(group: group)
            do throws(HTTPFetcher.Failure) {
                _ = try await fetcher.get("http://127.0.0.1:\(port)/manifest.json", maximumBodySize: 1024, timeout: .seconds(5))
                Issue.record("fetched from a closed port")
            } catch {
                guard case .unreachable = error else {
                    Issue.record("expected unreachable, got \(error)")
                    return
                }
            }
            // Through UpdateClient: unreachable, which login treats as a warning only.
            let client = UpdateClient(baseURL: "http://127.0.0.1:\(port)/", key: TestKeys.update.publicKey, group: group)
            #expect(client.baseURL == "http://127.0.0.1:\(port)")
            do throws(UpdateFailure) {
                _ = try await client.fetchManifest(now: epoch)
                Issue.record("fetched a manifest from a closed port")
            } catch {
                guard case .unreachable = error else {
                    Issue.record("expected unreachable, got \(error)")
                    return
                }
                #expect(error.isUnreachable)
            }
        }
    }

    @Test func httpFetcherParsesOnlyPlainHTTPURLs() {
        let parsed = HTTPFetcher.parse("http://updates.example:8080/base/manifest.json?x=1")
        #expect(parsed?.host == "updates.example")
        #expect(parsed?.port == 8080)
        #expect(parsed?.path == "/base/manifest.json?x=1")
        let bare = HTTPFetcher.parse("http://updates.example")
        #expect(bare?.port == 80)
        #expect(bare?.path == "/")
        #expect(HTTPFetcher.parse("https://updates.example/") == nil)
        #expect(HTTPFetcher.parse("ftp://updates.example/") == nil)
        #expect(HTTPFetcher.parse("updates.example:8080") == nil)
        #expect(HTTPFetcher.parse("http:///nohost") == nil)
    }

    @Test(.timeLimit(.minutes(1)))
    func updateClientRefusesOversizedAndForgedManifests() async throws {
        let manifest = ReleaseManifest(
            version: "0.2.0", publishedAt: epoch, expiresAt: epoch + 86400, notes: nil,
            files: [.init(name: "a.bin", size: 3, sha256: SHA256.hash([1, 2, 3]).hexString, path: "releases/0.2.0/a.bin")])
        let good = try signedManifest(manifest)
        let forged = try signedManifest(manifest, key: TestKeys.other)
        let huge = Array(repeating: UInt8(ascii: " "), count: 300 * 1024) + good
        try await withGroup { group in
            try await withRawServer(
                group: group,
                respond: { received in
                    guard let path = requestPath(received) else { return nil }
                    switch path {
                    case "/good/manifest.json": return httpResponse(body: good)
                    case "/forged/manifest.json": return httpResponse(body: forged)
                    case "/huge/manifest.json": return httpResponse(body: huge)
                    case "/good/releases/0.2.0/a.bin": return httpResponse(body: [1, 2, 4])
                    case "/long/releases/0.2.0/a.bin": return httpResponse(body: [1, 2, 3, 4])
                    default: return httpResponse(status: "404 Not Found", body: Array("not found\n".utf8))
                    }
                }
            ) { server throws in
                let base = "http://127.0.0.1:\(server.port)"
                func client(_ prefix: String) -> UpdateClient { UpdateClient(baseURL: base + prefix, key: TestKeys.update.publicKey, group: group) }

                // The same server can serve a good manifest: the refusals below are about the content.
                #expect(try await client("/good").fetchManifest(now: epoch) == manifest)
                await #expect(throws: UpdateFailure.badSignature) { try await client("/forged").fetchManifest(now: epoch) }
                do throws(UpdateFailure) {
                    _ = try await client("/huge").fetchManifest(now: epoch)
                    Issue.record("accepted a 300 KiB manifest")
                } catch {
                    guard case .malformed = error else {
                        Issue.record("expected malformed (too large), got \(error)")
                        return
                    }
                    #expect(!error.isUnreachable)
                }
                await #expect(throws: UpdateFailure.httpStatus(404, url: base + "/missing/manifest.json")) {
                    try await client("/missing").fetchManifest(now: epoch)
                }
                // A missing file the size of the 404 page or more is reported as missing.
                let big = ReleaseManifest.File(
                    name: "big.bin", size: 64, sha256: SHA256.hash([UInt8](repeating: 0, count: 64)).hexString,
                    path: "releases/0.2.0/big.bin")
                let missing = await #expect(throws: UpdateFailure.httpStatus(404, url: base + "/good/releases/0.2.0/big.bin")) {
                    try await client("/good").fetchFile(big)
                }
                #expect(missing?.isUnreachable == true)
                // A missing file smaller than the 404 page is reported as missing, not as tampered.
                let small = ReleaseManifest.File(
                    name: "small.bin", size: 3, sha256: SHA256.hash([1, 2, 3]).hexString,
                    path: "releases/0.2.0/small.bin")
                let failure = await #expect(throws: UpdateFailure.self) { try await client("/good").fetchFile(small) }
                #expect(failure == .httpStatus(404, url: base + "/good/releases/0.2.0/small.bin"))
                // Files: a changed byte, and a longer body than the manifest allows.
                await #expect(throws: UpdateFailure.fileHashMismatch(name: "a.bin")) { try await client("/good").fetchFile(manifest.files[0]) }
                do throws(UpdateFailure) {
                    _ = try await client("/long").fetchFile(manifest.files[0])
                    Issue.record("accepted a file longer than its manifest entry")
                } catch {
                    guard case .fileSizeMismatch = error else {
                        Issue.record("expected fileSizeMismatch, got \(error)")
                        return
                    }
                }
            }
        }
    }
}
