"""Password users across languages (docs/PROTOCOL.md section 16): mode 4 between every server and
every client; a wrong password refused, and after 3 failures even the right one, for a while; no
password in any log."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from tests.matrix import PAIR_IDS, PAIRS, REPO, refusal, replies
from tests.reference.seclink_ref import generate_key, public_bytes

PASSWORD = "correct horse"


@pytest.fixture
def users(tmp_path: Path, env, keys) -> Path:  # noqa: F811
    """bob's password in a users file, written by ./server --add-user; the server key pre-made."""
    generate_key(tmp_path / "server_key")
    path = tmp_path / "users"
    r = subprocess.run([str(REPO / "server"), "--add-user", "bob", "--users", str(path)], env={**env, "SECLINK_PASSWORD": PASSWORD},
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "Stored a salted scrypt hash of bob's password" in r.stdout, r
    assert PASSWORD not in path.read_text() and path.stat().st_mode & 0o777 == 0o600
    return path


def server_flags(server: str, tmp_path: Path) -> list[str]:
    return ["--users", str(tmp_path / "users")] + (["--server-key-file", str(tmp_path / "server_key")]
                                                   if server == "ref" else [])


def client_flags(client: str, tmp_path: Path, user: str = "bob") -> list[str]:
    if client == "ref":
        pub = public_bytes(X25519PrivateKey.from_private_bytes(base64.b64decode((tmp_path / "server_key").read_text())))
        return ["--server-public-key", pub.hex(), "--user", user]
    return ["--mode", "password", "--user", user, "--trust-on-first-use", "--known-servers", str(tmp_path / "known")]


@pytest.mark.parametrize(("server", "client"), PAIRS, ids=PAIR_IDS)
def test_a_password_user_between_every_server_and_client(start_server, run_client, users, env, tmp_path: Path,
                                                         server: str, client: str) -> None:
    srv = start_server(server, *server_flags(server, tmp_path))
    env["SECLINK_PASSWORD"] = PASSWORD
    r = run_client(client, srv.port, "as bob", *client_flags(client, tmp_path))
    assert r.returncode == 0 and replies(r.stdout) == ["ACK: received 6 bytes"], str(r)
    if server == "ref":
        srv.wait_for(r"handshake done \(user bob\)$")
    else:
        srv.wait_for(r"^\[INFO\] bob@127\.0\.0\.1:\d+ handshake complete \(mode password\)$")
        srv.wait_for(r"^\[RECV\] bob@127\.0\.0\.1:\d+ #1 as bob \(6 bytes\)$")
    assert PASSWORD not in srv.out.text and PASSWORD not in r.stdout + r.stderr


@pytest.mark.parametrize("server", ["cpp", "py", "py-asyncio"])
@pytest.mark.parametrize("client", ["cpp", "py", "aio", "ref"])
def test_wrong_passwords_are_refused_then_rate_limited(start_server, run_client, users, env, tmp_path: Path,
                                                       server: str, client: str) -> None:
    srv = start_server(server, *server_flags(server, tmp_path))
    # Each client pipelines its DATA behind the AUTH; the server's lingering close (PROTOCOL.md 5)
    # keeps the CLOSE readable, so every client reports the exact reason.
    for attempt in range(3):
        env["SECLINK_PASSWORD"] = f"guess {attempt}"
        r = run_client(client, srv.port, "x", *client_flags(client, tmp_path))
        status, line = refusal(client, "wrong user or password")
        assert r.returncode == status and line in r.stderr, str(r)
    env["SECLINK_PASSWORD"] = PASSWORD  # right, but after 3 failures: refused unchecked for 60 s
    r = run_client(client, srv.port, "x", *client_flags(client, tmp_path))
    status, line = refusal(client, "too many failed attempts: try again later")
    assert r.returncode == status and line in r.stderr, str(r)
    srv.wait_for(r"^\[WARN\] 127\.0\.0\.1:\d+ disconnected: refused: too many failed attempts \(user bob or address "
                 r"127\.0\.0\.1\); not checked$")
    assert len(srv.out.matching(r"refused: wrong user or password \(user bob\)$")) == 3
    assert "guess" not in srv.out.text and PASSWORD not in srv.out.text


def test_add_user_asks_twice_and_refuses_a_mismatch(tmp_path: Path, env) -> None:  # noqa: F811
    """--add-user at a terminal: the two passwords must match (through a pty, no echo)."""
    import os
    import pty
    for prog in ([str(REPO / "server")], [sys.executable, str(REPO / "python" / "server.py")]):
        pid, fd = pty.fork()
        if pid == 0:
            os.execvpe(prog[0], [*prog, "--add-user", "eve", "--users", str(tmp_path / "u")], env)
        out = b""
        for answer in (b"one\n", b"two\n"):
            while b": " not in out.split(b"\n")[-1]:
                try:
                    out += os.read(fd, 1024)
                except OSError:
                    pytest.fail(f"{prog} ended early: {out!r}")
            assert b"one" not in out, "no echo"
            os.write(fd, answer)
            out += b"\n"
        try:
            while chunk := os.read(fd, 1024):
                out += chunk
        except OSError:
            pass
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 2 and b"the two passwords differ" in out, out
        assert not (tmp_path / "u").exists()
