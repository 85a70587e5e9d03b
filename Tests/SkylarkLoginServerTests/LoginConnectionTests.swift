import Foundation
import SkylarkCrypto
import SkylarkNode
import SkylarkTestSupport
import SkylarkWire
import Testing

@testable import SkylarkLoginServer

/// The server's per-link state machine on its own: framing, limits and hostile input.
@Suite struct LoginConnectionTests {
    /// Expects `[.send(one MALFORMED error frame), .close]`.
    func expectMalformedClose(_ actions: [LoginConnection.Action], sourceLocation: SourceLocation = #_sourceLocation) throws {
        try #require(actions.count == 2, "expected [.send, .close], got \(actions)", sourceLocation: sourceLocation)
        guard case let .send(bytes) = actions[0], actions[1] == .close else {
            Issue.record("expected [.send, .close], got \(actions)", sourceLocation: sourceLocation)
            return
        }
        let frames = try serverFrames(bytes)
        guard frames.count == 1, case let .error(error)? = frames[0].body else {
            Issue.record("expected one plain error frame, got \(frames)", sourceLocation: sourceLocation)
            return
        }
        #expect(error.code == .malformed, sourceLocation: sourceLocation)
    }

    @Test func garbageGetsOneMalformedFrameThenClose() throws {
        var connection = LoginConnection()
        try expectMalformedClose(connection.receive(Array("GET / HTTP/1.1\r\nHost: login\r\n\r\n".utf8)))
        #expect(connection.isClosed)
        #expect(connection.receive([0, 0, 0, 1, 0]).isEmpty, "a closed link ignores further bytes")
        #expect(connection.endOfInput().isEmpty)

        // A plausible length, but the body is not protobuf.
        var second = LoginConnection()
        try expectMalformedClose(second.receive([0, 0, 0, 3, 0xff, 0xff, 0xff]))
    }

    @Test func oversizedHeaderIsRefusedAfterFourBytes() throws {
        var connection = LoginConnection()
        // 1 MiB announced: refused as soon as the 4th header byte arrives, no body needed.
        #expect(connection.receive([0x00]).isEmpty)
        #expect(connection.receive([0x10]).isEmpty)
        #expect(connection.receive([0x00]).isEmpty)
        try expectMalformedClose(connection.receive([0x00]))
        #expect(connection.isClosed)

        // Just over the 16 KiB limit: refused. Exactly at it: waits for the body.
        var over = LoginConnection()
        try expectMalformedClose(over.receive([0x00, 0x00, 0x40, 0x01]))
        var atLimit = LoginConnection()
        #expect(atLimit.receive([0x00, 0x00, 0x40, 0x00]).isEmpty)
        #expect(!atLimit.isClosed)
    }

    @Test func aFrameThatIsNotAClientFrameIsMalformed() throws {
        // A well-formed ServerFrame (error variant, field 2) sent the wrong way.
        var frame = LoginServerFrame()
        var error = LoginError()
        error.code = .internal
        error.message = "not from a client"
        frame.error = error
        var connection = LoginConnection()
        try expectMalformedClose(connection.receive(try MessageEncoder.encode(frame)))

        // An empty frame decodes as a ClientFrame with no body: refused too.
        var empty = LoginConnection()
        try expectMalformedClose(empty.receive([0, 0, 0, 0]))
    }

    @Test func linkClosesAfterMaximumRequests() throws {
        let fixture = try ServerFixture()
        defer { fixture.remove() }
        var connection = LoginConnection(maximumRequests: 2)
        let clients = try ["anna", "bert", "cleo"].map {
            try LoginClientExchange(.register(name: $0, password: "\($0)-password"), serverKey: TestKeys.login.publicKey, now: epoch)
        }
        // All three pipelined in one read: the third must never be served.
        var pending = connection.receive(clients.flatMap(\.requestBytes))
        var processed = 0
        var sent = 0
        var closed = false
        while !pending.isEmpty {
            switch pending.removeFirst() {
            case let .process(request):
                processed += 1
                pending += connection.completed(fixture.authority.handle(request, from: "192.0.2.1", now: epoch))
            case .send:
                sent += 1
            case .close:
                closed = true
                #expect(pending.isEmpty, "nothing after close")
            }
        }
        #expect(processed == 2)
        #expect(sent == 2)
        #expect(closed)
        #expect(connection.isClosed)
        #expect(try fixture.store.account(named: "anna") != nil)
        #expect(try fixture.store.account(named: "bert") != nil)
        #expect(try fixture.store.account(named: "cleo") == nil)
    }

    @Test func defaultLinkServesEightRequests() throws {
        let fixture = try ServerFixture()
        defer { fixture.remove() }
        var connection = LoginConnection()
        #expect(connection.maximumRequests == 8)
        for index in 0..<8 {
            #expect(!connection.isClosed, "closed before request \(index + 1)")
            // Invalid names: cheap for the server, and each is a full request/answer.
            let report = try exchange(
                .register(name: "x\(index)", password: "whatever-password"), authority: fixture.authority,
                connection: &connection, clientNow: epoch)
            guard case .invalidName? = report.failure else {
                Issue.record("request \(index + 1): \(String(describing: report.result))")
                return
            }
            #expect(report.closed == (index == 7))
        }
        #expect(connection.isClosed)
    }

    @Test func endOfInput() throws {
        var idle = LoginConnection()
        #expect(idle.endOfInput() == [.close])
        #expect(idle.isClosed)

        var partial = LoginConnection()
        #expect(partial.receive([0, 0, 1]).isEmpty)
        #expect(partial.endOfInput() == [.close])

        // While a request is being processed, the answer still goes out.
        let fixture = try ServerFixture()
        defer { fixture.remove() }
        let client = try LoginClientExchange(.register(name: "dora", password: "dora-password"), serverKey: TestKeys.login.publicKey, now: epoch)
        var busy = LoginConnection()
        let actions = busy.receive(client.requestBytes)
        guard case let .process(request)? = actions.first, actions.count == 1 else {
            Issue.record("expected one .process, got \(actions)")
            return
        }
        #expect(busy.endOfInput().isEmpty)
        let after = busy.completed(fixture.authority.handle(request, from: "192.0.2.1", now: epoch))
        guard case .send? = after.first else {
            Issue.record("the answer must still be sent, got \(after)")
            return
        }
        #expect(busy.endOfInput() == [.close])
        // A completion nobody asked for is ignored.
        #expect(busy.completed(fixture.authority.handle(request, from: "192.0.2.1", now: epoch)).isEmpty)
    }

    @Test func seededGarbageNeverCrashesAndAlwaysEndsCleanly() throws {
        let fixture = try ServerFixture()
        defer { fixture.remove() }
        let genuine = try LoginClientExchange(.register(name: "fuzz", password: "fuzz-password"), serverKey: TestKeys.login.publicKey, now: epoch).requestBytes
        var random = SeededGenerator(seed: 0x5EED_1234_ABCD_0001)
        var closedRuns = 0
        var waitingRuns = 0
        var processedRuns = 0

        for run in 0..<1000 {
            var buffer: [UInt8]
            switch run % 4 {
            case 0:  // pure noise
                buffer = (0..<Int.random(in: 0...64, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) }
            case 1:  // a small plausible header, a body of noise that may be short or long
                let length = Int.random(in: 0...300, using: &random)
                buffer = [0, 0, UInt8(length >> 8), UInt8(length & 0xff)]
                buffer += (0..<Int.random(in: 0...(length + 8), using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) }
            case 2:  // protobuf-shaped: field 1 (sealed), length-delimited, then noise
                let inner = (0..<Int.random(in: 0...120, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) }
                let body: [UInt8] = [0x0a, UInt8(min(inner.count, 127))] + inner
                buffer = [0, 0, 0, UInt8(body.count)] + body
            default:  // a genuine request with a few bytes flipped
                buffer = genuine
                for _ in 0..<Int.random(in: 1...3, using: &random) {
                    let index = Int.random(in: 0..<buffer.count, using: &random)
                    buffer[index] ^= UInt8.random(in: 1...255, using: &random)
                }
            }

            var connection = LoginConnection()
            var pending: [LoginConnection.Action] = []
            var offset = 0
            var sawClose = false
            var actionsAfterClose = 0
            var sentBytes: [UInt8] = []
            while offset < buffer.count || !pending.isEmpty {
                if pending.isEmpty {
                    let chunk = min(buffer.count - offset, Int.random(in: 1...40, using: &random))
                    pending = connection.receive(buffer[offset..<offset + chunk])
                    offset += chunk
                    continue
                }
                let action = pending.removeFirst()
                if sawClose { actionsAfterClose += 1 }
                switch action {
                case let .process(request):
                    processedRuns += 1
                    pending += connection.completed(fixture.authority.handle(request, from: "192.0.2.\(run % 250)", now: epoch))
                case let .send(bytes):
                    sentBytes += bytes
                case .close:
                    sawClose = true
                }
            }
            #expect(actionsAfterClose == 0, "run \(run)")
            // Whatever went out is well-formed server frames.
            #expect(throws: Never.self, "run \(run)") { _ = try serverFrames(sentBytes) }
            if sawClose {
                closedRuns += 1
                #expect(connection.isClosed, "run \(run)")
            } else {
                // Waiting for more bytes; the end of the stream closes it.
                waitingRuns += 1
                #expect(!connection.isClosed, "run \(run)")
                #expect(connection.endOfInput() == [.close], "run \(run)")
            }
        }
        #expect(closedRuns + waitingRuns == 1000)
        #expect(closedRuns > 300, "most garbage is refused at once")
        #expect(waitingRuns > 0, "some garbage just looks like a partial frame")
        #expect(processedRuns > 0, "some corrupted requests reach the authority")
        #expect(try fixture.store.account(named: "fuzz") == nil, "no corrupted request registered anything")
    }
}
