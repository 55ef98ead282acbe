"""Closing the stream (docs/PROTOCOL.md 5): a client whose write fails because the server has
closed still reports the server's CLOSE, which arrived before the failure. The server here is a
rude one built on the reference implementation: after the handshake it sends CLOSE "go away" and
resets the connection (SO_LINGER 0) instead of the lingering close our servers do, so the client's
next write fails for certain; the CLOSE is still in the client's receive buffer."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import threading

import pytest

import seclink
from tests.reference.seclink_ref import Connection, Message
from seclink import aio

PSK = os.urandom(32)


def rude_server() -> tuple[int, threading.Thread]:
    """Listens on a free port; serves one client: handshake, its key-confirmation PING, then
    CLOSE "go away" and a reset."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with listener:
            sock, _ = listener.accept()
        with sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # the CLOSE leaves before the reset
            conn = Connection("server", PSK)
            confirmed = False
            while not confirmed:
                data = sock.recv(65536)
                assert data, "the client went away during the handshake"
                confirmed = any(isinstance(e, Message) for e in conn.receive(data))
                sock.sendall(conn.data_to_send())
            conn.close("go away")
            sock.sendall(conn.data_to_send())
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = reset

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener.getsockname()[1], thread


def test_the_native_client_reports_the_close_that_came_before_its_failed_write() -> None:
    port, server = rude_server()
    with seclink.Client("127.0.0.1", port, psk=PSK, timeout=10) as c:
        server.join(10)
        assert not server.is_alive()
        c.send("after the reset")  # the write fails; what the server said is the answer
        with pytest.raises(seclink.ConnectionClosed) as info:
            c.recv()
        assert info.value.reason == "go away"


def test_the_asyncio_client_reports_the_close_that_came_before_its_failed_write() -> None:
    port, server = rude_server()

    async def scenario() -> None:
        c = await aio.connect("127.0.0.1", port, psk=PSK, timeout=10)
        try:
            await asyncio.get_running_loop().run_in_executor(None, server.join, 10)
            await c.send("after the reset")  # the write fails; what the server said is the answer
            with pytest.raises(seclink.ConnectionClosed) as info:
                await c.recv()
            assert info.value.reason == "go away"
        finally:
            await c.close()

    asyncio.run(scenario())

