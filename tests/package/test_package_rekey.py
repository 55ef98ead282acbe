"""Rekeying in the package (docs/PROTOCOL.md section 13): Connection.rekey(), the byte threshold,
and Client / AioClient .rekey() against the native and asyncio servers."""

from __future__ import annotations

import os

import pytest
from test_aio import HOST, Lines, run

import seclink
from seclink import aio


@pytest.fixture(autouse=True)
def config_home(tmp_path, monkeypatch) -> str:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("SECLINK_PSK_FILE", raising=False)
    return str(tmp_path / "config")


def pair(psk: bytes, **kw) -> tuple[seclink.Connection, seclink.Connection]:
    c, s = seclink.Connection("client", psk, **kw), seclink.Connection("server", psk, **kw)
    c.start()
    s.start()
    s.receive_data(c.data_to_send())
    c.receive_data(s.data_to_send())
    s.receive_data(c.data_to_send())  # the key-confirmation PING
    c.receive_data(s.data_to_send())
    return c, s


def test_rekey_on_request_and_past_the_threshold():
    c, s = pair(os.urandom(32), rekey_bytes=100)
    c.rekey()
    assert s.receive_data(c.data_to_send()) == []  # a KEY_UPDATE is never an event
    assert (c.rekeys, s.rekeys) == ((1, 0), (0, 1))
    for i in range(5):  # 1 + 50 + 16 = 67 bytes a message: a KEY_UPDATE after every second one
        c.send(b"m" * 50)
        [event] = s.receive_data(c.data_to_send())
        assert event.data == b"m" * 50
    assert (c.rekeys, s.rekeys) == ((3, 0), (0, 3))
    with pytest.raises(seclink.Error, match=r"\[INVAL\]"):
        seclink.Connection("client", os.urandom(32), rekey_bytes=0)


@pytest.mark.parametrize("kind", ["native", "aio"])
def test_clients_rekey_on_request_and_the_server_follows(kind):
    psk = os.urandom(32)
    lines = Lines()

    async def scenario() -> None:
        async with await aio.serve(HOST, 0, psk=psk, log=lines, log_level=seclink.LOG_TRACE, rekey_bytes=200) as srv:
            if kind == "aio":
                async with await aio.connect(HOST, srv.port, psk=psk) as client:
                    assert await client.request(b"before") == b"ACK: received 6 bytes"
                    await client.rekey()
                    for i in range(4):
                        assert await client.request(b"after %d" % i) == b"ACK: received 7 bytes"
            else:
                import asyncio

                def blocking() -> None:
                    with seclink.Client(HOST, srv.port, psk=psk) as client:
                        assert client.request(b"before") == b"ACK: received 6 bytes"
                        client.rekey()
                        for i in range(4):
                            assert client.request(b"after %d" % i) == b"ACK: received 7 bytes"
                await asyncio.to_thread(blocking)
            await lines.until("disconnected")

    run(scenario())
    frames = [line for line in lines.lines() if line.startswith("[TRACE]")]
    updates = [f.splitlines()[0] for f in frames if "KEY_UPDATE" in f]
    # One from the client (requested), and the server's own past 200 bytes: PONG 17 + 5 replies
    # of 38 or 39 bytes (under the threshold after 4, over it after the 5th).
    assert len(updates) == 2, frames
    assert "<- received" in updates[0] and "-> sent" in updates[1], updates
