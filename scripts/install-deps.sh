#!/usr/bin/env bash
# Installs what Skylark needs to build and test on Debian (run as root). Idempotent and quiet
# when everything is already there.
set -euo pipefail
# --bench: also what the voice benchmark compares against and measures with (run.sh voice_bench).
bench=false
[ "${1:-}" = --bench ] && bench=true
packages=(libssl-dev libopus-dev libsqlite3-dev libpulse-dev libasound2-dev libasound2-plugins libspeexdsp-dev pulseaudio pulseaudio-utils sox espeak-ng pkg-config iproute2 nftables iptables libnetfilter-queue-dev jq python3 tshark)
$bench && packages+=(baresip-core python3-pip python3-numpy)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if $bench && ! python3 -c "import pesq" 2>/dev/null; then
  echo "installing: pesq (PyPI)"
  pip install -q --break-system-packages pesq 2>/dev/null || pip install -q pesq
fi
if ! command -v swift >/dev/null; then
  [ -x /opt/swift/usr/bin/swift ] || { echo "Swift 6.1 or newer is required (swift.org)" >&2; exit 1; }
fi
