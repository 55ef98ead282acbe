"""seclink/1 reference server over plain TCP, one thread per client (docs/PROTOCOL.md).

    python3 -m interop_tests.reference.server --port 0 [--host 127.0.0.1] [--psk-file PATH] [--echo] [--files DIR]
        [--max-message BYTES] [--chat]
    python3 -m interop_tests.reference.server --keygen [--psk-file PATH]

Replies to each DATA with DATA "ACK: received N bytes" (or the same bytes with --echo); PINGs are
answered by the Connection itself, an EOF with EOF (section 9). With --chat it relays lines between
clients instead (chat rooms, docs/PROTOCOL.md section 11; chat.py). SIGTERM or SIGINT stops it with
exit status 0.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import threading

from .chat import Chat, Member
from .files import FileServer
from .seclink_ref import (DATA, DEFAULT_MAX_MESSAGE, EOF, ERRORS, FILE_TYPES, PING, Closed, Connection, HandshakeDone, KeyFileError, Message,
                          ProtocolError, default_key_path, describe, generate_key, load_key)

_log_lock = threading.Lock()
_stopping = threading.Event()


def log(line: str) -> None:
    with _log_lock:
        print(line, flush=True)


def size(content: bytes) -> str:
    """"1 byte", "5 bytes"."""
    return f"{len(content)} byte" + ("" if len(content) == 1 else "s")


def serve_client(sock: socket.socket, peer: str, psk: bytes, echo: bool, max_message: int,
                 files_dir: str | None = None, chat: Chat | None = None) -> None:
    """Run one connection to its end; a protocol error closes only this connection."""
    log(f"[INFO] Client connected: {peer}")
    conn = Connection("server", psk, max_message=max_message)
    files = FileServer(files_dir)
    received = sent = 0
    reason = "peer vanished"
    lock = threading.RLock()  # the connection is used by its thread and, in chat, by speakers' threads
    member = None

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
                with lock:
                    events = conn.receive(data) if data else conn.eof()
                for event in events:
                    if isinstance(event, HandshakeDone):
                        log(f"[INFO] {peer}: handshake done")
                    elif chat is not None and isinstance(event, Message) and member is None:
                        member = Member(deliver, chat.rate)  # key confirmed: the first transport frame
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
    parser.add_argument("--psk-file", help="key file (default: see docs/PROTOCOL.md section 6)")
    parser.add_argument("--echo", action="store_true", help="reply with the received bytes")
    parser.add_argument("--keygen", action="store_true", help="write a new key file and exit")
    parser.add_argument("--max-message", type=int, default=DEFAULT_MAX_MESSAGE, help="largest message (bytes)")
    parser.add_argument("--files", metavar="DIR", help="take and serve files in DIR (section 10)")
    parser.add_argument("--chat", action="store_true", help="chat rooms (docs/PROTOCOL.md section 11)")
    args = parser.parse_args(argv)
    chat = Chat() if args.chat else None
    try:
        path = default_key_path(args.psk_file)
        if args.keygen:
            generate_key(path)
            print(f"[INFO] Wrote a new key to {path}: give this file to every peer")
            return 0
        psk = load_key(path)
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
                                      args=(sock, f"{addr[0]}:{addr[1]}", psk, args.echo, args.max_message,
                                            args.files, chat))
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
