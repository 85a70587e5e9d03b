import Foundation
import SkylarkCrypto
import SkylarkNode
import SkylarkTestSupport
import SkylarkWire
import Testing

@testable import SkylarkUpdateServer

@Suite struct UpdateServerStateTests {
    @Test func initialiseWritesAPrivateKeyAndItsPublicHalf() throws {
        let fixture = try StateFixture.make(initialise: true)
        defer { fixture.remove() }
        let state = fixture.state
        #expect(try permissions(state.keyPath) == 0o600)
        #expect(try permissions(state.directory) == 0o700)
        let key = try state.loadKey()
        #expect(key.bits == 2048)
        #expect(key.publicKey == fixture.publicKey, "update-public.pem is the key's public half")
        #expect(key.publicKey != TestKeys.update.publicKey, "a fresh key")
        let publicText = String(decoding: try #require(readBytes(state.publicKeyPath)), as: UTF8.self)
        #expect(publicText.contains("BEGIN PUBLIC KEY"))
        #expect(!publicText.contains("PRIVATE"))
        #expect(state.currentManifest() == nil)

        // A second initialise refuses and keeps the key.
        let before = readBytes(state.keyPath)
        #expect(throws: UpdateServerState.Failure.alreadyInitialised(state.directory)) { try state.initialise(keyBits: 2048) }
        #expect(readBytes(state.keyPath) == before)
    }

    @Test func publishCopiesFilesAndSignsAManifestClientsAccept() throws {
        let fixture = try StateFixture.make()
        defer { fixture.remove() }
        let archive = sampleBytes(10_000, seed: 1)
        let notes = sampleBytes(300, seed: 2)
        let paths = [try fixture.input("skylark-0.2.0.tar.gz", archive), try fixture.input("NOTES.txt", notes)]
        let published = try fixture.state.publish(version: "0.2.0", files: paths, notes: "first release", validFor: 30 * 86400, now: epoch)

        #expect(published.version == "0.2.0")
        #expect(published.publishedAt == epoch)
        #expect(published.expiresAt == epoch + 30 * 86400)
        #expect(published.notes == "first release")
        #expect(published.files.map(\.name) == ["skylark-0.2.0.tar.gz", "NOTES.txt"])
        for (entry, bytes) in zip(published.files, [archive, notes]) {
            #expect(entry.size == Int64(bytes.count))
            #expect(entry.sha256 == SHA256.hash(bytes).hexString)
            #expect(entry.path == "releases/0.2.0/\(entry.name)")
            let copied = try #require(readBytes(fixture.state.directory + "/" + entry.path))
            #expect(copied == bytes)
            try UpdateCheck.verifyFile(copied, against: entry)
        }

        // What a client fetching manifest.json gets: signed by the key in update-public.pem.
        let manifestBytes = try #require(readBytes(fixture.state.manifestPath))
        #expect(try UpdateCheck.verifyManifest(manifestBytes, key: fixture.publicKey, now: epoch + 1) == published)
        #expect(throws: UpdateFailure.badSignature) {
            try UpdateCheck.verifyManifest(manifestBytes, key: TestKeys.other.publicKey, now: epoch + 1)
        }
        #expect(throws: UpdateFailure.expired(at: epoch + 30 * 86400)) {
            try UpdateCheck.verifyManifest(manifestBytes, key: fixture.publicKey, now: epoch + 30 * 86400)
        }
        #expect(fixture.state.currentManifest() == published)
        #expect(UpdateCheck.status(of: published, running: SkylarkVersion.current) == .available(SemanticVersion(major: 0, minor: 2, patch: 0)))
    }

    @Test func onlyNewerVersionsArePublished() throws {
        let fixture = try StateFixture.make()
        defer { fixture.remove() }
        let file = try fixture.input("a.bin", [1, 2, 3])
        try fixture.state.publish(version: "0.9.0", files: [file], notes: nil, validFor: 86400, now: epoch)
        #expect(throws: UpdateServerState.Failure.notNewer(version: "0.9.0", published: "0.9.0")) {
            try fixture.state.publish(version: "0.9.0", files: [file], notes: nil, validFor: 86400, now: epoch + 1)
        }
        #expect(throws: UpdateServerState.Failure.notNewer(version: "0.8.99", published: "0.9.0")) {
            try fixture.state.publish(version: "0.8.99", files: [file], notes: nil, validFor: 86400, now: epoch + 1)
        }
        #expect(fixture.state.currentManifest()?.version == "0.9.0")
        // Numeric comparison: 0.10.0 is newer than 0.9.0.
        let newer = try fixture.state.publish(version: "0.10.0", files: [file], notes: nil, validFor: 86400, now: epoch + 2)
        #expect(newer.version == "0.10.0")
        #expect(fixture.state.currentManifest() == newer)
        #expect(readBytes(fixture.state.directory + "/releases/0.9.0/a.bin") == [1, 2, 3], "older releases stay")
    }

    @Test(arguments: ["", "1.2", "1.2.3.4", "v1.2.3", "1.2.3-beta", "1..3", "a.b.c", "1.2.-3", "1234567890.0.0"])
    func invalidVersionsAreRefused(version: String) throws {
        let fixture = try StateFixture.make()
        defer { fixture.remove() }
        let file = try fixture.input("a.bin", [1])
        #expect(throws: UpdateServerState.Failure.invalidVersion(version)) {
            try fixture.state.publish(version: version, files: [file], notes: nil, validFor: 86400, now: epoch)
        }
        #expect(fixture.state.currentManifest() == nil)
    }

    @Test func noFilesIsRefused() throws {
        let fixture = try StateFixture.make()
        defer { fixture.remove() }
        #expect(throws: UpdateServerState.Failure.noFiles) {
            try fixture.state.publish(version: "0.2.0", files: [], notes: nil, validFor: 86400, now: epoch)
        }
        #expect(!FileManager.default.fileExists(atPath: fixture.state.manifestPath))
    }

    @Test func unsafeMissingOrDuplicateFilesAreRefused() throws {
        let fixture = try StateFixture.make()
        defer { fixture.remove() }
        let good = try fixture.input("good.bin", [1])
        try fixture.state.publish(version: "0.1.0", files: [good], notes: nil, validFor: 86400, now: epoch)
        let manifestBefore = readBytes(fixture.state.manifestPath)

        var refused: [[String]] = []
        for name in ["has space.bin", "semi;colon", "caf\u{00E9}.bin", "quote'.bin", "%2e%2e"] {
            refused.append([good, try fixture.input(name, [2])])
        }
        refused.append([good, fixture.inputs + "/does-not-exist.bin"])
        let twin = fixture.parent + "/twin"
        try FileManager.default.createDirectory(atPath: twin, withIntermediateDirectories: true)
        try write([3], to: twin + "/good.bin")
        refused.append([good, twin + "/good.bin"])

        for files in refused {
            do {
                try fixture.state.publish(version: "0.2.0", files: files, notes: nil, validFor: 86400, now: epoch + 1)
                Issue.record("published \(files)")
            } catch let failure as UpdateServerState.Failure {
                guard case .badFile = failure else {
                    Issue.record("expected badFile for \(files), got \(failure)")
                    continue
                }
            }
            #expect(readBytes(fixture.state.manifestPath) == manifestBefore, "a refused release leaves the manifest alone")
        }
    }

    @Test func publishBeforeInitialiseIsNotInitialised() throws {
        let parent = try makeTemporaryDirectory()
        defer { removeDirectory(parent) }
        try write([1], to: parent + "/a.bin")
        let state = UpdateServerState(directory: parent + "/state")
        #expect(throws: UpdateServerState.Failure.notInitialised(state.directory)) {
            try state.publish(version: "0.2.0", files: [parent + "/a.bin"], notes: nil, validFor: 86400, now: epoch)
        }
    }
}

@Suite struct UpdateRoutesTests {
    let directory = "/srv/skylark-update"

    @Test func manifestAndReleaseFilesAreServed() {
        #expect(UpdateRoutes.file(for: "/manifest.json", in: directory) == directory + "/manifest.json")
        #expect(UpdateRoutes.file(for: "/manifest.json?nocache=1", in: directory) == directory + "/manifest.json")
        #expect(UpdateRoutes.file(for: "/releases/0.2.0/skylark-0.2.0.tar.gz", in: directory) == directory + "/releases/0.2.0/skylark-0.2.0.tar.gz")
        #expect(UpdateRoutes.file(for: "/releases/0.2.0/NOTES_v2-final.txt?x=y", in: directory) == directory + "/releases/0.2.0/NOTES_v2-final.txt")
    }

    @Test(arguments: [
        "/update-key.pem", "/update-public.pem", "/releases/../update-key.pem", "/releases/0.2.0/../../x",
        "/releases/0.2.0/../../update-key.pem", "/releases/%2e%2e/update-key.pem", "/releases/0.2.0/%2e%2e",
        "/releases/%2E%2E/%2E%2E/update-key.pem", "/releases/..%2fupdate-key.pem", "/releases/0.2.0/..%2F..%2Fupdate-key.pem",
        "/releases/./update-key.pem", "/releases/0.2.0/.", "/releases//update-key.pem", "/releases/0.2.0/",
        "/releases/0.2.0/a/b", "releases/0.2.0/a.bin", "//releases/0.2.0/a.bin", "/", "", "/manifest.json/",
        "/releases/0.2.0/a\\b", "/releases/0.2.0/caf\u{00E9}", "/RELEASES/0.2.0/a.bin", "/manifest.json.tmp-1",
    ])
    func everythingElseIsRefused(uri: String) {
        #expect(UpdateRoutes.file(for: uri, in: directory) == nil)
    }

    @Test func safeSegments() {
        #expect(UpdateRoutes.isSafeSegment("skylark-0.2.0.tar.gz"))
        #expect(!UpdateRoutes.isSafeSegment(""))
        #expect(!UpdateRoutes.isSafeSegment("."))
        #expect(!UpdateRoutes.isSafeSegment(".."))
        #expect(!UpdateRoutes.isSafeSegment("a/b"))
        #expect(!UpdateRoutes.isSafeSegment(String(repeating: "a", count: 256)))
        #expect(UpdateRoutes.isSafeSegment(String(repeating: "a", count: 255)))
    }
}
