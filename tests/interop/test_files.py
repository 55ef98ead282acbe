"""File transfer (--files / --send / --get, docs/PROTOCOL.md 10) across languages, as real processes.

Servers: C++, Python (native), Python asyncio: all three run the core's session layer, so they
must apply the same names, limits and digests. Clients: the C++ program, the Python program and
the seclink package. Each test is one scenario: a round trip, a resume after a killed client, a
damaged temporary file, refused names and symbolic links, no overwrite, a full disk (a file-size
limit on the server), the digest check itself, and memory on a large file.
"""

from __future__ import annotations

import hashlib
import os
import re
import resource
import subprocess
import sys
from pathlib import Path

import pytest

import seclink
from tools.procs import WAIT
from tests.matrix import CLIENTS, SERVERS, MatrixServer

REPO = Path(__file__).resolve().parents[2]
PY = sys.executable
FILE_SERVERS = ("cpp", "py", "py-asyncio", "ref")  # ref: tests/reference, written from the spec
FILE_CLIENTS = ("cpp", "py")
SUMMARY = re.compile(r"\[INFO\] (sent|received) (.+?): (\d+) bytes \(.*?\) in [\d.]+ s, .*?/s(?:, resumed after (\d+) "
                     r"bytes)?, sha256 ([0-9a-f]{64})$", re.M)


@pytest.fixture
def files_server(tmp_path: Path, env: dict[str, str], keys):  # noqa: F811
    servers: list[MatrixServer] = []

    def start(kind: str, *flags: str, directory: Path | None = None, preexec=None) -> MatrixServer:
        d = directory or tmp_path / f"{kind}-files"
        d.mkdir(exist_ok=True)
        argv = [*SERVERS[kind], "--host", "127.0.0.1", "--port", "0", "--psk-file", str(keys[0]),
                *(["--log-file", "-"] if kind != "ref" else []), "--files", str(d), *flags]
        srv = MatrixServer(kind, argv, cwd=tmp_path, env=env) if preexec is None else _limited(kind, argv, tmp_path, env,
                                                                                              preexec)
        srv.dir = d
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.kill()


def _limited(kind, argv, cwd, env, preexec) -> MatrixServer:
    real = subprocess.Popen
    try:  # MatrixServer starts it with Popen: give that call our preexec_fn
        subprocess.Popen = lambda *a, **kw: real(*a, preexec_fn=preexec, **kw)  # type: ignore[misc]
        return MatrixServer(kind, argv, cwd=cwd, env=env)
    finally:
        subprocess.Popen = real  # type: ignore[misc]


def client(kind: str, port: int, keys, cwd: Path, env, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run([*CLIENTS[kind], "127.0.0.1", str(port), "--psk-file", str(keys[0]), "--log-file", "-", *args],
                       cwd=cwd, env=env, capture_output=True, text=True, timeout=WAIT * 6)
    if check:
        assert r.returncode == 0, (r.stdout, r.stderr)
    return r


def sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def py_client(port: int, keys) -> seclink.Client:
    return seclink.Client("127.0.0.1", port, psk_file=keys[0], timeout=WAIT)


# ------------------------------------------------------------------------------ every pairing

@pytest.mark.parametrize("client_kind", FILE_CLIENTS)
@pytest.mark.parametrize("server_kind", FILE_SERVERS)
def test_round_trip_stores_and_fetches_the_same_bytes(files_server, tmp_path: Path, env, keys, server_kind: str,
                                                      client_kind: str) -> None:
    srv = files_server(server_kind)
    up, down = tmp_path / "up", tmp_path / "down"
    up.mkdir()
    down.mkdir()
    data = os.urandom(3 * 1024 * 1024 + 123)
    (up / "report 1.bin").write_bytes(data)
    (up / "empty").write_bytes(b"")
    r = client(client_kind, srv.port, keys, up, env, "--send", "report 1.bin", "--send", "empty")
    lines = SUMMARY.findall(r.stdout)
    assert [(v, n, int(size), digest) for v, n, size, _, digest in lines] == [
        ("sent", "report 1.bin", len(data), hashlib.sha256(data).hexdigest()),
        ("sent", "empty", 0, hashlib.sha256(b"").hexdigest())], r.stdout
    assert (srv.dir / "report 1.bin").read_bytes() == data
    assert (srv.dir / "empty").read_bytes() == b""
    assert not [p for p in srv.dir.iterdir() if p.name.startswith(".")]  # no temporary file left
    r = client(client_kind, srv.port, keys, down, env, "--get", "report 1.bin")
    assert (down / "report 1.bin").read_bytes() == data
    assert hashlib.sha256(data).hexdigest() in r.stdout
    assert not [p for p in down.iterdir() if p.name.startswith(".")]
    if server_kind != "ref":  # ours log the same line (the session layer's)
        srv.wait_for(r"stored 'report 1\.bin' \(3145851 bytes, sha256 " + hashlib.sha256(data).hexdigest())


@pytest.mark.parametrize("server_kind", FILE_SERVERS)
def test_server_without_files_refuses_with_a_clear_message(tmp_path: Path, env, keys, server_kind: str) -> None:
    srv = MatrixServer(server_kind, [*SERVERS[server_kind], "--host", "127.0.0.1", "--port", "0", "--psk-file",
                                     str(keys[0]), *(["--log-file", "-"] if server_kind != "ref" else [])],
                       cwd=tmp_path, env=env)
    try:
        (tmp_path / "f").write_bytes(b"x")
        r = client("cpp", srv.port, keys, tmp_path, env, "--send", "f", check=False)
        assert r.returncode == 7 and "NO_FILES" in r.stderr, r.stderr
        assert server_kind == "ref" or "--files DIR" in r.stderr, r.stderr  # ours say how to turn it on
    finally:
        srv.kill()


# ------------------------------------------------------------------------------ resume

def _killed_upload(port: int, keys, path: Path, env, after: int) -> None:
    """A Python client that dies (os._exit) once `after` bytes are sent: a killed transfer."""
    code = ("import os, sys, seclink\n"
            f"c = seclink.Client('127.0.0.1', {port}, psk_file={str(keys[0])!r})\n"
            f"c.send_file({str(path)!r}, progress=lambda d, t: os._exit(9) if d >= {after} else None)\n")
    r = subprocess.run([PY, "-c", code], env=dict(env, PYTHONPATH=str(REPO / "python")), capture_output=True,
                       timeout=WAIT * 3)
    assert r.returncode == 9, r.stderr


@pytest.mark.parametrize(("server_kind", "client_kind"), [("cpp", "cpp"), ("py-asyncio", "py"), ("py", "cpp")])
def test_upload_resumes_after_a_killed_client(files_server, tmp_path: Path, env, keys, server_kind: str,
                                              client_kind: str) -> None:
    srv = files_server(server_kind)
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(24 * 1024 * 1024))
    _killed_upload(srv.port, keys, src, env, after=8 * 1024 * 1024)
    assert not (srv.dir / "big.bin").exists()  # never under its name before it is complete
    (temp,) = [p for p in srv.dir.iterdir() if p.name.startswith(".seclink-")]
    srv.wait_for(r"disconnected")
    kept = temp.stat().st_size
    assert kept >= 8 * 1024 * 1024
    r = client(client_kind, srv.port, keys, tmp_path, env, "--send", "big.bin")
    (m,) = SUMMARY.findall(r.stdout)
    assert int(m[3] or 0) == kept  # resumed after exactly what the server had
    assert sha(srv.dir / "big.bin") == sha(src) == m[4]
    assert not temp.exists()


@pytest.mark.parametrize("server_kind", ["cpp", "py-asyncio"])
def test_damaged_temporary_file_is_detected_and_the_upload_starts_over(files_server, tmp_path: Path, env, keys,
                                                                        server_kind: str) -> None:
    srv = files_server(server_kind)
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(16 * 1024 * 1024))
    _killed_upload(srv.port, keys, src, env, after=4 * 1024 * 1024)
    (temp,) = [p for p in srv.dir.iterdir() if p.name.startswith(".seclink-")]
    srv.wait_for(r"disconnected")
    with open(temp, "r+b") as f:  # one byte of what arrived is changed on the server's disk
        f.seek(1000)
        b = f.read(1)
        f.seek(1000)
        f.write(bytes([b[0] ^ 0xFF]))
    r = client("cpp", srv.port, keys, tmp_path, env, "--send", "big.bin")
    (m,) = SUMMARY.findall(r.stdout)
    assert not m[3]  # not resumed: the prefix did not verify, so every byte was sent again
    assert sha(srv.dir / "big.bin") == sha(src)


def test_download_resumes_from_a_partial_local_file_and_restarts_on_a_damaged_one(files_server, tmp_path: Path, env,
                                                                                    keys) -> None:
    srv = files_server("cpp")
    data = os.urandom(5 * 1024 * 1024)
    (srv.dir / "d.bin").write_bytes(data)
    down = tmp_path / "down"
    down.mkdir()
    temp = down / seclink_temp_name("d.bin")
    temp.write_bytes(data[:3 * 1024 * 1024])  # what a killed download left
    r = client("py", srv.port, keys, down, env, "--get", "d.bin")
    assert SUMMARY.findall(r.stdout)[0][3] == str(3 * 1024 * 1024)
    assert (down / "d.bin").read_bytes() == data and not temp.exists()
    (down / "d.bin").unlink()
    temp.write_bytes(b"X" + data[1:2 * 1024 * 1024])  # damaged
    r = client("cpp", srv.port, keys, down, env, "--get", "d.bin")
    assert SUMMARY.findall(r.stdout)[0][3] == ""
    assert (down / "d.bin").read_bytes() == data


def seclink_temp_name(name: str) -> str:
    return ".seclink-" + hashlib.sha256(name.encode()).hexdigest()[:32] + ".part"


# ------------------------------------------------------------------------------ safety

BAD_NAMES = ["../escape", "/etc/passwd", "a/b", "..", ".", ".hidden", "CON", "nul.txt", "Com1", "lpt9.log",
             "a\x01b", "trailing.", "trailing ", "", "x" * 256, "back\\slash"]


@pytest.mark.parametrize("server_kind", FILE_SERVERS)
def test_names_outside_the_directory_and_device_names_are_refused(files_server, tmp_path: Path, keys,
                                                                   server_kind: str) -> None:
    srv = files_server(server_kind)
    src = tmp_path / "payload"
    src.write_bytes(b"payload")
    with py_client(srv.port, keys) as c:
        for name in BAD_NAMES:
            with pytest.raises(seclink.FileTransferError) as raised:
                c.send_file(src, name=name)
            assert raised.value.reason_code == "BAD_NAME", name
        c.send_file(src, name="fine name.txt")  # the session is still usable
    assert sorted(p.name for p in srv.dir.iterdir()) == ["fine name.txt"]
    assert not (tmp_path / "escape").exists()


@pytest.mark.parametrize("server_kind", ["cpp", "py-asyncio"])
def test_symbolic_links_are_never_followed(files_server, tmp_path: Path, keys, server_kind: str) -> None:
    srv = files_server(server_kind)
    secret = tmp_path / "secret"
    secret.write_bytes(b"not for clients")
    (srv.dir / "link").symlink_to(secret)
    src = tmp_path / "payload"
    src.write_bytes(b"overwrite attempt")
    with py_client(srv.port, keys) as c:
        with pytest.raises(seclink.FileTransferError) as raised:
            c.get_file("link", tmp_path / "got")
        assert raised.value.reason_code == "NOT_FOUND" and "symbolic link" in str(raised.value)
        with pytest.raises(seclink.FileTransferError) as raised:
            c.send_file(src, name="link")
        assert raised.value.reason_code == "EXISTS"
    assert secret.read_bytes() == b"not for clients" and not (tmp_path / "got").exists()


@pytest.mark.parametrize("server_kind", ["cpp", "py"])
def test_no_overwrite_unless_the_server_allows_it(files_server, tmp_path: Path, env, keys, server_kind: str) -> None:
    src = tmp_path / "f.txt"
    src.write_bytes(b"new")
    srv = files_server(server_kind)
    (srv.dir / "f.txt").write_bytes(b"old")
    r = client("cpp", srv.port, keys, tmp_path, env, "--send", "f.txt", check=False)
    assert r.returncode == 7 and "EXISTS" in r.stderr
    assert (srv.dir / "f.txt").read_bytes() == b"old"
    srv2 = files_server(server_kind, "--overwrite", directory=srv.dir)
    client("py", srv2.port, keys, tmp_path, env, "--send", "f.txt")
    assert (srv.dir / "f.txt").read_bytes() == b"new"


def test_size_limits_per_file_and_in_total(files_server, tmp_path: Path, keys) -> None:
    srv = files_server("cpp", "--max-file-size", "2", "--max-files-total", "3")
    two = tmp_path / "two"
    two.write_bytes(bytes(2 * 1024 * 1024))
    three = tmp_path / "three"
    three.write_bytes(bytes(2 * 1024 * 1024 + 1))
    with py_client(srv.port, keys) as c:
        with pytest.raises(seclink.FileTransferError) as raised:
            c.send_file(three)
        assert raised.value.reason_code == "TOO_LARGE"
        c.send_file(two, name="first")
        with pytest.raises(seclink.FileTransferError) as raised:
            c.send_file(two, name="second")  # 4 MiB in all: over the 3 MiB total
        assert raised.value.reason_code == "QUOTA"
    assert sorted(p.name for p in srv.dir.iterdir()) == ["first"]


@pytest.mark.parametrize("server_kind", ["cpp", "py-asyncio"])
def test_full_disk_is_reported_and_leaves_no_file(files_server, tmp_path: Path, env, keys, server_kind: str) -> None:
    limit = 1024 * 1024  # RLIMIT_FSIZE on the server: a write past 1 MiB fails as a full disk would

    def small_disk() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    srv = files_server(server_kind, preexec=small_disk)
    (tmp_path / "big").write_bytes(os.urandom(3 * limit))
    r = client("cpp", srv.port, keys, tmp_path, env, "--send", "big", check=False)
    assert r.returncode == 7 and "DISK_FULL" in r.stderr and "disk is full" in r.stderr, r.stderr
    assert list(srv.dir.iterdir()) == []  # neither the file nor its temporary file
    (tmp_path / "small").write_bytes(b"fits")
    client("py", srv.port, keys, tmp_path, env, "--send", "small")  # the server goes on serving
    assert (srv.dir / "small").read_bytes() == b"fits"


@pytest.mark.parametrize("client_kind", ["native", "aio"])
def test_an_upload_stops_as_soon_as_the_server_reports_a_full_disk(files_server, tmp_path: Path, keys,
                                                                   client_kind: str) -> None:
    """The server's FILE_ERROR is noticed while the file is still going out: the client stops
    there (the C++ client under seclink.Client, and seclink.aio), not after sending the whole file.
    The server drains what is in flight, so only noticing it stops the sender."""
    limit = 1024 * 1024

    def small_disk() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    srv = files_server("cpp", preexec=small_disk)
    size = 128 * 1024 * 1024
    src = tmp_path / "big"
    with open(src, "wb") as f:
        f.truncate(size)  # zeros, sparse: read from the page cache
    seen: list[int] = []
    with pytest.raises(seclink.FileTransferError) as raised:
        if client_kind == "native":
            with py_client(srv.port, keys) as c:
                c.send_file(src, progress=lambda done, _total: seen.append(done))
        else:
            import asyncio

            from seclink import aio

            async def run() -> None:
                async with await aio.connect("127.0.0.1", srv.port, psk_file=keys[0], timeout=WAIT) as c:
                    await c.send_file(src, progress=lambda done, _total: seen.append(done))
            asyncio.run(run())
    assert raised.value.reason_code == "DISK_FULL"
    # What was in flight when the error came (socket buffers, a few MiB), no more.
    assert seen[-1] < size // 2, f"sent {seen[-1]} of {size} bytes before stopping"
    assert list(srv.dir.iterdir()) == []


@pytest.mark.parametrize("server_kind", ["cpp", "py"])
def test_a_wrong_digest_is_refused_and_nothing_is_stored(files_server, tmp_path: Path, keys, server_kind: str) -> None:
    """A client whose FILE_END digest is not the bytes' (what a corruption in transit past the
    AEAD, or a buggy sender, would give): HASH_MISMATCH, no file, no temporary file."""
    srv = files_server(server_kind)
    with py_client(srv.port, keys) as c:
        native = c._c
        native.queue(0x21, (5).to_bytes(8, "big") + b"\x00" + b"name")
        native.flush(int(WAIT * 1000))
        t, ready = native.recv(int(WAIT * 1000))
        assert t == 0x23 and ready == (0).to_bytes(8, "big") + hashlib.sha256(b"").digest()
        native.queue(0x25, b"hello")
        native.queue(0x27, hashlib.sha256(b"hellO").digest())
        native.flush(int(WAIT * 1000))
        t, err = native.recv(int(WAIT * 1000))
        assert t == 0x2F and err[0] == 8 and b"SHA-256" in err[1:]
    assert list(srv.dir.iterdir()) == []


# ------------------------------------------------------------------------------ memory

def test_memory_does_not_grow_with_the_file(files_server, tmp_path: Path, env, keys) -> None:
    """A 256 MiB upload and download: the peak RSS of the C++ server and client stays far below."""
    size = 256 * 1024 * 1024
    measure = [PY, "-m", "tools.maxrss"]
    d = tmp_path / "cpp-files"
    d.mkdir()
    argv = [*measure, str(tmp_path / "server.rss"), *SERVERS["cpp"], "--host", "127.0.0.1", "--port", "0",
            "--psk-file", str(keys[0]), "--log-file", "-", "--files", str(d)]
    srv = MatrixServer("cpp", argv, cwd=tmp_path, env=dict(env, PYTHONPATH=str(REPO)))
    try:
        src = tmp_path / "big"
        with open(src, "wb") as f:
            f.truncate(size)  # zeros, sparse: read from the page cache
        peaks = {}
        for args, where in ((["--send", "big"], tmp_path), (["--get", "big", "--overwrite"], tmp_path / "cpp-files")):
            out = tmp_path / "client.rss"
            wd = tmp_path / "down"
            wd.mkdir(exist_ok=True)
            r = subprocess.run([*measure, str(out), *CLIENTS["cpp"], "127.0.0.1", str(srv.port), "--psk-file",
                                str(keys[0]), "--log-file", "-", *args], cwd=tmp_path if args[0] == "--send" else wd,
                               env=dict(env, PYTHONPATH=str(REPO)), capture_output=True, text=True, timeout=WAIT * 12)
            assert r.returncode == 0, r.stderr
            peaks[args[0]] = int(out.read_text())
        assert (d / "big").stat().st_size == size and (tmp_path / "down" / "big").stat().st_size == size
    finally:
        srv.stop()
        srv.kill()  # closes its pipes
    peaks["server"] = int((tmp_path / "server.rss").read_text())
    assert all(kib < 48 * 1024 for kib in peaks.values()), peaks


# ------------------------------------------------------------------------------ seclink.aio

@pytest.mark.parametrize("server_kind", FILE_SERVERS)
def test_aio_client_round_trip_resume_and_refusal(files_server, tmp_path: Path, keys, server_kind: str) -> None:
    import asyncio

    from seclink import aio
    srv = files_server(server_kind)
    data = os.urandom(2 * 1024 * 1024 + 7)
    src = tmp_path / "a.bin"
    src.write_bytes(data)
    # What a killed upload leaves: the server's temporary file with the first 1 MiB.
    (srv.dir / seclink_temp_name("a.bin")).write_bytes(data[:1024 * 1024])
    down = tmp_path / "down"
    down.mkdir()
    seen: list[tuple[int, int]] = []

    async def run() -> None:
        c = await aio.connect("127.0.0.1", srv.port, psk_file=keys[0], timeout=WAIT)
        async with c:
            sent = await c.send_file(src, progress=lambda d, t: seen.append((d, t)))
            assert (sent.size, sent.resumed_from, sent.sha256) == (len(data), 1024 * 1024,
                                                                   hashlib.sha256(data).hexdigest())
            got = await c.get_file("a.bin", down / "a.bin")
            assert got.sha256 == sent.sha256 and got.resumed_from == 0
            with pytest.raises(seclink.FileTransferError) as raised:
                await c.send_file(src)  # exists now
            assert raised.value.reason_code == "EXISTS"
            with pytest.raises(seclink.FileTransferError) as raised:
                await c.get_file("../a.bin", down / "x")
            assert raised.value.reason_code == "BAD_NAME"
            assert await c.request(b"still here") == b"ACK: received 10 bytes"  # the session goes on
    asyncio.run(run())
    assert (srv.dir / "a.bin").read_bytes() == data == (down / "a.bin").read_bytes()
    assert seen[0] == (1024 * 1024, len(data)) and seen[-1] == (len(data), len(data))


def test_progress_bar_only_on_a_terminal(files_server, tmp_path: Path, env, keys) -> None:
    """Piped: no bar, no carriage returns, just the summary line. On a terminal: the bar is
    drawn on standard error and wiped at the end."""
    import pty
    srv = files_server("cpp")
    (tmp_path / "f.bin").write_bytes(os.urandom(4 * 1024 * 1024))
    r = client("cpp", srv.port, keys, tmp_path, env, "--send", "f.bin")
    assert "\r" not in r.stderr + r.stdout and "[INFO] sent f.bin: 4194304 bytes" in r.stdout
    for kind in FILE_CLIENTS:
        (srv.dir / "f.bin").unlink()
        master, slave = pty.openpty()
        p = subprocess.Popen([*CLIENTS[kind], "127.0.0.1", str(srv.port), "--psk-file", str(keys[0]), "--log-file",
                              "-", "--send", "f.bin"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                             stderr=slave)
        os.close(slave)
        out, _ = p.communicate(timeout=WAIT * 3)
        err = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            err += chunk
        os.close(master)
        assert p.returncode == 0
        assert b"send f.bin [" in err and b"100%" in err and err.endswith(b"\r\x1b[K"), (kind, err)
        assert b"[INFO] sent f.bin" in out


# ------------------------------------------------------------------------------ the reference client

@pytest.mark.parametrize("server_kind", ["cpp", "py-asyncio"])
def test_reference_client_written_from_the_spec_uploads_resumes_and_downloads(files_server, tmp_path: Path, env, keys,
                                                                                server_kind: str) -> None:
    srv = files_server(server_kind)
    data = os.urandom(1024 * 1024 + 99)
    (tmp_path / "r.bin").write_bytes(data)
    (srv.dir / seclink_temp_name("r.bin")).write_bytes(data[:300000])  # a cut-off upload
    ref = [*CLIENTS["ref"], "127.0.0.1", str(srv.port), "--psk-file", str(keys[0])]
    r = subprocess.run([*ref, "--send", "r.bin"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=WAIT * 3)
    assert r.returncode == 0, r.stderr
    assert f"resumed after 300000, sha256 {hashlib.sha256(data).hexdigest()}" in r.stdout
    assert (srv.dir / "r.bin").read_bytes() == data
    down = tmp_path / "down"
    down.mkdir()
    r = subprocess.run([*ref, "--get", "r.bin", "--get", "nope"], cwd=down, env=env, capture_output=True, text=True,
                       timeout=WAIT * 3)
    assert (down / "r.bin").read_bytes() == data
    assert r.returncode == 1 and "NOT_FOUND" in r.stderr


# ------------------------------------------------------------------------------ protocol errors

@pytest.mark.parametrize("server_kind", ["cpp", "py-asyncio"])
@pytest.mark.parametrize(("msg_type", "content", "why"), [
    (0x25, b"chunk", "FILE_DATA with no upload open"),
    (0x26, (1024).to_bytes(4, "big"), "FILE_READ with no download open"),
    (0x27, b"", "FILE_END with no transfer open"),
    (0x21, b"short", "FILE_PUT shorter than 9 bytes"),
    (0x28, bytes(40), "a server-to-client file message came from the client"),
])
def test_a_file_message_out_of_turn_or_malformed_is_bad_file_msg(files_server, keys, server_kind: str, msg_type: int,
                                                                  content: bytes, why: str) -> None:
    srv = files_server(server_kind)
    with py_client(srv.port, keys) as c:
        c._c.queue(msg_type, content)
        c._c.flush(int(WAIT * 1000))
        t, reason = c._c.recv(int(WAIT * 1000))
    assert (t, reason) == (0x02, b"protocol error: bad file message")  # CLOSE
    srv.wait_for(rf"\[WARN\] .* disconnected: protocol error: BAD_FILE_MSG: .* \({re.escape(why)}\)")
