#!/usr/bin/env bash
# The Skylark NAT lab: network namespaces on one Linux machine, joined by veth links, with
# nftables NAT routers of each kind. Nothing here touches the host's own interfaces: every link
# is a veth pair between two namespaces this script made, and the host namespace is not used.
#
#   netlab.sh up        build the lab (fails if it already exists)
#   netlab.sh down      tear it down (idempotent)
#   netlab.sh hosts     list the hosts and their addresses
#   netlab.sh loss ROUTER PERCENT   drop PERCENT % of the packets a router forwards (0 = none)
#
# Topology (203.0.113.0/24 is a documentation range, never routed anywhere real):
#
#   internet bridge (namespace skl-inet, bridge br0)
#     skl-login   203.0.113.10   login server :7000
#     skl-update  203.0.113.11   update server :8080
#     skl-sn1..5  203.0.113.21-25  default supernodes :7100 and :443
#     skl-pub     203.0.113.30   a public node (promotes itself)
#     routers, WAN side 203.0.113.101-104, each with one client on its LAN 10.N.0.2/24:
#       skl-r-pr   port-restricted cone   nft masquerade (Linux's default: one mapping per
#                                         source port, replies only from the exact peer)
#       skl-r-sym  symmetric              nft masquerade random,fully-random (new port per peer)
#       skl-r-udp  UDP blocked            TCP masqueraded, all UDP dropped
#       skl-r-443  TCP 80/443 only        only TCP to ports 80 and 443 goes out
#     clients skl-c-pr, skl-c-sym, skl-c-udp, skl-c-443
set -euo pipefail

PREFIX=skl
INET=$PREFIX-inet
HOSTS=(login:10 update:11 sn1:21 sn2:22 sn3:23 sn4:24 sn5:25 pub:30)
ROUTERS=(pr:101:1 sym:102:2 udp:103:3 443:104:4)

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
    pr) ;;
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
  chain loss {
  }
}
EOF
}

down() {
  local namespaces
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
  *) echo "usage: $0 up|down|hosts|loss ROUTER PERCENT" >&2; exit 2 ;;
esac
