import SkylarkWire

/// The server side of STUN Binding, as every supernode runs it on its UDP port: a pure function
/// from a request datagram and its source address to the answer datagram.
///
/// Only valid Binding requests are answered. Responses, indications, other methods and garbage get
/// no answer at all: a server that answered those could be made to reflect traffic at a third
/// party, or to loop with another server.
public enum STUNResponder {
    /// Comprehension-required attributes this server accepts in a Binding request. The
    /// authentication ones are listed because a server that does not authenticate ignores them
    /// (RFC 8489 section 9); anything else below 0x8000 — RFC 5780's CHANGE-REQUEST, for instance —
    /// is refused with 420 so that the client knows it was not honoured.
    static let understoodAttributes: Set<STUNMessage.AttributeType> = [
        .mappedAddress, .username, .messageIntegrity, .errorCode, .unknownAttributes, .realm, .nonce,
        .messageIntegritySHA256, .passwordAlgorithm, .userhash, .xorMappedAddress,
    ]

    /// The answer to `request` received from `source`, or nil when nothing must be sent.
    /// Success: XOR-MAPPED-ADDRESS, MAPPED-ADDRESS (for RFC 3489-era clients), SOFTWARE,
    /// FINGERPRINT. Unknown comprehension-required attributes: a 420 error listing them in
    /// UNKNOWN-ATTRIBUTES. `source.host` must be a numeric address (the adapter's peer address);
    /// otherwise there is nothing to report and nil is returned.
    public static func respond(to request: [UInt8], from source: HostPort, software: String) -> [UInt8]? {
        guard let message = try? STUNMessage.decode(request),
            message.messageClass == .request, message.method == .binding
        else { return nil }

        var unknown: [STUNMessage.AttributeType] = []
        for attribute in message.attributes
        where attribute.type.isComprehensionRequired && !understoodAttributes.contains(attribute.type)
            && !unknown.contains(attribute.type)
        {
            unknown.append(attribute.type)
        }

        if !unknown.isEmpty {
            var answer = STUNMessage(
                messageClass: .errorResponse, method: .binding, transactionID: message.transactionID, hasFingerprint: true)
            answer.addErrorCode(.init(code: STUNMessage.ErrorCode.unknownAttribute, reason: "Unknown Attribute"))
            answer.addUnknownAttributes(unknown)
            answer.addSoftware(software)
            return answer.encoded()
        }

        var answer = STUNMessage(
            messageClass: .successResponse, method: .binding, transactionID: message.transactionID, hasFingerprint: true)
        do {
            try answer.addXORMappedAddress(source)
            try answer.addMappedAddress(source)
        } catch {
            return nil
        }
        answer.addSoftware(software)
        return answer.encoded()
    }
}
