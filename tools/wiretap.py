"""The eavesdropper's tools for the demo and the attack lab: a capturing relay and a hex dump.

    tap = Wiretap(server_port)                 # listens on 127.0.0.1, a free port
    ... connect a client to tap.port ...
    tap.close()                                # waits for the session to end
    tap.frames                                 # every frame seen, in wire order, both directions

A Wiretap forwards one TCP connection (or `connections` of them, one after another) between a
client and a server and records every length-prefixed frame (4-byte big-endian length, then the
body: the framing of seclink/1 and of every teaching design in tools/attacks/). A `meddle`
function may change what is forwarded: it gets each frame as it arrives and returns the bytes
to send on instead (b"" drops it, two copies replay it). Bytes that are not complete frames when
a side closes are forwarded as they are and recorded as a partial frame.

Only 127.0.0.1 is ever listened on or connected to.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field
from typing import Callable, List, Optional

HOST = "127.0.0.1"
WAIT = 10.0  # seconds: the longest a relay waits for a connection or for bytes


@dataclass
class Frame:
    """One frame as it crossed the relay. `sent` is what the relay forwarded in its place."""

    direction: str  # "up": client to server; "down": server to client
    index: int  # 0, 1, 2, ... per direction (for seclink/1, frame 0 is the handshake frame)
    data: bytes  # the whole frame as received, length prefix included
    sent: bytes  # what the relay forwarded instead (== data unless a meddle function changed it)
    connection: int = 0

    @property
    def body(self) -> bytes:
        return self.data[4:]


Meddle = Callable[[Frame], bytes]


@dataclass
class Wiretap:
    upstream_port: int
    meddle: Optional[Meddle] = None
    connections: int = 1
    frames: List[Frame] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.listener = socket.create_server((HOST, 0))
        self.port = self.listener.getsockname()[1]
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    # The wire as one byte string per direction (what a packet capture would hold).
    def wire(self, direction: Optional[str] = None) -> bytes:
        with self._lock:
            return b"".join(f.data for f in self.frames if direction in (None, f.direction))

    def _run(self) -> None:
        self.listener.settimeout(WAIT)
        for number in range(self.connections):
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection((HOST, self.upstream_port), timeout=WAIT)
            except OSError:
                client.close()
                return
            pumps = [threading.Thread(target=self._pump, args=(client, server, "up", number), daemon=True),
                     threading.Thread(target=self._pump, args=(server, client, "down", number), daemon=True)]
            for pump in pumps:
                pump.start()
            for pump in pumps:
                pump.join(WAIT * 3)
            client.close()
            server.close()

    def _pump(self, src: socket.socket, dst: socket.socket, direction: str, connection: int) -> None:
        buf, index = b"", 0
        src.settimeout(WAIT * 3)
        try:
            while data := src.recv(65536):
                buf += data
                while len(buf) >= 4 and len(buf) >= 4 + int.from_bytes(buf[:4], "big"):
                    n = 4 + int.from_bytes(buf[:4], "big")
                    frame = Frame(direction, index, buf[:n], buf[:n], connection)
                    buf = buf[n:]
                    if self.meddle is not None:
                        frame.sent = self.meddle(frame)
                    with self._lock:
                        self.frames.append(frame)
                    index += 1
                    if frame.sent:
                        dst.sendall(frame.sent)
        except OSError:
            pass
        finally:
            if buf:  # a side closed in the middle of a frame: pass on and record what there was
                with self._lock:
                    self.frames.append(Frame(direction, index, buf, buf, connection))
                try:
                    dst.sendall(buf)
                except OSError:
                    pass
            for sock, how in ((dst, socket.SHUT_WR), (src, socket.SHUT_RD)):
                try:
                    sock.shutdown(how)
                except OSError:
                    pass

    def close(self) -> None:
        """Wait for the relayed sessions to end (bounded), then stop listening."""
        self._thread.join(WAIT * 4)
        self.listener.close()


def hexdump(data: bytes, width: int = 80, highlight: bytes = b"", mark: Callable[[str], str] = str) -> List[str]:
    """Classic offset / hex / ASCII lines, 16 bytes a line (8 if `width` is under 73 columns).

    Bytes inside any occurrence of `highlight` are passed through `mark` (e.g. a colour) in both
    columns, so the secret stands out where an eavesdropper would find it.
    """
    per_line = 16 if width >= 73 else 8
    hot = [False] * len(data)
    if highlight:
        at = data.find(highlight)
        while at != -1:
            for i in range(at, at + len(highlight)):
                hot[i] = True
            at = data.find(highlight, at + 1)
    lines = []
    for start in range(0, len(data), per_line):
        chunk = data[start:start + per_line]
        hexes, text = [], []
        for i, byte in enumerate(chunk):
            h, c = f"{byte:02x}", chr(byte) if 32 <= byte < 127 else "."
            if hot[start + i]:
                h, c = mark(h), mark(c)
            hexes.append(h)
            text.append(c)
        pad = "   " * (per_line - len(chunk))
        lines.append(f"{start:04x}  {' '.join(hexes)}{pad}  |{''.join(text)}|")
    return lines
