"""asyncio client and server for seclink/1, built on the sans-I/O :class:`seclink.Connection`.

Everything runs on the event loop, with no threads: asyncio streams move the bytes, the engine
runs the protocol, and TLS 1.3 (when asked for) is an :class:`ssl.SSLObject` over memory buffers::

    import asyncio
    from seclink import aio

    async def shout(data: bytes, peer: str) -> bytes:
        return data.upper()

    async def main() -> None:
        async with await aio.serve(shout, "127.0.0.1", 0) as server:
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
import string
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar, Union

from . import _seclink
from .connection import Closed, Connection, Data, Event, HandshakeComplete, Ping, Pong
from .errors import ConnectionClosed, Error, ProtocolError, as_handshake_error, from_code
from .keys import config_dir, ensure_self_signed_certificate, resolve_psk, wipe

__all__ = ["serve", "connect", "AioServer", "AioClient", "Handler", "LogFn"]

DEFAULT_MAX_MESSAGE: int = _seclink.DEFAULT_MAX_MESSAGE
LOG_WARN, LOG_INFO, LOG_MSG, LOG_TRACE = _seclink.LOG_WARN, _seclink.LOG_INFO, _seclink.LOG_MSG, _seclink.LOG_TRACE

Reply = Union[bytes, bytearray, memoryview, str, None]
Handler = Callable[[bytes, str], Union[Reply, Awaitable[Reply]]]
LogFn = Callable[[int, str], None]
T = TypeVar("T")

_CHUNK = 64 * 1024     # bytes read at a time; the stream reader pauses the socket beyond twice this
_CLOSE_GRACE = 2.0     # seconds to flush a CLOSE (or finish closing) before dropping the connection
_MAX_OVER_LIMIT = 64   # connections being told "server full" at once; beyond that, refused at once
# A fatal TLS alert (protocol_version): how a TLS server answers a plain client, which can then
# say "the server speaks TLS" instead of guessing from a closed socket (as the native server).
_TLS_ALERT = bytes.fromhex("15030300020246")
_HOSTNAME_MISMATCH = (62, 64)  # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH
_DEFAULT: Any = object()
_ERRNO_CODES = {errno.ECONNREFUSED: 42, errno.ENETUNREACH: 43, errno.EHOSTUNREACH: 43, errno.ENETDOWN: 43,
                errno.ETIMEDOUT: 44, errno.EADDRINUSE: 40}


# ------------------------------------------------------------------------------ shared pieces

def _os_code(exc: OSError) -> int:
    """The library error code for a socket or TLS error (as errno_to_sl() in core/src/net.cpp)."""
    if isinstance(exc, ssl.SSLError):
        return 47                                                   # TLS
    if isinstance(exc, (ConnectionResetError, BrokenPipeError)):
        return 45                                                   # PEER_CLOSED
    return _ERRNO_CODES.get(exc.errno or 0, 46)                     # else SOCKET


def _errtext(code: int) -> str:
    return f"{_seclink.errname(code)}: {_seclink.strerror(code)}"


def _shown(data: bytes) -> str:
    """A message as every seclink log shows it (text, <binary> or <empty>, cut at 200 bytes)."""
    return _seclink.format_message(data)


def _redacted(data: bytes) -> str:
    return "<redacted>"


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


def _secs(ms: int) -> str:
    return f"{ms // 1000} s" if ms % 1000 == 0 else f"{ms} ms"


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
        self._in, self._out = ssl.MemoryBIO(), ssl.MemoryBIO()

    async def start_tls(self, ctx: ssl.SSLContext, *, server_side: bool, server_hostname: str | None = None,
                        received: bytes = b"") -> None:
        """Runs the TLS handshake; `received` holds bytes already read from the socket."""
        self.tls = ctx.wrap_bio(self._in, self._out, server_side=server_side, server_hostname=server_hostname)
        self._in.write(received)
        await self._tls_call(self.tls.do_handshake)

    async def read(self) -> bytes:
        """Up to 64 KiB; b"" at the end of the stream (a reset counts as an end, as in net.cpp)."""
        if self.tls is None:
            try:
                return await self.reader.read(_CHUNK)
            except ConnectionResetError:
                return b""
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

    async def _recv(self) -> bytes:
        try:
            return await self.reader.read(_CHUNK)
        except ConnectionResetError:
            return b""

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

class _End(Exception):
    """Ends a server session. `level` and `reason` make its "disconnected" log line; a graceful
    end flushes what is queued first, after queueing CLOSE `close_reason` if one is given."""

    def __init__(self, level: int, reason: str, *, graceful: bool = False, close_reason: str | None = None) -> None:
        super().__init__(reason)
        self.level, self.reason, self.close_reason = level, reason, close_reason
        self.graceful = graceful or close_reason is not None


@dataclass(eq=False)
class _Session:
    stream: _Stream
    conn: Connection
    over_limit: bool           # to be told "server full" after its handshake
    deadline: float = 0.0      # loop time: handshake, then idle, deadline
    waiting: bool = False      # waiting for the client (only then can the deadline end it)
    timed_out: bool = False    # the deadline passed: the task was cancelled for it
    timer: asyncio.TimerHandle = None  # type: ignore[assignment]  # set by AioServer._watch
    established: bool = False
    finishing: bool = False    # ending (flushing its CLOSE): server shutdown leaves it alone
    recv_seq: int = 0
    send_seq: int = 0

    @property
    def peer(self) -> str:
        return self.stream.peer


class AioServer:
    """A listening seclink/1 server on the running event loop; made by :func:`serve`.

    Attributes: ``host``, ``port`` (the port actually bound), ``sessions`` (open now, excluding
    clients being told the server is full), ``tls_cert`` and ``tls_cert_created`` (as
    :class:`seclink.Server`). ``async with server:`` closes it on exit.
    """

    def __init__(self, handler: Handler | None, host: str, port: int, *, psk: bytearray, echo: bool, max_clients: int,
                 handshake_timeout: float, idle_timeout: float, max_message: int, log: LogFn | None,
                 log_level: int, tls: bool, tls_cert: str | None, tls_key: str | None, redact: bool = False) -> None:
        self.host, self.port = host, port  # the port actually bound, once listening
        self._handler, self._psk, self._echo, self._max_clients = handler, psk, echo, max_clients
        self._handshake_ms, self._idle_ms = _ms(handshake_timeout), _ms(idle_timeout)
        self._max_message, self._max_send = max_message, max(max_message, DEFAULT_MAX_MESSAGE)
        self._log_fn, self._log_level = log, log_level
        # redact: sizes and counters only, as sl_server_config.redact (traces hold plaintext)
        self._shown = _redacted if redact else _shown
        if redact:
            self._log_level = min(log_level, LOG_MSG)
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
                raise from_code(52, f"cannot listen on {host}:{port}") from None
        self.tls_cert = tls_cert if tls else None
        self._sessions = self._over_limit = 0
        self._tasks: dict[asyncio.Task[Any], _Session] = {}
        self._closing = False
        self._closed = asyncio.Event()
        self._server: asyncio.AbstractServer | None = None

    @property
    def sessions(self) -> int:
        """Number of sessions open now."""
        return self._sessions

    async def close(self) -> None:
        """Stops listening; every established session gets CLOSE "server shutting down", the others
        are dropped; returns when every connection has ended (each within a short grace period)."""
        if not self._closing:
            self._closing = True
            if self._server is not None:
                self._server.close()
            for task, s in self._tasks.items():
                if not s.finishing:
                    task.cancel()
        while self._tasks:
            await asyncio.wait(list(self._tasks))
        if self._server is not None:
            await self._server.wait_closed()
        wipe(self._psk)  # every session has ended (each connection has its own copy)
        self._closed.set()

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
            raise from_code(41, where) from None
        code = 46
        for family, kind, proto, _, addr in infos:
            sock = socket.socket(family, kind, proto)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(addr)
                self._server = await asyncio.start_server(self._on_connection, sock=sock)
                self.port = sock.getsockname()[1]
                return
            except OSError as exc:
                sock.close()
                code = _os_code(exc)
        raise from_code(code, where)

    def _log(self, level: int, line: str) -> None:
        if self._log_fn is not None and level <= self._log_level:
            self._log_fn(level, line)

    def _logs(self, level: int) -> bool:
        """Whether lines of `level` are logged (so that per-message lines are only built then)."""
        return self._log_fn is not None and level <= self._log_level

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        stream = _Stream(reader, writer)
        over = self._sessions >= self._max_clients
        if over and self._over_limit >= _MAX_OVER_LIMIT:
            self._log(LOG_WARN, f"[WARN] {stream.peer} refused: server full and too many refusals pending")
            await stream.close()
            return
        if over:
            self._over_limit += 1
        else:
            self._sessions += 1
        conn = Connection("server", self._psk, max_message=self._max_message, max_send=self._max_send)
        if self._log_fn is not None and self._log_level >= LOG_TRACE:
            conn.set_trace(lambda text: self._log(LOG_TRACE, text), stream.peer)
        conn.start()
        s = _Session(stream, conn, over)
        task = asyncio.current_task()
        assert task is not None
        self._tasks[task] = s
        self._log(LOG_INFO, f"[INFO] {s.peer} connected")
        try:
            try:
                await self._converse(s)
            except _End as end:
                outcome = end
            except asyncio.CancelledError:
                if not (self._closing or s.timed_out):
                    raise
                uncancel = getattr(asyncio.current_task(), "uncancel", None)
                if uncancel is not None:  # Python 3.11+: this cancellation is handled here
                    uncancel()
                outcome = self._shutdown_end(s) if self._closing else self._timeout_end(s)
            await self._finish(s, outcome)
        finally:
            if over:
                self._over_limit -= 1
            else:
                self._sessions -= 1
            del self._tasks[task]
        label = "[WARN]" if outcome.level == LOG_WARN else "[INFO]"
        self._log(outcome.level, f"{label} {s.peer} disconnected: {outcome.reason}")

    async def _converse(self, s: _Session) -> NoReturn:
        """Runs the session until something ends it (raises _End)."""
        loop = asyncio.get_running_loop()
        s.deadline = loop.time() + self._handshake_ms / 1000
        self._watch(s, loop)
        try:
            if self._tls_ctx is not None:
                s.waiting = True
                await self._accept_tls(s, self._tls_ctx)
            first = True
            while True:
                if self._closing:  # a shutdown that came while this session was busy
                    raise self._shutdown_end(s)
                s.waiting = True
                data = await self._flush_and_read(s)
                s.waiting = False
                if first and self._tls_ctx is None and data[:2] == b"\x16\x03":
                    raise _End(LOG_WARN, "client is speaking TLS but this server runs without --tls")
                first = False
                await self._feed(s, data)
                if s.established:
                    s.deadline = loop.time() + self._idle_ms / 1000
                    if s.deadline < s.timer.when():  # earlier than the timer (the handshake's): move it
                        s.timer.cancel()
                        self._watch(s, loop)
        finally:
            s.timer.cancel()

    def _watch(self, s: _Session, loop: asyncio.AbstractEventLoop) -> None:
        """The session's handshake and idle timeout: one timer per session, moved on lazily (a
        read only updates s.deadline), which cancels the session's task if it is still waiting
        for the client at its deadline."""
        task = asyncio.current_task()

        def check() -> None:
            now = loop.time()
            if s.waiting and now >= s.deadline:
                s.timed_out = True
                if task is not None:
                    task.cancel()
            else:  # the deadline moved on, or the session is busy (then look again one timeout later)
                s.timer = loop.call_at(s.deadline if s.deadline > now else now + self._idle_ms / 1000, check)

        s.timer = loop.call_at(s.deadline, check)

    def _timeout_end(self, s: _Session) -> _End:
        if not s.established:
            return _End(LOG_WARN, f"handshake timed out after {_secs(self._handshake_ms)}")
        return _End(LOG_INFO, f"idle for {_secs(self._idle_ms)}", close_reason="idle timeout")

    def _shutdown_end(self, s: _Session) -> _End:
        return _End(LOG_INFO, "server shutting down", close_reason="server shutting down" if s.established else None)

    async def _accept_tls(self, s: _Session, ctx: ssl.SSLContext) -> None:
        first = await s.stream.read()
        if first and first[0] != 0x16:  # not a TLS handshake record: say so as TLS would
            s.stream.writer.write(_TLS_ALERT)
            raise _End(LOG_WARN, "client is not using TLS (plain seclink/1?) but this server runs with --tls")
        try:
            await s.stream.start_tls(ctx, server_side=True, received=first)
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
            raise _End(LOG_WARN, "TLS handshake failed: connection closed") from None
        except ssl.SSLError as exc:
            why = exc.reason.lower().replace("_", " ") if exc.reason else str(exc)
            raise _End(LOG_WARN, f"TLS handshake failed: {why}") from None
        except OSError:
            raise _End(LOG_WARN, "TLS handshake failed: connection closed") from None

    async def _flush_and_read(self, s: _Session) -> bytes:
        """Sends what the engine has queued, then returns the next bytes from the client."""
        out = s.conn.data_to_send()
        try:
            if out:
                await s.stream.write(out)
        except OSError:
            raise _End(LOG_INFO, "connection lost while sending (client went away)") from None
        try:
            data = await s.stream.read()
        except OSError as exc:
            raise _End(LOG_WARN, f"connection error: {_errtext(_os_code(exc))}") from None
        if data:
            return data
        try:
            s.conn.receive_eof()
        except ProtocolError:
            raise _End(LOG_WARN, "connection lost in the middle of a frame (TRUNCATED)") from None
        if not s.established:
            raise _End(LOG_WARN, "connection closed during the handshake")
        raise _End(LOG_INFO, "connection lost (no CLOSE from the client)")

    async def _feed(self, s: _Session, data: bytes) -> None:
        """Hands received bytes to the engine and acts on each event, in order."""
        failure: Error | None = None
        events = s.conn.events(data)  # one at a time: each reply is queued before a later frame fails
        while True:
            try:
                event = next(events, None)
            except Error as exc:
                failure = exc
                break
            if event is None:
                break
            await self._on_event(s, event)
        if failure is not None:  # graceful: replies to the messages before the bad frame still go out
            stage = "protocol error" if s.established else "handshake failed"
            raise _End(LOG_WARN, f"{stage}: {failure.name}: {failure.detail}", graceful=True)

    async def _on_event(self, s: _Session, event: Event) -> None:
        if isinstance(event, HandshakeComplete):
            s.established = True
            if s.over_limit:
                raise _End(LOG_WARN, f"refused: server full ({self._max_clients} clients)",
                           close_reason="server full: try again later")
            self._log(LOG_INFO, f"[INFO] {s.peer} handshake complete")
        elif isinstance(event, Closed):
            why = "client closed the session"
            raise _End(LOG_INFO, f"{why} ({self._shown(event.reason.encode())})" if event.reason else why,
                       graceful=True)
        elif isinstance(event, Ping):
            self._log(LOG_MSG, f"[RECV] {s.peer} PING ({len(event.data)} bytes)")
            self._log(LOG_MSG, f"[SEND] {s.peer} PONG ({len(event.data)} bytes)")  # queued by the engine
        elif isinstance(event, Pong):
            self._log(LOG_MSG, f"[RECV] {s.peer} PONG ({len(event.data)} bytes)")
        elif isinstance(event, Data):
            s.recv_seq += 1
            if self._logs(LOG_MSG):
                self._log(LOG_MSG, f"[RECV] {s.peer} #{s.recv_seq} {self._shown(event.data)} ({len(event.data)} bytes)")
            if self._handler is None:  # the built-in reply, without a coroutine per message
                reply = event.data if self._echo else f"ACK: received {len(event.data)} bytes".encode()
            else:
                reply = await self._reply(event.data, s.peer)
            try:
                s.conn.send(reply)
            except Error as exc:
                raise _End(LOG_WARN, f"reply refused: {exc.name}: {exc.detail}") from None
            s.send_seq += 1
            if self._logs(LOG_MSG):
                self._log(LOG_MSG, f"[SEND] {s.peer} #{s.send_seq} {self._shown(reply)} ({len(reply)} bytes)")

    async def _reply(self, data: bytes, peer: str) -> bytes:
        """The reply to one message; a failing handler ends only this session (CLOSE "server error")."""
        assert self._handler is not None
        try:
            result = self._handler(data, peer)
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
                    return reply
                why = f"reply refused: {_seclink.strerror(20)}"
        raise _End(LOG_WARN, f"the message handler failed: {self._shown(why.encode())}", close_reason="server error")

    async def _finish(self, s: _Session, end: _End) -> None:
        """Ends the session as `end` says: flushes (and says CLOSE) if graceful, then closes."""
        s.finishing = True
        flushed = False
        if end.graceful:
            if end.close_reason is not None and s.established and not s.conn.closed:
                s.conn.close(end.close_reason)
            try:
                await asyncio.wait_for(s.stream.write(s.conn.data_to_send()), _CLOSE_GRACE)
                flushed = True
            except (OSError, asyncio.TimeoutError):
                pass
        if end.graceful and not flushed:
            s.stream.abort()  # the client is not reading: give up on it
        else:
            await s.stream.close(graceful=end.graceful)


async def serve(handler: Handler | None = None, host: str = "0.0.0.0", port: int = 5000, *,
                psk: bytes | None = None, psk_file: str | os.PathLike[str] | None = None, echo: bool = False,
                max_clients: int = 10000, handshake_timeout: float = 10.0, idle_timeout: float = 300.0,
                max_message: int = DEFAULT_MAX_MESSAGE, log: LogFn | None = None, log_level: int = LOG_MSG,
                tls: bool = False, tls_cert: str | None = None, tls_key: str | None = None,
                redact: bool = False) -> AioServer:
    """Starts a seclink/1 server on the running event loop; returns once it is listening.

    ``handler(data, peer)``, a function or a coroutine function, returns the reply (bytes, str as
    UTF-8, or None for an empty reply); if it raises, that session alone is closed (the client
    gets CLOSE "server error") and the exception is logged. It runs on the event loop, as does
    ``log``: neither may block (make slow work a coroutine, e.g. with asyncio.to_thread). Without one every message is answered
    ``ACK: received N bytes`` (or echoed with ``echo=True``). Port 0 picks a free port (see
    :attr:`AioServer.port`). The other parameters are those of :class:`seclink.Server`:
    ``log(level, line)`` gets every line up to ``log_level``, exactly as the native server writes
    it; ``tls=True`` serves TLS 1.3 only, with ``tls_cert``/``tls_key`` or the self-signed
    certificate of the config directory; ``redact=True`` logs sizes and counters, never content.
    Serve with :meth:`AioServer.serve_forever`; stop with
    :meth:`AioServer.close`.
    """
    if max_message > _seclink.MAX_MESSAGE_LIMIT:
        raise from_code(1, f"cannot listen on {host}:{port}")
    key = resolve_psk(psk, psk_file)  # the server's copy, wiped when it closes
    try:
        server = AioServer(handler, host, int(port), psk=key, echo=echo, max_clients=max_clients,
                           handshake_timeout=handshake_timeout, idle_timeout=idle_timeout, max_message=max_message,
                           log=log, log_level=log_level, tls=tls, tls_cert=tls_cert, tls_key=tls_key, redact=redact)
        await server._listen()
    except BaseException:
        wipe(key)
        raise
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
        await self._transmit(lambda: self._conn.send(data.encode() if isinstance(data, str) else data))

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

    async def ping(self, data: bytes = b"", timeout: float | None = _DEFAULT) -> bytes:
        """Sends a PING (at most 64 bytes) and returns the content of its PONG. Messages arriving
        meanwhile are kept for :meth:`recv`."""
        await self._transmit(lambda: self._conn.send_ping(data))
        return await self._within(self._next_message(want_pong=True), timeout, "recv")

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
        except (ConnectionClosed, ProtocolError) as e:
            err = as_handshake_error(e, where)
            if err is e:
                raise
            raise err from None

    async def _transmit(self, queue: Callable[[], None]) -> None:
        try:
            queue()
        except Error as exc:
            raise from_code(exc.code, "send", self.peer) from None
        await self._within(self._flush("send", self.peer), _DEFAULT, "send")

    async def _within(self, step: Coroutine[Any, Any, T], timeout: float | None, context: str) -> T:
        try:
            return await asyncio.wait_for(step, self.timeout if timeout is _DEFAULT else timeout)
        except Error:
            raise
        except asyncio.TimeoutError:
            raise from_code(44, context, self.peer) from None

    async def _next_message(self, want_pong: bool) -> bytes:
        """The next DATA (or, for ping(), PONG); PINGs are answered on the way, CLOSE raises."""
        if self._closed:
            raise from_code(5, "recv", self.peer)
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
            code = 45  # PEER_CLOSED
            try:
                self._conn.receive_eof()
            except ProtocolError:
                code = 22  # TRUNCATED
            raise from_code(code, context, peer)
        if not self._received_any and self._stream.tls is None and data[:2] in (b"\x15\x03", b"\x16\x03"):
            raise from_code(51, context, peer)  # a TLS record (alert or handshake) where seclink was expected
        self._received_any = True
        return data

    async def _flush(self, context: str, peer: str) -> None:
        try:
            await self._stream.write(self._conn.data_to_send())
        except OSError as exc:
            raise from_code(_os_code(exc), context, peer) from None


async def connect(host: str = "127.0.0.1", port: int = 5000, *, psk: bytes | None = None,
                  psk_file: str | os.PathLike[str] | None = None, timeout: float = 10.0,
                  max_message: int = DEFAULT_MAX_MESSAGE, tls: bool = False, tls_ca: str | None = None,
                  tls_pin: str | None = None, tls_trust_dir: str | None = None,
                  trace: Callable[[str], None] | None = None) -> AioClient:
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
            conn = Connection("client", key, max_message=max_message)
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
        raise from_code(44, "cannot connect", where) from None
    finally:
        wipe(key)  # the connection has its own copy


async def _connect_tcp(host: str, port: int, where: str) -> _Stream:
    """Connects to the first address of `host` that accepts, as the native client does."""
    loop = asyncio.get_running_loop()
    try:
        infos = await _resolve(host, port)
    except socket.gaierror:
        raise from_code(41, "cannot connect", where) from None
    code = 42
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
            if code == 44:
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
            raise from_code(54, "cannot connect", where) from None
    try:
        await stream.start_tls(ctx, server_side=False, server_hostname=host if ca is not None else None)
    except ssl.SSLCertVerificationError as exc:
        code = 53 if exc.verify_code in _HOSTNAME_MISMATCH else 48
    except (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionError):
        code = 50  # the server hung up on our ClientHello: it does not speak TLS
    except ssl.SSLError as exc:
        code = 50 if exc.reason in ("WRONG_VERSION_NUMBER", "PACKET_LENGTH_TOO_LONG") else 47
    else:
        assert stream.tls is not None
        der = stream.tls.getpeercert(binary_form=True) or b""
        if pin is None or hmac.compare_digest(hashlib.sha256(der).digest(), pin):
            return
        code = 49
    raise from_code(code, "cannot connect", where)


def _parse_pin(pin: str, where: str) -> bytes:
    digits = pin.replace(":", "")
    if len(digits) != 64 or not all(c in string.hexdigits for c in digits):
        raise from_code(1, "cannot connect: tls_pin is not a SHA-256 fingerprint (64 hex digits)", where)
    return bytes.fromhex(digits)
