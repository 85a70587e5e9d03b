import Foundation

/// Idle share of the CPU between two reads of /proc/stat.
struct CPUSampler {
    private var last: (idle: UInt64, total: UInt64)?

    mutating func sample() -> Double? {
        guard let text = try? String(contentsOfFile: "/proc/stat", encoding: .utf8), let line = text.split(separator: "\n").first else { return nil }
        let fields = line.split(separator: " ").dropFirst().compactMap { UInt64($0) }
        guard fields.count >= 5 else { return nil }
        let idle = fields[3] + fields[4]
        let total = fields.reduce(0, +)
        defer { last = (idle, total) }
        guard let last, total > last.total else { return last == nil ? 1.0 : nil }
        return Double(idle - last.idle) / Double(total - last.total)
    }
}
