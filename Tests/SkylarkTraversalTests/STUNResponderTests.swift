import SkylarkTestSupport
import SkylarkWire
import Testing

@testable import SkylarkTraversal

@Suite("STUNResponder")
struct STUNResponderTests {
    let transactionID: [UInt8] = [9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 0xAA, 0xBB]
    let source = HostPort(host: "198.51.100.23", port: 54321)

    @Test("A Binding request is answered with the source address (XOR and plain), SOFTWARE and FINGERPRINT")
    func answersBindingRequest() throws {
        let request = STUNMessage.bindingRequest(transactionID: transactionID, software: "client").encoded()
        let answer = try #require(STUNResponder.respond(to: request, from: source, software: "skylark-sn 1.0"))
        let response = try STUNMessage.decode(answer)
        #expect(response.messageClass == .successResponse)
        #expect(response.method == .binding)
        #expect(response.transactionID == transactionID)
        #expect(try response.xorMappedAddress() == source)
        #expect(try response.mappedAddress() == source)
        #expect(response.software == "skylark-sn 1.0")
        #expect(response.hasFingerprint)
    }

    @Test("An IPv6 source is reported in IPv6 form")
    func ipv6Source() throws {
        let source6 = HostPort(host: "2001:db8::42", port: 3478)
        let request = STUNMessage.bindingRequest(transactionID: transactionID).encoded()
        let response = try STUNMessage.decode(try #require(STUNResponder.respond(to: request, from: source6, software: "sn")))
        #expect(try response.xorMappedAddress() == source6)
    }

    @Test("A request without FINGERPRINT (as old clients send) is answered too")
    func requestWithoutFingerprint() throws {
        let request = STUNMessage(messageClass: .request, method: .binding, transactionID: transactionID).encoded()
        #expect(request.count == 20)
        let response = try STUNMessage.decode(try #require(STUNResponder.respond(to: request, from: source, software: "sn")))
        #expect(try response.xorMappedAddress() == source)
    }

    @Test("Responses, indications, other methods, damaged requests and garbage get no answer")
    func silentOnEverythingElse() throws {
        let success = try #require(
            STUNResponder.respond(
                to: STUNMessage.bindingRequest(transactionID: transactionID).encoded(), from: source, software: "sn"))
        #expect(STUNResponder.respond(to: success, from: source, software: "sn") == nil)
        #expect(STUNResponder.respond(to: RFC5769.ipv4Response, from: source, software: "sn") == nil)

        let error = STUNMessage(messageClass: .errorResponse, method: .binding, transactionID: transactionID, hasFingerprint: true)
        #expect(STUNResponder.respond(to: error.encoded(), from: source, software: "sn") == nil)
        let indication = STUNMessage(messageClass: .indication, method: .binding, transactionID: transactionID)
        #expect(STUNResponder.respond(to: indication.encoded(), from: source, software: "sn") == nil)
        let allocate = STUNMessage(messageClass: .request, method: .init(0x003), transactionID: transactionID)
        #expect(STUNResponder.respond(to: allocate.encoded(), from: source, software: "sn") == nil)

        var damaged = STUNMessage.bindingRequest(transactionID: transactionID).encoded()
        damaged[10] ^= 0x01
        #expect(STUNResponder.respond(to: damaged, from: source, software: "sn") == nil)

        var random = SeededGenerator(seed: 42)
        for _ in 0..<200 {
            let garbage = (0..<Int.random(in: 0...64, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) }
            #expect(STUNResponder.respond(to: garbage, from: source, software: "sn") == nil)
        }
        #expect(STUNResponder.respond(to: [0xD5] + [UInt8](repeating: 0, count: 40), from: source, software: "sn") == nil)
    }

    @Test("A source that is not a numeric address gets no answer")
    func nonNumericSource() {
        let request = STUNMessage.bindingRequest(transactionID: transactionID).encoded()
        #expect(STUNResponder.respond(to: request, from: HostPort(host: "localhost", port: 1), software: "sn") == nil)
    }

    @Test("Unknown comprehension-required attributes get a 420 listing each once; unknown optional ones are ignored")
    func unknownAttributes() throws {
        var request = STUNMessage.bindingRequest(transactionID: transactionID)
        request.attributes.append(.init(type: .init(0x0003), value: [0, 0, 0, 6]))  // CHANGE-REQUEST (RFC 5780)
        request.attributes.append(.init(type: .init(0x7777), value: [1]))
        request.attributes.append(.init(type: .init(0x0003), value: [0, 0, 0, 2]))
        request.attributes.append(.init(type: .init(0x8888), value: [1, 2]))
        request.attributes.append(.init(type: .username, value: Array("alice".utf8)))
        let answer = try #require(STUNResponder.respond(to: request.encoded(), from: source, software: "sn"))
        let response = try STUNMessage.decode(answer)
        #expect(response.messageClass == .errorResponse)
        #expect(response.method == .binding)
        #expect(response.transactionID == transactionID)
        #expect(try response.errorCode()?.code == 420)
        #expect(try response.unknownAttributes() == [.init(0x0003), .init(0x7777)])
        #expect(try response.xorMappedAddress() == nil)
        #expect(response.hasFingerprint)

        var optionalOnly = STUNMessage.bindingRequest(transactionID: transactionID)
        optionalOnly.attributes.append(.init(type: .init(0x8888), value: [1, 2]))
        optionalOnly.attributes.append(.init(type: .username, value: Array("alice".utf8)))
        let accepted = try STUNMessage.decode(try #require(STUNResponder.respond(to: optionalOnly.encoded(), from: source, software: "sn")))
        #expect(accepted.messageClass == .successResponse)
    }
}
