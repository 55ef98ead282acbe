"""Fault suite: what an attacker or a broken network does to a server, against the C++ server,
the Python server on the native core, and the asyncio server. They share one session layer in the
core, so each case must behave the same on all three. Every case asserts behaviour (log lines,
what a client gets, counters read from /proc), never wall-clock speed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tools.procs import WAIT, Server
from tests.peers import RawPeer
from tests.matrix import LANGS
from tests.reference.seclink_ref import DATA, Connection

FLAVORS = {
    "cpp": LANGS["cpp"][0],
    "py": LANGS["py"][0],
    "py-asyncio": [*LANGS["py"][0], "--asyncio"],
}


@pytest.fixture(params=list(FLAVORS))
def server_argv(request: pytest.FixtureRequest) -> list[str]:
    """The server of this test's flavor (conftest's start_server runs it)."""
    return FLAVORS[request.param]


@pytest.fixture
def serve(start_server: Callable[..., Server]) -> Callable[..., Server]:
    """serve(*flags): the server of this test's flavor on a free port, logging to stdout, killed at
    teardown."""
    return lambda *flags: start_server("--log-file", "-", *flags)


def peer_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"{host}:{port}"


def recorded_frame1(psk: bytes) -> bytes:
    """Frame 1 as a real client sends it: what an eavesdropper records and replays."""
    conn = Connection("client", psk)
    conn.start()
    return conn.data_to_send()


def closed_by_server(sock: socket.socket) -> bool:
    """True once the server has closed this socket (reads until EOF, bounded)."""
    sock.settimeout(WAIT)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return True


def test_idle_sockets_holding_every_handshake_slot_never_lock_a_keyed_client_out(serve, psk):
    srv = serve("--max-handshakes", "4", "--handshake-timeout", "2")
    idle = [socket.create_connection(("127.0.0.1", srv.port), timeout=WAIT) for _ in range(4)]
    try:
        srv.wait_for(r"\] \S+ connected$", count=4)
        with RawPeer(srv.port, psk) as p:  # waits for a slot (at most one handshake timeout), then served
            assert p.request(b"let me in") == b"ACK: received 9 bytes"
        srv.wait_for(r"^\[WARN\] \S+ disconnected: handshake timed out after 2 s$", count=4)
    finally:
        for s in idle:
            s.close()


def test_replayed_frame1_is_never_authenticated_and_cannot_buffer_much(serve, psk):
    srv = serve("--handshake-timeout", "2")
    frame1 = recorded_frame1(psk)
    replayers = []
    for _ in range(3):
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=WAIT)
        s.sendall(frame1)
        replayers.append(s)
    big = socket.create_connection(("127.0.0.1", srv.port), timeout=WAIT)
    try:
        # Without the key the peer gets frame 2 but cannot confirm; announcing 16 MiB is refused.
        big.sendall(frame1 + struct.pack(">I", 16 * 1024 * 1024) + b"x" * 1000)
        srv.wait_for(rf"^\[WARN\] {peer_of(big)} disconnected: protocol error: FRAME_TOO_LARGE: ")
        with RawPeer(srv.port, psk) as p:
            assert p.request(b"real") == b"ACK: received 4 bytes"
        for s in replayers:
            srv.wait_for(rf"^\[WARN\] {peer_of(s)} disconnected: handshake timed out after 2 s$")
        complete = srv.out.matching(r"handshake complete$")
        assert len(complete) == 1, "only the keyed client is ever authenticated"
    finally:
        for s in replayers + [big]:
            s.close()


def test_slowloris_on_the_handshake_is_cut_at_the_handshake_timeout(serve, psk):
    srv = serve("--handshake-timeout", "1")
    frame1 = recorded_frame1(psk)
    with socket.create_connection(("127.0.0.1", srv.port), timeout=WAIT) as s:
        name = peer_of(s)
        # One byte every 100 ms (an attacker's pace, not a synchronisation): bytes arriving do
        # not extend the handshake deadline.
        for i in range(len(frame1)):
            try:
                s.sendall(frame1[i:i + 1])
            except OSError:
                break
            if srv.out.matching(rf"{name} disconnected"):
                break
            time.sleep(0.1)
        srv.wait_for(rf"^\[WARN\] {name} disconnected: handshake timed out after 1 s$")


def test_client_killed_mid_frame_is_logged_as_truncated_and_others_carry_on(serve, psk):
    srv = serve()
    with RawPeer(srv.port, psk) as witness:
        victim = RawPeer(srv.port, psk)
        frame = victim.frame(DATA, b"y" * 5000)
        victim.send_raw(frame[:2000])
        victim.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        victim.close()  # RST
        srv.wait_for(rf"^\[WARN\] {victim.name} disconnected: connection lost in the middle of a frame "
                     r"\(TRUNCATED\)$")
        assert witness.request(b"still here") == b"ACK: received 10 bytes"


def test_a_frame_that_cannot_fit_the_memory_budget_is_refused_and_others_are_served(serve, psk):
    srv = serve("--max-memory", "1", "--max-message", str(4 * 1024 * 1024))
    with RawPeer(srv.port, psk) as greedy, RawPeer(srv.port, psk) as modest:
        frame = greedy.frame(DATA, b"z" * (2 * 1024 * 1024))
        greedy.send_raw(frame[:100000])
        srv.wait_for(rf"^\[WARN\] {greedy.name} disconnected: frame of 2097181 bytes refused: the memory budget "
                     r"\(1 MiB\) is in use$")
        assert modest.request(b"small") == b"ACK: received 5 bytes"


def test_a_started_frame_must_finish_within_the_frame_timeout(serve, psk):
    srv = serve("--frame-timeout", "1")
    with RawPeer(srv.port, psk) as slow:
        frame = slow.frame(DATA, b"w" * 10000)
        slow.send_raw(frame[:5000])
        # A byte now and then (the attacker's pace) keeps the idle timer away, not the frame one.
        for i in range(5000, 5040):
            if srv.out.matching(rf"{slow.name} disconnected"):
                break
            try:
                slow.send_raw(frame[i:i + 1])
            except OSError:
                break
            time.sleep(0.1)
        slow.expect_close("frame timeout")
        srv.wait_for(rf"^\[WARN\] {slow.name} disconnected: frame not completed within 1 s$")


def test_a_peer_that_vanishes_while_the_server_writes_large_echoes(serve, psk):
    srv = serve("--echo")
    with RawPeer(srv.port, psk) as witness:
        for _ in range(3):
            p = RawPeer(srv.port, psk)
            for _ in range(4):
                p.send(DATA, b"e" * (1024 * 1024))  # 4 MiB of echoes it never reads
            p.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            p.close()
            srv.wait_for(rf"^\[(INFO|WARN)\] {p.name} disconnected: ")
        assert witness.request(b"and me?") == b"and me?"


def test_a_client_that_never_reads_its_echoes_is_held_back_not_buffered(serve, psk):
    """Backpressure: replies that cannot be sent stop the server reading that client (the asyncio
    server serves plain sessions inline from its protocol: that path must stop too). The client
    offers 256 MiB of echo requests; its sends stall once the socket buffers are full, and the
    server's memory grows by far less than what was offered."""
    srv = serve("--echo", "--quiet")
    chunk = b"r" * (256 * 1024)
    with RawPeer(srv.port, psk) as p:
        assert p.request(b"warm") == b"warm"
        rss0 = rss_kib(srv.pid)
        p.sock.settimeout(2.0)  # no progress for this long: the server has stopped reading
        sent = 0
        try:
            for _ in range(1024):
                p.send(DATA, chunk)
                sent += len(chunk)
        except TimeoutError:
            pass
        grown = rss_kib(srv.pid) - rss0
        assert sent < 128 * 1024 * 1024, f"the server took {sent >> 20} MiB from a client that reads nothing"
        assert grown < 32 * 1024, f"RSS grew by {grown >> 10} MiB for a client that reads nothing"


def test_stop_while_a_session_is_still_flushing_and_late_connections_arrive(serve, psk):
    srv = serve("--echo")
    flusher = RawPeer(srv.port, psk)
    try:
        # An echo larger than every socket buffer on the way, which it does not read: the server
        # still has most of it queued when it is told to stop.
        flusher.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        flusher.send(DATA, b"f" * (12 * 1024 * 1024))
        srv.wait_for(rf"\[SEND\] {flusher.name} #1 ")
        srv.proc.send_signal(signal.SIGTERM)
        late = []
        # Connections keep arriving while the server flushes during its shutdown's grace period
        # (bounded: until it has exited, at most 200 of them).
        while srv.proc.poll() is None and len(late) < 200:
            try:
                late.append(socket.create_connection(("127.0.0.1", srv.port), timeout=1))
            except OSError:
                break
            time.sleep(0.01)  # pacing the arrivals, not waiting for anything
        assert srv.wait() == 0, f"the server did not stop cleanly:\n{srv.err.text}"
        assert srv.out.lines[-1] == "[INFO] Server stopped"
        for s in late:
            s.close()
    finally:
        flusher.close()


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_2000_reconnects_leave_no_descriptor_or_memory_behind(serve, psk):
    srv = serve("--handshake-rate", "1000000", "--quiet")
    pid = srv.pid

    def cycle(n: int) -> None:
        for _ in range(n):
            with RawPeer(srv.port, psk) as p:
                assert p.request(b"hi") == b"ACK: received 2 bytes"
                p.close_session()
                assert p.read_to_eof() == b""

    cycle(200)  # warm-up: allocator pools, caches
    fd0, rss0 = settled_fds(pid), rss_kib(pid)
    cycle(1800)
    assert settled_fds(pid) <= fd0, "file descriptors leaked"
    grown = rss_kib(pid) - rss0
    assert grown < 4096, f"RSS grew by {grown} KiB over 1800 sessions"


def settled_fds(pid: int) -> int:
    """The server's descriptors once the last closed sessions are reaped: polled until the count
    stays the same for 50 ms (bounded)."""
    deadline, last, same = time.monotonic() + WAIT, fds(pid), 0
    while same < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
        now = fds(pid)
        same = same + 1 if now == last else 0
        last = now
    return last


def test_a_log_file_that_cannot_be_written_never_stops_the_server(workdir, env, psk_file, psk, serve):
    srv = serve("--log-file", "/dev/full")  # every write fails with ENOSPC
    for _ in range(3):
        with RawPeer(srv.port, psk) as p:
            assert p.request(b"still serving") == b"ACK: received 13 bytes"
    srv.wait_for(r"disconnected: connection lost", count=3)
    assert srv.stop() == 0
    warnings = [line for line in srv.err.lines if "log file" in line]
    assert warnings == ["server: warning: cannot write the log file /dev/full: No space left on device (serving goes "
                        "on; lines are lost until it can be written again)"], srv.err.lines


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_out_of_descriptors_does_not_spin_and_service_recovers(serve, psk):
    srv = serve("--handshake-timeout", "30")
    in_use = len(os.listdir(f"/proc/{srv.pid}/fd"))
    limit = in_use + 4
    subprocess.run(["prlimit", "--pid", str(srv.pid), f"--nofile={limit}:{limit}"], check=True)
    held = [socket.create_connection(("127.0.0.1", srv.port), timeout=WAIT) for _ in range(4)]
    extra = []
    try:
        srv.wait_for(r"\] \S+ connected$", count=4)
        extra = [socket.create_connection(("127.0.0.1", srv.port), timeout=WAIT) for _ in range(3)]
        # Over the limit with connections queued: the server refuses them with one [WARN] each
        # and waits, not spins. Measured as the CPU it uses over a second (pacing the measurement,
        # not synchronising anything): a spinning loop takes most of a core (asyncio's own accept
        # loop, retrying and printing a traceback per try, took 0.3 s a second).
        srv.wait_for(r"^\[WARN\] out of file descriptors: refused a connection")
        before = cpu_seconds(srv.pid)
        time.sleep(1.0)
        used = cpu_seconds(srv.pid) - before
        assert used < 0.2, f"the server used {used:.2f} s of CPU in 1 s while out of descriptors"
    finally:
        for s in held + extra:
            s.close()
    srv.wait_for(r"disconnected: connection closed during the handshake", count=4)
    with RawPeer(srv.port, psk) as p:  # descriptors are free again: service resumes
        assert p.request(b"after the storm") == b"ACK: received 15 bytes"


def test_stop_under_load_each_client_gets_every_reply_or_a_close_and_nothing_twice(serve, psk):
    import threading

    srv = serve("--echo")
    results: dict[int, tuple[list[bytes], list[bytes], str]] = {}
    started = threading.Barrier(9)

    def client(n: int) -> None:
        sent: list[bytes] = []
        got: list[bytes] = []
        end = "?"
        with RawPeer(srv.port, psk) as p:
            started.wait(WAIT)
            try:
                for i in range(100000):  # bounded; the stop comes long before
                    msg = f"client {n} message {i}".encode()
                    sent.append(msg)
                    p.send(DATA, msg)
                    ev = p.next_event()
                    if getattr(ev, "type", None) == DATA:
                        got.append(ev.content)
                    else:
                        end = repr(ev)
                        break
            except ValueError:  # the CLOSE came with the last reply: nothing more may be sent
                end = repr(p.next_event()) if p._events else "closed"
                sent.pop()
            except (OSError, AssertionError) as e:
                end = f"error {e!r}"
        results[n] = (sent, got, end)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    started.wait(WAIT)
    srv.wait_for(r"\[RECV\] \S+ #50 ", count=8, timeout=30)  # all eight are busy
    assert srv.stop() == 0
    for t in threads:
        t.join(30)
    assert len(results) == 8
    for n, (sent, got, end) in results.items():
        assert got == sent[:len(got)], f"client {n}: a reply out of order, wrong or twice"
        assert len(got) >= len(sent) - 1, f"client {n}: more than the last message unanswered"
        assert "server shutting down" in end or "Closed(reason=None)" in end or end.startswith("error"), \
            f"client {n} ended with {end}"
    assert srv.out.lines[-1] == "[INFO] Server stopped"


def test_bad_and_good_clients_at_once_every_good_reply_is_correct(serve, psk):
    import threading

    srv = serve("--echo", "--handshake-timeout", "2")
    failures: list[str] = []

    def good(n: int) -> None:
        try:
            with RawPeer(srv.port, psk) as p:
                for i in range(200):
                    msg = f"good {n} #{i}".encode()
                    if p.request(msg) != msg:
                        failures.append(f"good {n}: wrong reply to #{i}")
                        return
        except Exception as e:  # noqa: BLE001 - reported below
            failures.append(f"good {n}: {e!r}")

    def bad(n: int) -> None:
        frame1 = recorded_frame1(psk)
        for i in range(20):
            try:
                with socket.create_connection(("127.0.0.1", srv.port), timeout=WAIT) as s:
                    kind = (n + i) % 4
                    if kind == 0:
                        s.sendall(b"GET / HTTP/1.1\r\n\r\n")
                    elif kind == 1:
                        s.sendall(frame1)  # a replay: never authenticated
                        s.sendall(os.urandom(200))
                    elif kind == 2:
                        s.sendall(struct.pack(">I", 0xFFFFFFFF))
                    else:
                        s.sendall(frame1[:20])  # then hang up mid-frame
                    closed_by_server(s) if kind != 3 else None
            except OSError:
                pass
        with RawPeer(srv.port, psk) as p:  # and a keyed client that tampers with its frame
            frame = bytearray(p.frame(DATA, b"tampered"))
            frame[-1] ^= 1
            p.send_raw(bytes(frame))
            assert p.read_to_eof() == b""

    threads = [threading.Thread(target=good, args=(n,)) for n in range(4)]
    threads += [threading.Thread(target=bad, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not failures, failures
    assert len(srv.out.matching(r"disconnected: protocol error: AUTH")) >= 4


def test_half_open_and_silent_peers_are_closed_by_their_deadlines(serve, psk):
    srv = serve("--idle-timeout", "1", "--handshake-timeout", "1")
    silent = socket.create_connection(("127.0.0.1", srv.port), timeout=WAIT)  # never says a word
    with RawPeer(srv.port, psk) as gone, RawPeer(srv.port, psk) as half:
        assert gone.request(b"then silence") == b"ACK: received 12 bytes"  # a peer whose machine vanished
        assert half.request(b"then FIN") == b"ACK: received 8 bytes"
        half.sock.shutdown(socket.SHUT_WR)  # half-closed: it may still read
        srv.wait_for(rf"^\[INFO\] {half.name} disconnected: connection lost \(no CLOSE from the client\)$")
        gone.expect_close("idle timeout")
        srv.wait_for(rf"^\[INFO\] {gone.name} disconnected: idle for 1 s$")
        srv.wait_for(rf"^\[WARN\] {peer_of(silent)} disconnected: handshake timed out after 1 s$")
        assert closed_by_server(silent)
    silent.close()
