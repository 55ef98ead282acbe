"""Server identity across languages (docs/PROTOCOL.md section 14): mode 2 between every server and
every client; the known-servers decision of our clients (a key given by fingerprint, trust on
first use, an unknown key refused without a terminal, a changed key refused with a warning); a
server that does not accept the mode names the modes it does."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from tests.reference.seclink_ref import fingerprint, generate_key, public_bytes
from tests.matrix import CLIENTS, PAIR_IDS, PAIRS, replies

OUR_CLIENTS = ["cpp", "py", "aio"]
OUR_SERVERS = ["cpp", "py", "py-asyncio"]


@pytest.fixture
def server_key(tmp_path: Path, keys) -> bytes:  # noqa: F811
    """The static key every server of a test uses: the file our servers find beside the PSK."""
    priv = generate_key(tmp_path / "server_key")
    return public_bytes(X25519PrivateKey.from_private_bytes(priv))


def mode2(client: str, tmp_path: Path, *flags: str) -> list[str]:
    return ["--mode", "server-key", "--known-servers", str(tmp_path / "known"), *flags]


@pytest.mark.parametrize(("server", "client"), PAIRS, ids=PAIR_IDS)
def test_mode_2_between_every_server_and_client(start_server, run_client, server_key, tmp_path: Path,
                                                server: str, client: str) -> None:
    srv = start_server(server, *(["--server-key-file", str(tmp_path / "server_key")] if server == "ref" else []))
    if server != "ref":
        srv.wait_for(rf"^\[INFO\] Server key {tmp_path}/server_key, fingerprint {fingerprint(server_key)}$")
        srv.wait_for(r"^\[INFO\] Handshake modes accepted: psk, server-key$")
    if client == "ref":
        r = run_client(client, srv.port, "first", "--server-public-key", server_key.hex())
        assert r.returncode == 0 and replies(r.stdout) == ["ACK: received 5 bytes"], str(r)
        return
    r = run_client(client, srv.port, "first", *mode2(client, tmp_path, "--server-key", fingerprint(server_key).lower()))
    assert r.returncode == 0 and replies(r.stdout) == ["ACK: received 5 bytes"], str(r)
    assert f"to the known servers in {tmp_path / 'known'}" in r.stdout, str(r)
    assert "Noise NXpsk2, server key verified" in r.stdout
    r = run_client(client, srv.port, "again", *mode2(client, tmp_path))  # now known: no flag needed
    assert r.returncode == 0 and replies(r.stdout) == ["ACK: received 5 bytes"], str(r)
    assert "known servers" not in r.stdout
    if server != "ref":
        assert len(srv.out.matching(r"handshake complete \(mode server-key\)$")) == 2


@pytest.mark.parametrize("client", OUR_CLIENTS)
def test_unknown_key_refused_without_a_terminal_then_trusted_on_first_use(start_server, run_client, server_key,
                                                                          tmp_path: Path, client: str) -> None:
    srv = start_server("cpp")
    fp = fingerprint(server_key)
    r = run_client(client, srv.port, "secret", *mode2(client, tmp_path))
    assert r.returncode == 5 and "[SERVER_KEY_UNKNOWN]" in r.stderr and f"--server-key {fp}" in r.stderr, str(r)
    assert replies(r.stdout) == [] and not (tmp_path / "known").exists()
    wrong = fp.replace(fp[0], "A" if fp[0] != "A" else "B", 1)
    r = run_client(client, srv.port, "secret", *mode2(client, tmp_path, "--server-key", wrong))
    assert r.returncode == 5 and f"has the key {fp}, not the one given with --server-key" in r.stderr, str(r)
    r = run_client(client, srv.port, "hi", *mode2(client, tmp_path, "--trust-on-first-use"))
    assert r.returncode == 0 and replies(r.stdout) == ["ACK: received 2 bytes"], str(r)
    line = (tmp_path / "known").read_text()
    assert line.startswith(f"127.0.0.1:{srv.port} ") and (tmp_path / "known").stat().st_mode & 0o777 == 0o600
    srv.wait_for(r"handshake complete \(mode server-key\)$")
    assert srv.out.matching("RECV") and all("secret" not in m.string for m in srv.out.matching("RECV"))


@pytest.mark.parametrize("client", OUR_CLIENTS)
def test_a_changed_key_is_refused_with_a_warning(start_server, run_client, server_key, tmp_path: Path,
                                                client: str) -> None:
    srv = start_server("cpp")
    other = public_bytes(X25519PrivateKey.generate())
    import base64
    (tmp_path / "known").write_text(f"# servers\n127.0.0.1:{srv.port} {base64.b64encode(other).decode()}\n")
    (tmp_path / "known").chmod(0o600)
    r = run_client(client, srv.port, "secret", *mode2(client, tmp_path, "--trust-on-first-use"))
    assert r.returncode == 5 and "[SERVER_KEY_CHANGED]" in r.stderr, str(r)
    assert "WARNING: THE SERVER'S KEY HAS CHANGED!" in r.stderr
    assert f"fingerprint {fingerprint(server_key)}" in r.stderr and f"fingerprint {fingerprint(other)}" in r.stderr
    assert f"delete line 2 of {tmp_path / 'known'}" in r.stderr
    assert replies(r.stdout) == [] and "secret" not in srv.out.text


@pytest.mark.parametrize("server", [*OUR_SERVERS, "ref"])
@pytest.mark.parametrize("client", OUR_CLIENTS)
def test_a_mode_the_server_does_not_accept_is_named_with_those_it_does(start_server, run_client, tmp_path: Path,
                                                                       keys, server: str, client: str) -> None:  # noqa: F811
    srv = start_server(server, *(["--modes", "psk"] if server != "ref" else []))
    r = run_client(client, srv.port, "hi", *mode2(client, tmp_path, "--trust-on-first-use"))
    assert r.returncode == 5, str(r)
    assert ("the server at 127.0.0.1:%d accepts only the modes: psk; this client asked for server-key" % srv.port
            in r.stderr and "[MODE_REFUSED]" in r.stderr), str(r)
    if server != "ref":
        srv.wait_for(r"handshake failed: BAD_VERSION: .* \(this server accepts: psk\)$")
        assert not (tmp_path / "server_key").exists(), "no server key without the server-key mode"


@pytest.mark.parametrize("client", ["cpp", "py"])
def test_at_a_terminal_an_unknown_key_is_shown_and_asked_about(start_server, server_key, tmp_path: Path, env,  # noqa: F811
                                                               keys, client: str) -> None:  # noqa: F811
    """Standard input and error on a terminal (a pty): the fingerprint is shown and the answer
    read; 'no' refuses (nothing recorded), 'yes' records the key and connects."""
    import os
    import pty
    import select
    import subprocess
    srv = start_server("cpp")
    argv = [*CLIENTS[client], "127.0.0.1", str(srv.port), "hi", "--psk-file", str(keys[0]), "--log-file", "-",
            *mode2(client, tmp_path)]
    for answer, code in (("no", 5), ("yes", 0)):
        leader, follower = pty.openpty()
        proc = subprocess.Popen(argv, stdin=follower, stdout=subprocess.PIPE, stderr=follower, env=env, cwd=tmp_path)
        os.close(follower)
        seen = b""
        while b"Trust it (yes/no)? " not in seen:
            ready, _, _ = select.select([leader], [], [], 10)
            assert ready, seen
            seen += os.read(leader, 4096)
        assert f"Its key fingerprint is {fingerprint(server_key)}.".encode() in seen
        os.write(leader, answer.encode() + b"\n")
        out, _ = proc.communicate(timeout=10)
        os.close(leader)
        assert proc.returncode == code, (answer, out, seen)
        assert (tmp_path / "known").exists() == (answer == "yes")
    assert b"ACK: received 2 bytes" in out
