"""asyncio client and server for seclink/1, built on the sans-I/O :class:`seclink.Connection`.

Everything runs on the event loop, with no threads: asyncio streams move the bytes, the engine
runs the protocol, and TLS 1.3 (when asked for) is an :class:`ssl.SSLObject` over memory buffers::

    import asyncio
    from seclink import aio

    async def shout(data: bytes, peer: str) -> bytes:
        return data.upper()

    async def main() -> None:
        async with await aio.serve("127.0.0.1", 0, handler=shout) as server:
            async with await aio.connect("127.0.0.1", server.port) as client:
                print(await client.request(b"hello"))        # b'HELLO'

    asyncio.run(main())

:func:`serve` behaves like :class:`seclink.Server`, the native server: the same limits, replies
and log lines (same text, level and order for the same events). :func:`connect` behaves like
:class:`seclink.Client`: the same checks and the same exceptions.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import hmac
import inspect
import os
import socket
import ssl
import warnings
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar, Union

from . import _seclink
from .client import FileResult
from .connection import Closed, Connection, Data, Event, FileMessage, HandshakeComplete, Ping, Pong, modes_mask
from .errors import (ConnectionClosed, Err, Error, FileTransferError, HandshakeError, ProtocolError, as_handshake_error,
                     from_code)
from .keys import config_dir, ensure_self_signed_certificate, resolve_psk, resolve_psks, wipe

__all__ = ["serve", "connect", "AioServer", "AioClient", "Handler", "LogFn"]

DEFAULT_MAX_MESSAGE: int = _seclink.DEFAULT_MAX_MESSAGE
LOG_WARN, LOG_INFO, LOG_MSG, LOG_TRACE = _seclink.LOG_WARN, _seclink.LOG_INFO, _seclink.LOG_MSG, _seclink.LOG_TRACE

Reply = Union[bytes, bytearray, memoryview, str, None]
Handler = Callable[[bytes, str], Union[Reply, Awaitable[Reply]]]
LogFn = Callable[[int, str], None]
T = TypeVar("T")

_CHUNK = 64 * 1024     # bytes read at a time; the stream reader pauses the socket beyond twice this
_CLOSE_GRACE = 2.0     # seconds to flush a CLOSE (or finish closing) before dropping the connection
_BACKLOG = 4096        # listen backlog (the system caps it): a burst of clients is not made to wait
_HOSTNAME_MISMATCH = (62, 64)  # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH
class _Default:
    """The default of a per-call timeout: the connection's own (readable in help())."""

    def __repr__(self) -> str:
        return "<the connection's timeout>"


_DEFAULT: Any = _Default()
_ERRNO_CODES = {errno.ECONNREFUSED: Err.CONNREFUSED, errno.ENETUNREACH: Err.UNREACHABLE,
                errno.EHOSTUNREACH: Err.UNREACHABLE, errno.ENETDOWN: Err.UNREACHABLE, errno.ETIMEDOUT: Err.TIMEDOUT,
                errno.EADDRINUSE: Err.ADDRINUSE, errno.EADDRNOTAVAIL: Err.ADDRNOTAVAIL, errno.EACCES: Err.ACCES,
                errno.EPERM: Err.ACCES, errno.EAFNOSUPPORT: Err.AFNOSUPPORT}


# ------------------------------------------------------------------------------ shared pieces

def _os_code(exc: OSError) -> int:
    """The library error code for a socket or TLS error (as errno_to_sl() in core/src/net.cpp)."""
    if isinstance(exc, ssl.SSLError):
        return Err.TLS
    if isinstance(exc, (ConnectionResetError, BrokenPipeError)):
        return Err.PEER_CLOSED
    return _ERRNO_CODES.get(exc.errno or 0, Err.SOCKET)


def _shown(data: bytes) -> str:
    """Text as every seclink log shows it (escaped, <binary> or <empty>, cut at 200 bytes)."""
    return _seclink.format_message(data)


def _peer_name(addr: object) -> str:
    """'host:port' or '[v6 address]:port', as the native code names a peer."""
    if not isinstance(addr, tuple):
        return "?"
    host = str(addr[0]).split("%")[0]
    return f"[{host}]:{addr[1]}" if len(addr) == 4 else f"{host}:{addr[1]}"


def _ms(seconds: float) -> int:
    if seconds <= 0:
        raise ValueError("timeouts must be positive")
    return min(int(seconds * 1000), 2**32 - 1)


async def _resolve(host: str, port: int, flags: int = 0) -> list[Any]:
    """getaddrinfo(): at once for a numeric address; a name goes to asyncio's resolver, the only
    place where asyncio itself uses a thread."""
    try:
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=flags | socket.AI_NUMERICHOST)
    except socket.gaierror:
        return await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=flags)


def _tls13_only(ctx: ssl.SSLContext) -> ssl.SSLContext:
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    return ctx


class _Stream:
    """One TCP connection as a byte stream, optionally inside TLS.

    TLS runs on an SSLObject over memory BIOs rather than inside asyncio's transport, so that a
    server can look at a connection's first bytes before deciding whether it speaks TLS, and every
    TLS failure is raised here (to be classified) instead of landing in the event loop's log.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.peer = _peer_name(writer.get_extra_info("peername"))
        self.tls: ssl.SSLObject | None = None
        self._in: ssl.MemoryBIO  # with TLS only (start_tls): a plain session has no BIOs to pay for
        self._out: ssl.MemoryBIO

    async def start_tls(self, ctx: ssl.SSLContext, *, server_side: bool, server_hostname: str | None = None,
                        received: bytes = b"") -> None:
        """Runs the TLS handshake; `received` holds bytes already read from the socket."""
        self._in, self._out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self._in, self._out, server_side=server_side, server_hostname=server_hostname)
        self._in.write(received)
        await self._tls_call(self.tls.do_handshake)

    async def read(self) -> bytes:
        """Up to 64 KiB; b"" at the end of the stream (a reset counts as an end, as in net.cpp)."""
        if self.tls is None:
            try:
                return await self.reader.read(_CHUNK)
            except (ConnectionResetError, BrokenPipeError):  # (a failed write sets the reader's error)
                return self._unread()
        try:
            return await self._tls_call(self.tls.read, _CHUNK)
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            return b""

    async def write(self, data: bytes) -> None:
        """Writes `data`, waiting while the peer is slow to read (backpressure)."""
        if self.tls is not None and data:
            self.tls.write(data)  # a memory BIO takes it all
            data = self._out.read()
        self.writer.write(data)
        await self.writer.drain()

    async def shut_write(self) -> bool:
        """Says goodbye on the writing side only (TLS close_notify, then FIN); reading goes on.
        False if the connection is gone."""
        try:
            if self.tls is not None:
                try:
                    self.tls.unwrap()
                except ssl.SSLError:
                    pass  # close_notify is queued; not waiting for the peer's
                self.writer.write(self._out.read())
            if not self.writer.can_write_eof():
                return False
            self.writer.write_eof()
            await self.writer.drain()
            return True
        except OSError:
            return False

    async def close(self, graceful: bool = False) -> None:
        """Closes; `graceful` first says goodbye (TLS close_notify, then FIN). Bounded wait."""
        try:
            if graceful and self.tls is not None:
                try:
                    self.tls.unwrap()
                except ssl.SSLError:
                    pass  # close_notify is queued; not waiting for the peer's
                self.writer.write(self._out.read())
            if graceful and self.writer.can_write_eof():
                self.writer.write_eof()
            self.writer.close()
            await asyncio.wait_for(self.writer.wait_closed(), _CLOSE_GRACE)
        except (OSError, asyncio.TimeoutError):
            self.abort()

    def abort(self) -> None:
        """Drops the connection at once, discarding anything unsent."""
        self.writer.transport.abort()

    def _unread(self) -> bytes:
        """After a reset: the bytes that arrived before it (a StreamReader raises the reset before
        handing them out, and they may hold the peer's CLOSE, PROTOCOL.md 5); then b"" (the end)."""
        buffered = getattr(self.reader, "_buffer", None)
        if not buffered:
            return b""
        data = bytes(buffered)
        buffered.clear()
        return data

    async def _recv(self) -> bytes:
        try:
            return await self.reader.read(_CHUNK)
        except (ConnectionResetError, BrokenPipeError):
            return self._unread()

    async def _tls_call(self, fn: Callable[..., T], *args: Any) -> T:
        """Calls an SSLObject method, moving TLS records to and from the socket until it completes."""
        while True:
            try:
                result = fn(*args)
                break
            except ssl.SSLWantReadError:
                if self._in.eof:
                    raise ssl.SSLEOFError("EOF occurred in violation of protocol") from None
                await self._push()
                data = await self._recv()
                self._in.write(data) if data else self._in.write_eof()
            except ssl.SSLError:
                with contextlib.suppress(OSError):
                    await self._push()  # the fatal alert, which tells the peer why
                raise
        await self._push()
        return result

    async def _push(self) -> None:
        out = self._out.read()
        if out:
            self.writer.write(out)
            await self.writer.drain()


# ------------------------------------------------------------------------------ server

@dataclass(eq=False)
class _Conn:
    """One accepted connection: its stream and its session (the core's session layer, which
    decides everything; this driver only moves bytes and time)."""
    stream: _Stream
    session: _seclink.Session
    task: asyncio.Task[Any]
    wake: asyncio.Event        # set when a tick changed what the session wants
    io_wait: bool = False      # blocked reading or writing (a deadline may cancel that)
    interrupted: bool = False  # this driver cancelled the task for a deadline or a shutdown
    timer: asyncio.TimerHandle | None = None
    shut: bool = False         # closing: writing shut down, lingering (what arrives is discarded)
    held: bytes = b""          # read while a password check ran (session busy): fed after the verdict
    parked: bool = False       # waiting in a plain read with nothing buffered: _Protocol may serve inline


class _Protocol(asyncio.StreamReaderProtocol):
    """The server's stream protocol. A plain session with built-in replies (ACK, echo, chat) is
    served inline while its task waits in a read with nothing buffered: the bytes go straight to
    the session layer and its output to the transport, one call into the core per read instead
    of a task wake-up. Anything else (a handler, TLS, a state change, backpressure) goes through
    the stream and the task, as before."""

    conn: _Conn | None = None
    server: AioServer | None = None
    writing_paused = False

    def data_received(self, data: bytes) -> None:
        c = self.conn
        if c is not None and c.parked:
            c.parked = False
            if not self.writing_paused and self.server is not None:
                data = self.server._serve_inline(c, data)
                if not data:
                    return
        super().data_received(data)

    def pause_writing(self) -> None:
        self.writing_paused = True
        super().pause_writing()

    def resume_writing(self) -> None:
        self.writing_paused = False
        super().resume_writing()


class AioServer:
    """A listening seclink/1 server on the running event loop; made by :func:`serve`.

    Attributes: ``host``, ``port`` (the port actually bound), ``sessions`` (connections open now),
    ``tls_cert`` and ``tls_cert_created`` (as :class:`seclink.Server`). ``async with server:``
    closes it on exit. Every decision about a connection (admission, limits, deadlines, replies,
    log lines) is the core's session layer, shared with the native server.
    """

    def __init__(self, handler: Handler | None, host: str, port: int, *, psk: bytearray, echo: bool, max_clients: int,
                 handshake_timeout: float, idle_timeout: float, max_message: int, log: LogFn | None,
                 log_level: int, tls: bool, tls_cert: str | None, tls_key: str | None, redact: bool = False,
                 max_handshakes: int = 0, max_handshakes_per_address: int = 0, handshake_rate: int = 0,
                 frame_timeout: float | None = None, max_memory: int = 0, files_dir: str | None = None,
                 overwrite: bool = False, max_file_size: int = 0, max_files_total: int = 0, chat: bool = False,
                 chat_rooms: int = 0, chat_members: int = 0, chat_rate: int = 0, chat_queue: int = 0,
                 chat_cluster: str | None = None, psk_names: list[str] | None = None, rekey_bytes: int = 0,
                 server_key: bytes | None = None, modes: list[str] | None = None, authorized_keys: str | None = None,
                 password_users: str | None = None) -> None:
        self.host, self.port = host, port  # the port actually bound, once listening
        self._handler = handler
        self._max_send = max(max_message, DEFAULT_MAX_MESSAGE)
        self.tls_cert_created = False
        self._tls_ctx: ssl.SSLContext | None = None
        if tls:
            if not (tls_cert and tls_key):
                if tls_cert or tls_key:
                    raise ValueError("tls_cert and tls_key go together")
                tls_cert, tls_key, self.tls_cert_created = ensure_self_signed_certificate()
            self._tls_ctx = _tls13_only(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
            self._tls_ctx.num_tickets = 0
            try:
                self._tls_ctx.load_cert_chain(tls_cert, tls_key)
            except OSError:
                raise from_code(Err.TLS_CERT, f"cannot listen on {host}:{port}") from None
        self.tls_cert = tls_cert if tls else None
        self._policy = _seclink.Policy(
            psk, max_clients=max_clients, max_handshakes=max_handshakes,
            max_handshakes_per_addr=max_handshakes_per_address, handshake_rate=handshake_rate,
            handshake_timeout_ms=_ms(handshake_timeout), idle_timeout_ms=_ms(idle_timeout),
            frame_timeout_ms=0 if frame_timeout is None else _ms(frame_timeout), max_message=max_message,
            max_memory=max_memory, echo=echo, redact=redact, tls=tls, app_replies=handler is not None,
            log_level=log_level, log=log, files_dir=files_dir, files_overwrite=overwrite,
            max_file_size=max_file_size, max_files_total=max_files_total, chat=chat, chat_rooms=chat_rooms,
            chat_members=chat_members, chat_rate=chat_rate, chat_queue=chat_queue, chat_cluster=chat_cluster or "",
            psk_names=psk_names, rekey_bytes=rekey_bytes, server_key=server_key,
            modes=modes_mask(modes), authorized_keys=authorized_keys, password_users=password_users)
        self._log = log
        self._by_id: dict[int, _Conn] = {}
        self._notify_r = -1
        # The cluster link and the password checker call from their own threads: queued by the
        # extension, a byte here.
        if chat_cluster or password_users:
            self._notify_r, notify_w = os.pipe()
            os.set_blocking(self._notify_r, False)
            self._policy.set_notify_fd(notify_w)
            os.close(notify_w)
        self._conns: dict[asyncio.Task[Any], _Conn] = {}
        self._closing = False
        self._closed = asyncio.Event()
        self._server: asyncio.AbstractServer | None = None

    @property
    def sessions(self) -> int:
        """Number of connections open now."""
        return self._policy.connections

    async def close(self) -> None:
        """Stops listening; every authenticated session gets CLOSE "server shutting down", the
        others are dropped; returns when every connection has ended (each within a short grace
        period)."""
        if not self._closing:
            self._closing = True
            if self._server is not None:
                self._server.close()
            now = self._now()
            for c in self._conns.values():
                c.session.shutdown(now)
                self._poke(c)
        while self._conns:
            await asyncio.wait(list(self._conns))
        if self._server is not None:
            await self._server.wait_closed()
        if self._notify_r >= 0:
            asyncio.get_running_loop().remove_reader(self._notify_r)
            os.close(self._notify_r)
            self._notify_r = -1
        self._unwatch_out_of_fds()
        self._closed.set()

    # Out of file descriptors, asyncio's accept loop reports EMFILE once per try, with a traceback,
    # and tries again up to `backlog` (4096) times in a row: a busy loop writing to stderr. As the
    # native server does, each such report here refuses one queued connection instead (the spare
    # descriptor closed, the connection accepted and closed, the spare opened again) and logs the
    # core's [WARN] line, so the queue drains, the loop ends at once, and asyncio retries later.
    _ACCEPT_EXHAUSTED = "socket.accept() out of system resource"

    def _watch_out_of_fds(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        self._listen_sock, self._loop = sock, loop
        self._spare = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        self._previous_handler = loop.get_exception_handler()
        loop.set_exception_handler(self._on_loop_exception)

    def _unwatch_out_of_fds(self) -> None:
        if getattr(self, "_spare", -1) >= 0:
            os.close(self._spare)
            self._spare = -1
        if getattr(self, "_loop", None) is not None and self._loop.get_exception_handler() == self._on_loop_exception:
            self._loop.set_exception_handler(self._previous_handler)

    def _on_loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") != self._ACCEPT_EXHAUSTED:
            if self._previous_handler is not None:
                self._previous_handler(loop, context)
            else:
                loop.default_exception_handler(context)
            return
        if self._spare >= 0:
            os.close(self._spare)
            self._spare = -1
        try:
            conn, _ = self._listen_sock.accept()
            conn.close()
        except OSError:
            pass  # nothing queued, or still out of descriptors
        try:
            self._spare = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            pass
        self._policy.out_of_fds()

    def reload_users(self) -> None:
        """Reads the authorized-keys file again (docs/PROTOCOL.md 15; the programs do so on SIGHUP).
        Raises KeyFileError if it does not parse: the previous list then stays in force."""
        rc = self._policy.reload_users()
        if rc:
            raise from_code(rc, "authorized keys")

    async def serve_forever(self) -> None:
        """Serves until :meth:`close` is called or this task is cancelled (then closes)."""
        try:
            await self._closed.wait()
        finally:
            await self.close()

    async def __aenter__(self) -> AioServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _listen(self) -> None:
        """Binds the first address of ``host`` that works (as the native server) and listens."""
        where = f"cannot listen on {self.host}:{self.port}"
        try:
            infos = await _resolve(self.host, self.port, socket.AI_PASSIVE)
        except socket.gaierror:
            raise from_code(Err.RESOLVE, where) from None
        code = Err.SOCKET
        for family, kind, proto, _, addr in infos:
            sock = socket.socket(family, kind, proto)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(addr)
                loop = asyncio.get_running_loop()

                def protocol() -> _Protocol:
                    return _Protocol(asyncio.StreamReader(limit=_CHUNK, loop=loop), self._on_connection, loop=loop)

                self._server = await loop.create_server(protocol, sock=sock, backlog=_BACKLOG)
                self.port = sock.getsockname()[1]
                self._watch_out_of_fds(sock)
                if self._notify_r >= 0:
                    asyncio.get_running_loop().add_reader(self._notify_r, self._notified)
                return
            except OSError as exc:
                sock.close()
                code = _os_code(exc)
        raise from_code(code, where)

    @staticmethod
    def _now() -> int:
        return int(asyncio.get_running_loop().time() * 1000)

    def _poke(self, c: _Conn) -> None:
        """The session's wishes changed (a tick, a shutdown): wake its task, interrupting I/O."""
        c.wake.set()
        if c.io_wait and c.session.status() != _seclink.SESSION_OPEN and not c.interrupted:
            c.interrupted = True
            c.task.cancel()

    def _notified(self) -> None:
        """What the chat cluster link's thread queued: its log lines, and sessions to wake."""
        try:
            os.read(self._notify_r, 4096)
        except BlockingIOError:
            pass
        logs, woken = self._policy.take_pending()
        for level, line in logs:
            if self._log is not None:
                self._log(level, line)
        for sid in woken:
            c = self._by_id.get(sid)
            if c is not None:
                self._deliver(c)

    def _deliver(self, c: _Conn) -> None:
        """The session layer's wake-up: other sessions queued chat lines for c (called inside
        their calls into the session layer), or the inline path (_serve_inline) left c wanting its
        task. Only schedules; _drive pumps the lines out (and closes a member too slow to take
        them) and looks at the session."""
        c.wake.set()
        if c.io_wait and not c.interrupted:  # a read, or a write stuck on a member that does not read
            c.interrupted = True
            c.task.cancel()

    def _arm(self, c: _Conn) -> None:
        """One timer per session, at its deadline; it ticks the session there."""
        deadline = c.session.deadline()
        if c.timer is not None:
            if c.timer.when() * 1000 <= deadline + 1 and not c.timer.cancelled():
                return  # already due earlier: it re-arms itself
            c.timer.cancel()
        if deadline >= 2**62:
            c.timer = None
            return
        loop = asyncio.get_running_loop()

        def due() -> None:
            c.timer = None
            now = self._now()
            if now >= c.session.deadline():
                c.session.tick(now)
                self._poke(c)
            self._arm(c)

        c.timer = loop.call_at(deadline / 1000, due)

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        stream = _Stream(reader, writer)
        task = asyncio.current_task()
        assert task is not None
        c = _Conn(stream, _seclink.Session(self._policy, stream.peer, self._now()), task, asyncio.Event())
        self._conns[task] = c
        self._by_id[c.session.id] = c
        c.session.set_wake(lambda: self._deliver(c))
        proto = writer.transport.get_protocol()
        if isinstance(proto, _Protocol) and self._handler is None and self._tls_ctx is None:
            proto.conn, proto.server = c, self
        try:
            if self._closing:
                c.session.shutdown(self._now())
            await self._drive(c)
        finally:
            if c.timer is not None:
                c.timer.cancel()
            del self._conns[task]
            c.session.close()  # the "disconnected" line; slots and budget given back
            c.session.set_wake(None)  # the callback refers to c: no cycle left through the extension
            c.parked = False
            del self._by_id[c.session.id]

    async def _drive(self, c: _Conn) -> None:
        """Moves bytes and time for one session until it says to close."""
        s, stream = c.session, c.stream
        tls_pending = self._tls_ctx is not None
        while True:
            self._arm(c)
            s.pump(self._now())  # chat lines other sessions queued for this one
            status = s.status()
            if status == _seclink.SESSION_CLOSED:
                if c.shut:  # lingered: everything was sent, the client's end is read
                    await stream.close()
                else:
                    stream.abort()
                return
            out = s.take_output(self._now())
            if out or (status == _seclink.SESSION_CLOSING and not c.shut):
                if not await self._io(c, self._write(c, out, raw=tls_pending)):
                    continue
                if status == _seclink.SESSION_CLOSING:
                    c.shut = True
                    if not s.wants_read() or not await self._io(c, stream.shut_write()):
                        await stream.close()
                        return
                    continue
            if c.shut:  # the lingering close: the session says how long and how much
                await self._io(c, self._discard(c))
                continue
            if c.held and not s.busy():  # the password check's verdict is in: what came behind the AUTH
                held, c.held = c.held, b""
                await self._feed(c, held)
                continue
            if not s.wants_read():  # waiting for admission: until a tick says otherwise
                c.wake.clear()
                await c.wake.wait()
                continue
            if tls_pending:
                tls_pending = False
                await self._io(c, self._accept_tls(c))
                continue
            data = await self._io(c, self._read(c))
            if data:
                await self._feed(c, data)

    async def _io(self, c: _Conn, op: Coroutine[Any, Any, T]) -> T | None:
        """Awaits one read or write that a deadline or a shutdown may interrupt (then None)."""
        c.io_wait = True
        try:
            return await op
        except asyncio.CancelledError:
            if not c.interrupted:
                raise
            uncancel = getattr(asyncio.current_task(), "uncancel", None)
            if uncancel is not None:  # Python 3.11+: this cancellation is handled here
                uncancel()
            return None
        finally:
            c.io_wait = c.interrupted = False

    async def _write(self, c: _Conn, data: bytes, raw: bool) -> bool:
        try:
            if raw:  # before TLS: raw bytes (the alert that tells a plain client why)
                c.stream.writer.write(data)
                await c.stream.writer.drain()
            else:
                await c.stream.write(data)
            return True
        except OSError:
            c.session.io_error(Err.PEER_CLOSED, True, self._now())
            return False

    async def _read(self, c: _Conn) -> bytes:
        c.parked = True  # (only a plain session's _Protocol looks at it)
        try:
            data = await c.stream.read()
        except OSError as exc:
            c.session.io_error(_os_code(exc), False, self._now())
            return b""
        finally:
            c.parked = False
        if not data:
            c.session.feed_eof(self._now())
        return data

    async def _discard(self, c: _Conn) -> None:
        """Lingering: raw bytes (TLS records too) handed to the session, which drops them."""
        try:
            data = await c.stream.reader.read(_CHUNK)
        except OSError as exc:
            c.session.io_error(_os_code(exc), False, self._now())
            return
        if data:
            c.session.feed(data, 0, self._now())
        else:
            c.session.feed_eof(self._now())

    def _serve_inline(self, c: _Conn, data: bytes) -> bytes:
        """_Protocol's fast path: serves what it can of `data` while the task waits in its read;
        returns what is left for the task, which is woken as well if the session wants it."""
        now = self._now()
        used, out, calm = c.session.serve(data, now)
        if out:
            c.stream.writer.write(out)  # the transport sends at once or buffers (then pauses us)
        self._arm(c)
        if used < len(data):
            return data[used:]  # through the stream: the read returns it
        if calm:
            c.parked = True  # still waiting in the read, nothing buffered
        else:
            self._deliver(c)  # the read ends with nothing: _drive looks at the session
        return b""

    async def _accept_tls(self, c: _Conn) -> None:
        assert self._tls_ctx is not None
        s, stream = c.session, c.stream
        first = await stream.read()
        if not first:
            s.tls_failed("connection closed", self._now())
            return
        if s.tls_check(first, self._now()):
            return  # not TLS: the session says so with an alert, then closes
        try:
            await stream.start_tls(self._tls_ctx, server_side=True, received=first)
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
            s.tls_failed("connection closed", self._now())
        except ssl.SSLError as exc:
            s.tls_failed(exc.reason.lower().replace("_", " ") if exc.reason else str(exc), self._now())
        except OSError:
            s.tls_failed("connection closed", self._now())

    async def _feed(self, c: _Conn, data: bytes) -> None:
        """Hands received bytes to the session; answers each message it hands out, in order."""
        s, off = c.session, 0
        while off < len(data) and s.status() == _seclink.SESSION_OPEN:
            if s.busy():  # a password check runs off the loop: the rest waits for its verdict
                c.held = data[off:]
                return
            used, msg = s.feed(data, off, self._now())
            off += used
            if msg is not None:
                await self._answer(c, msg)

    async def _answer(self, c: _Conn, data: bytes) -> None:
        """The handler's reply to one message; a failing handler ends only this session."""
        assert self._handler is not None
        s = c.session
        try:
            result = self._handler(data, s.peer)
            if inspect.isawaitable(result):
                result = await result
            result = result.encode() if isinstance(result, str) else b"" if result is None else result
        except Exception as exc:  # the handler's failure is logged, never sent
            why = f"{type(exc).__name__}: {exc}"
        else:
            try:
                reply = bytes(memoryview(result))  # type: ignore[arg-type]
            except TypeError:
                why = (f"handler returned an unusable reply: Object of type '{type(result).__name__}' "
                       "is not an instance of 'buffer'")
            else:
                if len(reply) <= self._max_send:
                    s.reply(reply, self._now())
                    return
                why = f"reply refused: {_seclink.strerror(20)}"
        s.reply_failed(why, self._now())


async def serve(host: str = "0.0.0.0", port: int = _seclink.DEFAULT_PORT, _old_port: int | None = None, *,
                handler: Handler | None = None, psk: bytes | list[bytes] | None = None,
                psk_file: str | os.PathLike[str] | list[str | os.PathLike[str]] | None = None, echo: bool = False,
                max_clients: int = _seclink.DEFAULT_MAX_CLIENTS, handshake_timeout: float = _seclink.DEFAULT_HANDSHAKE_TIMEOUT_MS / 1000,
                idle_timeout: float = _seclink.DEFAULT_IDLE_TIMEOUT_MS / 1000, max_message: int = DEFAULT_MAX_MESSAGE, log: LogFn | None = None,
                log_level: int = LOG_MSG, tls: bool = False, tls_cert: str | None = None, tls_key: str | None = None,
                redact: bool = False, max_handshakes: int = _seclink.DEFAULT_MAX_HANDSHAKES,
                max_handshakes_per_address: int = _seclink.DEFAULT_MAX_HANDSHAKES_PER_ADDR,
                handshake_rate: int = _seclink.DEFAULT_HANDSHAKE_RATE,
                frame_timeout: float = _seclink.DEFAULT_FRAME_TIMEOUT_MS / 1000,
                max_memory: int = _seclink.DEFAULT_MAX_MEMORY, files_dir: str | os.PathLike[str] | None = None,
                overwrite: bool = False, max_file_size: int = _seclink.DEFAULT_MAX_FILE_SIZE,
                max_files_total: int = _seclink.DEFAULT_MAX_FILES_TOTAL, chat: bool = False,
                chat_rooms: int = _seclink.DEFAULT_CHAT_ROOMS, chat_members: int = _seclink.DEFAULT_CHAT_MEMBERS,
                chat_rate: int = _seclink.DEFAULT_CHAT_RATE, chat_queue: int = _seclink.DEFAULT_CHAT_QUEUE,
                chat_cluster: str | None = None, rekey_bytes: int = 0, server_key: bytes | None = None,
                modes: list[str] | None = None, authorized_keys: str | os.PathLike[str] | None = None,
                password_users: str | os.PathLike[str] | None = None) -> AioServer:
    """Starts a seclink/1 server on the running event loop; returns once it is listening.

    The arguments are in the order of :class:`seclink.Server`: ``serve(host, port, handler=...)``.
    ``handler(data, peer)``, a function or a coroutine function, returns the reply (bytes, str as
    UTF-8, or None for an empty reply); if it raises, that session alone is closed (the client
    gets CLOSE "server error") and the exception is logged. It runs on the event loop, as does
    ``log``: neither may block (make slow work a coroutine, e.g. with asyncio.to_thread). Without one every message is answered
    ``ACK: received N bytes`` (or echoed with ``echo=True``). Port 0 picks a free port (see
    :attr:`AioServer.port`). The other parameters are those of :class:`seclink.Server`:
    ``log(level, line)`` gets every line up to ``log_level``, exactly as the native server writes
    it; ``tls=True`` serves TLS 1.3 only, with ``tls_cert``/``tls_key`` or the self-signed
    certificate of the config directory; ``redact=True`` logs sizes, never content; admission
    (``max_handshakes``, ``max_handshakes_per_address``, ``handshake_rate``), ``frame_timeout``
    and the memory budget ``max_memory`` (bytes) are the core session layer's, as are the chat
    rooms of ``chat=True`` and their limits (``chat_rooms``, ...). ``psk`` may be a list of keys
    and ``psk_file`` a list of files or a directory of them: every key is accepted (key rotation,
    as :class:`seclink.Server`). Serve with :meth:`AioServer.serve_forever`; stop with
    :meth:`AioServer.close`.
    """
    if host is None or callable(host):  # the old order, serve(handler, host, port): taken, with a warning
        warnings.warn("aio.serve(handler, host, port) is deprecated: use serve(host, port, handler=handler), "
                      "the order of seclink.Server", DeprecationWarning, stacklevel=2)
        handler, host, port = host, port if isinstance(port, str) else "0.0.0.0", _seclink.DEFAULT_PORT if _old_port is None else _old_port
    if max_message > _seclink.MAX_MESSAGE_LIMIT:
        raise from_code(Err.INVAL, f"cannot listen on {host}:{port}")
    key, names = resolve_psks(psk, psk_file)
    try:
        server = AioServer(handler, host, int(port), psk=key, psk_names=names, echo=echo, max_clients=max_clients,
                           handshake_timeout=handshake_timeout, idle_timeout=idle_timeout, max_message=max_message,
                           log=log, log_level=log_level, tls=tls, tls_cert=tls_cert, tls_key=tls_key, redact=redact,
                           max_handshakes=max_handshakes, max_handshakes_per_address=max_handshakes_per_address,
                           handshake_rate=handshake_rate, frame_timeout=frame_timeout, max_memory=max_memory,
                           files_dir=None if files_dir is None else os.fspath(files_dir), overwrite=overwrite,
                           max_file_size=max_file_size, max_files_total=max_files_total,
                           chat=chat, chat_rooms=chat_rooms, chat_members=chat_members, chat_rate=chat_rate,
                           chat_queue=chat_queue, chat_cluster=chat_cluster,
                           rekey_bytes=rekey_bytes, server_key=server_key, modes=modes,
                           authorized_keys=os.fspath(authorized_keys) if authorized_keys else None,
                           password_users=os.fspath(password_users) if password_users else None)
    finally:
        wipe(key)  # the session layer keeps its own copy, in dump-proof memory
    await server._listen()
    return server


# ------------------------------------------------------------------------------ client

class AioClient:
    """A connected, handshaken seclink/1 session with a server; made by :func:`connect`.

    The asyncio twin of :class:`seclink.Client`: ``peer``, ``timeout``, :meth:`send`,
    :meth:`recv`, :meth:`request`, :meth:`ping`, :meth:`close`, ``async with``. One coroutine at a
    time may receive (recv, request or ping); sending may overlap with receiving.
    """

    def __init__(self, stream: _Stream, conn: Connection, timeout: float) -> None:
        self.timeout = timeout
        self._stream, self._conn = stream, conn
        self._events: deque[Event] = deque()  # received, not yet consumed
        self._failure = 0                     # the protocol error found after those events
        self._pending: deque[bytes] = deque()  # messages that arrived while ping() waited
        self._received_any = False
        self._closed = False                  # nothing more to receive: CLOSE came or close() ran
        self._shut = False

    @property
    def peer(self) -> str:
        """The server as ``host:port``."""
        return self._stream.peer

    async def send(self, data: bytes | bytearray | memoryview | str) -> None:
        """Sends one message (str as UTF-8). Raises MessageTooLarge, before sending anything, if it
        is over the limit; Timeout if the server does not take it within ``timeout``."""
        await self._transmit(lambda: self._conn.send(data))

    async def recv(self, timeout: float | None = _DEFAULT) -> bytes:
        """The next message from the server. ``timeout`` in seconds (default: the client's; None:
        wait forever). Raises Timeout, or ConnectionClosed (with ``.reason``) if the server ended
        the session."""
        if self._pending:
            return self._pending.popleft()
        return await self._within(self._next_message(want_pong=False), timeout, "recv")

    async def request(self, data: bytes | bytearray | memoryview | str, timeout: float | None = _DEFAULT) -> bytes:
        """Sends one message and returns the next message from the server (its reply)."""
        await self.send(data)
        return await self.recv(timeout)

    async def ping(self, data: bytes | bytearray | memoryview | str = b"", timeout: float | None = _DEFAULT) -> bytes:
        """Sends a PING (at most 64 bytes; a str as UTF-8) and returns the content of its PONG.
        Messages arriving meanwhile are kept for :meth:`recv`."""
        await self._transmit(lambda: self._conn.send_ping(data))
        return await self._within(self._next_message(want_pong=True), timeout, "recv")

    async def send_file(self, path: str | os.PathLike[str], name: str | None = None,
                        progress: Callable[[int, int], None] | None = None) -> FileResult:
        """As :meth:`seclink.Client.send_file` (docs/PROTOCOL.md 10): uploads, resuming a cut-off
        upload after its verified prefix; the server checks the SHA-256 before storing the file."""
        path = os.fspath(path)
        name = name if name is not None else os.path.basename(path)
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            for restart in (0, 1):  # once more with the restart flag if the server's prefix differs
                put = size.to_bytes(8, "big") + bytes([restart]) + name.encode("utf-8", "surrogateescape")
                body = await self._file_request(_FILE_PUT, put, _FILE_READY, 40, f"sending {path}")
                offset, sha = int.from_bytes(body[:8], "big"), _prefix_hash(f, int.from_bytes(body[:8], "big"), size)
                if sha is not None and hmac.compare_digest(sha.digest(), body[8:]):
                    break
                if restart or offset == 0:
                    raise from_code(Err.BAD_FILE_MSG, f"sending {path}", self.peer)
            if progress:
                progress(offset, size)
            f.seek(offset)
            pos = offset
            # The server's answer is awaited while the file goes out: a FILE_ERROR (a full disk...)
            # stops the upload at once, as in the native client; otherwise it is the FILE_DONE.
            answer = asyncio.ensure_future(self._file_message(f"sending {path}"))
            try:
                while pos < size:
                    if answer.done():
                        answer.result()  # FileTransferError, ConnectionClosed...
                        raise from_code(Err.BAD_FILE_MSG, f"sending {path}", self.peer)  # nothing else may come now
                    chunk = f.read(min(_FILE_CHUNK, size - pos))
                    if not chunk:
                        raise OSError(f"sending {path}: the file shrank while being sent")
                    sha.update(chunk)
                    await self._transmit(lambda: self._conn.send_file_message(_FILE_DATA, chunk))
                    pos += len(chunk)
                    if progress:
                        progress(pos, size)
                    await asyncio.sleep(0)  # `answer` gets to read what has arrived, even if sending never waits
                digest = sha.digest()
                await self._transmit(lambda: self._conn.send_file_message(_FILE_END, digest))
                # The server flushes the file to disk before it answers: allow it some time.
                t, done = await self._within(answer, 60.0, "recv")
            finally:
                if not answer.done():
                    answer.cancel()
                elif not answer.cancelled():
                    answer.exception()  # seen (raised above, or superseded by the error being raised)
        if t != _FILE_DONE or len(done) != 40:
            raise from_code(Err.BAD_FILE_MSG, f"sending {path}", self.peer)
        if int.from_bytes(done[:8], "big") != size or not hmac.compare_digest(done[8:], digest):
            raise from_code(Err.FILE_HASH, f"sending {path}", self.peer)
        return FileResult(size, digest.hex(), offset)

    async def get_file(self, name: str, path: str | os.PathLike[str] | None = None, *, overwrite: bool = False,
                       progress: Callable[[int, int], None] | None = None) -> FileResult:
        """As :meth:`seclink.Client.get_file`: downloads through a temporary file next to
        ``path`` (resumed from a cut-off attempt), checks the SHA-256, then renames."""
        if path is None and not _seclink.file_name_valid(name):
            raise from_code(Err.INVAL, f"getting {name}: not a plain file name", self.peer)
        dest = os.fspath(path) if path is not None else name
        if not overwrite and os.path.lexists(dest):
            raise from_code(Err.FILE_EXISTS, f"getting {name}: {dest}", self.peer)
        directory = os.path.dirname(dest) or "."
        temp = os.path.join(directory, ".seclink-" + hashlib.sha256(os.path.basename(dest).encode()).hexdigest()[:32]
                            + ".part")
        have, sha = 0, hashlib.sha256()
        if os.path.exists(temp):
            with open(temp, "rb") as t:
                have = os.fstat(t.fileno()).st_size
                sha = _prefix_hash(t, have, have) or hashlib.sha256()
        get = have.to_bytes(8, "big") + sha.digest() + name.encode("utf-8", "surrogateescape")
        info = await self._file_request(_FILE_GET, get, _FILE_INFO, 16, f"getting {name}", wait=60.0)
        size, start = int.from_bytes(info[:8], "big"), int.from_bytes(info[8:], "big")
        if start not in (0, have):
            raise from_code(Err.BAD_FILE_MSG, f"getting {name}", self.peer)
        if start == 0:
            sha = hashlib.sha256()
        fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "r+b") as out:
            out.truncate(start)
            out.seek(start)
            if progress:
                progress(start, size)
            pos = asked = start
            outstanding = 0
            while pos < size:
                while outstanding < 4 and asked < size:  # the server holds at most 1 MiB for us
                    n = min(_FILE_CHUNK, size - asked)
                    self._conn.send_file_message(_FILE_READ, n.to_bytes(4, "big"))
                    asked += n
                    outstanding += 1
                await self._within(self._flush("recv", self.peer), _DEFAULT, "send")
                msg_type, chunk = await self._within(self._file_message(f"getting {name}"), _DEFAULT, "recv")
                if msg_type != _FILE_DATA or not chunk or len(chunk) > size - pos:
                    raise from_code(Err.BAD_FILE_MSG, f"getting {name}", self.peer)
                out.write(chunk)
                sha.update(chunk)
                pos += len(chunk)
                outstanding -= 1
                if progress:
                    progress(pos, size)
            done = await self._file_request(_FILE_END, b"", _FILE_DONE, 40, f"getting {name}")
            if int.from_bytes(done[:8], "big") != size or not hmac.compare_digest(done[8:], sha.digest()):
                os.unlink(temp)
                raise from_code(Err.FILE_HASH, f"getting {name}", self.peer)
            out.flush()
            os.fsync(out.fileno())
        if overwrite:
            os.replace(temp, dest)
        else:
            try:
                os.link(temp, dest)  # fails if dest exists: never replaced
            except FileExistsError:
                raise from_code(Err.FILE_EXISTS, f"getting {name}: {dest}", self.peer) from None
            os.unlink(temp)
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        return FileResult(size, sha.hexdigest(), start)

    async def _file_request(self, msg_type: int, content: bytes, want: int, length: int, context: str,
                            wait: float | None = None) -> bytes:
        await self._transmit(lambda: self._conn.send_file_message(msg_type, content))
        t, body = await self._within(self._file_message(context), wait or _DEFAULT, "recv")
        if t != want or len(body) != length:
            raise from_code(Err.BAD_FILE_MSG, context, self.peer)
        return body

    async def _file_message(self, context: str) -> tuple[int, bytes]:
        """The next file message; FILE_ERROR raises FileTransferError, CLOSE ConnectionClosed."""
        while True:
            event = await self._next_event("recv", self.peer)
            if isinstance(event, Ping):
                await self._flush("recv", self.peer)
            elif isinstance(event, Closed):
                self._closed = True
                raise ConnectionClosed(f"{self.peer}: {context}: the server closed the session: {event.reason}",
                                       reason=event.reason, code=5, name="CLOSED", peer=self.peer)
            elif isinstance(event, Data):
                self._pending.append(event.data)
            elif isinstance(event, FileMessage) and event.msg_type == _FILE_ERROR:
                code = _seclink.file_code_name(event.data[0]) if event.data else "UNKNOWN"
                detail = f"{code}: {event.data[1:].decode('utf-8', 'replace')}"
                raise FileTransferError(f"{self.peer}: {context}: the server refused it: {detail}", code=Err.FILE_REFUSED,
                                        name="FILE_REFUSED", peer=self.peer, detail=detail, reason_code=code)
            elif isinstance(event, FileMessage):
                return event.msg_type, event.data

    async def keepalive(self) -> None:
        """Sends an empty PING without waiting for its PONG (recv skips it): keeps an idle
        session open. May overlap with a recv."""
        await self._transmit(lambda: self._conn.send_ping(b""))

    async def rekey(self) -> None:
        """Sends a KEY_UPDATE now (docs/PROTOCOL.md 13): later messages go under the next key."""
        await self._transmit(self._conn.rekey)

    async def close(self, reason: str | None = None) -> None:
        """Ends the session with a CLOSE (optional reason) and closes the connection. Idempotent."""
        if self._shut:
            return
        self._shut = self._closed = True
        try:
            if not self._conn.closed:
                self._conn.close(reason or "")
                await asyncio.wait_for(self._flush("close", self.peer), _CLOSE_GRACE)
        except (ConnectionClosed, asyncio.TimeoutError):
            pass  # the server is gone or not reading: the session is over either way
        finally:
            await self._stream.close(graceful=True)

    async def __aenter__(self) -> AioClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _handshake(self, where: str) -> None:
        try:
            await self._flush("cannot connect", where)
            await self._next_event("cannot connect", where)  # HandshakeComplete
            await self._flush("cannot connect", where)       # the key-confirmation PING, at once
        except HandshakeError as e:  # what the server said about itself (PROTOCOL.md 14), to show
            e.server_key, e.server_modes = self._conn.server_key, self._conn.server_modes  # type: ignore[attr-defined]
            raise
        except (ConnectionClosed, ProtocolError) as e:
            err = as_handshake_error(e, where)
            if err is e:
                raise
            raise err from None

    async def _transmit(self, queue: Callable[[], None]) -> None:
        try:
            queue()
        except Error as exc:  # a receive that already failed says why the session ended, as the native client
            raise from_code(self._failure or exc.code, "send", self.peer) from None
        try:
            await self._within(self._flush("send", self.peer), _DEFAULT, "send")
        except Error as exc:
            # The server has closed (PROTOCOL.md 5): a CLOSE that has already arrived is the answer,
            # which the next recv raises, as the native client does.
            if exc.code != Err.PEER_CLOSED or not await self._close_arrived():
                raise

    async def _close_arrived(self) -> bool:
        """Reads what has arrived, without waiting for more; True if it holds a CLOSE (kept for recv)."""
        while not any(isinstance(e, Closed) for e in self._events) and not self._failure:
            try:
                data = await asyncio.wait_for(self._stream.read(), 0.1)  # only what is already buffered
            except (OSError, asyncio.TimeoutError):
                return False
            if not data:
                return False
            try:
                self._events.extend(self._conn.receive_data(data))
            except Error as exc:
                self._events.extend(getattr(exc, "events", []))
                self._failure = exc.code
        return any(isinstance(e, Closed) for e in self._events)

    async def _within(self, step: Coroutine[Any, Any, T], timeout: float | None, context: str) -> T:
        try:
            return await asyncio.wait_for(step, self.timeout if timeout is _DEFAULT else timeout)
        except Error:
            raise
        except asyncio.TimeoutError:
            raise from_code(Err.TIMEDOUT, context, self.peer) from None

    async def _next_message(self, want_pong: bool) -> bytes:
        """The next DATA (or, for ping(), PONG); PINGs are answered on the way, CLOSE raises."""
        if self._closed:
            raise from_code(Err.CLOSED, "recv", self.peer)
        while True:
            event = await self._next_event("recv", self.peer)
            if isinstance(event, Ping):
                await self._flush("recv", self.peer)  # its PONG
            elif isinstance(event, Closed):
                self._closed = True
                why = _shown(event.reason.encode()) if event.reason else "no reason given"  # made safe to show
                raise ConnectionClosed(f"{self.peer}: the server closed the session: {why}", reason=event.reason,
                                       code=5, name="CLOSED", peer=self.peer)
            elif isinstance(event, Pong) and want_pong:
                return event.data
            elif isinstance(event, Data):
                if not want_pong:
                    return event.data
                self._pending.append(event.data)

    async def _next_event(self, context: str, peer: str) -> Event:
        while not self._events:
            if self._failure:
                raise from_code(self._failure, context, peer)
            data = await self._read(context, peer)
            try:
                self._events.extend(self._conn.receive_data(data))
            except Error as exc:  # deliver the events before the bad frame first, as the native client
                self._events.extend(getattr(exc, "events", []))
                self._failure = exc.code
        return self._events.popleft()

    async def _read(self, context: str, peer: str) -> bytes:
        try:
            data = await self._stream.read()
        except OSError as exc:
            raise from_code(_os_code(exc), context, peer) from None
        if not data:
            code = Err.PEER_CLOSED
            try:
                self._conn.receive_eof()
            except ProtocolError:
                code = Err.TRUNCATED
            raise from_code(code, context, peer)
        if not self._received_any and self._stream.tls is None and data[:2] in (b"\x15\x03", b"\x16\x03"):
            raise from_code(Err.TLS_UNEXPECTED, context, peer)  # a TLS record (alert or handshake) where seclink was expected
        self._received_any = True
        return data

    async def _flush(self, context: str, peer: str) -> None:
        try:
            await self._stream.write(self._conn.data_to_send())
        except OSError as exc:
            raise from_code(_os_code(exc), context, peer) from None


_FILE_PUT, _FILE_GET, _FILE_READY, _FILE_INFO, _FILE_DATA, _FILE_READ, _FILE_END, _FILE_DONE, _FILE_ERROR = (
    0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x2F)  # docs/PROTOCOL.md 10
_FILE_CHUNK = _seclink.FILE_CHUNK


def _prefix_hash(f: Any, n: int, size: int) -> Any:
    """SHA-256 of the first n bytes of the open file f (None if it has fewer, or n > size)."""
    if n > size:
        return None
    h = hashlib.sha256()
    f.seek(0)
    left = n
    while left:
        chunk = f.read(min(left, 1 << 20))
        if not chunk:
            return None
        h.update(chunk)
        left -= len(chunk)
    return h


async def connect(host: str = "127.0.0.1", port: int = _seclink.DEFAULT_PORT, *, psk: bytes | None = None,
                  psk_file: str | os.PathLike[str] | None = None, timeout: float = _seclink.DEFAULT_TIMEOUT_MS / 1000,
                  max_message: int = DEFAULT_MAX_MESSAGE, tls: bool = False, tls_ca: str | None = None,
                  tls_pin: str | None = None, tls_trust_dir: str | None = None,
                  trace: Callable[[str], None] | None = None, rekey_bytes: int = 0, mode: str = "psk",
                  server_key: bytes | None = None, identity: bytes | None = None, user: str | None = None,
                  password: bytes | str | None = None) -> AioClient:
    """Connects to a seclink/1 server and completes the handshake, all within ``timeout`` seconds.

    The parameters are those of :class:`seclink.Client`. With ``tls=True`` the server's
    certificate is always verified: against ``tls_ca`` (chain and host name), ``tls_pin`` (SHA-256
    of the certificate, hex, colons allowed), both, or with neither, the certificate a local
    server created in ``<tls_trust_dir or the config directory>/tls/cert.pem``.
    Errors: NetworkError / Timeout (cannot connect), HandshakeError (different keys), TLSError,
    KeyFileError, as the native client raises them.
    """
    key = resolve_psk(psk, psk_file)
    where = f"{host}:{port}"
    pin = _parse_pin(tls_pin, where) if tls and tls_pin else None
    if timeout < 0:
        raise ValueError("a timeout cannot be negative")

    async def open_session() -> AioClient:
        stream = await _connect_tcp(host, int(port), where)
        try:
            if tls:
                await _start_client_tls(stream, host, tls_ca, pin, tls_trust_dir, where)
            conn = Connection("client", key, max_message=max_message, rekey_bytes=rekey_bytes or None, mode=mode,
                              server_key=server_key, static_key=identity,
                              login=(user, password if password is not None else b"") if user else None)
            if trace is not None:
                conn.set_trace(trace, stream.peer)
            conn.start()
            client = AioClient(stream, conn, timeout)
            await client._handshake(where)
            return client
        except BaseException:
            stream.abort()
            raise

    try:
        return await asyncio.wait_for(open_session(), timeout)
    except Error:
        raise
    except asyncio.TimeoutError:
        raise from_code(Err.TIMEDOUT, "cannot connect", where) from None
    finally:
        wipe(key)  # the connection has its own copy


async def _connect_tcp(host: str, port: int, where: str) -> _Stream:
    """Connects to the first address of `host` that accepts, as the native client does."""
    loop = asyncio.get_running_loop()
    try:
        infos = await _resolve(host, port)
    except socket.gaierror:
        raise from_code(Err.RESOLVE, "cannot connect", where) from None
    code = Err.CONNREFUSED
    for family, kind, proto, _, addr in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, addr)
            return _Stream(*await asyncio.open_connection(sock=sock))
        except BaseException as exc:
            sock.close()
            if not isinstance(exc, OSError):
                raise
            code = _os_code(exc)
            if code == Err.TIMEDOUT:
                break
    raise from_code(code, "cannot connect", where)


async def _start_client_tls(stream: _Stream, host: str, ca: str | None, pin: bytes | None, trust_dir: str | None,
                            where: str) -> None:
    """TLS 1.3 with the server's certificate verified as core/src/client.cpp does."""
    if ca is None and pin is None:  # trust the certificate a server on this machine created
        ca = os.path.join(trust_dir or config_dir(), "tls", "cert.pem")
    ctx = _tls13_only(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
    if ca is None:  # pin only: the certificate itself is compared below, a stricter check than a CA
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        try:
            ctx.load_verify_locations(ca)
        except OSError:
            raise from_code(Err.TLS_TRUST, "cannot connect", where) from None
    try:
        await stream.start_tls(ctx, server_side=False, server_hostname=host if ca is not None else None)
    except ssl.SSLCertVerificationError as exc:
        code = Err.TLS_HOSTNAME if exc.verify_code in _HOSTNAME_MISMATCH else Err.TLS_VERIFY
    except (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionError):
        code = Err.TLS_EXPECTED  # the server hung up on our ClientHello: it does not speak TLS
    except ssl.SSLError as exc:
        code = Err.TLS_EXPECTED if exc.reason in ("WRONG_VERSION_NUMBER", "PACKET_LENGTH_TOO_LONG") else Err.TLS
    else:
        assert stream.tls is not None
        der = stream.tls.getpeercert(binary_form=True) or b""
        if pin is None or hmac.compare_digest(hashlib.sha256(der).digest(), pin):
            return
        code = Err.TLS_PIN
    raise from_code(code, "cannot connect", where)


def _parse_pin(pin: str, where: str) -> bytes:
    try:
        return _seclink.tls_pin_parse(pin)  # the core's parser, as the native client's
    except Error:
        raise from_code(Err.INVAL, "cannot connect: tls_pin is not a SHA-256 fingerprint (64 hex digits)",
                        where) from None
