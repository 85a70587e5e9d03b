import Foundation

/// The one place the login server reads the clock; the cores take `now` as a parameter.
enum WallClock {
    static func now() -> Double { Date().timeIntervalSince1970 }
}
