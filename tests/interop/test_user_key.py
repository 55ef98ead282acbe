"""Key users across languages (docs/PROTOCOL.md section 15): mode 3 between every server and every
client, the user named in the server's log lines, an unknown user refused, and a key removed from
--authorized-keys refused after SIGHUP."""

from __future__ import annotations

import base64
import signal
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from tests.reference.seclink_ref import generate_key, public_bytes
from tests.matrix import PAIR_IDS, PAIRS, refusal, replies

OUR_SERVERS = ["cpp", "py", "py-asyncio"]


def public_b64(priv: bytes) -> str:
    return base64.b64encode(public_bytes(X25519PrivateKey.from_private_bytes(priv))).decode()


@pytest.fixture
def users(tmp_path: Path, keys) -> Path:  # noqa: F811
    """alice's identity listed in an authorized-keys file; the server's static key pre-made."""
    generate_key(tmp_path / "server_key")
    alice = generate_key(tmp_path / "alice.id")
    generate_key(tmp_path / "mallory.id")
    (tmp_path / "authorized_keys").write_text(f"# users\nalice {public_b64(alice)}\n")
    return tmp_path / "authorized_keys"


def server_flags(server: str, tmp_path: Path) -> list[str]:
    flags = ["--authorized-keys", str(tmp_path / "authorized_keys")]
    return flags + (["--server-key-file", str(tmp_path / "server_key")] if server == "ref" else [])


def client_flags(client: str, tmp_path: Path, who: str = "alice") -> list[str]:
    if client == "ref":
        server_pub = public_bytes(X25519PrivateKey.from_private_bytes(
            base64.b64decode((tmp_path / "server_key").read_text()))).hex()
        return ["--server-public-key", server_pub, "--identity-file", str(tmp_path / f"{who}.id")]
    return ["--mode", "user-key", "--identity", str(tmp_path / f"{who}.id"), "--trust-on-first-use",
            "--known-servers", str(tmp_path / "known")]


@pytest.mark.parametrize(("server", "client"), PAIRS, ids=PAIR_IDS)
def test_a_key_user_between_every_server_and_client(start_server, run_client, users, tmp_path: Path,
                                                    server: str, client: str) -> None:
    srv = start_server(server, *server_flags(server, tmp_path))
    if server != "ref":
        srv.wait_for(r"^\[INFO\] Handshake modes accepted: psk, server-key, user-key$")
    r = run_client(client, srv.port, "as alice", *client_flags(client, tmp_path))
    assert r.returncode == 0 and replies(r.stdout) == ["ACK: received 8 bytes"], str(r)
    if server == "ref":
        srv.wait_for(r"handshake done \(user alice\)$")
    else:
        srv.wait_for(r"^\[INFO\] alice@127\.0\.0\.1:\d+ handshake complete \(mode user-key\)$")
        srv.wait_for(r"^\[RECV\] alice@127\.0\.0\.1:\d+ #1 as alice \(8 bytes\)$")
        srv.wait_for(r"^\[INFO\] alice@127\.0\.0\.1:\d+ disconnected: client closed the session$")


@pytest.mark.parametrize("server", [*OUR_SERVERS, "ref"])
@pytest.mark.parametrize("client", ["cpp", "py", "aio", "ref"])
def test_an_unknown_user_is_refused(start_server, run_client, users, tmp_path: Path, server: str, client: str) -> None:
    srv = start_server(server, *server_flags(server, tmp_path))
    # The client pipelines its DATA behind message 3; the server sends CLOSE "unknown user" and
    # lingers (PROTOCOL.md 5) so that the close is no reset: every client reports the reason.
    r = run_client(client, srv.port, "sneaky", *client_flags(client, tmp_path, "mallory"))
    status, line = refusal(client, "unknown user")
    assert r.returncode == status and line in r.stderr, str(r)
    assert replies(r.stdout) == []
    if server != "ref":
        srv.wait_for(r"^\[WARN\] 127\.0\.0\.1:\d+ disconnected: refused: unknown user \(key [A-Z2-7-]{39}\)$")
        assert not srv.out.matching("sneaky")


@pytest.mark.parametrize("server", OUR_SERVERS)
def test_a_key_removed_is_refused_after_sighup_and_a_bad_file_keeps_the_list(start_server, run_client, users,
                                                                            tmp_path: Path, server: str) -> None:
    srv = start_server(server, *server_flags(server, tmp_path))
    assert run_client("cpp", srv.port, "one", *client_flags("cpp", tmp_path)).returncode == 0
    users.write_text("alice this-is-not-a-key\n")
    srv.proc.send_signal(signal.SIGHUP)
    srv.wait_for(rf"^\[WARN\] authorized keys {users} line 1: KEY_FORMAT: .*; the previous list stays in force$")
    assert run_client("cpp", srv.port, "two", *client_flags("cpp", tmp_path)).returncode == 0
    users.write_text("# alice left\n")
    srv.proc.send_signal(signal.SIGHUP)
    srv.wait_for(rf"^\[INFO\] authorized keys {users}: 0 users$")
    r = run_client("cpp", srv.port, "three", *client_flags("cpp", tmp_path))
    assert r.returncode == 7 and "unknown user" in r.stderr, str(r)
    assert len(srv.out.matching(r"alice@.* handshake complete")) == 2
    assert srv.stop() == 0


@pytest.mark.parametrize("server", [*OUR_SERVERS, "ref"])
@pytest.mark.parametrize("client", ["cpp", "ref"])
def test_a_key_user_holding_either_of_two_psks_is_served(start_server, run_client, users, keys, tmp_path: Path,
                                                        server: str, client: str) -> None:
    """PROTOCOL.md 12, "The other modes": in mode 3 the server finds the client's PSK by trial
    decryption of frame 3, and names the key file that matched."""
    old, new = keys
    srv = start_server(server, *server_flags(server, tmp_path), "--psk-file", str(new))  # old comes first
    for key in (new, old):
        mark = srv.out.mark()
        r = run_client(client, srv.port, "rotated", *client_flags(client, tmp_path), psk=key)
        assert r.returncode == 0 and replies(r.stdout) == ["ACK: received 7 bytes"], str(r)
        if server == "ref":
            srv.wait_for(rf"handshake done \(key {key}\) \(user alice\)$", since=mark)
        else:
            srv.wait_for(rf"^\[INFO\] alice@127\.0\.0\.1:\d+ handshake complete \(key {key}\) \(mode user-key\)$",
                         since=mark)
    generate_key(tmp_path / "third")
    r = run_client(client, srv.port, "never", *client_flags(client, tmp_path), psk=tmp_path / "third")
    assert r.returncode != 0 and replies(r.stdout) == [], str(r)
    srv.wait_for(r"HANDSHAKE_AUTH")


def test_the_reference_server_finds_a_mode_3_key_in_frame_3_of_the_vectors() -> None:
    """PROTOCOL.md 12 on the mode-3 vectors (their wire is the same with several keys): the
    vector's key second in the reference server's list; a list without it fails on frame 3."""
    import json

    from tests.reference.seclink_ref import MODE_USER_KEY, Connection, HandshakeDone, Message, ProtocolError
    v = json.loads((Path(__file__).parents[1] / "vectors" / "seclink_v1_user_key.json").read_text())
    wire = [bytes.fromhex(w["bytes"]) for w in v["wire"]]
    psk, other = bytes.fromhex(v["psk"]), bytes(32 * [0x77])

    def server(psks: list[bytes]) -> Connection:
        s = Connection("server", psks[0], psks=psks, ephemeral=bytes.fromhex(v["server_ephemeral"]),
                       static=bytes.fromhex(v["server_static"]), accepted_modes=[MODE_USER_KEY])
        assert s.receive(wire[0]) == []
        assert s.data_to_send() == wire[1]  # frame 2 does not depend on the PSK
        return s

    s = server([other, psk])
    assert s.receive(wire[2]) == [HandshakeDone()] and s.psk_index == 1
    assert s.receive(wire[3]) == [Message(1, bytes.fromhex(v["wire"][3]["content"]))]
    with pytest.raises(ProtocolError) as e:
        server([other, other]).receive(wire[2])
    assert e.value.name == "HANDSHAKE_AUTH"
