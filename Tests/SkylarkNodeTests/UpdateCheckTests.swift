import Foundation
import SkylarkCrypto
import SkylarkNode
import SkylarkTestSupport
import SkylarkWire
import Testing

@Suite struct UpdateCheckTests {
    static let fileBytes = Array("the release archive\n".utf8) + (0..<200).map { UInt8($0) }

    static func manifest(version: String = "0.2.0", expiresAt: Int64 = epoch + 30 * 86400) -> ReleaseManifest {
        ReleaseManifest(
            version: version, publishedAt: epoch, expiresAt: expiresAt, notes: "fixes / improvements",
            files: [
                .init(
                    name: "skylark-\(version).tar.gz", size: Int64(fileBytes.count), sha256: SHA256.hash(fileBytes).hexString,
                    path: "releases/\(version)/skylark-\(version).tar.gz")
            ])
    }

    /// The signed manifest as a JSON object, edited by `change`, serialized again.
    func edited(_ bytes: [UInt8], _ change: (inout [String: Any]) -> Void) throws -> [UInt8] {
        var object = try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
        change(&object)
        return Array(try JSONSerialization.data(withJSONObject: object))
    }

    func body(_ object: inout [String: Any], _ change: (inout [String: Any]) -> Void) {
        var body = object["body"] as! [String: Any]
        change(&body)
        object["body"] = body
    }

    @Test func validManifestVerifies() throws {
        let manifest = Self.manifest()
        let bytes = try signedManifest(manifest)
        #expect(try UpdateCheck.verifyManifest(bytes, key: TestKeys.update.publicKey, now: epoch) == manifest)
        // Re-serialized without a change (other key order and spacing): still valid.
        let reserialized = try edited(bytes) { _ in }
        #expect(reserialized != bytes)
        #expect(try UpdateCheck.verifyManifest(reserialized, key: TestKeys.update.publicKey, now: epoch) == manifest)
    }

    @Test func signedByAnotherKeyIsBadSignature() throws {
        let bytes = try signedManifest(Self.manifest(), key: TestKeys.other)
        #expect(throws: UpdateFailure.badSignature) { try UpdateCheck.verifyManifest(bytes, key: TestKeys.update.publicKey, now: epoch) }
    }

    @Test func missingOrEmptySignatureIsUnsigned() throws {
        let bytes = try signedManifest(Self.manifest())
        let removed = try edited(bytes) { $0["signature"] = nil }
        #expect(throws: UpdateFailure.unsigned) { try UpdateCheck.verifyManifest(removed, key: TestKeys.update.publicKey, now: epoch) }
        let empty = try edited(bytes) { $0["signature"] = "" }
        #expect(throws: UpdateFailure.unsigned) { try UpdateCheck.verifyManifest(empty, key: TestKeys.update.publicKey, now: epoch) }
        let notAString = try edited(bytes) { $0["signature"] = 7 }
        #expect(throws: UpdateFailure.unsigned) { try UpdateCheck.verifyManifest(notAString, key: TestKeys.update.publicKey, now: epoch) }
        let notBase64 = try edited(bytes) { $0["signature"] = "!!not base64!!" }
        #expect(throws: UpdateFailure.badSignature) { try UpdateCheck.verifyManifest(notBase64, key: TestKeys.update.publicKey, now: epoch) }
    }

    @Test func notAJSONObjectIsMalformed() {
        for bytes in [Array("not json".utf8), Array("[1, 2]".utf8), Array(#""a string""#.utf8)] {
            #expect(throws: UpdateFailure.malformed("not a JSON object")) { try UpdateCheck.verifyManifest(bytes, key: TestKeys.update.publicKey, now: epoch) }
        }
    }

    @Test func anyFieldChangedAfterSigningIsBadSignature() throws {
        let bytes = try signedManifest(Self.manifest())
        let edits: [(String, (inout [String: Any]) -> Void)] = [
            ("version", { $0["version"] = "9.9.9" }),
            ("notes", { $0["notes"] = "fixes / improvements." }),
            ("expiresAt", { $0["expiresAt"] = NSNumber(value: epoch + 365 * 86400) }),
            (
                "files",
                {
                    var files = $0["files"] as! [[String: Any]]
                    files[0]["sha256"] = String(repeating: "0", count: 64)
                    $0["files"] = files
                }
            ),
            (
                "extra file",
                {
                    var files = $0["files"] as! [[String: Any]]
                    files.append(["name": "evil", "size": 1, "sha256": String(repeating: "a", count: 64), "path": "releases/0.2.0/evil"])
                    $0["files"] = files
                }
            ),
        ]
        for (what, edit) in edits {
            let tampered = try edited(bytes) { body(&$0, edit) }
            #expect(throws: UpdateFailure.badSignature, "\(what)") {
                try UpdateCheck.verifyManifest(tampered, key: TestKeys.update.publicKey, now: epoch)
            }
        }
    }

    @Test func expiredManifestIsRefused() throws {
        let manifest = Self.manifest(expiresAt: epoch + 100)
        let bytes = try signedManifest(manifest)
        #expect(try UpdateCheck.verifyManifest(bytes, key: TestKeys.update.publicKey, now: epoch + 99) == manifest)
        #expect(throws: UpdateFailure.expired(at: epoch + 100)) {
            try UpdateCheck.verifyManifest(bytes, key: TestKeys.update.publicKey, now: epoch + 100)
        }
        #expect(UpdateFailure.expired(at: 0).isUnreachable == false)
    }

    @Test(arguments: ["", "not json", "[1, 2, 3]", "{\"signature\": \"abc\"}", "{\"body\": 5, \"signature\": \"abc\"}"])
    func malformedManifests(text: String) throws {
        do throws(UpdateFailure) {
            _ = try UpdateCheck.verifyManifest(Array(text.utf8), key: TestKeys.update.publicKey, now: epoch)
            Issue.record("accepted \(text)")
        } catch {
            guard case .malformed = error else {
                Issue.record("expected malformed, got \(error)")
                return
            }
        }
    }

    @Test func signedButUnsupportedFormatOrVersionIsMalformed() throws {
        var future = Self.manifest()
        future.format = 2
        var badVersion = Self.manifest()
        badVersion.version = "1.2"
        for manifest in [future, badVersion] {
            let bytes = try signedManifest(manifest)
            do throws(UpdateFailure) {
                _ = try UpdateCheck.verifyManifest(bytes, key: TestKeys.update.publicKey, now: epoch)
                Issue.record("accepted \(manifest)")
            } catch {
                guard case .malformed = error else {
                    Issue.record("expected malformed, got \(error)")
                    continue
                }
            }
        }
    }

    @Test func verifyFileChecksSizeThenHash() throws {
        let entry = Self.manifest().files[0]
        try UpdateCheck.verifyFile(Self.fileBytes, against: entry)
        #expect(throws: UpdateFailure.fileSizeMismatch(name: entry.name)) {
            try UpdateCheck.verifyFile(Self.fileBytes + [0], against: entry)
        }
        #expect(throws: UpdateFailure.fileSizeMismatch(name: entry.name)) {
            try UpdateCheck.verifyFile(Array(Self.fileBytes.dropLast()), against: entry)
        }
        var changed = Self.fileBytes
        changed[17] ^= 0x01
        #expect(throws: UpdateFailure.fileHashMismatch(name: entry.name)) {
            try UpdateCheck.verifyFile(changed, against: entry)
        }
        // Upper-case hex in a manifest is the same hash.
        var upper = entry
        upper.sha256 = entry.sha256.uppercased()
        try UpdateCheck.verifyFile(Self.fileBytes, against: upper)
    }

    @Test func statusComparesVersionsNumerically() {
        let running = SemanticVersion(major: 0, minor: 9, patch: 3)
        #expect(UpdateCheck.status(of: Self.manifest(version: "0.10.0"), running: running) == .available(SemanticVersion(major: 0, minor: 10, patch: 0)))
        #expect(UpdateCheck.status(of: Self.manifest(version: "0.9.4"), running: running) == .available(SemanticVersion(major: 0, minor: 9, patch: 4)))
        #expect(UpdateCheck.status(of: Self.manifest(version: "0.9.3"), running: running) == .upToDate(latest: running))
        #expect(UpdateCheck.status(of: Self.manifest(version: "0.9.0"), running: running) == .upToDate(latest: SemanticVersion(major: 0, minor: 9, patch: 0)))
        #expect(
            UpdateCheck.status(of: Self.manifest(version: "0.2.0"), running: SkylarkVersion.current)
                == .available(SemanticVersion(major: 0, minor: 2, patch: 0)))
    }
}
