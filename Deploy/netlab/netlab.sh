#!/usr/bin/env bash
# The Skylark NAT lab: network namespaces on one Linux machine, joined by veth links, with
# nftables NAT routers of each kind. Nothing here touches the host's own interfaces: every link
# is a veth pair between two namespaces this script made, and the host namespace is not used.
#
#   netlab.sh up        build the lab (fails if it already exists)
#   netlab.sh down      tear it down (idempotent)
#   netlab.sh hosts     list the hosts and their addresses
#   netlab.sh loss ROUTER PERCENT   drop PERCENT % of the packets a router forwards (0 = none)
#   netlab.sh shape ROUTER DELAY_MS JITTER_MS LOSS_PERCENT
#                       netem-like shaping of the UDP a router forwards, in both directions (each
#                       direction gets its own delay ± jitter and loss): this kernel has no netem
#                       qdisc, so an iptables NFQUEUE rule hands the packets to shaper.c, run inside
#                       the router's namespace. Jitter is uniform in [DELAY-JITTER, DELAY+JITTER]
#                       (SHAPER_DIST=normal: normal, stddev JITTER); SHAPER_SEED=N repeats a run.
#   netlab.sh shape ROUTER off      stop shaping (prints the shaper's final counters)
#   netlab.sh rate ROUTER KBIT      a bottleneck: the router forwards at most KBIT kbit/s each way
#                       of IP packets (tbf on its WAN and LAN sides, Ethernet framing not
#                       counted), with a 2200-byte drop-tail queue: 0.7 s at 24 kbit/s, a
#                       bloated home uplink; rate ROUTER off removes it
#   ROUTER is a router kind: pr, sym, udp or 443.
#
# Topology (203.0.113.0/24 is a documentation range, never routed anywhere real):
#
#   internet bridge (namespace skl-inet, bridge br0)
#     skl-login   203.0.113.10   login server :7000
#     skl-update  203.0.113.11   update server :8080
#     skl-sn1..5  203.0.113.21-25  default supernodes :7100 and :443
#     skl-pub     203.0.113.30   a public node (promotes itself)
#     routers, WAN side 203.0.113.101-105, each with one client on its LAN 10.N.0.2/24:
#       skl-r-pr   port-restricted cone   nft masquerade (Linux's default: one mapping per
#                                         source port, replies only from the exact peer)
#       skl-r-sym  symmetric              nft masquerade random,fully-random (new port per peer)
#       skl-r-udp  UDP blocked            TCP masqueraded, all UDP dropped
#       skl-r-443  TCP 80/443 only        only TCP to ports 80 and 443 goes out
#       skl-r-pr2  a second port-restricted cone (two port-restricted NATs must punch)
#     clients skl-c-pr, skl-c-sym, skl-c-udp, skl-c-443, skl-c-pr2
set -euo pipefail

PREFIX=skl
INET=$PREFIX-inet
HOSTS=(login:10 update:11 sn1:21 sn2:22 sn3:23 sn4:24 sn5:25 pub:30)
ROUTERS=(pr:101:1 sym:102:2 udp:103:3 443:104:4 pr2:105:5)
HERE=$(cd "$(dirname "$0")" && pwd)
# The shaper's build cache, logs (ROUTER.log) and PID files (ROUTER.pid): outside the repository.
SHAPER_DIR=/tmp/skylark-netlab-shaper

ns_exists() { ip netns list | awk '{print $1}' | grep -qx "$1"; }

# Connects namespace $1 to the internet bridge with address $2.
attach_to_internet() {
  local ns=$1 address=$2 short=$3
  ip link add "i-$short" netns "$INET" type veth peer name e0 netns "$ns"
  ip -n "$INET" link set "i-$short" master br0 up
  ip -n "$ns" addr add "$address/24" dev e0
  ip -n "$ns" link set e0 up
}

up() {
  if ns_exists "$INET"; then echo "the lab is already up (netlab.sh down first)" >&2; exit 1; fi
  command -v nft >/dev/null || { echo "nft is missing (apt: nftables)" >&2; exit 1; }
  ip netns add "$INET"
  ip -n "$INET" link set lo up
  ip -n "$INET" link add br0 type bridge
  ip -n "$INET" link set br0 up

  for entry in "${HOSTS[@]}"; do
    local name=${entry%%:*} octet=${entry##*:}
    ip netns add "$PREFIX-$name"
    ip -n "$PREFIX-$name" link set lo up
    attach_to_internet "$PREFIX-$name" "203.0.113.$octet" "$name"
  done

  for entry in "${ROUTERS[@]}"; do
    IFS=: read -r kind octet lan <<<"$entry"
    local router=$PREFIX-r-$kind client=$PREFIX-c-$kind
    ip netns add "$router"
    ip netns add "$client"
    ip -n "$router" link set lo up
    ip -n "$client" link set lo up
    attach_to_internet "$router" "203.0.113.$octet" "r$kind"
    ip link add lan0 netns "$router" type veth peer name e0 netns "$client"
    ip -n "$router" addr add "10.$lan.0.1/24" dev lan0
    ip -n "$router" link set lan0 up
    ip -n "$client" addr add "10.$lan.0.2/24" dev e0
    ip -n "$client" link set e0 up
    ip -n "$client" route add default via "10.$lan.0.1"
    ip netns exec "$router" sysctl -qw net.ipv4.ip_forward=1
    router_rules "$kind" | ip netns exec "$router" nft -f -
  done
}

# The nftables rules that make each kind of router.
router_rules() {
  local masquerade="masquerade" filter=""
  case $1 in
    pr|pr2) ;;
    sym) masquerade="masquerade random,fully-random" ;;
    udp) filter='meta l4proto udp drop' ;;
    443) filter='iifname "lan0" tcp dport { 80, 443 } accept
    iifname "lan0" drop' ;;
  esac
  cat <<EOF
table ip nat {
  chain postrouting {
    type nat hook postrouting priority 100;
    oifname "e0" $masquerade
  }
}
table ip filter {
  chain forward {
    type filter hook forward priority 0; policy accept;
    jump loss
    $filter
  }
  # Like a home router: unsolicited packets from the internet to the router itself are dropped
  # without an answer. A packet dropped here leaves no conntrack state behind; one accepted to a
  # closed port would, and would push the router's next mapping toward that peer onto another
  # port (that breaks hole punching and makes a cone NAT look symmetric).
  chain input {
    type filter hook input priority 0; policy accept;
    iifname "e0" ct state new drop
  }
  chain loss {
  }
}
EOF
}

down() {
  local namespaces pidfile
  # Shapers first, gently, so their logs end with the final counters.
  for pidfile in "$SHAPER_DIR"/*.pid; do
    [ -f "$pidfile" ] && stop_shaper "$(basename "$pidfile" .pid)"
  done
  namespaces=$(ip netns list | awk '{print $1}' | grep "^$PREFIX-" || true)
  for ns in $namespaces; do
    # Processes left in a namespace would keep it alive: end them first (only ours live there).
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
}

loss() {
  local router=$PREFIX-r-$1 percent=$2
  ip netns exec "$router" nft flush chain ip filter loss
  if [ "$percent" -gt 0 ]; then
    ip netns exec "$router" nft add rule ip filter loss numgen random mod 100 "<" "$percent" drop
  fi
}

# The NFQUEUE queue number of a router kind: its LAN number (queues are per namespace anyway).
queue_of() {
  local entry kind octet lan
  for entry in "${ROUTERS[@]}"; do
    IFS=: read -r kind octet lan <<<"$entry"
    [ "$kind" = "$1" ] && { echo "$lan"; return; }
  done
  echo "unknown router kind: $1 (pr, sym, udp, 443)" >&2
  exit 2
}

# The rule, in the mangle table so it stays apart from the lab's own nftables tables. nftables
# stays the NAT mechanism; iptables is used only because this kernel lacks the nft queue
# expression (CONFIG_NFT_QUEUE) but has xt NFQUEUE, which iptables-nft reaches through
# NFT_COMPAT. --queue-bypass: packets pass unshaped when no shaper listens, so a dead shaper
# cannot black-hole the router.
queue_rule() { echo "FORWARD -p udp -j NFQUEUE --queue-num $1 --queue-bypass"; }
ipt() { local ns=$1; shift; ip netns exec "$ns" iptables-nft -w -t mangle "$@"; }

# Compiles shaper.c once into $SHAPER_DIR (again only when the source is newer).
build_shaper() {
  local bin=$SHAPER_DIR/shaper
  mkdir -p "$SHAPER_DIR"
  if [ ! -x "$bin" ] || [ "$HERE/shaper.c" -nt "$bin" ]; then
    command -v gcc >/dev/null || { echo "gcc is missing (apt: gcc)" >&2; exit 1; }
    gcc -O2 -Wall -o "$bin.$$" "$HERE/shaper.c" -lnetfilter_queue -lnfnetlink -lm ||
      { rm -f "$bin.$$"; echo "cannot build the shaper (apt: libnetfilter-queue-dev)" >&2; exit 1; }
    mv -f "$bin.$$" "$bin"
  fi
}

# Stops a router's shaper by its recorded PID — only if that PID is still a shaper.
stop_shaper() {
  local kind=$1 pidfile=$SHAPER_DIR/$1.pid pid
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = shaper ]; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

shape() {
  local kind=$1 router=$PREFIX-r-$1 queue log pid
  queue=$(queue_of "$kind")
  log=$SHAPER_DIR/$kind.log
  ns_exists "$router" || { echo "no router $router (netlab.sh up first)" >&2; exit 1; }
  command -v iptables-nft >/dev/null || { echo "iptables-nft is missing (apt: iptables)" >&2; exit 1; }
  # Rule first, then the shaper: what it still holds is accepted when it exits.
  # shellcheck disable=SC2046
  while ipt "$router" -C $(queue_rule "$queue") 2>/dev/null; do ipt "$router" -D $(queue_rule "$queue"); done
  stop_shaper "$kind"
  if [ "${2:-}" = off ]; then
    [ -f "$log" ] && grep 'shaper: exit' "$log" || true
    return
  fi
  local delay=${2:-} jitter=${3:-} percent=${4:-} number='^[0-9]+([.][0-9]+)?$'
  [[ $delay =~ $number && $jitter =~ $number && $percent =~ $number ]] ||
    { echo "usage: $0 shape ROUTER DELAY_MS JITTER_MS LOSS_PERCENT | shape ROUTER off" >&2; exit 2; }
  build_shaper
  # ip netns exec execs, so $! is the shaper itself.
  # shellcheck disable=SC2086
  ip netns exec "$router" "$SHAPER_DIR/shaper" -d "${SHAPER_DIST:-uniform}" "$queue" "$delay" "$jitter" "$percent" \
    ${SHAPER_SEED:-} </dev/null >"$log" 2>&1 &
  pid=$!
  echo "$pid" >"$SHAPER_DIR/$kind.pid"
  for _ in $(seq 1 50); do
    grep -q ': ready$' "$log" && break
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; rm -f "$SHAPER_DIR/$kind.pid"; exit 1; }
    sleep 0.1
  done
  grep -q ': ready$' "$log" || { cat "$log" >&2; stop_shaper "$kind"; exit 1; }
  # shellcheck disable=SC2046
  ipt "$router" -A $(queue_rule "$queue")
  echo "$router: UDP forwarded both ways: delay ${delay} ms ± ${jitter} ms (${SHAPER_DIST:-uniform}), loss ${percent} %" \
    "(shaper PID $pid, log $log)"
}

rate() {
  local kind=$1 router=$PREFIX-r-$1 kbit=${2:-} device
  ns_exists "$router" || { echo "no router $router (netlab.sh up first)" >&2; exit 1; }
  for device in e0 lan0; do
    ip netns exec "$router" tc qdisc del dev "$device" root 2>/dev/null || true
  done
  [ "$kbit" = off ] && return
  [[ $kbit =~ ^[0-9]+$ ]] || { echo "usage: $0 rate ROUTER KBIT | rate ROUTER off" >&2; exit 2; }
  for device in e0 lan0; do
    # stab overhead -14: tbf counts the IP packet, not the veth's Ethernet header.
    ip netns exec "$router" tc qdisc add dev "$device" root stab overhead -14 tbf rate "${kbit}kbit" burst 1600 limit 2200
  done
  echo "$router: at most $kbit kbit/s each way (tbf, 2200-byte queue)"
}

hosts() {
  for entry in "${HOSTS[@]}"; do echo "$PREFIX-${entry%%:*} 203.0.113.${entry##*:}"; done
  for entry in "${ROUTERS[@]}"; do
    IFS=: read -r kind octet lan <<<"$entry"
    echo "$PREFIX-r-$kind 203.0.113.$octet (LAN 10.$lan.0.1)"
    echo "$PREFIX-c-$kind 10.$lan.0.2 behind $PREFIX-r-$kind"
  done
}

case ${1:-} in
  up) up ;;
  down) down ;;
  hosts) hosts ;;
  loss) loss "$2" "$3" ;;
  shape) shape "${2:?router kind}" "${@:3}" ;;
  rate) rate "${2:?router kind}" "${3:?kbit/s or off}" ;;
  *) echo "usage: $0 up|down|hosts|loss ROUTER PERCENT|shape ROUTER DELAY_MS JITTER_MS LOSS_PERCENT|shape ROUTER off|rate ROUTER KBIT|off" >&2; exit 2 ;;
esac
