import Foundation
import SkylarkCrypto
import SkylarkTestSupport
import SkylarkWire
import Testing

@testable import SkylarkOverlay

@Suite("MessageSealing")
struct MessageSealingTests {
    let recipient = try! X25519.PrivateKey()
    let id: [UInt8] = Array(0..<16)

    var recipientPublic: [UInt8] { try! recipient.publicKey() }

    func seal(_ text: String, from: String = "alice", to: String = "bob", id: [UInt8]? = nil) throws -> OvSealedText {
        try MessageSealing.seal(text, to: recipientPublic, from: from, to: to, id: id ?? self.id)
    }

    func openError(
        _ sealed: OvSealedText, key: X25519.PrivateKey? = nil, from: String = "alice", to: String = "bob",
        id: [UInt8]? = nil
    ) -> MessageSealing.Failure? {
        do {
            _ = try MessageSealing.open(sealed, with: key ?? recipient, from: from, to: to, id: id ?? self.id)
            return nil
        } catch {
            return error
        }
    }

    @Test("Seal then open returns the text", arguments: ["hello bob", "", "héllo, 世界 👋", String(repeating: "long ", count: 2000)])
    func roundTrip(text: String) throws {
        let sealed = try seal(text)
        #expect(sealed.ephemeralKey.count == X25519.keyByteCount)
        #expect(sealed.nonce.count == AESGCM.nonceByteCount)
        #expect(try MessageSealing.open(sealed, with: recipient, from: "alice", to: "bob", id: id) == text)
        // The ciphertext does not contain the text.
        if text.utf8.count >= 8 {
            let plain = Array(text.utf8)
            let cipher = Array(sealed.ciphertext)
            #expect(!cipher.indices.dropLast(plain.count - 1).contains { Array(cipher[$0..<$0 + plain.count]) == plain })
        }
    }

    @Test("Two seals of the same text differ (fresh ephemeral key and nonce)")
    func freshEachTime() throws {
        let first = try seal("same")
        let second = try seal("same")
        #expect(first.ephemeralKey != second.ephemeralKey)
        #expect(first.ciphertext != second.ciphertext)
    }

    @Test("Another recipient's key cannot open")
    func wrongRecipient() throws {
        let sealed = try seal("for bob only")
        #expect(openError(sealed, key: try X25519.PrivateKey()) == .cannotOpen)
        #expect(openError(sealed) == nil)
    }

    @Test("Opening under another sender, recipient or id fails")
    func boundToEnvelope() throws {
        let sealed = try seal("bound")
        #expect(openError(sealed, from: "carol") == .cannotOpen)
        #expect(openError(sealed, to: "carol") == .cannotOpen)
        #expect(openError(sealed, id: Array(1..<17)) == .cannotOpen)
        #expect(openError(sealed, id: []) == .cannotOpen)
        // Fields are length-prefixed: moving a character from one to the other does not collide.
        #expect(openError(sealed, from: "alic", to: "ebob") == .cannotOpen)
        #expect(openError(sealed) == nil)
    }

    @Test("A flipped bit in the ciphertext, nonce or ephemeral key fails")
    func tampered() throws {
        let sealed = try seal("integrity matters")
        for bit in stride(from: 0, to: sealed.ciphertext.count * 8, by: 11) {
            var copy = sealed
            copy.ciphertext = flipping(sealed.ciphertext, bit: bit)
            #expect(openError(copy) == .cannotOpen, "ciphertext bit \(bit)")
        }
        var nonce = sealed
        nonce.nonce = flipping(sealed.nonce, bit: 0)
        #expect(openError(nonce) == .cannotOpen)
        var ephemeral = sealed
        ephemeral.ephemeralKey = flipping(sealed.ephemeralKey, bit: 5)
        #expect(openError(ephemeral) == .cannotOpen)
        var truncated = sealed
        truncated.ciphertext = sealed.ciphertext.dropLast()
        #expect(openError(truncated) == .cannotOpen)
    }

    @Test("Wrong-length ephemeral key or nonce is malformed")
    func malformed() throws {
        let sealed = try seal("x")
        var shortKey = sealed
        shortKey.ephemeralKey = sealed.ephemeralKey.dropLast()
        #expect(openError(shortKey) == .malformed)
        var longNonce = sealed
        longNonce.nonce = sealed.nonce + Data([0])
        #expect(openError(longNonce) == .malformed)
        #expect(openError(OvSealedText()) == .malformed)
    }
}
