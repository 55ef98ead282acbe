"""What a new user meets first, for both languages' programs: short options and --help, the
Python programs before `make`, socket errors in words, how sizes and addresses are written, the
limits of interactive input, text files shown as text."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import termios

import pytest

from tools.procs import WAIT, Lines, run_to_end
from tests.matrix import LANGS, REPO


def one_error_line(result, prog: str) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), str(result)
    return lines[0]


# --------------------------------------------------------------------------- options

@pytest.mark.parametrize("program", ["server", "client"])
def test_dash_h_is_help_and_touches_nothing(run_server, run_client, home, program):
    r = (run_server if program == "server" else run_client)("-h", psk=None)
    assert r.returncode == 0 and r.stdout.startswith("usage: "), str(r)
    assert "-h, --help" in r.stdout
    assert not (home / "config" / "seclink" / "psk").exists(), "-h created a key file"


@pytest.mark.parametrize("program", ["server", "client"])
def test_a_single_dash_option_is_named_not_taken_for_an_argument(run_server, run_client, home, program):
    r = (run_server if program == "server" else run_client)("-p", "5003", psk=None)
    assert r.returncode == 2, str(r)
    line = one_error_line(r, program)
    assert "unknown option '-p'" in line and "--port" in line, line
    assert not (home / "config" / "seclink" / "psk").exists()


def test_a_message_that_starts_with_a_dash_goes_after_double_dash(start_server, run_client, psk_file):
    srv = start_server()
    r = run_client("--log-file", "-", "--psk-file", psk_file, "--", "127.0.0.1", str(srv.port), "-5", psk=None)
    assert r.returncode == 0, str(r)
    assert "[SEND] #1 -5 (2 bytes)" in r.stdout


@pytest.mark.parametrize("program", ["server", "client"])
def test_help_is_one_text_for_both_languages(env, workdir, program):
    """The flag table and help come from one file (python/seclink/flags.json): the same text but
    for the usage line's program name and the flags only the Python programs have."""
    i = 0 if program == "server" else 1
    cpp = run_to_end([*LANGS["cpp"][i], "--help"], cwd=workdir, env=env, input=None, timeout=WAIT)
    py = run_to_end([*LANGS["py"][i], "--help"], cwd=workdir, env=env, input=None, timeout=WAIT)
    assert cpp.returncode == 0 and py.returncode == 0
    py_only = [line for line in py.stdout.splitlines() if line.startswith("  --asyncio")]
    assert py_only, "the Python programs' --asyncio is in their help"
    py_lines = py.stdout.splitlines()
    k = py_lines.index(py_only[0])
    del py_lines[k]  # --asyncio, and its continuation lines
    while py_lines[k].startswith(" " * 27):
        del py_lines[k]
    assert cpp.stdout.splitlines()[1:] == py_lines[1:]
    assert cpp.stdout.splitlines()[0].replace(program, "X", 1) == py_lines[0].replace(f"{program}.py", "X", 1)


def test_help_shows_the_core_defaults(run_server):
    r = run_server("--help", psk=None)
    assert "(default 5000;" in r.stdout and "(default 10000)" in r.stdout and "(default 300)" in r.stdout
    assert "{DEFAULT" not in r.stdout


# --------------------------------------------------------------------------- before make

@pytest.mark.parametrize("script", ["server.py", "client.py"])
def test_python_programs_before_make_say_run_make(tmp_path, env, script):
    """A clone without the built extension: one sentence saying what to do, not a traceback."""
    shutil.copytree(REPO / "python", tmp_path / "python",
                    ignore=shutil.ignore_patterns("_seclink*.so", "__pycache__", "tests"))
    r = subprocess.run([sys.executable, str(tmp_path / "python" / script), "--help"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=WAIT)
    assert r.returncode == 1, r
    assert "Traceback" not in r.stderr, r.stderr
    assert "run `make` first (or `pip install .`)" in r.stderr, r.stderr


# --------------------------------------------------------------------------- socket errors

def test_listening_on_an_address_of_another_machine_says_so(run_server):
    r = run_server("--host", "10.255.255.1", "--port", "0")
    assert r.returncode == 4, str(r)
    assert "not an address of this machine" in one_error_line(r, "server")


def test_any_other_socket_error_gives_the_systems_words(run_server):
    """A link-local IPv6 address without its interface: no error of ours fits, so the operating
    system's description is given (not "see errno", which a user cannot see)."""
    r = run_server("--host", "fe80::1", "--port", "0")
    assert r.returncode == 4, str(r)
    line = one_error_line(r, "server")
    assert "cannot listen on [fe80::1]:0: " in line and "errno" not in line, line
    assert "(Invalid argument)" in line or "[ADDRNOTAVAIL]" in line, line


# --------------------------------------------------------------------------- how things are written

def test_sizes_are_written_in_words_with_plurals(start_server, run_client):
    srv = start_server()
    r = run_client("127.0.0.1", srv.port, "x", "--log-file", "-")
    assert r.returncode == 0, str(r)
    assert "[SEND] #1 x (1 byte)" in r.stdout.splitlines(), r.stdout
    assert [line for line in r.stdout.splitlines() if line.startswith("[RECV] #1 ")][0].endswith(
        " (a reply of 21 bytes)"), r.stdout


def test_one_session_is_one_session(start_server, spawn_client):
    srv = start_server()
    cli = spawn_client("127.0.0.1", srv.port, "--log-file", "-", stdin=True)
    cli.out.wait_for(r"^\[INFO\] Connected to ")
    cli.write("hi\n")
    cli.out.wait_for(r"^\[RECV\] #1 ")
    srv.stop()
    assert "[INFO] Terminated: closing 1 session" in srv.out.lines, srv.out.text


def test_ipv6_addresses_are_written_in_brackets(start_server, run_client):
    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError:
        pytest.skip("no IPv6 loopback here")
    srv = start_server(host="::1")
    assert srv.host == "[::1]", srv.out.text
    r = run_client("::1", srv.port, "hi", "--log-file", "-")
    assert r.returncode == 0, str(r)
    assert r.stdout.startswith(f"[INFO] Connected to [::1]:{srv.port} "), r.stdout
    srv.stop()
    r = run_client("::1", srv.port, "hi", "--log-file", "-")
    assert r.returncode == 4 and f"cannot connect to [::1]:{srv.port}: " in r.stderr, str(r)


def test_a_text_file_is_shown_as_text(start_server, run_client, tmp_path):
    srv = start_server()
    f = tmp_path / "note.txt"
    f.write_text("héllo\r\nsecond line\n", encoding="utf-8")
    r = run_client("127.0.0.1", srv.port, "--message-file", f, "--log-file", "-")
    assert r.returncode == 0, str(r)
    assert "[SEND] #1 héllo\\r\\nsecond line\\n (20 bytes)" in r.stdout.splitlines(), r.stdout
    srv.wait_for(r"#1 héllo\\r\\nsecond line\\n \(20 bytes\)$")


# --------------------------------------------------------------------------- interactive input

def test_an_empty_line_is_not_sent_and_says_so(start_server, spawn_client):
    srv = start_server()
    cli = spawn_client("127.0.0.1", srv.port, "--log-file", "-", stdin=True)
    cli.out.wait_for(r"^\[INFO\] Connected to ")
    cli.write("\nhi\n")
    cli.out.wait_for(r"\[WARN\] empty line: nothing sent")
    cli.out.wait_for(r"^\[RECV\] #1 ")
    cli.write("exit\n")
    assert cli.wait() == 0


def test_a_line_over_the_terminal_limit_warns_and_points_to_message_file(start_server, workdir, env, psk_file,
                                                                          client_argv):
    srv = start_server()
    master, slave = os.openpty()
    attrs = termios.tcgetattr(slave)
    attrs[3] &= ~termios.ECHO  # nobody reads the echo: it must not fill the terminal's buffer
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    proc = subprocess.Popen([*client_argv, "127.0.0.1", str(srv.port), "--log-file", "-", "--psk-file", str(psk_file)],
                            cwd=workdir, env=env, stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    os.close(slave)
    out = Lines(proc.stdout, "client stdout")
    try:
        out.wait_for(r"\[INFO\] Type a message")
        os.write(master, b"a" * 5000 + b"\n")
        out.wait_for(r"\[WARN\] .*4095 bytes.*--message-file")
        out.wait_for(r"\[RECV\] #1 ")
        os.write(master, b"exit\n")
        assert proc.wait(WAIT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(WAIT)
        os.close(master)
        out.join()
        proc.stdout.close()
        proc.stderr.close()
