"""Streams over seclink for the Python programs (the C++ ones: cpp_apps/pipe.hpp; docs/PROTOCOL.md 9).

--pipe: standard input goes to the peer as DATA, the peer's DATA to standard output as raw bytes,
the end of input is an EOF message, and the client sends CLOSE once both EOFs have passed.
--forward HOST:PORT (server) / --listen ADDR:PORT (client): a tunnel, the same with a TCP
connection in place of standard input/output, one session per connection; an EOF becomes a
half-close (shutdown) and a failing target closes only its tunnel. Memory is bounded: input is
read only while less than HIGH_WATER bytes wait to be written. SIGINT/SIGTERM stop a tunnel program
gracefully, as they stop the server: no new connections, a CLOSE for each session, then exit.
"""
from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from . import _seclink
from .errors import Error

CHUNK = 256 * 1024
HIGH_WATER = 1024 * 1024
DRAIN_SECONDS = 5.0  # at a stop: time for the tunnels to send CLOSE and end
DATA, CLOSE, EOF = _seclink.MESSAGE_TYPES["DATA"], _seclink.MESSAGE_TYPES["CLOSE"], _seclink.MESSAGE_TYPES["EOF"]


class PipeError(Exception):
    """The stream failed: ``code`` is the exit code (the core's category), the text says why."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class Stopped(Exception):
    """run_client(): the program is stopping (its `stop_fd` became readable)."""


class Stopper:
    """The graceful stop of a tunnel program, like the server's: SIGINT/SIGTERM (handled in the
    main thread, which must create this) make ``signalled`` readable, which the accept loop polls;
    ``stop()`` then makes ``fd`` readable for good, which every tunnel polls to send its CLOSE and
    end; ``drain()`` waits for them."""

    def __init__(self) -> None:
        self.signalled, self._signal_w = os.pipe()
        self.fd, self._w = os.pipe()
        self.signum = 0
        self._live = 0
        self._cond = threading.Condition()
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, self._on_signal)

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.signum = self.signum or signum
        os.write(self._signal_w, b"x")

    def stop(self) -> None:
        os.write(self._w, b"x")

    def run(self, target: Callable[..., None], *args: Any) -> None:
        """target(*args) on a thread of its own, counted until it returns."""
        def counted() -> None:
            try:
                target(*args)
            finally:
                with self._cond:
                    self._live -= 1
                    self._cond.notify_all()
        with self._cond:
            self._live += 1
        threading.Thread(target=counted, daemon=True).start()

    @property
    def live(self) -> int:
        with self._cond:
            return self._live

    def drain(self) -> bool:
        """False: a tunnel did not end in time (its thread dies with the process)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._live == 0, DRAIN_SECONDS)


class PipeStop:
    """SIGINT (Ctrl-C) and SIGTERM during a --pipe session (cpp_apps/pipe.hpp's PipeStop): from
    here on (main thread) they make ``fd`` readable, which the stream loop polls; the session then
    ends with its CLOSE and the program exits with ``code``, 128 + the signal, what a shell reports
    for a program the signal killed."""

    def __init__(self) -> None:
        self.fd, self._w = os.pipe()
        self.signum = 0
        self._before = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.signum = self.signum or signum
        os.write(self._w, b"x")

    @property
    def code(self) -> int:
        return 128 + self.signum

    @property
    def name(self) -> str:
        return "Interrupted" if self.signum == signal.SIGINT else "Terminated"

    def close(self) -> None:
        """The handlers of before come back; a signal from now on acts as it did before."""
        for s, handler in self._before.items():
            signal.signal(s, handler)
        os.close(self.fd)
        os.close(self._w)


def _accept_until_stopped(lsock: socket.socket, stop: Stopper, serve: Callable[[socket.socket, tuple, int], None],
                          what: str, log: Callable[[int, str], None]) -> None:
    """Accepts connections, each served by serve(conn, addr, stop.fd) on a thread of its own, until
    SIGINT or SIGTERM; then stops accepting, lets every tunnel close (see Stopper) and returns."""
    lsock.setblocking(False)
    with selectors.PollSelector() as sel:
        sel.register(lsock, selectors.EVENT_READ)
        sel.register(stop.signalled, selectors.EVENT_READ)
        while not any(key.fd == stop.signalled for key, _ in sel.select()):
            try:
                conn, addr = lsock.accept()
            except (BlockingIOError, InterruptedError):
                continue
            conn.setblocking(True)
            stop.run(serve, conn, addr, stop.fd)
    n = stop.live
    log(3, f"[INFO] {'Interrupted' if stop.signum == signal.SIGINT else 'Terminated'}: closing {n} {what}"
           f"{'' if n == 1 else 's'}")
    stop.stop()
    lsock.close()  # nobody else may connect
    if not stop.drain():
        n = stop.live
        log(2, f"[WARN] {n} {what}{'' if n == 1 else 's'} did not end within {DRAIN_SECONDS:g} s: dropped")


@dataclass
class Local:
    """This side's end of the stream: file descriptors to read and write (-1: none), and whether
    it is a TCP connection (the peer's EOF is then a shutdown, not a close)."""
    fd_in: int = 0
    fd_out: int = 1
    socket: bool = False

    def end_output(self) -> None:
        if self.fd_out < 0:
            return
        try:
            if self.socket:
                with socket.socket(fileno=os.dup(self.fd_out)) as dup:
                    dup.shutdown(socket.SHUT_WR)
            else:
                os.close(self.fd_out)
        except OSError:
            pass


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            selectors.select.select([], [fd], [])
            continue
        view = view[n:]


def run_client(native: Any, max_message: int, info: Callable[[str], None] | None,
               local: Local | None = None, stop_fd: int = -1) -> tuple[int, int]:
    """Carries the stream between `local` (default: standard input/output) and a connected native
    client (seclink.Client's ``_c``) until both ends have ended; the caller then closes. Returns
    (bytes sent, bytes received); raises PipeError, or Stopped once `stop_fd` is readable."""
    local = local or Local()
    chunk = max(1, min(CHUNK, max_message))
    in_open, peer_eof, sent, received = True, False, 0, 0
    sel = selectors.PollSelector()  # poll(): standard input may be a regular file (epoll refuses those)
    sel.register(native.fd, selectors.EVENT_READ)
    if stop_fd >= 0:
        sel.register(stop_fd, selectors.EVENT_READ)
    reading_input = False
    try:
        while True:
            if not in_open and peer_eof and native.pending == 0:
                break
            want_input = in_open and native.pending < HIGH_WATER
            if want_input != reading_input:
                (sel.register(local.fd_in, selectors.EVENT_READ) if want_input else sel.unregister(local.fd_in))
                reading_input = want_input
            sel.modify(native.fd, selectors.EVENT_READ | (selectors.EVENT_WRITE if native.pending else 0))
            ready = {key.fd for key, _ in sel.select()}
            if stop_fd in ready:
                raise Stopped(sent, received)
            if reading_input and local.fd_in in ready:
                try:
                    data = os.read(local.fd_in, chunk)
                except BlockingIOError:
                    data = None
                except OSError:
                    data = b""  # an error reading the input ends it, for the peer as an EOF
                if data:
                    native.queue(DATA, data)
                    sent += len(data)
                elif data is not None:
                    native.queue(EOF, b"")
                    in_open = False
                    if info is not None:
                        info("[INFO] end of input: waiting for the server to finish")
            native.flush(0)
            while (m := native.poll_message()) is not None:
                msg_type, content = m
                if msg_type == CLOSE:
                    why = _seclink.format_message(content) if content else "no reason given"
                    raise PipeError(7, f"the server closed the session: {why}")
                if msg_type == EOF:
                    peer_eof = True
                    local.end_output()
                elif msg_type == DATA:
                    try:
                        _write_all(local.fd_out, content)
                    except OSError as e:
                        where = "the local connection" if local.socket else "standard output"
                        raise PipeError(1, f"cannot write {where}: {e.strerror}") from None
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


def _peer(addr: tuple) -> str:
    return f"[{addr[0]}]:{addr[1]}" if ":" in addr[0] else f"{addr[0]}:{addr[1]}"


def make_policy(psk: bytearray, opts: dict[str, Any], log: Callable[[int, str], None], max_clients: int) -> Any:
    """The session layer's policy in stream mode, from the server program's options."""
    return _seclink.Policy(
        psk, max_clients=max_clients, max_handshakes=opts["max_handshakes"],
        max_handshakes_per_addr=opts["max_handshakes_per_address"], handshake_rate=opts["handshake_rate"],
        handshake_timeout_ms=int(opts["handshake_timeout"] * 1000), idle_timeout_ms=int(opts["idle_timeout"] * 1000),
        frame_timeout_ms=int(opts["frame_timeout"] * 1000), max_message=opts["max_message"],
        max_memory=opts["max_memory"], echo=False, redact=opts["redact"], tls=False, app_replies=False,
        log_level=opts["log_level"], log=log, stream=True, psk_names=opts.get("psk_names"))


class _Serialized:
    """A session whose calls take `lock`: with several threads driving sessions, two may not be
    inside the session layer at once. (Its log line lock is a C++ mutex taken with the GIL held:
    a thread waiting for it holds the GIL that the thread logging, in Python, needs back.)"""

    def __init__(self, session: Any, lock: threading.Lock) -> None:
        self._s, self._lock = session, lock

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._s, name)

        def call(*args: Any) -> Any:
            with self._lock:
                return method(*args)
        return call


def serve_stream(conn: socket.socket, peer: str, policy: Any, max_message: int,
                 open_local: Callable[[], Local], lock: threading.Lock | None = None,
                 stop_fd: int = -1) -> tuple[bool, int, int]:
    """Serves one accepted connection as a stream session of `policy`: the session layer decides
    everything (handshake, limits, deadlines, log lines); this only moves bytes. Once the session
    is authenticated, `open_local()` gives this side's end (an OSError's text is told to the
    client). A readable `stop_fd` shuts the session down (CLOSE "server shutting down"). Returns
    (the client ended its stream, bytes received, bytes sent)."""
    conn.setblocking(False)
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if lock is None:
        s = _seclink.Session(policy, peer, _now())
    else:
        with lock:
            s = _Serialized(_seclink.Session(policy, peer, _now()), lock)
    local: Local | None = None
    in_open = out_open = eof_sent = False
    net, net_pos, out = b"", 0, b""
    received = sent = 0
    chunk = max(1, min(CHUNK, max_message or CHUNK))
    sel = selectors.PollSelector()
    sel.register(conn, selectors.EVENT_READ)
    if stop_fd >= 0:
        sel.register(stop_fd, selectors.EVENT_READ)
    conn_events, reading_input = selectors.EVENT_READ, False
    shut = False  # closing: writing shut down, lingering

    def opened(now: int) -> bool:
        nonlocal local, in_open, out_open
        try:
            local = open_local()
        except OSError as e:
            local = Local(-1, -1)
            s.fail(str(e), now)
            return False
        in_open, out_open = local.fd_in >= 0, local.fd_out >= 0
        return True

    try:
        while True:
            now = _now()
            if now >= s.deadline():
                s.tick(now)
            out += s.take_output(now)
            st = s.status()
            if st == _seclink.SESSION_CLOSING and not out and not shut:  # written: the lingering close (PROTOCOL.md 5)
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_WR)
                shut = True
            if st == _seclink.SESSION_CLOSED or (st == _seclink.SESSION_CLOSING and not out and not s.wants_read()):
                break
            if local is None and st == _seclink.SESSION_OPEN and s.can_send() and not opened(now):
                continue
            if local is not None and s.peer_eof() and out_open:
                local.end_output()  # the client's stream ended: so does our output
                out_open = False
            if local is not None and not in_open and not eof_sent and s.can_send():
                s.send_eof(now)
                eof_sent = True
            while net_pos < len(net) and s.wants_read():
                used, msg = s.feed(net, net_pos, now)
                net_pos += used
                if msg is None:
                    continue
                if local is None and not opened(now):
                    break
                try:
                    if not out_open:
                        raise OSError("closed")
                    _write_all(local.fd_out, msg)
                except OSError as e:
                    s.fail(f"{'target' if local.socket else 'standard output'}: {e.strerror or e}", now)
                    break
                received += len(msg)
                s.reply(b"", now)  # taken
            if net_pos >= len(net):
                net, net_pos = b"", 0
            if local is not None and s.peer_eof() and out_open:
                local.end_output()  # the client's stream ended (just now, maybe): so does our output
                out_open = False
            out += s.take_output(now)
            reading = not net and s.wants_read()
            want_input = in_open and s.can_send() and len(out) < HIGH_WATER
            if want_input != reading_input:
                (sel.register(local.fd_in, selectors.EVENT_READ) if want_input else sel.unregister(local.fd_in))
                reading_input = want_input
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
            if stop_fd in ready:  # once: the session is closing from now on
                s.shutdown(now)
                sel.unregister(stop_fd)
                stop_fd = -1
                continue
            if reading_input and local.fd_in in ready:
                try:
                    data = os.read(local.fd_in, chunk)
                except BlockingIOError:
                    data = None
                except OSError as e:
                    s.fail(f"target: {e.strerror}", now)
                    data = b""
                if data:
                    s.send(data, now)
                    sent += len(data)
                elif data is not None:
                    in_open = False  # the EOF goes out at the top of the loop
            if reading and ready.get(conn.fileno(), 0) & selectors.EVENT_READ:
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
        ended = s.peer_eof()  # the client ended its stream (not a lost session)
    finally:
        sel.close()
        try:
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        conn.close()
        if local is not None and local.socket and local.fd_in >= 0:
            os.close(local.fd_in)
        s.close()
    return ended, received, sent


def _listen(host: str, port: int, backlog: int) -> socket.socket:
    try:
        return socket.create_server((host, port), backlog=backlog)
    except OSError as e:
        raise PipeError(4, f"cannot listen on {host}:{port}: {e.strerror}"
                           f"{' (choose another port)' if e.errno == 98 else ''}") from None


def run_server(host: str, port: int, psk: bytearray, opts: dict[str, Any], log: Callable[[int, str], None],
               listening: Callable[[int], None]) -> tuple[bool, int, int, PipeStop]:
    """--pipe: serves one session (like ``nc -l``) between the client and standard input/output.
    Returns (the client ended its stream, bytes received, bytes sent, the PipeStop: its
    ``signum`` is the signal that ended the session with a CLOSE, or 0)."""
    with _listen(host, port, 1) as lsock:
        listening(lsock.getsockname()[1])
        conn, addr = lsock.accept()
    policy = make_policy(psk, opts, log, 1)
    stop = PipeStop()  # from the session on: before it, a signal ends the program as usual
    try:
        # A terminal is not a stream to send: the server then only receives (`server.py --pipe > f`).
        ended, received, sent = serve_stream(conn, _peer(addr), policy, opts["max_message"],
                                             lambda: Local(-1 if os.isatty(0) else 0, 1, False), stop_fd=stop.fd)
    finally:
        stop.close()
    return ended, received, sent, stop


def split_host_port(s: str) -> tuple[str, int] | None:
    host, sep, port = s.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        return None
    return (host[1:-1] if host.startswith("[") and host.endswith("]") else host), int(port)


def run_forward_server(host: str, port: int, psk: bytearray, opts: dict[str, Any], log: Callable[[int, str], None],
                       listening: Callable[[int], None], target: tuple[str, int]) -> None:
    """--forward: every session is carried to its own TCP connection to `target`, until SIGINT or
    SIGTERM (then each session gets its CLOSE)."""
    policy = make_policy(psk, opts, log, opts["max_clients"])
    thost, tport = target
    shown = f"[{thost}]:{tport}" if ":" in thost else f"{thost}:{tport}"

    def open_target() -> Local:
        try:
            t = socket.create_connection((thost, tport), timeout=10)
        except OSError as e:
            raise OSError(f"cannot reach the tunnel's target {shown}: {e.strerror or e}") from None
        t.settimeout(None)
        t.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        fd = t.detach()
        return Local(fd, fd, True)

    lock = threading.Lock()  # one thread inside the session layer at a time (see _Serialized)

    def one(conn: socket.socket, addr: tuple, stop_fd: int) -> None:
        serve_stream(conn, _peer(addr), policy, opts["max_message"], open_target, lock, stop_fd)

    stop = Stopper()  # before "Listening on": a stop signal from then on is graceful
    with _listen(host, port, 128) as lsock:
        listening(lsock.getsockname()[1])
        _accept_until_stopped(lsock, stop, one, "session", log)


def run_tunnel_client(connect: Callable[[], Any], where: str, listen: tuple[str, int], max_message: int,
                      log: Callable[[int, str], None], listening: Callable[[int], None]) -> None:
    """--listen: each local TCP connection is carried through its own session (``connect()`` makes
    a seclink.Client), until SIGINT or SIGTERM (then each session gets its CLOSE)."""
    def one(sock: socket.socket, addr: tuple, stop_fd: int) -> None:
        peer = _peer(addr)
        try:
            c = connect()
        except Error as e:
            log(2, f"[WARN] tunnel from {peer}: cannot connect to {where}: {e}")
            sock.close()
            return
        log(3, f"[INFO] tunnel from {peer} open")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        fd = sock.fileno()
        try:
            sent, received = run_client(c._c, max_message, None, Local(fd, fd, True), stop_fd)
            c.close()
            log(3, f"[INFO] tunnel from {peer} closed (sent {sent} bytes, received {received} bytes)")
        except Stopped as e:
            c.close("client shutting down")
            log(3, f"[INFO] tunnel from {peer} closed: client shutting down (sent {e.args[0]} bytes, "
                   f"received {e.args[1]} bytes)")
        except PipeError as e:
            log(2, f"[WARN] tunnel from {peer} broken off: {e}")
        finally:
            sock.close()

    stop = Stopper()  # before "Listening on": a stop signal from then on is graceful
    with _listen(*listen, 128) as lsock:
        listening(lsock.getsockname()[1])
        _accept_until_stopped(lsock, stop, one, "tunnel", log)
