"""Key users in the package (docs/PROTOCOL.md 15): the handler of seclink.Server and seclink.aio
sees who it serves (peer NAME@host:port), reload_users() revokes, and a mode-2 client checks the
server's key."""

from __future__ import annotations

import asyncio
import base64
import os

import pytest
from test_aio import HOST, Lines, run

import seclink
from seclink import aio
from seclink.keys import public_key


@pytest.fixture(autouse=True)
def config_home(tmp_path, monkeypatch) -> str:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("SECLINK_PSK_FILE", raising=False)
    return str(tmp_path / "config")


@pytest.mark.parametrize("kind", ["native", "aio"])
def test_the_handler_sees_the_user_and_reload_revokes(tmp_path, kind):
    psk, server_priv, alice = os.urandom(32), os.urandom(32), os.urandom(32)
    users = tmp_path / "authorized_keys"
    users.write_text(f"alice {base64.b64encode(public_key(alice)).decode()}\n")
    lines = Lines()
    opts = dict(psk=psk, server_key=server_priv, authorized_keys=users, log=lines,
                handler=lambda data, peer: f"{peer.split('@')[0]} said {data.decode()}")

    async def scenario() -> None:
        if kind == "aio":
            srv = await aio.serve(HOST, 0, **opts)
        else:
            srv = seclink.Server(HOST, 0, **opts)
            srv.start()
        try:
            c = await aio.connect(HOST, srv.port, psk=psk, mode="user-key", server_key=public_key(server_priv),
                                  identity=alice)
            assert await c.request(b"hi") == b"alice said hi"
            await c.close()
            users.write_text("")
            srv.reload_users()
            c = await aio.connect(HOST, srv.port, psk=psk, mode="user-key", server_key=public_key(server_priv),
                                  identity=alice)
            with pytest.raises(seclink.ConnectionClosed, match="unknown user"):
                await c.recv()
            await c.close()
        finally:
            if kind == "aio":
                await srv.close()
            else:
                srv.close()

    run(scenario())
    assert any("alice@127.0.0.1:" in line and "handshake complete (mode user-key)" in line for line in lines.lines())
    assert any("refused: unknown user" in line for line in lines.lines())


def test_a_mode_2_client_checks_the_server_key():
    psk, server_priv = os.urandom(32), os.urandom(32)
    with seclink.Server(HOST, 0, psk=psk, server_key=server_priv) as srv:  # started by `with`
        with seclink.Client(HOST, srv.port, psk=psk, mode="server-key", server_key=public_key(server_priv)) as c:
            assert c.request(b"x") == b"ACK: received 1 bytes" and c.server_key == public_key(server_priv)
        with pytest.raises(seclink.HandshakeError) as e:
            seclink.Client(HOST, srv.port, psk=psk, mode="server-key", server_key=os.urandom(32))
        assert e.value.name == "SERVER_KEY_CHANGED" and e.value.server_key == public_key(server_priv)
    with seclink.Server(HOST, 0, psk=psk, modes=["psk"]) as srv:
        with pytest.raises(seclink.HandshakeError) as e:
            seclink.Client(HOST, srv.port, psk=psk, mode="server-key")
        assert e.value.name == "MODE_REFUSED" and e.value.server_modes == ["psk"]


@pytest.mark.parametrize("kind", ["native", "aio"])
def test_password_users_in_the_package(tmp_path, kind):
    from seclink.keys import add_user
    psk, server_priv = os.urandom(32), os.urandom(32)
    users = tmp_path / "users"
    add_user(users, "bob", "pw")
    opts = dict(psk=psk, server_key=server_priv, password_users=users, handler=lambda data, peer: peer.split("@")[0])

    async def scenario() -> None:
        srv = await aio.serve(HOST, 0, **opts) if kind == "aio" else seclink.Server(HOST, 0, **opts)
        if kind != "aio":
            srv.start()
        try:
            c = await aio.connect(HOST, srv.port, psk=psk, mode="password", server_key=public_key(server_priv),
                                  user="bob", password="pw")
            assert await c.request(b"who am i") == b"bob"
            await c.close()
            def wrong() -> None:  # the blocking client, off the event loop the aio server runs on
                with seclink.Client(HOST, srv.port, psk=psk, mode="password", server_key=public_key(server_priv),
                                    user="bob", password=b"nope") as c2:
                    with pytest.raises(seclink.ConnectionClosed, match="wrong user or password"):
                        c2.request(b"x")
            await asyncio.to_thread(wrong)
        finally:
            if kind == "aio":
                await srv.close()
            else:
                srv.close()

    run(scenario(), timeout=20)
