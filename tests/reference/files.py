"""The server's side of file transfer (docs/PROTOCOL.md section 10), written from the text alone:
plain names, no symbolic links, no overwrite (unless allowed), a temporary file that is verified,
flushed and only then renamed, resume after a verified prefix. (No size limits: the reference is
for checking the protocol, not for serving.)"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
import unicodedata  # noqa: F401 - names are checked byte by byte below, not normalised

from .seclink_ref import (FILE_CHUNK, FILE_DATA, FILE_DONE, FILE_END, FILE_ERROR, FILE_GET, FILE_INFO, FILE_PUT,
                          FILE_READ, FILE_READY, ProtocolError)

NO_FILES, BAD_NAME, EXISTS, NOT_FOUND, DISK_FULL, HASH_MISMATCH, IO, SIZE_MISMATCH = 1, 2, 3, 4, 7, 8, 10, 11
DEVICES = {"CON", "PRN", "AUX", "NUL"} | {f"COM{i}" for i in range(1, 10)} | {f"LPT{i}" for i in range(1, 10)}


def name_problem(raw: bytes) -> str | None:
    """Why `raw` is not a plain file name (section 10), or None."""
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "not UTF-8"
    if not 1 <= len(raw) <= 255:
        return "1 to 255 bytes"
    if any(c in name for c in "/\\") or any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        return "a path or a control character"
    if name.startswith("."):
        return "starts with '.'"
    if name.endswith((" ", ".")):
        return "ends with a space or '.'"
    if name.split(".")[0].rstrip(" ").upper() in DEVICES:
        return "a device name"
    return None


def u64(n: int) -> bytes:
    return n.to_bytes(8, "big")


class FileServer:
    """One session's transfers. handle() takes a file message and returns the replies to send."""

    def __init__(self, directory: str | None, overwrite: bool = False) -> None:
        self.dir, self.overwrite = directory, overwrite
        self.state = "idle"  # idle, upload, upload-failed, download
        self.f = None

    def _error(self, code: int, why: str) -> list[tuple[int, bytes]]:
        if self.state == "upload" and code in (DISK_FULL, HASH_MISMATCH, SIZE_MISMATCH, IO):
            os.unlink(self.temp)
        failed = self.state == "upload"
        self.close()
        self.state = "upload-failed" if failed else "idle"
        return [(FILE_ERROR, bytes([code]) + why.encode())]

    def close(self) -> None:
        if self.f is not None:
            self.f.close()
        self.f, self.state = None, "idle"

    def _check(self, raw: bytes) -> list[tuple[int, bytes]] | None:
        if self.dir is None:
            return self._error(NO_FILES, "this server takes no files")
        problem = name_problem(raw)
        return self._error(BAD_NAME, problem) if problem else None

    def handle(self, kind: int, content: bytes) -> list[tuple[int, bytes]]:
        if kind == FILE_PUT:
            return self._put(content)
        if kind == FILE_GET:
            return self._get(content)
        if kind == FILE_DATA:
            if self.state == "upload-failed":
                return []
            if self.state != "upload" or not 1 <= len(content) <= FILE_CHUNK:
                raise ProtocolError("BAD_FILE_MSG")
            if self.pos + len(content) > self.size:
                return self._error(SIZE_MISMATCH, "more bytes than announced")
            self.f.write(content)
            self.h.update(content)
            self.pos += len(content)
            return []
        if kind == FILE_READ:
            if self.state != "download" or len(content) != 4 or not 1 <= int.from_bytes(content, "big") <= FILE_CHUNK \
                    or self.pos >= self.size:
                raise ProtocolError("BAD_FILE_MSG")
            data = self.f.read(min(int.from_bytes(content, "big"), self.size - self.pos))
            self.h.update(data)
            self.pos += len(data)
            return [(FILE_DATA, data)]
        if kind == FILE_END:
            return self._end(content)
        raise ProtocolError("BAD_FILE_MSG")

    def _put(self, c: bytes) -> list[tuple[int, bytes]]:
        if len(c) < 9 or self.state == "download" or (self.state == "upload" and self.pos != self.start):
            raise ProtocolError("BAD_FILE_MSG")
        self.close()
        self.size, restart, raw = int.from_bytes(c[:8], "big"), c[8] & 1, c[9:]
        if (refused := self._check(raw)) is not None:
            return refused
        self.name = raw.decode()
        path = os.path.join(self.dir, self.name)
        if os.path.lexists(path) and (not self.overwrite or not stat.S_ISREG(os.lstat(path).st_mode)):
            return self._error(EXISTS, "exists")
        self.temp = os.path.join(self.dir, ".seclink-" + hashlib.sha256(raw).hexdigest()[:32] + ".part")
        fd = os.open(self.temp, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        self.f = os.fdopen(fd, "r+b")
        have = os.fstat(fd).st_size
        if restart or have > self.size:
            self.f.truncate(0)
            have = 0
        self.h = hashlib.sha256(self.f.read(have))
        self.pos = self.start = have
        self.state = "upload"
        return [(FILE_READY, u64(have) + self.h.digest())]

    def _get(self, c: bytes) -> list[tuple[int, bytes]]:
        if len(c) < 40 or self.state in ("upload", "download"):
            raise ProtocolError("BAD_FILE_MSG")
        self.close()
        have, prefix, raw = int.from_bytes(c[:8], "big"), c[8:40], c[40:]
        if (refused := self._check(raw)) is not None:
            return refused
        self.name = raw.decode()
        try:
            fd = os.open(os.path.join(self.dir, self.name), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            return self._error(NOT_FOUND, "no such file (or a symbolic link)")
        self.f = os.fdopen(fd, "rb")
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return self._error(NOT_FOUND, "not a regular file")
        self.size = os.fstat(fd).st_size
        self.h = hashlib.sha256(self.f.read(have)) if 0 < have <= self.size else None
        start = have if self.h is not None and hmac.compare_digest(self.h.digest(), prefix) else 0
        if start == 0:
            self.h = hashlib.sha256()
        self.f.seek(start)
        self.pos = self.start = start
        self.state = "download"
        return [(FILE_INFO, u64(self.size) + u64(start))]

    def _end(self, c: bytes) -> list[tuple[int, bytes]]:
        if self.state == "upload-failed":
            self.state = "idle"
            return []
        if self.state == "download" and not c:
            if self.pos != self.size:
                return self._error(SIZE_MISMATCH, "FILE_END before the end")
            digest = self.h.digest()
            self.close()
            return [(FILE_DONE, u64(self.size) + digest)]
        if self.state != "upload" or len(c) != 32:
            raise ProtocolError("BAD_FILE_MSG")
        if self.pos != self.size:
            return self._error(SIZE_MISMATCH, "the upload ended early")
        if not hmac.compare_digest(self.h.digest(), c):
            return self._error(HASH_MISMATCH, "the SHA-256 of the bytes received is not the sender's")
        self.f.flush()
        os.fsync(self.f.fileno())
        final = os.path.join(self.dir, self.name)
        if self.overwrite:
            os.replace(self.temp, final)
        else:
            try:
                os.link(self.temp, final)  # fails if the name appeared meanwhile: never replaced
            except FileExistsError:
                return self._error(EXISTS, "exists")
            os.unlink(self.temp)
        dfd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY)
        os.fsync(dfd)
        os.close(dfd)
        digest = self.h.digest()
        self.close()
        return [(FILE_DONE, u64(self.size) + digest)]
