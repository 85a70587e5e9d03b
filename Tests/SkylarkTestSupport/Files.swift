import Foundation

/// A fresh folder under the system's temporary directory; the caller removes it (`defer { removeDirectory(path) }`).
public func makeTemporaryDirectory() throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("skylark-tests-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

public func removeDirectory(_ path: String) {
    try? FileManager.default.removeItem(atPath: path)
}

/// The permission bits (mode & 0o777) of `path`.
public func permissions(_ path: String) throws -> Int {
    let attributes = try FileManager.default.attributesOfItem(atPath: path)
    guard let mode = attributes[.posixPermissions] as? NSNumber else { throw CocoaError(.fileReadUnknown) }
    return mode.intValue & 0o777
}

public func readBytes(_ path: String) -> [UInt8]? {
    FileManager.default.contents(atPath: path).map(Array.init)
}
