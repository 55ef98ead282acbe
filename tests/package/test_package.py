"""The seclink package's API: the sans-I/O Connection against the project vectors, the blocking
Client and the native-backed Server, every exception class where it is documented, GIL release
and Ctrl-C, bytes-like objects of every shape and str at every entry point, one Client shared by
many threads. Servers listen on 127.0.0.1 port 0; every wait is bounded."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
from array import array
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import seclink
from seclink import _seclink
from seclink import (AuthenticationError, Client, ConnectionClosed, Connection, Data, Error, HandshakeComplete,
                     HandshakeError, KeyFileError, MessageTooLarge, NetworkError, Ping, Pong, ProtocolError, Server,
                     Timeout, TLSError)
from seclink import Closed as ClosedEvent

VECTORS = json.loads((Path(__file__).resolve().parents[2] / "tests" / "vectors" / "seclink_v1.json")
                     .read_text(encoding="utf-8"))
WIRE = [bytes.fromhex(e["bytes"]) for e in VECTORS["wire"]]
WAIT = 10.0


def fixed_pair() -> dict[str, Connection]:
    """The vectors' `wire` session: its client sends no key-confirmation PING (PROTOCOL.md 4.1)."""
    h = bytes.fromhex
    pair = {side: Connection(side, h(VECTORS["psk"]), max_message=VECTORS["max_message"],
                             ephemeral_for_testing=h(VECTORS[f"{side}_ephemeral"]),
                             key_confirmation=side == "server") for side in ("client", "server")}
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
    # The key-confirmation PING went first; the refusals queued nothing.
    assert server.receive_data(client.data_to_send()) == [Ping(b""), Data(b"x" * 10)]


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
    assert len(seen) == 4  # frame 1, frame 2, the key-confirmation PING, hello
    assert "PING" in seen[2] and "the-server" in seen[3] and "hello" in seen[3]
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


def test_default_worker_count_is_one_per_cpu_less_one(psk: bytes) -> None:
    assert _seclink.default_threads() == max(1, len(os.sched_getaffinity(0)) - 1)
    tasks = lambda: len(os.listdir("/proc/self/task"))  # noqa: E731 (one entry per thread, native ones too)
    srv = Server("127.0.0.1", 0, psk=psk)  # threads=0: the default
    before = tasks()
    srv.start()
    try:
        assert tasks() - before == _seclink.default_threads()
    finally:
        srv.stop()
        srv.wait()
    assert tasks() == before


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


def test_ctrl_c_interrupts_a_blocked_recv(raw_server, psk: bytes) -> None:
    """Client.recv checks for signals while it waits: Ctrl-C raises out of recv itself. No clock
    is read: Ctrl-C is pressed every 50 ms; after 100 presses unheard the server sends a message,
    and a press heard only once that message is on its way (after recv returned, as it would be
    were recv deaf to signals) does not count."""
    armed, late, give_up, done = threading.Event(), threading.Event(), threading.Event(), threading.Event()

    def serve(sock: socket.socket) -> None:
        conn = handshake_as_server(sock, psk)
        if give_up.wait(60) and not done.is_set():
            late.set()
            conn.send(b"too late")
            sock.sendall(conn.data_to_send())
        done.wait(60)

    def on_sigint(*_: object) -> None:
        if armed.is_set() and not late.is_set():
            armed.clear()  # heard once: later presses (until the presser stops) count for nothing
            raise Interrupted()

    def keep_pressing_ctrl_c() -> None:
        for _ in range(100):
            if done.wait(0.05):
                return
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
        give_up.set()

    quiet = raw_server(serve)
    previous = signal.signal(signal.SIGINT, on_sigint)
    presser = threading.Thread(target=keep_pressing_ctrl_c)
    try:
        with Client("127.0.0.1", quiet.port, psk=psk) as c:
            presser.start()
            with pytest.raises(Interrupted):
                armed.set()
                c.recv(timeout=None)
    finally:
        done.set()
        give_up.set()  # lets the server go
        if presser.is_alive():
            presser.join()
        signal.signal(signal.SIGINT, previous)


def test_events_yields_each_event_before_a_later_bad_frame_fails() -> None:
    psk = os.urandom(32)
    client, server = Connection("client", psk), Connection("server", psk)
    client.start()
    server.start()
    assert list(server.events(client.data_to_send())) == [HandshakeComplete()]
    client.receive_data(server.data_to_send())
    assert server.receive_data(client.data_to_send()) == [Ping(b"")]  # key confirmation
    assert client.receive_data(server.data_to_send()) == []            # its PONG is not delivered
    client.send(b"once")
    frame = client.data_to_send()
    events = server.events(frame + frame)  # the second copy is a replay
    assert next(events) == Data(b"once")
    server.send(b"reply to once")  # queued while the replay is still unread
    with pytest.raises(ProtocolError) as raised:
        next(events)
    assert raised.value.name == "BAD_COUNTER"
    assert client.receive_data(server.data_to_send()) == [Data(b"reply to once")]


# ------------------------------------------------------------------------------ bytes-like objects and str

SHAPES = ["reversed", "strided", "2-d", "2-d-strided", "uint32-array", "uint16-reversed"]


def shaped(content: bytes, shape: str) -> Any:
    """A bytes-like object of another shape whose bytes (what bytes(memoryview(x)) gives, in C
    order) are `content`; len(content) must be a multiple of 4."""
    n = len(content)
    assert n % 4 == 0
    if shape == "reversed":
        made: Any = memoryview(content[::-1])[::-1]
    elif shape == "strided":
        spaced = bytearray(b"\xee" * (2 * n))
        spaced[::2] = content
        made = memoryview(bytes(spaced))[::2]
    elif shape == "2-d":
        made = memoryview(content).cast("B", (4, n // 4))
    elif shape == "2-d-strided":  # every other row of an 8-row matrix
        rows = [content[i:i + n // 4] for i in range(0, n, n // 4)]
        made = memoryview(b"".join(row + b"\xee" * len(row) for row in rows)).cast("B", (8, n // 4))[::2]
    elif shape == "uint32-array":
        made = array("I")
        made.frombytes(content)
    else:  # uint16-reversed
        items = [content[i:i + 2] for i in range(0, n, 2)]
        made = memoryview(b"".join(reversed(items))).cast("H")[::-1]
    assert memoryview(made).tobytes() == content
    return made


def handshaken_pair(psk: bytes) -> tuple[Connection, Connection]:
    """A handshake and its key confirmation (PROTOCOL.md 4.1) done: nothing left queued."""
    client, server = Connection("client", psk), Connection("server", psk)
    client.start()
    server.start()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    assert server.receive_data(client.data_to_send()) == [Ping(b"")]
    assert client.receive_data(server.data_to_send()) == []
    return client, server


@pytest.mark.parametrize("shape", SHAPES)
def test_connection_takes_any_bytes_like_object_as_its_bytes(shape: str) -> None:
    h = bytes.fromhex
    client = Connection("client", shaped(h(VECTORS["psk"]), shape),
                        ephemeral_for_testing=shaped(h(VECTORS["client_ephemeral"]), shape), key_confirmation=False)
    client.start()
    assert client.data_to_send() == WIRE[0]  # the key and the ephemeral key were read right
    server = Connection("server", h(VECTORS["psk"]))
    server.start()
    server.receive_data(WIRE[0])
    client.receive_data(server.data_to_send())

    first, ping, last = bytes(range(64)), b"pingpong", b"last"
    client.send(shaped(first, shape))
    client.send_ping(shaped(ping, shape))
    client.send(shaped(last, shape))
    client.send(b"")  # frames of 97 + 41 + 37 + 33 bytes: 52 uint32 items
    wire = client.data_to_send()
    assert server.receive_data(shaped(wire, shape)) == [Data(first), Ping(ping), Data(last), Data(b"")]
    assert client.receive_data(server.data_to_send()) == [Pong(ping)]


@pytest.mark.parametrize("shape", SHAPES)
def test_client_and_server_take_any_bytes_like_object_as_its_bytes(serve, psk: bytes, shape: str) -> None:
    srv, _ = serve(psk=shaped(psk, shape), handler=lambda data, peer: shaped(data[::-1], shape))
    message = bytes(range(64))
    with Client("127.0.0.1", srv.port, psk=shaped(psk, shape), timeout=WAIT) as c:
        assert c.request(shaped(message, shape)) == message[::-1]
        c.send(shaped(b"abcd" * 4, shape))
        assert c.recv() == b"dcba" * 4
        assert c.ping(shaped(b"pingpong", shape)) == b"pingpong"


@pytest.mark.parametrize("shape", SHAPES)
def test_format_message_takes_any_bytes_like_object_as_its_bytes(shape: str) -> None:
    text = b"hello, world"
    assert _seclink.format_message(shaped(text, shape)) == _seclink.format_message(text) == "hello, world"


def test_str_is_sent_as_utf8_wherever_a_message_is_taken(serve, psk: bytes) -> None:
    client, server = handshaken_pair(psk)
    client.send("h\u00e9llo")
    client.send_ping("p\u00efng")
    assert server.receive_data(client.data_to_send()) == [Data("h\u00e9llo".encode()), Ping("p\u00efng".encode())]
    srv, _ = serve(echo=True)
    with Client("127.0.0.1", srv.port, psk=psk, timeout=WAIT) as c:
        assert c.request("w\u00f6rld") == "w\u00f6rld".encode()
        c.send("again")
        assert c.recv() == b"again"
        assert c.ping("p\u00f6ng") == "p\u00f6ng".encode()
        for send in (client.send, client.send_ping, c.send, c.request, c.ping):
            with pytest.raises(TypeError, match="^a message is bytes-like or str, not int$"):
                send(5)  # type: ignore[operator]


@pytest.mark.parametrize("size", [0, 31, 33, 64])
def test_a_key_of_another_size_than_32_bytes_is_refused_with_its_size(size: int) -> None:
    exact = f"^a pre-shared key is exactly 32 bytes, not {size}$"
    for role in ("client", "server"):
        with pytest.raises(ValueError, match=exact):
            Connection(role, b"k" * size)
        with pytest.raises(ValueError, match=exact):
            Connection(role, memoryview(b"k" * (2 * size))[::2])
    with pytest.raises(ValueError, match=exact):
        Server("127.0.0.1", 0, psk=b"k" * size)
    with pytest.raises(ValueError, match=exact):
        Client("127.0.0.1", 1, psk=b"k" * size)  # refused before connecting


# ------------------------------------------------------------------------------ threads

def test_connection_refuses_a_second_thread_while_one_is_inside_it() -> None:
    client, server = handshaken_pair(os.urandom(32))
    outcome: list[str] = []
    tried = threading.Event()

    def meanwhile_from_another_thread(text: str) -> None:  # runs inside client.send
        if tried.is_set():
            return
        tried.set()

        def attempt() -> None:
            try:
                client.send(b"from the other thread")
                outcome.append("accepted")
            except RuntimeError as e:
                outcome.append(str(e))
        other_thread = threading.Thread(target=attempt)
        other_thread.start()
        other_thread.join(WAIT)

    client.set_trace(meanwhile_from_another_thread)
    client.send(b"from this thread")
    assert outcome == ["a seclink Connection was used from two threads at once"]
    client.set_trace(None)
    assert server.receive_data(client.data_to_send()) == [Data(b"from this thread")]


def signal_when_receiving(c: Client) -> threading.Event:
    """An Event set when `c` next calls the native recv: its receiving thread is then in recv()."""
    entered = threading.Event()
    native = c._c

    class Spy:
        def __getattr__(self, name: str) -> object:
            return getattr(native, name)

        def recv(self, timeout_ms: int) -> tuple[int, bytes]:
            entered.set()
            return native.recv(timeout_ms)

    c._c = Spy()
    return entered


def test_one_client_shared_by_many_threads_gives_each_its_own_replies(serve, psk: bytes) -> None:
    srv, _ = serve(handler=lambda data, peer: data + b"!")
    errors: list[BaseException] = []

    def work(c: Client, n: int) -> None:
        try:
            for i in range(40):
                message = f"{n}-{i}".encode() * (i + 1)
                if i % 8 == 7:
                    assert c.ping(message[:64]) == message[:64]
                else:
                    assert c.request(message) == message + b"!"
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    with Client("127.0.0.1", srv.port, psk=psk, timeout=WAIT) as c:
        threads = [threading.Thread(target=work, args=(c, n)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT * 3)
        assert errors == [] and not any(t.is_alive() for t in threads)
        assert c.request(b"still fine") == b"still fine!"


def test_threads_send_while_another_waits_in_recv(serve, psk: bytes) -> None:
    srv, _ = serve(echo=True)
    senders, count = 4, 100
    received: list[bytes] = []
    errors: list[BaseException] = []
    with Client("127.0.0.1", srv.port, psk=psk, timeout=WAIT) as c:
        entered = signal_when_receiving(c)

        def receive() -> None:
            try:
                for _ in range(senders * count):
                    received.append(c.recv())  # each waits while the others send
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        def send(n: int) -> None:
            try:
                for i in range(count):
                    c.send(f"{n}-{i}-".encode().ljust(4096, b"."))  # long enough to overlap
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        receiver = threading.Thread(target=receive)
        receiver.start()
        assert entered.wait(WAIT)  # the receiver is in recv() before anything is sent
        threads = [threading.Thread(target=send, args=(n,)) for n in range(senders)]
        for t in threads:
            t.start()
        for t in threads + [receiver]:
            t.join(WAIT * 3)
        assert errors == [] and not any(t.is_alive() for t in threads + [receiver])
    for n in range(senders):  # everything arrived, each sender's messages in its order
        assert [m for m in received if m.startswith(f"{n}-".encode())] == \
            [f"{n}-{i}-".encode().ljust(4096, b".") for i in range(count)]
    assert len(received) == senders * count


def test_close_from_another_thread_ends_a_waiting_recv(serve, psk: bytes) -> None:
    srv, _ = serve()
    c = Client("127.0.0.1", srv.port, psk=psk, timeout=WAIT)
    entered = signal_when_receiving(c)
    outcome: list[BaseException] = []

    def wait_forever() -> None:
        try:
            c.recv(timeout=None)
        except BaseException as e:  # noqa: BLE001 - checked below
            outcome.append(e)

    t = threading.Thread(target=wait_forever, daemon=True)
    t.start()
    assert entered.wait(WAIT)
    c.close()
    t.join(WAIT)
    assert not t.is_alive() and isinstance(outcome[0], ConnectionClosed)


def test_a_client_called_from_its_own_trace_callback_raises_rather_than_wait_for_itself(serve, psk: bytes) -> None:
    srv, _ = serve()
    made: list[Client] = []
    seen: list[str] = []
    errors: list[BaseException] = []

    def trace(text: str) -> None:  # runs inside the native call, which holds the client's turn
        if made and not seen:
            try:
                made[0].send(b"from the trace callback")
                seen.append("accepted")
            except RuntimeError as e:
                seen.append(str(e))

    def session() -> None:
        try:
            with Client("127.0.0.1", srv.port, psk=psk, timeout=WAIT, trace=trace) as c:
                made.append(c)
                assert c.request(b"hi") == b"ACK: received 2 bytes"
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    t = threading.Thread(target=session, daemon=True)  # a deadlock would leave it waiting, not the test
    t.start()
    t.join(WAIT)
    assert not t.is_alive() and errors == []
    assert seen == ["a seclink Client was called from its own trace callback"]


def test_the_library_numbers_are_int_enums_read_from_the_core():
    from seclink.errors import from_code
    assert seclink.Err.AUTH == 17 and seclink.Err(55) is seclink.Err.ADDRNOTAVAIL
    assert [m.name for m in seclink.MsgType] == ["DATA", "CLOSE", "PING", "PONG", "KEY_UPDATE", "EOF"]
    assert seclink.MsgType.DATA == 1 and seclink.Connection is not None
    assert seclink.Category.NETWORK == 4 and seclink.Category.TOO_LARGE == 8
    e = from_code(seclink.Err.ADDRNOTAVAIL, "cannot listen")
    assert isinstance(e, seclink.NetworkError) and "not an address of this machine" in str(e)
    assert isinstance(from_code(seclink.Err.TIMEDOUT), seclink.Timeout)
    assert isinstance(from_code(seclink.Err.TLS_PIN), seclink.TLSError)
    assert isinstance(from_code(seclink.Err.AUTH), seclink.AuthenticationError)
    assert isinstance(from_code(seclink.Err.TRUNCATED), seclink.ProtocolError)
    assert type(from_code(seclink.Err.NOMEM)) is seclink.Error
