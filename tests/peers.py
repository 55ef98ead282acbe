"""Peers that misbehave on purpose, for the tests: a seclink/1 client and a listening socket built on
the pure-Python reference implementation (tests/reference), which can send hand-crafted bytes
(tampered, replayed, oversized, truncated frames) where the real programs never would.

- `RawPeer`: a client that can send any frame, valid or not, and read what the server answers.
- `RawServer`: a listening socket whose connections are handled by a test function, to see what a
  client does with a misbehaving server; `serve_handshake` / `read_frame` for its handlers.
"""

from __future__ import annotations

import queue
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable

from tests.reference.seclink_ref import (DEFAULT_MAX_MESSAGE, DATA, PING, Closed, Connection, Event, HandshakeDone,
                                         Message)
from tools.procs import WAIT


class RawPeer:
    """A seclink/1 client built on the reference implementation, able to misbehave.

    `frame(type, content)` encrypts a well-formed frame with the next counter but does not send
    it, so a test can tamper with it, replay it, truncate it or send it twice.
    """

    def __init__(self, port: int, psk: bytes, *, host: str = "127.0.0.1", handshake: bool = True,
                 max_message: int = DEFAULT_MAX_MESSAGE, tls: ssl.SSLContext | None = None) -> None:
        self.sock = socket.create_connection((host, port), timeout=WAIT)
        if tls is not None:
            self.sock = tls.wrap_socket(self.sock, server_hostname=host)
        local = self.sock.getsockname()
        self.name = f"{local[0]}:{local[1]}"  # how the server names this peer in its log
        self.conn = Connection("client", psk, max_message=max_message)
        self._events: list[Event] = []
        self.eof = False
        if handshake:
            self.handshake()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawPeer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- sending
    def handshake(self) -> None:
        """The handshake, then the key-confirmation PING (PROTOCOL.md 4.1) sent at once, so that
        frame() gives exactly one frame; its PONG is swallowed by the reference implementation."""
        self.conn.start()
        self.send_raw(self.conn.data_to_send())
        assert self.next_event() == HandshakeDone()
        self.send_raw(self.conn.data_to_send())
        deadline = time.monotonic() + WAIT
        while self.conn._await_pong:  # the PONG, so that nothing of the handshake is left unread
            data = self._recv(max(0.0, deadline - time.monotonic()))
            assert data, f"{self.name}: the server closed instead of answering the key-confirmation PING"
            self._events += self.conn.receive(data)

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, type: int, content: bytes = b"") -> None:
        self.conn.send(type, content)
        self.send_raw(self.conn.data_to_send())

    def frame(self, type: int, content: bytes = b"") -> bytes:
        """A valid transport frame (length prefix included) with the next counter, not sent."""
        self.conn._queue_transport(bytes([type]) + content)  # no send-side checks: any type, any size
        return self.conn.data_to_send()

    def close_session(self, reason: str = "") -> None:
        self.conn.close(reason)
        self.send_raw(self.conn.data_to_send())

    # ---- receiving
    def readable(self, timeout: float) -> bool:
        """True if something (bytes or the end of the stream) arrives within `timeout` s."""
        if self._events or (isinstance(self.sock, ssl.SSLSocket) and self.sock.pending()):
            return True
        return bool(select.select([self.sock], [], [], timeout)[0])

    def _recv(self, timeout: float) -> bytes:
        if not self.readable(timeout):
            raise AssertionError(f"{self.name}: nothing received in {timeout} s")
        try:
            return self.sock.recv(1 << 20)
        except (ConnectionResetError, ssl.SSLEOFError):
            return b""

    def next_event(self, timeout: float = WAIT) -> Event:
        """The next event; Closed(None) when the stream ends without CLOSE."""
        deadline = time.monotonic() + timeout
        while not self._events:
            data = self._recv(max(0.0, deadline - time.monotonic()))
            if data:
                self._events += self.conn.receive(data)
                out = self.conn.data_to_send()  # a PONG for a PING
                if out:
                    self.send_raw(out)
            else:
                self.eof = True
                self._events += self.conn.eof()
        return self._events.pop(0)

    def request(self, content: bytes, timeout: float = WAIT) -> bytes:
        """Send DATA and return the content of the DATA reply."""
        self.send(DATA, content)
        ev = self.next_event(timeout)
        assert isinstance(ev, Message) and ev.type == DATA, f"{self.name}: expected a reply, got {ev}"
        return ev.content

    def read_to_eof(self, timeout: float = WAIT) -> bytes:
        """Every byte the server still sends until it closes the stream (raw, not decrypted)."""
        deadline = time.monotonic() + timeout
        got = b""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{self.name}: the server did not close the connection in {timeout} s")
            data = self._recv(left)
            if not data:
                self.eof = True
                return got
            got += data

    def expect_close(self, reason: str, timeout: float = WAIT) -> None:
        """The server sends CLOSE with `reason`, then ends the stream; this peer then closes its
        end, as a client does (the server lingers until then: docs/PROTOCOL.md 5)."""
        ev = self.next_event(timeout)
        assert ev == Closed(reason), f"{self.name}: expected CLOSE {reason!r}, got {ev}"
        assert self.read_to_eof(timeout) == b""
        self.close()


class RawServer:
    """A listening socket on 127.0.0.1; each accepted connection is handled by `handler(sock)` in a
    thread. Handler exceptions are kept and re-raised by `check()`."""

    def __init__(self, handler: Callable[[socket.socket], None]) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.handler = handler
        self.errors: queue.Queue[BaseException] = queue.Queue()
        self.conns: list[socket.socket] = []
        self.handlers: list[threading.Thread] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            self.conns.append(sock)
            sock.settimeout(WAIT)
            t = threading.Thread(target=self._handle, args=(sock,), daemon=True)
            self.handlers.append(t)
            t.start()

    def _handle(self, sock: socket.socket) -> None:
        try:
            self.handler(sock)
        except BaseException as e:  # noqa: BLE001 - reported by check()
            self.errors.put(e)

    def check(self) -> None:
        """Waits for the handlers to finish; re-raises the first failure among them."""
        for t in self.handlers:
            t.join(WAIT)
            assert not t.is_alive(), "a RawServer handler is still running"
        if not self.errors.empty():
            raise self.errors.get()

    def close(self) -> None:
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        self.thread.join(WAIT)
        for s in self.conns:
            try:
                s.shutdown(socket.SHUT_RDWR)  # wakes a handler blocked in recv()
            except OSError:
                pass
            s.close()


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError(f"stream ended after {len(buf)} of {n} bytes")
        buf += chunk
    return buf


def serve_handshake(sock: socket.socket, psk: bytes) -> Connection:
    """Server side of the handshake for a RawServer handler; returns the established Connection."""
    conn = Connection("server", psk)
    head = recv_exactly(sock, 4)
    body = recv_exactly(sock, int.from_bytes(head, "big"))
    assert conn.receive(head + body) == [HandshakeDone()]
    sock.sendall(conn.data_to_send())
    # Key confirmation (PROTOCOL.md 4.1): the client's first frame is an empty PING; answered.
    assert conn.receive(read_frame(sock)) == [Message(PING, b"")]
    sock.sendall(conn.data_to_send())
    return conn


def read_frame(sock: socket.socket) -> bytes:
    head = recv_exactly(sock, 4)
    return head + recv_exactly(sock, int.from_bytes(head, "big"))
