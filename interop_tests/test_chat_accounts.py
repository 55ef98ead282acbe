"""Chat names on a server with users (docs/PROTOCOL.md 11.1): a key user enters under its user's
name, a session without a user under a guest name, and /nick is refused for both, so no one can
take or change a name. Every server (the C++, Python and asyncio ones share the core's rooms; the
reference server is written from the spec), with the C++ client as the key user."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from cpp_apps.tests.conftest import Proc
from interop_tests.reference.seclink_ref import generate_key, public_bytes
from interop_tests.test_matrix import CLIENTS, env, keys, start_server  # noqa: F401 - fixtures

REFUSED = r"^! CHAT_COMMAND: "


@pytest.mark.parametrize("server", ["cpp", "py", "py-asyncio", "ref"])
def test_a_user_chats_under_its_account_and_no_one_can_change_a_name(start_server, keys, env, tmp_path: Path,
                                                                   server: str) -> None:
    generate_key(tmp_path / "server_key")
    alice = generate_key(tmp_path / "alice.id")
    public = base64.b64encode(public_bytes(X25519PrivateKey.from_private_bytes(alice))).decode()
    (tmp_path / "authorized_keys").write_text(f"alice {public}\n")
    flags = ["--chat", "--authorized-keys", str(tmp_path / "authorized_keys")]
    srv = start_server(server, *flags, *(["--server-key-file", str(tmp_path / "server_key")] if server == "ref" else []))
    base = [*CLIENTS["cpp"], "127.0.0.1", str(srv.port), "--psk-file", str(keys[0]), "--log-file", "-"]
    user = Proc(base + ["--mode", "user-key", "--identity", str(tmp_path / "alice.id"), "--trust-on-first-use",
                        "--known-servers", str(tmp_path / "known")], cwd=tmp_path, env=env, stdin=True)
    guest = None
    try:
        user.out.wait_for(r"^\* you are alice$")
        guest = Proc(base, cwd=tmp_path, env=env, stdin=True)
        name = guest.out.wait_for(r"^\* you are (guest\d+)$").group(1)
        user.out.wait_for(rf"^\* {name} joined lobby$")
        guest.write("/nick alice\n")
        guest.out.wait_for(REFUSED)
        user.write("/nick bob\n")
        user.out.wait_for(REFUSED)
        user.write("hello\n")
        guest.out.wait_for(r"^\[alice\] hello$")
        assert not guest.out.matching(r" is now ") and not user.out.matching(r" is now ")
        for p in (user, guest):
            p.close_stdin()
            assert p.wait() == 0, p.err.text
    finally:
        user.kill()
        if guest is not None:
            guest.kill()
