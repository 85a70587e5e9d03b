#!/usr/bin/env bash
# The main job: installs what is missing, builds, then
#  1. on loopback with a fresh state folder: starts a login server and an update server,
#     publishes a release, registers two users, logs both in and prints what happened;
#  2. in the NAT lab (as root, Deploy/netlab/run.sh): five default supernodes, a public node and
#     clients behind port-restricted (two), symmetric, UDP-blocked and TCP-443-only routers —
#     promotion, search, presence and messages across the NATs, then voice calls between every
#     pair of NAT kinds (direct, hole-punched or relayed through four supernodes), each printed
#     with its path, quality (RTT, loss, jitter, bitrate) and setup time, calls under loss and
#     jitter, a switch from relayed to direct, an RTP capture and a relay killed mid-call; then
#     a conference of six (the public node and clients behind every NAT kind, each its own tone)
#     mixed at the elected node — printed with why it was chosen and every leg's path — where
#     each participant hears the five others and not itself, the mixer killed and the next in
#     the ranking taking over within 2 s, and a conference of ten — narrated scenario by
#     scenario; at the end the voice benchmark: calls with device audio between two lab hosts,
#     their mouth-to-ear latency and PESQ speech quality beside baresip's on the same devices.
# Everything it starts is stopped on exit, also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/opt/swift/usr/bin"
bash scripts/install-deps.sh --bench
swift build -c release 2>&1 | grep -E "error|warning: |Compiling|Build complete" | grep -v "^\[" || true
bin=$(swift build -c release --show-bin-path)

work=$(mktemp -d /tmp/skylark-demo.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { # a random unprivileged port nobody listens on (iproute2's ss)
  local port
  while :; do
    port=$((20000 + RANDOM % 40000))
    ss -Hltn "sport = :$port" | grep -q . || { echo "$port"; return; }
  done
}
wait_for_line() { # file, text, seconds
  local deadline=$((SECONDS + $3))
  until grep -q "$2" "$1" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || { echo "timed out waiting for '$2' in $1" >&2; cat "${1%.out}.err" >&2 || true; exit 1; }
    sleep 0.1
  done
}
step() { printf '\n== %s\n' "$*"; }

login_port=$(free_port); update_port=$(free_port)

step "update server: key, release 0.2.0"
"$bin/skylark-update" init --state "$work/update"
printf 'skylark 0.2.0 release notes\n' > "$work/skylark-0.2.0.txt"
"$bin/skylark-update" publish --state "$work/update" --version 0.2.0 --file "$work/skylark-0.2.0.txt" --notes "demo release"

step "login server: key, account store, signed network profile"
"$bin/skylark-login" init --state "$work/login" --public-address "127.0.0.1:$login_port" \
  --update-url "http://127.0.0.1:$update_port" --update-key "$work/update/update-public.pem"

step "starting both servers on loopback"
"$bin/skylark-login" serve --state "$work/login" --listen "127.0.0.1:$login_port" >"$work/login.out" 2>"$work/login.err" &
pids+=($!)
"$bin/skylark-update" serve --state "$work/update" --listen "127.0.0.1:$update_port" >"$work/update.out" 2>"$work/update.err" &
pids+=($!)
wait_for_line "$work/login.out" "listening" 30
wait_for_line "$work/update.out" "listening" 30
cat "$work/login.out" "$work/update.out"

for user in alice bob; do
  step "register $user"
  SKYLARK_PASSWORD="demo-password-$user" "$bin/skylark" register "$user" --network "$work/login/network.json" --state "$work/$user"
done

step "register alice again (must be refused)"
if SKYLARK_PASSWORD="another-password" "$bin/skylark" register ALICE --network "$work/login/network.json" --state "$work/x"; then
  echo "unexpected: a taken name was accepted" >&2; exit 1
fi

for user in alice bob; do
  step "log in $user (update check first)"
  SKYLARK_PASSWORD="demo-password-$user" "$bin/skylark" login "$user" --network "$work/login/network.json" --state "$work/$user"
done

step "log in bob with a wrong password (must be refused)"
if SKYLARK_PASSWORD="wrong-password" "$bin/skylark" login bob --network "$work/login/network.json" --state "$work/bob"; then
  echo "unexpected: a wrong password was accepted" >&2; exit 1
fi

step "credentials stored (owner-only)"
ls -l "$work/alice/credential.json" "$work/bob/credential.json"

step "login server log"
cat "$work/login.err"
printf '\npart 1 finished: 2 users registered, 2 logged in, refusals shown above\n'

cleanup
trap - EXIT
if [ "$(id -u)" -ne 0 ]; then
  echo "part 2 (the NAT lab) needs root for network namespaces; run as root to see it" >&2
  exit 0
fi
step "part 2: the NAT lab (nodes promote, find each other, exchange presence and messages across NATs)"
SKYLARK_BIN="$bin" NETLAB_EXTRA=voice_bench bash Deploy/netlab/run.sh
