"""--pipe of the Python programs (the C++ ones: cpp_apps/pipe.hpp; docs/PROTOCOL.md 9).

Standard input goes to the peer as DATA, the peer's DATA to standard output as raw bytes, the end
of input is an EOF message, and the client sends CLOSE once both EOFs have passed. Memory is
bounded: input is read only while less than HIGH_WATER bytes wait to be written.
"""
from __future__ import annotations

import os
import selectors
import socket
import time
from typing import Any, Callable

from . import _seclink
from .errors import Error

CHUNK = 256 * 1024
HIGH_WATER = 1024 * 1024
DATA, CLOSE, EOF = _seclink.MESSAGE_TYPES["DATA"], _seclink.MESSAGE_TYPES["CLOSE"], _seclink.MESSAGE_TYPES["EOF"]


class PipeError(Exception):
    """The pipe failed: ``code`` is the exit code (the core's category), the text says why."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def run_client(native: Any, max_message: int, info: Callable[[str], None]) -> tuple[int, int]:
    """Pipes standard input/output through a connected native client (seclink.Client's ``_c``).
    Returns (bytes sent, bytes received); raises PipeError."""
    chunk = max(1, min(CHUNK, max_message))
    tty = os.isatty(0)
    in_open, peer_eof, sent, received = True, False, 0, 0
    sel = selectors.PollSelector()  # poll(): standard input may be a regular file (epoll refuses those)
    sel.register(native.fd, selectors.EVENT_READ)
    stdin_registered = False
    try:
        while True:
            if not in_open and peer_eof and native.pending == 0:
                break
            want_input = in_open and native.pending < HIGH_WATER
            if want_input != stdin_registered:
                (sel.register(0, selectors.EVENT_READ) if want_input else sel.unregister(0))
                stdin_registered = want_input
            sel.modify(native.fd, selectors.EVENT_READ | (selectors.EVENT_WRITE if native.pending else 0))
            ready = {key.fd for key, _ in sel.select()}
            if 0 in ready:
                try:
                    data = os.read(0, chunk)
                except OSError as e:
                    raise PipeError(1, f"cannot read standard input: {e.strerror}") from None
                if data:
                    native.queue(DATA, data)
                    sent += len(data)
                else:
                    native.queue(EOF, b"")
                    in_open = False
                    if tty:
                        info("[INFO] end of input: waiting for the server to finish")
            native.flush(0)
            while (m := native.poll_message()) is not None:
                msg_type, content = m
                if msg_type == CLOSE:
                    why = _seclink.format_message(content) if content else "no reason given"
                    raise PipeError(7, f"the server closed the session: {why}")
                if msg_type == EOF:
                    peer_eof = True
                elif msg_type == DATA:
                    try:
                        _write_all(1, content)
                    except OSError as e:
                        raise PipeError(1, f"cannot write standard output: {e.strerror}") from None
                    received += len(content)
    except Error as e:
        if e.name == "PEER_CLOSED":
            raise PipeError(7, "the server closed the connection before the end of the stream") from None
        raise PipeError(_seclink.err_category(e.code) if e.code else 1, f"session failed: {e}") from None
    finally:
        sel.close()
    return sent, received


def _now() -> int:
    return int(time.monotonic() * 1000)


def run_server(host: str, port: int, psk: bytearray, opts: dict[str, Any], log: Callable[[int, str], None],
               listening: Callable[[int], None]) -> tuple[bool, int, int]:
    """Serves one session as a pipe (like ``nc -l``) on a session of the core's session layer in
    stream mode: it decides everything (handshake, limits, deadlines, log lines); this moves bytes.
    Returns (the client ended its stream, bytes received, bytes sent)."""
    try:
        lsock = socket.create_server((host, port), reuse_port=False)
    except OSError as e:
        raise PipeError(4, f"cannot listen on {host}:{port}: {e.strerror}"
                           f"{' (choose another with --port)' if e.errno == 98 else ''}") from None
    with lsock:
        listening(lsock.getsockname()[1])
        conn, addr = lsock.accept()
    peer = f"[{addr[0]}]:{addr[1]}" if ":" in addr[0] else f"{addr[0]}:{addr[1]}"
    conn.setblocking(False)
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    policy = _seclink.Policy(
        psk, max_clients=1, max_handshakes=1, max_handshakes_per_addr=1, handshake_rate=opts["handshake_rate"],
        handshake_timeout_ms=int(opts["handshake_timeout"] * 1000), idle_timeout_ms=int(opts["idle_timeout"] * 1000),
        frame_timeout_ms=int(opts["frame_timeout"] * 1000), max_message=opts["max_message"],
        max_memory=opts["max_memory"], echo=False, redact=opts["redact"], tls=False, app_replies=False,
        log_level=opts["log_level"], log=log, stream=True)
    s = _seclink.Session(policy, peer, _now())
    in_open, out_open, eof_sent, peer_eof = not os.isatty(0), True, False, False
    net, net_pos = b"", 0
    out = b""
    received = sent = 0
    chunk = max(1, min(CHUNK, opts["max_message"] or CHUNK))
    sel = selectors.PollSelector()  # poll(): standard input may be a regular file (epoll refuses those)
    sel.register(conn, selectors.EVENT_READ)
    conn_events = selectors.EVENT_READ
    stdin_registered = False
    try:
        while True:
            now = _now()
            if now >= s.deadline():
                s.tick(now)
            out += s.take_output(now)
            st = s.status()
            if st == _seclink.SESSION_CLOSED or (st == _seclink.SESSION_CLOSING and not out):
                break
            if s.peer_eof() and out_open:
                os.close(1)  # the client's stream ended: so does ours
                out_open = False
            if not in_open and not eof_sent and s.can_send():
                s.send_eof(now)
                eof_sent = True
            while net_pos < len(net) and s.wants_read():
                used, msg = s.feed(net, net_pos, now)
                net_pos += used
                if msg is not None:
                    try:
                        _write_all(1, msg)
                    except OSError:
                        s.reply_failed("cannot write standard output", now)
                        break
                    received += len(msg)
                    s.reply(b"", now)  # taken
            if net_pos >= len(net):
                net, net_pos = b"", 0
            out += s.take_output(now)
            reading = not net and s.wants_read()
            want_input = in_open and s.can_send() and len(out) < HIGH_WATER
            if want_input != stdin_registered:
                (sel.register(0, selectors.EVENT_READ) if want_input else sel.unregister(0))
                stdin_registered = want_input
            events = (selectors.EVENT_READ if reading else 0) | (selectors.EVENT_WRITE if out else 0)
            if events != conn_events:
                if conn_events == 0:
                    sel.register(conn, events)
                elif events == 0:
                    sel.unregister(conn)
                else:
                    sel.modify(conn, events)
                conn_events = events
            deadline = s.deadline()
            wait = 1.0 if deadline >= 2**62 else max(0.0, min(1.0, (deadline - now) / 1000))
            ready = {key.fd: ev for key, ev in sel.select(wait)}
            now = _now()
            if 0 in ready:
                data = os.read(0, chunk)
                if data:
                    s.send(data, now)
                    sent += len(data)
                else:
                    in_open = False
            cev = ready.get(conn.fileno(), 0)
            if reading and cev & selectors.EVENT_READ:
                try:
                    data = conn.recv(64 * 1024)
                except BlockingIOError:
                    data = None
                except OSError:
                    s.io_error(46, False, now)
                    data = None
                if data == b"":
                    s.feed_eof(now)
                elif data:
                    net, net_pos = data, 0
            out += s.take_output(now)
            if out:
                try:
                    n = conn.send(out)
                    out = out[n:]
                except BlockingIOError:
                    pass
                except OSError:
                    s.io_error(46, True, now)
        peer_eof = s.peer_eof()  # the client ended its stream (not a lost session)
    finally:
        sel.close()
        try:
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        conn.close()
        s.close()
    return peer_eof, received, sent
