"""The blocking seclink client, backed by libseclink's native client."""

from __future__ import annotations

import os
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

from . import _seclink
from .connection import CLOSE, DATA, PING, PONG, Message, message_bytes, mode_number
from .errors import ConnectionClosed, Err, Error, FileTransferError, ProtocolError, as_handshake_error, from_code
from .keys import resolve_psk, wipe

__all__ = ["Client", "FileResult"]

class _Default:
    """The default of a per-call timeout: the client's own (readable in help())."""

    def __repr__(self) -> str:
        return "<the client's timeout>"


_DEFAULT: Any = _Default()


class Client:
    """A connected, handshaken seclink/1 session with a server.

    ::

        with Client("127.0.0.1", 5000) as c:
            print(c.request(b"hello"))        # b'ACK: received 5 bytes'

    The key is ``psk`` (32 bytes), else read from ``psk_file``, else from the default key file
    (see :mod:`seclink.keys`). ``timeout`` (seconds) bounds connecting + handshaking, each send,
    and each recv unless recv is given its own. With ``tls=True`` the session runs inside TLS
    1.3 and the server's certificate is always verified: against ``tls_ca`` (a PEM CA file, host
    name checked), ``tls_pin`` (its SHA-256 fingerprint), or, with neither, the certificate a
    server on this machine created in the config directory (``tls_trust_dir`` overrides where).
    ``trace``, a callable, receives an annotated dump of every frame. Keys are replaced as the
    session goes (docs/PROTOCOL.md 13): after ``rekey_bytes`` bytes under one key (0: the default,
    4 GiB; small values are for tests) and on :meth:`rekey`. ``mode="server-key"`` checks the
    server's identity too (docs/PROTOCOL.md 14): ``server_key`` is the public key to expect; an
    unknown or different key raises HandshakeError (SERVER_KEY_UNKNOWN / SERVER_KEY_CHANGED) whose
    ``server_key`` attribute is the key the server sent, and a server that does not accept the mode
    raises HandshakeError (MODE_REFUSED) with ``server_modes``. ``mode="user-key"`` also presents
    ``identity`` (a 32-byte private key, e.g. from :func:`seclink.keys.server_key`) as a key user
    (docs/PROTOCOL.md 15); a server that does not list it closes the session ("unknown user").
    ``mode="password"`` logs in as ``user`` with ``password`` once the server's key is verified
    (docs/PROTOCOL.md 16); a wrong one closes the session ("wrong user or password").

    Messages are any bytes-like object or a str (sent as UTF-8).

    A Client may be shared between threads. Its calls into the native client take turns, first
    come first served, and :meth:`recv` waits in short slices, each a turn of its own, so one
    thread may :meth:`send` (or :meth:`close`) while another waits in :meth:`recv`. Receiving is
    one thread at a time: :meth:`recv`, :meth:`request` and :meth:`ping` hold a lock for the
    whole call, and :meth:`request` holds it from its send to its reply, so concurrent requests
    each get their own reply. A close() from another thread ends a waiting recv() with
    ConnectionClosed once the server has hung up.

    Every blocking call releases the GIL, and Ctrl-C interrupts a blocked :meth:`recv` promptly
    (as it does a thread waiting for its turn).
    Errors: NetworkError / Timeout (cannot connect), HandshakeError (different keys), TLSError,
    KeyFileError; later ConnectionClosed, ProtocolError, AuthenticationError, MessageTooLarge.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = _seclink.DEFAULT_PORT, *, psk: bytes | None = None,
                 psk_file: str | os.PathLike[str] | None = None, timeout: float = _seclink.DEFAULT_TIMEOUT_MS / 1000,
                 max_message: int = _seclink.DEFAULT_MAX_MESSAGE, tls: bool = False, tls_ca: str | None = None,
                 tls_pin: str | None = None, tls_trust_dir: str | None = None, trace=None,
                 rekey_bytes: int = 0, mode: str = "psk", server_key: bytes | None = None,
                 identity: bytes | None = None, user: str | None = None, password: bytes | str | None = None) -> None:
        key = resolve_psk(psk, psk_file)
        if timeout <= 0:
            raise ValueError("timeout must be positive (seconds)")
        self.timeout = timeout
        self._pending: deque[bytes] = deque()
        self._closed = False
        self._receiving = threading.Lock()  # one receiver at a time; a request from send to reply
        self._closing = threading.Lock()
        try:
            self._c = _seclink.Client(key, host, int(port), _ms(timeout), max_message, trace, tls, tls_ca, tls_pin,
                                      tls_trust_dir, rekey_bytes, mode_number(mode), server_key, identity, user,
                                      message_bytes(password) if password is not None else None)
        except (ConnectionClosed, ProtocolError) as e:
            err = as_handshake_error(e, f"{host}:{port}")
            if err is e:
                raise
            raise err from None
        finally:
            wipe(key)  # the native client keeps its own copy

    @property
    def peer(self) -> str:
        """The server as ``host:port``."""
        return self._c.peer

    def send(self, data: Message) -> None:
        """Sends one message (str is sent as UTF-8). Raises MessageTooLarge before sending
        anything if it is over the limit."""
        self._c.send(DATA, message_bytes(data))

    def recv(self, timeout: float | None = _DEFAULT) -> bytes:  # type: ignore[assignment]
        """The next message from the server. ``timeout`` in seconds (default: the client's;
        None: wait forever). Raises Timeout, or ConnectionClosed (with ``.reason``) if the
        server ended the session."""
        with self._receiving:
            return self._recv(timeout)

    def request(self, data: Message, timeout: float | None = _DEFAULT) -> bytes:  # type: ignore[assignment]
        """Sends one message and returns the next message from the server (its reply)."""
        with self._receiving:
            self.send(data)
            return self._recv(timeout)

    def ping(self, data: Message = b"", timeout: float | None = _DEFAULT) -> bytes:  # type: ignore[assignment]
        """Sends a PING (at most 64 bytes; a str as UTF-8) and waits for its PONG; returns the
        echoed content. Messages arriving meanwhile are kept for :meth:`recv`."""
        with self._receiving:
            self._c.send(PING, message_bytes(data))
            while True:
                msg_type, content = self._next(timeout)
                if msg_type == PONG:
                    return content
                self._pending.append(content)

    def send_file(self, path: str | os.PathLike[str], name: str | None = None,
                  progress: Callable[[int, int], None] | None = None) -> FileResult:
        """Uploads the file at ``path`` to a server started with a files directory, as ``name``
        (default: the path's last component); resumes an upload an earlier attempt left unfinished.
        The SHA-256 of the whole file is checked by the server before the file appears under its
        name. ``progress(done, total)`` is called between chunks. Raises FileTransferError (the
        server refused: ``.reason_code`` such as "EXISTS", "BAD_NAME", "DISK_FULL") or OSError
        (the local file), or the session's errors."""
        with self._receiving:
            return _transfer(self._c, True, os.fspath(path), name, False, progress, self.peer)

    def get_file(self, name: str, path: str | os.PathLike[str] | None = None, *, overwrite: bool = False,
                 progress: Callable[[int, int], None] | None = None) -> FileResult:
        """Downloads ``name`` to ``path`` (default: ``name`` in the current directory) through a
        temporary file next to it (resumed by a later call if cut off), checks its SHA-256, then
        renames it; an existing file is replaced only with ``overwrite``."""
        with self._receiving:
            return _transfer(self._c, False, name, None if path is None else os.fspath(path), overwrite, progress,
                             self.peer)

    def keepalive(self) -> None:
        """Sends an empty PING without waiting for its PONG (recv skips it): keeps an idle
        session open. May be called while another thread waits in recv."""
        self._c.send(PING, b"")

    @property
    def server_key(self) -> bytes | None:
        """Mode 2: the server's static public key (as verified)."""
        return self._c.server_key

    def rekey(self) -> None:
        """Sends a KEY_UPDATE now (docs/PROTOCOL.md 13): later messages go under the next key."""
        self._c.rekey()

    def close(self, reason: str | None = None) -> None:
        """Ends the session with a CLOSE (optional reason). Idempotent."""
        with self._closing:
            if self._closed:
                return
            self._closed = True
        try:
            self._c.close(reason)
        except ConnectionClosed:
            pass

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _recv(self, timeout: float | None) -> bytes:
        if self._pending:
            return self._pending.popleft()
        while True:
            msg_type, data = self._next(timeout)
            if msg_type == DATA:
                return data

    def _next(self, timeout: float | None) -> tuple[int, bytes]:
        t = self.timeout if timeout is _DEFAULT else timeout
        msg_type, data = self._c.recv(-1 if t is None else _ms(t))
        if msg_type == CLOSE:
            self._closed = True
            reason = data.decode("utf-8", errors="replace")
            why = _seclink.format_message(data) if data else "no reason given"  # the server's text, made safe
            raise ConnectionClosed(f"{self.peer}: the server closed the session: {why}",
                                   reason=reason, code=5, name="CLOSED", peer=self.peer)
        return msg_type, data


def _ms(seconds: float) -> int:
    if seconds < 0:
        raise ValueError("a timeout cannot be negative")
    return min(int(seconds * 1000), 2**31 - 1)


@dataclass(frozen=True)
class FileResult:
    """A completed transfer: ``size`` of the whole file, ``sha256`` (hex) as both sides computed
    it, ``resumed_from`` (bytes an earlier attempt had already transferred)."""
    size: int
    sha256: str
    resumed_from: int = 0


def _transfer(native, upload: bool, a: str, b: str | None, overwrite: bool, progress, peer: str) -> FileResult:
    rc, size, resumed, digest, remote, message = native.transfer(upload, a, b, overwrite, progress)
    if rc == 0:
        return FileResult(size, digest.hex(), resumed)
    what = f"{'sending' if upload else 'getting'} {a}"
    if rc == Err.IO:
        raise OSError(f"{what}: {message}")
    err = from_code(rc, what, peer)
    if rc == Err.FILE_REFUSED:
        code = _seclink.file_code_name(remote)
        raise FileTransferError(f"{peer}: {what}: the server refused it: {message}", code=rc, name="FILE_REFUSED",
                                peer=peer, detail=message, reason_code=code)
    if message and isinstance(err, Error):
        raise type(err)(f"{err} ({message})", code=rc, name=err.name, peer=peer, detail=message)
    raise err
