"""seclink/1 reference server over plain TCP, one thread per client (docs/PROTOCOL.md).

    python3 -m interop_tests.reference.server --port 0 [--host 127.0.0.1] [--psk-file PATH] [--echo]
        [--max-message BYTES]
    python3 -m interop_tests.reference.server --keygen [--psk-file PATH]

Replies to each DATA with DATA "ACK: received N bytes" (or the same bytes with --echo); PINGs are
answered by the Connection itself. SIGTERM or SIGINT stops it with exit status 0.
"""

from __future__ import annotations

import argparse
import base64
import signal
import socket
import sys
import threading

from .seclink_ref import (Auth, password_matches, DATA, DEFAULT_MAX_MESSAGE, DEFAULT_REKEY_BYTES, ERRORS, modes_frame, PING, Closed, Connection, HandshakeDone, KeyFileError, Message,
                          ProtocolError, default_key_path, describe, generate_key, load_key)

_log_lock = threading.Lock()
_stopping = threading.Event()


def log(line: str) -> None:
    with _log_lock:
        print(line, flush=True)


def serve_client(sock: socket.socket, peer: str, psks: list[bytes], names: list[str], echo: bool,
                 max_message: int, rekey_bytes: int = DEFAULT_REKEY_BYTES, static: bytes | None = None,
                 users: dict[bytes, str] | None = None, passwords: list[str] | None = None) -> None:
    """Run one connection to its end; a protocol error closes only this connection."""
    log(f"[INFO] Client connected: {peer}")
    # Section 9: with several keys the server finds the client's by trial decryption of frame 1.
    conn = Connection("server", psks[0], max_message=max_message, psks=psks if len(psks) > 1 else None,
                      rekey_bytes=rekey_bytes, static=static,
                      accepted_modes=[1] + ([2] if static else []) + ([3] if static and users is not None else [])
                      + ([4] if static and passwords is not None else []))
    received = sent = 0
    reason = "peer vanished"
    try:
        with sock:
            done = False
            while not done:
                data = sock.recv(65536)
                if not data and _stopping.is_set():
                    reason = "server shutting down"
                    break
                try:
                    events = conn.receive(data) if data else conn.eof()
                except ProtocolError as error:
                    if error.name == "BAD_VERSION":  # section 11.2: say which modes this server accepts
                        sock.sendall(modes_frame(conn.accepted_modes))
                    raise
                for event in events:
                    if isinstance(event, HandshakeDone):
                        which = f" (key {names[conn.psk_index]})" if len(psks) > 1 else ""
                        if conn.client_static is not None:  # section 12: a key user, if listed
                            user = (users or {}).get(conn.client_static)
                            if user is None:
                                conn.close("unknown user")
                                reason = "unknown user"
                                done = True
                                break
                            which += f" (user {user})"
                        log(f"[INFO] {peer}: handshake done{which}")
                    elif isinstance(event, Auth):  # section 13: a password user
                        if any(password_matches(line, event.name, event.password) for line in passwords or []):
                            log(f"[INFO] {peer}: handshake done (user {event.name})")
                        else:
                            conn.close("wrong user or password")
                            reason = "wrong user or password"
                            done = True
                            break
                    elif isinstance(event, Message) and event.type == DATA:
                        received += 1
                        log(f"[RECV] {peer} #{received} {describe(event.content)} ({len(event.content)} bytes)")
                        reply = event.content if echo else f"ACK: received {len(event.content)} bytes".encode()
                        conn.send(DATA, reply)
                        sent += 1
                        log(f"[SEND] {peer} #{sent} {describe(reply)} ({len(reply)} bytes)")
                    elif isinstance(event, Message) and event.type == PING:
                        log(f"[INFO] {peer}: PING ({len(event.content)} bytes), answered with PONG")
                    elif isinstance(event, Closed):
                        done = True
                        if event.reason is not None:
                            reason = f"CLOSE {event.reason}" if event.reason else "CLOSE"
                sock.sendall(conn.data_to_send())
    except ProtocolError as error:
        log(f"[WARN] {peer}: {error.name}: {ERRORS[error.name]}")
        reason = f"protocol error {error.name}"
    except OSError as error:
        reason = f"connection error: {error.strerror or error}"
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
                             "keys (section 9)")
    parser.add_argument("--echo", action="store_true", help="reply with the received bytes")
    parser.add_argument("--keygen", action="store_true", help="write a new key file and exit")
    parser.add_argument("--max-message", type=int, default=DEFAULT_MAX_MESSAGE, help="largest message (bytes)")
    parser.add_argument("--rekey-bytes", type=int, default=DEFAULT_REKEY_BYTES, help="section 10's threshold T")
    parser.add_argument("--server-key-file", help="static key file: accept mode 2 too (section 11)")
    parser.add_argument("--authorized-keys", help="NAME BASE64(KEY) lines: accept mode 3 too (section 12)")
    parser.add_argument("--users", help="password users file: accept mode 4 too (section 13)")
    args = parser.parse_args(argv)
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
                                            args.rekey_bytes, static, users, passwords))
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
