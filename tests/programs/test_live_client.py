"""The interactive client watches the connection while it waits for input (issue 11's live
client, issue 12's chat): a server that closes or vanishes is reported at once, Ctrl-C sends
CLOSE and exits 0, an idle session is kept open by PINGs (--keepalive), and on a terminal the
lines that arrive are printed above the line being typed without mangling it."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time

import pytest

from tools.procs import WAIT
from tests.chat_peer import ChatPeer


@pytest.fixture(params=[[], ["--asyncio"]], ids=["native", "asyncio"])
def variant(request, lang: str) -> list[str]:
    if request.param and lang != "py":
        pytest.skip("--asyncio is the Python client's")
    return request.param


def test_a_server_that_stops_is_reported_at_the_prompt(start_server, spawn_client, variant):
    srv = start_server()
    cli = spawn_client("127.0.0.1", srv.port, "--log-file", "-", *variant, stdin=True)
    cli.out.wait_for(r"^\[INFO\] Connected to ")
    srv.wait_for(r"handshake complete$")
    assert srv.stop() == 0
    assert cli.wait() == 7  # nothing typed: noticed while waiting for input
    assert cli.err.lines == ["client: error: the server closed the session: server shutting down"]


def test_a_server_that_vanishes_is_reported_at_the_prompt(start_server, spawn_client, variant):
    srv = start_server()
    cli = spawn_client("127.0.0.1", srv.port, "--log-file", "-", *variant, stdin=True)
    cli.out.wait_for(r"^\[INFO\] Connected to ")
    srv.wait_for(r"handshake complete$")
    srv.proc.kill()  # no CLOSE
    assert cli.wait() == 7
    assert cli.err.lines == ["client: error: the server closed the connection (no CLOSE: it stopped or the network "
                             "failed)"]


def test_ctrl_c_sends_close_and_exits_0(start_server, spawn_client, variant):
    srv = start_server()
    cli = spawn_client("127.0.0.1", srv.port, "--log-file", "-", *variant, stdin=True)
    cli.out.wait_for(r"^\[INFO\] Connected to ")
    cli.write("hello\n")
    cli.out.wait_for(r"^\[RECV\] #1 ")
    cli.proc.send_signal(signal.SIGINT)
    assert cli.wait() == 0
    assert cli.out.lines[-1] == "[INFO] Disconnected"
    srv.wait_for(r"disconnected: client closed the session$")


def test_keepalive_keeps_an_idle_session_open(start_server, spawn_client, variant):
    srv = start_server("--idle-timeout", "2")
    cli = spawn_client("127.0.0.1", srv.port, "--log-file", "-", "--keepalive", "1", *variant, stdin=True)
    cli.out.wait_for(r"^\[INFO\] Connected to ")
    srv.wait_for(r"^\[RECV\] \S+ PING \(0 bytes\)$", count=3)  # 3 s idle, past the 2 s timeout
    assert srv.out.matching("disconnected") == []
    cli.write("still here\n")
    cli.out.wait_for(r"^\[RECV\] #1 ACK: received 10 bytes")
    cli.close_stdin()
    assert cli.wait() == 0


def test_chat_lines_go_above_the_line_being_typed_on_a_terminal(start_server, workdir, env, psk_file, psk,
                                                                 client_argv):
    srv = start_server("--chat")
    master, slave = os.openpty()
    proc = subprocess.Popen([*client_argv, "127.0.0.1", str(srv.port), "--log-file", "-", "--psk-file", str(psk_file)],
                            cwd=workdir, env=env, stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    screen = bytearray()

    def until(wanted: bytes) -> None:
        deadline = time.monotonic() + WAIT
        while wanted not in screen:
            left = deadline - time.monotonic()
            assert left > 0, f"{wanted!r} never shown; the terminal got {bytes(screen)!r}"
            if select.select([master], [], [], left)[0]:
                screen.extend(os.read(master, 65536))

    peer = None
    try:
        until(b"* guest1 joined lobby")
        os.write(master, b"hel")
        until(b"> hel")
        peer = ChatPeer(srv.port, psk)
        peer.expect("* you are guest2", "* guest2 joined lobby")
        peer.send("hi")
        # the arriving lines: the input line cleared, the line printed, then the prompt and "hel" again
        until(b"\r\x1b[K* guest2 joined lobby\r\n> hel\r\x1b[K[guest2] hi\r\n> hel")
        os.write(master, b"lo\r")
        peer.expect("[guest2] hi", "[guest1] hello")
        until(b"[guest1] hello\r\n> ")
        os.write(master, b"\x04")  # Ctrl-D on an empty line
        assert proc.wait(WAIT) == 0
    finally:
        if peer is not None:
            peer.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(WAIT)
        os.close(master)
