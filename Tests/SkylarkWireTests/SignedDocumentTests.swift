import Foundation
import SkylarkCrypto
import SkylarkTestSupport
import SkylarkWire
import Testing

@Suite("SignedDocument<NetworkProfile>")
struct SignedDocumentTests {
    static func profile() throws -> NetworkProfile {
        NetworkProfile(
            loginAddress: "login.example:7000", loginPublicKey: try TestKeys.login.publicKey.pem(),
            updateURL: "http://updates.example:8080", updatePublicKey: try TestKeys.update.publicKey.pem(),
            supernodes: ["sn1.example:33033", "[2001:db8::7]:33033"], issuedAt: 1_700_000_000)
    }

    @Test("sign then verifiedBody returns the body")
    func signThenVerify() throws {
        let body = try Self.profile()
        let document = try SignedDocument.sign(body, with: TestKeys.login)
        #expect(try document.verifiedBody(with: TestKeys.login.publicKey) == body)
        #expect(Data(base64Encoded: document.signature)?.count == 256)
    }

    @Test("Verifying with another key throws .badSignature")
    func otherKey() throws {
        let document = try SignedDocument.sign(try Self.profile(), with: TestKeys.login)
        #expect(throws: DocumentError.badSignature) { try document.verifiedBody(with: TestKeys.other.publicKey) }
    }

    @Test("Changing any field after signing makes verifiedBody throw .badSignature")
    func changedFields() throws {
        let original = try SignedDocument.sign(try Self.profile(), with: TestKeys.login)
        let edits: [(String, (inout NetworkProfile) -> Void)] = [
            ("loginAddress", { $0.loginAddress = "evil.example:7000" }),
            ("loginAddress by one char", { $0.loginAddress = "login.example:7001" }),
            ("supernodes added", { $0.supernodes.append("evil.example:1") }),
            ("supernodes removed", { $0.supernodes.removeLast() }),
            ("supernodes reordered", { $0.supernodes.reverse() }),
            ("updateURL", { $0.updateURL = "http://evil.example:8080" }),
            ("updateURL removed", { $0.updateURL = nil }),
            ("updatePublicKey", { $0.updatePublicKey = try? TestKeys.other.publicKey.pem() }),
            ("loginPublicKey", { $0.loginPublicKey = (try? TestKeys.other.publicKey.pem()) ?? "" }),
            ("issuedAt", { $0.issuedAt += 1 }),
            ("format", { $0.format = 2 }),
        ]
        for (name, edit) in edits {
            var document = original
            edit(&document.body)
            #expect(document.body != original.body, "edit \(name) changed nothing")
            #expect(throws: DocumentError.badSignature, "edit \(name)") { try document.verifiedBody(with: TestKeys.login.publicKey) }
        }
        #expect(try original.verifiedBody(with: TestKeys.login.publicKey) == original.body)
    }

    @Test(
        "Garbage or tampered signature strings throw .badSignature",
        arguments: [
            "", "not base64 at all!", "AAAA", "====", String(repeating: "A", count: 344),
        ])
    func garbageSignature(signature: String) throws {
        var document = try SignedDocument.sign(try Self.profile(), with: TestKeys.login)
        document.signature = signature
        #expect(throws: DocumentError.badSignature) { try document.verifiedBody(with: TestKeys.login.publicKey) }
    }

    @Test("A single flipped bit in the signature throws .badSignature")
    func flippedSignatureBit() throws {
        var document = try SignedDocument.sign(try Self.profile(), with: TestKeys.login)
        let bytes = try #require(Data(base64Encoded: document.signature))
        document.signature = flipping(bytes, bit: 100).base64EncodedString()
        #expect(throws: DocumentError.badSignature) { try document.verifiedBody(with: TestKeys.login.publicKey) }
    }

    @Test("encoded() then decode() round trip keeps body and signature, and still verifies")
    func encodeDecodeRoundTrip() throws {
        let document = try SignedDocument.sign(try Self.profile(), with: TestKeys.login)
        let data = try document.encoded()
        #expect(data.last == 0x0a)
        let text = String(decoding: data, as: UTF8.self)
        #expect(text.contains("\"loginAddress\" : \"login.example:7000\""))
        #expect(text.contains("http://updates.example:8080"))  // slashes are not escaped
        let decoded = try SignedDocument<NetworkProfile>.decode(data)
        #expect(decoded.body == document.body)
        #expect(decoded.signature == document.signature)
        #expect(try decoded.verifiedBody(with: TestKeys.login.publicKey) == document.body)
        // Optional fields absent also survive the round trip.
        var bare = try Self.profile()
        bare.updateURL = nil
        bare.updatePublicKey = nil
        bare.supernodes = []
        let bareDocument = try SignedDocument.sign(bare, with: TestKeys.login)
        let bareDecoded = try SignedDocument<NetworkProfile>.decode(try bareDocument.encoded())
        #expect(try bareDecoded.verifiedBody(with: TestKeys.login.publicKey) == bare)
    }

    @Test(
        "Invalid JSON throws .malformed(\"not valid JSON\")",
        arguments: [
            "", "{", "not json", "{\"body\": ", "{}}",
        ])
    func invalidJSON(text: String) {
        #expect(throws: DocumentError.malformed("not valid JSON")) { try SignedDocument<NetworkProfile>.decode(Data(text.utf8)) }
    }

    @Test("Valid JSON of the wrong shape is .malformed")
    func wrongShape() {
        for text in ["[1,2,3]", "42", "\"text\"", "null"] {
            let error = #expect(throws: DocumentError.self, "\(text)") { try SignedDocument<NetworkProfile>.decode(Data(text.utf8)) }
            guard case .malformed = error else { Issue.record("expected .malformed for \(text), got \(String(describing: error))"); continue }
        }
    }

    @Test("Missing fields are named in the .malformed message")
    func missingField() throws {
        let document = try SignedDocument.sign(try Self.profile(), with: TestKeys.login)
        let json = try #require(try JSONSerialization.jsonObject(with: document.encoded()) as? [String: Any])

        var noSignature = json
        noSignature["signature"] = nil
        #expect(throws: DocumentError.malformed("missing field 'signature'")) {
            try SignedDocument<NetworkProfile>.decode(try JSONSerialization.data(withJSONObject: noSignature))
        }

        var noBody = json
        noBody["body"] = nil
        #expect(throws: DocumentError.malformed("missing field 'body'")) {
            try SignedDocument<NetworkProfile>.decode(try JSONSerialization.data(withJSONObject: noBody))
        }

        var body = try #require(json["body"] as? [String: Any])
        body["loginAddress"] = nil
        var noAddress = json
        noAddress["body"] = body
        #expect(throws: DocumentError.malformed("missing field 'loginAddress'")) {
            try SignedDocument<NetworkProfile>.decode(try JSONSerialization.data(withJSONObject: noAddress))
        }
    }

    @Test("A null field is refused as .malformed")
    func nullField() throws {
        let document = try SignedDocument.sign(try Self.profile(), with: TestKeys.login)
        var json = try #require(try JSONSerialization.jsonObject(with: document.encoded()) as? [String: Any])
        var body = try #require(json["body"] as? [String: Any])
        body["loginAddress"] = NSNull()
        json["body"] = body
        let error = #expect(throws: DocumentError.self) {
            try SignedDocument<NetworkProfile>.decode(try JSONSerialization.data(withJSONObject: json))
        }
        guard case .malformed = error else { Issue.record("expected .malformed, got \(String(describing: error))"); return }
    }

    @Test("A field of the wrong type is named in the .malformed message")
    func wrongType() throws {
        let document = try SignedDocument.sign(try Self.profile(), with: TestKeys.login)
        var json = try #require(try JSONSerialization.jsonObject(with: document.encoded()) as? [String: Any])
        var body = try #require(json["body"] as? [String: Any])
        body["issuedAt"] = "yesterday"
        json["body"] = body
        let error = #expect(throws: DocumentError.self) {
            try SignedDocument<NetworkProfile>.decode(try JSONSerialization.data(withJSONObject: json))
        }
        guard case let .malformed(why) = error else { Issue.record("expected .malformed, got \(String(describing: error))"); return }
        #expect(why.contains("wrong type"))
        #expect(why.contains("issuedAt"))
    }

    @Test("Release manifests sign and verify the same way")
    func releaseManifest() throws {
        let manifest = ReleaseManifest(
            version: "0.2.0", publishedAt: 1_700_000_000, expiresAt: 1_702_592_000, notes: "fixes",
            files: [
                .init(
                    name: "skylark.tar.gz", size: 1234, sha256: String(repeating: "ab", count: 32),
                    path: "releases/0.2.0/skylark.tar.gz")
            ])
        let document = try SignedDocument.sign(manifest, with: TestKeys.update)
        let decoded = try SignedDocument<ReleaseManifest>.decode(try document.encoded())
        #expect(try decoded.verifiedBody(with: TestKeys.update.publicKey) == manifest)
        var forged = decoded
        forged.body.files[0].sha256 = String(repeating: "cd", count: 32)
        #expect(throws: DocumentError.badSignature) { try forged.verifiedBody(with: TestKeys.update.publicKey) }
        #expect(throws: DocumentError.badSignature) { try decoded.verifiedBody(with: TestKeys.login.publicKey) }
    }
}
