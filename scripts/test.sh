#!/usr/bin/env bash
# The test command: installs what is missing, checks the formatting (scripts/format.sh),
# builds everything (executables included, the end-to-end tests start them), runs every test,
# then the NAT lab scenarios (as root: they need network namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/opt/swift/usr/bin"
bash scripts/install-deps.sh
bash scripts/format.sh --check
swift build --build-tests
swift test --skip-build
if [ "$(id -u)" -eq 0 ]; then
  SKYLARK_BIN="$(swift build --show-bin-path)" bash Deploy/netlab/run.sh
else
  echo "NAT lab skipped: it needs root (network namespaces); CI runs it as root" >&2
fi
