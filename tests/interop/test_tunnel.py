"""Tunnels (--forward / --listen, docs/PROTOCOL.md 9): any TCP protocol through seclink sessions.

`./server --forward HOST:PORT` carries each session to its own TCP connection to the target;
`./client HOST PORT --listen ADDR:PORT` carries each local TCP connection through its own session.
Tested with a real program (redis-server and redis-cli), a half-close in both directions, binary
data both ways, a target that is down (only that tunnel closes), and many tunnels at once.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from tools.procs import WAIT
from tests.matrix import CLIENTS, SERVERS, MatrixServer

TUNNEL_LANGS = ("cpp", "py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_connectable(port: int) -> None:
    """Readiness: the port accepts a connection (polled, as the program prints nothing we can read)."""
    import time
    deadline = time.monotonic() + WAIT
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing listens on {port}") from None
            time.sleep(0.02)


@pytest.fixture
def tunnel(tmp_path: Path, env, keys):  # noqa: F811
    procs: list[MatrixServer] = []

    def start(target_port: int, server_kind: str = "cpp", client_kind: str = "cpp") -> int:
        srv = MatrixServer(server_kind, [*SERVERS[server_kind], "--host", "127.0.0.1", "--port", "0", "--psk-file",
                                         str(keys[0]), "--log-file", "-", "--forward", f"127.0.0.1:{target_port}"],
                           cwd=tmp_path, env=env)
        procs.append(srv)
        cli = MatrixServer(client_kind, [*CLIENTS[client_kind], "127.0.0.1", str(srv.port), "--psk-file", str(keys[0]),
                                         "--log-file", "-", "--listen", "127.0.0.1:0"], cwd=tmp_path, env=env)
        procs.append(cli)
        start.server, start.client = srv, cli
        return cli.port

    yield start
    for p in procs:
        p.kill()


class Target:
    """A TCP server for the tests: each connection's whole input (until the peer's FIN) is
    answered, after it ends, with its length and SHA-256, then the connection is closed."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    @staticmethod
    def _one(conn: socket.socket) -> None:
        with conn:
            h, n = hashlib.sha256(), 0
            while data := conn.recv(1 << 16):
                h.update(data)
                n += len(data)
            conn.sendall(f"{n} {h.hexdigest()}\n".encode() + bytes(range(256)) * 64)

    def close(self) -> None:
        self.sock.close()


def half_close_round(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT * 2) as c:
        c.sendall(payload)
        c.shutdown(socket.SHUT_WR)  # our FIN must reach the target through the tunnel
        out = b""
        while data := c.recv(1 << 16):  # and the target's FIN must come back: recv returns b""
            out += data
    return out


@pytest.mark.parametrize("client_kind", TUNNEL_LANGS)
@pytest.mark.parametrize("server_kind", TUNNEL_LANGS)
def test_half_close_and_binary_data_through_the_tunnel(tunnel, server_kind: str, client_kind: str) -> None:
    target = Target()
    try:
        port = tunnel(target.port, server_kind, client_kind)
        payload = os.urandom(3 * 1024 * 1024 + 5)
        out = half_close_round(port, payload)
        assert out == f"{len(payload)} {hashlib.sha256(payload).hexdigest()}\n".encode() + bytes(range(256)) * 64
        assert half_close_round(port, b"") == b"0 " + hashlib.sha256(b"").hexdigest().encode() + b"\n" + \
            bytes(range(256)) * 64
    finally:
        target.close()


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server (tools/install-deps.sh) is missing")
@pytest.mark.parametrize("kinds", [("cpp", "cpp"), ("py", "py")])
def test_redis_through_the_tunnel(tunnel, tmp_path: Path, kinds: tuple[str, str]) -> None:
    rport = free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        wait_connectable(rport)
        port = tunnel(rport, *kinds)
        cli = ["redis-cli", "-h", "127.0.0.1", "-p", str(port)]
        run = lambda *a, **kw: subprocess.run([*cli, *a], capture_output=True, timeout=WAIT, **kw)  # noqa: E731
        assert run("PING").stdout == b"PONG\n"
        assert run("SET", "greeting", "héllo").stdout == b"OK\n"
        assert run("GET", "greeting").stdout == "héllo\n".encode()
        big = os.urandom(1024 * 1024).hex().encode()  # 2 MiB value, both ways
        assert run("-x", "SET", "big", input=big).stdout == b"OK\n"
        assert run("GET", "big").stdout == big + b"\n"
        # Pipelined commands on one connection: many round trips in one tunnel.
        cmds = b"".join(b"INCR counter\r\n" for _ in range(1000))
        assert run("--pipe", input=cmds).returncode == 0
        assert run("GET", "counter").stdout == b"1000\n"
    finally:
        redis.kill()
        redis.wait()


@pytest.mark.parametrize("kinds", [("cpp", "cpp"), ("py", "py")])
def test_a_target_that_is_down_closes_only_that_tunnel(tunnel, kinds: tuple[str, str]) -> None:
    dead = free_port()  # nothing listens there yet
    port = tunnel(dead, *kinds)
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as c:
        assert c.recv(1) == b""  # closed, not hanging
    tunnel.server.wait_for(r"\[WARN\] .* disconnected: cannot reach the tunnel's target 127\.0\.0\.1:\d+: "
                           r"Connection refused")
    tunnel.client.wait_for(r"\[WARN\] tunnel from .* broken off: the server closed the session: cannot reach")
    target = socket.create_server(("127.0.0.1", dead))  # now the target is up: the next tunnel works
    try:
        def answer() -> None:
            conn, _ = target.accept()
            with conn:
                conn.sendall(b"hello from the target")
        threading.Thread(target=answer, daemon=True).start()
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as c:
            got = b""
            while data := c.recv(100):
                got += data
        assert got == b"hello from the target"
    finally:
        target.close()


@pytest.mark.parametrize("kinds", [("cpp", "cpp"), ("py", "py")])
def test_many_tunnels_at_once(tunnel, kinds: tuple[str, str]) -> None:
    target = Target()
    try:
        port = tunnel(target.port, *kinds)
        results: list[bytes] = []
        payloads = [os.urandom(100_000 + i) for i in range(24)]

        def one(p: bytes) -> None:
            results.append(half_close_round(port, p))
        threads = [threading.Thread(target=one, args=(p,)) for p in payloads]
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT * 3)
        want = {f"{len(p)} {hashlib.sha256(p).hexdigest()}\n".encode() + bytes(range(256)) * 64 for p in payloads}
        assert set(results) == want
    finally:
        target.close()


def _echo_target() -> socket.socket:
    """A target that echoes each connection's bytes as they come (a tunnel stays open meanwhile)."""
    sock = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return

            def echo(c: socket.socket) -> None:
                with c:
                    while data := c.recv(1 << 16):
                        c.sendall(data)
            threading.Thread(target=echo, args=(conn,), daemon=True).start()
    threading.Thread(target=serve, daemon=True).start()
    return sock


def _open_tunnel(port: int) -> socket.socket:
    c = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    c.sendall(b"ping")
    assert c.recv(4) == b"ping"  # through the session and the target: the tunnel is open
    return c


@pytest.mark.parametrize("kinds", [("cpp", "cpp"), ("py", "py")])
def test_sigterm_closes_each_tunnel_with_a_close_then_exits(tunnel, kinds: tuple[str, str]) -> None:
    """SIGTERM stops either tunnel program as it stops the server: no new connections, a CLOSE for
    each open session (the other end logs its reason, not a lost connection), exit status 0."""
    target = _echo_target()
    try:
        # The server stops: the client's tunnel ends with the server's CLOSE, its local connection with a FIN.
        port = tunnel(target.getsockname()[1], *kinds)
        with _open_tunnel(port) as c:
            tunnel.server.proc.terminate()
            assert tunnel.server.wait() == 0
            assert c.recv(1) == b""
        tunnel.server.wait_for(r"\[INFO\] Terminated: closing 1 session\b")
        tunnel.server.wait_for(r"\[INFO\] Server stopped")
        tunnel.client.wait_for(r"tunnel from .* broken off: the server closed the session: server shutting down")
        # The client stops: the server's session ends with the client's CLOSE.
        port = tunnel(target.getsockname()[1], *kinds)
        with _open_tunnel(port) as c:
            tunnel.client.proc.terminate()
            assert tunnel.client.wait() == 0
            assert c.recv(1) == b""
        tunnel.client.wait_for(r"\[INFO\] Terminated: closing 1 tunnel\b")
        tunnel.client.wait_for(r"\[INFO\] tunnel from .* closed: client shutting down")
        tunnel.client.wait_for(r"\[INFO\] Stopped")
        tunnel.server.wait_for(r"client closed the session \(client shutting down\)")
        with pytest.raises(OSError):  # nothing listens any more
            socket.create_connection(("127.0.0.1", port), timeout=WAIT).close()
    finally:
        target.close()
