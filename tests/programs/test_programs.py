"""./server and ./client end to end: sessions, load, message sizes and limits, keys, options,
trace output, log files, limits on clients, shutdown."""

from __future__ import annotations

import base64
import os
import re
import signal
import socket
import stat
import time
from pathlib import Path

import pytest

from tools.procs import CEILING, WAIT, run_to_end, strip_timestamps
from tests.reference.seclink_ref import generate_key, load_key

CONNECTED = r"^\[INFO\] (127\.0\.0\.1:\d+) connected$"


def ack(n: int) -> str:
    """How the ACK of an n-byte message is shown: by the client that gets it, the server that sends it."""
    text = f"ACK: received {n} bytes"
    return f"{text} (a reply of {len(text)} bytes)"


def one_error_line(result, prog: str = "client") -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), str(result)
    return lines[0]


# --------------------------------------------------------------------------- sessions

def test_one_shot_session_sends_every_message_in_order_and_prints_each_ack(start_server, run_client, tmp_path):
    srv = start_server()
    msg_file = tmp_path / "msg"
    msg_file.write_bytes(b"from a file")
    r = run_client("127.0.0.1", srv.port, "hello", "", "héllo wörld", "--message", "--looks-like-a-flag",
                   "--message-file", msg_file, "--log-file", "-")
    assert r.returncode == 0, str(r)
    assert r.stderr == ""
    assert r.stdout.splitlines() == [
        f"[INFO] Connected to 127.0.0.1:{srv.port} (seclink/1: Noise NNpsk0 + AES-256-GCM)",
        "[SEND] #1 hello (5 bytes)", f"[RECV] #1 {ack(5)}",
        "[SEND] #2 <empty> (0 bytes)", f"[RECV] #2 {ack(0)}",
        "[SEND] #3 héllo wörld (13 bytes)", f"[RECV] #3 {ack(13)}",
        "[SEND] #4 --looks-like-a-flag (19 bytes)", f"[RECV] #4 {ack(19)}",
        "[SEND] #5 from a file (11 bytes)", f"[RECV] #5 {ack(11)}",
        "[INFO] Disconnected",
    ]
    peer = srv.wait_for(CONNECTED).group(1)
    srv.wait_for(rf"^\[INFO\] {peer} disconnected: client closed the session$")
    session = [line for line in srv.out.lines if peer in line]
    assert session == [
        f"[INFO] {peer} connected", f"[INFO] {peer} handshake complete",
        f"[RECV] {peer} #1 hello (5 bytes)", f"[SEND] {peer} #1 {ack(5)}",
        f"[RECV] {peer} #2 <empty> (0 bytes)", f"[SEND] {peer} #2 {ack(0)}",
        f"[RECV] {peer} #3 héllo wörld (13 bytes)", f"[SEND] {peer} #3 {ack(13)}",
        f"[RECV] {peer} #4 --looks-like-a-flag (19 bytes)", f"[SEND] {peer} #4 {ack(19)}",
        f"[RECV] {peer} #5 from a file (11 bytes)", f"[SEND] {peer} #5 {ack(11)}",
        f"[INFO] {peer} disconnected: client closed the session",
    ]


def test_interactive_session_answers_each_line_before_the_next_is_typed(start_server, spawn_client):
    srv = start_server()
    cli = spawn_client("127.0.0.1", srv.port, "--log-file", "-", stdin=True)
    cli.out.wait_for(r"^\[INFO\] Connected to ")
    cli.write("first\n")
    cli.out.wait_for(rf"^\[RECV\] #1 {re.escape(ack(5))}$")
    peer = srv.wait_for(r"^\[RECV\] (\S+) #1 first \(5 bytes\)$").group(1)
    assert srv.out.matching(rf"{peer} #2 ") == []  # nothing more was sent yet: the client waits for input
    cli.write("\n\nsecond line\n")                   # empty lines are skipped
    cli.out.wait_for(rf"^\[RECV\] #2 {re.escape(ack(11))}$")
    cli.write("exit\nnever sent\n")
    assert cli.wait() == 0
    assert cli.out.lines[-1] == "[INFO] Disconnected"
    srv.wait_for(rf"^\[INFO\] {peer} disconnected: client closed the session$")
    assert srv.out.matching(r"never sent") == []
    assert len(srv.out.matching(rf"^\[RECV\] {peer} ")) == 2


@pytest.mark.parametrize("end", ["exit", "quit", "!DISCONNECT", None], ids=["exit", "quit", "DISCONNECT", "EOF"])
def test_interactive_session_ends_at_a_keyword_or_end_of_input(start_server, run_client, end):
    srv = start_server()
    text = "a\r\n\nbb\n" + (f"{end}\nnot sent\n" if end else "no newline at the end")
    r = run_client("127.0.0.1", srv.port, "--log-file", "-", input=text)
    assert r.returncode == 0, str(r)
    sent = [line for line in r.stdout.splitlines() if line.startswith("[SEND]")]
    expected = ["[SEND] #1 a (1 byte)", "[SEND] #2 bb (2 bytes)"]
    if end is None:
        expected.append("[SEND] #3 no newline at the end (21 bytes)")
    assert sent == expected
    assert r.stdout.splitlines()[-1] == "[INFO] Disconnected"
    srv.wait_for(r"disconnected: client closed the session$")
    assert srv.out.matching(r"not sent") == []


@pytest.mark.parametrize("threads", ["2", "1"], ids=["two-threads", "one-thread"])
def test_fifty_concurrent_clients_each_get_their_own_hundred_replies(start_server, spawn_client, threads):
    srv = start_server("--echo", *(["--threads", threads] if threads else []))
    clients = []
    for i in range(50):
        msgs = [f"client{i:02d}-message{j:03d}-" + "x" * (i + j) for j in range(100)]
        clients.append((msgs, spawn_client("127.0.0.1", srv.port, "--log-file", "-", *msgs)))
    for msgs, cli in clients:
        assert cli.wait(CEILING) == 0, cli.err.text
        lines = cli.out.lines
        assert len(lines) == 2 + 2 * len(msgs), lines[:5]
        for j, m in enumerate(msgs):  # every reply is the echo of this client's own message
            assert lines[1 + 2 * j] == f"[SEND] #{j + 1} {m} ({len(m)} bytes)"
            assert lines[2 + 2 * j] == f"[RECV] #{j + 1} {m} (a reply of {len(m)} bytes)"
    srv.wait_for(r"disconnected: client closed the session$", count=50, timeout=CEILING)
    assert len(srv.out.matching(r"^\[RECV\] \S+ #\d+ client")) == 5000
    assert len(srv.out.matching(r"^\[SEND\] \S+ #100 client")) == 50
    assert srv.out.matching(r"^\[(WARN|ERROR)\]") == []


MESSAGES = {
    "one-byte": b"x",
    "empty": b"",
    "utf8": "héllo wörld ✓ 日本語 🙂".encode(),
    "long-utf8": "é".encode() * 600,
    "binary": bytes(range(256)),
    "1MiB": os.urandom(1 << 20),
    "16MiB": os.urandom(16 << 20),  # exactly the default limit: accepted
}


def shown(content: bytes) -> str:
    """How the programs show a message in their logs."""
    if not content:
        return "<empty>"
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        return "<binary>"
    if not text.isprintable():
        return "<binary>"
    return text if len(content) <= 200 else content[:200].decode("utf-8", errors="ignore") + "..."


@pytest.mark.parametrize("name", list(MESSAGES))
def test_echo_of_each_message_size_and_kind(start_server, run_client, tmp_path, name):
    content = MESSAGES[name]
    path = tmp_path / "message"
    path.write_bytes(content)
    srv = start_server("--echo")
    r = run_client("127.0.0.1", srv.port, "--message-file", path, "--log-file", "-", timeout=CEILING)
    assert r.returncode == 0, str(r)
    n = len(content)
    size = f"{n} byte" + ("" if n == 1 else "s")
    assert r.stdout.splitlines()[1:3] == [f"[SEND] #1 {shown(content)} ({size})",
                                         f"[RECV] #1 {shown(content)} (a reply of {size})"]
    peer = srv.wait_for(CONNECTED).group(1)
    srv.wait_for(rf"^\[INFO\] {peer} disconnected: client closed the session$")
    assert [line for line in srv.out.lines if line.startswith(("[RECV]", "[SEND]"))] == [
        f"[RECV] {peer} #1 {shown(content)} ({size})", f"[SEND] {peer} #1 {shown(content)} (a reply of {size})"]


def test_acks_report_the_size_of_every_message(start_server, run_client, tmp_path):
    srv = start_server()
    paths = []
    for name, content in MESSAGES.items():
        (tmp_path / name).write_bytes(content)
        paths += ["--message-file", tmp_path / name]
    r = run_client("127.0.0.1", srv.port, *paths, "--log-file", "-", timeout=CEILING)
    assert r.returncode == 0, str(r)
    received = [line for line in r.stdout.splitlines() if line.startswith("[RECV]")]
    assert received == [f"[RECV] #{i} {ack(len(c))}" for i, c in enumerate(MESSAGES.values(), 1)]
    peer = srv.wait_for(CONNECTED).group(1)
    srv.wait_for(rf"disconnected: client closed the session$")
    for i, content in enumerate(MESSAGES.values(), 1):
        n = len(content)
        assert srv.out.matching(rf"^\[RECV\] {peer} #{i} .* \({n} byte{'' if n == 1 else 's'}\)$")


def test_echo_returns_exactly_the_bytes_sent(start_server, raw_peers, psk):
    srv = start_server("--echo")
    peer = raw_peers(srv.port, psk)
    for content in (b"\x00\xff" * 7, MESSAGES["1MiB"], MESSAGES["16MiB"]):
        assert peer.request(content, timeout=CEILING) == content


# --------------------------------------------------------------------------- size limits

@pytest.mark.parametrize("case", ["client-limit", "default-limit"])
def test_message_over_the_limit_is_refused_before_anything_is_sent(start_server, run_client, tmp_path, case):
    srv = start_server()
    if case == "client-limit":
        args, n, limit, index = ["fits", "this one is too long", "--max-message", "10"], 20, 10, 2
    else:
        (tmp_path / "big").write_bytes(b"\x01" * ((16 << 20) + 1))
        args, n, limit, index = ["small", "--message-file", tmp_path / "big"], (16 << 20) + 1, 16 << 20, 2
    r = run_client("127.0.0.1", srv.port, *args)
    assert r.returncode == 8, str(r)
    assert r.stdout == ""
    assert one_error_line(r) == (f"client: error: message {index} is {n} bytes, over the limit of {limit} bytes "
                                 "(--max-message); nothing was sent")
    # A client started afterwards is the first (and only) connection the server ever saw.
    ok = run_client("127.0.0.1", srv.port, "after")
    assert ok.returncode == 0, str(ok)
    srv.wait_for(r"disconnected: client closed the session$")
    assert len(srv.out.matching(CONNECTED)) == 1
    assert len(srv.out.matching(r"^\[RECV\] ")) == 1


def test_interactive_line_over_the_limit_is_refused_and_not_sent(start_server, run_client):
    srv = start_server()
    r = run_client("127.0.0.1", srv.port, "--max-message", "30", "--log-file", "-",  # an ACK is 21 bytes
                   input="short\nthis line is too long: 31 bytes\nafter\n")
    assert r.returncode == 8, str(r)
    assert "over the limit" in one_error_line(r)
    assert [line for line in r.stdout.splitlines() if line.startswith("[SEND]")] == ["[SEND] #1 short (5 bytes)"]
    peer = srv.wait_for(r"^\[RECV\] (\S+) #1 short \(5 bytes\)$").group(1)
    srv.wait_for(rf"^\[INFO\] {peer} disconnected: ")
    assert len(srv.out.matching(r"^\[RECV\] ")) == 1


def test_server_limit_rejects_a_larger_message_and_closes_that_session(start_server, run_client):
    srv = start_server("--max-message", "1000")
    ok = run_client("127.0.0.1", srv.port, "a" * 1000)
    assert ok.returncode == 0 and f"[RECV] #1 {ack(1000)}" in ok.stdout, str(ok)
    r = run_client("127.0.0.1", srv.port, "b" * 1001)
    assert r.returncode == 7, str(r)
    one_error_line(r)
    srv.wait_for(r"^\[WARN\] 127\.0\.0\.1:\d+ disconnected: protocol error: FRAME_TOO_LARGE: ")
    assert len(srv.out.matching(r"^\[RECV\] ")) == 1


def test_small_server_limit_still_acknowledges_messages_within_it(start_server, run_client):
    srv = start_server("--max-message", "10")
    r = run_client("127.0.0.1", srv.port, "hello")
    assert r.returncode == 0, str(r)
    assert f"[RECV] #1 {ack(5)}" in r.stdout
    assert srv.out.matching(r"^\[WARN\]") == []


# --------------------------------------------------------------------------- keys

def test_wrong_psk_fails_the_handshake_on_both_sides(start_server, run_client, tmp_path):
    srv = start_server()
    generate_key(tmp_path / "other")
    r = run_client("127.0.0.1", srv.port, "secret", psk=tmp_path / "other")
    assert r.returncode == 5, str(r)
    assert "different pre-shared key" in one_error_line(r)
    assert "[SEND]" not in r.stdout
    peer = srv.wait_for(r"^\[WARN\] (127\.0\.0\.1:\d+) disconnected: handshake failed: HANDSHAKE_AUTH: ").group(1)
    assert srv.out.matching(rf"{peer} handshake complete") == []
    assert srv.out.matching(r"^\[RECV\]") == []
    ok = run_client("127.0.0.1", srv.port, "right key")
    assert ok.returncode == 0, str(ok)


def test_first_program_creates_the_default_key_and_the_other_uses_it(start_server, run_client, home):
    key = home / "config" / "seclink" / "psk"
    srv = start_server(psk=None)
    assert srv.out.lines[0] == (f"[INFO] No key found: created a new pre-shared key at {key} "
                                "(copy it to the other side to talk across machines)")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    before = key.read_bytes()
    load_key(key)  # valid for the reference implementation too
    r = run_client("127.0.0.1", srv.port, "hi", psk=None)
    assert r.returncode == 0, str(r)
    assert "No key found" not in r.stdout
    assert key.read_bytes() == before


def test_client_run_first_creates_the_key_the_server_then_uses(start_server, run_client, home):
    key = home / "config" / "seclink" / "psk"
    with socket.socket() as closed_port:  # bound, not listening: the connection is refused
        closed_port.bind(("127.0.0.1", 0))
        r = run_client("127.0.0.1", closed_port.getsockname()[1], "hi", psk=None)
    assert r.returncode == 4, str(r)
    assert f"created a new pre-shared key at {key}" in r.stdout
    srv = start_server(psk=None)
    assert not srv.out.matching("No key found")
    assert run_client("127.0.0.1", srv.port, "hi", psk=None).returncode == 0


def test_seclink_psk_file_environment_variable(start_server, run_client, env, psk_file, tmp_path):
    env = dict(env, SECLINK_PSK_FILE=str(psk_file))
    srv = start_server(psk=None, env=env)
    assert srv.wait_for(r"key (\S+)$").group(1) == str(psk_file)
    assert run_client("127.0.0.1", srv.port, "hi", psk=None, env=env).returncode == 0
    missing = dict(env, SECLINK_PSK_FILE=str(tmp_path / "missing"))
    r = run_client("127.0.0.1", srv.port, "hi", psk=None, env=missing)
    assert r.returncode == 3, str(r)
    assert "KEY_NOT_FOUND" in one_error_line(r)
    assert not (tmp_path / "missing").exists()  # only the default location is created on demand


def test_empty_seclink_psk_file_behaves_like_unset(run_client, env, home):
    with socket.socket() as closed_port:
        closed_port.bind(("127.0.0.1", 0))
        r = run_client("127.0.0.1", closed_port.getsockname()[1], "hi", psk=None, env=dict(env, SECLINK_PSK_FILE=""))
    assert r.returncode == 4, str(r)  # the key was created; only connecting failed
    assert (home / "config" / "seclink" / "psk").exists()


@pytest.mark.parametrize("program", ["server", "client"])
def test_keygen_writes_a_0600_key_and_never_overwrites(program, tmp_path, env, workdir, server_argv, client_argv):
    argv = server_argv if program == "server" else client_argv
    path = tmp_path / "new" / "dir" / "key"
    r = run_to_end([*argv, "--keygen", "--psk-file", str(path)], cwd=workdir, env=env, input=None, timeout=WAIT)
    assert r.returncode == 0, str(r)
    assert str(path) in r.stdout
    text = path.read_bytes()
    assert re.fullmatch(rb"[A-Za-z0-9+/]{43}=\n", text)
    assert len(base64.b64decode(text)) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_key(path) == base64.b64decode(text)
    again = run_to_end([*argv, "--keygen", "--psk-file", str(path)], cwd=workdir, env=env, input=None, timeout=WAIT)
    assert again.returncode == 3, str(again)
    assert "already exists" in one_error_line(again, program)
    assert path.read_bytes() == text
    # Without --psk-file: the default location.
    r = run_to_end([*argv, "--keygen"], cwd=workdir, env=env, input=None, timeout=WAIT)
    assert r.returncode == 0, str(r)
    assert load_key(Path(env["XDG_CONFIG_HOME"]) / "seclink" / "psk")


def make_bad_key(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"key-{kind}"
    if kind == "mode-0644":
        generate_key(path)
        path.chmod(0o644)
    elif kind == "symlink":
        generate_key(tmp_path / "real")
        path.symlink_to(tmp_path / "real")
    elif kind == "not-base64":
        path.write_text("this is not a key\n")
        path.chmod(0o600)
    elif kind == "wrong-size":
        path.write_text(base64.b64encode(b"k" * 16).decode() + "\n")
        path.chmod(0o600)
    return path  # "missing": never created


KEY_PROBLEMS = {"mode-0644": ("KEY_PERMISSIONS", "chmod 600"), "symlink": ("KEY_SYMLINK", "symbolic link"),
                "not-base64": ("KEY_FORMAT", "--keygen"), "wrong-size": ("KEY_SIZE", "--keygen"),
                "missing": ("KEY_NOT_FOUND", "--keygen")}


@pytest.mark.parametrize("kind", list(KEY_PROBLEMS))
@pytest.mark.parametrize("program", ["server", "client"])
def test_unusable_key_file_exits_3_and_says_how_to_fix_it(run_server, run_client, tmp_path, program, kind):
    path = make_bad_key(tmp_path, kind)
    if program == "server":
        r = run_server("--host", "127.0.0.1", "--port", "0", psk=path)
    else:
        r = run_client("127.0.0.1", "9", "hi", psk=path)  # fails before connecting
    assert r.returncode == 3, str(r)
    line = one_error_line(r, program)
    name, fix = KEY_PROBLEMS[kind]
    assert name in line and fix in line, line
    assert "Listening" not in r.stdout
    if kind in ("mode-0644", "symlink"):  # the key itself is never shown
        key = (tmp_path / "real" if kind == "symlink" else path).read_text().strip()
        assert key not in r.stdout + r.stderr


# --------------------------------------------------------------------------- options and errors

def test_port_in_use_exits_4_and_the_first_server_keeps_serving(start_server, run_server, run_client):
    srv = start_server()
    r = run_server("--host", "127.0.0.1", "--port", str(srv.port))
    assert r.returncode == 4, str(r)
    assert "in use" in one_error_line(r, "server")
    assert run_client("127.0.0.1", srv.port, "still mine").returncode == 0


def test_server_cannot_listen_on_a_foreign_address(run_server):
    r = run_server("--host", "192.0.2.1", "--port", "0")  # TEST-NET-1: not an address of this machine
    assert r.returncode == 4, str(r)
    one_error_line(r, "server")


def test_client_exits_4_when_the_connection_is_refused(run_client):
    with socket.socket() as closed_port:
        closed_port.bind(("127.0.0.1", 0))
        r = run_client("127.0.0.1", closed_port.getsockname()[1], "hi")
    assert r.returncode == 4, str(r)
    assert "cannot connect to 127.0.0.1:" in one_error_line(r)
    assert "[SEND]" not in r.stdout


def test_ipv6_loopback(start_server, run_client):
    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError:
        pytest.skip("no IPv6 loopback here")
    srv = start_server(host="::1")
    assert srv.host == "[::1]"
    r = run_client("::1", srv.port, "over IPv6")
    assert r.returncode == 0, str(r)
    srv.wait_for(r"^\[RECV\] \[::1\]:\d+ #1 over IPv6 \(9 bytes\)$")


@pytest.mark.parametrize("program", ["server", "client"])
def test_unwritable_log_file_is_a_clear_error(run_server, run_client, tmp_path, program):
    where = tmp_path / "no" / "such" / "dir" / "log.txt"
    if program == "server":
        r = run_server("--host", "127.0.0.1", "--port", "0", "--log-file", where)
    else:
        r = run_client("127.0.0.1", "9", "hi", "--log-file", where)
    assert r.returncode == 2, str(r)
    assert "--log-file" in one_error_line(r, program)


def test_server_port_as_positional_argument(start_server, run_client):
    srv = start_server("0", "--host", "127.0.0.1", host=None)
    assert srv.host == "127.0.0.1" and srv.port > 0
    assert run_client("--port", srv.port, "--host", "127.0.0.1", "hi").returncode == 0


BAD_ARGS = [
    ("server", ["--bogus"], "unknown option '--bogus'"),
    ("client", ["127.0.0.1", "5000", "hi", "--bogus"], "unknown option '--bogus'"),
    ("server", ["--port", "70000"], "--port"),
    ("server", ["--threads", "0"], "--threads"),
    ("server", ["--idle-timeout"], "needs a value"),
    ("server", ["--quiet=yes"], "takes no value"),
    ("server", ["1", "2"], "too many arguments"),
    ("client", ["127.0.0.1", "notaport", "hi"], "PORT"),
    ("client", ["127.0.0.1", "5000", "hi", "--timeout", "-1"], "--timeout"),
    ("client", ["127.0.0.1", "5000", "hi", "--tls-pin", "00"], "need --tls"),
    ("server", ["--tls-cert", "cert.pem", "--tls-key", "key.pem"], "need --tls"),
]


@pytest.mark.parametrize(("program", "args", "says"), BAD_ARGS, ids=[f"{p}:{s}" for p, _, s in BAD_ARGS])
def test_bad_option_exits_2_with_one_error_line(run_server, run_client, psk_file, program, args, says):
    psk = None if args[-1] == "--idle-timeout" else psk_file  # that one must stay last
    r = (run_server if program == "server" else run_client)(*args, psk=psk)
    assert r.returncode == 2, str(r)
    assert says in one_error_line(r, program)
    assert r.stdout == ""


@pytest.mark.parametrize("program", ["server", "client"])
def test_help_and_version(program, env, workdir, lang, server_argv, client_argv):
    argv = server_argv if program == "server" else client_argv
    r = run_to_end([*argv, "--help"], cwd=workdir, env=env, input=None, timeout=WAIT)
    assert r.returncode == 0 and r.stdout.startswith(f"usage: {Path(argv[-1]).name} "), str(r)
    for flag in ["--psk-file", "--keygen", "--log-file", "--quiet", "--trace", "--tls", "--max-message"]:
        assert flag in r.stdout
    v = run_to_end([*argv, "--version"], cwd=workdir, env=env, input=None, timeout=WAIT)
    tag = {"cpp": r"c\+\+", "py": "python"}[lang]
    assert v.returncode == 0 and re.fullmatch(rf"seclink {program} \S+ \({tag}\), protocol seclink/1\n", v.stdout)


def test_default_worker_count_is_one_per_cpu_less_one(start_server, server_argv, env, workdir):
    want = max(1, len(os.sched_getaffinity(0)) - 1)  # the CPUs this process (and the server) may use
    srv = start_server()
    srv.wait_for(rf"^\[INFO\] seclink server \S+ \((c\+\+|python)\): {want} worker thread{'' if want == 1 else 's'}, ")
    r = run_to_end([*server_argv, "--help"], cwd=workdir, env=env, input=None, timeout=WAIT)
    assert "worker threads (default: one per core, less one; at least 1)" in r.stdout, r.stdout


# --------------------------------------------------------------------------- trace

def trace_blocks(lines: list[str]) -> list[tuple[str, dict[str, tuple[str, str]]]]:
    """[(header, {label: (value, note)})] for every [TRACE] entry."""
    blocks: list[tuple[str, dict[str, tuple[str, str]]]] = []
    for line in lines:
        if line.startswith("[TRACE] "):
            blocks.append((line, {}))
        elif line.startswith("        ") and blocks:
            m = re.fullmatch(r" {8}(\S+) +(.+?)(?: {2,}(.*))?", line)
            assert m, line
            blocks[-1][1][m.group(1)] = (m.group(2), m.group(3) or "")
    return blocks


def test_trace_shows_every_frame_annotated_on_both_sides(start_server, run_client, psk_file, psk):
    srv = start_server("--trace")
    r = run_client("127.0.0.1", srv.port, "hi", "--trace", "--log-file", "-")
    assert r.returncode == 0, str(r)
    srv.wait_for(r"disconnected: client closed the session$")
    client = trace_blocks(r.stdout.splitlines())
    server = trace_blocks(srv.out.lines)
    # After the handshake: the key-confirmation PING and its PONG (PROTOCOL.md 4.1), "hi", the ACK, CLOSE.
    assert [h.split(" ", 2)[2] for h, _ in client] == [
        "-> sent handshake frame 1, 57 bytes on the wire", "<- received handshake frame 2, 52 bytes on the wire",
        "-> sent transport frame, 33 bytes on the wire", "-> sent transport frame, 35 bytes on the wire",
        "<- received transport frame, 33 bytes on the wire", "<- received transport frame, 54 bytes on the wire",
        "-> sent transport frame, 33 bytes on the wire"]
    assert [h.split(" ", 2)[2] for h, _ in server] == [
        "<- received handshake frame 1, 57 bytes on the wire", "-> sent handshake frame 2, 52 bytes on the wire",
        "<- received transport frame, 33 bytes on the wire", "-> sent transport frame, 33 bytes on the wire",
        "<- received transport frame, 35 bytes on the wire", "-> sent transport frame, 54 bytes on the wire",
        "<- received transport frame, 33 bytes on the wire"]
    confirm = client[2][1]
    assert confirm["iv"] == ("000000000000000000000000", "counter 0") and confirm["plain"] == ("03", "PING <empty>")
    hello = client[3][1]
    assert hello["length"] == ("0000001f", "31 bytes follow (big-endian)")
    assert hello["iv"] == ("000000000000000000000001", "counter 1")
    assert re.fullmatch(r"[0-9a-f]{6}", hello["cipher"][0]) and hello["cipher"][1] == "AES-256-GCM ciphertext, 3 bytes"
    assert re.fullmatch(r"[0-9a-f]{32}", hello["tag"][0])
    assert hello["plain"] == ("01 6869", "DATA hi")
    reply = client[5][1]
    assert reply["plain"] == ("01 " + b"ACK: received 2 bytes".hex(), "DATA ACK: received 2 bytes")
    close = client[6][1]
    assert close["iv"] == ("000000000000000000000002", "counter 2") and close["plain"][1] == "CLOSE <empty>"
    assert client[0][1]["magic"][0] == "534c4e4b01" and re.fullmatch(r"[0-9a-f]{64}", client[0][1]["e.pub"][0])
    # Both sides show the same bytes for each frame: the trace is of the wire, not made up.
    def frames(blocks: list, arrow: str) -> list:
        return [fields for head, fields in blocks if head.split(" ", 2)[2].startswith(arrow)]
    assert frames(client, "->") == frames(server, "<-") and frames(client, "<-") == frames(server, "->")
    # Keys never appear, not even in a trace.
    everything = r.stdout + r.stderr + srv.out.text
    assert psk_file.read_text().strip() not in everything and psk.hex() not in everything


# --------------------------------------------------------------------------- logs

def test_log_files_hold_exactly_what_the_screen_showed(start_server, run_client, workdir, tmp_path):
    (workdir / "server_logs.txt").write_text("2000-01-01 00:00:00.000 [INFO] an earlier run\n")
    srv = start_server("--trace")  # default --log-file: server_logs.txt in the working directory
    r = run_client("127.0.0.1", srv.port, "hello", "\x01binary")
    assert r.returncode == 0, str(r)
    generate_key(tmp_path / "other")
    bad = run_client("127.0.0.1", srv.port, "x", "--log-file", "-", psk=tmp_path / "other")
    assert bad.returncode == 5
    srv.wait_for(r"^\[WARN\] .* HANDSHAKE_AUTH")
    assert srv.stop() == 0
    logged = strip_timestamps((workdir / "server_logs.txt").read_text())
    assert logged[0] == "[INFO] an earlier run"  # appended, not replaced
    assert logged[1:] == srv.out.lines
    assert any(line.startswith("[TRACE]") for line in logged) and any(line.startswith("[WARN]") for line in logged)
    assert strip_timestamps((workdir / "client_logs.txt").read_text()) == r.stdout.splitlines()


def test_log_file_option_and_dash_for_none(start_server, run_client, workdir, tmp_path):
    srv = start_server("--log-file", str(tmp_path / "s.log"))
    assert run_client("127.0.0.1", srv.port, "hi", "--log-file", tmp_path / "c.log").returncode == 0
    srv.wait_for(r"disconnected: client closed the session$")
    assert strip_timestamps((tmp_path / "s.log").read_text()) == srv.out.lines
    assert "[RECV] #1 " in (tmp_path / "c.log").read_text()
    srv2 = start_server("--log-file", "-")
    assert run_client("127.0.0.1", srv2.port, "hi", "--log-file", "-").returncode == 0
    srv2.wait_for(r"disconnected: client closed the session$")
    assert sorted(p.name for p in workdir.iterdir()) == []


def test_quiet_keeps_only_warnings_and_replies(start_server, run_client, tmp_path):
    srv = start_server("--quiet")
    r = run_client("127.0.0.1", srv.port, "one", "two", "--quiet", "--log-file", "-")
    assert r.returncode == 0, str(r)
    assert r.stdout.splitlines() == [f"[RECV] #1 {ack(3)}", f"[RECV] #2 {ack(3)}"]
    generate_key(tmp_path / "other")
    assert run_client("127.0.0.1", srv.port, "x", psk=tmp_path / "other").returncode == 5
    srv.wait_for(r"HANDSHAKE_AUTH")
    assert srv.stop() == 0
    lines = srv.out.lines
    assert lines[0] == f"[INFO] Listening on 127.0.0.1:{srv.port}"  # shown even under --quiet
    assert len(lines) == 2 and re.match(r"^\[WARN\] 127\.0\.0\.1:\d+ disconnected: handshake failed: HANDSHAKE_AUTH",
                                        lines[1]), lines


# --------------------------------------------------------------------------- limits on clients, shutdown

def test_max_clients_tells_the_next_client_the_server_is_full(start_server, run_client, raw_peers, psk):
    srv = start_server("--max-clients", "2")
    a, b = raw_peers(srv.port, psk), raw_peers(srv.port, psk)
    srv.wait_for(r"handshake complete$", count=2)
    r = run_client("127.0.0.1", srv.port, "let me in")
    assert r.returncode == 7, str(r)
    assert "server full" in one_error_line(r)
    srv.wait_for(r"^\[WARN\] 127\.0\.0\.1:\d+ disconnected: refused: server full \(2 clients\)$")
    assert srv.out.matching(r"let me in") == []
    assert a.request(b"a") == b"ACK: received 1 bytes" and b.request(b"bb") == b"ACK: received 2 bytes"
    a.close_session("making room")
    srv.wait_for(rf"^\[INFO\] {a.name} disconnected: client closed the session \(making room\)$")
    r = run_client("127.0.0.1", srv.port, "now there is room")
    assert r.returncode == 0, str(r)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_during_traffic_closes_every_session_and_exits_0(start_server, spawn_client, raw_peers, psk, signum):
    srv = start_server("--echo")
    busy = spawn_client("127.0.0.1", srv.port, "--quiet", "--log-file", "-", *[f"m{i}" for i in range(20000)])
    idle = [raw_peers(srv.port, psk) for _ in range(2)]
    half_open = socket.create_connection(("127.0.0.1", srv.port), timeout=WAIT)
    try:
        busy.out.wait_for(r"^\[RECV\] #200 m199 ")
        srv.wait_for(r"\d connected$", count=4)
        t0 = time.monotonic()
        srv.proc.send_signal(signum)
        assert srv.wait() == 0
        assert time.monotonic() - t0 < 3, "the server took too long to stop"
        for p in idle:
            p.expect_close("server shutting down")
        assert busy.wait() == 7
        assert busy.err.lines == ["client: error: the server closed the session: server shutting down"]
        assert len(busy.out.lines) < 20000
        assert half_open.recv(100) == b""  # mid-handshake: closed without a CLOSE
    finally:
        half_open.close()
    word = "Terminated" if signum == signal.SIGTERM else "Interrupted"
    lines = srv.out.lines
    assert f"[INFO] {word}: closing 4 sessions" in lines
    assert lines[-1] == "[INFO] Server stopped"
    assert len(srv.out.matching(r"disconnected: server shutting down$")) == 4
