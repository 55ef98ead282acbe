"""Key rotation across languages (docs/PROTOCOL.md section 12): every server, started with two key
files, takes every client holding either key, names in its log the file that matched, and refuses
a key it does not hold; key directories and the limits of the programs' flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reference.seclink_ref import generate_key
from tests.matrix import HANDSHAKE, PAIRS, PAIR_IDS, SERVERS, replies

OURS = ["cpp", "py", "py-asyncio"]


def handshake_line(server: str, key: Path) -> str:
    if server == "ref":
        return rf"^\[INFO\] \S+: handshake done \(key {key}\)$"
    return rf"^\[INFO\] \S+ handshake complete \(key {key}\)$"


@pytest.mark.parametrize(("server", "client"), PAIRS, ids=PAIR_IDS)
def test_server_with_two_keys_takes_clients_of_either(start_server, run_client, keys, tmp_path: Path,
                                                     server: str, client: str) -> None:
    old, new = keys
    srv = start_server(server, "--psk-file", str(new))  # the fixture gives --psk-file old first
    for key in (new, old):
        mark = srv.out.mark()
        r = run_client(client, srv.port, f"with {key.name}", psk=key)
        assert r.returncode == 0, str(r)
        assert replies(r.stdout) == [f"ACK: received {len('with ') + len(key.name)} bytes"], str(r)
        srv.wait_for(handshake_line(server, key), since=mark)
    generate_key(tmp_path / "third")
    r = run_client(client, srv.port, "never", psk=tmp_path / "third")
    assert r.returncode == HANDSHAKE.get(client, 5), str(r)
    srv.wait_for(r"HANDSHAKE_AUTH")
    for key in keys:
        assert key.read_text().strip() not in srv.out.text  # the log names files, never keys


@pytest.mark.parametrize("server", OURS)
def test_a_key_directory_stands_for_its_files_in_name_order(start_server, run_client, keys, tmp_path: Path,
                                                           server: str) -> None:
    d = tmp_path / "keys"
    d.mkdir(mode=0o700)
    generate_key(d / "2025.psk")
    generate_key(d / "2026.psk")
    (d / ".hidden").write_text("not a key\n")  # skipped: its name starts with '.'
    srv = start_server(server, "--psk-file", str(d))
    srv.wait_for(rf"keys {keys[0]}, {d}/2025\.psk, {d}/2026\.psk$")
    r = run_client("cpp", srv.port, "hi", psk=d / "2026.psk")
    assert r.returncode == 0, str(r)
    srv.wait_for(handshake_line(server, d / "2026.psk"))


@pytest.mark.parametrize("server", OURS)
def test_key_list_limits_are_usage_and_key_errors(keys, tmp_path: Path, env, server: str) -> None:  # noqa: F811
    from tools.procs import WAIT, run_to_end
    d = tmp_path / "many"
    d.mkdir(mode=0o700)
    for i in range(17):
        generate_key(d / f"k{i:02}")
    base = [*SERVERS[server], "--port", "0", "--log-file", "-"]
    r = run_to_end([*base, "--psk-file", str(d)], cwd=tmp_path, env=env, input=None, timeout=WAIT)
    assert r.returncode == 2 and "17 key files: a server accepts at most 16 at once" in r.stderr, str(r)
    empty = tmp_path / "empty"
    empty.mkdir(mode=0o700)
    r = run_to_end([*base, "--psk-file", str(empty)], cwd=tmp_path, env=env, input=None, timeout=WAIT)
    assert r.returncode == 3 and "a key directory with no key files in it" in r.stderr, str(r)
    r = run_to_end([*base, "--psk-file", str(keys[0]), "--psk-file", str(tmp_path / "missing")], cwd=tmp_path, env=env,
             input=None, timeout=WAIT)
    assert r.returncode == 3 and f"key file {tmp_path / 'missing'}" in r.stderr, str(r)


@pytest.mark.parametrize("client", ["cpp", "py"])
def test_a_client_takes_one_key(keys, tmp_path: Path, env, client: str) -> None:  # noqa: F811
    from tests.matrix import CLIENTS
    from tools.procs import WAIT, run_to_end
    r = run_to_end([*CLIENTS[client], "127.0.0.1", "1", "x", "--psk-file", str(keys[0]), "--psk-file", str(keys[1])],
                   cwd=tmp_path, env=env, input=None, timeout=WAIT)
    assert r.returncode == 2 and "a client uses one key" in r.stderr, str(r)
