import Foundation
import SkylarkTestSupport
import SkylarkWire
import Testing

@Suite("StateFiles")
struct StateFilesTests {
    @Test("writePrivate creates a 0600 file with exactly the bytes, and leaves no temporary file")
    func writePrivate() throws {
        let folder = try makeTemporaryDirectory()
        defer { removeDirectory(folder) }
        let path = folder + "/identity.pem"
        let bytes = Array("secret key material\n".utf8)
        try StateFiles.writePrivate(bytes, to: path)
        #expect(try permissions(path) == 0o600)
        #expect(FileManager.default.contents(atPath: path) == Data(bytes))
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder) == ["identity.pem"])
    }

    @Test("writePrivate over an existing world-readable file leaves it 0600 with the new content")
    func writePrivateReplaces() throws {
        let folder = try makeTemporaryDirectory()
        defer { removeDirectory(folder) }
        let path = folder + "/credential.json"
        try StateFiles.write(Array("old, longer content".utf8), to: path, mode: 0o644)
        #expect(try permissions(path) == 0o644)
        try StateFiles.writePrivate(Array("new".utf8), to: path)
        #expect(try permissions(path) == 0o600)
        #expect(FileManager.default.contents(atPath: path) == Data("new".utf8))
        try StateFiles.writePrivate([], to: path)
        #expect(FileManager.default.contents(atPath: path) == Data())
    }

    @Test("Writing into a missing folder throws")
    func writeIntoMissingFolder() throws {
        let folder = try makeTemporaryDirectory()
        defer { removeDirectory(folder) }
        #expect(throws: StateFiles.Failure.self) { try StateFiles.writePrivate([1], to: folder + "/missing/file") }
    }

    @Test("makePrivateDirectory creates nested folders 0700 and tightens an existing 0755 folder")
    func makePrivateDirectory() throws {
        let folder = try makeTemporaryDirectory()
        defer { removeDirectory(folder) }
        let nested = folder + "/state/inner"
        try StateFiles.makePrivateDirectory(nested)
        var isDirectory: ObjCBool = false
        #expect(FileManager.default.fileExists(atPath: nested, isDirectory: &isDirectory) && isDirectory.boolValue)
        #expect(try permissions(nested) == 0o700)

        let existing = folder + "/existing"
        try FileManager.default.createDirectory(
            atPath: existing, withIntermediateDirectories: false,
            attributes: [.posixPermissions: 0o755])
        #expect(try permissions(existing) == 0o755)
        try StateFiles.makePrivateDirectory(existing)
        #expect(try permissions(existing) == 0o700)
    }

    @Test("makePrivateDirectory over a regular file throws")
    func makePrivateDirectoryOverFile() throws {
        let folder = try makeTemporaryDirectory()
        defer { removeDirectory(folder) }
        let file = folder + "/file"
        try StateFiles.write([1], to: file)
        #expect(throws: StateFiles.Failure.self) { try StateFiles.makePrivateDirectory(file) }
    }
}
