"""Misbehaving peers. Against ./server: hand-crafted frames from a raw peer (tampered, replayed,
oversized, truncated...), garbage, slowloris and half-open connections, idle sessions. Each bad
connection is closed with a [WARN] naming the peer and the reason, and the server keeps serving a
session opened before the attack and a client started after it. Against ./client: a raw server
sending tampered frames, garbage, nothing at all."""

from __future__ import annotations

import base64
import json
import os
import re
import select
import socket
import subprocess
import time

import pytest

from tools.procs import WAIT
from tests.peers import read_frame, serve_handshake, RawPeer
from tests.matrix import REPO
from tests.reference.seclink_ref import DATA, PING, PONG, Closed, Message

LIMIT = 4096  # the server's --max-message in the attack tests


def still_serving(srv, witness: RawPeer, run_client) -> None:
    """The session opened before the attack still works, and so does a new client."""
    assert witness.request(b"still here?") == b"ACK: received 11 bytes"
    r = run_client("127.0.0.1", srv.port, "after the attack")
    assert r.returncode == 0, str(r)
    assert "[RECV] #1 ACK: received 16 bytes (a reply of 22 bytes)" in r.stdout


def warned(srv, peer: str, reason: str) -> None:
    srv.wait_for(rf"^\[WARN\] {re.escape(peer)} disconnected: {reason}")


# --------------------------------------------------------------------------- bad transport frames

def tampered_ciphertext(p: RawPeer, psk: bytes) -> str:
    f = bytearray(p.frame(DATA, b"transfer 100 EUR"))
    f[4 + 12] ^= 0x01
    p.send_raw(bytes(f))
    return "protocol error: AUTH: "


def tampered_tag(p: RawPeer, psk: bytes) -> str:
    f = bytearray(p.frame(DATA, b"transfer 100 EUR"))
    f[-1] ^= 0x80
    p.send_raw(bytes(f))
    return "protocol error: AUTH: "


def tampered_iv(p: RawPeer, psk: bytes) -> str:
    f = bytearray(p.frame(DATA, b"transfer 100 EUR"))
    f[4] ^= 0x01  # the first IV byte must be zero
    p.send_raw(bytes(f))
    return "protocol error: BAD_COUNTER: "


def truncated_length(p: RawPeer, psk: bytes) -> str:
    f = p.frame(DATA, b"transfer 100 EUR")
    n = int.from_bytes(f[:4], "big") - 1  # a well-formed frame one byte shorter: the tag is cut
    p.send_raw(n.to_bytes(4, "big") + f[4:-1])
    return "protocol error: AUTH: "


def replayed(p: RawPeer, psk: bytes) -> str:
    f = p.frame(DATA, b"pay once")
    p.send_raw(f)
    assert p.next_event() == Message(DATA, b"ACK: received 8 bytes")
    p.send_raw(f)
    return "protocol error: BAD_COUNTER: "


def reordered(p: RawPeer, psk: bytes) -> str:
    p.frame(DATA, b"first")  # never sent
    p.send_raw(p.frame(DATA, b"second"))
    return "protocol error: BAD_COUNTER: "


def from_another_session(p: RawPeer, psk: bytes) -> str:
    with RawPeer(p.sock.getpeername()[1], psk) as other:
        f = other.frame(DATA, b"not yours")  # counter 0, like p's next frame, but other keys
    p.send_raw(f)
    return "protocol error: AUTH: "


def oversized(p: RawPeer, psk: bytes) -> str:
    p.send_raw((LIMIT + 29 + 1).to_bytes(4, "big"))  # rejected on the length alone
    return "protocol error: FRAME_TOO_LARGE: "


def oversized_max(p: RawPeer, psk: bytes) -> str:
    p.send_raw(b"\xff\xff\xff\xff")
    return "protocol error: FRAME_TOO_LARGE: "


def undersized(p: RawPeer, psk: bytes) -> str:
    p.send_raw((28).to_bytes(4, "big") + bytes(28))
    return "protocol error: FRAME_TOO_SHORT: "


def bad_type(p: RawPeer, psk: bytes) -> str:
    p.send_raw(p.frame(0x09, b"what am I"))
    return "protocol error: BAD_TYPE: "


def oversized_ping(p: RawPeer, psk: bytes) -> str:
    p.send_raw(p.frame(PING, b"p" * 65))
    return "protocol error: BAD_PING: "


def truncated_stream(p: RawPeer, psk: bytes) -> str:
    f = p.frame(DATA, b"cut short")
    p.send_raw(f[: len(f) // 2])
    p.sock.shutdown(socket.SHUT_WR)
    return r"connection lost in the middle of a frame \(TRUNCATED\)"


ATTACKS = [tampered_ciphertext, tampered_tag, tampered_iv, truncated_length, replayed, reordered,
           from_another_session, oversized, oversized_max, undersized, bad_type, oversized_ping, truncated_stream]


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.__name__ for a in ATTACKS])
def test_bad_frame_closes_only_that_connection(start_server, run_client, raw_peers, psk, attack):
    srv = start_server("--max-message", str(LIMIT))
    witness = raw_peers(srv.port, psk)
    assert witness.request(b"before") == b"ACK: received 6 bytes"
    attacker = raw_peers(srv.port, psk)
    srv.wait_for(rf"^\[INFO\] {attacker.name} handshake complete$")
    reason = attack(attacker, psk)
    assert attacker.read_to_eof() == b""  # the server sends nothing more, and closes
    warned(srv, attacker.name, reason)
    # No plaintext of the bad frame was released to the application.
    assert srv.out.matching(rf"^\[RECV\] {attacker.name} #2 ") == []
    assert srv.out.matching(r"transfer|second|not yours|what am I|cut short") == []
    still_serving(srv, witness, run_client)


def test_ping_gets_a_pong_with_the_same_content(start_server, raw_peers, psk):
    srv = start_server()
    peer = raw_peers(srv.port, psk)
    for content in (b"", b"are you there?", bytes(range(64))):
        peer.send(PING, content)
        assert peer.next_event() == Message(PONG, content)
        srv.wait_for(rf"^\[SEND\] {peer.name} PONG \({len(content)} bytes\)$")
    assert peer.request(b"and data") == b"ACK: received 8 bytes"  # counters stay in step
    assert len(srv.out.matching(rf"^\[RECV\] {peer.name} PING ")) == 3


def test_pipelined_and_fragmented_frames_are_all_answered_in_order(start_server, raw_peers, psk):
    srv = start_server("--echo")
    peer = raw_peers(srv.port, psk)
    frames = b"".join(peer.frame(DATA, f"message {i}".encode()) for i in range(100))
    peer.send_raw(frames)  # 100 frames in one write
    for i in range(100):
        assert peer.next_event() == Message(DATA, f"message {i}".encode())
    frame = peer.frame(DATA, b"one byte at a time")
    for b in frame:
        peer.send_raw(bytes([b]))
    assert peer.next_event() == Message(DATA, b"one byte at a time")


def test_close_from_the_client_ends_the_session_and_later_frames_are_ignored(start_server, raw_peers, psk):
    srv = start_server()
    peer = raw_peers(srv.port, psk)
    peer.conn.close("bye now")
    peer.send_raw(peer.conn.data_to_send() + peer.frame(DATA, b"after close"))
    assert peer.read_to_eof() == b""
    srv.wait_for(rf"^\[INFO\] {peer.name} disconnected: client closed the session \(bye now\)$")
    assert srv.out.matching(r"^\[RECV\]") == []


# --------------------------------------------------------------------------- before the handshake

GARBAGE = {
    "http-request": (b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", "FRAME_TOO_LARGE"),
    "bad-magic": ((53).to_bytes(4, "big") + b"HTTP" + bytes(49), "BAD_MAGIC"),
    "bad-version": ((53).to_bytes(4, "big") + b"SLNK\x03" + bytes(48), "BAD_VERSION"),
    "too-short": ((52).to_bytes(4, "big") + b"SLNK\x01" + bytes(47), "FRAME_TOO_SHORT"),
    "random-key": ((53).to_bytes(4, "big") + b"SLNK\x01" + os.urandom(48), "HANDSHAKE_AUTH"),
    # A low-order key without the PSK: the tag over it fails first (the WEAK_KEY case is below).
    "low-order-key-without-the-psk": ((53).to_bytes(4, "big") + b"SLNK\x01" + bytes(48), "HANDSHAKE_AUTH"),
}


@pytest.mark.parametrize("name", list(GARBAGE))
def test_garbage_instead_of_a_handshake_is_closed_with_a_warning(start_server, run_client, raw_peers, psk, name):
    data, error = GARBAGE[name]
    srv = start_server()
    witness = raw_peers(srv.port, psk)
    with socket.create_connection(("127.0.0.1", srv.port), timeout=WAIT) as s:
        peer = "127.0.0.1:%d" % s.getsockname()[1]
        s.sendall(data)
        got = b""
        while chunk := s.recv(1024):
            got += chunk
    # Closed without a word, except that a version naming no mode this server accepts is told
    # which modes it does (PROTOCOL.md 14.2).
    from tests.reference.seclink_ref import modes_frame
    assert got == (modes_frame([1, 2]) if name == "bad-version" else b"")
    warned(srv, peer, f"handshake failed: {error}: ")
    still_serving(srv, witness, run_client)


@pytest.mark.parametrize("case", ["frame1_zero_key", "frame1_order8_key"])
def test_a_low_order_key_sent_with_the_psk_is_refused_as_weak(start_server, run_client, raw_peers, psk, tmp_path,
                                                             case):
    """A peer that holds the PSK (so frame 1's tag verifies) and sends a low-order X25519 key: the
    server must refuse it as WEAK_KEY (PROTOCOL.md 3), whatever OpenSSL makes of the point. The
    frames are the project vectors', made with the vectors' PSK, which this server is given."""
    vectors = json.loads((REPO / "tests" / "vectors" / "seclink_v1.json").read_text())
    m = next(m for m in vectors["malformed"] if m["name"] == case)
    assert m["error"] == "WEAK_KEY" and m["to"] == "server" and m["after"] == 0
    key = tmp_path / "vectors-psk"
    key.write_text(base64.b64encode(bytes.fromhex(vectors["psk"])).decode() + "\n")
    key.chmod(0o600)
    srv = start_server(psk=key)
    with socket.create_connection(("127.0.0.1", srv.port), timeout=WAIT) as s:
        peer = "127.0.0.1:%d" % s.getsockname()[1]
        s.sendall(bytes.fromhex(m["bytes"]))
        assert s.recv(1024) == b""  # no frame 2
    warned(srv, peer, "handshake failed: WEAK_KEY: ")


def test_connection_closed_during_the_handshake_is_logged(start_server, raw_peers, psk):
    srv = start_server()
    with socket.create_connection(("127.0.0.1", srv.port), timeout=WAIT) as s:
        peer = "127.0.0.1:%d" % s.getsockname()[1]
        s.sendall((53).to_bytes(4, "big") + b"SLNK")
    warned(srv, peer, r"(connection closed during the handshake|.*TRUNCATED)")


def seconds_until_closed(s: socket.socket, trickle: bool, limit: float = 5.0) -> float | None:
    """Waits for the server to close `s` (sending one byte every 0.1 s if `trickle`); the time it
    took, or None if it did not within `limit` s. The server must send nothing."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        if select.select([s], [], [], 0.1)[0]:
            try:
                data = s.recv(100)
            except ConnectionResetError:
                data = b""
            assert data == b"", f"the server sent {data!r}"
            return time.monotonic() - t0
        if trickle:
            try:
                s.sendall(b"\x00")
            except (BrokenPipeError, ConnectionResetError):
                return time.monotonic() - t0
    return None


@pytest.mark.parametrize("kind", ["half-open", "slowloris"])
def test_handshake_timeout_closes_silent_and_trickling_connections(start_server, run_client, raw_peers, psk, kind):
    srv = start_server("--handshake-timeout", "1")
    witness = raw_peers(srv.port, psk)  # established: the handshake timeout no longer applies to it
    with socket.create_connection(("127.0.0.1", srv.port), timeout=WAIT) as s:
        peer = "127.0.0.1:%d" % s.getsockname()[1]
        if kind == "slowloris":  # frame 1 begins, then one byte every 0.1 s (all of it would take 4.8 s)
            s.sendall((53).to_bytes(4, "big") + b"SLNK\x01")
        closed_after = seconds_until_closed(s, trickle=kind == "slowloris")
    assert closed_after is not None, "never closed"
    assert 0.9 <= closed_after <= 3.0, closed_after
    warned(srv, peer, r"handshake timed out after 1 s$")
    still_serving(srv, witness, run_client)


# --------------------------------------------------------------------------- idle sessions

def test_idle_session_gets_close_idle_timeout_while_an_active_one_stays(start_server, raw_peers, psk):
    srv = start_server("--idle-timeout", "1")
    t0 = time.monotonic()
    idle, active = raw_peers(srv.port, psk), raw_peers(srv.port, psk)
    while not idle.readable(0.25):  # keep `active` busy meanwhile
        active.send(PING, b"keepalive")
        assert active.next_event() == Message(PONG, b"keepalive")
        assert time.monotonic() - t0 < 5, "the idle session was never closed"
    assert time.monotonic() - t0 >= 0.9
    idle.expect_close("idle timeout")
    srv.wait_for(rf"^\[INFO\] {idle.name} disconnected: idle for 1 s$")
    assert active.request(b"still active") == b"ACK: received 12 bytes"
    assert srv.out.matching(rf"{active.name} disconnected") == []


def test_interactive_client_told_of_the_idle_timeout_at_once(start_server, spawn_client):
    srv = start_server("--idle-timeout", "1")
    cli = spawn_client("127.0.0.1", srv.port, "--log-file", "-", "--keepalive", "0", stdin=True)
    cli.write("one\n")
    cli.out.wait_for(r"^\[RECV\] #1 ")
    srv.wait_for(r"disconnected: idle for 1 s$")
    assert cli.wait() == 7  # nothing more typed: the client watches the connection at its prompt
    assert cli.err.lines == ["client: error: the server closed the session: idle timeout"]


# --------------------------------------------------------------------------- ./client against a bad server

def run_against(raw_server, run_client, handler, *args, timeout=WAIT):
    srv = raw_server(handler)
    r = run_client("127.0.0.1", srv.port, *args, "--log-file", "-", timeout=timeout)
    srv.check()
    return r


def test_client_rejects_a_tampered_reply(raw_server, run_client, psk):
    def handler(sock):
        conn = serve_handshake(sock, psk)
        conn.receive(read_frame(sock))
        conn.send(DATA, b"ACK: received 5 bytes")
        f = bytearray(conn.data_to_send())
        f[20] ^= 1
        sock.sendall(bytes(f))
        assert sock.recv(100) == b""  # the client hangs up without answering

    r = run_against(raw_server, run_client, handler, "hello")
    assert r.returncode == 7, str(r)
    assert "[AUTH]" in r.stderr and "[RECV]" not in r.stdout


def test_client_answers_a_ping_while_waiting_for_its_reply(raw_server, run_client, psk):
    def handler(sock):
        conn = serve_handshake(sock, psk)
        assert conn.receive(read_frame(sock)) == [Message(DATA, b"hello")]
        conn.send(PING, b"you there?")
        sock.sendall(conn.data_to_send())
        assert conn.receive(read_frame(sock)) == [Message(PONG, b"you there?")]
        conn.send(DATA, b"the reply")
        sock.sendall(conn.data_to_send())
        assert conn.receive(read_frame(sock)) == [Closed("")]

    r = run_against(raw_server, run_client, handler, "hello")
    assert r.returncode == 0, str(r)
    assert "[RECV] #1 the reply (a reply of 9 bytes)" in r.stdout


def test_client_reports_the_servers_close_reason(raw_server, run_client, psk):
    def handler(sock):
        conn = serve_handshake(sock, psk)
        conn.receive(read_frame(sock))
        conn.close("maintenance window")
        sock.sendall(conn.data_to_send())

    r = run_against(raw_server, run_client, handler, "hello")
    assert r.returncode == 7, str(r)
    assert r.stderr == "client: error: the server closed the session: maintenance window\n"


def test_client_meeting_a_non_seclink_server_fails_the_handshake(raw_server, run_client):
    def handler(sock):
        read_frame(sock)
        sock.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    r = run_against(raw_server, run_client, handler, "hello")
    assert r.returncode == 5, str(r)
    assert "FRAME_TOO_LARGE" in r.stderr and "[SEND]" not in r.stdout


def test_client_whose_server_hangs_up_during_the_handshake(raw_server, run_client):
    def handler(sock):
        read_frame(sock)
        sock.close()

    r = run_against(raw_server, run_client, handler, "hello")
    assert r.returncode == 5, str(r)
    assert "closed the connection during the handshake" in r.stderr


def test_client_gives_up_on_a_silent_server(raw_server, run_client):
    def handler(sock):
        read_frame(sock)
        assert sock.recv(1) == b""  # wait until the client gives up

    t0 = time.monotonic()
    r = run_against(raw_server, run_client, handler, "hello", "--timeout", "1")
    assert r.returncode == 4, str(r)
    assert "no answer in time" in r.stderr
    assert time.monotonic() - t0 < 3


def test_client_gives_up_when_no_reply_comes(raw_server, run_client, psk):
    def handler(sock):
        conn = serve_handshake(sock, psk)
        conn.receive(read_frame(sock))
        assert sock.recv(1) == b""

    t0 = time.monotonic()
    r = run_against(raw_server, run_client, handler, "hello", "--timeout", "1")
    assert r.returncode == 7, str(r)
    assert r.stderr == "client: error: no reply within 1 s\n"
    assert time.monotonic() - t0 < 3


def test_client_gives_up_on_a_server_that_stopped_reading(raw_server, run_client, psk, tmp_path):
    def handler(sock):
        serve_handshake(sock, psk)
        # Read nothing more. The client's FIN cannot arrive (it queues behind the unread data
        # at a zero window), so hold the socket only for a bounded time, well past --timeout.
        p = select.poll()
        p.register(sock, select.POLLRDHUP)
        p.poll(5000)

    big = tmp_path / "big"
    big.write_bytes(os.urandom(8 << 20))  # far more than the socket buffers hold
    r = run_against(raw_server, run_client, handler, "--message-file", big, "--timeout", "1", timeout=4)
    assert r.returncode == 7, str(r)


# --------------------------------------------------------------------------- file descriptors

def test_out_of_file_descriptors_refuses_cleanly_and_recovers(start_server, run_client):
    """EMFILE: a connection the server cannot accept is closed at once (so the listening queue
    drains and the loop cannot spin on it), a [WARN] says so, and service resumes afterwards."""
    srv = start_server("--handshake-timeout", "30")
    in_use = len(os.listdir(f"/proc/{srv.pid}/fd"))
    limit = in_use + 4
    subprocess.run(["prlimit", "--pid", str(srv.pid), f"--nofile={limit}:{limit}"], check=True)
    held = []
    try:
        for _ in range(4):  # take every descriptor the server has left
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=WAIT)
            held.append(s)
        srv.wait_for(r"^\[INFO\] 127\.0\.0\.1:\d+ connected$", count=4)
        extra = [socket.create_connection(("127.0.0.1", srv.port), timeout=WAIT) for _ in range(3)]
        for s in extra:
            s.settimeout(WAIT)
            try:
                assert s.recv(1) == b"", "a connection over the fd limit must be closed"
            except ConnectionResetError:
                pass
            s.close()
        srv.wait_for(r"^\[WARN\] out of file descriptors: refused a connection")
    finally:
        for s in held:
            s.close()
    srv.wait_for(r"disconnected: connection closed during the handshake", count=4)
    r = run_client("127.0.0.1", srv.port, "after the storm")
    assert r.returncode == 0, str(r)
