"""seclink/1 reference client over plain TCP (docs/PROTOCOL.md).

    python3 -m interop_tests.reference.client HOST PORT [MESSAGE ...] [--psk-file PATH]
        [--message-file PATH ...] [--max-message BYTES]

Sends each MESSAGE, then the bytes of each --message-file (or, with neither, each line of
standard input until end of input or a line `exit`, `quit` or `!DISCONNECT`) as DATA, prints
each reply as `[RECV] <text>`, then sends CLOSE. A message over --max-message (default 16 MiB)
is refused before connecting. Exit status: 0 success, 2 handshake failure, 3 message too large,
1 any other error (one `error: ...` line on stderr).
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import Iterable, Iterator

from .seclink_ref import (DATA, DEFAULT_MAX_MESSAGE, DEFAULT_REKEY_BYTES, Closed, Connection, Event, HandshakeDone, KeyFileError,
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


def stdin_lines() -> Iterator[bytes]:
    for line in sys.stdin.buffer:
        line = line.rstrip(b"\r\n")
        if line.decode("utf-8", "replace") in QUIT_LINES:
            return
        yield line


def run(host: str, port: int, psk: bytes, messages: Iterable[bytes],
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
            raise ClientError(str(error)) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="seclink/1 reference client (plain TCP)")
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("messages", nargs="*", metavar="MESSAGE")
    parser.add_argument("--psk-file", help="key file (default: see docs/PROTOCOL.md section 6)")
    parser.add_argument("--message-file", action="append", default=[], help="send this file's bytes as one message")
    parser.add_argument("--max-message", type=int, default=DEFAULT_MAX_MESSAGE, help="largest message (bytes)")
    parser.add_argument("--rekey-bytes", type=int, default=DEFAULT_REKEY_BYTES, help="section 10's threshold T")
    parser.add_argument("--server-public-key", help="mode 2 (section 11): the server's static public key, hex")
    parser.add_argument("--identity-file", help="with --server-public-key, mode 3 (section 12): this key file")
    parser.add_argument("--user", help="with --server-public-key, mode 4 (section 13): this user, the password "
                                       "from $SECLINK_PASSWORD")
    args = parser.parse_args(argv)
    try:
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
        expected = bytes.fromhex(args.server_public_key) if args.server_public_key else None
        identity = load_key(args.identity_file) if args.identity_file else None
        login = (args.user, os.environ.get("SECLINK_PASSWORD", "").encode()) if args.user else None
        run(args.host, args.port, psk, messages or stdin_lines(), args.max_message, args.rekey_bytes, expected, identity,
            login)
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
