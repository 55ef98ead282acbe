#!/usr/bin/env python3
"""The memory budget under attack (issue 9): keyed clients each send 90% of a large frame and
then stop, a few bytes now and then (what pinned 16 MiB per client before the budget). The
server's RSS growth must stay within --max-memory, and a new client must still be served.

    python3 bench/budget_bench.py --server ./server [--clients 20] [--frame-mib 8] [--budget-mib 64]

Prints one line per figure and a verdict; exits 1 if RSS grew past the budget or the new client
was not served. Bounded: every socket has a timeout, the whole run takes a few seconds.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.reference.seclink_ref import DATA, Connection, generate_key, load_key  # noqa: E402
from tools.procs import Misbehaved, Server  # noqa: E402

MIB = 1024 * 1024
WAIT = 20.0


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


class Peer:
    """A keyed client (the reference implementation) that can send part of a frame."""

    def __init__(self, port: int, psk: bytes) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        self.conn = Connection("client", psk, max_message=64 * MIB)
        self.conn.start()
        self.sock.sendall(self.conn.data_to_send())
        while not self.conn.handshake_hash:
            data = self.sock.recv(65536)
            if not data:
                raise RuntimeError("the server closed during the handshake")
            self.conn.receive(data)
        self.sock.sendall(self.conn.data_to_send())  # the key-confirmation PING

    def send_part(self, size: int, fraction: float) -> None:
        self.conn.send(DATA, b"\x00" * size)
        frame = self.conn.data_to_send()
        self.sock.sendall(frame[:int(len(frame) * fraction)])

    def request(self, content: bytes) -> bytes:
        self.conn.send(DATA, content)
        self.sock.sendall(self.conn.data_to_send())
        while True:
            data = self.sock.recv(65536)
            if not data:
                raise RuntimeError("the server closed the connection")
            for event in self.conn.receive(data):
                if getattr(event, "type", None) == DATA:
                    return event.content


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--server", default=str(ROOT / "server"))
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--frame-mib", type=int, default=8)
    p.add_argument("--budget-mib", type=int, default=64)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        key = Path(tmp) / "psk"
        generate_key(key)
        psk = load_key(key)
        try:
            server = Server([args.server, "--host", "127.0.0.1", "--port", "0", "--psk-file", str(key), "--log-file", "-",
                             "--max-memory", str(args.budget_mib), "--max-message", str(64 * MIB)],
                            cwd=ROOT, env=dict(os.environ))
        except Misbehaved as e:
            print("budget: the server did not start:", e)
            return 1
        proc, port = server.proc, server.port
        try:
            base = rss_kib(proc.pid)
            peers = [Peer(port, psk) for _ in range(args.clients)]
            for peer in peers:
                try:
                    peer.send_part(args.frame_mib * MIB, 0.9)
                except OSError:
                    pass  # refused (its frame did not fit): the server closed it
            time.sleep(1.0)  # let the server read what is in flight: a measurement, not a synchronisation
            peak = rss_kib(proc.pid)
            served = Peer(port, psk).request(b"still room for me?") == b"ACK: received 18 bytes"
            grown_mib = (peak - base) / 1024
            server.stop()
            refused = len(server.out.matching(r"refused: the memory budget"))
            print(f"budget: {args.clients} keyed clients each holding 90% of a {args.frame_mib} MiB frame, "
                  f"--max-memory {args.budget_mib}")
            print(f"budget: server RSS grew {grown_mib:.1f} MiB (budget {args.budget_mib} MiB); "
                  f"{refused} frames refused; a new client served: {'yes' if served else 'NO'}")
            ok = grown_mib <= args.budget_mib and served
            print(f"budget: {'OK' if ok else 'FAILED'}: growth within the budget and a new client served")
            return 0 if ok else 1
        finally:
            server.kill()


if __name__ == "__main__":
    sys.exit(main())
