#!/usr/bin/env bash
# Formats the Swift sources with swift-format and the committed .swift-format configuration;
# `--check` only reports what differs and fails if anything does (the test command runs that).
# Generated protobuf code is left as protoc made it.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/opt/swift/usr/bin"
mapfile -t files < <(git ls-files -co --exclude-standard -- 'Sources/*.swift' 'Tests/*.swift' 'Benchmarks/*.swift' 'Package.swift' | grep -v '/Generated/' | while read -r f; do [ -f "$f" ] && echo "$f"; done)
if [ "${1:-}" = "--check" ]; then
  if ! swift format lint --strict --configuration .swift-format "${files[@]}"; then
    echo "swift-format: the files above are not formatted; run scripts/format.sh" >&2
    exit 1
  fi
  echo "swift-format: ${#files[@]} files formatted as .swift-format says"
else
  swift format format --in-place --configuration .swift-format "${files[@]}"
fi
