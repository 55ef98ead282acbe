"""The reference client and server as real processes over TCP on 127.0.0.1."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tools import procs
from tests.reference.seclink_ref import (DATA, PING, PONG, Closed, Connection, Event, HandshakeDone,
                                                 Message, generate_key, load_key)

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 20  # seconds; only a guard against hanging, never used to wait for something to happen


def peer_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SECLINK_PSK_FILE", "XDG_CONFIG_HOME")}
    env.update(HOME=str(tmp_path / "home"), PYTHONIOENCODING="utf-8")
    return env


class Server(procs.Server):
    """The reference server on a free port, its output collected (tools/procs.py)."""

    def __init__(self, tmp_path: Path, psk_file: Path, *extra: str) -> None:
        super().__init__([sys.executable, "-m", "tests.reference.server", "--port", "0", "--psk-file", str(psk_file),
                          *extra], cwd=REPO, env=peer_env(tmp_path), timeout=TIMEOUT)
        assert self.startup[-1] == f"[INFO] Listening on 127.0.0.1:{self.port} (reference)", self.startup

    def wait_for(self, pattern: str) -> re.Match[str]:
        return self.out.wait_for(pattern, timeout=TIMEOUT)

    def stop(self, signum: int = signal.SIGTERM) -> int:
        return super().stop(signum, TIMEOUT)


@pytest.fixture
def psk_file(tmp_path: Path) -> Path:
    generate_key(tmp_path / "psk")
    return tmp_path / "psk"


@pytest.fixture
def server(tmp_path: Path, psk_file: Path) -> Iterator[Server]:
    srv = Server(tmp_path, psk_file)
    yield srv
    if srv.proc.poll() is None:
        assert srv.stop() == 0


def run_client(tmp_path: Path, port: int, *messages: str, psk_file: Path,
               stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.reference.client", "127.0.0.1", str(port), *messages,
         "--psk-file", str(psk_file)], cwd=REPO, env=peer_env(tmp_path), input=stdin,
        capture_output=True, text=True, encoding="utf-8", timeout=TIMEOUT)


class InProcessClient:
    """A client driven from the test itself, to hold a connection open while others run."""

    def __init__(self, port: int, psk: bytes) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.conn = Connection("client", psk)
        self.conn.start()
        self.sock.sendall(self.conn.data_to_send())
        assert self.next_events() == [HandshakeDone()]

    def next_events(self) -> list[Event]:
        while True:
            data = self.sock.recv(65536)
            events = self.conn.receive(data) if data else self.conn.eof()
            if events:
                return events

    def request(self, type: int, content: bytes) -> list[Event]:
        self.conn.send(type, content)
        self.sock.sendall(self.conn.data_to_send())
        return self.next_events()


def test_client_sends_several_messages_and_prints_each_ack(tmp_path: Path, server: Server, psk_file: Path) -> None:
    result = run_client(tmp_path, server.port, "hello", "", "héllo ✓", psk_file=psk_file)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["[RECV] ACK: received 5 bytes", "[RECV] ACK: received 0 bytes",
                                          "[RECV] ACK: received 10 bytes"]
    peer = server.wait_for(r"^\[INFO\] Client connected: (127\.0\.0\.1:\d+)$").group(1)
    server.wait_for(rf"^\[RECV\] {peer} #1 hello \(5 bytes\)$")
    server.wait_for(rf"^\[SEND\] {peer} #1 ACK: received 5 bytes \(a reply of 21 bytes\)$")
    server.wait_for(rf"^\[RECV\] {peer} #3 héllo ✓ \(10 bytes\)$")
    server.wait_for(rf"^\[INFO\] Client disconnected: {peer} \(.*CLOSE.*\)$")


def test_echo_server_returns_the_same_text(tmp_path: Path, psk_file: Path) -> None:
    srv = Server(tmp_path, psk_file, "--echo")
    result = run_client(tmp_path, srv.port, "ping me", "second line", psk_file=psk_file)
    assert (result.returncode, result.stdout) == (0, "[RECV] ping me\n[RECV] second line\n")
    assert srv.stop() == 0


def test_client_reads_stdin_until_quit(tmp_path: Path, server: Server, psk_file: Path) -> None:
    result = run_client(tmp_path, server.port, psk_file=psk_file, stdin="one\nthree\nquit\nnever sent\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["[RECV] ACK: received 3 bytes", "[RECV] ACK: received 5 bytes"]


def test_client_reads_stdin_until_end_of_input(tmp_path: Path, server: Server, psk_file: Path) -> None:
    result = run_client(tmp_path, server.port, psk_file=psk_file, stdin="a\nbb")
    assert (result.returncode, result.stdout) == (0, "[RECV] ACK: received 1 bytes\n[RECV] ACK: received 2 bytes\n")


def test_wrong_psk_fails_the_handshake_on_both_sides(tmp_path: Path, server: Server) -> None:
    other = tmp_path / "other-psk"
    generate_key(other)
    result = run_client(tmp_path, server.port, "secret", psk_file=other)
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("error: ")
    server.wait_for(r"^\[WARN\] 127\.0\.0\.1:\d+: HANDSHAKE_AUTH: ")
    assert not any(line.startswith("[RECV]") for line in server.out.lines)


def test_server_serves_clients_concurrently(tmp_path: Path, server: Server, psk_file: Path) -> None:
    held = InProcessClient(server.port, load_key(psk_file))  # handshake done, connection left open
    result = run_client(tmp_path, server.port, "meanwhile", psk_file=psk_file)
    assert (result.returncode, result.stdout) == (0, "[RECV] ACK: received 9 bytes\n")
    assert held.request(PING, b"still there?") == [Message(PONG, b"still there?")]
    assert held.request(DATA, b"\x00\xff") == [Message(DATA, b"ACK: received 2 bytes")]
    server.wait_for(r"#1 <2 bytes binary> \(2 bytes\)$")
    held.conn.close("done")
    held.sock.sendall(held.conn.data_to_send())
    assert held.next_events() == [Closed(None)]  # the server closed its end after our CLOSE
    held.sock.close()


def test_protocol_error_closes_only_that_connection(tmp_path: Path, server: Server, psk_file: Path) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as rogue:
        rogue.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert rogue.recv(100) == b""  # closed without a reply
    server.wait_for(r"^\[WARN\] 127\.0\.0\.1:\d+: FRAME_TOO_LARGE: ")
    result = run_client(tmp_path, server.port, "after", psk_file=psk_file)
    assert (result.returncode, result.stdout) == (0, "[RECV] ACK: received 5 bytes\n")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_server_exits_zero_on_signal_with_a_client_connected(tmp_path: Path, psk_file: Path, signum: int) -> None:
    srv = Server(tmp_path, psk_file)
    held = InProcessClient(srv.port, load_key(psk_file))
    srv.wait_for(r"handshake done")
    assert srv.stop(signum) == 0
    assert held.next_events() == [Closed(None)]
    held.sock.close()


def test_client_without_a_server_exits_1(tmp_path: Path, psk_file: Path) -> None:
    with socket.socket() as unused:  # bound but not listening: connecting is refused
        unused.bind(("127.0.0.1", 0))
        result = run_client(tmp_path, unused.getsockname()[1], "x", psk_file=psk_file)
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and len(result.stderr.splitlines()) == 1


def test_client_without_a_key_file_explains_the_fix(tmp_path: Path, server: Server) -> None:
    result = run_client(tmp_path, server.port, "x", psk_file=tmp_path / "missing")
    assert result.returncode == 1
    assert "KEY_NOT_FOUND" in result.stderr and "--keygen" in result.stderr
