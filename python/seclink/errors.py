"""The exceptions of the seclink package.

Every failure the library reports is a :class:`seclink.Error`; the subclasses say what kind::

    Error
    ├── KeyFileError          the pre-shared key file is missing or unusable (how to fix it is in the message)
    ├── NetworkError          cannot listen or connect: port in use, refused, unreachable, unknown host
    │   └── Timeout           an operation ran past its time limit (also a builtin TimeoutError)
    ├── TLSError              TLS 1.3 failed: certificate not trusted, wrong host name, pin mismatch, TLS on one side only
    ├── HandshakeError        the seclink handshake failed: different pre-shared keys, not a seclink peer
    ├── ProtocolError         the peer broke the protocol: malformed, replayed, reordered or truncated frame
    │   └── AuthenticationError   a frame failed authentication: tampered in flight or from another session
    ├── ConnectionClosed      the session is over: the peer sent CLOSE (see .reason) or the connection was lost
    └── MessageTooLarge       a message over the size limit was refused; nothing was sent

Each exception carries ``code`` (the library's numeric error, as in docs/PROTOCOL.md), ``name``
(its stable name, e.g. ``"AUTH"``) and ``peer`` (``"host:port"`` where known). The native
bindings use :func:`from_code` to build every exception they raise.
"""

from __future__ import annotations

import os
from typing import Any
from enum import IntEnum

from . import _seclink

# The library's numbers, read from the core (never copied here): Err is sl_err (Err.AUTH == 17,
# names as in docs/PROTOCOL.md section 7), Category is sl_category (the programs' exit codes),
# MsgType is sl_msg_type.
Err = IntEnum("Err", _seclink.ERRORS, module=__name__)
Category = IntEnum("Category", _seclink.CATEGORIES, module=__name__)
MsgType = IntEnum("MsgType", _seclink.MESSAGE_TYPES, module=__name__)

__all__ = ["Err", "Category", "MsgType", "Error", "KeyFileError", "NetworkError", "Timeout", "TLSError", "HandshakeError", "ProtocolError",
           "AuthenticationError", "ConnectionClosed", "MessageTooLarge", "from_code"]


class Error(Exception):
    """Base class of every seclink error.

    Attributes: ``code`` (int, 0 when the error did not come from the library), ``name`` (str),
    ``peer`` (str, empty if unknown), ``detail`` (the library's one-line description).
    """

    def __init__(self, message: str, *, code: int = 0, name: str = "", peer: str = "", detail: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.name = name
        self.peer = peer
        self.detail = detail


class KeyFileError(Error):
    """The pre-shared key file is missing, has the wrong mode, size or format, or is a symlink."""


class NetworkError(Error):
    """Cannot listen or connect: the port is in use, the connection was refused, no route, unknown host."""


class Timeout(NetworkError, TimeoutError):
    """An operation (connect, handshake, send or recv) did not finish within its time limit."""


class TLSError(Error):
    """The TLS 1.3 layer failed: untrusted certificate, wrong host name, pin mismatch, TLS on one side only."""


class HandshakeError(Error):
    """The seclink handshake failed: the two sides have different pre-shared keys, or the peer is not seclink."""


class ProtocolError(Error):
    """The peer broke the protocol: a malformed, oversized, replayed, reordered or truncated frame."""


class AuthenticationError(ProtocolError):
    """A transport frame failed authentication: it was tampered with or belongs to another session."""


class ConnectionClosed(Error):
    """The session is over. ``reason`` is the peer's CLOSE reason, or None if the connection was lost."""

    def __init__(self, message: str, *, reason: str | None = None, **kw) -> None:
        super().__init__(message, **kw)
        self.reason = reason


class FileTransferError(Error):
    """The server refused a file transfer (docs/PROTOCOL.md 10): ``reason_code`` is its code's
    name ("NO_FILES", "BAD_NAME", "EXISTS", "NOT_FOUND", "TOO_LARGE", "QUOTA", "DISK_FULL",
    "HASH_MISMATCH", "BUSY", "IO", "SIZE_MISMATCH"); the session stays usable."""

    def __init__(self, message: str, *, reason_code: str = "", **kw: Any) -> None:
        super().__init__(message, **kw)
        self.reason_code = reason_code


class MessageTooLarge(Error, ValueError):
    """A message over the connection's size limit was refused before anything was sent."""


# Library error codes (seclink.h, docs/PROTOCOL.md section 7) -> exception class.
_CLASSES: dict[int, type[Error]] = {
    Err.CLOSED: ConnectionClosed, Err.PEER_CLOSED: ConnectionClosed,
    Err.AUTH: AuthenticationError,
    Err.TIMEDOUT: Timeout,
    Err.NONCE_EXHAUSTED: Error,  # our own counter ran out: the peer broke nothing
}
# Else by the core's category.
_BY_CATEGORY: dict[int, type[Error]] = {
    Category.KEY: KeyFileError, Category.NETWORK: NetworkError, Category.TLS: TLSError,
    Category.HANDSHAKE: HandshakeError, Category.SESSION: ProtocolError, Category.TOO_LARGE: MessageTooLarge,
}


def as_handshake_error(e: Error, where: str) -> Error:
    """A server that hangs up during the handshake (PEER_CLOSED, TRUNCATED) most likely could not
    decrypt it: that is what a wrong key looks like, so both clients report it as HandshakeError.
    Any other error is returned unchanged."""
    if e.name not in ("PEER_CLOSED", "TRUNCATED"):
        return e
    return HandshakeError(f"{where}: the server closed the connection during the handshake: it most likely uses a "
                          "different pre-shared key (or it runs with TLS)",
                          code=e.code, name=e.name, peer=e.peer, detail=e.detail)


def from_code(code: int, context: str = "", peer: str = "") -> Error:
    """The exception for library error `code`, its message naming the peer and the cause."""
    detail = _seclink.strerror(code)
    if code == Err.SOCKET and _seclink.last_os_error():  # the operating system's words for the cause
        detail += f" ({os.strerror(_seclink.last_os_error())})"
    name = _seclink.errname(code)
    parts = [p for p in (peer, context) if p]
    message = f"{': '.join(parts)}: {detail} [{name}]" if parts else f"{detail} [{name}]"
    cls = _CLASSES.get(code) or _BY_CATEGORY.get(_seclink.err_category(code), Error)
    return cls(message, code=code, name=name, peer=peer, detail=detail)
