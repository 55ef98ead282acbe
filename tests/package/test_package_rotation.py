"""Key rotation in the package (docs/PROTOCOL.md section 12): the native engine and the reference
implementation against the rotation vectors, and seclink.Server / seclink.aio with several keys."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

import seclink
from seclink import _seclink, aio
from seclink.keys import generate_key, resolve_psks

from test_aio import HOST, Lines, run

VECTORS = Path(__file__).resolve().parents[2] / "tests" / "vectors" / "seclink_v1_rotation.json"


@pytest.fixture(autouse=True)
def config_home(tmp_path, monkeypatch) -> str:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("SECLINK_PSK_FILE", raising=False)
    return str(tmp_path / "config")


def test_the_native_engine_reproduces_the_rotation_vectors():
    v = json.loads(VECTORS.read_text())
    keys = b"".join(bytes.fromhex(k) for k in v["psks"])
    server = _seclink.Connection(1, keys[:32], ephemeral=bytes.fromhex(v["server_ephemeral"]))
    server.set_psks(keys)
    server.start()
    event, _, rc = server.feed_one(bytes.fromhex(v["frame1"]), 0)
    assert rc == 0 and event[0] == 1  # SL_EVENT_HANDSHAKE_DONE
    assert server.psk_index == v["client_psk_index"]
    assert server.data_to_send().hex() == v["frame2"]
    assert server.handshake_hash().hex() == v["handshake_hash"]
    stranger = _seclink.Connection(1, keys[:32])
    stranger.set_psks(keys)
    stranger.start()
    _, _, rc = stranger.feed_one(bytes.fromhex(v["frame1_no_key"]), 0)
    assert _seclink.errname(rc) == v["frame1_no_key_error"] and stranger.psk_index == -1


def test_the_reference_implementation_reproduces_the_rotation_vectors():
    from tests.reference import make_vectors
    assert make_vectors.render(make_vectors.build_rotation_vectors()) == VECTORS.read_text(encoding="utf-8")


def test_resolve_psks_takes_lists_and_directories(tmp_path):
    d = tmp_path / "keys"
    d.mkdir(mode=0o700)
    b = generate_key(d / "b")
    a = generate_key(d / "a")
    keys, names = resolve_psks(None, d)
    assert bytes(keys) == a + b and names == [str(d / "a"), str(d / "b")]
    keys, names = resolve_psks([b, a], None)
    assert bytes(keys) == b + a and names is None
    with pytest.raises(ValueError, match="1 to 16 keys"):
        resolve_psks([a] * 17, None)
    empty = tmp_path / "empty"
    empty.mkdir(mode=0o700)
    with pytest.raises(seclink.KeyFileError, match="no key files"):
        resolve_psks(None, empty)


@pytest.mark.parametrize("kind", ["native", "aio"])
def test_a_server_with_two_key_files_names_the_one_each_session_used(tmp_path, kind):
    old, new = tmp_path / "old.psk", tmp_path / "new.psk"
    k_old, k_new = generate_key(old), generate_key(new)
    lines = Lines()

    async def scenario() -> None:
        if kind == "aio":
            srv = await aio.serve(HOST, 0, psk_file=[old, new], log=lines)
        else:
            srv = seclink.Server(HOST, 0, psk_file=[old, new], log=lines)
            srv.start()
        try:
            for key, path in ((k_new, new), (k_old, old)):
                async with await aio.connect(HOST, srv.port, psk=key) as client:
                    assert await client.request(b"hi") == b"ACK: received 2 bytes"
                if kind == "aio":
                    await lines.until(rf"handshake complete \(key {path}\)$")
                else:
                    await asyncio.to_thread(lines.wait, rf"handshake complete \(key {path}\)$")
            with pytest.raises(seclink.HandshakeError):
                await aio.connect(HOST, srv.port, psk=os.urandom(32))
        finally:
            if kind == "aio":
                await srv.close()
            else:
                srv.close()

    run(scenario())
    assert not any(k_old.hex() in line or k_new.hex() in line for line in lines.lines())
