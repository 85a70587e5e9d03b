import ArgumentParser
import Foundation
import Logging
import NIOPosix
import SkylarkAudio
import SkylarkCLI
import SkylarkClientCLI
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
    @Option(
        help:
            "What your microphone plays in calls: pulse (the sound server's default source), pulse:SOURCE, alsa (ALSA's default), alsa:PCM, a 48 kHz WAV file, tone:HZ or silence. Default: pulse on a terminal when a sound server answers, else silence."
    )
    var mic: String?
    @Option(
        help:
            "Where call audio goes: pulse (the sound server's default sink), pulse:SINK, alsa, alsa:PCM, a WAV file (written as it arrives) or null. Default: pulse on a terminal when a sound server answers, else null."
    )
    var speaker: String?
    @Option(help: "Acoustic echo cancellation on device audio (speexdsp): on or off.") var echoCancel: Switch = .on
    @Option(help: "Noise suppression on device audio: on or off.") var noiseSuppression: Switch = .on
    @Option(help: "Automatic gain control on device audio: on or off.") var gainControl: Switch = .on
    @Option(help: "Leave a live microphone's silence unsent (discontinuous transmission): on or off.") var dtx: Switch = .on
    @Flag(help: "Answer incoming calls and conference invitations at once (unattended nodes).") var autoAnswer = false
    @Option(help: "Uplink this node offers as a conference mixer, kb/s (default: the default route's link speed, else 1000).")
    var upstreamKbps: Int?
    @Option(help: "At most this many participants in a conference this node mixes.") var conferenceSize: Int = 32
    @Flag(help: "Print events as lines even on a terminal (no live console).") var noConsole = false

    func run() async throws {
        let logger = tool.bootstrapLogging(level: options.logLevel, fallback: .warning)
        let interactive = !noConsole && isatty(STDOUT_FILENO) == 1
        // On a terminal a person is listening: the sound server's devices, if one answers.
        let soundServer = (mic == nil || speaker == nil) && interactive && (try? PulseServer().devices(timeout: 1)) != nil
        let mic = mic ?? (soundServer ? "pulse" : "silence")
        let speaker = speaker ?? (soundServer ? "pulse" : "null")
        if interactive && !soundServer && (self.mic == nil || self.speaker == nil) {
            // A person at a terminal would otherwise wonder why a call is silent.
            tool.warn(
                "no sound server answered (PULSE_SERVER, XDG_RUNTIME_DIR): calls send silence and play nowhere; start one (pulseaudio --start) or pass --mic and --speaker"
            )
        }
        let profile = options.loadProfile()
        let canonical: String
        do { canonical = try UserName.canonical(name) } catch { tool.fail(LoginFailure.invalidName(error.description).description, code: 10) }
        guard let mode = PromotionPolicy.Mode(rawValue: supernode) else { tool.fail("--supernode must be auto, never or always", code: 1) }
        let listenEndpoints = (listen.isEmpty ? ["0.0.0.0:\(NodeConfiguration.defaultPort)"] : listen).map { tool.endpoint($0, option: "--listen") }
        let advertised = advertise.map { tool.endpoint($0, option: "--advertise") }
        await checkForUpdate(profile: profile)
        let password = readPassword(prompt: "Password for \(canonical): ", confirm: false)

        var configuration = NodeConfiguration(
            name: canonical, password: password, profile: profile, stateDirectory: options.stateDirectory,
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
        configuration.voiceProcessing = VoiceProcessing(
            echoCancellation: echoCancel == .on, noiseSuppression: noiseSuppression == .on, gainControl: gainControl == .on)
        configuration.discontinuousTransmission = dtx == .on
        if let upstreamKbps {
            guard upstreamKbps > 0 else { tool.fail("--upstream-kbps must be positive", code: 1) }
            configuration.upstreamKbps = upstreamKbps
        }
        guard conferenceSize >= 2 else { tool.fail("--conference-size must be at least 2", code: 1) }
        configuration.conference.maximumParticipants = conferenceSize
        do { try AudioSourceSpec.check(mic) } catch { tool.fail("--mic: \(error)", code: 1) }
        do { try AudioSinkSpec.check(speaker) } catch { tool.fail("--speaker: \(error)", code: 1) }

        let node = NodeRuntime(configuration: configuration, group: MultiThreadedEventLoopGroup.singleton, logger: logger, console: interactive) { ready in
            announce("skylark listening on \(ready.listening.map(\.description).joined(separator: ", ")); control socket \(ready.controlSocket)")
        }
        try await tool.runUntilSignalled([node], logger: logger)
        if case let .failed(reason, code)? = node.outcome { tool.fail(reason, code: code) }
    }
}

// MARK: - Control commands

struct ControlOptions: ParsableArguments {
    @Option(help: "State folder of the running node (default ~/.skylark).") var state: String?
    @Flag(help: "Print the answer as JSON.") var json = false

    var socketPath: String { NodeStateFiles(directory: state ?? ClientState.defaultDirectory()).controlSocketPath }

    /// Sends the request and returns its typed result (with --json, prints the answer line as it came and exits).
    func send<Result: Codable & Sendable>(_ request: ControlRequest) async -> Result {
        let line: String
        do { line = try await ControlClient.send(request, socketPath: socketPath) } catch let failure as ControlClient.Failure {
            if case .notRunning = failure { tool.fail(failure.description, code: 12) }
            tool.fail(failure.description, code: 1)
        } catch {
            tool.fail("\(error)", code: 1)
        }
        do {
            if json {
                let ok = try ControlAnswers.isOK(line)
                print(line)
                Foundation.exit(ok ? 0 : 1)
            }
            return try ControlAnswers.result(of: line)
        } catch {
            tool.fail(error.description)
        }
    }
}

/// on or off, for flags that take one.
enum Switch: String, ExpressibleByArgument {
    case on, off
}

func printLines(_ lines: [String]) {
    for line in lines { print(line) }
}

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show the running node: role, supernode, NAT type, buddies.")
    @OptionGroup var control: ControlOptions

    func run() async throws {
        printLines(ControlReport.status(await control.send(ControlRequest(command: .status))))
    }
}

struct BuddyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "buddy", abstract: "Buddy list: add, accept, remove, list.",
        subcommands: [Add.self, Accept.self, Remove.self, List.self])

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Ask NAME to be your buddy (they must accept).")
        @Argument var name: String
        @Option(help: "A note with the request.") var text: String = ""
        @OptionGroup var control: ControlOptions
        func run() async throws { printLines(ControlReport.done(await control.send(ControlRequest(command: .buddyAdd, name: name, text: text)))) }
    }

    struct Accept: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Accept NAME's buddy request.")
        @Argument var name: String
        @OptionGroup var control: ControlOptions
        func run() async throws { printLines(ControlReport.done(await control.send(ControlRequest(command: .buddyAccept, name: name)))) }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove NAME from your buddies (they are told).")
        @Argument var name: String
        @OptionGroup var control: ControlOptions
        func run() async throws { printLines(ControlReport.done(await control.send(ControlRequest(command: .buddyRemove, name: name)))) }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List buddies with their presence.")
        @OptionGroup var control: ControlOptions
        func run() async throws { printLines(ControlReport.buddies(await control.send(ControlRequest(command: .buddyList)))) }
    }
}

struct Search: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Find a user in the network's directory (exact name).")
    @Argument var name: String
    @OptionGroup var control: ControlOptions

    func run() async throws {
        printLines(ControlReport.search(await control.send(ControlRequest(command: .search, name: name))))
    }
}

struct Msg: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Send an end-to-end encrypted message to a buddy (stored if they are offline).")
    @Argument var name: String
    @Argument(help: "The message text.") var text: String
    @OptionGroup var control: ControlOptions

    func run() async throws {
        printLines(ControlReport.message(await control.send(ControlRequest(command: .message, name: name, text: text))))
    }
}

struct Inbox: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Messages received, and the state of messages sent.")
    @OptionGroup var control: ControlOptions

    func run() async throws {
        printLines(ControlReport.inbox(await control.send(ControlRequest(command: .inbox))))
    }
}

struct Presence: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Set your presence: online or away.")
    @Argument(help: "online or away") var status: String
    @OptionGroup var control: ControlOptions
    func run() async throws { printLines(ControlReport.done(await control.send(ControlRequest(command: .presence, text: status)))) }
}

// MARK: - Audio

struct Mute: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Mute your microphone in calls (the far end hears silence).")
    @OptionGroup var control: ControlOptions
    func run() async throws { printLines(ControlReport.audio(await control.send(ControlRequest(command: .mute)))) }
}

struct Unmute: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Unmute your microphone.")
    @OptionGroup var control: ControlOptions
    func run() async throws { printLines(ControlReport.audio(await control.send(ControlRequest(command: .unmute)))) }
}

struct Volume: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Set the speaker volume, in percent (0-200; 100 plays calls as they arrive).")
    @Argument(help: "0 to 200") var percent: Int
    @OptionGroup var control: ControlOptions
    func run() async throws { printLines(ControlReport.audio(await control.send(ControlRequest(command: .volume, text: "\(percent)")))) }
}

// MARK: - Calls

struct Call: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Call a buddy (voice, end-to-end encrypted).")
    @Argument var name: String
    @Flag(help: "Start on a relay circuit and move to a UDP path once found (diagnostic).") var relayFirst = false
    @OptionGroup var control: ControlOptions
    func run() async throws {
        printLines(ControlReport.call(await control.send(ControlRequest(command: .call, name: name, text: relayFirst ? "relay-first" : nil))))
    }
}

struct Answer: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Answer the ringing call (or the one whose id starts with ID), or join a ringing conference.")
    @Argument var id: String?
    @OptionGroup var control: ControlOptions
    func run() async throws {
        printLines(ControlReport.callOrConference(await control.send(ControlRequest(command: .answer, name: id))))
    }
}

struct Hangup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "End the call in progress (or decline a ringing one).")
    @Argument var id: String?
    @OptionGroup var control: ControlOptions
    func run() async throws { printLines(ControlReport.call(await control.send(ControlRequest(command: .hangup, name: id)))) }
}

struct Calls: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Calls: path (direct, punched or relayed and through which supernodes), RTT, loss, jitter, bitrate.")
    @OptionGroup var control: ControlOptions
    func run() async throws {
        printLines(ControlReport.calls(await control.send(ControlRequest(command: .calls))))
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
    func run() async throws { printLines(ControlReport.conference(await control.send(ControlRequest(command: .conferenceStart, names: names)))) }
}

struct ConfAdd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "add", abstract: "Invite one more buddy into your conference.")
    @Argument var name: String
    @OptionGroup var control: ControlOptions
    func run() async throws { printLines(ControlReport.conference(await control.send(ControlRequest(command: .conferenceAdd, name: name)))) }
}

struct ConfLeave: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "leave", abstract: "Leave your conference (or decline a ringing invitation).")
    @OptionGroup var control: ControlOptions
    func run() async throws { printLines(ControlReport.conference(await control.send(ControlRequest(command: .conferenceLeave)))) }
}

struct ConfStatus: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "Conferences: who mixes and why, members, your leg's path and quality.")
    @OptionGroup var control: ControlOptions
    func run() async throws {
        printLines(ControlReport.conferences(await control.send(ControlRequest(command: .conferenceStatus))))
    }
}
