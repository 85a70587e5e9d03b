import SkylarkOverlay
import SkylarkWire

/// Logging in: directly at the login server first; if it cannot be reached, through the
/// supernode link once one is up (the supernode carries the sealed exchange, and sees nothing
/// of it); if it still cannot be reached, or no supernode comes, the node gives up.
///
/// Sans-I/O: the reactor starts the direct login and the relayed one, and feeds in their
/// results and the supernode link's coming and going; what to do next comes back as `Step`.
struct LoginProgress {
    enum State {
        case notStarted
        case direct
        /// The login server could not be reached directly: log in through the supernode link.
        case waitingForRelay(since: Double, directFailure: String)
        case relaying(LoginClientExchange)
        case done(path: String)
    }

    enum Step: Equatable {
        case loggedIn(Credential, path: String)
        /// Send the relayed login through the supernode link now.
        case relay
        /// Wait for a supernode link to relay through.
        case waitForSupernode
        /// Relaying failed too (the reactor says where the server was and stops).
        case relayFailed(String)
        case fail(String, exitCode: Int32)
    }

    private(set) var state: State = .notStarted

    var isDone: Bool { if case .done = state { true } else { false } }

    /// What `status` shows.
    var description: String {
        switch state {
        case .notStarted, .direct: return "logging in"
        case .waitingForRelay: return "waiting for a supernode to relay the login"
        case .relaying: return "logging in through a supernode"
        case let .done(path): return path
        }
    }

    mutating func startedDirect() { state = .direct }

    /// The direct login ended; `supernodeLinkUp`: whether a relay could go out at once.
    mutating func directFinished(_ result: Result<Credential, LoginFailure>, now: Double, supernodeLinkUp: Bool) -> Step? {
        guard case .direct = state else { return nil }
        switch result {
        case let .success(credential):
            return .loggedIn(credential, path: "direct")
        case let .failure(failure):
            switch failure {
            case .serverUnreachable, .timedOut:
                state = .waitingForRelay(since: now, directFailure: failure.description)
                return supernodeLinkUp ? .relay : .waitForSupernode
            default:
                return .fail(failure.description, exitCode: failure.exitCode)
            }
        }
    }

    /// A supernode link came up: true if a relayed login should go out through it.
    func wantsRelay() -> Bool {
        if case .waitingForRelay = state { true } else { false }
    }

    mutating func relaying(_ exchange: LoginClientExchange) { state = .relaying(exchange) }

    /// The supernode link went down: a login relayed through it never got its answer, so it
    /// is relayed through the next one.
    mutating func supernodeLinkLost(now: Double) {
        if case .relaying = state { state = .waitingForRelay(since: now, directFailure: "login server unreachable directly") }
    }

    /// Gives up when no supernode came to relay through within `limit` seconds.
    func timedOut(now: Double, supernodeLinkUp: Bool, limit: Double) -> Step? {
        guard case let .waitingForRelay(since, directFailure) = state, !supernodeLinkUp, now - since > limit else { return nil }
        return .fail("\(directFailure), and no supernode could be reached to relay the login", exitCode: 6)
    }

    /// The supernode's answer to the relayed login; `via`: the supernode's name.
    mutating func relayAnswered(_ message: OvLinkMessage, via: String) -> Step? {
        guard case var .relaying(exchange) = state else { return nil }
        switch message.body {
        case let .loginRelayReply(reply)?:
            do {
                if let outcome = try exchange.receive(Array(reply.answer)), case let .loggedIn(credential) = outcome {
                    return .loggedIn(credential, path: "via supernode \(via)")
                }
                return .relayFailed("incomplete answer")
            } catch {
                return .fail(error.description, exitCode: error.exitCode)
            }
        case let .refused(refused)?:
            return .relayFailed(refused.reason)
        default:
            return .relayFailed("unexpected answer")
        }
    }

    mutating func loggedIn(path: String) { state = .done(path: path) }
}
