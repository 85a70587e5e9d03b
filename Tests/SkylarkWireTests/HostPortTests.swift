import SkylarkWire
import Testing

@Suite("HostPort")
struct HostPortTests {
    @Test(
        "Accepted forms",
        arguments: [
            ("127.0.0.1:7000", "127.0.0.1", 7000),
            ("[::1]:7000", "::1", 7000),
            ("host.example:80", "host.example", 80),
            ("[2001:db8::1]:65535", "2001:db8::1", 65535),
            ("localhost:0", "localhost", 0),
        ])
    func accepted(text: String, host: String, port: Int) throws {
        let parsed = try #require(HostPort(text))
        #expect(parsed.host == host)
        #expect(parsed.port == port)
        #expect(parsed == HostPort(host: host, port: port))
        // description gives back the text, which parses to the same value.
        #expect(parsed.description == text)
        #expect(HostPort(parsed.description) == parsed)
    }

    @Test(
        "Refused forms",
        arguments: [
            "host", ":80", "host:", "host:70000", "::1:80", "", "[::1]", "[::1]:", "[::1", "[]:80",
            "host:65536", "host:-1", "host:eighty", "[::1]7000", "host:80:90",
        ])
    func refused(text: String) {
        #expect(HostPort(text) == nil)
    }

    @Test("description brackets IPv6 hosts")
    func descriptionBrackets() {
        #expect(HostPort(host: "::1", port: 7000).description == "[::1]:7000")
        #expect(HostPort(host: "login.example", port: 7000).description == "login.example:7000")
    }
}
