"""The seclink server, backed by libseclink's native multi-threaded server."""

from __future__ import annotations

import atexit
import os
import threading
import weakref
from collections.abc import Callable

from . import _seclink
from .connection import modes_mask
from .keys import ensure_self_signed_certificate, resolve_psks, wipe

__all__ = ["Server", "Handler", "LogFn"]

Handler = Callable[[bytes, str], "bytes | bytearray | memoryview | str | None"]
LogFn = Callable[[int, str], None]

_running: weakref.WeakSet[Server] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:  # worker threads must not wait for the GIL of an exiting interpreter
    for server in list(_running):
        server.close()


class Server:
    """A seclink/1 server on a fixed pool of native worker threads (one epoll loop each).

    ::

        def shout(data: bytes, peer: str) -> bytes:
            return data.upper()

        with Server("127.0.0.1", 0, handler=shout) as srv:
            print("listening on", srv.port)
            srv.serve_forever()                       # until Ctrl-C or stop()

    The listening socket is bound when the object is created (so :attr:`port` is known; port 0
    picks a free one); :meth:`start` starts the threads, ``threads`` of them (0: one per CPU less
    one, at least one: ``seclink._seclink.default_threads()``). Without a ``handler`` every message is
    answered natively with ``ACK: received N bytes`` (or the message itself with ``echo=True``),
    and no worker ever takes the GIL. A ``handler(data, peer)`` is called on the worker threads,
    holding the GIL for the call only; what it returns (bytes, str as UTF-8, or None for an empty
    reply) is the reply. If it raises, that one session is closed (the client gets CLOSE "server
    error") and the exception is logged; other sessions carry on.

    ``log(level, line)`` receives every log line (``[INFO] ...``, ``[RECV] ...``) up to
    ``log_level`` (one of ``seclink.LOG_*``); it is called from worker threads. The key is
    ``psk``, else ``psk_file``, else the default key file. To rotate keys without downtime a
    server accepts several at once (at most ``seclink._seclink.MAX_PSKS``): ``psk`` a list of
    keys, or ``psk_file`` a list of key files or a directory of them (its files whose names do not
    start with '.'); each session's "handshake complete" log line then names the file that matched. ``tls=True`` runs every session inside
    TLS 1.3 with ``tls_cert``/``tls_key``, or with the self-signed certificate in the config
    directory (created if missing) that local clients trust by default. ``redact=True`` logs
    sizes and counters, never content. Admission (``max_handshakes``,
    ``max_handshakes_per_address``, ``handshake_rate``), ``frame_timeout`` and the memory budget
    ``max_memory`` (bytes) are the core session layer's, as in :func:`seclink.aio.serve`.
    ``chat=True`` makes it a chat server (docs/PROTOCOL.md "Chat rooms": lines are relayed
    between sessions, no handler, no ACK), limited by ``chat_rooms``, ``chat_members`` (per room),
    ``chat_rate`` (lines a second per member) and ``chat_queue`` (lines waiting for a member
    before it is closed as too slow); ``chat_cluster="nats://HOST:PORT"`` shares the rooms with
    every server linked to that NATS server.
    ``rekey_bytes`` lowers the bytes each session sends under one key before a KEY_UPDATE
    (docs/PROTOCOL.md 13; 0: the default, 4 GiB): for tests. ``server_key`` (32 bytes, a static
    X25519 private key, e.g. from :func:`seclink.keys.server_key`) lets clients verify the server
    (mode ``"server-key"``, docs/PROTOCOL.md 14); ``modes`` (``["psk", "server-key"]``) narrows the
    modes accepted (default: psk, and server-key with a key). ``authorized_keys`` (a file of
    ``NAME PUBLIC-KEY`` lines) admits key users (mode ``"user-key"``, docs/PROTOCOL.md 15);
    :meth:`reload_users` reads it again; a key user's ``peer`` is ``NAME@host:port``, in the log
    lines and for the handler. ``password_users`` (a file written by :func:`seclink.keys.add_user`
    or ``server.py --add-user``) admits password users likewise (mode ``"password"``,
    docs/PROTOCOL.md 16).
    """

    def __init__(self, host: str = "0.0.0.0", port: int = _seclink.DEFAULT_PORT, *, handler: Handler | None = None,
                 psk: bytes | list[bytes] | None = None,
                 psk_file: str | os.PathLike[str] | list[str | os.PathLike[str]] | None = None, echo: bool = False,
                 threads: int = 0, max_clients: int = _seclink.DEFAULT_MAX_CLIENTS, handshake_timeout: float = _seclink.DEFAULT_HANDSHAKE_TIMEOUT_MS / 1000,
                 idle_timeout: float = _seclink.DEFAULT_IDLE_TIMEOUT_MS / 1000, max_message: int = _seclink.DEFAULT_MAX_MESSAGE,
                 log: LogFn | None = None, log_level: int = _seclink.LOG_MSG, tls: bool = False,
                 tls_cert: str | None = None, tls_key: str | None = None, redact: bool = False,
                 max_handshakes: int = _seclink.DEFAULT_MAX_HANDSHAKES,
                 max_handshakes_per_address: int = _seclink.DEFAULT_MAX_HANDSHAKES_PER_ADDR,
                 handshake_rate: int = _seclink.DEFAULT_HANDSHAKE_RATE,
                 frame_timeout: float = _seclink.DEFAULT_FRAME_TIMEOUT_MS / 1000,
                 max_memory: int = _seclink.DEFAULT_MAX_MEMORY, files_dir: str | os.PathLike[str] | None = None,
                 overwrite: bool = False, max_file_size: int = _seclink.DEFAULT_MAX_FILE_SIZE,
                 max_files_total: int = _seclink.DEFAULT_MAX_FILES_TOTAL, chat: bool = False,
                 chat_rooms: int = _seclink.DEFAULT_CHAT_ROOMS, chat_members: int = _seclink.DEFAULT_CHAT_MEMBERS,
                 chat_rate: int = _seclink.DEFAULT_CHAT_RATE, chat_queue: int = _seclink.DEFAULT_CHAT_QUEUE,
                 chat_cluster: str | None = None, rekey_bytes: int = 0,
                 server_key: bytes | None = None, modes: list[str] | None = None,
                 authorized_keys: str | os.PathLike[str] | None = None,
                 password_users: str | os.PathLike[str] | None = None) -> None:
        key, names = resolve_psks(psk, psk_file)
        try:
            self.host = host
            self.tls_cert_created = False
            if tls and not (tls_cert and tls_key):
                if tls_cert or tls_key:
                    raise ValueError("tls_cert and tls_key go together")
                tls_cert, tls_key, self.tls_cert_created = ensure_self_signed_certificate()
            self.tls_cert = tls_cert if tls else None
            native_handler = _wrap(handler) if handler is not None else None
            self._s = _seclink.Server(key, host=host, port=int(port), threads=threads, max_clients=max_clients,
                                      handshake_timeout_ms=_ms(handshake_timeout), idle_timeout_ms=_ms(idle_timeout),
                                      max_message=max_message, echo=echo, log_level=log_level, log=log,
                                      handler=native_handler, tls=tls, tls_cert=tls_cert or "", tls_key=tls_key or "",
                                      max_handshakes=max_handshakes,
                                      max_handshakes_per_addr=max_handshakes_per_address,
                                      handshake_rate=handshake_rate, frame_timeout_ms=_ms(frame_timeout),
                                      max_memory=max_memory, redact=redact,
                                      files_dir=None if files_dir is None else os.fspath(files_dir),
                                      files_overwrite=overwrite, max_file_size=max_file_size,
                                      max_files_total=max_files_total, chat=chat, chat_rooms=chat_rooms,
                                      chat_members=chat_members, chat_rate=chat_rate, chat_queue=chat_queue,
                                      chat_cluster=chat_cluster or "", psk_names=names,
                                      rekey_bytes=rekey_bytes, server_key=server_key, modes=modes_mask(modes),
                                      authorized_keys=os.fspath(authorized_keys) if authorized_keys else None,
                                      password_users=os.fspath(password_users) if password_users else None)
            self._state = "bound"
            self._stopping = threading.Event()
            self._lock = threading.Lock()
        finally:
            wipe(key)  # the native server keeps its own copy, in dump-proof memory

    def reload_users(self) -> None:
        """Reads the authorized-keys file again (the programs do so on SIGHUP)."""
        self._s.reload_users()

    @property
    def port(self) -> int:
        """The port actually bound."""
        return self._s.port

    @property
    def sessions(self) -> int:
        """Number of sessions open now."""
        return self._s.sessions

    def start(self) -> None:
        """Starts the worker threads and returns at once."""
        with self._lock:
            if self._state != "bound":
                raise RuntimeError(f"server already {self._state}")
            self._s.start()
            self._state = "running"
            _running.add(self)

    def stop(self) -> None:
        """Asks the server to stop (every session gets a CLOSE); returns at once. Any thread."""
        self._stopping.set()
        with self._lock:
            if self._state == "running":
                self._s.stop()

    def wait(self) -> None:
        """Blocks until the server has stopped and every worker thread has been joined."""
        with self._lock:
            running = self._state == "running"
        if running:
            self._s.wait()
            with self._lock:
                self._state = "stopped"
                _running.discard(self)

    def close(self) -> None:
        """stop() then wait(). Idempotent."""
        self.stop()
        self.wait()

    def serve_forever(self) -> None:
        """Starts (if needed) and serves until :meth:`stop` is called from another thread or a
        signal (Ctrl-C raises KeyboardInterrupt here, after the server has stopped)."""
        if self._state == "bound":
            self.start()
        try:
            self._stopping.wait()
        finally:
            self.close()

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _wrap(handler: Handler) -> Callable[[str, bytes], object]:
    def call(peer: str, data: bytes) -> object:
        reply = handler(data, peer)
        return reply.encode("utf-8") if isinstance(reply, str) else reply
    return call


def _ms(seconds: float) -> int:
    if seconds <= 0:
        raise ValueError("timeouts must be positive")
    return min(int(seconds * 1000), 2**32 - 1)
