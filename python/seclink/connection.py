"""The sans-I/O seclink/1 connection: bytes in, events and bytes out, no sockets inside.

Bring your own I/O::

    conn = Connection("client", psk)
    conn.start()
    sock.sendall(conn.data_to_send())          # handshake frame 1
    while not conn.established:
        for event in conn.receive_data(sock.recv(65536)):
            ...                                # HandshakeComplete
    sock.sendall(conn.data_to_send())
    conn.send(b"hello")
    sock.sendall(conn.data_to_send())

The engine is libseclink's (the same C++ code as every other part of the project); the GIL is
released while it decrypts and encrypts. One Connection must not be used by two threads at once
(that raises RuntimeError); many Connections may run on many threads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal, Union

from . import _seclink
from .errors import Error, MsgType, from_code

Message = Union[bytes, bytearray, memoryview, str]

__all__ = ["Connection", "Event", "HandshakeComplete", "Data", "Ping", "Pong", "Eof", "FileMessage", "Closed",
           "DATA", "CLOSE", "PING", "PONG", "EOF"]

DATA, CLOSE, PING, PONG, EOF = MsgType.DATA, MsgType.CLOSE, MsgType.PING, MsgType.PONG, MsgType.EOF
_HANDSHAKE_DONE, _MESSAGE = 1, 2


def mode_number(name: str) -> int:
    """"psk" -> 1, "server-key" -> 2 (docs/PROTOCOL.md 14)."""
    for m in range(1, 32):
        if _seclink.mode_name(m) == name:
            return m
    raise ValueError(f"unknown mode {name!r}: psk or server-key")


def modes_mask(names: list[str] | None) -> int:
    """The bit mask of a list of mode names; 0 (the default) for None."""
    return sum(1 << mode_number(n) for n in set(names)) if names else 0


@dataclass(frozen=True)
class HandshakeComplete:
    """The handshake finished: messages may now be sent in both directions."""


@dataclass(frozen=True)
class Data:
    """An application message (``data`` may be empty)."""
    data: bytes


@dataclass(frozen=True)
class Ping:
    """A PING arrived; its PONG is already queued (see :meth:`Connection.data_to_send`)."""
    data: bytes


@dataclass(frozen=True)
class Pong:
    """The answer to a PING this side sent, echoing its content."""
    data: bytes


@dataclass(frozen=True)
class Eof:
    """The peer sends no more DATA (its input ended; docs/PROTOCOL.md 9); it still receives."""


@dataclass(frozen=True)
class FileMessage:
    """A file transfer message (docs/PROTOCOL.md 10; ``msg_type`` 0x21-0x2F), for a file client
    such as seclink.aio's: the Connection carries them, their meaning is the caller's."""
    msg_type: int
    data: bytes


@dataclass(frozen=True)
class Closed:
    """The peer sent CLOSE with ``reason`` (possibly empty); nothing more will arrive."""
    reason: str


Event = Union[HandshakeComplete, Data, Ping, Pong, Eof, FileMessage, Closed]


def message_bytes(data: Message) -> bytes | bytearray | memoryview:
    """What is sent for `data`: a str as UTF-8; any other bytes-like object (memoryview, array,
    strided or not) as its bytes, exactly as ``bytes(data)`` gives them."""
    if isinstance(data, str):
        return data.encode("utf-8")
    try:
        memoryview(data)
    except TypeError:
        raise TypeError(f"a message is bytes-like or str, not {type(data).__name__}") from None
    return data


def _event(kind: int, msg_type: int, content: bytes) -> Event:
    if kind == _HANDSHAKE_DONE:
        return HandshakeComplete()
    if msg_type == DATA:
        return Data(content)
    if msg_type == PING:
        return Ping(content)
    if msg_type == PONG:
        return Pong(content)
    if msg_type == EOF:
        return Eof()
    if 0x21 <= msg_type <= 0x2F:
        return FileMessage(msg_type, content)
    return Closed(content.decode("utf-8", errors="replace"))


class Connection:
    """One side of a seclink/1 connection.

    ``role`` is ``"client"`` or ``"server"``; ``psk`` the pre-shared key (ValueError "a pre-shared
    key is exactly 32 bytes, not N" otherwise);
    ``max_message`` the largest message content accepted and sent (default 16 MiB);
    ``max_send`` optionally a different limit for what this side sends.

    ``ephemeral_for_testing`` (32 bytes) fixes this side's ephemeral X25519 key so that a test can
    reproduce the project's vectors byte for byte. It destroys forward secrecy: never use it
    outside tests.

    A client confirms the key (docs/PROTOCOL.md 4.1): right after the handshake it queues an
    empty PING, before anything else, and the server's PONG to it is not delivered. Write
    :meth:`data_to_send` once the handshake completes. ``key_confirmation=False`` exists only
    to replay the original ``wire`` vectors.

    Messages may be any bytes-like object (taken as ``bytes(data)`` would give it, whatever its
    shape or strides) or a str (sent as UTF-8).

    Server identity (docs/PROTOCOL.md 14): a client's ``mode="server-key"`` asks for mode 2 and
    expects the server's static public key ``server_key`` (without it the handshake stops with
    HandshakeError SERVER_KEY_UNKNOWN; :attr:`server_key` then holds the key the server sent). A
    server's ``static_key`` (private) enables mode 2; ``accepted_modes`` lists the modes it takes.

    Keys are replaced as the session goes (docs/PROTOCOL.md 13): a KEY_UPDATE goes out after
    ``rekey_bytes`` bytes under one key (default 4 GiB; small values are for tests) and on
    :meth:`rekey`.
    """

    def __init__(self, role: Literal["client", "server"], psk: bytes, *, max_message: int | None = None,
                 max_send: int | None = None, ephemeral_for_testing: bytes | None = None,
                 key_confirmation: bool = True, rekey_bytes: int | None = None, mode: str = "psk",
                 server_key: bytes | None = None, static_key: bytes | None = None,
                 accepted_modes: list[str] | None = None, login: tuple[str, bytes | str] | None = None) -> None:
        if role not in ("client", "server"):
            raise ValueError(f"role must be 'client' or 'server', not {role!r}")
        self.role = role
        self._c = _seclink.Connection(0 if role == "client" else 1, psk, max_message, max_send,
                                      ephemeral_for_testing)
        if not key_confirmation:  # only to replay the `wire` vectors (docs/PROTOCOL.md 4.1, 8)
            self._c.set_key_confirmation(False)
        if rekey_bytes is not None:
            self._c.set_rekey_bytes(rekey_bytes)
        if mode != "psk":
            self._c.set_mode(mode_number(mode))
        if server_key is not None:
            self._c.set_server_key(server_key)
        if static_key is not None:
            self._c.set_static_key(static_key)
        if accepted_modes is not None:
            self._c.set_accepted_modes(modes_mask(accepted_modes))
        if login is not None:  # mode "password": (user, password), sent as AUTH (docs/PROTOCOL.md 16)
            self._c.set_login(login[0], message_bytes(login[1]))
        self._started = False

    def start(self) -> None:
        """Begins the handshake: a client queues frame 1, a server starts waiting for it."""
        self._c.start()
        self._started = True

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """Feeds bytes received from the peer and returns the events they complete, in order.

        Raises a :class:`seclink.ProtocolError`, :class:`seclink.AuthenticationError` or
        :class:`seclink.HandshakeError` if the peer broke the protocol; the connection is then
        dead (close the socket). The events completed before the bad frame are on the
        exception as ``exc.events``.
        """
        events: list[Event] = []
        try:
            for event in self.events(data):
                events.append(event)
        except Error as err:
            err.events = events  # type: ignore[attr-defined]
            raise
        return events

    def events(self, data: bytes | bytearray | memoryview) -> Iterator[Event]:
        """Like :meth:`receive_data`, one event at a time: the engine reads no further into
        `data` than the event it yields. So what you queue in answer to an event (a reply) is
        already queued if a later frame in the same bytes turns out to be bad; the error is
        raised when iteration reaches that frame. Iterate to the end before feeding more."""
        was_established = self._c.established
        with memoryview(data) as view:  # released at once: a bytearray stays resizable
            offset, size = 0, view.nbytes
            if not view.c_contiguous:
                data = view.tobytes()  # copied once here, not at every event
        while offset < size:
            raw, offset, rc = self._c.feed_one(data, offset)
            if rc:
                raise from_code(rc, "handshake" if not (was_established or self._c.established) else "")
            if raw is not None:
                yield _event(*raw)

    def receive_eof(self) -> None:
        """Tells the engine the stream ended; raises ProtocolError (TRUNCATED) mid-frame."""
        rc = self._c.feed_eof()
        if rc:
            raise from_code(rc)

    def send(self, data: Message) -> None:
        """Queues one DATA message, a str as UTF-8 (MessageTooLarge if over the limit)."""
        self._c.send(DATA, message_bytes(data))

    def send_ping(self, data: Message = b"") -> None:
        """Queues a PING (at most 64 bytes; a str as UTF-8); the peer answers with a PONG."""
        self._c.send(PING, message_bytes(data))

    def send_file_message(self, msg_type: int, data: bytes | bytearray | memoryview = b"") -> None:
        """Queues a file transfer message (docs/PROTOCOL.md 10) of type ``msg_type``."""
        if not 0x21 <= msg_type <= 0x2F:
            raise ValueError(f"not a file message type: {msg_type:#x}")
        self._c.send(msg_type, message_bytes(data))

    def send_eof(self) -> None:
        """Queues an EOF: this side sends no more DATA, and keeps receiving (docs/PROTOCOL.md 9)."""
        self._c.send(EOF, b"")

    def rekey(self) -> None:
        """Queues a KEY_UPDATE; what this side sends next goes under the next key."""
        self._c.rekey()

    @property
    def server_key(self) -> bytes | None:
        """Client, mode 2: the static public key the server sent (also after SERVER_KEY_*)."""
        return self._c.server_key

    @property
    def server_modes(self) -> list[str]:
        """Client, after MODE_REFUSED: the modes the server accepts."""
        return [_seclink.mode_name(m) for m in range(1, 32) if self._c.server_modes & (1 << m)]

    @property
    def rekeys(self) -> tuple[int, int]:
        """(KEY_UPDATEs sent, KEY_UPDATEs received) so far."""
        return self._c.rekeys

    def close(self, reason: str = "") -> None:
        """Queues a CLOSE with an optional reason; nothing more can be sent afterwards."""
        self._c.send(CLOSE, reason.encode())

    def data_to_send(self) -> bytes:
        """Every byte queued for the peer (handshake frames, messages, PONGs), now taken."""
        return self._c.data_to_send()

    @property
    def established(self) -> bool:
        """True once the handshake has completed."""
        return self._c.established

    @property
    def closed(self) -> bool:
        """True once the connection failed, sent CLOSE or received CLOSE."""
        return self._c.closed

    @property
    def handshake_hash(self) -> bytes:
        """The 32-byte handshake hash (identical on both sides; docs/PROTOCOL.md 3.5)."""
        return self._c.handshake_hash()

    def set_trace(self, fn: Callable[[str], None] | None, peer: str = "") -> None:
        """Calls ``fn(text)`` with an annotated hex dump of every frame sent or accepted
        (length prefix, IV counter, ciphertext, tag, plaintext); ``peer`` names the other side."""
        self._c.set_trace(fn, peer)


