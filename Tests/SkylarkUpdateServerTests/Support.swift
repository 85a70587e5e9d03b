import Foundation
import Logging
import NIOCore
import NIOPosix
import SkylarkCrypto
import SkylarkNode
@testable import SkylarkUpdateServer
import SkylarkWire

enum Keys {
    /// A key that signed nothing here: what an impostor would hold.
    static let other = try! RSA.PrivateKey(bits: 2048)
}

/// 2025-01-01T00:00:00Z; publishing and verifying take `now` as a parameter.
let epoch: Int64 = 1_735_689_600

let silentLogger = Logger(label: "skylark-update-test") { _ in SwiftLogNoOpLogHandler() }

func makeTemporaryDirectory() throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("skylark-update-tests-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

func removeDirectory(_ path: String) {
    try? FileManager.default.removeItem(atPath: path)
}

func permissions(_ path: String) throws -> Int {
    let attributes = try FileManager.default.attributesOfItem(atPath: path)
    guard let mode = attributes[.posixPermissions] as? Int else { throw CocoaError(.fileReadUnknown) }
    return mode
}

func write(_ bytes: [UInt8], to path: String) throws {
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

func read(_ path: String) -> [UInt8]? {
    FileManager.default.contents(atPath: path).map(Array.init)
}

/// An initialised update state folder in a temporary parent, plus a folder of input files.
/// The caller removes `parent` with `defer`.
struct StateFixture {
    let parent: String
    let state: UpdateServerState
    let inputs: String
    let publicKey: RSA.PublicKey

    /// One key per test process: RSA key generation is the slow part of a fresh state folder.
    static let sharedKey = try! RSA.PrivateKey(bits: 2048)

    /// `initialise: true` runs `UpdateServerState.initialise` (a fresh key); otherwise the state
    /// folder is laid out the same way with the shared key, which is much faster.
    static func make(initialise: Bool = false) throws -> StateFixture {
        let parent = try makeTemporaryDirectory()
        do {
            let state = UpdateServerState(directory: parent + "/state")
            if initialise {
                try state.initialise(keyBits: 2048)
            } else {
                try StateFiles.makePrivateDirectory(state.directory)
                try StateFiles.writePrivate(Array(try sharedKey.pem().utf8), to: state.keyPath)
                try StateFiles.write(Array(try sharedKey.publicKey.pem().utf8), to: state.publicKeyPath)
            }
            let inputs = parent + "/inputs"
            try FileManager.default.createDirectory(atPath: inputs, withIntermediateDirectories: true)
            guard let pemBytes = read(state.publicKeyPath) else { throw CocoaError(.fileReadNoSuchFile) }
            let pem = String(decoding: pemBytes, as: UTF8.self)
            return StateFixture(parent: parent, state: state, inputs: inputs, publicKey: try RSA.PublicKey(pem: pem))
        } catch {
            removeDirectory(parent)
            throw error
        }
    }

    /// Writes an input file and returns its path.
    func input(_ name: String, _ bytes: [UInt8]) throws -> String {
        let path = inputs + "/" + name
        try write(bytes, to: path)
        return path
    }

    func remove() { removeDirectory(parent) }
}

/// Deterministic file contents.
func sampleBytes(_ count: Int, seed: UInt8) -> [UInt8] {
    (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(seed)) }
}
