import Foundation
import SkylarkCrypto

public enum DocumentError: Error, Equatable, Sendable, CustomStringConvertible {
    case malformed(String)
    case badSignature
    case expired(expiresAt: Int64)

    public var description: String {
        switch self {
        case let .malformed(why): return "malformed document: \(why)"
        case .badSignature: return "bad signature"
        case let .expired(at): return "expired at \(Date(timeIntervalSince1970: TimeInterval(at)))"
        }
    }
}

/// A JSON document with an RSA-PSS-SHA256 signature over the canonical encoding of its body
/// (sorted keys, no extra whitespace). Humans can read it; only the key holder can change it.
public struct SignedDocument<Body: Codable & Sendable>: Codable, Sendable {
    public var body: Body
    /// Base64 of the signature.
    public var signature: String

    public init(body: Body, signature: String) {
        self.body = body
        self.signature = signature
    }

    public static func sign(_ body: Body, with key: RSA.PrivateKey) throws -> SignedDocument {
        let signature = try key.sign(try canonicalBytes(of: body))
        return SignedDocument(body: body, signature: Data(signature).base64EncodedString())
    }

    public static func canonicalBytes(of body: Body) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array(try encoder.encode(body))
    }

    /// The body, only if `key` signed exactly it.
    public func verifiedBody(with key: RSA.PublicKey) throws(DocumentError) -> Body {
        guard let signatureBytes = Data(base64Encoded: signature),
            let canonical = try? Self.canonicalBytes(of: body),
            key.verify(signature: Array(signatureBytes), for: canonical)
        else { throw .badSignature }
        return body
    }

    public func encoded() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        var data = try encoder.encode(self)
        data.append(0x0a)
        return data
    }

    public static func decode(_ data: Data) throws(DocumentError) -> SignedDocument {
        do {
            return try JSONDecoder().decode(SignedDocument.self, from: data)
        } catch let DecodingError.keyNotFound(key, _) {
            throw .malformed("missing field '\(key.stringValue)'")
        } catch let DecodingError.typeMismatch(_, context) {
            throw .malformed("wrong type at '\(context.codingPath.map(\.stringValue).joined(separator: "."))'")
        } catch {
            throw .malformed("not valid JSON")
        }
    }
}
