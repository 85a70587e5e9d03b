import Synchronization

/// Samples between a device thread and the media tick: bounded, so a stalled reader or writer
/// costs at most `capacity` samples of latency and never memory; what does not fit replaces the
/// oldest (counted), what is missing reads as silence (counted).
final class SampleRing: Sendable {
    private struct State {
        var samples: [Int16]
        var start = 0
        var count = 0
        var overruns = 0
        var underruns = 0
    }

    let capacity: Int
    private let state: Mutex<State>

    init(capacity: Int) {
        self.capacity = max(capacity, 1)
        state = Mutex(State(samples: [Int16](repeating: 0, count: max(capacity, 1))))
    }

    var count: Int { state.withLock { $0.count } }
    /// Samples dropped because the ring was full, and samples read as silence because it was empty.
    var counters: (overruns: Int, underruns: Int) { state.withLock { ($0.overruns, $0.underruns) } }

    func push(_ samples: some Collection<Int16>) {
        state.withLock { state in
            for sample in samples {
                if state.count == capacity {
                    state.start = (state.start + 1) % capacity
                    state.count -= 1
                    state.overruns += 1
                }
                state.samples[(state.start + state.count) % capacity] = sample
                state.count += 1
            }
        }
    }

    /// Exactly `count` samples: what is there, then silence.
    func pop(_ count: Int) -> [Int16] {
        var out = take(upTo: count) ?? []
        if out.count < count {
            state.withLock { $0.underruns += count - out.count }
            out.append(contentsOf: repeatElement(0, count: count - out.count))
        }
        return out
    }

    /// Up to `count` samples, without padding (nil when empty).
    func take(upTo count: Int) -> [Int16]? {
        state.withLock { state in
            guard state.count > 0 else { return nil }
            let available = min(count, state.count)
            var out = [Int16]()
            out.reserveCapacity(available)
            for index in 0..<available { out.append(state.samples[(state.start + index) % capacity]) }
            state.start = (state.start + available) % capacity
            state.count -= available
            return out
        }
    }

}
