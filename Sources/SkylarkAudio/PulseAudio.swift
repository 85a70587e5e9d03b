import CPulse
import CPulseShims
import Foundation
import Synchronization

/// A PulseAudio server (PipeWire desktops answer the same protocol through pipewire-pulse):
/// `nil` address means where libpulse finds it (PULSE_SERVER, then XDG_RUNTIME_DIR). Skylark never
/// starts one.
public struct PulseServer: Sendable, Equatable {
    public var address: String?

    public init(address: String? = nil) { self.address = address }

    /// What the server has: sources (microphones, and the monitors of sinks) and sinks, with the
    /// defaults. Throws `AudioDeviceError.serverUnavailable` when no server answers in `timeout`.
    public func devices(timeout: Double = 2) throws(AudioDeviceError) -> AudioDevices {
        var list = skylark_pulse_devices()
        var error = [CChar](repeating: 0, count: 256)
        let status = address.withOptionalCString { server in
            skylark_pulse_list_devices(server, Int32(timeout * 1000), &list, &error, error.count)
        }
        guard status == 0 else { throw .serverUnavailable(String(decoding: error.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)) }
        defer { skylark_pulse_free_devices(&list) }
        func devices(_ pointer: UnsafeMutablePointer<skylark_pulse_device>?, _ count: Int32) -> [AudioDevices.Device] {
            guard let pointer else { return [] }
            return (0..<Int(count)).map { index in
                var device = pointer[index]
                return AudioDevices.Device(
                    name: withUnsafeBytes(of: &device.name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) },
                    description: withUnsafeBytes(of: &device.description) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) },
                    isMonitor: device.is_monitor != 0)
            }
        }
        func string<T>(_ tuple: inout T) -> String {
            withUnsafeBytes(of: &tuple) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
        }
        return AudioDevices(
            server: "\(string(&list.server_name)) \(string(&list.server_version))",
            sources: devices(list.sources, list.source_count), sinks: devices(list.sinks, list.sink_count),
            defaultSource: string(&list.default_source), defaultSink: string(&list.default_sink))
    }
}

/// A sound server's devices, as `skylark audio devices` shows them.
public struct AudioDevices: Codable, Sendable, Equatable {
    public struct Device: Codable, Sendable, Equatable {
        public var name: String
        public var description: String
        /// A sink's monitor: what that sink plays, as a source.
        public var isMonitor: Bool
    }

    public var server: String
    public var sources: [Device]
    public var sinks: [Device]
    public var defaultSource: String
    public var defaultSink: String
}

public enum AudioDeviceError: Error, Equatable, CustomStringConvertible {
    case serverUnavailable(String)
    case noSuchDevice(kind: String, name: String, known: [String])
    case alsaUnavailable(name: String, reason: String)

    public var description: String {
        switch self {
        case let .serverUnavailable(reason): return "no sound server: \(reason)"
        case let .noSuchDevice(kind, name, known):
            return "no PulseAudio \(kind) '\(name)' (\(kind)s: \(known.isEmpty ? "none" : known.joined(separator: ", ")))"
        case let .alsaUnavailable(name, reason):
            return
                "ALSA device '\(name)' cannot be opened: \(reason) (skylark audio devices lists the ALSA devices; a hw: device may need plughw: for 48 kHz mono)"
        }
    }
}

/// How a device stream stands: playing, or waiting for its device (not there yet, or gone).
public enum DeviceCondition: Sendable, Equatable, CustomStringConvertible {
    case connecting
    case running
    case waiting(String)
    case closed

    public var description: String {
        switch self {
        case .connecting: return "connecting"
        case .running: return "running"
        case let .waiting(reason): return "waiting for the device (\(reason))"
        case .closed: return "closed"
        }
    }
}

/// A PulseAudio stream through the blocking "simple" API: one `pa_simple`, freed once.
final class PulseConnection: DeviceConnection {
    private let stream: OpaquePointer

    init(server: PulseServer, device: String?, direction: DeviceDirection, name: String) throws(DeviceFailure) {
        var spec = pa_sample_spec(format: PA_SAMPLE_S16LE, rate: UInt32(DeviceStream.sampleRate), channels: 1)
        let blockBytes = UInt32(DeviceStream.blockSamples * 2)
        // Small buffers: a capture fragment of one block, a playback target of three.
        var attributes = pa_buffer_attr(
            maxlength: UInt32.max, tlength: direction == .playback ? blockBytes * 3 : UInt32.max, prebuf: UInt32.max,
            minreq: UInt32.max, fragsize: direction == .record ? blockBytes : UInt32.max)
        var error: Int32 = 0
        let opened = server.address.withOptionalCString { serverName in
            device.withOptionalCString { deviceName in
                pa_simple_new(
                    serverName, "skylark", direction == .record ? PA_STREAM_RECORD : PA_STREAM_PLAYBACK, deviceName, name, &spec, nil, &attributes,
                    &error)
            }
        }
        guard let opened else { throw DeviceFailure(reason: String(cString: pa_strerror(error))) }
        stream = opened
    }

    deinit { pa_simple_free(stream) }

    func read(_ block: inout [Int16]) -> String? {
        var failed: Int32 = 0
        let status = block.withUnsafeMutableBytes { pa_simple_read(stream, $0.baseAddress, $0.count, &failed) }
        return status < 0 ? String(cString: pa_strerror(failed)) : nil
    }

    func write(_ block: [Int16]) -> String? {
        var failed: Int32 = 0
        let status = block.withUnsafeBytes { pa_simple_write(stream, $0.baseAddress, $0.count, &failed) }
        return status < 0 ? String(cString: pa_strerror(failed)) : nil
    }
}

extension Optional where Wrapped == String {
    func withOptionalCString<Result>(_ body: (UnsafePointer<CChar>?) -> Result) -> Result {
        switch self {
        case let .some(string): return string.withCString(body)
        case .none: return body(nil)
        }
    }
}
