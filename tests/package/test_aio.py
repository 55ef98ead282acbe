"""Tests of seclink.aio: the asyncio client and server, against each other and against the native
seclink.Server / seclink.Client, whose behaviour (replies, exceptions, log lines) they must match.

No pytest-asyncio: each test runs its scenario with `run()` (asyncio.run with an overall deadline).
Servers bind 127.0.0.1 port 0; every wait has a deadline; nothing sleeps to synchronise.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import threading
from array import array
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest

import seclink
from seclink import aio
from seclink.keys import certificate_fingerprint, ensure_self_signed_certificate

WAIT = 5.0  # seconds: the bound for anything that should happen at once
HOST = "127.0.0.1"
PEER = re.compile(r"127\.0\.0\.1:\d+")


def run(scenario: Coroutine[Any, Any, Any], timeout: float = 10.0) -> Any:
    """Runs one test scenario on a fresh event loop, failing it if it takes longer than `timeout`."""
    return asyncio.run(asyncio.wait_for(scenario, timeout))


async def within(awaitable: Awaitable[Any], timeout: float = WAIT) -> Any:
    return await asyncio.wait_for(awaitable, timeout)


class Lines:
    """What a server's log callback received, as (level, line); waitable with a deadline.

    until() is for aio servers (whose callback runs on the event loop); wait() blocks, for native
    servers (whose callback runs on their worker threads)."""

    def __init__(self) -> None:
        self.items: list[tuple[int, str]] = []
        self._cond = threading.Condition()
        self._changed: asyncio.Event | None = None

    def __call__(self, level: int, line: str) -> None:
        with self._cond:
            self.items.append((level, line))
            self._cond.notify_all()
        if self._changed is not None:
            self._changed.set()

    def find(self, pattern: str) -> tuple[int, str] | None:
        return next((item for item in self.items if re.search(pattern, item[1])), None)

    def lines(self) -> list[str]:
        return [line for _, line in self.items]

    async def until(self, pattern: str, timeout: float = WAIT) -> tuple[int, str]:
        async def found() -> tuple[int, str]:
            while (item := self.find(pattern)) is None:
                self._changed = asyncio.Event()
                await self._changed.wait()
            return item
        try:
            return await asyncio.wait_for(found(), timeout)
        except asyncio.TimeoutError:
            pytest.fail(f"no log line matching {pattern!r} in {self.lines()}")

    def wait(self, pattern: str, timeout: float = WAIT) -> tuple[int, str]:
        with self._cond:
            if not self._cond.wait_for(lambda: self.find(pattern) is not None, timeout):
                pytest.fail(f"no log line matching {pattern!r} in {self.lines()}")
            return self.find(pattern)  # type: ignore[return-value]


@pytest.fixture(autouse=True)
def config_home(tmp_path, monkeypatch) -> str:
    """A private config directory (keys, TLS certificates): nothing touches ~/.config."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("SECLINK_PSK_FILE", raising=False)
    return str(tmp_path / "config")


@pytest.fixture
def psk() -> bytes:
    return os.urandom(32)


async def raw_client(port: int, psk: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, seclink.Connection]:
    """A handshaken seclink.Connection over a plain asyncio stream, to send hand-made frames."""
    reader, writer = await asyncio.open_connection(HOST, port)
    conn = seclink.Connection("client", psk)
    conn.start()
    writer.write(conn.data_to_send())
    while not conn.established:
        data = await within(reader.read(65536))
        assert data, "the server closed the connection during the handshake"
        conn.receive_data(data)
    # Key confirmation (PROTOCOL.md 4.1): the PING the engine queued, and its PONG (not delivered).
    writer.write(conn.data_to_send())
    assert conn.receive_data(await within(reader.readexactly(4 + 29))) == []
    return reader, writer, conn


async def raw_server(psk: bytes, misbehave: Callable[[seclink.Connection, asyncio.StreamWriter], None]):
    """A server that completes the handshake, waits for one message, then calls `misbehave` and
    hangs up; for what the aio client does with a broken server."""
    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = seclink.Connection("server", psk)
        conn.start()
        events: list[seclink.Event] = []
        while not any(isinstance(e, seclink.Data) for e in events):
            data = await within(reader.read(65536))
            if not data:
                break
            events += conn.receive_data(data)
            writer.write(conn.data_to_send())
        misbehave(conn, writer)
        await within(writer.drain())
        writer.close()
    return await asyncio.start_server(on_connection, HOST, 0)


# ------------------------------------------------------------------------------ basics

def test_request_reply_and_its_log_lines(psk):
    lines = Lines()

    async def scenario() -> None:
        threads = threading.enumerate()
        async with await aio.serve(host=HOST, port=0, psk=psk, log=lines) as srv:
            assert srv.port > 0 and srv.host == HOST
            async with await aio.connect(HOST, srv.port, psk=psk) as client:
                assert client.peer == f"{HOST}:{srv.port}"
                assert await client.request(b"hello") == b"ACK: received 5 bytes"
                assert srv.sessions == 1
            await lines.until("disconnected")
            assert srv.sessions == 0
        assert threading.enumerate() == threads  # all on the event loop's thread

    run(scenario())
    peer = PEER.search(lines.items[0][1]).group()  # type: ignore[union-attr]
    assert lines.items == [
        (seclink.LOG_INFO, f"[INFO] {peer} connected"),
        (seclink.LOG_INFO, f"[INFO] {peer} handshake complete"),
        (seclink.LOG_MSG, f"[RECV] {peer} #1 hello (5 bytes)"),
        (seclink.LOG_MSG, f"[SEND] {peer} #1 ACK: received 5 bytes (a reply of 21 bytes)"),
        (seclink.LOG_INFO, f"[INFO] {peer} disconnected: client closed the session"),
    ]


@pytest.mark.parametrize("message", [b"", b"x", "héllo wörld ✓", bytes(range(256)), os.urandom(1 << 20)],
                         ids=["empty", "1-byte", "utf8", "binary", "1MiB"])
def test_echo_returns_every_kind_of_message_intact(psk, message):
    async def scenario() -> None:
        async with await aio.serve(host=HOST, port=0, psk=psk, echo=True) as srv:
            async with await aio.connect(HOST, srv.port, psk=psk) as client:
                expected = message.encode() if isinstance(message, str) else message
                assert await client.request(message) == expected

    run(scenario())


def _upper(data: bytes, peer: str) -> bytes:
    return data.upper()


async def _upper_later(data: bytes, peer: str) -> str:
    await asyncio.sleep(0)  # a real suspension point: the reply comes from a coroutine
    return data.decode().upper()


@pytest.mark.parametrize("handler", [_upper, _upper_later], ids=["sync", "async"])
def test_handler_reply(psk, handler):
    lines = Lines()

    async def scenario() -> None:
        async with await aio.serve(HOST, 0, handler=handler, psk=psk, log=lines) as srv:
            async with await aio.connect(HOST, srv.port, psk=psk) as client:
                assert await client.request("shout") == b"SHOUT"
                assert await client.request(b"") == b""

    run(scenario())
    assert any(line.endswith("#2 <empty> (a reply of 0 bytes)") and line.startswith("[SEND]") for line in lines.lines())


def test_serve_takes_the_arguments_of_server_and_still_the_old_order(psk):
    """aio.serve(host, port, handler=...) like seclink.Server(host, port, handler=...); the old
    serve(handler, host, port) still works, with a DeprecationWarning."""
    async def scenario() -> None:
        async with await aio.serve(HOST, 0, handler=_upper, psk=psk) as srv:
            async with await aio.connect(HOST, srv.port, psk=psk) as client:
                assert await client.request("new") == b"NEW"
        with pytest.warns(DeprecationWarning, match="serve\\(host, port, handler=handler\\)"):
            old = await aio.serve(_upper, HOST, 0, psk=psk)
        async with old as srv:
            async with await aio.connect(HOST, srv.port, psk=psk) as client:
                assert await client.request("old") == b"OLD"

    run(scenario())


def test_defaults_read_well_in_help():
    import inspect
    for fn in (seclink.Client.recv, seclink.Client.request, aio.AioClient.recv if hasattr(aio, "AioClient") else None):
        if fn is not None:
            assert "object at 0x" not in str(inspect.signature(fn)), inspect.signature(fn)
    assert "= <the client's timeout>" in str(inspect.signature(seclink.Client.recv))


def test_handler_returning_none_sends_an_empty_reply(psk):
    async def scenario() -> None:
        async with await aio.serve(HOST, 0, handler=lambda data, peer: None, psk=psk) as srv:
            async with await aio.connect(HOST, srv.port, psk=psk) as client:
                assert await client.request(b"anything") == b""

    run(scenario())


def _fail_on_boom(data: bytes, peer: str) -> bytes:
    if data == b"boom":
        raise ValueError("boom")
    return data


async def _fail_on_boom_later(data: bytes, peer: str) -> bytes:
    await asyncio.sleep(0)
    return _fail_on_boom(data, peer)


@pytest.mark.parametrize("handler", [_fail_on_boom, _fail_on_boom_later], ids=["sync", "async"])
def test_failing_handler_closes_only_its_own_session(psk, handler):
    lines = Lines()

    async def scenario() -> None:
        async with await aio.serve(HOST, 0, handler=handler, psk=psk, log=lines) as srv:
            async with await aio.connect(HOST, srv.port, psk=psk) as other, \
                    await aio.connect(HOST, srv.port, psk=psk) as victim:
                with pytest.raises(seclink.ConnectionClosed) as exc:
                    await victim.request(b"boom")
                assert exc.value.reason == "server error"
                level, line = await lines.until("the message handler failed")
                assert level == seclink.LOG_WARN
                assert re.fullmatch(r"\[WARN\] 127\.0\.0\.1:\d+ disconnected: the message handler failed: "
                                    r"ValueError: boom", line)
                assert await other.request(b"still here") == b"still here"

    run(scenario())


def test_message_over_the_limit_is_refused_before_anything_is_sent(psk):
    lines = Lines()

    async def scenario() -> None:
        async with await aio.serve(host=HOST, port=0, psk=psk, log=lines) as srv:
            async with await aio.connect(HOST, srv.port, psk=psk, max_message=1024) as client:
                with pytest.raises(seclink.MessageTooLarge) as exc:
                    await client.send(b"x" * 1025)
                assert exc.value.name == "MSG_TOO_LARGE" and client.peer in str(exc.value)
                # Had the 1025 bytes gone out, the server would have answered them first, as #1.
                assert await client.request(b"ok") == b"ACK: received 2 bytes"

    run(scenario())
    assert [PEER.sub("P", line) for line in lines.lines() if line.startswith("[RECV]")] == ["[RECV] P #1 ok (2 bytes)"]


def test_wrong_psk_is_a_handshake_error_on_both_sides(psk):
    lines = Lines()

    async def scenario() -> None:
        async with await aio.serve(host=HOST, port=0, psk=psk, log=lines) as srv:
            with pytest.raises(seclink.HandshakeError) as exc:
                await aio.connect(HOST, srv.port, psk=os.urandom(32))
            assert exc.value.name == "PEER_CLOSED" and f"{HOST}:{srv.port}" in str(exc.value)
            level, line = await lines.until("disconnected")
            assert level == seclink.LOG_WARN
            assert re.fullmatch(r"\[WARN\] 127\.0\.0\.1:\d+ disconnected: handshake failed: HANDSHAKE_AUTH: "
                                r"handshake authentication failed: the two sides use different pre-shared keys", line)

    run(scenario())


def test_ping_returns_the_pong_and_keeps_messages_for_recv(psk):
    lines = Lines()

    async def scenario() -> None:
        async with await aio.serve(host=HOST, port=0, psk=psk, log=lines) as srv:
            async with await aio.connect(HOST, srv.port, psk=psk) as client:
                await client.send(b"a")                       # its reply arrives before the PONG
                assert await client.ping(b"are you there") == b"are you there"
                assert await client.recv() == b"ACK: received 1 bytes"
                with pytest.raises(seclink.ProtocolError) as exc:
                    await client.ping(b"x" * 65)              # over the 64-byte PING limit
                assert exc.value.name == "BAD_PING"

    run(scenario())
    assert any(re.fullmatch(r"\[RECV\] 127\.0\.0\.1:\d+ PING \(13 bytes\)", line) for line in lines.lines())
    assert any(re.fullmatch(r"\[SEND\] 127\.0\.0\.1:\d+ PONG \(13 bytes\)", line) for line in lines.lines())


def test_the_client_answers_a_ping_from_the_server_while_it_waits_for_a_reply(psk):
    """PROTOCOL.md 5: a PING is answered with a PONG carrying its content. The server below pings
    the client before it replies, and replies only once the PONG has arrived."""
    pongs: list[bytes] = []

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = seclink.Connection("server", psk)
        conn.start()

        async def until(kind: type) -> bool:
            while True:
                data = await within(reader.read(65536))
                if not data:
                    return False
                events = conn.receive_data(data)
                writer.write(conn.data_to_send())
                for e in events:
                    if isinstance(e, kind):
                        if isinstance(e, seclink.Pong):
                            pongs.append(e.data)
                        return True

        try:
            if await until(seclink.Data):
                conn.send_ping(b"are you there")
                writer.write(conn.data_to_send())
                if await until(seclink.Pong):
                    conn.send(b"reply after the pong")
                    writer.write(conn.data_to_send())
                    await within(writer.drain())
        finally:
            writer.close()

    async def scenario() -> None:
        server = await asyncio.start_server(on_connection, HOST, 0)
        async with server:
            async with await aio.connect(HOST, server.sockets[0].getsockname()[1], psk=psk, timeout=WAIT) as client:
                assert await client.request(b"hi") == b"reply after the pong"

    run(scenario(), timeout=3 * WAIT)
    assert pongs == [b"are you there"]


@pytest.mark.parametrize("log_level", [seclink.LOG_WARN, seclink.LOG_INFO, seclink.LOG_MSG])
def test_only_lines_up_to_the_log_level_are_passed(psk, log_level):
    lines = Lines()

    async def scenario() -> None:
        async with await aio.serve(host=HOST, port=0, psk=psk, log=lines, log_level=log_level) as srv:
            async with await aio.connect(HOST, srv.port, psk=psk) as client:
                await client.request(b"counted")
            with pytest.raises(seclink.HandshakeError):
                await aio.connect(HOST, srv.port, psk=os.urandom(32))
            await lines.until("handshake failed")

    run(scenario())
    levels = {level for level, _ in lines.items}
    assert levels == set(range(seclink.LOG_WARN, log_level + 1))


def test_trace_dumps_every_frame_on_both_sides(psk):
    lines, client_trace = Lines(), []

    async def scenario() -> str:
        async with await aio.serve(host=HOST, port=0, psk=psk, log=lines, log_level=seclink.LOG_TRACE) as srv:
            async with await aio.connect(HOST, srv.port, psk=psk, trace=client_trace.append) as client:
                await client.request(b"traced")
                return client.peer

    server_address = run(scenario())
    assert client_trace[0].startswith(f"[TRACE] {server_address} -> sent handshake frame 1")
    traces = [line for level, line in lines.items if level == seclink.LOG_TRACE]
    assert re.match(r"\[TRACE\] 127\.0\.0\.1:\d+ <- received handshake frame 1", traces[0])
    assert any("DATA traced" in t for t in traces)


# ------------------------------------------------------------------------------ against the native code

async def _scripted_session(port: int, psk: bytes) -> None:
    """The same session for the aio and the native server, so that their logs can be compared."""
    client = await aio.connect(HOST, port, psk=psk)
    assert await client.request(b"hello") == b"ACK: received 5 bytes"
    assert await client.request(b"\x00\xff") == b"ACK: received 2 bytes"
    assert await client.ping(b"abc") == b"abc"
    assert await client.request("") == b"ACK: received 0 bytes"
    await client.close("bye")


def test_log_lines_are_those_of_the_native_server(psk):
    native_lines, aio_lines = Lines(), Lines()
    with seclink.Server(HOST, 0, psk=psk, log=native_lines) as native:
        run(_scripted_session(native.port, psk))
        native_lines.wait("disconnected")

    async def against_aio() -> None:
        async with await aio.serve(host=HOST, port=0, psk=psk, log=aio_lines) as srv:
            await _scripted_session(srv.port, psk)
            await aio_lines.until("disconnected")

    run(against_aio())
    normalised = [[(level, PEER.sub("PEER", line)) for level, line in lines.items] for lines in (native_lines, aio_lines)]
    assert normalised[0] == normalised[1]
    assert normalised[1][-1] == (seclink.LOG_INFO, "[INFO] PEER disconnected: client closed the session (bye)")


async def _hang_up_after_handshake(port: int, psk: bytes) -> None:
    _, writer, _ = await raw_client(port, psk)
    writer.close()


async def _end_inside_a_frame(port: int, psk: bytes) -> None:
    _, writer, conn = await raw_client(port, psk)
    conn.send(b"cut short")
    writer.write(conn.data_to_send()[:10])
    writer.close()


async def _not_seclink(port: int, psk: bytes) -> None:
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(b"\x00\x00\x00\x35" + b"GET / HTTP/1.1\r\n".ljust(53, b"x"))
    assert await within(reader.read()) == b""
    writer.close()


async def _oversized_frame(port: int, psk: bytes) -> None:
    reader, writer, _ = await raw_client(port, psk)
    writer.write(b"\xff\xff\xff\xff")
    assert await within(reader.read()) == b""
    writer.close()


async def _close_with_an_unprintable_reason(port: int, psk: bytes) -> None:
    reader, writer, conn = await raw_client(port, psk)
    conn.close("line\nbreak")
    writer.write(conn.data_to_send())
    assert await within(reader.read()) == b""
    writer.close()


@pytest.mark.parametrize("misbehave", [_hang_up_after_handshake, _end_inside_a_frame, _not_seclink,
                                       _oversized_frame, _close_with_an_unprintable_reason],
                         ids=lambda f: f.__name__.strip("_"))
def test_misbehaving_peers_are_logged_as_the_native_server_logs_them(psk, misbehave):
    native_lines, aio_lines = Lines(), Lines()
    with seclink.Server(HOST, 0, psk=psk, log=native_lines) as native:
        run(misbehave(native.port, psk))
        native_lines.wait("disconnected")

    async def against_aio() -> None:
        async with await aio.serve(host=HOST, port=0, psk=psk, log=aio_lines) as srv:
            await misbehave(srv.port, psk)
            await aio_lines.until("disconnected")

    run(against_aio())
    normalised = [[(level, PEER.sub("PEER", line)) for level, line in lines.items] for lines in (native_lines, aio_lines)]
    assert normalised[0] == normalised[1]


def test_aio_client_with_the_native_server(psk):
    with seclink.Server(HOST, 0, psk=psk, handler=_upper) as native:
        async def scenario() -> None:
            async with await aio.connect(HOST, native.port, psk=psk) as client:
                assert await client.request(b"native") == b"NATIVE"
                assert await client.ping(b"p") == b"p"
            with pytest.raises(seclink.HandshakeError):
                await aio.connect(HOST, native.port, psk=os.urandom(32))

        run(scenario())


def test_aio_client_takes_str_and_any_bytes_like_object(psk):
    spaced = bytearray(2 * len(psk))
    spaced[::2] = psk
    with seclink.Server(HOST, 0, psk=psk, echo=True) as native:
        async def scenario() -> None:
            async with await aio.connect(HOST, native.port, psk=memoryview(spaced)[::2]) as client:
                assert await client.request("w\u00f6rld") == "w\u00f6rld".encode()
                assert await client.ping("p\u00f6ng") == "p\u00f6ng".encode()
                assert await client.request(memoryview(b"abcdef")[::-1]) == b"fedcba"
                assert await client.request(memoryview(b"abcdefgh").cast("H")[::-1]) == b"ghefcdab"
                assert await client.request(array("I", [1, 2])) == array("I", [1, 2]).tobytes()
                for call in (client.send, client.request, client.ping):
                    with pytest.raises(TypeError, match="^a message is bytes-like or str, not int$"):
                        await call(5)

        run(scenario())


def test_native_client_with_the_aio_server(psk):
    def native_session(port: int) -> tuple[bytes, bytes]:
        with seclink.Client(HOST, port, psk=psk, timeout=WAIT) as client:
            return client.request(b"from c++"), client.ping(b"p")

    def native_wrong_key(port: int) -> type[BaseException]:
        with pytest.raises(seclink.HandshakeError) as exc:
            seclink.Client(HOST, port, psk=os.urandom(32), timeout=WAIT)
        return exc.type

    async def scenario() -> None:
        async with await aio.serve(HOST, 0, handler=_upper, psk=psk) as srv:
            assert await within(asyncio.to_thread(native_session, srv.port)) == (b"FROM C++", b"p")
            assert await within(asyncio.to_thread(native_wrong_key, srv.port)) is seclink.HandshakeError

    run(scenario())


# ------------------------------------------------------------------------------ limits and misbehaviour

def test_clients_over_max_clients_are_told_the_server_is_full(psk):
    lines = Lines()

    async def scenario() -> None:
        async with await aio.serve(host=HOST, port=0, psk=psk, max_clients=1, log=lines) as srv:
            async with await aio.connect(HOST, srv.port, psk=psk) as first:
                async with await aio.connect(HOST, srv.port, psk=psk) as second:
                    with pytest.raises(seclink.ConnectionClosed) as exc:
                        await second.recv()
                    assert exc.value.reason == "server full: try again later"
                level, line = await lines.until("disconnected")
                assert level == seclink.LOG_WARN
                assert re.fullmatch(r"\[WARN\] 127\.0\.0\.1:\d+ disconnected: refused: server full \(1 clients\)", line)
                assert srv.sessions == 1
                assert await first.request(b"x") == b"ACK: received 1 bytes"
            assert len([line for line in lines.lines() if "handshake complete" in line]) == 1

    run(scenario())


def test_idle_session_is_closed_with_a_reason(psk):
    lines = Lines()

    async def scenario() -> None:
        async with await aio.serve(host=HOST, port=0, psk=psk, idle_timeout=0.3, log=lines) as srv:
            async with await aio.connect(HOST, srv.port, psk=psk) as client:
                with pytest.raises(seclink.ConnectionClosed) as exc:
                    await client.recv(timeout=WAIT)
                assert exc.value.reason == "idle timeout"
            level, line = await lines.until("disconnected")
            assert level == seclink.LOG_INFO and line.endswith(" disconnected: idle for 300 ms")

    run(scenario())


def test_silent_connection_is_dropped_after_the_handshake_timeout(psk):
    lines = Lines()

    async def scenario() -> None:
        async with await aio.serve(host=HOST, port=0, psk=psk, handshake_timeout=0.3, log=lines) as srv:
            reader, writer = await asyncio.open_connection(HOST, srv.port)
            assert await within(reader.read()) == b""   # the server hung up, having sent nothing
            writer.close()
            level, line = await lines.until("disconnected")
            assert level == seclink.LOG_WARN and line.endswith(" disconnected: handshake timed out after 300 ms")

    run(scenario())


def test_tampered_frame_ends_only_that_connection(psk):
    lines = Lines()

    async def scenario() -> None:
        async with await aio.serve(host=HOST, port=0, psk=psk, log=lines) as srv:
            async with await aio.connect(HOST, srv.port, psk=psk) as bystander:
                reader, writer, conn = await raw_client(srv.port, psk)
                conn.send(b"hello")
                frame = bytearray(conn.data_to_send())
                frame[4 + 12] ^= 0x01                      # the first ciphertext byte
                writer.write(frame)
                assert await within(reader.read()) == b""  # dropped, without a reply
                writer.close()
                level, line = await lines.until("protocol error")
                assert level == seclink.LOG_WARN
                assert re.fullmatch(r"\[WARN\] 127\.0\.0\.1:\d+ disconnected: protocol error: AUTH: frame failed "
                                    r"authentication: tampered with, or from another session", line)
                assert await bystander.request(b"fine") == b"ACK: received 4 bytes"
            assert not any(line.startswith("[RECV]") and "hello" in line for line in lines.lines())

    run(scenario())


def test_close_says_goodbye_to_established_sessions_and_drops_the_others(psk):
    lines = Lines()

    async def scenario() -> None:
        srv = await aio.serve(host=HOST, port=0, psk=psk, log=lines)
        client = await aio.connect(HOST, srv.port, psk=psk)
        reader, writer = await asyncio.open_connection(HOST, srv.port)  # never handshakes
        await lines.until("handshake complete")
        await lines.until(f":{writer.get_extra_info('sockname')[1]} connected$")
        await within(srv.close())
        with pytest.raises(seclink.ConnectionClosed) as exc:
            await client.recv()
        assert exc.value.reason == "server shutting down"
        assert await within(reader.read()) == b""
        writer.close()
        await client.close()
        shutdowns = [line for level, line in lines.items if line.endswith("disconnected: server shutting down")]
        assert len(shutdowns) == 2
        with pytest.raises(seclink.NetworkError):
            await aio.connect(HOST, srv.port, psk=psk)

    run(scenario())


def test_serve_forever_stops_and_closes_when_cancelled(psk):
    async def scenario() -> None:
        srv = await aio.serve(host=HOST, port=0, psk=psk)
        serving = asyncio.create_task(srv.serve_forever())
        async with await aio.connect(HOST, srv.port, psk=psk) as client:
            assert await client.request(b"up") == b"ACK: received 2 bytes"
            serving.cancel()
            with pytest.raises(asyncio.CancelledError):
                await within(serving)
            with pytest.raises(seclink.ConnectionClosed) as exc:
                await client.recv()
            assert exc.value.reason == "server shutting down"

    run(scenario())


# ------------------------------------------------------------------------------ client errors

def test_connection_refused_is_a_network_error(psk):
    with socket.socket() as reserved:                 # bound, not listening: connections are refused
        reserved.bind((HOST, 0))
        port = reserved.getsockname()[1]
        with pytest.raises(seclink.NetworkError) as exc:
            run(aio.connect(HOST, port, psk=psk))
    assert exc.value.name == "CONNREFUSED" and f"{HOST}:{port}" in str(exc.value)


def test_server_that_never_answers_is_a_timeout(psk):
    async def scenario() -> None:
        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await within(reader.read())             # until the client gives up
            writer.close()
        server = await asyncio.start_server(silent, HOST, 0)
        async with server:
            port = server.sockets[0].getsockname()[1]
            with pytest.raises(seclink.Timeout) as exc:
                await aio.connect(HOST, port, psk=psk, timeout=0.2)
            assert exc.value.name == "TIMEDOUT" and "cannot connect" in str(exc.value)

    run(scenario())


def _tamper_reply(conn: seclink.Connection, writer: asyncio.StreamWriter) -> None:
    conn.send(b"reply")
    frame = bytearray(conn.data_to_send())
    frame[-1] ^= 0x01                                   # the last tag byte
    writer.write(frame)


def _hang_up(conn: seclink.Connection, writer: asyncio.StreamWriter) -> None:
    pass                                                # closes without a CLOSE


def _cut_reply_short(conn: seclink.Connection, writer: asyncio.StreamWriter) -> None:
    conn.send(b"reply")
    writer.write(conn.data_to_send()[:10])              # then closes inside the frame


@pytest.mark.parametrize("misbehaviour, error, name", [(_tamper_reply, seclink.AuthenticationError, "AUTH"),
                                                      (_hang_up, seclink.ConnectionClosed, "PEER_CLOSED"),
                                                      (_cut_reply_short, seclink.ProtocolError, "TRUNCATED")],
                         ids=["tampered-reply", "hang-up", "truncated-reply"])
def test_broken_server_errors(psk, misbehaviour, error, name):
    async def scenario() -> None:
        server = await raw_server(psk, misbehaviour)
        async with server:
            async with await aio.connect(HOST, server.sockets[0].getsockname()[1], psk=psk) as client:
                with pytest.raises(error) as exc:
                    await client.request(b"hi")
                assert exc.value.name == name and client.peer in str(exc.value)

    run(scenario())


# ------------------------------------------------------------------------------ TLS

def test_tls_with_the_default_trust(psk, config_home):
    lines = Lines()

    async def scenario() -> None:
        async with await aio.serve(host=HOST, port=0, psk=psk, tls=True, log=lines) as srv:
            assert srv.tls_cert_created and srv.tls_cert == os.path.join(config_home, "seclink", "tls", "cert.pem")
            async with await aio.connect(HOST, srv.port, psk=psk, tls=True) as client:
                assert await client.request(b"secret") == b"ACK: received 6 bytes"
            with pytest.raises(seclink.TLSError) as exc:   # no <dir>/tls/cert.pem there: nothing to trust
                await aio.connect(HOST, srv.port, psk=psk, tls=True, tls_trust_dir=config_home)
            assert exc.value.code == 54

    run(scenario())
    assert any(line.endswith("handshake complete") for line in lines.lines())


def test_tls_pin_must_match_the_certificate(psk):
    async def scenario() -> None:
        async with await aio.serve(host=HOST, port=0, psk=psk, tls=True) as srv:
            pin = certificate_fingerprint(srv.tls_cert)
            colons = ":".join(pin[i:i + 2] for i in range(0, 64, 2))
            async with await aio.connect(HOST, srv.port, psk=psk, tls=True, tls_pin=colons,
                                         tls_trust_dir="/nonexistent") as client:
                assert await client.request(b"pinned") == b"ACK: received 6 bytes"
            wrong = ("0" if pin[0] != "0" else "1") + pin[1:]
            with pytest.raises(seclink.TLSError) as exc:
                await aio.connect(HOST, srv.port, psk=psk, tls=True, tls_pin=wrong)
            assert (exc.value.code, exc.value.name) == (49, "TLS_PIN")

    run(scenario())


def test_certificate_from_an_unknown_ca_is_refused_and_the_server_told(psk, tmp_path):
    lines = Lines()
    other_ca, _, _ = ensure_self_signed_certificate(str(tmp_path / "other.pem"), str(tmp_path / "other.key"))

    async def scenario() -> None:
        async with await aio.serve(host=HOST, port=0, psk=psk, tls=True, log=lines) as srv:
            with pytest.raises(seclink.TLSError) as exc:
                await aio.connect(HOST, srv.port, psk=psk, tls=True, tls_ca=other_ca)
            assert exc.value.name == "TLS_VERIFY"
            level, line = await lines.until("disconnected")
            assert level == seclink.LOG_WARN
            assert line.endswith(" disconnected: TLS handshake failed: tlsv1 alert unknown ca")

    run(scenario())


def test_plain_client_meeting_a_tls_server(psk):
    lines = Lines()

    async def scenario() -> None:
        async with await aio.serve(host=HOST, port=0, psk=psk, tls=True, log=lines) as srv:
            with pytest.raises(seclink.TLSError) as exc:
                await aio.connect(HOST, srv.port, psk=psk)
            assert exc.value.name == "TLS_UNEXPECTED"
            level, line = await lines.until("disconnected")
            assert level == seclink.LOG_WARN
            assert line.endswith(" disconnected: client is not using TLS (plain seclink/1?) but this server "
                                 "requires TLS")

    run(scenario())


def test_tls_client_meeting_a_plain_server(psk):
    lines = Lines()

    async def scenario() -> None:
        async with await aio.serve(host=HOST, port=0, psk=psk, log=lines) as srv:
            with pytest.raises(seclink.TLSError) as exc:
                await aio.connect(HOST, srv.port, psk=psk, tls=True, tls_pin="00" * 32)
            assert exc.value.name == "TLS_EXPECTED"
            level, line = await lines.until("disconnected")
            assert level == seclink.LOG_WARN
            assert line.endswith(" disconnected: client is speaking TLS but this server does not use TLS")

    run(scenario())


def test_tls_interworks_with_the_native_client_and_server(psk):
    with seclink.Server(HOST, 0, psk=psk, tls=True) as native:
        async def aio_client() -> bytes:
            async with await aio.connect(HOST, native.port, psk=psk, tls=True) as client:
                return await client.request(b"to c++")
        assert run(aio_client()) == b"ACK: received 6 bytes"

    def native_client(port: int) -> bytes:
        with seclink.Client(HOST, port, psk=psk, tls=True, timeout=WAIT) as client:
            return client.request(b"from c++")

    async def aio_server() -> bytes:
        async with await aio.serve(host=HOST, port=0, psk=psk, tls=True) as srv:
            return await within(asyncio.to_thread(native_client, srv.port))
    assert run(aio_server()) == b"ACK: received 8 bytes"
