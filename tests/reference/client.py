"""seclink/1 reference client over plain TCP (docs/PROTOCOL.md).

    python3 -m tests.reference.client HOST PORT [MESSAGE ...] [--psk-file PATH]
        [--message-file PATH ...] [--max-message BYTES]
    python3 -m tests.reference.client HOST PORT --chat [--psk-file PATH]

Sends each MESSAGE, then the bytes of each --message-file (or, with neither, each line of
standard input until end of input or a line `exit`, `quit` or `!DISCONNECT`) as DATA, prints
each reply as `[RECV] <text>`, then sends CLOSE. With --pipe: standard input as a stream of DATA,
then EOF; the replies' raw bytes to standard output; CLOSE after the server's EOF (section 9).
With --send FILE / --get NAME: file transfer (section 10), with resume and digests. A message over --max-message (default 16 MiB)
is refused before connecting. Exit status: 0 success, 2 handshake failure, 3 message too large,
1 any other error (one `error: ...` line on stderr).

With --chat (a chat server, docs/PROTOCOL.md section 11) it sends each line of standard input as
it comes and prints every line the server sends, as it arrives, as is; it ends at the end of
input, a line `/quit` (sent: the server answers CLOSE) or the server's CLOSE (exit 1, reason on
stderr, except "bye" after /quit: 0).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import selectors
import socket
import sys
from collections.abc import Iterable, Iterator

from .seclink_ref import (DATA, DEFAULT_MAX_MESSAGE, DEFAULT_REKEY_BYTES, EOF, FILE_CHUNK, FILE_CODES, FILE_DATA, FILE_DONE,
                          FILE_END, FILE_ERROR, FILE_GET, FILE_INFO, FILE_PUT, FILE_READ, FILE_READY, FILE_TYPES, Closed,
                          Connection, Event, HandshakeDone, KeyFileError,
                          Message, ProtocolError, default_key_path, describe, load_key)

QUIT_LINES = ("exit", "quit", "!DISCONNECT")


class ClientError(Exception):
    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def events(sock: socket.socket, conn: Connection) -> Iterator[Event]:
    """The connection's events as bytes arrive; whatever the Connection queues (a PONG) is sent."""
    while True:
        data = sock.recv(65536)
        new = conn.receive(data) if data else conn.eof()
        sock.sendall(conn.data_to_send())
        yield from new
        if not data:
            return


def closed_reason(sock: socket.socket, conn: Connection) -> str | None:
    """After a failed write (section 5, closing the stream): the reason of a CLOSE that has already
    arrived, read without waiting; None if there is none."""
    sock.setblocking(False)
    try:
        while data := sock.recv(65536):
            for event in conn.receive(data):
                if isinstance(event, Closed):
                    return event.reason or ""
    except (OSError, ProtocolError):
        pass
    return None


def stdin_lines() -> Iterator[bytes]:
    for line in sys.stdin.buffer:
        line = line.rstrip(b"\r\n")
        if line.decode("utf-8", "replace") in QUIT_LINES:
            return
        yield line


def run(host: str, port: int, psk: bytes, messages: Iterable[bytes] | tuple[list[str], list[str]] | None,
        max_message: int = DEFAULT_MAX_MESSAGE, rekey_bytes: int = DEFAULT_REKEY_BYTES,
        server_key: bytes | None = None, identity: bytes | None = None,
        login: tuple[str, bytes] | None = None) -> None:
    try:
        sock = socket.create_connection((host, port))
    except OSError as error:
        raise ClientError(f"cannot connect to {host}:{port}: {error.strerror or error}") from None
    with sock:
        conn = Connection("client", psk, max_message=max_message, rekey_bytes=rekey_bytes,
                          mode=(4 if login else 3 if identity else 2) if server_key else 1, server_key=server_key,
                          identity=identity, login=login)
        conn.start()
        try:
            sock.sendall(conn.data_to_send())
            stream = events(sock, conn)
            first = next(stream, None)
        except (ProtocolError, OSError) as error:
            raise ClientError(f"handshake failed: {error}", 2) from None
        if not isinstance(first, HandshakeDone):
            raise ClientError("handshake failed: the server closed the connection "
                              "(does it use the same PSK?)", 2)
        try:
            if messages is None:
                return pipe(sock, conn)
            if isinstance(messages, tuple):  # (files to send, names to get): section 10
                sock.sendall(conn.data_to_send())
                for path in messages[0]:
                    send_file(sock, conn, stream, path)
                for name in messages[1]:
                    get_file(sock, conn, stream, name)
                conn.close()
                sock.sendall(conn.data_to_send())
                return None
            sock.sendall(conn.data_to_send())  # the key-confirmation PING (section 4.1), at once
            for content in messages:
                conn.send(DATA, content)
                sock.sendall(conn.data_to_send())
                for event in stream:  # wait for the reply, skipping PINGs and PONGs
                    if isinstance(event, Closed):
                        raise ClientError("the server closed the connection"
                                          + (f": {event.reason}" if event.reason else ""))
                    if isinstance(event, Message) and event.type == DATA:
                        print(f"[RECV] {describe(event.content)}", flush=True)
                        break
            conn.close()
            sock.sendall(conn.data_to_send())
        except (ProtocolError, OSError) as error:
            why = closed_reason(sock, conn) if isinstance(error, OSError) else None
            if why is not None:
                raise ClientError("the server closed the connection" + (f": {why}" if why else "")) from None
            raise ClientError(str(error)) from None


def pipe(sock: socket.socket, conn: Connection) -> None:
    """Section 9: standard input as DATA, then EOF; every DATA to standard output; CLOSE once the
    server's EOF has come too. Input is read only while little output waits (bounded memory)."""
    sel = selectors.PollSelector()  # poll(): standard input may be a regular file (epoll refuses those)
    sel.register(sock, selectors.EVENT_READ)
    sock.setblocking(False)
    out, in_open, peer_eof, reading_input = bytearray(conn.data_to_send()), True, False, False
    while in_open or not peer_eof or out:
        want_input = in_open and len(out) < (1 << 20)
        if want_input != reading_input:
            sel.register(0, selectors.EVENT_READ) if want_input else sel.unregister(0)
            reading_input = want_input
        sel.modify(sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if out else 0))
        for key, mask in sel.select():
            if key.fd == 0:
                data = os.read(0, 65536)
                conn.send(DATA, data) if data else conn.send(EOF)
                in_open = bool(data)
            elif mask & selectors.EVENT_READ:
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    continue
                for event in (conn.receive(data) if data else conn.eof()):
                    if isinstance(event, Closed):
                        raise ClientError("the server closed the connection"
                                          + (f": {event.reason}" if event.reason else ""))
                    if isinstance(event, Message) and event.type == DATA:
                        sys.stdout.buffer.write(event.content)
                        sys.stdout.buffer.flush()
                    elif isinstance(event, Message) and event.type == EOF:
                        peer_eof = True
            out += conn.data_to_send()
            if out:
                try:
                    del out[:sock.send(out)]
                except BlockingIOError:
                    pass
    conn.close()
    sock.setblocking(True)
    sock.sendall(conn.data_to_send())


def file_reply(stream: Iterator[Event]) -> tuple[int, bytes]:
    """The next file message (section 10); FILE_ERROR and CLOSE end the transfer."""
    for event in stream:
        if isinstance(event, Closed):
            raise ClientError("the server closed the connection" + (f": {event.reason}" if event.reason else ""))
        if isinstance(event, Message) and event.type == FILE_ERROR:
            code = FILE_CODES.get(event.content[0], "UNKNOWN") if event.content else "UNKNOWN"
            raise ClientError(f"the server refused it: {code}: {event.content[1:].decode('utf-8', 'replace')}")
        if isinstance(event, Message) and event.type in FILE_TYPES:
            return event.type, event.content
    raise ClientError("the server closed the connection")


def temp_name(name: str) -> str:
    return ".seclink-" + hashlib.sha256(name.encode()).hexdigest()[:32] + ".part"


def prefix_hash(f, n: int) -> "hashlib._Hash":
    h = hashlib.sha256()
    f.seek(0)
    while n:
        chunk = f.read(min(n, FILE_CHUNK))
        if not chunk:
            break
        h.update(chunk)
        n -= len(chunk)
    return h


def send_file(sock: socket.socket, conn: Connection, stream: Iterator[Event], path: str) -> None:
    """Section 10, upload: FILE_PUT, FILE_READY (verify the prefix, else restart), FILE_DATA..., FILE_END."""
    name = os.path.basename(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        for restart in (0, 1):
            conn.send(FILE_PUT, size.to_bytes(8, "big") + bytes([restart]) + name.encode())
            sock.sendall(conn.data_to_send())
            kind, body = file_reply(stream)
            if kind != FILE_READY or len(body) != 40:
                raise ClientError("expected FILE_READY")
            offset = int.from_bytes(body[:8], "big")
            h = prefix_hash(f, offset) if offset <= size else None
            if h is not None and hmac.compare_digest(h.digest(), body[8:]):
                break
            if restart:
                raise ClientError("the server's partial file does not verify")
        f.seek(offset)
        while chunk := f.read(FILE_CHUNK):
            h.update(chunk)
            conn.send(FILE_DATA, chunk)
            sock.sendall(conn.data_to_send())
    conn.send(FILE_END, h.digest())
    sock.sendall(conn.data_to_send())
    kind, body = file_reply(stream)
    if kind != FILE_DONE or body != size.to_bytes(8, "big") + h.digest():
        raise ClientError("expected FILE_DONE with our size and digest")
    print(f"[FILE] sent {name}: {size} bytes, resumed after {offset}, sha256 {h.hexdigest()}", flush=True)


def get_file(sock: socket.socket, conn: Connection, stream: Iterator[Event], name: str) -> None:
    """Section 10, download into ./name through its temporary file (resumed if there is one)."""
    if os.path.lexists(name):
        raise ClientError(f"{name} exists here")
    temp = temp_name(name)
    with open(temp, "a+b") as f:
        have = os.fstat(f.fileno()).st_size
        h = prefix_hash(f, have)
        conn.send(FILE_GET, have.to_bytes(8, "big") + h.digest() + name.encode())
        sock.sendall(conn.data_to_send())
        kind, body = file_reply(stream)
        if kind != FILE_INFO or len(body) != 16:
            raise ClientError("expected FILE_INFO")
        size, start = int.from_bytes(body[:8], "big"), int.from_bytes(body[8:], "big")
        if start == 0:
            f.truncate(0)
            h = hashlib.sha256()
        pos = start
        while pos < size:  # one FILE_READ at a time: the reference is simple, not fast
            conn.send(FILE_READ, min(FILE_CHUNK, size - pos).to_bytes(4, "big"))
            sock.sendall(conn.data_to_send())
            kind, chunk = file_reply(stream)
            if kind != FILE_DATA or not chunk:
                raise ClientError("expected FILE_DATA")
            f.write(chunk)
            h.update(chunk)
            pos += len(chunk)
        conn.send(FILE_END)
        sock.sendall(conn.data_to_send())
        kind, body = file_reply(stream)
        if kind != FILE_DONE or body != size.to_bytes(8, "big") + h.digest():
            os.unlink(temp)
            raise ClientError("the file's SHA-256 is not the server's: discarded")
        f.flush()
        os.fsync(f.fileno())
    os.link(temp, name)  # never replaces a file
    os.unlink(temp)
    print(f"[FILE] received {name}: {size} bytes, resumed after {start}, sha256 {h.hexdigest()}", flush=True)


def chat(host: str, port: int, psk: bytes) -> None:
    """Live chat: standard input and the connection are watched at once."""
    sock = socket.create_connection((host, port))
    conn = Connection("client", psk)
    conn.start()
    sock.sendall(conn.data_to_send())
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ)  # standard input too, once the handshake is done
    pending, quitting = b"", False
    with sock:
        while True:
            for key, _ in sel.select():
                if key.fileobj is sock:
                    data = sock.recv(65536)
                    for event in (conn.receive(data) if data else conn.eof()):
                        if isinstance(event, HandshakeDone):
                            sel.register(sys.stdin.buffer, selectors.EVENT_READ)
                        elif isinstance(event, Message) and event.type == DATA:
                            sys.stdout.buffer.write(event.content + b"\n")
                            sys.stdout.flush()
                        elif isinstance(event, Closed):
                            if quitting and event.reason == "bye":
                                return
                            raise ClientError("the server closed the connection"
                                              + (f": {event.reason}" if event.reason else ""))
                    sock.sendall(conn.data_to_send())
                    if not data:
                        raise ClientError("the server closed the connection")
                else:
                    data = os.read(sys.stdin.fileno(), 65536)
                    if not data:
                        conn.close()
                        sock.sendall(conn.data_to_send())
                        return
                    pending += data
                    while b"\n" in pending:
                        line, pending = pending.split(b"\n", 1)
                        conn.send(DATA, line.rstrip(b"\r"))
                        quitting = quitting or line.rstrip(b"\r") == b"/quit"
                    sock.sendall(conn.data_to_send())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="seclink/1 reference client (plain TCP)")
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("messages", nargs="*", metavar="MESSAGE")
    parser.add_argument("--psk-file", help="key file (default: see docs/PROTOCOL.md section 6)")
    parser.add_argument("--message-file", action="append", default=[], help="send this file's bytes as one message")
    parser.add_argument("--max-message", type=int, default=DEFAULT_MAX_MESSAGE, help="largest message (bytes)")
    parser.add_argument("--send", action="append", default=[], help="upload this file (section 10)")
    parser.add_argument("--get", action="append", default=[], help="download this name into . (section 10)")
    parser.add_argument("--pipe", action="store_true", help="standard input as a stream, replies to standard output "
                                                             "(section 9)")
    parser.add_argument("--chat", action="store_true", help="live chat (docs/PROTOCOL.md section 11)")
    parser.add_argument("--rekey-bytes", type=int, default=DEFAULT_REKEY_BYTES, help="section 13's threshold T")
    parser.add_argument("--server-public-key", help="mode 2 (section 14): the server's static public key, hex")
    parser.add_argument("--identity-file", help="with --server-public-key, mode 3 (section 15): this key file")
    parser.add_argument("--user", help="with --server-public-key, mode 4 (section 16): this user, the password "
                                       "from $SECLINK_PASSWORD")
    args = parser.parse_args(argv)
    try:
        if args.chat:
            chat(args.host, args.port, load_key(default_key_path(args.psk_file)))
            return 0
        messages = [os.fsencode(m) for m in args.messages]
        for path in args.message_file:
            with open(path, "rb") as f:
                messages.append(f.read())
        for index, content in enumerate(messages, 1):
            if len(content) > args.max_message:
                print(f"error: message {index} is {len(content)} bytes, over the limit of {args.max_message}; "
                      "nothing was sent", file=sys.stderr)
                return 3
        psk = load_key(default_key_path(args.psk_file))
        what = (None if args.pipe else (args.send, args.get) if args.send or args.get
                else messages or stdin_lines())
        expected = bytes.fromhex(args.server_public_key) if args.server_public_key else None
        identity = load_key(args.identity_file) if args.identity_file else None
        login = (args.user, os.environ.get("SECLINK_PASSWORD", "").encode()) if args.user else None
        run(args.host, args.port, psk, what, args.max_message, args.rekey_bytes, expected, identity, login)
    except KeyFileError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except ClientError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.status
    except OSError as error:  # e.g. an unreadable key file
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
