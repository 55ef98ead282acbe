"""The interop matrix: every server against every client, as real processes over 127.0.0.1.

Servers: the C++ ./server, python/server.py (native-backed), python/server.py --asyncio and the
reference implementation's server. Clients: the C++ ./client, python/client.py,
python/client.py --asyncio (seclink.aio) and the reference client. Every pair gets the same
cases (ids such as ``cpp-server--py-client``); then every server takes 20 clients of mixed
languages at once, a relay that flips one byte proves every receiver rejects a tampered frame,
and the C++ and Python servers must log the same session identically.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.matrix import (CLIENTS, HANDSHAKE, LIMIT, PAIR_IDS, PAIRS, PROTOCOL, SERVERS, TLS_PAIRS, TOO_LARGE, received,
                          replies)
from tools.procs import WAIT, Proc, strip_timestamps
from tests.reference.seclink_ref import generate_key
from tools.relay import Relay

# ------------------------------------------------------------------------------ every pair

@pytest.mark.parametrize(("server", "client"), PAIRS, ids=PAIR_IDS)
def test_one_shot_messages_of_every_kind(start_server, run_client, tmp_path: Path, server: str, client: str) -> None:
    srv = start_server(server)
    binary = tmp_path / "binary"
    binary.write_bytes(bytes(range(256)) + os.urandom(100))
    utf8 = "h\u00e9llo w\u00f6rld \u2713 \u65e5\u672c"
    r = run_client(client, srv.port, "hello", "", "x", utf8, "--message-file", str(binary))
    assert r.returncode == 0, str(r)
    sizes = [5, 0, 1, len(utf8.encode()), 356]
    assert replies(r.stdout) == [f"ACK: received {n} bytes" for n in sizes], str(r)
    srv.wait_for(r"\[RECV\] .*\(356 bytes\)")
    shown = received(srv)
    assert shown[0] == "hello" and shown[2] == "x" and shown[3] == utf8, shown


@pytest.mark.parametrize(("server", "client"), PAIRS, ids=PAIR_IDS)
def test_interactive_session_ends_at_disconnect(start_server, run_client, server: str, client: str) -> None:
    srv = start_server(server)
    r = run_client(client, srv.port, input="first\nsecond line\nthird \u2713\n!DISCONNECT\nnever sent\n")
    assert r.returncode == 0, str(r)
    assert replies(r.stdout) == ["ACK: received 5 bytes", "ACK: received 11 bytes", "ACK: received 9 bytes"]
    srv.wait_for(r"disconnected|Client disconnected")
    assert received(srv) == ["first", "second line", "third \u2713"]


@pytest.mark.parametrize(("server", "client"), PAIRS, ids=PAIR_IDS)
def test_size_limit_exactly_and_one_over(start_server, run_client, tmp_path: Path, server: str, client: str) -> None:
    srv = start_server(server, "--max-message", str(LIMIT))
    exact, over = tmp_path / "exact", tmp_path / "over"
    exact.write_bytes(os.urandom(LIMIT))
    over.write_bytes(os.urandom(LIMIT + 1))
    r = run_client(client, srv.port, "--max-message", str(LIMIT), "--message-file", str(exact))
    assert r.returncode == 0 and replies(r.stdout) == [f"ACK: received {LIMIT} bytes"], str(r)
    mark = srv.out.mark()
    r = run_client(client, srv.port, "--max-message", str(LIMIT), "--message-file", str(over))
    assert r.returncode == TOO_LARGE.get(client, 8), str(r)
    assert f"{LIMIT + 1} bytes, over the limit" in r.stderr and "nothing was sent" in r.stderr, str(r)
    assert replies(r.stdout) == []
    # Nothing was half-sent: the client never even connected. A later session shows the server saw nothing.
    r = run_client(client, srv.port, "after")
    assert r.returncode == 0, str(r)
    srv.wait_for(r"\[RECV\] \S+ #1 after ", since=mark)
    assert len(srv.out.matching(r"^\[INFO\] (\S+ connected$|Client connected: )", since=mark)) == 1


@pytest.mark.parametrize(("server", "client"), PAIRS, ids=PAIR_IDS)
def test_wrong_psk_fails_on_both_sides_and_delivers_nothing(start_server, run_client, keys, server: str,
                                                           client: str) -> None:
    srv = start_server(server)
    r = run_client(client, srv.port, "secret", psk=keys[1])
    assert r.returncode == HANDSHAKE.get(client, 5), str(r)
    assert len(r.stderr.splitlines()) == 1 and "error" in r.stderr, str(r)
    if client != "ref":
        assert "pre-shared key" in r.stderr
    if server == "ref":
        srv.wait_for(r"^\[WARN\] \S+: HANDSHAKE_AUTH")
    else:
        srv.wait_for(r"^\[WARN\] \S+ disconnected: handshake failed: HANDSHAKE_AUTH: ")
    assert received(srv) == [] and replies(r.stdout) == []


@pytest.mark.parametrize(("server", "client"), TLS_PAIRS, ids=[f"{s}-server--{c}-client" for s, c in TLS_PAIRS])
def test_tls_with_the_default_certificate_trust(start_server, run_client, server: str, client: str) -> None:
    srv = start_server(server, "--tls")
    srv.wait_for(r"^\[INFO\] TLS 1\.3 certificate .*, SHA-256 fingerprint [0-9a-f]{64}$")
    r = run_client(client, srv.port, "over tls", "--tls")
    assert r.returncode == 0, str(r)
    assert "inside TLS 1.3" in r.stdout and replies(r.stdout) == ["ACK: received 8 bytes"]


# ------------------------------------------------------------------------------ every server

@pytest.mark.parametrize("server", list(SERVERS))
def test_twenty_clients_of_mixed_languages_at_once(start_server, tmp_path: Path, env, keys, server: str) -> None:
    srv = start_server(server, "--echo")
    procs = []
    try:
        for i in range(20):
            kind = list(CLIENTS)[i % len(CLIENTS)]
            msgs = [f"client {i} ({kind}) message {j} " + "\u2713" * i for j in range(3)]
            argv = [*CLIENTS[kind], "127.0.0.1", str(srv.port), *msgs, "--psk-file", str(keys[0])]
            if kind != "ref":
                argv += ["--log-file", "-"]
            procs.append((Proc(argv, cwd=tmp_path, env=env), msgs))
        for p, msgs in procs:
            assert p.wait(WAIT * 3) == 0, f"{p.argv}: {p.err.text}"
            assert replies(p.out.text) == msgs, p.out.text
    finally:
        for p, _ in procs:
            p.kill()
    assert len(received(srv)) == 60


@pytest.mark.parametrize("server", list(SERVERS))
def test_every_server_rejects_a_frame_tampered_in_flight(start_server, run_client, server: str) -> None:
    srv = start_server(server)
    relay = Relay(srv.port, "up", 2, "flip")  # 0: frame 1, 1: the key-confirmation PING, 2: the first message
    try:
        r = run_client("cpp", relay.port, "tampered", "never answered")
    finally:
        relay.close()
    assert relay.done.is_set()
    assert r.returncode == 7 and replies(r.stdout) == [], str(r)
    if server == "ref":
        srv.wait_for(r"^\[WARN\] \S+: AUTH: ")
    else:
        srv.wait_for(r"^\[WARN\] \S+ disconnected: protocol error: AUTH: ")
    assert received(srv) == []
    assert run_client("cpp", srv.port, "still serving").returncode == 0


@pytest.mark.parametrize("server", ["cpp", "py", "py-asyncio"])
def test_replayed_frame_is_refused_after_the_valid_copy_is_answered(start_server, run_client, server: str) -> None:
    srv = start_server(server)
    relay = Relay(srv.port, "up", 2, "replay")  # 0: frame 1, 1: the key-confirmation PING, 2: "replay me"
    try:
        r = run_client("cpp", relay.port, "replay me", "one more")
    finally:
        relay.close()
    assert relay.done.is_set()
    assert replies(r.stdout) == ["ACK: received 9 bytes"] and r.returncode == 7, str(r)
    srv.wait_for(r"^\[WARN\] \S+ disconnected: protocol error: BAD_COUNTER: ")
    assert received(srv) == ["replay me"]


@pytest.mark.parametrize("client", list(CLIENTS))
def test_every_client_rejects_a_frame_tampered_in_flight(start_server, run_client, client: str) -> None:
    srv = start_server("cpp")
    relay = Relay(srv.port, "down", 2, "flip")  # 0: frame 2, 1: the PONG to the key confirmation, 2: the first reply
    try:
        r = run_client(client, relay.port, "hello", "second")
    finally:
        relay.close()
    assert relay.done.is_set()
    assert r.returncode == PROTOCOL.get(client, 7) and replies(r.stdout) == [], str(r)
    assert "AUTH" in r.stderr and len(r.stderr.splitlines()) == 1, str(r)
    srv.wait_for(r"^\[INFO\] \S+ disconnected: ")


# A frame far larger than any read arrives in pieces, and is decrypted as the pieces arrive: the
# IV (counter) check and the tag check must hold there too. Tampered in the middle of its
# ciphertext or in its tag, or replayed whole, it must deliver nothing, in both directions.
LARGE = 300_000
LARGE_ACTIONS = {"flip-middle": ("flip", 4 + 12 + LARGE // 2), "flip-tag": ("flip", -1), "replay": ("replay", 16)}


@pytest.mark.parametrize("action", list(LARGE_ACTIONS))
@pytest.mark.parametrize("server", list(SERVERS))
def test_every_server_refuses_a_large_frame_tampered_or_replayed_in_flight(start_server, run_client, tmp_path: Path,
                                                                            server: str, action: str) -> None:
    srv = start_server(server)
    big, small = tmp_path / "large", tmp_path / "small"
    big.write_bytes(b"L" * LARGE)
    small.write_bytes(b"then this")
    what, at = LARGE_ACTIONS[action]
    relay = Relay(srv.port, "up", 2, what, flip_at=at)  # 0: frame 1, 1: the key-confirmation PING, 2: the large one
    try:
        r = run_client("cpp", relay.port, "--message-file", str(big), "--message-file", str(small))
    finally:
        relay.close()
    assert relay.done.is_set()
    assert r.returncode == 7, str(r)
    error = "BAD_COUNTER" if what == "replay" else "AUTH"
    if server == "ref":
        srv.wait_for(rf"^\[WARN\] \S+: {error}: ")
    else:
        srv.wait_for(rf"^\[WARN\] \S+ disconnected: protocol error: {error}: ")
        assert len(received(srv)) == (1 if what == "replay" else 0), received(srv)
    assert replies(r.stdout) == ([f"ACK: received {LARGE} bytes"] if what == "replay" else []), str(r)


@pytest.mark.parametrize("action", list(LARGE_ACTIONS))
@pytest.mark.parametrize("client", list(CLIENTS))
def test_every_client_refuses_a_large_frame_tampered_or_replayed_in_flight(start_server, run_client, tmp_path: Path,
                                                                            client: str, action: str) -> None:
    srv = start_server("cpp", "--echo")
    big, small = tmp_path / "large", tmp_path / "small"
    big.write_bytes(b"L" * LARGE)
    small.write_bytes(b"then this")
    what, at = LARGE_ACTIONS[action]
    relay = Relay(srv.port, "down", 2, what, flip_at=at)  # 0: frame 2, 1: the PONG, 2: the large echo
    try:
        r = run_client(client, relay.port, "--message-file", str(big), "--message-file", str(small))
    finally:
        relay.close()
    assert relay.done.is_set()
    assert r.returncode == PROTOCOL.get(client, 7), str(r)
    error = "BAD_COUNTER" if what == "replay" else "AUTH"
    assert len(replies(r.stdout)) == (1 if what == "replay" else 0), r.stdout[:300]
    assert error in r.stderr, str(r)


def normalized_log(path: Path) -> list[str]:
    lines = strip_timestamps(path.read_text(encoding="utf-8"))
    lines = [re.sub(r"\((c\+\+|python|python asyncio)\)", "(LANG)", line) for line in lines]
    return [re.sub(r"(127\.0\.0\.1):\d+", r"\1:PORT", line) for line in lines]


def test_cpp_and_python_servers_log_the_same_session_identically(start_server, run_client, tmp_path: Path,
                                                                 keys) -> None:
    logs = {}
    generate_key(tmp_path / "server_key")  # every server starts with the same files (none creates one)
    for kind in ("cpp", "py", "py-asyncio"):
        log = tmp_path / f"same-{kind}.log"
        flags = ["--threads", "1"] if kind != "py-asyncio" else []
        srv = start_server(kind, *flags, log=log)
        assert run_client("cpp", srv.port, "hello", "", "\u2713 utf-8").returncode == 0
        assert run_client("cpp", srv.port, "x", psk=keys[1]).returncode == 5
        srv.wait_for(r"handshake failed")
        assert srv.stop() == 0
        logs[kind] = normalized_log(log)
    assert logs["cpp"] == logs["py"] == logs["py-asyncio"], "\n".join(
        f"{k}:\n  " + "\n  ".join(v) for k, v in logs.items())
    assert any("[RECV] 127.0.0.1:PORT #3 \u2713 utf-8 (9 bytes)" == line for line in logs["cpp"])
