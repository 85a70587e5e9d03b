#!/usr/bin/env bash
# Regenerates Sources/SkylarkWire/Generated from Protos/. The generated code is committed, so
# builds and CI never need protoc; run this after editing a .proto file.
# Needs: protoc (apt: protobuf-compiler) and protoc-gen-swift built from the swift-protobuf
# version Package.swift names (built once into .build-protoc/).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v protoc >/dev/null || apt-get install -y protobuf-compiler
plugin=.build-protoc/release/protoc-gen-swift
if [ ! -x "$plugin" ]; then
  version=$(sed -n 's/.*swift-protobuf.git", from: "\([0-9.]*\)".*/\1/p' Package.swift)
  src=.build-protoc/swift-protobuf
  rm -rf "$src" && git clone -q https://github.com/apple/swift-protobuf.git "$src"
  git -C "$src" checkout -q "$version"
  swift build -c release --package-path "$src" --scratch-path .build-protoc --product protoc-gen-swift
fi
# Generate into a scratch folder first, so a .proto error leaves the committed code untouched.
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
protoc --plugin=protoc-gen-swift="$plugin" --swift_opt=Visibility=Public \
  --swift_out="$out" -I Protos $(find Protos -name '*.proto' | sort)
rm -f Sources/SkylarkWire/Generated/*.pb.swift
# protoc mirrors the proto folders; keep the generated files flat.
find "$out" -name '*.pb.swift' -exec mv {} Sources/SkylarkWire/Generated/ \;
echo "generated: $(ls Sources/SkylarkWire/Generated)"
