"""The package's share of log and key safety: log lines are escaped by the core's one function
(checked against Python's own Unicode database), both servers redact on request, and key files
follow the core's ownership and directory rules. Servers listen on 127.0.0.1 port 0."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import unicodedata
from pathlib import Path

import pytest

import seclink
from seclink import KeyFileError, _seclink, aio
from seclink.keys import KeyOwnerWarning, load_key

WAIT = 10.0
OTHER_UID = 12345


def shown(cp: int) -> str:
    return _seclink.format_message(chr(cp).encode("utf-8"))


def must_escape(cp: int) -> bool:
    """What the log must not show raw, by Python's Unicode database: format characters, line and
    paragraph separators, spaces other than U+0020, private use, noncharacters."""
    cat = unicodedata.category(chr(cp))
    return cat in ("Cf", "Zl", "Zp", "Zs", "Co") or (0xFDD0 <= cp <= 0xFDEF) or (cp & 0xFFFE) == 0xFFFE


def test_every_code_point_is_shown_as_unicode_says():
    """Each escaped character is one Python's database calls unprintable-and-dangerous (or one
    it does not know yet); each it calls so is escaped; everything else is shown as it is."""
    wrong = []
    for cp in range(0xA0, 0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        out = shown(cp)
        escaped = out == (f"\\u{cp:04x}" if cp <= 0xFFFF else f"\\U{cp:08x}")
        if must_escape(cp) != escaped and not (escaped and unicodedata.category(chr(cp)) == "Cn"):
            wrong.append((hex(cp), unicodedata.category(chr(cp)), out))
        elif not escaped and out != chr(cp):
            wrong.append((hex(cp), unicodedata.category(chr(cp)), out))
    assert wrong == [], f"{len(wrong)} code points shown wrongly (Unicode {unicodedata.unidata_version}): {wrong[:20]}"


def test_a_line_separator_never_splits_a_shown_message():
    text = _seclink.format_message("a\u2028b\u2029c\u0085d".encode())
    assert text == "<binary>"  # U+0085 (NEL) is a C1 control
    text = _seclink.format_message("a\u2028b\u2029c\u202ed".encode())
    assert text.splitlines() == [text] == ["a\\u2028b\\u2029c\\u202ed"]


# --------------------------------------------------------------------------- redact

class Log:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.cond = threading.Condition()

    def __call__(self, level: int, line: str) -> None:
        with self.cond:
            self.lines.append(line)
            self.cond.notify_all()

    def wait(self, needle: str) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: any(needle in line for line in self.lines), WAIT), self.lines


def _redacted_session(port: int, psk: bytes) -> None:
    with seclink.Client("127.0.0.1", port, psk=psk) as c:
        c.send(b"my secret plan")
        c.recv(WAIT)
        c.close("secret reason")


EXPECTED = ["<redacted> (14 bytes)", "<redacted> (a reply of 22 bytes)", "client closed the session (<redacted>)"]


def test_native_server_redacts_content():
    psk, log = os.urandom(32), Log()
    with seclink.Server("127.0.0.1", 0, psk=psk, log=log, redact=True, log_level=seclink.LOG_TRACE) as srv:
        _redacted_session(srv.port, psk)
        log.wait("disconnected")
    assert not any("secret" in line or "ACK" in line or "[TRACE]" in line for line in log.lines), log.lines
    for text in EXPECTED:
        assert any(text in line for line in log.lines), (text, log.lines)


def test_aio_server_redacts_content():
    psk, log = os.urandom(32), Log()

    async def scenario() -> None:
        srv = await aio.serve("127.0.0.1", 0, psk=psk, log=log, redact=True, log_level=seclink.LOG_TRACE)
        async with srv:
            await asyncio.to_thread(_redacted_session, srv.port, psk)
            await asyncio.to_thread(log.wait, "disconnected")

    asyncio.run(asyncio.wait_for(scenario(), WAIT))
    assert not any("secret" in line or "ACK" in line or "[TRACE]" in line for line in log.lines), log.lines
    for text in EXPECTED:
        assert any(text in line for line in log.lines), (text, log.lines)


def test_redact_is_off_by_default():
    psk, log = os.urandom(32), Log()
    with seclink.Server("127.0.0.1", 0, psk=psk, log=log) as srv:
        _redacted_session(srv.port, psk)
        log.wait("disconnected")
    assert any("#1 my secret plan (14 bytes)" in line for line in log.lines), log.lines


# --------------------------------------------------------------------------- keys

@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys" / "psk"
    seclink.generate_key(path)
    return path


def test_a_key_in_a_directory_others_can_write_is_refused(key_file):
    key_file.parent.chmod(0o1777)
    with pytest.raises(KeyFileError) as e:
        load_key(key_file)
    assert e.value.name == "KEY_DIR" and "chmod go-w" in str(e.value)


def test_generating_a_key_in_such_a_directory_is_refused(tmp_path):
    (tmp_path / "open").mkdir()
    (tmp_path / "open").chmod(0o777)
    with pytest.raises(KeyFileError) as e:
        seclink.generate_key(tmp_path / "open" / "psk")
    assert e.value.name == "KEY_DIR"
    assert not (tmp_path / "open" / "psk").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown")
def test_root_loading_another_users_key_is_warned(key_file):
    mine = load_key(key_file)
    os.chown(key_file, OTHER_UID, OTHER_UID)
    with pytest.warns(KeyOwnerWarning, match="belongs to another user"):
        assert load_key(key_file) == mine


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a process as another user")
def test_another_users_key_is_refused(tmp_path):
    """As in the core: a non-root user's process refuses a 0600 key it does not own."""
    base = Path(tempfile.mkdtemp(prefix="seclink-keys-"))  # pytest's tmp tree is root's alone
    try:
        os.chown(base, OTHER_UID, OTHER_UID)
        key = base / "psk"
        seclink.generate_key(key)
        os.chown(key, OTHER_UID + 1, OTHER_UID + 1)
        code = ("import sys; from seclink import keys, KeyFileError\n"
                "try: keys.load_key(sys.argv[1])\nexcept KeyFileError as e: print(e.name)")
        python = f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"
        if not os.access(python, os.X_OK):
            pytest.skip(f"no {python} another user may run")
        r = subprocess.run([python, "-c", code, str(key)], user=OTHER_UID, group=OTHER_UID, extra_groups=[],
                           capture_output=True, text=True, timeout=WAIT,
                           env={"PYTHONPATH": str(Path(seclink.__file__).parents[1]),
                                # under `make test-py-asan` the module needs the sanitizer runtime
                                **{k: v for k, v in os.environ.items()
                                   if k in ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS", "PYTHONMALLOC")}},
                           cwd=base)
        assert r.stdout.strip() == "KEY_OWNER", r
    finally:
        shutil.rmtree(base)


# --------------------------------------------------------------------------- keys in Python memory

def test_the_package_wipes_the_key_copies_it_holds(monkeypatch):
    """Server, Client, aio.connect and aio.serve's server each wipe their bytearray copy once the
    core has its own (docs/DESIGN.md section 4); the caller's key is left alone."""
    from seclink import client as client_mod
    from seclink import keys
    from seclink import server as server_mod
    wiped: list[bytearray] = []

    def spy(key: bytearray) -> None:
        keys.wipe(key)
        wiped.append(key)

    for mod in (server_mod, client_mod, aio):
        monkeypatch.setattr(mod, "wipe", spy)
    psk = os.urandom(32)
    with seclink.Server("127.0.0.1", 0, psk=psk) as srv:
        with seclink.Client("127.0.0.1", srv.port, psk=psk) as c:
            c.send(b"x")
            assert c.recv(WAIT) == b"ACK: received 1 bytes"
    assert len(wiped) == 2

    async def scenario() -> None:
        srv = await aio.serve("127.0.0.1", 0, psk=psk)
        async with srv:
            c = await aio.connect("127.0.0.1", srv.port, psk=psk)
            await c.close()
        assert len(wiped) == 4, "aio.connect's copy, then the server's when it closed"

    asyncio.run(asyncio.wait_for(scenario(), WAIT))
    assert all(isinstance(k, bytearray) and k == bytearray(32) for k in wiped)
    assert psk != bytes(32)


def test_resolve_psk_returns_a_new_bytearray(key_file):
    key = load_key(key_file)
    assert isinstance(key, bytes)
    got = seclink.keys.resolve_psk(None, key_file)
    assert isinstance(got, bytearray) and got == key
    again = seclink.keys.resolve_psk(got, None)
    assert again == got and again is not got


def test_a_close_reason_in_an_exception_message_is_shown_safely():
    """str(ConnectionClosed) is what applications log: the server's reason in it is escaped as in
    the programs' logs; .reason keeps the text as sent."""
    psk = os.urandom(32)
    evil = "bye\u2028[INFO] forged line\u202e"

    async def scenario() -> None:
        async def serve_one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            conn = seclink.Connection("server", psk)
            conn.start()
            while not conn.established:
                conn.receive_data(await reader.read(65536))
                writer.write(conn.data_to_send())
            conn.close(evil)
            writer.write(conn.data_to_send())
            await writer.drain()
            writer.close()
            await writer.wait_closed()

        listener = await asyncio.start_server(serve_one, "127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        async with listener:
            c = await aio.connect("127.0.0.1", port, psk=psk)
            with pytest.raises(seclink.ConnectionClosed) as e:
                await c.recv(WAIT)
            assert e.value.reason == evil
            assert str(e.value).splitlines() == [str(e.value)] and "\u202e" not in str(e.value)
            assert "bye\\u2028[INFO] forged line\\u202e" in str(e.value)
            await c.close()

            def blocking() -> None:
                with seclink.Client("127.0.0.1", port, psk=psk) as b:
                    with pytest.raises(seclink.ConnectionClosed) as e2:
                        b.recv(WAIT)
                assert e2.value.reason == evil and str(e2.value).splitlines() == [str(e2.value)]
                assert "bye\\u2028[INFO] forged line\\u202e" in str(e2.value)

            await asyncio.to_thread(blocking)

    asyncio.run(asyncio.wait_for(scenario(), WAIT))


@pytest.mark.parametrize("make", [lambda key, **kw: _seclink.Server(key, host="127.0.0.1", port=0, **kw),
                                  lambda key, **kw: _seclink.Policy(key, **kw)], ids=["Server", "Policy"])
def test_a_misspelt_server_setting_is_refused_by_name_not_ignored(make):
    """Both servers read their settings in one place (bindings/server_settings.hpp): a setting that
    is not one of them is a TypeError naming it, never silently left at its default."""
    key = bytearray(os.urandom(32))
    with pytest.raises(TypeError, match="unexpected keyword argument 'max_clent'"):
        make(key, max_clent=1)
    make(key, max_clients=1)  # the real name is taken
