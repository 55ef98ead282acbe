"""Fixtures of the end-to-end tests of the ./server and ./client programs (C++ and Python).

Every process or socket a test starts is stopped at teardown; the processes themselves are
tools/procs.py's (the one support module), the misbehaving peers tests/peers.py's:

- the `start_server` fixture: the server on 127.0.0.1 port 0, the real port read from its
  "Listening on" line; `stop()` sends SIGTERM and returns the exit status.
- `run_server`, `run_client` / `spawn_client`: a program to completion, or as a live process.
- `raw_peers` / `raw_server`: tests/peers.py's RawPeer and RawServer, closed at teardown.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.matrix import CLIENT, LANGS, REPO, SERVER
from tests.peers import RawPeer, RawServer
from tests.reference.seclink_ref import generate_key, load_key
from tools.procs import WAIT, Proc, Result, Server, base_env, run_to_end


@pytest.fixture(autouse=True, scope="session")
def _programs_built() -> None:
    if not (SERVER.exists() and CLIENT.exists()):
        pytest.fail(f"{SERVER} and {CLIENT} are missing: run 'make build' first")
    if not list((REPO / "python" / "seclink").glob("_seclink.*.so")):
        pytest.fail("the Python extension python/seclink/_seclink*.so is missing: run 'make build' first")


@pytest.fixture(params=list(LANGS))
def lang(request: pytest.FixtureRequest) -> str:
    """Which implementation of the programs a test runs: "cpp" or "py"."""
    return request.param


@pytest.fixture
def server_argv(lang: str) -> list[str]:
    """The command that starts the server program of this test's language."""
    return LANGS[lang][0]


@pytest.fixture
def client_argv(lang: str) -> list[str]:
    return LANGS[lang][1]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """HOME for the programs; XDG_CONFIG_HOME is home/config."""
    (tmp_path / "home").mkdir()
    return tmp_path / "home"


@pytest.fixture
def env(home: Path) -> dict[str, str]:
    return base_env(home)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """The programs' working directory (where server_logs.txt / client_logs.txt land)."""
    (tmp_path / "cwd").mkdir()
    return tmp_path / "cwd"


@pytest.fixture
def psk_file(tmp_path: Path) -> Path:
    generate_key(tmp_path / "psk")
    return tmp_path / "psk"


@pytest.fixture
def psk(psk_file: Path) -> bytes:
    return load_key(psk_file)


@pytest.fixture
def start_server(workdir: Path, env: dict[str, str], psk_file: Path,
                 server_argv: list[str]) -> Iterator[Callable[..., Server]]:
    """start_server(*flags, psk=psk_file (None: no --psk-file), host="127.0.0.1" (None: no --host/--port),
    env=None, cwd=None): ./server, killed at teardown."""
    servers: list[Server] = []
    default_env = env

    def start(*flags: str, psk: Path | None = psk_file, host: str | None = "127.0.0.1",
              env: dict[str, str] | None = None, cwd: Path | None = None) -> Server:
        argv = [*server_argv, *(["--host", host, "--port", "0"] if host is not None else []), *flags]
        if psk is not None:
            argv += ["--psk-file", str(psk)]
        srv = Server(argv, cwd=cwd or workdir, env=env or default_env)
        servers.append(srv)
        return srv

    try:
        yield start
    finally:
        for srv in servers:
            srv.kill()


@pytest.fixture
def run_server(workdir: Path, env: dict[str, str], psk_file: Path, server_argv: list[str]) -> Callable[..., Result]:
    """run_server(*args, psk=psk_file, timeout=WAIT, env=None): ./server expected to exit by itself
    (--keygen, --help, bad flags, unusable keys...)."""
    default_env = env

    def run(*args: str | Path, psk: Path | None = psk_file, timeout: float = WAIT,
            env: dict[str, str] | None = None, cwd: Path | None = None) -> Result:
        argv = [*server_argv, *map(str, args)] + (["--psk-file", str(psk)] if psk is not None else [])
        return run_to_end(argv, cwd=cwd or workdir, env=env or default_env, input=None, timeout=timeout)

    return run


@pytest.fixture
def run_client(workdir: Path, env: dict[str, str], psk_file: Path, client_argv: list[str]) -> Callable[..., Result]:
    """run_client(*args, psk=psk_file, input=None, timeout=WAIT, env=None, cwd=None): ./client to completion."""
    default_env = env

    def run(*args: str | Path, psk: Path | None = psk_file, input: bytes | str | None = None,
            timeout: float = WAIT, env: dict[str, str] | None = None, cwd: Path | None = None) -> Result:
        argv = [*client_argv, *map(str, args)] + (["--psk-file", str(psk)] if psk is not None else [])
        return run_to_end(argv, cwd=cwd or workdir, env=env or default_env, input=input, timeout=timeout)

    return run


@pytest.fixture
def spawn_client(workdir: Path, env: dict[str, str], psk_file: Path,
                 client_argv: list[str]) -> Iterator[Callable[..., Proc]]:
    """spawn_client(*args, psk=psk_file, stdin=False, env=None): ./client as a live process."""
    procs: list[Proc] = []
    default_env = env

    def spawn(*args: str | Path, psk: Path | None = psk_file, stdin: bool = False,
              env: dict[str, str] | None = None) -> Proc:
        argv = [*client_argv, *map(str, args)]
        if psk is not None:
            argv += ["--psk-file", str(psk)]
        p = Proc(argv, cwd=workdir, env=env or default_env, stdin=stdin)
        procs.append(p)
        return p

    try:
        yield spawn
    finally:
        for p in procs:
            p.kill()


@pytest.fixture
def raw_peers() -> Iterator[Callable[..., RawPeer]]:
    """raw_peers(port, psk, **kw): a RawPeer closed at teardown."""
    peers: list[RawPeer] = []

    def make(port: int, psk: bytes, **kw: object) -> RawPeer:
        p = RawPeer(port, psk, **kw)
        peers.append(p)
        return p

    try:
        yield make
    finally:
        for p in peers:
            p.close()


@pytest.fixture
def raw_server() -> Iterator[Callable[[Callable[[socket.socket], None]], RawServer]]:
    servers: list[RawServer] = []

    def make(handler: Callable[[socket.socket], None]) -> RawServer:
        s = RawServer(handler)
        servers.append(s)
        return s

    try:
        yield make
    finally:
        for s in servers:
            s.close()
