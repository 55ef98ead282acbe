"""Chat rooms (docs/PROTOCOL.md section 11) across implementations, as real processes over
127.0.0.1: the vectors against every server, a room shared by the C++, Python, asyncio and
reference clients on every server, a member that does not read, and the limits."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import pytest

from tools.procs import Proc
from tests.chat_peer import ChatPeer, run_vectors
from tests.reference.seclink_ref import load_key
from tests.matrix import CLIENTS, SERVERS

SAID = re.compile(r"^\[(guest\d+)\] (\w+) says (\d+)$")


@pytest.mark.parametrize("server", list(SERVERS))
def test_every_server_reproduces_the_chat_vectors(start_server, keys, server: str) -> None:
    srv = start_server(server, "--chat")
    run_vectors(srv.port, load_key(keys[0]))


@pytest.mark.parametrize("server", list(SERVERS))
def test_one_room_with_every_client_each_line_once_in_order(start_server, keys, env, tmp_path: Path,
                                                             server: str) -> None:
    srv = start_server(server, "--chat")
    procs: dict[str, Proc] = {}
    names: dict[str, str] = {}
    try:
        for kind in CLIENTS:  # cpp, py, aio, ref: each in its interactive (live) mode
            argv = [*CLIENTS[kind], "127.0.0.1", str(srv.port), "--psk-file", str(keys[0])]
            argv += ["--chat"] if kind == "ref" else ["--log-file", "-"]
            procs[kind] = Proc(argv, cwd=tmp_path, env=env, stdin=True)
            names[kind] = procs[kind].out.wait_for(r"^\* you are (guest\d+)$").group(1)
        for p in procs.values():  # everyone is in the room before anyone speaks
            p.out.wait_for(rf"^\* {names['ref']} joined lobby$")
        rounds = 5
        for i in range(rounds):
            for kind, p in procs.items():
                p.write(f"{kind} says {i}\n")
        for kind, p in procs.items():
            p.out.wait_for(SAID.pattern, count=rounds * len(procs))
        for kind, p in procs.items():
            heard: dict[str, list[int]] = defaultdict(list)
            for line in p.out.lines:
                if m := SAID.match(line):
                    assert m.group(1) == names[m.group(2)], line  # said under the speaker's own name
                    heard[m.group(2)].append(int(m.group(3)))
            assert heard == {k: list(range(rounds)) for k in procs}, f"{kind} client heard {dict(heard)}"
        for p in procs.values():
            p.close_stdin()
        for kind, p in procs.items():
            assert p.wait() == 0, f"{kind}: {p.err.text}"
    finally:
        for p in procs.values():
            p.kill()


@pytest.mark.parametrize("server", ["cpp", "py-asyncio"])
def test_a_member_that_does_not_read_is_dropped_and_the_room_goes_on(start_server, keys, server: str) -> None:
    srv = start_server(server, "--chat", "--chat-queue", "50", "--chat-rate", "1000000")
    psk = load_key(keys[0])
    slow = ChatPeer(srv.port, psk, read=False)
    srv.wait_for(r"^\[INFO\] \S+ guest1 joined lobby$")  # (sessions may be on different threads)
    speaker = ChatPeer(srv.port, psk)
    try:
        speaker.expect("* you are guest2", "* guest2 joined lobby")
        line = "x" * 1900
        dropped = False
        for _ in range(200):  # at most 20,000 lines (38 MB): far more than the buffers on the way
            for _ in range(100):
                speaker.send(line)
            echoes = 0
            while echoes < 100:  # the speaker reads its own lines back: it is not slow itself
                got = speaker.next()
                assert got in (b"[guest2] " + line.encode(), b"* guest1 left lobby (too slow)"), got
                echoes += got != b"* guest1 left lobby (too slow)"
                dropped = dropped or got == b"* guest1 left lobby (too slow)"
            if dropped:
                break
        assert dropped, "the member that does not read was never dropped"
        srv.wait_for(r"^\[WARN\] \S+ disconnected: chat: too slow \(more than 50 lines waiting, \d+ dropped\)$")
        speaker.send("still here")
        while (got := speaker.next()) != b"[guest2] still here":
            assert got == b"[guest2] " + line.encode(), got
    finally:
        slow.close()
        speaker.close()


@pytest.mark.parametrize(("flags", "steps"), [
    (["--chat-members", "2"], "members"),
    (["--chat-rooms", "1"], "rooms"),
    (["--chat-rate", "1"], "rate"),
], ids=["members", "rooms", "rate"])
def test_each_limit_refuses_with_its_error(start_server, keys, flags: list[str], steps: str) -> None:
    srv = start_server("cpp", "--chat", *flags)
    psk = load_key(keys[0])
    a = ChatPeer(srv.port, psk)
    peers = [a]
    try:
        a.expect("* you are guest1", "* guest1 joined lobby")
        if steps == "members":
            b = ChatPeer(srv.port, psk)
            peers.append(b)
            b.expect("* you are guest2", "* guest2 joined lobby")
            c = ChatPeer(srv.port, psk)
            peers.append(c)
            c.expect("* you are guest3", "! CHAT_ROOM_FULL:")
            c.send("hello?")
            c.expect("! CHAT_COMMAND:")  # in no room
        elif steps == "rooms":
            a.send("/join other")
            a.expect("! CHAT_ROOMS:")
            a.send("/who")
            a.expect("* lobby: guest1")  # still where it was
        else:
            for text in ("one", "two", "three"):
                a.send(text)
            a.expect("[guest1] one", "! CHAT_RATE:", "! CHAT_RATE:")
    finally:
        for p in peers:
            p.close()


@pytest.mark.parametrize("server", ["cpp", "py-asyncio"])
def test_redact_keeps_chat_lines_out_of_the_log(start_server, keys, tmp_path: Path, server: str) -> None:
    log = tmp_path / f"{server}-redacted.log"
    srv = start_server(server, "--chat", "--redact", log=log)
    psk = load_key(keys[0])
    a, b = ChatPeer(srv.port, psk), None
    try:
        a.expect("* you are guest1", "* guest1 joined lobby")
        b = ChatPeer(srv.port, psk)
        b.expect("* you are guest2", "* guest2 joined lobby")
        a.expect("* guest2 joined lobby")
        a.send("my PIN is 4711")
        a.send("/msg guest2 the other PIN is 0815")
        b.expect("[guest1] my PIN is 4711", "[guest1 -> guest2] the other PIN is 0815")
        srv.wait_for(r"^\[RECV\] \S+ #2 guest1@lobby <redacted> \(33 bytes\)$")
    finally:
        a.close()
        if b is not None:
            b.close()
    srv.stop()
    for text in (srv.out.text, log.read_text()):
        assert "PIN" not in text, text
        assert "guest1@lobby <redacted> (14 bytes)" in text
