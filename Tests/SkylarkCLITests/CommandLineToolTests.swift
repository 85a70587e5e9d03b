import Logging
import SkylarkCLI
import Testing

@Suite struct CommandLineToolTests {
    @Test func logLevelFromTheEnvironmentThenTheOption() {
        #expect(CommandLineTool.logLevel(option: "debug", environment: [:], fallback: .info) == .debug)
        #expect(CommandLineTool.logLevel(option: "debug", environment: ["SKYLARK_LOG_LEVEL": "error"], fallback: .info) == .error)
        // A name that is no level falls back, even when it comes from the environment.
        #expect(CommandLineTool.logLevel(option: "loud", environment: [:], fallback: .warning) == .warning)
        #expect(CommandLineTool.logLevel(option: "debug", environment: ["SKYLARK_LOG_LEVEL": "loud"], fallback: .info) == .info)
    }

    @Test func endpointOptionsParse() {
        let endpoint = CommandLineTool(name: "skylark-test").endpoint("127.0.0.1:7100", option: "--listen")
        #expect(endpoint.description == "127.0.0.1:7100")
    }
}
