"""A man in the middle for tests and the demo: a TCP relay for one connection that forwards
seclink/1 frames unchanged, except that it flips one bit of, or replays, the `index`-th frame
travelling in one direction.

    relay = Relay(server_port, "up", 1, "flip")   # "up": client to server; "down": server to client
    relay = Relay(server_port, "up", 1, "flip", flip_at=-1)   # the tag's last byte instead
    ... connect the client to relay.port ...
    relay.close()                                   # relay.done is set once it acted

Frame 0 in each direction is the handshake frame, so index 1 is the first message.
"""

from __future__ import annotations

import socket
import threading

WAIT = 10.0


class Relay:
    def __init__(self, upstream_port: int, direction: str, index: int, action: str = "flip",
                 host: str = "127.0.0.1", flip_at: int = 4 + 12) -> None:
        if direction not in ("up", "down") or action not in ("flip", "replay"):
            raise ValueError("direction is 'up' or 'down', action 'flip' or 'replay'")
        self.listener = socket.create_server((host, 0))
        self.port = self.listener.getsockname()[1]
        self.upstream = (host, upstream_port)
        self.direction, self.index, self.action = direction, index, action
        self.flip_at = flip_at  # the byte of the frame flipped (negative: from its end)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.listener.settimeout(WAIT)
        try:
            client, _ = self.listener.accept()
        except OSError:
            return
        server = socket.create_connection(self.upstream, timeout=WAIT)
        pumps = [threading.Thread(target=self._pump, args=(client, server, self.direction == "up"), daemon=True),
                 threading.Thread(target=self._pump, args=(server, client, self.direction == "down"), daemon=True)]
        for t in pumps:
            t.start()
        for t in pumps:
            t.join(WAIT * 2)
        client.close()
        server.close()

    def _pump(self, src: socket.socket, dst: socket.socket, meddle: bool) -> None:
        buf, frame_no = b"", 0
        try:
            while data := src.recv(65536):
                if not meddle:
                    dst.sendall(data)
                    continue
                buf += data
                while len(buf) >= 4 and len(buf) >= 4 + int.from_bytes(buf[:4], "big"):
                    n = 4 + int.from_bytes(buf[:4], "big")
                    frame, buf = bytearray(buf[:n]), buf[n:]
                    out = bytes(frame)
                    if frame_no == self.index:
                        if self.action == "flip":
                            frame[self.flip_at] ^= 0x01  # by default the first ciphertext byte, after the IV
                            out = bytes(frame)
                        else:
                            out = bytes(frame) * 2  # the same frame, counter and all, a second time
                        self.done.set()
                    frame_no += 1
                    dst.sendall(out)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            try:
                src.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self.listener.close()
        self.thread.join(WAIT * 2)
