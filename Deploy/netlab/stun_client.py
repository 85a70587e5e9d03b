#!/usr/bin/env python3
"""A minimal, independent STUN client (RFC 5389): sends one Binding Request and prints the
XOR-MAPPED-ADDRESS the server returns. Used by the NAT lab to show that Skylark supernodes
answer ordinary STUN clients. Usage: stun_client.py HOST PORT"""
import os
import socket
import struct
import sys

MAGIC = 0x2112A442


def main() -> int:
    host, port = sys.argv[1], int(sys.argv[2])
    transaction = os.urandom(12)
    request = struct.pack("!HHI", 0x0001, 0, MAGIC) + transaction
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(1.0)
    for _ in range(5):
        sock.sendto(request, (host, port))
        try:
            data, _ = sock.recvfrom(2048)
        except socket.timeout:
            continue
        kind, length, magic = struct.unpack("!HHI", data[:8])
        if kind != 0x0101 or magic != MAGIC or data[8:20] != transaction:
            continue
        offset = 20
        while offset + 4 <= 20 + length:
            attribute, size = struct.unpack("!HH", data[offset:offset + 4])
            value = data[offset + 4:offset + 4 + size]
            if attribute == 0x0020 and value[1] == 0x01:
                address = struct.unpack("!I", value[4:8])[0] ^ MAGIC
                print(socket.inet_ntoa(struct.pack("!I", address)))
                return 0
            offset += 4 + ((size + 3) & ~3)
    print("no answer", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
