"""Chat rooms (docs/PROTOCOL.md section 11) for the reference server, written from the spec alone.

The reference keeps to the wire behaviour (names, text, commands, lines, errors, order); it has no
memory budget, and its per-member queue is the socket itself (a send blocks the speaker while a
member does not read): the slow-member policy of 11.5 is the product's, not the reference's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

NAME_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
FORBIDDEN = [(0x00, 0x1F), (0x7F, 0x9F), (0x061C, 0x061C), (0x200E, 0x200F), (0x2028, 0x202E), (0x2066, 0x2069)]
MAX_NAME, MAX_TEXT = 24, 2000
ERROR_DETAIL = {  # DETAIL texts are free (11.3); these are the reference's
    "CHAT_NAME": "not a name", "CHAT_NAME_TAKEN": "that name is taken", "CHAT_TEXT": "not chat text",
    "CHAT_ROOM_FULL": "that room is full", "CHAT_ROOMS": "no more rooms", "CHAT_RATE": "too many lines",
    "CHAT_NO_USER": "nobody has that name", "CHAT_COMMAND": "not a command",
}


def is_name(b: bytes) -> bool:
    return 1 <= len(b) <= MAX_NAME and all(c in NAME_CHARS for c in b)


def is_text(b: bytes) -> bool:
    if not 1 <= len(b) <= MAX_TEXT:
        return False
    try:
        s = b.decode("utf-8", errors="strict")  # Python's decoder is RFC 3629 strict (no surrogates)
    except UnicodeDecodeError:
        return False
    return not any(lo <= ord(ch) <= hi for ch in s for lo, hi in FORBIDDEN)


class Member:
    def __init__(self, send: Callable[[bytes], None], rate: int, account: bytes = b"") -> None:
        self.send = send  # delivers one DATA line to this member's connection
        self.account = account  # the session's user (key or password user), b"" for none
        self.name = b""
        self.room = b""
        self.tokens, self.refilled = float(rate), time.monotonic()


class Chat:
    def __init__(self, rooms: int = 1000, members: int = 1000, rate: int = 20, accounts: bool = False) -> None:
        self.max_rooms, self.max_members, self.rate = rooms, members, rate
        self.accounts = accounts  # the server has users: names are theirs, /nick is off (11.1)
        self.lock = threading.RLock()
        self.names: dict[bytes, Member] = {}            # by lower-cased name
        self.rooms: dict[bytes, dict[bytes, Member]] = {}  # room -> lower-cased name -> member
        self.guests = 0

    def enter(self, m: Member) -> None:
        with self.lock:
            if m.account and is_name(m.account) and m.account.lower() not in self.names:
                m.name = m.account
            else:
                while True:
                    self.guests += 1
                    m.name = b"guest%d" % self.guests
                    if m.name.lower() not in self.names:
                        break
            self.names[m.name.lower()] = m
            m.send(b"* you are " + m.name)
            self._join(m, b"lobby")

    def leave(self, m: Member) -> None:
        with self.lock:
            self._part(m)
            self.names.pop(m.name.lower(), None)

    def line(self, m: Member, b: bytes) -> bool:
        """Handles one line from m; False: m asked to /quit."""
        with self.lock:
            now = time.monotonic()
            m.tokens = min(self.rate, m.tokens + (now - m.refilled) * self.rate)
            m.refilled = now
            if m.tokens < 1:
                return self._error(m, "CHAT_RATE")
            m.tokens -= 1
            if not is_text(b):
                return self._error(m, "CHAT_TEXT")
            if b.startswith(b"/") and not b.startswith(b"//"):
                word, _, arg = b[1:].partition(b" ")
                return self._command(m, word, arg)
            if b.startswith(b"//"):
                b = b[1:]
            if not m.room:
                return self._error(m, "CHAT_COMMAND")
            self._say(m.room, b"[" + m.name + b"] " + b)
            return True

    def _error(self, m: Member, name: str) -> bool:
        m.send(f"! {name}: {ERROR_DETAIL[name]}".encode())
        return True

    def _say(self, room: bytes, line: bytes) -> None:
        for member in list(self.rooms.get(room, {}).values()):
            member.send(line)

    def _join(self, m: Member, room: bytes) -> None:
        if room == m.room:
            m.send(b"* you are in " + room + b" already")
            return
        if room in self.rooms and len(self.rooms[room]) >= self.max_members:
            self._error(m, "CHAT_ROOM_FULL")
            return
        if room not in self.rooms and len(self.rooms) >= self.max_rooms:
            self._error(m, "CHAT_ROOMS")
            return
        self._part(m)
        self.rooms.setdefault(room, {})[m.name.lower()] = m
        m.room = room
        self._say(room, b"* " + m.name + b" joined " + room)

    def _part(self, m: Member) -> None:
        if not m.room:
            return
        members = self.rooms[m.room]
        del members[m.name.lower()]
        if members:
            self._say(m.room, b"* " + m.name + b" left " + m.room)
        else:
            del self.rooms[m.room]
        m.room = b""

    def _command(self, m: Member, word: bytes, arg: bytes) -> bool:
        if word == b"nick" and self.accounts:
            return self._error(m, "CHAT_COMMAND")
        if word in (b"nick", b"join"):
            if not arg:
                return self._error(m, "CHAT_COMMAND")
            if not is_name(arg):
                return self._error(m, "CHAT_NAME")
            if word == b"join":
                self._join(m, arg)
                return True
            holder = self.names.get(arg.lower())
            if holder is not None and holder is not m:
                return self._error(m, "CHAT_NAME_TAKEN")
            old = m.name
            del self.names[old.lower()]
            self.names[arg.lower()] = m
            if m.room:
                del self.rooms[m.room][old.lower()]
                self.rooms[m.room][arg.lower()] = m
            m.name = arg
            notice = b"* " + old + b" is now " + arg
            if m.room:
                self._say(m.room, notice)
            else:
                m.send(notice)
        elif word == b"who":
            if not m.room:
                return self._error(m, "CHAT_COMMAND")
            names = [self.rooms[m.room][k].name for k in sorted(self.rooms[m.room])]
            m.send(b"* " + m.room + b":" + b"".join(b" " + n for n in names))
        elif word == b"rooms":
            m.send(b"* rooms:" + (b" " if self.rooms else b"") +
                   b", ".join(b"%s (%d)" % (r, len(self.rooms[r])) for r in sorted(self.rooms)))
        elif word == b"msg":
            to, sp, text = arg.partition(b" ")
            if not to or not sp or not text:
                return self._error(m, "CHAT_COMMAND")
            target = self.names.get(to.lower()) if is_name(to) else None
            if target is None:
                return self._error(m, "CHAT_NO_USER")
            line = b"[" + m.name + b" -> " + target.name + b"] " + text
            target.send(line)
            if target is not m:
                m.send(line)
        elif word == b"quit":
            return False
        elif word == b"help":
            m.send(b"* commands: /nick NAME, /join ROOM, /who, /rooms, /msg NAME TEXT, /quit, /help")
        else:
            return self._error(m, "CHAT_COMMAND")
        return True
