"""./server, ./client and the Python programs end to end: what a peer sends cannot forge or
disguise a log line, the log file is private (0600, never through a symlink), --redact keeps
message content out of every log, key files another user could change are refused, and the
programs cannot be core-dumped."""

from __future__ import annotations

import os
import re
import resource
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tools.procs import WAIT, strip_timestamps
from tests.reference.seclink_ref import DATA, Message

SEP, PARA, RLO, LRI = "\u2028", "\u2029", "\u202e", "\u2066"
FORGED = "[INFO] 10.6.6.6:666 handshake complete"
OTHER_UID = 12345


def forged_lines(text: str) -> list[str]:
    """Lines (split the Unicode way) that start with the forged entry, timestamped or not."""
    return [line for line in text.splitlines() if line.lstrip("0123456789-:. ").startswith(FORGED)]


def one_error_line(result, prog: str) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), str(result)
    return lines[0]


# --------------------------------------------------------------------------- log injection

def test_a_separator_in_a_message_or_close_reason_never_forges_a_server_log_line(start_server, raw_peers, psk,
                                                                               workdir):
    srv = start_server()
    peer = raw_peers(srv.port, psk)
    peer.send(DATA, f"hi{SEP}{FORGED}".encode())
    assert isinstance(peer.next_event(), Message)
    peer.send(DATA, f"{RLO}gnp.exe{PARA}{FORGED}{LRI}".encode())
    assert isinstance(peer.next_event(), Message)
    peer.close_session(f"bye{SEP}{FORGED}{RLO}")
    srv.wait_for(r"disconnected: client closed the session")
    assert srv.stop() == 0
    log = (workdir / "server_logs.txt").read_text("utf-8")
    screen = srv.out.text
    for text in (log, screen):
        assert forged_lines(text) == [], text
        assert not set(text) & {SEP, PARA, RLO, LRI}, "a raw separator or bidi control reached the log"
    logged = strip_timestamps(log)  # every Unicode line starts an entry (or continues a trace)
    assert logged == srv.out.lines
    first, second = f"hi{SEP}{FORGED}".encode(), f"{RLO}gnp.exe{PARA}{FORGED}{LRI}".encode()
    assert f"[RECV] {peer.name} #1 hi\\u2028{FORGED} ({len(first)} bytes)" in logged, logged
    assert f"[RECV] {peer.name} #2 \\u202egnp.exe\\u2029{FORGED}\\u2066 ({len(second)} bytes)" in logged, logged
    assert f"[INFO] {peer.name} disconnected: client closed the session (bye\\u2028{FORGED}\\u202e)" in logged


def test_clients_escape_what_they_show(start_server, run_client, workdir):
    srv = start_server("--echo")
    message = f"{RLO}txt.exe{SEP}{FORGED}"
    r = run_client("127.0.0.1", srv.port, message)
    assert r.returncode == 0, str(r)
    log = (workdir / "client_logs.txt").read_text("utf-8")
    for text in (r.stdout, log):
        assert forged_lines(text) == [], text
        assert RLO not in text and SEP not in text
    shown = f"\\u202etxt.exe\\u2028{FORGED}"
    n = len(message.encode())
    assert f"[SEND] #1 {shown} ({n} bytes)" in r.stdout and f"[RECV] #1 {shown} (a reply of {n} bytes)" in r.stdout, r.stdout


# --------------------------------------------------------------------------- the log file

def test_new_log_files_are_private(start_server, run_client, tmp_path):
    old = os.umask(0o022)  # what made them 0644 before
    try:
        srv = start_server("--log-file", str(tmp_path / "s.log"))
        assert run_client("127.0.0.1", srv.port, "hi", "--log-file", tmp_path / "c.log").returncode == 0
    finally:
        os.umask(old)
    srv.wait_for(r"disconnected")
    for name in ("s.log", "c.log"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o600, name


@pytest.mark.parametrize("program", ["server", "client"])
def test_a_symlinked_log_file_is_refused_and_its_target_untouched(run_server, run_client, tmp_path, program):
    target = tmp_path / "precious"
    target.write_text("keep me\n")
    link = tmp_path / "log.txt"
    link.symlink_to(target)
    dangling = tmp_path / "dangling.txt"
    dangling.symlink_to(tmp_path / "created-elsewhere")
    for path in (link, dangling):
        if program == "server":
            r = run_server("--host", "127.0.0.1", "--port", "0", "--log-file", path)
        else:
            r = run_client("127.0.0.1", "9", "hi", "--log-file", path)
        assert r.returncode == 2, str(r)
        line = one_error_line(r, program)
        assert f"'{path}'" in line and "symbolic link" in line and "--log-file" in line, line
    assert target.read_text() == "keep me\n"
    assert not (tmp_path / "created-elsewhere").exists()


def test_an_existing_log_file_others_can_read_is_warned_about(start_server, workdir):
    log = workdir / "server_logs.txt"
    log.write_text("")
    log.chmod(0o644)
    srv = start_server()
    srv.wait_for(rf"^\[WARN\] log file server_logs.txt is accessible by group or others: run 'chmod 600 server_logs.txt'$")


# --------------------------------------------------------------------------- --redact

def test_redact_keeps_content_out_of_every_server_log(start_server, raw_peers, psk, workdir):
    srv = start_server("--redact")
    peer = raw_peers(srv.port, psk)
    peer.send(DATA, b"my secret plan")
    assert isinstance(peer.next_event(), Message)
    peer.close_session("secret reason")
    srv.wait_for(r"disconnected")
    assert srv.stop() == 0
    log = (workdir / "server_logs.txt").read_text("utf-8")
    for text in (log, srv.out.text):
        assert "secret" not in text and "ACK" not in text, text
    logged = strip_timestamps(log)
    assert f"[RECV] {peer.name} #1 <redacted> (14 bytes)" in logged
    assert f"[SEND] {peer.name} #1 <redacted> (a reply of 22 bytes)" in logged
    assert f"[INFO] {peer.name} disconnected: client closed the session (<redacted>)" in logged


def test_redact_keeps_content_out_of_every_client_log(start_server, run_client, workdir):
    srv = start_server("--echo")
    r = run_client("127.0.0.1", srv.port, "my secret plan", "--redact")
    assert r.returncode == 0, str(r)
    for text in (r.stdout, (workdir / "client_logs.txt").read_text()):
        assert "secret" not in text, text
        assert "[SEND] #1 <redacted> (14 bytes)" in text and "[RECV] #1 <redacted> (a reply of 14 bytes)" in text, text


@pytest.mark.parametrize("program", ["server", "client"])
def test_trace_and_redact_do_not_go_together(run_server, run_client, program):
    if program == "server":
        r = run_server("--host", "127.0.0.1", "--port", "0", "--trace", "--redact")
    else:
        r = run_client("127.0.0.1", "9", "hi", "--trace", "--redact")
    assert r.returncode == 2, str(r)
    assert "--redact" in one_error_line(r, program)


@pytest.mark.parametrize("program", ["server", "client"])
def test_help_mentions_redact(run_server, run_client, program):
    r = (run_server if program == "server" else run_client)("--help", psk=None)
    assert r.returncode == 0 and "--redact" in r.stdout and "<redacted>" in r.stdout, str(r)


# --------------------------------------------------------------------------- key files

@pytest.mark.parametrize("mode", [0o777, 0o1777, 0o770])
@pytest.mark.parametrize("program", ["server", "client"])
def test_a_key_in_a_directory_others_can_write_is_refused(run_server, run_client, psk_file, tmp_path, program, mode):
    where = tmp_path / "shared"
    where.mkdir()
    shutil.copy2(psk_file, where / "psk")
    where.chmod(mode)
    if program == "server":
        r = run_server("--host", "127.0.0.1", "--port", "0", psk=where / "psk")
    else:
        r = run_client("127.0.0.1", "9", "hi", psk=where / "psk")
    assert r.returncode == 3, str(r)
    line = one_error_line(r, program)
    assert "KEY_DIR" in line and "chmod go-w" in line and str(where / "psk") in line, line


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown the key to another user")
@pytest.mark.parametrize("program", ["server", "client"])
def test_root_using_another_users_key_is_warned(start_server, run_client, psk_file, program):
    warning = (rf"^\[WARN\] key file {psk_file} \(or its directory\) belongs to another user: loaded only because "
               r"root may read any key \(run the program as the key's owner instead\)$")
    if program == "server":
        os.chown(psk_file, OTHER_UID, OTHER_UID)
        srv = start_server()
        srv.wait_for(warning)
    else:
        srv = start_server()
        os.chown(psk_file, OTHER_UID, OTHER_UID)
        r = run_client("127.0.0.1", srv.port, "hi")
        assert r.returncode == 0, str(r)
        assert any(re.match(warning, line) for line in r.stdout.splitlines()), r.stdout


# --------------------------------------------------------------------------- core dumps

@pytest.fixture
def cores_enabled() -> Iterator[None]:
    """Programs started meanwhile may dump core (RLIMIT_CORE unlimited), and a plain process
    provably does so in its working directory here; else the test cannot tell anything."""
    pattern = Path("/proc/sys/kernel/core_pattern").read_text().strip()
    if pattern.startswith("|") or "/" in pattern:
        pytest.skip(f"core dumps go elsewhere here (core_pattern {pattern!r})")
    old = resource.getrlimit(resource.RLIMIT_CORE)
    resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_CORE, old)


def cores(where: Path) -> list[str]:
    return [p.name for p in where.iterdir() if p.name == "core" or p.name.startswith("core.")]


def test_a_plain_process_here_does_dump_core(cores_enabled, tmp_path):
    """The control for the test below: without prctl, SIGABRT leaves a core file."""
    p = subprocess.Popen(["sleep", "30"], cwd=tmp_path)
    p.send_signal(signal.SIGABRT)
    assert p.wait(WAIT) == -signal.SIGABRT
    assert cores(tmp_path) != []


def test_the_programs_never_dump_core(cores_enabled, start_server, spawn_client, workdir):
    srv = start_server()
    client = spawn_client("127.0.0.1", str(srv.port), stdin=True)
    client.out.wait_for(r"^\[INFO\] Connected to ")
    for p in (client, srv):
        p.proc.send_signal(signal.SIGABRT)
        assert p.wait() == -signal.SIGABRT
    assert cores(workdir) == [], "a core file holds the key and every message in memory"
