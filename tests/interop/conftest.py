"""Fixtures of the interop matrix (tests/interop): two keys, the programs' environment, servers of
every kind on port 0 (stopped at teardown) and clients of every kind run to the end."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.matrix import CLIENTS, REPO, SERVERS, MatrixServer
from tests.reference.seclink_ref import generate_key
from tools.procs import WAIT, base_env, run_to_end


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    generate_key(tmp_path / "psk")
    generate_key(tmp_path / "other-psk")
    return tmp_path / "psk", tmp_path / "other-psk"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "home").mkdir()
    return dict(base_env(tmp_path / "home"), PYTHONPATH=str(REPO))  # PYTHONPATH: the reference's -m


@pytest.fixture
def start_server(tmp_path: Path, env: dict[str, str], keys) -> Iterator[Callable[..., MatrixServer]]:
    servers: list[MatrixServer] = []

    def start(kind: str, *flags: str, log: Path | None = None) -> MatrixServer:
        argv = [*SERVERS[kind], "--host", "127.0.0.1", "--port", "0", "--psk-file", str(keys[0]), *flags]
        if kind != "ref":
            argv += ["--log-file", str(log or tmp_path / f"{kind}-server.log")]
        srv = MatrixServer(kind, argv, cwd=tmp_path, env=env)
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.kill()


@pytest.fixture
def run_client(tmp_path: Path, env: dict[str, str], keys):
    def run(kind: str, port: int, *args: str, psk: Path | None = None, input: str | None = None):
        argv = [*CLIENTS[kind], "127.0.0.1", str(port), *args, "--psk-file", str(psk or keys[0])]
        if kind != "ref":
            argv += ["--log-file", "-"]
        return run_to_end(argv, cwd=tmp_path, env=env, input=input, timeout=WAIT * 3)
    return run
