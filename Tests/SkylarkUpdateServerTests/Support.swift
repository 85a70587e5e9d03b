import Foundation
import SkylarkCrypto
import SkylarkNode
import SkylarkTestSupport
import SkylarkWire

@testable import SkylarkUpdateServer

func write(_ bytes: [UInt8], to path: String) throws {
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

/// An initialised update state folder in a temporary parent, plus a folder of input files.
/// The caller removes `parent` with `defer`.
struct StateFixture {
    let parent: String
    let state: UpdateServerState
    let inputs: String
    let publicKey: RSA.PublicKey

    /// `initialise: true` runs `UpdateServerState.initialise` (a fresh key); otherwise the state
    /// folder is laid out the same way with `TestKeys.update`, which is much faster.
    static func make(initialise: Bool = false) throws -> StateFixture {
        let parent = try makeTemporaryDirectory()
        do {
            let state = UpdateServerState(directory: parent + "/state")
            if initialise {
                try state.initialise(keyBits: 2048)
            } else {
                try StateFiles.makePrivateDirectory(state.directory)
                try StateFiles.writePrivate(Array(try TestKeys.update.pem().utf8), to: state.keyPath)
                try StateFiles.write(Array(try TestKeys.update.publicKey.pem().utf8), to: state.publicKeyPath)
            }
            let inputs = parent + "/inputs"
            try FileManager.default.createDirectory(atPath: inputs, withIntermediateDirectories: true)
            guard let pemBytes = readBytes(state.publicKeyPath) else { throw CocoaError(.fileReadNoSuchFile) }
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
