"""seclink/1 reference server over plain TCP, one thread per client (docs/PROTOCOL.md).

    python3 -m tests.reference.server --port 0 [--host 127.0.0.1] [--psk-file PATH] [--echo] [--files DIR]
        [--max-message BYTES] [--chat]
    python3 -m tests.reference.server --keygen [--psk-file PATH]

Replies to each DATA with DATA "ACK: received N bytes" (or the same bytes with --echo); PINGs are
answered by the Connection itself, an EOF with EOF (section 9). With --chat it relays lines between
clients instead (chat rooms, docs/PROTOCOL.md section 11; chat.py). SIGTERM or SIGINT stops it with
exit status 0.
"""

from __future__ import annotations

import argparse
import base64
import signal
import socket
import sys
import threading

from .chat import Chat, Member
from .files import FileServer
from .seclink_ref import (Auth, password_matches, DATA, DEFAULT_MAX_MESSAGE, DEFAULT_REKEY_BYTES, EOF, ERRORS, FILE_TYPES, modes_frame, PING, Closed, Connection, HandshakeDone, KeyFileError, Message,
                          ProtocolError, default_key_path, describe, generate_key, load_key)

_log_lock = threading.Lock()
_stopping = threading.Event()


def log(line: str) -> None:
    with _log_lock:
        print(line, flush=True)


def size(content: bytes) -> str:
    """"1 byte", "5 bytes"."""
    return f"{len(content)} byte" + ("" if len(content) == 1 else "s")


def linger(sock: socket.socket) -> None:
    """Section 5, closing the stream: FIN, then read and discard until the client's end of stream,
    at most 256 KiB or 2 s, so that the close is not a reset that destroys the CLOSE just sent."""
    try:
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(2.0)
        left = 256 * 1024
        while left > 0:
            data = sock.recv(65536)
            if not data:
                return
            left -= len(data)
    except OSError:
        pass  # reset, timed out: closed either way


def serve_client(sock: socket.socket, peer: str, psks: list[bytes], names: list[str], echo: bool,
                 max_message: int, rekey_bytes: int = DEFAULT_REKEY_BYTES, static: bytes | None = None,
                 users: dict[bytes, str] | None = None, passwords: list[str] | None = None,
                 files_dir: str | None = None, chat: Chat | None = None) -> None:
    """Run one connection to its end; a protocol error closes only this connection."""
    log(f"[INFO] Client connected: {peer}")
    # Section 12: with several keys the server finds the client's by trial decryption of frame 1.
    conn = Connection("server", psks[0], max_message=max_message, psks=psks if len(psks) > 1 else None,
                      rekey_bytes=rekey_bytes, static=static,
                      accepted_modes=[1] + ([2] if static else []) + ([3] if static and users is not None else [])
                      + ([4] if static and passwords is not None else []))
    files = FileServer(files_dir)
    received = sent = 0
    reason = "peer vanished"
    lock = threading.RLock()  # the connection is used by its thread and, in chat, by speakers' threads
    member = None
    account = b""  # the user's name (sections 15, 16), the chat name too (11.1)

    def deliver(line: bytes) -> None:
        with lock:
            try:
                conn.send(DATA, line)
                sock.sendall(conn.data_to_send())
            except (ValueError, ProtocolError, OSError):
                pass  # closed or failed: this member's own thread sees the connection end

    try:
        with sock:
            done = False
            while not done:
                data = sock.recv(65536)
                if not data and _stopping.is_set():
                    reason = "server shutting down"
                    break
                try:
                    with lock:
                        events = conn.receive(data) if data else conn.eof()
                except ProtocolError as error:
                    if error.name == "BAD_VERSION":  # section 14.2: say which modes this server accepts
                        sock.sendall(modes_frame(conn.accepted_modes))
                        linger(sock)
                    raise
                for event in events:
                    if isinstance(event, HandshakeDone):
                        which = f" (key {names[conn.psk_index]})" if len(psks) > 1 else ""
                        if conn.client_static is not None:  # section 15: a key user, if listed
                            user = (users or {}).get(conn.client_static)
                            if user is None:
                                conn.close("unknown user")
                                reason = "unknown user"
                                done = True
                                break
                            which += f" (user {user})"
                            account = user.encode()
                        log(f"[INFO] {peer}: handshake done{which}")
                        if chat is not None and conn.client_static is not None:  # mode 3: proven now
                            member = Member(deliver, chat.rate, account)
                            chat.enter(member)
                    elif isinstance(event, Auth):  # section 16: a password user
                        if any(password_matches(line, event.name, event.password) for line in passwords or []):
                            log(f"[INFO] {peer}: handshake done (user {event.name})")
                            account = event.name.encode() if isinstance(event.name, str) else event.name
                            if chat is not None and member is None:  # mode 4: proven now
                                member = Member(deliver, chat.rate, account)
                                chat.enter(member)
                        else:
                            conn.close("wrong user or password")
                            reason = "wrong user or password"
                            done = True
                            break
                    elif chat is not None and isinstance(event, Message) and member is None:
                        member = Member(deliver, chat.rate, account)  # key confirmed: the first transport frame
                        chat.enter(member)
                    if chat is not None and isinstance(event, Message) and event.type == DATA:
                        received += 1
                        log(f"[RECV] {peer} #{received} {describe(event.content)} ({size(event.content)})")
                        if not chat.line(member, event.content):
                            with lock:
                                conn.close("bye")
                            done = True
                            reason = "/quit"
                    elif isinstance(event, Message) and event.type == DATA:
                        received += 1
                        log(f"[RECV] {peer} #{received} {describe(event.content)} ({size(event.content)})")
                        reply = event.content if echo else f"ACK: received {len(event.content)} bytes".encode()
                        conn.send(DATA, reply)
                        sent += 1
                        log(f"[SEND] {peer} #{sent} {describe(reply)} (a reply of {size(reply)})")
                    elif isinstance(event, Message) and event.type in FILE_TYPES:  # section 10
                        for kind, content in files.handle(event.type, event.content):
                            conn.send(kind, content)
                    elif isinstance(event, Message) and event.type == EOF:
                        log(f"[INFO] {peer}: EOF, answered with EOF (every reply is sent)")  # section 9
                        conn.send(EOF)
                    elif isinstance(event, Message) and event.type == PING:
                        log(f"[INFO] {peer}: PING ({size(event.content)}), answered with PONG")
                    elif isinstance(event, Closed):
                        done = True
                        if event.reason is not None:
                            reason = f"CLOSE {event.reason}" if event.reason else "CLOSE"
                with lock:
                    sock.sendall(conn.data_to_send())
            if not _stopping.is_set():
                linger(sock)
    except ProtocolError as error:
        files.close()
        log(f"[WARN] {peer}: {error.name}: {ERRORS[error.name]}")
        reason = f"protocol error {error.name}"
    except OSError as error:
        reason = f"connection error: {error.strerror or error}"
    finally:
        if member is not None:
            chat.leave(member)
    log(f"[INFO] Client disconnected: {peer} ({reason})")


class _Stop(Exception):
    pass


def _raise_stop(signum: int, frame: object) -> None:
    raise _Stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="seclink/1 reference server (plain TCP)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    parser.add_argument("--psk-file", action="append",
                        help="key file (default: see docs/PROTOCOL.md section 6); repeat it to accept several "
                             "keys (section 12)")
    parser.add_argument("--echo", action="store_true", help="reply with the received bytes")
    parser.add_argument("--keygen", action="store_true", help="write a new key file and exit")
    parser.add_argument("--max-message", type=int, default=DEFAULT_MAX_MESSAGE, help="largest message (bytes)")
    parser.add_argument("--files", metavar="DIR", help="take and serve files in DIR (section 10)")
    parser.add_argument("--chat", action="store_true", help="chat rooms (docs/PROTOCOL.md section 11)")
    parser.add_argument("--rekey-bytes", type=int, default=DEFAULT_REKEY_BYTES, help="section 13's threshold T")
    parser.add_argument("--server-key-file", help="static key file: accept mode 2 too (section 14)")
    parser.add_argument("--authorized-keys", help="NAME BASE64(KEY) lines: accept mode 3 too (section 15)")
    parser.add_argument("--users", help="password users file: accept mode 4 too (section 16)")
    args = parser.parse_args(argv)
    chat = Chat(accounts=bool(args.authorized_keys or args.users)) if args.chat else None
    try:
        names = [str(default_key_path(p)) for p in args.psk_file or [None]]
        if args.keygen:
            generate_key(names[-1])
            print(f"[INFO] Wrote a new key to {names[-1]}: give this file to every peer")
            return 0
        psks = [load_key(n) for n in names]
        static = load_key(args.server_key_file) if args.server_key_file else None
        passwords = None
        if args.users:
            with open(args.users) as f:
                passwords = [line for line in f if line.strip() and not line.startswith("#")]
        users = None
        if args.authorized_keys:
            with open(args.authorized_keys) as f:
                users = {base64.b64decode(line.split()[1]): line.split()[0] for line in f
                         if line.strip() and not line.startswith("#")}
    except (KeyFileError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1

    try:
        listener = socket.create_server((args.host, args.port))
    except OSError as error:
        print(f"error: cannot listen on {args.host}:{args.port}: {error.strerror or error}", file=sys.stderr)
        return 1
    clients: dict[socket.socket, threading.Thread] = {}
    signal.signal(signal.SIGTERM, _raise_stop)  # from here on, a signal ends the loop below
    signal.signal(signal.SIGINT, _raise_stop)
    try:
        host, port = listener.getsockname()[:2]
        log(f"[INFO] Listening on {host}:{port} (reference)")
        while True:
            sock, addr = listener.accept()
            thread = threading.Thread(target=serve_client, daemon=True,
                                      args=(sock, f"{addr[0]}:{addr[1]}", psks, names, args.echo, args.max_message,
                                            args.rekey_bytes, static, users, passwords, args.files, chat))
            clients = {s: t for s, t in clients.items() if t.is_alive()}
            clients[sock] = thread
            thread.start()
    except _Stop:
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        listener.close()
    # Wake every client thread (its recv returns b"") and let it log its end.
    _stopping.set()
    for sock, thread in clients.items():
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed by its thread
        if thread.is_alive():
            thread.join(timeout=5)
    log("[INFO] Server stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
