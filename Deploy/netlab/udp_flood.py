#!/usr/bin/env python3
"""A UDP flooder for the NAT lab: for SECONDS (at most 120; it stops itself) it sends, from N
sockets (distinct source ports) in the namespace it runs in, as fast as it can, a mix of
  - random garbage (1..1200 bytes),
  - valid STUN Binding Requests (20-byte header, type 0x0001, magic cookie 0x2112A442, random
    transaction id),
  - RTP-looking packets (0x80, payload type 111, random rest, 200 bytes),
  - relay-marker packets (0xD6 = RelayCircuits.packetMarker, a random 16-byte leg id, payload),
  - overlay-datagram-marker packets (0xD5, random bytes)
to one target. Only lab addresses (203.0.113.0/24, 10.0.0.0/8) are accepted as targets. At the
end it prints one JSON line: {"sent", "errors", "seconds", "rate", "sockets", "mix"} (errors:
sends the kernel refused, e.g. a full socket buffer; not counted in sent).

Usage: udp_flood.py HOST PORT [--seconds S] [--sockets N]"""
import argparse
import errno
import ipaddress
import json
import os
import random
import socket
import struct
import sys
import time

MAX_SECONDS = 120
STUN_MAGIC = 0x2112A442
RELAY_MARKER = 0xD6  # Sources/SkylarkTraversal/Relay/RelayCircuits.swift: packetMarker
OVERLAY_MARKER = 0xD5
LAB_NETWORKS = [ipaddress.ip_network("203.0.113.0/24"), ipaddress.ip_network("10.0.0.0/8")]
KINDS = ("garbage", "stun", "rtp", "relay", "overlay")
POOL = 8192  # distinct packets, cycled through (random transaction ids, leg ids, payloads)


def make(kind: str) -> bytes:
    if kind == "garbage":
        return os.urandom(random.randint(1, 1200))
    if kind == "stun":
        return struct.pack("!HHI", 0x0001, 0, STUN_MAGIC) + os.urandom(12)
    if kind == "rtp":
        # version 2, no padding/extension/CSRC; marker bit clear, payload type 111.
        return bytes([0x80, 111]) + os.urandom(198)
    if kind == "relay":
        return bytes([RELAY_MARKER]) + os.urandom(16) + os.urandom(random.randint(20, 180))
    return bytes([OVERLAY_MARKER]) + os.urandom(random.randint(8, 300))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--sockets", type=int, default=8)
    args = parser.parse_args()
    address = ipaddress.ip_address(args.host)
    if not any(address in network for network in LAB_NETWORKS):
        print(f"udp_flood: {address} is not a lab address (203.0.113.0/24, 10.0.0.0/8)", file=sys.stderr)
        return 2
    seconds = min(max(args.seconds, 0.1), MAX_SECONDS)
    target = (args.host, args.port)

    sockets = []
    for _ in range(max(1, args.sockets)):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("0.0.0.0", 0))
        sock.connect(target)  # send() on a connected socket skips the per-packet address lookup
        sock.setblocking(False)
        sockets.append(sock)
    kinds = [KINDS[i % len(KINDS)] for i in range(POOL)]
    pool = [make(kind) for kind in kinds]

    sent = errors = 0
    index = 0
    start = time.monotonic()
    deadline = start + seconds
    sends = [sock.send for sock in sockets]
    width = len(sends)
    while True:
        # 4096 sends between clock reads; each round spreads over every socket.
        for i in range(4096):
            try:
                sends[i % width](pool[(index + i) % POOL])
                sent += 1
            except BlockingIOError:
                errors += 1
            except OSError as error:
                # ECONNREFUSED: an ICMP port unreachable came back; ENOBUFS: the queue is full.
                if error.errno not in (errno.ECONNREFUSED, errno.ENOBUFS, errno.EAGAIN):
                    raise
                errors += 1
        index = (index + 4096) % POOL
        if time.monotonic() >= deadline:
            break
    elapsed = time.monotonic() - start
    for sock in sockets:
        sock.close()
    print(json.dumps({"sent": sent, "errors": errors, "seconds": round(elapsed, 2),
                      "rate": round(sent / elapsed), "sockets": width,
                      "mix": "/".join(KINDS) + ", a fifth each"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
