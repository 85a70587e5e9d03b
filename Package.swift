// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "skylark",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "skylark", targets: ["skylark"]),
        .executable(name: "skylark-login", targets: ["skylark-login"]),
        .executable(name: "skylark-update", targets: ["skylark-update"]),
        .executable(name: "skylark-bench", targets: ["skylark-bench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
    ],
    targets: [
        // C libraries, wrapped once.
        .systemLibrary(
            name: "COpenSSL",
            pkgConfig: "libcrypto",
            providers: [.apt(["libssl-dev"])]
        ),
        .systemLibrary(
            name: "CSQLite",
            pkgConfig: "sqlite3",
            providers: [.apt(["libsqlite3-dev"])]
        ),
        .systemLibrary(
            name: "COpus",
            pkgConfig: "opus",
            providers: [.apt(["libopus-dev"])]
        ),
        .systemLibrary(
            name: "CPulse",
            pkgConfig: "libpulse-simple",
            providers: [.apt(["libpulse-dev"])]
        ),
        .systemLibrary(
            name: "CALSA",
            pkgConfig: "alsa",
            providers: [.apt(["libasound2-dev"])]
        ),
        .systemLibrary(
            name: "CSpeexDSP",
            pkgConfig: "speexdsp",
            providers: [.apt(["libspeexdsp-dev"])]
        ),
        // PulseAudio's asynchronous API (device lists) behind one blocking call.
        .target(name: "CPulseShims", dependencies: ["CPulse"]),
        // Functions and macros Swift cannot call directly (OSSL_PARAM builders, OPENSSL_free,
        // recvmmsg/sendmmsg, whose struct mmsghdr Glibc's Swift module does not show).
        .target(name: "CShims", dependencies: ["COpenSSL"]),
        // opus_encoder_ctl / opus_decoder_ctl are variadic: typed wrappers, linked only by SkylarkMedia.
        .target(name: "COpusShims", dependencies: ["COpus"]),

        // Libraries.
        .target(name: "SkylarkCrypto", dependencies: ["COpenSSL", "CShims"]),
        .target(
            name: "SkylarkWire",
            dependencies: [
                "SkylarkCrypto",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]
        ),
        .target(name: "SkylarkTraversal", dependencies: ["SkylarkWire"]),
        // Opus, RTP, media encryption, jitter buffer, audio files and analysis (sans-I/O cores).
        .target(name: "SkylarkMedia", dependencies: ["COpus", "COpusShims", "CSpeexDSP", "SkylarkCrypto"]),
        // Device audio: PulseAudio capture and playback on the device's clock, device lists.
        .target(name: "SkylarkAudio", dependencies: ["CALSA", "CPulse", "CPulseShims", "CSpeexDSP", "SkylarkMedia"]),
        .target(
            name: "SkylarkOverlay",
            dependencies: [
                "SkylarkCrypto", "SkylarkWire", "SkylarkTraversal",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]
        ),
        // The overlay cores in a simulated network (tests and the simulation bench).
        .target(
            name: "SkylarkSimulation",
            dependencies: [
                "SkylarkOverlay", "SkylarkCrypto", "SkylarkWire", "SkylarkNode", "SkylarkLoginServer",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "SkylarkLoginServer",
            dependencies: [
                "SkylarkCrypto", "SkylarkWire", "CSQLite",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .target(
            name: "SkylarkUpdateServer",
            dependencies: [
                "SkylarkCrypto", "SkylarkWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .target(
            name: "SkylarkNode",
            dependencies: [
                "SkylarkCrypto", "SkylarkWire", "SkylarkOverlay", "SkylarkTraversal", "SkylarkMedia", "SkylarkAudio", "CShims",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // What the executables share: failures under their name, logging, endpoint options, serving until a signal.
        .target(
            name: "SkylarkCLI",
            dependencies: [
                "SkylarkWire",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // What the skylark client's control commands decode and print (a library, so tests reach it).
        .target(name: "SkylarkClientCLI", dependencies: ["SkylarkNode", "SkylarkOverlay"]),

        // Thin executables.
        .executableTarget(
            name: "skylark",
            dependencies: [
                "SkylarkCLI", "SkylarkClientCLI", "SkylarkNode", "SkylarkWire", "SkylarkCrypto", "SkylarkOverlay", "SkylarkAudio", "SkylarkMedia",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        .executableTarget(
            name: "skylark-login",
            dependencies: [
                "SkylarkCLI", "SkylarkLoginServer", "SkylarkWire", "SkylarkCrypto",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "skylark-update",
            dependencies: [
                "SkylarkCLI", "SkylarkUpdateServer", "SkylarkWire", "SkylarkCrypto",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "skylark-bench",
            dependencies: [
                "SkylarkLoginServer", "SkylarkNode", "SkylarkWire", "SkylarkCrypto", "SkylarkSimulation", "SkylarkOverlay", "SkylarkMedia", "SkylarkAudio",
                "COpus", "COpusShims",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "Benchmarks/skylark-bench"
        ),

        // Tests, and the helpers they share (keys, temporary folders, bytes, loopback servers).
        .target(
            name: "SkylarkTestSupport",
            dependencies: [
                "SkylarkCrypto", "SkylarkWire", "SkylarkOverlay",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Tests/SkylarkTestSupport"
        ),
        .testTarget(name: "SkylarkCryptoTests", dependencies: ["SkylarkCrypto", "SkylarkTestSupport"]),
        .testTarget(name: "SkylarkWireTests", dependencies: ["SkylarkWire", "SkylarkCrypto", "SkylarkTestSupport"]),
        .testTarget(
            name: "SkylarkLoginServerTests",
            dependencies: ["SkylarkLoginServer", "SkylarkNode", "SkylarkWire", "SkylarkCrypto", "SkylarkTestSupport"]
        ),
        .testTarget(
            name: "SkylarkUpdateServerTests",
            dependencies: ["SkylarkUpdateServer", "SkylarkNode", "SkylarkWire", "SkylarkCrypto", "SkylarkTestSupport"]
        ),
        .testTarget(name: "SkylarkTraversalTests", dependencies: ["SkylarkTraversal", "SkylarkWire", "SkylarkTestSupport"]),
        .testTarget(name: "SkylarkMediaTests", dependencies: ["SkylarkMedia", "SkylarkCrypto", "SkylarkTestSupport"]),
        .testTarget(name: "SkylarkAudioTests", dependencies: ["SkylarkAudio", "SkylarkMedia", "SkylarkTestSupport"]),
        .testTarget(name: "SkylarkOverlayTests", dependencies: ["SkylarkOverlay", "SkylarkTraversal", "SkylarkWire", "SkylarkCrypto", "SkylarkTestSupport"]),
        .testTarget(name: "SkylarkSimulationTests", dependencies: ["SkylarkSimulation", "SkylarkNode", "SkylarkOverlay", "SkylarkCrypto", "SkylarkWire"]),
        .testTarget(name: "SkylarkNodeTests", dependencies: ["SkylarkNode", "SkylarkWire", "SkylarkCrypto", "SkylarkTraversal", "SkylarkTestSupport"]),
        .testTarget(name: "SkylarkCLITests", dependencies: ["SkylarkCLI", "SkylarkWire"]),
        .testTarget(name: "SkylarkClientCLITests", dependencies: ["SkylarkClientCLI", "SkylarkNode", "SkylarkOverlay"]),
        .testTarget(name: "EndToEndTests", dependencies: ["SkylarkWire", "SkylarkCrypto", "SkylarkAudio", "SkylarkMedia", "SkylarkTestSupport"]),
    ]
)
