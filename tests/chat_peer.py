"""A chat member for tests, made from the reference implementation (tests/reference): it
connects, and a thread collects every line the server sends (and its CLOSE), so a test can wait
for exact lines with a deadline. Also runs the chat vectors (vectors/chat_v1.json) against a server.
"""

from __future__ import annotations

import json
import queue
import socket
import threading
from pathlib import Path

from tests.reference.seclink_ref import DATA, Closed, Connection, Message

VECTORS = Path(__file__).resolve().parent / "vectors" / "chat_v1.json"
WAIT = 10.0


class ChatPeer:
    def __init__(self, port: int, psk: bytes, host: str = "127.0.0.1", read: bool = True) -> None:
        self.sock = socket.create_connection((host, port), timeout=WAIT)
        self.conn = Connection("client", psk)
        self.lock = threading.Lock()
        self.lines: queue.Queue = queue.Queue()  # bytes, or ("closed", reason or None)
        self.conn.start()
        self.sock.sendall(self.conn.data_to_send())
        self.thread = threading.Thread(target=self._run, args=(read,), daemon=True)
        self.thread.start()

    def _run(self, read: bool) -> None:
        reading = threading.Event()
        try:
            while True:
                if not read and self.conn_established():
                    reading.wait()  # a member that never reads (kept blocked until closed)
                data = self.sock.recv(65536)
                with self.lock:
                    events = self.conn.receive(data) if data else self.conn.eof()
                    self.sock.sendall(self.conn.data_to_send())
                for e in events:
                    if isinstance(e, Message) and e.type == DATA:
                        self.lines.put(e.content)
                    elif isinstance(e, Closed):
                        self.lines.put(("closed", e.reason))
                if not data:
                    return
        except Exception as e:  # noqa: BLE001 - reported to the test as the end
            self.lines.put(("closed", f"error: {e}"))

    def conn_established(self) -> bool:
        with self.lock:
            return self.conn._state == "transport"

    def send(self, line: bytes | str) -> None:
        with self.lock:
            self.conn.send(DATA, line.encode() if isinstance(line, str) else line)
            self.sock.sendall(self.conn.data_to_send())

    def close(self) -> None:
        with self.lock:
            try:
                self.conn.close()
                self.sock.sendall(self.conn.data_to_send())
            except (ValueError, OSError):
                pass
        self.sock.close()

    def next(self, timeout: float = WAIT):
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no line from the server within {timeout} s") from None

    def expect(self, *lines: str | bytes) -> None:
        for want in lines:
            got = self.next()
            want_b = want.encode() if isinstance(want, str) else want
            if want_b.startswith(b"! "):  # error lines: only the ERROR name is normative
                want_b = want_b[:want_b.index(b":") + 1]
                got = got[:len(want_b)] if isinstance(got, bytes) else got
            assert got == want_b, f"expected {want_b!r}, got {got!r}"


def run_vectors(port: int, psk: bytes) -> None:
    """Drives a fresh chat server through vectors/chat_v1.json; fails at the first difference."""
    steps = json.loads(VECTORS.read_text(encoding="utf-8"))["steps"]
    peers: dict[str, ChatPeer] = {}
    try:
        for i, step in enumerate(steps):
            who = step["client"]
            if step.get("connect"):
                peers[who] = ChatPeer(port, psk)
            elif step.get("close"):
                peers[who].close()
            else:
                line = bytes.fromhex(step["send_hex"]) if "send_hex" in step else step["send"].encode()
                peers[who].send(line)
            for name, lines in step["expect"].items():
                try:
                    peers[name].expect(*lines)
                except AssertionError as e:
                    raise AssertionError(f"step {i} ({step}): client {name}: {e}") from None
            for name, reason in step.get("closed", {}).items():
                assert peers[name].next() == ("closed", reason), f"step {i}: client {name} not closed with {reason!r}"
    finally:
        for p in peers.values():
            p.close()
