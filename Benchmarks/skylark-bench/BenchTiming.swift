#if canImport(Glibc)
    import Glibc
#endif

/// CPU time and medians shared by the CPU benchmarks.
enum BenchTiming {
    /// The calling thread's CPU time (CLOCK_THREAD_CPUTIME_ID), ns: what the measured code cost,
    /// whatever else the machine runs.
    static func threadCPUNanoseconds() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &time)
        return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
    }

    static func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
    }
}
