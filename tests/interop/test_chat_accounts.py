"""Chat names on a server with users (docs/PROTOCOL.md 11.1): a user (key user, section 15, or
password user, section 16) enters under its user's name, a session without a user under a guest
name, and /nick is refused for both, so no one can take or change a name. Every server (the C++,
Python and asyncio ones share the core's rooms; the reference server is written from the spec),
with the C++ client as the user."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from tools.procs import Proc
from tests.matrix import REPO
from tests.reference.seclink_ref import generate_key, public_bytes
from tests.matrix import CLIENTS

REFUSED = r"^! CHAT_COMMAND: "
PASSWORD = "correct horse battery staple"


def user_setup(mode: str, tmp_path: Path, env: dict[str, str]) -> tuple[str, list[str], list[str]]:
    """(the user's name, the server's flags for its users, the client's flags to log in as it)."""
    if mode == "key":
        alice = generate_key(tmp_path / "alice.id")
        public = base64.b64encode(public_bytes(X25519PrivateKey.from_private_bytes(alice))).decode()
        (tmp_path / "authorized_keys").write_text(f"alice {public}\n")
        return "alice", ["--authorized-keys", str(tmp_path / "authorized_keys")], \
            ["--mode", "user-key", "--identity", str(tmp_path / "alice.id")]
    r = subprocess.run([str(REPO / "server"), "--add-user", "bob", "--users", str(tmp_path / "users")],
                       env={**env, "SECLINK_PASSWORD": PASSWORD}, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r
    return "bob", ["--users", str(tmp_path / "users")], ["--mode", "password", "--user", "bob"]


@pytest.mark.parametrize("mode", ["key", "password"])
@pytest.mark.parametrize("server", ["cpp", "py", "py-asyncio", "ref"])
def test_a_user_chats_under_its_account_and_no_one_can_change_a_name(start_server, keys, env, tmp_path: Path,
                                                                   server: str, mode: str) -> None:
    generate_key(tmp_path / "server_key")
    name, server_flags, client_flags = user_setup(mode, tmp_path, env)
    extra = ["--server-key-file", str(tmp_path / "server_key")] if server == "ref" else []
    srv = start_server(server, "--chat", *server_flags, *extra)
    base = [*CLIENTS["cpp"], "127.0.0.1", str(srv.port), "--psk-file", str(keys[0]), "--log-file", "-"]
    user = Proc(base + client_flags + ["--trust-on-first-use", "--known-servers", str(tmp_path / "known")],
                cwd=tmp_path, env={**env, "SECLINK_PASSWORD": PASSWORD}, stdin=True)
    guest = None
    try:
        user.out.wait_for(rf"^\* you are {name}$")
        guest = Proc(base, cwd=tmp_path, env=env, stdin=True)
        guest_name = guest.out.wait_for(r"^\* you are (guest\d+)$").group(1)
        user.out.wait_for(rf"^\* {guest_name} joined lobby$")
        guest.write(f"/nick {name}\n")
        guest.out.wait_for(REFUSED)
        user.write("/nick mallory\n")
        user.out.wait_for(REFUSED)
        user.write("hello\n")
        guest.out.wait_for(rf"^\[{name}\] hello$")
        assert not guest.out.matching(r" is now ") and not user.out.matching(r" is now ")
        for p in (user, guest):
            p.close_stdin()
            assert p.wait() == 0, p.err.text
    finally:
        user.kill()
        if guest is not None:
            guest.kill()
