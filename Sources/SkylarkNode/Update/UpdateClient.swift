import NIOCore
import SkylarkCrypto
import SkylarkWire

/// Fetches and verifies the manifest and release files named by a network profile.
public struct UpdateClient: Sendable {
    public let baseURL: String
    public let key: RSA.PublicKey
    private let fetcher: HTTPFetcher

    public init(baseURL: String, key: RSA.PublicKey, group: any EventLoopGroup) {
        self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        self.key = key
        self.fetcher = HTTPFetcher(group: group)
    }

    public func fetchManifest(now: Int64, timeout: Duration = .seconds(5)) async throws(UpdateFailure) -> ReleaseManifest {
        let bytes = try await fetch("/manifest.json", limit: 256 * 1024, timeout: timeout)
        return try UpdateCheck.verifyManifest(bytes, key: key, now: now)
    }

    /// Downloads one file of a verified manifest and checks its size and hash before returning it.
    public func fetchFile(_ entry: ReleaseManifest.File, timeout: Duration = .seconds(60)) async throws(UpdateFailure) -> [UInt8] {
        guard entry.size >= 0, entry.size <= 1 << 30 else { throw .fileSizeMismatch(name: entry.name) }
        let bytes = try await fetch("/" + entry.path, limit: Int(entry.size), timeout: timeout)
        try UpdateCheck.verifyFile(bytes, against: entry)
        return bytes
    }

    private func fetch(_ path: String, limit: Int, timeout: Duration) async throws(UpdateFailure) -> [UInt8] {
        let url = baseURL + path
        let response: HTTPFetcher.Response
        do {
            response = try await fetcher.get(url, maximumBodySize: limit, timeout: timeout)
        } catch {
            switch error {
            case .invalidURL: throw .invalidURL(baseURL)
            case let .unreachable(reason): throw .unreachable(url: url, reason: reason)
            case .timedOut: throw .unreachable(url: url, reason: "no answer in time")
            case .tooLarge:
                throw path == "/manifest.json"
                    ? .malformed("manifest larger than \(limit) bytes") : .fileSizeMismatch(name: String(path.split(separator: "/").last ?? ""))
            }
        }
        guard response.status == 200 else { throw .httpStatus(response.status, url: url) }
        return response.body
    }
}
