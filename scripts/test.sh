#!/usr/bin/env bash
# The test command: installs what is missing, builds everything (executables included, the
# end-to-end tests start them) and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/opt/swift/usr/bin"
bash scripts/install-deps.sh
swift build --build-tests
swift test --skip-build
