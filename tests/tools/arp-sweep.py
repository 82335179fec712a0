#!/usr/bin/env python3
"""Broadcasts ARP requests for one IPv4 address from one interface, for the lab's observers.

Usage: arp-sweep.py IFACE TARGET COUNT INTERVAL_MS

Sends COUNT who-has requests for TARGET (at most 10,000), one every INTERVAL_MS, always as
broadcasts (arping switches to unicast after the first reply, and Debian's arping takes whole
seconds as its interval). It only sends: the lab's tcpdump on the same interface is the judge of
who answered. Standard library only; needs CAP_NET_RAW (the lab runs as root).
"""
import fcntl
import socket
import struct
import sys
import time

SIOCGIFADDR = 0x8915  # linux/sockios.h


def main() -> int:
    iface, target, count, interval_ms = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    count = max(0, min(count, 10_000))
    raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    raw.bind((iface, 0))
    mac = raw.getsockname()[4]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        src = fcntl.ioctl(udp.fileno(), SIOCGIFADDR, struct.pack("256s", iface.encode()))[20:24]
    # RFC 826: hardware type 1 (Ethernet), protocol 0x0800, lengths 6 and 4, opcode 1 (request).
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mac + src + b"\x00" * 6 + socket.inet_aton(target)
    frame = b"\xff" * 6 + mac + b"\x08\x06" + arp
    frame += b"\x00" * (60 - len(frame))
    start = time.monotonic()
    for i in range(count):
        wait = start + i * interval_ms / 1000 - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        raw.send(frame)
    print(f"sent {count} requests for {target} in {time.monotonic() - start:.3f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
