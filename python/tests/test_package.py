"""The seclink package's API: the sans-I/O Connection against the project vectors, the blocking
Client and the native-backed Server, every exception class where it is documented, GIL release
and Ctrl-C. Servers listen on 127.0.0.1 port 0; every wait is bounded."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import seclink
from seclink import (AuthenticationError, Client, ConnectionClosed, Connection, Data, Error, HandshakeComplete,
                     HandshakeError, KeyFileError, MessageTooLarge, NetworkError, Ping, Pong, ProtocolError, Server,
                     Timeout, TLSError)
from seclink import Closed as ClosedEvent

VECTORS = json.loads((Path(__file__).resolve().parents[2] / "interop_tests" / "vectors" / "seclink_v1.json")
                     .read_text(encoding="utf-8"))
WIRE = [bytes.fromhex(e["bytes"]) for e in VECTORS["wire"]]
WAIT = 10.0


def fixed_pair() -> dict[str, Connection]:
    h = bytes.fromhex
    pair = {side: Connection(side, h(VECTORS["psk"]), max_message=VECTORS["max_message"],
                             ephemeral_for_testing=h(VECTORS[f"{side}_ephemeral"])) for side in ("client", "server")}
    for conn in pair.values():
        conn.start()
    return pair


def other(side: str) -> str:
    return "server" if side == "client" else "client"


@pytest.fixture
def psk() -> bytes:
    return os.urandom(32)


class Logs:
    """A log callback that collects lines and lets a test wait for one."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()

    def __call__(self, level: int, line: str) -> None:
        with self._cond:
            self.lines.append(line)
            self._cond.notify_all()

    def wait_for(self, text: str, timeout: float = WAIT) -> str:
        with self._cond:
            ok = self._cond.wait_for(lambda: any(text in line for line in self.lines), timeout)
            assert ok, f"no log line with {text!r} in {timeout} s: {self.lines}"
            return next(line for line in self.lines if text in line)


@pytest.fixture
def serve(psk: bytes) -> Iterator[Callable[..., tuple[Server, Logs]]]:
    """serve(**kw) -> (running Server on 127.0.0.1:0 with `psk`, its Logs); closed at teardown."""
    servers: list[Server] = []

    def start(**kw) -> tuple[Server, Logs]:
        logs = Logs()
        srv = Server("127.0.0.1", 0, psk=kw.pop("psk", psk), log=logs, threads=kw.pop("threads", 2), **kw)
        srv.start()
        servers.append(srv)
        return srv, logs

    yield start
    for srv in servers:
        srv.close()


class RawServer:
    """A listener whose single connection is handled by `fn(sock)` in a thread."""

    def __init__(self, fn: Callable[[socket.socket], None]) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self.thread.start()

    def _run(self, fn: Callable[[socket.socket], None]) -> None:
        sock, _ = self.listener.accept()
        with sock:
            sock.settimeout(WAIT)
            try:
                fn(sock)
            except OSError:
                pass
            self.done.wait(WAIT)  # keep the socket open until the test is done with it

    def close(self) -> None:
        self.done.set()
        self.thread.join(WAIT)
        self.listener.close()


@pytest.fixture
def raw_server() -> Iterator[Callable[[Callable[[socket.socket], None]], RawServer]]:
    made: list[RawServer] = []

    def make(fn: Callable[[socket.socket], None]) -> RawServer:
        made.append(RawServer(fn))
        return made[-1]

    yield make
    for r in made:
        r.close()


def recv_frame(sock: socket.socket) -> bytes:
    head = b""
    while len(head) < 4:
        head += sock.recv(4 - len(head)) or b"!" * 5
    body = b""
    n = int.from_bytes(head[:4], "big")
    while len(body) < n:
        chunk = sock.recv(n - len(body))
        assert chunk, "stream ended mid-frame"
        body += chunk
    return head[:4] + body


def handshake_as_server(sock: socket.socket, psk: bytes) -> Connection:
    conn = Connection("server", psk)
    conn.start()
    assert conn.receive_data(recv_frame(sock)) == [HandshakeComplete()]
    sock.sendall(conn.data_to_send())
    return conn


# ------------------------------------------------------------------------------ sans-I/O Connection

def test_connection_reproduces_the_project_vectors_byte_for_byte() -> None:
    peers = fixed_pair()
    for index, entry in enumerate(VECTORS["wire"]):
        sender, receiver = peers[entry["from"]], peers[other(entry["from"])]
        if entry["kind"] == "transport" and entry["type"] == "DATA":
            sender.send(bytes.fromhex(entry["content"]))
        elif entry["kind"] == "transport" and entry["type"] == "PING":
            sender.send_ping(bytes.fromhex(entry["content"]))
        elif entry["kind"] == "transport" and entry["type"] == "CLOSE":
            sender.close(bytes.fromhex(entry["content"]).decode())
        # handshake frames and the PONG are queued by the engine itself
        assert sender.data_to_send() == WIRE[index], f"wire[{index}]"
        events = receiver.receive_data(WIRE[index])
        if entry["kind"] in ("handshake1", "handshake2"):  # the server is done at frame 1, the client at 2
            assert events == [HandshakeComplete()]
        else:
            content = bytes.fromhex(entry["content"])
            kind = {"DATA": Data, "PING": Ping, "PONG": Pong}.get(entry["type"])
            want = kind(content) if kind else ClosedEvent(content.decode())
            assert events == [want], f"wire[{index}]"
    assert peers["client"].handshake_hash.hex() == peers["server"].handshake_hash.hex() == VECTORS["handshake_hash"]
    assert peers["client"].closed and peers["server"].closed


ERROR_CLASSES = {"AUTH": AuthenticationError, "HANDSHAKE_AUTH": HandshakeError, "BAD_MAGIC": HandshakeError,
                 "BAD_VERSION": HandshakeError, "WEAK_KEY": HandshakeError}


@pytest.mark.parametrize("case", VECTORS["malformed"], ids=[c["name"] for c in VECTORS["malformed"]])
def test_malformed_vector_raises_its_documented_exception(case: dict) -> None:
    peers = fixed_pair()
    for entry, frame in zip(VECTORS["wire"][:case["after"]], WIRE[:case["after"]]):
        peers[other(entry["from"])].receive_data(frame)
    side = peers[case["to"]]
    side.data_to_send()
    with pytest.raises(Error) as raised:
        side.receive_data(bytes.fromhex(case["bytes"]))
        side.receive_eof()
    assert raised.value.name == case["error"]
    assert isinstance(raised.value, ERROR_CLASSES.get(case["error"], ProtocolError))
    assert not any(isinstance(e, Data) for e in getattr(raised.value, "events", []))
    assert side.data_to_send() == b""  # a failed side sends nothing more


def test_connection_send_errors() -> None:
    client = Connection("client", b"k" * 32, max_message=10)
    with pytest.raises(Error) as raised:
        client.send(b"too early")
    assert raised.value.name == "STATE"
    with pytest.raises(ValueError):
        Connection("client", b"short")
    with pytest.raises(ValueError):
        Connection("peer", b"k" * 32)  # type: ignore[arg-type]
    server = Connection("server", b"k" * 32, max_message=10)
    client.start()
    server.start()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    client.send(b"x" * 10)
    with pytest.raises(MessageTooLarge):
        client.send(b"x" * 11)
    with pytest.raises(ProtocolError):
        client.send_ping(b"p" * 65)
    assert server.receive_data(client.data_to_send()) == [Data(b"x" * 10)]


def test_connection_trace_shows_each_frame() -> None:
    psk = os.urandom(32)
    client, server = Connection("client", psk), Connection("server", psk)
    seen: list[str] = []
    client.set_trace(seen.append, "the-server")
    client.start()
    server.start()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    client.send(b"hello")
    server.receive_data(client.data_to_send())
    assert len(seen) == 3
    assert "the-server" in seen[2] and "hello" in seen[2]
    assert psk.hex() not in "".join(seen)


# ------------------------------------------------------------------------------ Client and Server

def test_request_reply_and_ping(serve, psk: bytes) -> None:
    srv, logs = serve()
    with Client("127.0.0.1", srv.port, psk=psk) as c:
        assert c.request(b"hello") == b"ACK: received 5 bytes"
        assert c.request("h\u00e9") == b"ACK: received 3 bytes"  # str goes as UTF-8
        assert c.ping(b"are you there") == b"are you there"
        assert c.request(b"") == b"ACK: received 0 bytes"
        assert srv.sessions == 1
        assert c.peer == f"127.0.0.1:{srv.port}"
    logs.wait_for("disconnected: client closed the session")
    assert any(line.endswith("#2 h\u00e9 (3 bytes)") for line in logs.lines)


def test_echo_of_large_binary_messages(serve, psk: bytes) -> None:
    srv, _ = serve(echo=True)
    blob = os.urandom(1 << 20)
    with Client("127.0.0.1", srv.port, psk=psk) as c:
        assert c.request(blob) == blob
        assert c.request(memoryview(blob)[:3]) == blob[:3]


def test_python_handler_gets_data_and_peer_and_its_reply_is_sent(serve, psk: bytes) -> None:
    calls: list[tuple[bytes, str]] = []

    def handler(data: bytes, peer: str):
        calls.append((data, peer))
        return {b"str": "text reply", b"none": None}.get(data, data[::-1])

    srv, _ = serve(handler=handler)
    with Client("127.0.0.1", srv.port, psk=psk) as c:
        assert c.request(b"abc") == b"cba"
        assert c.request(b"str") == b"text reply"
        assert c.request(b"none") == b""
    assert [d for d, _ in calls] == [b"abc", b"str", b"none"]
    assert all(p.startswith("127.0.0.1:") for _, p in calls)


def test_handler_that_raises_closes_only_that_session_and_is_logged(serve, psk: bytes) -> None:
    def handler(data: bytes, peer: str) -> bytes:
        if data == b"boom":
            raise ValueError("bad input")
        return b"ok"

    srv, logs = serve(handler=handler)
    with Client("127.0.0.1", srv.port, psk=psk) as good, Client("127.0.0.1", srv.port, psk=psk) as bad:
        assert good.request(b"1") == b"ok"
        with pytest.raises(ConnectionClosed) as raised:
            bad.request(b"boom")
        assert raised.value.reason == "server error"
        line = logs.wait_for("the message handler failed")
        assert line.startswith("[WARN] ") and line.endswith("disconnected: the message handler failed: "
                                                            "ValueError: bad input")
        assert good.request(b"2") == b"ok"


def test_handler_returning_an_unusable_reply_closes_the_session(serve, psk: bytes) -> None:
    srv, logs = serve(handler=lambda data, peer: 42)
    with Client("127.0.0.1", srv.port, psk=psk) as c:
        with pytest.raises(ConnectionClosed):
            c.request(b"x")
    assert "unusable reply" in logs.wait_for("the message handler failed")


def test_server_stop_sends_close_to_clients_and_joins(serve, psk: bytes) -> None:
    srv, _ = serve()
    c = Client("127.0.0.1", srv.port, psk=psk)
    assert c.request(b"x")
    srv.close()
    with pytest.raises(ConnectionClosed) as raised:
        c.recv(timeout=WAIT)
    assert raised.value.reason == "server shutting down"
    with pytest.raises(NetworkError) as refused:
        Client("127.0.0.1", srv.port, psk=psk, timeout=2)
    assert refused.value.name == "CONNREFUSED"


def test_serve_forever_returns_when_stopped_from_another_thread(psk: bytes) -> None:
    srv = Server("127.0.0.1", 0, psk=psk)
    t = threading.Thread(target=srv.serve_forever)
    t.start()
    with Client("127.0.0.1", srv.port, psk=psk) as c:
        assert c.request(b"x") == b"ACK: received 1 bytes"
    srv.stop()
    t.join(WAIT)
    assert not t.is_alive()


def test_many_threads_share_one_server(serve, psk: bytes) -> None:
    srv, _ = serve(handler=lambda data, peer: data + b"!")
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            with Client("127.0.0.1", srv.port, psk=psk) as c:
                for i in range(50):
                    assert c.request(f"{n}-{i}") == f"{n}-{i}!".encode()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT * 3)
    assert errors == [] and not any(t.is_alive() for t in threads)


# ------------------------------------------------------------------------------ every exception class

def test_key_file_errors(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError) as missing:
        seclink.load_key(tmp_path / "nope")
    # An API user has no flags: the message says what is wrong in the library's terms.
    assert missing.value.name == "KEY_NOT_FOUND" and "generate a key" in str(missing.value)
    assert "--" not in str(missing.value)
    key = seclink.generate_key(tmp_path / "k")
    assert seclink.load_key(tmp_path / "k") == key and len(key) == 32
    with pytest.raises(KeyFileError) as exists:
        seclink.generate_key(tmp_path / "k")
    assert exists.value.name == "KEY_EXISTS"
    (tmp_path / "k").chmod(0o644)
    with pytest.raises(KeyFileError) as mode:
        Client("127.0.0.1", 9, psk_file=tmp_path / "k")
    assert mode.value.name == "KEY_PERMISSIONS" and str(tmp_path / "k") in str(mode.value)


def test_network_errors(serve, psk: bytes) -> None:
    srv, _ = serve()
    with pytest.raises(NetworkError) as in_use:
        Server("127.0.0.1", srv.port, psk=psk)
    assert in_use.value.name == "ADDRINUSE" and str(srv.port) in str(in_use.value)
    with pytest.raises(NetworkError) as bad_host:
        Client("no-such-host.invalid", 5000, psk=psk, timeout=5)
    assert bad_host.value.name == "RESOLVE"


def test_timeouts_are_timeout_and_builtin_timeout_error(raw_server, psk: bytes) -> None:
    silent = raw_server(lambda sock: None)
    with pytest.raises(TimeoutError) as connecting:
        Client("127.0.0.1", silent.port, psk=psk, timeout=0.3)
    assert isinstance(connecting.value, Timeout) and connecting.value.name == "TIMEDOUT"

    quiet = raw_server(lambda sock: handshake_as_server(sock, psk) and None)
    with Client("127.0.0.1", quiet.port, psk=psk) as c:
        with pytest.raises(Timeout):
            c.recv(timeout=0.2)


def test_wrong_key_is_a_handshake_error(serve, psk: bytes) -> None:
    srv, logs = serve()
    with pytest.raises(HandshakeError) as raised:
        Client("127.0.0.1", srv.port, psk=os.urandom(32))
    assert "different pre-shared key" in str(raised.value) and str(srv.port) in str(raised.value)
    assert logs.wait_for("handshake failed").startswith("[WARN] ")


def test_tampered_reply_is_an_authentication_error(raw_server, psk: bytes) -> None:
    def tamper(sock: socket.socket) -> None:
        conn = handshake_as_server(sock, psk)
        conn.receive_data(recv_frame(sock))
        conn.send(b"reply")
        frame = bytearray(conn.data_to_send())
        frame[20] ^= 0x01
        sock.sendall(bytes(frame))

    srv = raw_server(tamper)
    with Client("127.0.0.1", srv.port, psk=psk) as c:
        with pytest.raises(AuthenticationError) as raised:
            c.request(b"hi")
    assert raised.value.name == "AUTH" and isinstance(raised.value, ProtocolError)
    assert str(srv.port) in str(raised.value)


def test_replayed_reply_is_a_protocol_error(raw_server, psk: bytes) -> None:
    def replay(sock: socket.socket) -> None:
        conn = handshake_as_server(sock, psk)
        conn.receive_data(recv_frame(sock))
        conn.send(b"reply")
        frame = conn.data_to_send()
        sock.sendall(frame + frame)

    srv = raw_server(replay)
    with Client("127.0.0.1", srv.port, psk=psk) as c:
        assert c.request(b"hi") == b"reply"
        with pytest.raises(ProtocolError) as raised:
            c.recv()
    assert raised.value.name == "BAD_COUNTER"


def test_connection_lost_is_connection_closed_without_reason(raw_server, psk: bytes) -> None:
    srv = raw_server(lambda sock: handshake_as_server(sock, psk) and sock.shutdown(socket.SHUT_RDWR))
    with Client("127.0.0.1", srv.port, psk=psk) as c:
        with pytest.raises(ConnectionClosed) as raised:
            c.recv()
    assert raised.value.reason is None and raised.value.name == "PEER_CLOSED"


def test_message_too_large_is_refused_before_sending(serve, psk: bytes) -> None:
    srv, logs = serve(max_message=100)
    with Client("127.0.0.1", srv.port, psk=psk, max_message=100) as c:
        with pytest.raises(MessageTooLarge) as raised:
            c.send(b"x" * 101)
        assert isinstance(raised.value, ValueError)
        assert c.request(b"x" * 100) == b"ACK: received 100 bytes"  # nothing of the refused one was sent
    assert not any("#2" in line for line in logs.lines if line.startswith("[RECV]"))


def test_tls_mismatch_is_a_tls_error(serve, psk: bytes) -> None:
    srv, _ = serve()
    with pytest.raises(TLSError) as raised:
        Client("127.0.0.1", srv.port, psk=psk, tls=True, tls_pin="00" * 32)
    assert raised.value.name.startswith("TLS")


def test_tls_with_a_pin(serve, psk: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    srv, _ = serve(tls=True)
    assert srv.tls_cert_created and srv.tls_cert.startswith(str(tmp_path))
    pin = seclink.keys.certificate_fingerprint(srv.tls_cert)
    with Client("127.0.0.1", srv.port, psk=psk, tls=True, tls_pin=pin) as c:
        assert c.request(b"secret") == b"ACK: received 6 bytes"
    with Client("127.0.0.1", srv.port, psk=psk, tls=True) as c:  # the local server's certificate
        assert c.request(b"x") == b"ACK: received 1 bytes"
    with pytest.raises(TLSError) as wrong:
        Client("127.0.0.1", srv.port, psk=psk, tls=True, tls_pin="ab" * 32)
    assert wrong.value.name == "TLS_PIN"


# ------------------------------------------------------------------------------ GIL and Ctrl-C

def test_gil_is_released_while_a_client_blocks(serve, raw_server, psk: bytes) -> None:
    quiet = raw_server(lambda sock: handshake_as_server(sock, psk) and None)
    blocked = Client("127.0.0.1", quiet.port, psk=psk)
    outcome: list[BaseException] = []

    def wait_long() -> None:
        try:
            blocked.recv(timeout=WAIT)
        except BaseException as e:  # noqa: BLE001
            outcome.append(e)

    t = threading.Thread(target=wait_long)
    t.start()
    srv, _ = serve()
    with Client("127.0.0.1", srv.port, psk=psk) as c:  # this thread keeps running Python meanwhile
        for i in range(100):
            assert c.request(b"x" * i) == f"ACK: received {i} bytes".encode()
    assert t.is_alive()  # the other one is still waiting
    quiet.done.set()  # the quiet server hangs up: recv ends
    t.join(WAIT)
    assert not t.is_alive() and isinstance(outcome[0], ConnectionClosed)


class Interrupted(Exception):
    pass


def test_ctrl_c_interrupts_a_blocked_recv_promptly(raw_server, psk: bytes) -> None:
    quiet = raw_server(lambda sock: handshake_as_server(sock, psk) and None)
    previous = signal.signal(signal.SIGINT, lambda *_: (_ for _ in ()).throw(Interrupted()))
    sent_at: list[float] = []

    def press_ctrl_c() -> None:
        sent_at.append(time.monotonic())
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    timer = threading.Timer(0.3, press_ctrl_c)
    try:
        with Client("127.0.0.1", quiet.port, psk=psk) as c:
            timer.start()
            with pytest.raises(Interrupted):
                c.recv(timeout=None)  # would wait forever
            returned_at = time.monotonic()
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    assert returned_at - sent_at[0] < 1.0


def test_events_yields_each_event_before_a_later_bad_frame_fails() -> None:
    psk = os.urandom(32)
    client, server = Connection("client", psk), Connection("server", psk)
    client.start()
    server.start()
    assert list(server.events(client.data_to_send())) == [HandshakeComplete()]
    client.receive_data(server.data_to_send())
    client.send(b"once")
    frame = client.data_to_send()
    events = server.events(frame + frame)  # the second copy is a replay
    assert next(events) == Data(b"once")
    server.send(b"reply to once")  # queued while the replay is still unread
    with pytest.raises(ProtocolError) as raised:
        next(events)
    assert raised.value.name == "BAD_COUNTER"
    assert client.receive_data(server.data_to_send()) == [Data(b"reply to once")]
