"""Pipe mode (--pipe, docs/PROTOCOL.md 9) across languages, as real processes over 127.0.0.1.

A pipe server (C++, Python) serves one session: the client's standard input reaches the server's
standard output byte for byte and the other way round, each end of input is carried as EOF, the
client closes after both EOFs, and both exit 0. A pipe client also works against every
request/reply server (C++, Python, asyncio, reference), which answers its EOF with EOF after the
last reply. Logs go to standard error only; memory stays bounded on large streams.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tools import procs
from tools.procs import WAIT, base_env
from tests.reference.seclink_ref import generate_key
from tests.matrix import CLIENTS, SERVERS

REPO = Path(__file__).resolve().parents[2]
PY = sys.executable
PIPE_SERVERS = {"cpp": SERVERS["cpp"], "py": SERVERS["py"]}
LISTENING = re.compile(procs.LISTENING.pattern.encode())  # on stderr in pipe mode, so read here as bytes


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    generate_key(tmp_path / "psk")
    return tmp_path / "psk"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "home").mkdir()
    return dict(base_env(tmp_path / "home"), PYTHONPATH=str(REPO))


class PipeEnd:
    """A program with its three standard streams as pipes; stderr is collected by a thread."""

    def __init__(self, argv: list[str], *, cwd: Path, env: dict[str, str], stdin=subprocess.PIPE,
                 stdout=subprocess.PIPE) -> None:
        self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE)
        self.err = b""
        self._listening = threading.Event()
        self.port = 0
        self._t = threading.Thread(target=self._read_err, daemon=True)
        self._t.start()

    def _read_err(self) -> None:
        for line in self.proc.stderr:
            self.err += line
            if m := LISTENING.search(line):
                self.port = int(m.group(2))
                self._listening.set()

    def wait_listening(self) -> int:
        assert self._listening.wait(WAIT), f"no 'Listening on' on stderr: {self.err!r}"
        return self.port

    def wait(self, timeout: float = WAIT * 3) -> int:
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"still running after {timeout} s; stderr: {self.err!r}") from None
        self._t.join(WAIT)
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._t.join(WAIT)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if f is not None:
                try:
                    f.close()
                except BrokenPipeError:
                    pass


@pytest.fixture
def spawn(tmp_path: Path, env: dict[str, str]):
    procs: list[PipeEnd] = []

    def start(argv: list[str], **kw) -> PipeEnd:
        p = PipeEnd(argv, cwd=tmp_path, env=env, **kw)
        procs.append(p)
        return p

    yield start
    for p in procs:
        p.kill()


def server_argv(kind: str, keys: Path, *flags: str) -> list[str]:
    return [*SERVERS[kind], "--host", "127.0.0.1", "--port", "0", "--psk-file", str(keys), "--log-file", "-", *flags]


def client_argv(kind: str, port: int, keys: Path) -> list[str]:
    argv = [*CLIENTS[kind], "127.0.0.1", str(port), "--pipe", "--psk-file", str(keys)]
    return argv if kind == "ref" else argv + ["--log-file", "-"]


def feed(proc: subprocess.Popen, data: bytes) -> threading.Thread:
    """Writes `data` to the process's stdin from a thread, then closes it (end of input)."""
    def run() -> None:
        try:
            proc.stdin.write(data)
        except BrokenPipeError:
            pass
        finally:
            try:
                proc.stdin.close()
            except BrokenPipeError:
                pass
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def collect(proc: subprocess.Popen) -> tuple[threading.Thread, list[bytes]]:
    out: list[bytes] = []

    def run() -> None:
        out.append(proc.stdout.read())
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


@pytest.mark.parametrize("client", ["cpp", "py", "ref"])
@pytest.mark.parametrize("server", list(PIPE_SERVERS))
def test_pipe_carries_binary_streams_both_ways_and_ends_cleanly(spawn, keys: Path, server: str, client: str) -> None:
    up = os.urandom(3 * 1024 * 1024 + 17) + bytes(range(256)) + b"\r\n\x00"
    down = os.urandom(1024 * 1024 + 5) + b"\n[RECV] not a log line\n"
    srv = spawn(server_argv(server, keys, "--pipe"))
    port = srv.wait_listening()
    cli = spawn(client_argv(client, port, keys))
    threads = [feed(srv.proc, down), feed(cli.proc, up)]
    (t_srv, srv_out), (t_cli, cli_out) = collect(srv.proc), collect(cli.proc)
    assert cli.wait() == 0, cli.err
    assert srv.wait() == 0, srv.err
    for t in [*threads, t_srv, t_cli]:
        t.join(WAIT)
    assert srv_out[0] == up  # byte for byte; nothing else on standard output
    assert cli_out[0] == down
    if client != "ref":
        assert b"Disconnected" in cli.err
    assert b"Pipe done: received 3146004 bytes, sent 1048604 bytes" in srv.err, srv.err


@pytest.mark.parametrize("server", list(PIPE_SERVERS))
def test_half_close_reaches_the_server_while_its_own_stream_goes_on(spawn, keys: Path, server: str) -> None:
    """The client's end of input closes the server's standard output at once, while the server
    still sends; the session ends only after the server's input ends too."""
    srv = spawn(server_argv(server, keys, "--pipe"))
    cli = spawn(client_argv("cpp", srv.wait_listening(), keys))
    cli.proc.stdin.write(b"request")
    cli.proc.stdin.close()
    assert srv.proc.stdout.read() == b"request"  # returns only at the server's stdout EOF
    assert srv.proc.poll() is None and cli.proc.poll() is None  # the other direction is open
    srv.proc.stdin.write(b"the answer, after the request ended")
    srv.proc.stdin.close()
    assert cli.proc.stdout.read() == b"the answer, after the request ended"
    assert cli.wait() == 0, cli.err
    assert srv.wait() == 0, srv.err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("side", ["client", "server"])
@pytest.mark.parametrize("kind", list(PIPE_SERVERS))
def test_a_signal_ends_a_pipe_session_with_its_close_and_128_plus_the_signal(spawn, keys: Path, kind: str, side: str,
                                                                            sig: int) -> None:
    """Ctrl-C (SIGINT) or SIGTERM to a pipe program (`kind`, on `side`) mid-stream: it ends the
    session with a CLOSE that says why, prints its counts and exits with 128 + the signal, what a
    shell reports for a program the signal killed; the other end (the other language) reports the
    CLOSE, not a lost connection."""
    other = "py" if kind == "cpp" else "cpp"
    srv = spawn(server_argv(kind if side == "server" else other, keys, "--pipe"))
    cli = spawn(client_argv(kind if side == "client" else other, srv.wait_listening(), keys))
    # A line each way: both ends are in their stream loops, where the signal is taken.
    for writer, reader, line in ((cli, srv, b"up\n"), (srv, cli, b"down\n")):
        writer.proc.stdin.write(line)
        writer.proc.stdin.flush()
        assert reader.proc.stdout.read(len(line)) == line
    target, peer = (srv, cli) if side == "server" else (cli, srv)
    target.proc.send_signal(sig)
    assert target.wait() == 128 + sig, target.err
    name = b"Interrupted" if sig == signal.SIGINT else b"Terminated"
    counts = b"sent 3 bytes, received 5 bytes" if side == "client" else b"received 3 bytes, sent 5 bytes"
    assert name + b": closed the session (" + counts + b")" in target.err, target.err
    assert peer.wait() == 7, peer.err  # a session ended before its stream did
    if side == "client":
        assert b"disconnected: client closed the session (client shutting down)" in peer.err, peer.err
    else:
        assert b"the server closed the session: server shutting down" in peer.err, peer.err


@pytest.mark.parametrize("server", list(SERVERS))
def test_pipe_client_against_request_reply_servers_gets_every_reply(spawn, keys: Path, server: str) -> None:
    """Each server answers the client's EOF with EOF after the last reply: with --echo the output
    is the input itself, whatever its size (flow control both ways)."""
    srv = spawn(server_argv(server, keys, "--echo", "--quiet") if server != "ref" else
                [*SERVERS["ref"], "--host", "127.0.0.1", "--port", "0", "--psk-file", str(keys), "--echo"],
                stdout=subprocess.PIPE)
    # Our servers print "Listening on" on stdout unless --pipe: read it there.
    line = b""
    while not (m := LISTENING.search(line)):
        line = srv.proc.stdout.readline()
        assert line, srv.err
    port = int(m.group(2))
    threading.Thread(target=srv.proc.stdout.read, daemon=True).start()  # drain the log lines
    data = os.urandom(6 * 1024 * 1024 + 3)
    cli = spawn(client_argv("cpp", port, keys))
    t_in = feed(cli.proc, data)
    t_out, out = collect(cli.proc)
    assert cli.wait() == 0, cli.err
    t_in.join(WAIT)
    t_out.join(WAIT)
    assert hashlib.sha256(out[0]).hexdigest() == hashlib.sha256(data).hexdigest()
    assert len(out[0]) == len(data)


@pytest.mark.parametrize("client", ["cpp", "py", "ref"])
def test_pipe_client_with_ack_server_writes_the_raw_replies(spawn, keys: Path, client: str) -> None:
    srv = spawn(server_argv("cpp", keys, "--quiet"))
    line = srv.proc.stdout.readline()
    port = int(LISTENING.search(line).group(2))
    cli = spawn(client_argv(client, port, keys))
    t_in = feed(cli.proc, b"12345")
    t_out, out = collect(cli.proc)
    assert cli.wait() == 0, cli.err
    t_in.join(WAIT)
    t_out.join(WAIT)
    assert out[0] == b"ACK: received 5 bytes"  # no [RECV], no newline: the reply's bytes as they are


@pytest.mark.parametrize(("server", "client"), [("cpp", "cpp"), ("py", "py")])
def test_pipe_memory_stays_bounded_on_a_large_stream(spawn, tmp_path: Path, keys: Path, env, server: str,
                                                     client: str) -> None:
    """128 MiB through a pipe server and client: neither grows with the stream (peak RSS, measured
    by tools/maxrss.py)."""
    size = 128 * 1024 * 1024
    measure = [PY, "-m", "tools.maxrss"]
    srv = spawn([*measure, str(tmp_path / "server.rss"), *server_argv(server, keys, "--pipe")],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    port = srv.wait_listening()
    digest, got = hashlib.sha256(), [0]
    client_started = threading.Event()

    def drain() -> None:
        # Nobody reads the server's output until the client has read all the input it will read
        # while blocked (its input position stands still), so a client or server that buffers
        # instead of waiting would hold most of the stream by then.
        client_started.wait(WAIT)
        last, still = -1, 0
        while still < 3 and last < size:
            pos = input_position()
            still = still + 1 if pos == last else 0
            last = pos
            time.sleep(0.1)
        while chunk := srv.proc.stdout.read(1 << 20):
            digest.update(chunk)
            got[0] += len(chunk)
    t = threading.Thread(target=drain, daemon=True)
    t.start()
    src = tmp_path / "big"  # a sparse file of zeros: the client reads it from the page cache
    with open(src, "wb") as f:
        f.truncate(size)
    with open(src, "rb") as f:
        cli = subprocess.Popen([*measure, str(tmp_path / "client.rss"), *client_argv(client, port, keys)],
                               cwd=tmp_path, env=env, stdin=f, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def input_position() -> int:  # the client's standard input (shared with its launcher)
        try:
            return int(re.search(r"pos:\s+(\d+)", Path(f"/proc/{cli.pid}/fdinfo/0").read_text()).group(1))
        except (OSError, AttributeError):
            return size
    client_started.set()
    try:
        _, err = cli.communicate(timeout=WAIT * 6)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.communicate()
    assert cli.returncode == 0, err
    assert srv.wait() == 0, srv.err
    t.join(WAIT)
    zeros = hashlib.sha256()
    for _ in range(size >> 20):
        zeros.update(bytes(1 << 20))
    assert got[0] == size and digest.hexdigest() == zeros.hexdigest()
    limit_kib = 64 * 1024 if client == "py" else 32 * 1024  # the Python interpreter alone is ~20 MiB
    for side in ("client", "server"):
        rss = int((tmp_path / f"{side}.rss").read_text())
        assert rss < limit_kib, f"{side} peak RSS {rss} KiB for a {size >> 20} MiB stream"


def test_pipe_flags_refused_where_they_make_no_sense(tmp_path: Path, env, keys: Path) -> None:
    for argv, text in [([*SERVERS["cpp"], "--pipe", "--echo"], "--echo does not go with --pipe"),
                       ([*SERVERS["py"], "--pipe", "--tls"], "--tls does not go with --pipe"),
                       ([*CLIENTS["cpp"], "127.0.0.1", "1", "hello", "--pipe"], "--pipe sends standard input"),
                       ([*CLIENTS["py"], "127.0.0.1", "1", "hello", "--pipe"], "--pipe sends standard input")]:
        r = subprocess.run([*argv, "--psk-file", str(keys), "--log-file", "-"], cwd=tmp_path, env=env,
                           capture_output=True, timeout=WAIT)
        assert r.returncode == 2 and text in r.stderr.decode(), (argv, r.stderr)


@pytest.mark.parametrize("server", list(PIPE_SERVERS))
def test_a_pipe_server_with_two_keys_takes_a_client_of_the_second(spawn, keys: Path, tmp_path: Path,
                                                                  server: str) -> None:
    """--psk-file twice (key rotation, PROTOCOL.md 12) on a pipe server, as on the others."""
    generate_key(tmp_path / "new")
    srv = spawn(server_argv(server, keys, "--pipe", "--psk-file", str(tmp_path / "new")))
    cli = spawn(client_argv("cpp", srv.wait_listening(), tmp_path / "new"))
    threads = [feed(srv.proc, b"down"), feed(cli.proc, b"up")]
    (t_srv, srv_out), (t_cli, cli_out) = collect(srv.proc), collect(cli.proc)
    assert cli.wait() == 0, cli.err
    assert srv.wait() == 0, srv.err
    for t in [*threads, t_srv, t_cli]:
        t.join(WAIT)
    assert srv_out[0] == b"up" and cli_out[0] == b"down"
    assert f"handshake complete (key {tmp_path / 'new'})".encode() in srv.err, srv.err
