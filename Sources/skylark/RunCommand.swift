import ArgumentParser
import Foundation
import Logging
import NIOPosix
import ServiceLifecycle
import SkylarkNode
import SkylarkOverlay
import SkylarkWire

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a node in the foreground until SIGINT or SIGTERM: log in, attach to a supernode (or become one).",
        discussion: "Control it from another shell with the same --state: skylark status, buddy, search, msg, inbox, presence.")

    @Argument(help: "Your user name.") var name: String
    @OptionGroup var options: ClientOptions
    @Option(help: "Listen for links on HOST:PORT (TCP; UDP on the first); repeat to add ports such as 443.")
    var listen: [String] = []
    @Option(help: "Address other nodes should dial, if not the listening one (repeatable).") var advertise: [String] = []
    @Option(help: "Supernode role: auto (promote when publicly reachable), never, always.") var supernode: String = "auto"
    @Option(help: "auto: seconds of uptime before promotion.") var minUptime: Double = 60
    @Option(help: "auto: seconds between reachability (dial-back) checks.") var reachabilityInterval: Double = 30
    @Option(help: "auto: successful dial-backs in a row needed to promote.") var promoteAfter: Int = 2
    @Option(help: "auto: failed dial-backs in a row needed to demote.") var demoteAfter: Int = 2
    @Option(help: "auto: at most one role change per this many seconds.") var roleChangeInterval: Double = 600
    @Option(help: "auto: idle CPU share (0-1) needed to serve as a supernode.") var minIdleCpu: Double = 0.5
    @Option(help: "Seconds a dropped client has to come back before its buddies are told.") var departureGrace: Double = 2
    @Option(help: "What your microphone plays in calls: a 48 kHz WAV file, tone:HZ or silence.") var mic: String = "silence"
    @Option(help: "Where call audio goes: a WAV file (written as it arrives) or null.") var speaker: String = "null"
    @Flag(help: "Answer incoming calls and conference invitations at once (unattended nodes).") var autoAnswer = false
    @Option(help: "Uplink this node offers as a conference mixer, kb/s (default: the default route's link speed, else 1000).")
    var upstreamKbps: Int?
    @Option(help: "At most this many participants in a conference this node mixes.") var conferenceSize: Int = 32
    @Flag(help: "Print events as lines even on a terminal (no live console).") var noConsole = false

    func run() async throws {
        let logger = bootstrapLogging(level: options.logLevel)
        let profile = options.loadProfile()
        let canonical: String
        do { canonical = try UserName.canonical(name) } catch { fail(LoginFailure.invalidName(error.description).description, code: 10) }
        guard let mode = PromotionPolicy.Mode(rawValue: supernode) else { fail("--supernode must be auto, never or always", code: 1) }
        let listenEndpoints = (listen.isEmpty ? ["0.0.0.0:\(NodeConfiguration.defaultPort)"] : listen).map { text -> HostPort in
            guard let endpoint = HostPort(text) else { fail("--listen '\(text)' is not HOST:PORT", code: 1) }
            return endpoint
        }
        let advertised = advertise.map { text -> HostPort in
            guard let endpoint = HostPort(text) else { fail("--advertise '\(text)' is not HOST:PORT", code: 1) }
            return endpoint
        }
        await checkForUpdate(profile: profile)
        let password = readPassword(prompt: "Password for \(canonical): ", confirm: false)

        var configuration = NodeConfiguration(name: canonical, password: password, profile: profile, stateDirectory: options.stateDirectory,
                                              listen: listenEndpoints, supernodeMode: mode)
        configuration.advertise = advertised
        configuration.promotion.minimumUptime = minUptime
        configuration.promotion.requiredSuccesses = promoteAfter
        configuration.promotion.requiredFailures = demoteAfter
        configuration.promotion.roleChangeInterval = roleChangeInterval
        configuration.promotion.minimumIdleCPU = minIdleCpu
        configuration.reachabilityCheckInterval = reachabilityInterval
        configuration.supernode.departureGrace = departureGrace
        configuration.microphone = mic
        configuration.speaker = speaker == "null" ? nil : speaker
        configuration.autoAnswer = autoAnswer
        if let upstreamKbps {
            guard upstreamKbps > 0 else { fail("--upstream-kbps must be positive", code: 1) }
            configuration.upstreamKbps = upstreamKbps
        }
        guard conferenceSize >= 2 else { fail("--conference-size must be at least 2", code: 1) }
        configuration.conference.maximumParticipants = conferenceSize
        do { try AudioSourceSpec.check(mic) } catch { fail("--mic: \(error)", code: 1) }

        let interactive = !noConsole && isatty(STDOUT_FILENO) == 1
        let node = NodeRuntime(configuration: configuration, group: MultiThreadedEventLoopGroup.singleton, logger: logger, console: interactive) { ready in
            announce("skylark listening on \(ready.listening.map(\.description).joined(separator: ", ")); control socket \(ready.controlSocket)")
        }
        let group = ServiceGroup(configuration: .init(services: [node], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        do {
            try await group.run()
        } catch {
            fail("\(error)", code: 1)
        }
        if case let .failed(reason, code)? = node.outcome { fail(reason, code: code) }
    }
}

// MARK: - Control commands

struct ControlOptions: ParsableArguments {
    @Option(help: "State folder of the running node (default ~/.skylark).") var state: String?
    @Flag(help: "Print the answer as JSON.") var json = false

    var socketPath: String { NodeStateFiles(directory: state ?? ClientState.defaultDirectory()).controlSocketPath }

    /// Sends the request; on success returns the "result" object (or prints the JSON and exits).
    func send(_ request: ControlRequest) async -> Any {
        let line: String
        do { line = try await ControlClient.send(request, socketPath: socketPath) } catch let failure as ControlClient.Failure {
            if case .notRunning = failure { fail(failure.description, code: 12) }
            fail(failure.description, code: 1)
        } catch {
            fail("\(error)", code: 1)
        }
        guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { fail("the node gave an answer that is not JSON") }
        if json {
            print(line)
            Foundation.exit(object["ok"] as? Bool == true ? 0 : 1)
        }
        guard object["ok"] as? Bool == true else { fail(object["error"] as? String ?? "the node refused the request") }
        return object["result"] ?? [:]
    }
}

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show the running node: role, supernode, NAT type, buddies.")
    @OptionGroup var control: ControlOptions

    func run() async throws {
        guard let status = await control.send(ControlRequest(command: .status)) as? [String: Any] else { fail("bad answer") }
        func text(_ key: String) -> String { (status[key] as? String) ?? "-" }
        print("name:        \(text("name"))  (node id \(text("nodeID").prefix(16)))")
        print("role:        \(text("role")) — \(text("roleReason"))")
        print("supernode:   \(text("supernode"))")
        print("login:       \(text("loginPath"))")
        print("NAT type:    \(text("natType"))\(status["publicEndpoint"] is String ? ", public UDP \(text("publicEndpoint"))" : "")")
        print("presence:    \(text("presence"))")
        print("listening:   \((status["listen"] as? [String] ?? []).joined(separator: ", ")); advertised \((status["advertised"] as? [String] ?? []).joined(separator: ", "))")
        if let clients = status["attachedClients"] as? Int {
            print("serving:     \(clients) client(s), \(status["dhtContacts"] as? Int ?? 0) DHT contact(s), \(status["storedRecords"] as? Int ?? 0) record(s)")
        }
        print("host cache:  \(status["hostCacheEntries"] as? Int ?? 0) supernode(s), last refreshed over \(text("hostCacheRefresh"))")
        printBuddies(status["buddies"] as? [[String: Any]] ?? [])
    }
}

func printBuddies(_ buddies: [[String: Any]]) {
    if buddies.isEmpty { print("buddies:     none"); return }
    print("buddies:")
    for buddy in buddies {
        let name = (buddy["name"] as? String ?? "?").padding(toLength: 20, withPad: " ", startingAt: 0)
        let state = buddy["state"] as? String ?? "?"
        switch state {
        case "confirmed": print("  \(name) \(buddy["presence"] as? String ?? "?")\((buddy["supernode"] as? String).map { " (via \($0))" } ?? "")")
        case "incoming": print("  \(name) wants to be your buddy — skylark buddy accept \(buddy["name"] as? String ?? "")")
        default: print("  \(name) request sent, waiting for consent")
        }
    }
}

struct BuddyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "buddy", abstract: "Buddy list: add, accept, remove, list.",
                                                    subcommands: [Add.self, Accept.self, Remove.self, List.self])

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Ask NAME to be your buddy (they must accept).")
        @Argument var name: String
        @Option(help: "A note with the request.") var text: String = ""
        @OptionGroup var control: ControlOptions
        func run() async throws { printDone(await control.send(ControlRequest(command: .buddyAdd, name: name, text: text))) }
    }

    struct Accept: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Accept NAME's buddy request.")
        @Argument var name: String
        @OptionGroup var control: ControlOptions
        func run() async throws { printDone(await control.send(ControlRequest(command: .buddyAccept, name: name))) }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove NAME from your buddies (they are told).")
        @Argument var name: String
        @OptionGroup var control: ControlOptions
        func run() async throws { printDone(await control.send(ControlRequest(command: .buddyRemove, name: name))) }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List buddies with their presence.")
        @OptionGroup var control: ControlOptions
        func run() async throws { printBuddies(await control.send(ControlRequest(command: .buddyList)) as? [[String: Any]] ?? []) }
    }
}

func printDone(_ result: Any) {
    print((result as? [String: Any])?["done"] as? String ?? "done")
}

struct Search: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Find a user in the network's directory (exact name).")
    @Argument var name: String
    @OptionGroup var control: ControlOptions

    func run() async throws {
        guard let result = await control.send(ControlRequest(command: .search, name: name)) as? [String: Any] else { fail("bad answer") }
        let who = result["name"] as? String ?? name
        guard result["found"] as? Bool == true else {
            print("\(who): not found (offline or no such user)")
            return
        }
        var line = "\(who): \(result["status"] as? String ?? "?") via supernode \(result["supernode"] as? String ?? "?")"
        if let nat = result["natType"] as? String, !nat.isEmpty { line += ", NAT \(nat)" }
        if let endpoint = result["publicEndpoint"] as? String, !endpoint.isEmpty { line += ", public UDP \(endpoint)" }
        line += " (\(result["hops"] as? Int ?? 0) DHT hop(s))"
        print(line)
    }
}

struct Msg: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Send an end-to-end encrypted message to a buddy (stored if they are offline).")
    @Argument var name: String
    @Argument(help: "The message text.") var text: String
    @OptionGroup var control: ControlOptions

    func run() async throws {
        guard let result = await control.send(ControlRequest(command: .message, name: name, text: text)) as? [String: Any] else { fail("bad answer") }
        let to = result["to"] as? String ?? name
        switch result["state"] as? String {
        case "delivered": print("delivered to \(to)")
        case "stored": print("\(to) is offline: stored on \(result["replicas"] as? Int ?? 0) supernode(s), delivered at their next login")
        default: print("queued: will be sent as soon as a supernode accepts it")
        }
    }
}

struct Inbox: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Messages received, and the state of messages sent.")
    @OptionGroup var control: ControlOptions

    func run() async throws {
        guard let result = await control.send(ControlRequest(command: .inbox)) as? [String: Any] else { fail("bad answer") }
        let messages = result["messages"] as? [[String: Any]] ?? []
        let formatter = ISO8601DateFormatter()
        if messages.isEmpty { print("no messages") }
        for message in messages {
            let at = (message["sentAt"] as? Double).map { formatter.string(from: Date(timeIntervalSince1970: $0)) } ?? "?"
            print("\(at)  \(message["from"] as? String ?? "?"): \(message["text"] as? String ?? "")")
        }
        let outbox = result["outbox"] as? [[String: Any]] ?? []
        if !outbox.isEmpty { print("sent:") }
        for message in outbox {
            var state = message["state"] as? String ?? "?"
            if let replicas = message["replicas"] as? Int { state += " on \(replicas) supernode(s)" }
            if message["receipt"] as? Bool == true { state += ", receipt" }
            print("  to \(message["to"] as? String ?? "?"): \(state)")
        }
    }
}

struct Presence: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Set your presence: online or away.")
    @Argument(help: "online or away") var status: String
    @OptionGroup var control: ControlOptions
    func run() async throws { printDone(await control.send(ControlRequest(command: .presence, text: status))) }
}

// MARK: - Calls

struct Call: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Call a buddy (voice, end-to-end encrypted).")
    @Argument var name: String
    @Flag(help: "Start on a relay circuit and move to a UDP path once found (diagnostic).") var relayFirst = false
    @OptionGroup var control: ControlOptions
    func run() async throws {
        printCall(await control.send(ControlRequest(command: .call, name: name, text: relayFirst ? "relay-first" : nil)))
    }
}

struct Answer: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Answer the ringing call (or the one whose id starts with ID), or join a ringing conference.")
    @Argument var id: String?
    @OptionGroup var control: ControlOptions
    func run() async throws {
        let result = await control.send(ControlRequest(command: .answer, name: id))
        if (result as? [String: Any])?["initiator"] != nil { printConference(result) } else { printCall(result) }
    }
}

struct Hangup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "End the call in progress (or decline a ringing one).")
    @Argument var id: String?
    @OptionGroup var control: ControlOptions
    func run() async throws { printCall(await control.send(ControlRequest(command: .hangup, name: id))) }
}

struct Calls: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Calls: path (direct, punched or relayed and through which supernodes), RTT, loss, jitter, bitrate.")
    @OptionGroup var control: ControlOptions
    func run() async throws {
        let calls = await control.send(ControlRequest(command: .calls)) as? [[String: Any]] ?? []
        if calls.isEmpty { print("no calls") }
        for call in calls { printCall(call) }
    }
}

func printCall(_ result: Any) {
    guard let call = result as? [String: Any] else { return print("done") }
    func text(_ key: String) -> String { (call[key] as? String) ?? "-" }
    func number(_ key: String, _ unit: String) -> String { (call[key] as? Double).map { String(format: "%.1f%@", $0, unit) } ?? "-" }
    print("call \(text("id").prefix(8)) \(text("direction")) \(text("peer")): \(text("state"))\(call["ended"] is String ? " (\(text("ended")))" : "")")
    if call["pathDetail"] is String { print("  path: \(text("pathDetail"))") }
    if call["state"] as? String == "active" || call["packetsReceived"] != nil {
        print("  rtt \(number("rttMilliseconds", " ms"))  loss \(number("lossPercent", " %"))  jitter \(number("jitterMilliseconds", " ms"))  bitrate \(number("bitrateKbps", " kb/s"))  setup \(number("setupMilliseconds", " ms"))")
    }
}

// MARK: - Conferences

struct Conf: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Conferences: audio mixed at an elected node (a participant or a supernode outside the conference).",
        subcommands: [ConfStart.self, ConfAdd.self, ConfLeave.self, ConfStatus.self])
}

struct ConfStart: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "start", abstract: "Start a conference with these buddies.")
    @Argument(help: "Buddies to invite.") var names: [String]
    @OptionGroup var control: ControlOptions
    func run() async throws { printConference(await control.send(ControlRequest(command: .conferenceStart, names: names))) }
}

struct ConfAdd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "add", abstract: "Invite one more buddy into your conference.")
    @Argument var name: String
    @OptionGroup var control: ControlOptions
    func run() async throws { printConference(await control.send(ControlRequest(command: .conferenceAdd, name: name))) }
}

struct ConfLeave: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "leave", abstract: "Leave your conference (or decline a ringing invitation).")
    @OptionGroup var control: ControlOptions
    func run() async throws { printConference(await control.send(ControlRequest(command: .conferenceLeave))) }
}

struct ConfStatus: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "Conferences: who mixes and why, members, your leg's path and quality.")
    @OptionGroup var control: ControlOptions
    func run() async throws {
        let conferences = await control.send(ControlRequest(command: .conferenceStatus)) as? [[String: Any]] ?? []
        if conferences.isEmpty { print("no conferences") }
        for conference in conferences { printConference(conference) }
    }
}

func printConference(_ result: Any) {
    guard let conference = result as? [String: Any] else { return print("done") }
    func text(_ key: String) -> String { (conference[key] as? String) ?? "-" }
    let ended = conference["ended"] is String ? " (\(text("ended")))" : ""
    let role = conference["participating"] as? Bool == false ? ", mixing for others" : ""
    print("conference \(text("id").prefix(8)) of \(text("initiator")): \(text("state"))\(ended)\(role)")
    if conference["mixer"] is String {
        print("  mixer: \(text("mixer"))\(conference["weMix"] as? Bool == true ? " (this node)" : "") — \(text("mixerReason"))")
    }
    if let members = conference["members"] as? [String], !members.isEmpty { print("  members: \(members.joined(separator: ", "))") }
    if let invited = conference["invited"] as? [String], !invited.isEmpty { print("  invited: \(invited.joined(separator: ", "))") }
    if let history = conference["mixerHistory"] as? [[String: Any]], history.count > 1 {
        print("  mixers so far: \(history.compactMap { $0["name"] as? String }.joined(separator: " → "))")
    }
    if let leg = conference["leg"] as? [String: Any] {
        func number(_ key: String, _ unit: String) -> String { (leg[key] as? Double).map { String(format: "%.1f%@", $0, unit) } ?? "-" }
        print("  leg to \(leg["peer"] as? String ?? "-"): \(leg["pathDetail"] as? String ?? "connecting"); rtt \(number("rttMilliseconds", " ms"))  loss \(number("lossPercent", " %"))  jitter \(number("jitterMilliseconds", " ms"))")
    }
    for leg in conference["legs"] as? [[String: Any]] ?? [] {
        print("  leg from \(leg["participant"] as? String ?? "-"): \(leg["path"] as? String ?? "connecting"); \(leg["packetsReceived"] as? Int ?? 0) packets in, \(leg["packetsSent"] as? Int ?? 0) out")
    }
    if let mixing = conference["mixing"] as? [String: Any] {
        print("  mixing: \(mixing["ticks"] as? Int ?? 0) ticks, \(mixing["decodes"] as? Int ?? 0) decodes, \(mixing["encodes"] as? Int ?? 0) encodes (\(mixing["sharedEncodes"] as? Int ?? 0) shared by listeners)")
    }
}
