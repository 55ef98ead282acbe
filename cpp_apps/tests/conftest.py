"""Shared helpers for the end-to-end tests of the native ./server and ./client programs.

Everything here waits with a deadline (never a bare sleep for synchronisation) and every process
or socket a test starts is stopped at teardown:

- `Lines`: a reader thread collecting a pipe's lines; `wait_for(pattern)` blocks until one matches.
- `Server` / the `start_server` fixture: ./server on 127.0.0.1 port 0, the real port read from its
  "Listening on" line; `stop()` sends SIGTERM and returns the exit status.
- `run_client` / `spawn_client` fixtures: ./client to completion, or as a live process.
- `RawPeer`: a seclink/1 client made from the pure-Python reference implementation that can also
  send hand-crafted bytes (tampered, replayed, oversized, truncated frames).
- `RawServer`: a listening socket whose connections are handled by a test function, to see what
  ./client does with a misbehaving server.
"""

from __future__ import annotations

import os
import queue
import re
import select
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from interop_tests.reference.seclink_ref import (DATA, DEFAULT_MAX_MESSAGE, PING, Message, Closed, Connection, Event, HandshakeDone,
                                                 Message, generate_key, load_key)

REPO = Path(__file__).resolve().parents[2]
# SECLINK_SERVER / SECLINK_CLIENT: other builds of the programs (make test-poll).
SERVER = Path(os.environ.get("SECLINK_SERVER", REPO / "server"))
CLIENT = Path(os.environ.get("SECLINK_CLIENT", REPO / "client"))
PY_SERVER = REPO / "python" / "server.py"
PY_CLIENT = REPO / "python" / "client.py"

# Every test runs against the C++ programs and against the Python scripts, which must behave
# and print the same (apart from the "(c++)"/"(python)" tag and the usage line's program name).
LANGS = {
    "cpp": ([str(SERVER)], [str(CLIENT)]),
    "py": ([sys.executable, str(PY_SERVER)], [sys.executable, str(PY_CLIENT)]),
}

WAIT = 10.0       # seconds: the usual bound for something that should happen at once
CEILING = 30.0    # seconds: the bound for the slowest thing (the load test, 16 MiB messages)

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} ")
LISTENING = re.compile(r"^\[INFO\] Listening on (\S+):(\d+)$")


@pytest.fixture(autouse=True, scope="session")
def _programs_built() -> None:
    if not (SERVER.exists() and CLIENT.exists()):
        pytest.fail(f"{SERVER} and {CLIENT} are missing: run 'make build' first")
    if not list((REPO / "python" / "seclink").glob("_seclink.*.so")):
        pytest.fail("the Python extension python/seclink/_seclink*.so is missing: run 'make build' first")


@pytest.fixture(params=list(LANGS))
def lang(request: pytest.FixtureRequest) -> str:
    """Which implementation of the programs a test runs: "cpp" or "py"."""
    return request.param


@pytest.fixture
def server_argv(lang: str) -> list[str]:
    """The command that starts the server program of this test's language."""
    return LANGS[lang][0]


@pytest.fixture
def client_argv(lang: str) -> list[str]:
    return LANGS[lang][1]


# --------------------------------------------------------------------------- output collection

class Lines:
    """Collects the lines of a pipe in a thread; tests wait for lines with a deadline."""

    def __init__(self, pipe, name: str) -> None:
        self.name = name
        self._pipe = pipe
        self._lines: list[str] = []
        self._done = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, name=f"reader-{name}", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for raw in self._pipe:
                line = raw.decode("utf-8", errors="replace").rstrip("\n")
                with self._cond:
                    self._lines.append(line)
                    self._cond.notify_all()
        except (OSError, ValueError):  # pipe closed under us at teardown
            pass
        finally:
            with self._cond:
                self._done = True
                self._cond.notify_all()

    @property
    def lines(self) -> list[str]:
        with self._cond:
            return list(self._lines)

    @property
    def text(self) -> str:
        return "".join(line + "\n" for line in self.lines)

    def mark(self) -> int:
        """Index of the next line: pass it as `since` to ignore what came before."""
        with self._cond:
            return len(self._lines)

    def matching(self, pattern: str, since: int = 0) -> list[re.Match[str]]:
        rx = re.compile(pattern)
        return [m for line in self.lines[since:] if (m := rx.search(line))]

    def wait_for(self, pattern: str, since: int = 0, timeout: float = WAIT, count: int = 1) -> re.Match[str]:
        """The `count`-th line (from index `since`) matching `pattern`; fails after `timeout` s."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [m for line in self._lines[since:] if (m := rx.search(line))]
                if len(found) >= count:
                    return found[count - 1]
                left = deadline - time.monotonic()
                if left <= 0 or self._done:
                    tail = "\n".join(self._lines[-40:])
                    why = "ended" if self._done else f"timed out after {timeout} s"
                    raise AssertionError(f"{self.name}: {len(found)}/{count} lines match {pattern!r} "
                                         f"({why}); last lines:\n{tail}")
                self._cond.wait(min(left, 0.5))

    def join(self, timeout: float = WAIT) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"{self.name}: the pipe never ended"


def strip_timestamps(text: str) -> list[str]:
    """Log file lines without their timestamp; every line that starts an entry must have one
    (trace rows continue an entry on indented lines without one)."""
    out = []
    for line in text.splitlines():
        m = TIMESTAMP.match(line)
        assert m or line.startswith(" "), f"log line without a timestamp: {line!r}"
        out.append(line[m.end():] if m else line)
    return out


# --------------------------------------------------------------------------- processes

class Proc:
    """A running program whose stdout and stderr are collected line by line."""

    def __init__(self, argv: list[str], *, cwd: Path, env: dict[str, str], stdin: bool = False) -> None:
        self.argv = argv
        self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        name = Path(argv[1] if argv[0] == sys.executable else argv[0]).name
        self.out = Lines(self.proc.stdout, f"{name} stdout")
        self.err = Lines(self.proc.stderr, f"{name} stderr")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def write(self, text: str) -> None:
        self.proc.stdin.write(text.encode())
        self.proc.stdin.flush()

    def close_stdin(self) -> None:
        if self.proc.stdin and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass

    def wait(self, timeout: float = WAIT) -> int:
        """Exit status (fails the test if the program is still running after `timeout`)."""
        try:
            status = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.argv} still running after {timeout} s; stdout:\n{self.out.text}"
                                 f"stderr:\n{self.err.text}") from None
        self.out.join()
        self.err.join()
        return status

    def kill(self) -> None:
        """Teardown: kill if still running, reap, close the pipes."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(CEILING)
        self.close_stdin()
        self.out.join()
        self.err.join()
        self.proc.stdout.close()
        self.proc.stderr.close()


class Server(Proc):
    """./server; `port` and `host` come from its "Listening on" line."""

    def __init__(self, argv: list[str], *, cwd: Path, env: dict[str, str]) -> None:
        super().__init__(argv, cwd=cwd, env=env)
        self.cwd = cwd
        try:
            m = self.out.wait_for(LISTENING.pattern)
        except AssertionError as e:
            raise AssertionError(f"{e}\nstderr: {self.err.text}") from None
        self.host, self.port = m.group(1), int(m.group(2))

    def wait_for(self, pattern: str, since: int = 0, timeout: float = WAIT, count: int = 1) -> re.Match[str]:
        return self.out.wait_for(pattern, since, timeout, count)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = WAIT) -> int:
        self.proc.send_signal(signum)
        return self.wait(timeout)


@dataclass
class Result:
    """A finished ./client run."""
    returncode: int
    stdout: str
    stderr: str
    argv: list[str]

    def __str__(self) -> str:
        return f"{self.argv[1:]} -> exit {self.returncode}\nstdout:\n{self.stdout}stderr:\n{self.stderr}"


def base_env(home: Path) -> dict[str, str]:
    """The environment of every program: its own HOME and XDG_CONFIG_HOME, no SECLINK_PSK_FILE."""
    env = {k: v for k, v in os.environ.items() if k not in ("SECLINK_PSK_FILE", "XDG_CONFIG_HOME", "HOME")}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / "config"), LC_ALL="C.UTF-8")
    return env


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """HOME for the programs; XDG_CONFIG_HOME is home/config."""
    (tmp_path / "home").mkdir()
    return tmp_path / "home"


@pytest.fixture
def env(home: Path) -> dict[str, str]:
    return base_env(home)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """The programs' working directory (where server_logs.txt / client_logs.txt land)."""
    (tmp_path / "cwd").mkdir()
    return tmp_path / "cwd"


@pytest.fixture
def psk_file(tmp_path: Path) -> Path:
    generate_key(tmp_path / "psk")
    return tmp_path / "psk"


@pytest.fixture
def psk(psk_file: Path) -> bytes:
    return load_key(psk_file)


@pytest.fixture
def start_server(workdir: Path, env: dict[str, str], psk_file: Path,
                 server_argv: list[str]) -> Iterator[Callable[..., Server]]:
    """start_server(*flags, psk=psk_file (None: no --psk-file), host="127.0.0.1" (None: no --host/--port),
    env=None, cwd=None): ./server, killed at teardown."""
    servers: list[Server] = []
    default_env = env

    def start(*flags: str, psk: Path | None = psk_file, host: str | None = "127.0.0.1",
              env: dict[str, str] | None = None, cwd: Path | None = None) -> Server:
        argv = [*server_argv, *(["--host", host, "--port", "0"] if host is not None else []), *flags]
        if psk is not None:
            argv += ["--psk-file", str(psk)]
        srv = Server(argv, cwd=cwd or workdir, env=env or default_env)
        servers.append(srv)
        return srv

    try:
        yield start
    finally:
        for srv in servers:
            srv.kill()


def _run(argv: list[str], *, cwd: Path, env: dict[str, str], input: bytes | str | None, timeout: float) -> Result:
    if isinstance(input, str):
        input = input.encode()
    try:
        cp = subprocess.run(argv, cwd=cwd, env=env, input=input,
                            stdin=None if input is not None else subprocess.DEVNULL,
                            capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"{argv} still running after {timeout} s (killed); stdout:\n"
                             f"{(e.stdout or b'').decode(errors='replace')}") from None
    return Result(cp.returncode, cp.stdout.decode("utf-8", errors="replace"),
                  cp.stderr.decode("utf-8", errors="replace"), argv)


@pytest.fixture
def run_server(workdir: Path, env: dict[str, str], psk_file: Path, server_argv: list[str]) -> Callable[..., Result]:
    """run_server(*args, psk=psk_file, timeout=WAIT, env=None): ./server expected to exit by itself
    (--keygen, --help, bad flags, unusable keys...)."""
    default_env = env

    def run(*args: str | Path, psk: Path | None = psk_file, timeout: float = WAIT,
            env: dict[str, str] | None = None, cwd: Path | None = None) -> Result:
        argv = [*server_argv, *map(str, args)] + (["--psk-file", str(psk)] if psk is not None else [])
        return _run(argv, cwd=cwd or workdir, env=env or default_env, input=None, timeout=timeout)

    return run


@pytest.fixture
def run_client(workdir: Path, env: dict[str, str], psk_file: Path, client_argv: list[str]) -> Callable[..., Result]:
    """run_client(*args, psk=psk_file, input=None, timeout=WAIT, env=None, cwd=None): ./client to completion."""
    default_env = env

    def run(*args: str | Path, psk: Path | None = psk_file, input: bytes | str | None = None,
            timeout: float = WAIT, env: dict[str, str] | None = None, cwd: Path | None = None) -> Result:
        argv = [*client_argv, *map(str, args)] + (["--psk-file", str(psk)] if psk is not None else [])
        return _run(argv, cwd=cwd or workdir, env=env or default_env, input=input, timeout=timeout)

    return run


@pytest.fixture
def spawn_client(workdir: Path, env: dict[str, str], psk_file: Path,
                 client_argv: list[str]) -> Iterator[Callable[..., Proc]]:
    """spawn_client(*args, psk=psk_file, stdin=False, env=None): ./client as a live process."""
    procs: list[Proc] = []
    default_env = env

    def spawn(*args: str | Path, psk: Path | None = psk_file, stdin: bool = False,
              env: dict[str, str] | None = None) -> Proc:
        argv = [*client_argv, *map(str, args)]
        if psk is not None:
            argv += ["--psk-file", str(psk)]
        p = Proc(argv, cwd=workdir, env=env or default_env, stdin=stdin)
        procs.append(p)
        return p

    try:
        yield spawn
    finally:
        for p in procs:
            p.kill()


# --------------------------------------------------------------------------- raw peers

class RawPeer:
    """A seclink/1 client built on the reference implementation, able to misbehave.

    `frame(type, content)` encrypts a well-formed frame with the next counter but does not send
    it, so a test can tamper with it, replay it, truncate it or send it twice.
    """

    def __init__(self, port: int, psk: bytes, *, host: str = "127.0.0.1", handshake: bool = True,
                 max_message: int = DEFAULT_MAX_MESSAGE, tls: ssl.SSLContext | None = None) -> None:
        self.sock = socket.create_connection((host, port), timeout=WAIT)
        if tls is not None:
            self.sock = tls.wrap_socket(self.sock, server_hostname=host)
        local = self.sock.getsockname()
        self.name = f"{local[0]}:{local[1]}"  # how the server names this peer in its log
        self.conn = Connection("client", psk, max_message=max_message)
        self._events: list[Event] = []
        self.eof = False
        if handshake:
            self.handshake()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawPeer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- sending
    def handshake(self) -> None:
        """The handshake, then the key-confirmation PING (PROTOCOL.md 4.1) sent at once, so that
        frame() gives exactly one frame; its PONG is swallowed by the reference implementation."""
        self.conn.start()
        self.send_raw(self.conn.data_to_send())
        assert self.next_event() == HandshakeDone()
        self.send_raw(self.conn.data_to_send())
        deadline = time.monotonic() + WAIT
        while self.conn._await_pong:  # the PONG, so that nothing of the handshake is left unread
            data = self._recv(max(0.0, deadline - time.monotonic()))
            assert data, f"{self.name}: the server closed instead of answering the key-confirmation PING"
            self._events += self.conn.receive(data)

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, type: int, content: bytes = b"") -> None:
        self.conn.send(type, content)
        self.send_raw(self.conn.data_to_send())

    def frame(self, type: int, content: bytes = b"") -> bytes:
        """A valid transport frame (length prefix included) with the next counter, not sent."""
        self.conn._queue_transport(bytes([type]) + content)  # no send-side checks: any type, any size
        return self.conn.data_to_send()

    def close_session(self, reason: str = "") -> None:
        self.conn.close(reason)
        self.send_raw(self.conn.data_to_send())

    # ---- receiving
    def readable(self, timeout: float) -> bool:
        """True if something (bytes or the end of the stream) arrives within `timeout` s."""
        if self._events or (isinstance(self.sock, ssl.SSLSocket) and self.sock.pending()):
            return True
        return bool(select.select([self.sock], [], [], timeout)[0])

    def _recv(self, timeout: float) -> bytes:
        if not self.readable(timeout):
            raise AssertionError(f"{self.name}: nothing received in {timeout} s")
        try:
            return self.sock.recv(1 << 20)
        except (ConnectionResetError, ssl.SSLEOFError):
            return b""

    def next_event(self, timeout: float = WAIT) -> Event:
        """The next event; Closed(None) when the stream ends without CLOSE."""
        deadline = time.monotonic() + timeout
        while not self._events:
            data = self._recv(max(0.0, deadline - time.monotonic()))
            if data:
                self._events += self.conn.receive(data)
                out = self.conn.data_to_send()  # a PONG for a PING
                if out:
                    self.send_raw(out)
            else:
                self.eof = True
                self._events += self.conn.eof()
        return self._events.pop(0)

    def request(self, content: bytes, timeout: float = WAIT) -> bytes:
        """Send DATA and return the content of the DATA reply."""
        self.send(DATA, content)
        ev = self.next_event(timeout)
        assert isinstance(ev, Message) and ev.type == DATA, f"{self.name}: expected a reply, got {ev}"
        return ev.content

    def read_to_eof(self, timeout: float = WAIT) -> bytes:
        """Every byte the server still sends until it closes the stream (raw, not decrypted)."""
        deadline = time.monotonic() + timeout
        got = b""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{self.name}: the server did not close the connection in {timeout} s")
            data = self._recv(left)
            if not data:
                self.eof = True
                return got
            got += data

    def expect_close(self, reason: str, timeout: float = WAIT) -> None:
        """The server sends CLOSE with `reason`, then ends the stream; this peer then closes its
        end, as a client does (the server lingers until then: docs/PROTOCOL.md 5)."""
        ev = self.next_event(timeout)
        assert ev == Closed(reason), f"{self.name}: expected CLOSE {reason!r}, got {ev}"
        assert self.read_to_eof(timeout) == b""
        self.close()


class RawServer:
    """A listening socket on 127.0.0.1; each accepted connection is handled by `handler(sock)` in a
    thread. Handler exceptions are kept and re-raised by `check()`."""

    def __init__(self, handler: Callable[[socket.socket], None]) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.handler = handler
        self.errors: queue.Queue[BaseException] = queue.Queue()
        self.conns: list[socket.socket] = []
        self.handlers: list[threading.Thread] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            self.conns.append(sock)
            sock.settimeout(WAIT)
            t = threading.Thread(target=self._handle, args=(sock,), daemon=True)
            self.handlers.append(t)
            t.start()

    def _handle(self, sock: socket.socket) -> None:
        try:
            self.handler(sock)
        except BaseException as e:  # noqa: BLE001 - reported by check()
            self.errors.put(e)

    def check(self) -> None:
        """Waits for the handlers to finish; re-raises the first failure among them."""
        for t in self.handlers:
            t.join(WAIT)
            assert not t.is_alive(), "a RawServer handler is still running"
        if not self.errors.empty():
            raise self.errors.get()

    def close(self) -> None:
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        self.thread.join(WAIT)
        for s in self.conns:
            try:
                s.shutdown(socket.SHUT_RDWR)  # wakes a handler blocked in recv()
            except OSError:
                pass
            s.close()


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError(f"stream ended after {len(buf)} of {n} bytes")
        buf += chunk
    return buf


def serve_handshake(sock: socket.socket, psk: bytes) -> Connection:
    """Server side of the handshake for a RawServer handler; returns the established Connection."""
    conn = Connection("server", psk)
    head = recv_exactly(sock, 4)
    body = recv_exactly(sock, int.from_bytes(head, "big"))
    assert conn.receive(head + body) == [HandshakeDone()]
    sock.sendall(conn.data_to_send())
    # Key confirmation (PROTOCOL.md 4.1): the client's first frame is an empty PING; answered.
    assert conn.receive(read_frame(sock)) == [Message(PING, b"")]
    sock.sendall(conn.data_to_send())
    return conn


def read_frame(sock: socket.socket) -> bytes:
    head = recv_exactly(sock, 4)
    return head + recv_exactly(sock, int.from_bytes(head, "big"))


@pytest.fixture
def raw_peers() -> Iterator[Callable[..., RawPeer]]:
    """raw_peers(port, psk, **kw): a RawPeer closed at teardown."""
    peers: list[RawPeer] = []

    def make(port: int, psk: bytes, **kw: object) -> RawPeer:
        p = RawPeer(port, psk, **kw)
        peers.append(p)
        return p

    try:
        yield make
    finally:
        for p in peers:
            p.close()


@pytest.fixture
def raw_server() -> Iterator[Callable[[Callable[[socket.socket], None]], RawServer]]:
    servers: list[RawServer] = []

    def make(handler: Callable[[socket.socket], None]) -> RawServer:
        s = RawServer(handler)
        servers.append(s)
        return s

    try:
        yield make
    finally:
        for s in servers:
            s.close()
