"""Chat rooms across servers (docs/PROTOCOL.md 11.7 and 11.8, `--cluster nats://HOST:PORT`): servers of
different kinds linked by one nats-server (Debian's, started here on a free port) share a room;
a NATS outage is logged, local delivery goes on, and the link comes back by itself."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tools.procs import WAIT, Lines
from tests.chat_peer import ChatPeer
from tests.reference.seclink_ref import load_key

NATS = shutil.which("nats-server") or "/usr/sbin/nats-server"
LINKED = r"^\[INFO\] cluster: rooms are shared with other servers through NATS at "
pytestmark = pytest.mark.skipif(not Path(NATS).exists(), reason="nats-server missing: run tools/install-deps.sh")


class Nats:
    """nats-server on 127.0.0.1: a free port the first time, the same port when restarted."""

    def __init__(self, port: int = -1) -> None:
        self.proc = subprocess.Popen([NATS, "-a", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        self.log = Lines(self.proc.stderr, "nats-server")
        self.port = int(self.log.wait_for(r"Listening for client connections on 127\.0\.0\.1:(\d+)").group(1))
        self.url = f"nats://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(WAIT)
        self.log.join()
        self.proc.stderr.close()


@pytest.fixture
def nats():
    servers: list[Nats] = []

    def start(port: int = -1) -> Nats:
        servers.append(Nats(port))
        return servers[-1]

    yield start
    for n in servers:
        n.stop()


def member(srv, psk: bytes, nick: str) -> ChatPeer:
    p = ChatPeer(srv.port, psk)
    name = re.match(rb"\* you are (guest\d+)$", p.next()).group(1).decode()
    until(p, f"* {name} joined lobby")
    p.send(f"/nick {nick}")
    until(p, f"* {name} is now {nick}")
    return p


def until(p: ChatPeer, want: str) -> None:
    """Reads up to the line `want`, past the other server's notices."""
    while (got := p.next()) != want.encode():
        assert re.match(rb"\* guest\d+ (joined lobby|is now \w+)$", got), got


@pytest.mark.parametrize("kinds", [("cpp", "py-asyncio"), ("py", "cpp")], ids=["cpp+asyncio", "py+cpp"])
def test_servers_linked_by_nats_share_a_room(start_server, nats, keys, kinds) -> None:
    bus = nats()
    a_srv = start_server(kinds[0], "--chat", "--cluster", bus.url)
    b_srv = start_server(kinds[1], "--chat", "--cluster", bus.url)
    for srv in (a_srv, b_srv):
        srv.wait_for(LINKED)
    psk = load_key(keys[0])
    a, b = member(a_srv, psk, "alice"), member(b_srv, psk, "bob")
    try:
        for i in range(5):
            a.send(f"a{i}")
            b.send(f"b{i}")
        for p in (a, b):
            got: list[bytes] = []
            while len([x for x in got if x.startswith(b"[")]) < 10:
                got.append(p.next())
                assert got[-1].startswith((b"[", b"* ")), got[-1]  # lines, and the other server's notices
            assert [x for x in got if x.startswith(b"[alice]")] == [f"[alice] a{i}".encode() for i in range(5)]
            assert [x for x in got if x.startswith(b"[bob]")] == [f"[bob] b{i}".encode() for i in range(5)]
    finally:
        a.close()
        b.close()


def nxt(p: ChatPeer) -> bytes:
    """The next line, past the other server's join and nick notices (they come when they come)."""
    while True:
        got = p.next()
        if not re.match(rb"\* guest\d+ (joined lobby|is now \w+)$", got):
            return got


def heard(p: ChatPeer, *lines: str) -> None:
    for want in lines:
        assert nxt(p) == want.encode()


def test_a_nats_outage_keeps_local_delivery_and_the_link_recovers(start_server, nats, keys) -> None:
    bus = nats()
    a_srv = start_server("cpp", "--chat", "--cluster", bus.url)
    b_srv = start_server("py-asyncio", "--chat", "--cluster", bus.url)
    for srv in (a_srv, b_srv):
        srv.wait_for(LINKED)
    psk = load_key(keys[0])
    a, a2, b = member(a_srv, psk, "alice"), member(a_srv, psk, "carol"), member(b_srv, psk, "bob")
    try:
        bus.stop()
        for srv in (a_srv, b_srv):
            srv.wait_for(r"^\[WARN\] cluster: rooms are local \(reconnecting\): lost the NATS link to nats://")
        a.send("during the outage")
        heard(a, "[alice] during the outage")
        heard(a2, "[alice] during the outage")  # same server: delivered
        bus = nats(bus.port)
        for srv in (a_srv, b_srv):
            srv.wait_for(LINKED, count=2)
        a.send("after")
        got = nxt(b)  # what was said in the outage was buffered by the link, or lost: never reordered
        if got == b"[alice] during the outage":
            got = nxt(b)
        assert got == b"[alice] after"
        b.send("back")
        heard(a, "[alice] after", "[bob] back")
        heard(a2, "[alice] after", "[bob] back")
    finally:
        for p in (a, a2, b):
            p.close()


def test_a_bad_cluster_url_is_refused(start_server, keys, tmp_path: Path, env) -> None:
    from tests.matrix import SERVERS
    for kind in ("cpp", "py"):
        r = subprocess.run([*SERVERS[kind], "--port", "0", "--psk-file", str(keys[0]), "--chat", "--cluster", "bogus",
                            "--log-file", "-"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=WAIT)
        assert r.returncode == 2, r
        assert "--cluster takes the NATS server's URL, nats://HOST:PORT" in r.stderr or "not a NATS URL" in r.stderr, r
