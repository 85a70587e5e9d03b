import Foundation
import SkylarkNode

/// Why a control answer gives no result; `description` is the line the CLI prints.
public enum ControlAnswerFailure: Error, Equatable, Sendable, CustomStringConvertible {
    case notJSON
    /// JSON, but not the answer the command expects (what is missing or wrong, and where).
    case unexpected(String)
    /// The node said no (its reason).
    case refused(String)

    public var description: String {
        switch self {
        case .notJSON: return "the node gave an answer that is not JSON"
        case let .unexpected(why): return "the node gave an unexpected answer: \(why)"
        case let .refused(reason): return reason
        }
    }
}

/// What `answer` returns: a call, or the ringing conference it joined (only a conference has an initiator).
public enum CallOrConference: Codable, Sendable {
    case call(ControlResults.Call)
    case conference(ControlResults.Conference)

    private enum Keys: String, CodingKey { case initiator }

    public init(from decoder: any Decoder) throws {
        if try decoder.container(keyedBy: Keys.self).contains(.initiator) {
            self = .conference(try ControlResults.Conference(from: decoder))
        } else {
            self = .call(try ControlResults.Call(from: decoder))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        switch self {
        case let .call(call): try call.encode(to: encoder)
        case let .conference(conference): try conference.encode(to: encoder)
        }
    }
}

/// Typed decoding of the control socket's answer lines (`ControlAnswer<Result>`).
public enum ControlAnswers {
    /// Reads only `ok` and `error`, so a refusal never depends on the result's shape.
    private struct Skipped: Codable, Sendable {
        init(from decoder: any Decoder) throws {}
        func encode(to encoder: any Encoder) throws {}
    }

    /// Whether the node said ok (for --json, which prints the line as it came).
    public static func isOK(_ line: String) throws(ControlAnswerFailure) -> Bool {
        try decode(ControlAnswer<Skipped>.self, from: line).ok
    }

    /// The result of an ok answer; a refusal or an answer of another shape throws.
    public static func result<Result: Codable & Sendable>(of line: String, as _: Result.Type = Result.self) throws(ControlAnswerFailure) -> Result {
        let header = try decode(ControlAnswer<Skipped>.self, from: line)
        guard header.ok else { throw .refused(header.error ?? "the node refused the request") }
        guard let result = try decode(ControlAnswer<Result>.self, from: line).result else { throw .unexpected("no result") }
        return result
    }

    private static func decode<T: Decodable>(_ type: T.Type, from line: String) throws(ControlAnswerFailure) -> T {
        do {
            return try JSONDecoder().decode(type, from: Data(line.utf8))
        } catch let DecodingError.keyNotFound(key, context) {
            throw .unexpected("missing '\(path(context.codingPath + [key]))'")
        } catch let DecodingError.valueNotFound(_, context) {
            throw .unexpected("null at '\(path(context.codingPath))'")
        } catch let DecodingError.typeMismatch(_, context) {
            throw .unexpected(context.codingPath.isEmpty ? "not a JSON object" : "wrong type at '\(path(context.codingPath))'")
        } catch let DecodingError.dataCorrupted(context) where !context.codingPath.isEmpty {
            throw .unexpected("bad value at '\(path(context.codingPath))'")
        } catch {
            throw .notJSON
        }
    }

    private static func path(_ keys: [any CodingKey]) -> String {
        keys.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")
    }
}
