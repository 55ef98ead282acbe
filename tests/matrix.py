"""The implementations under test and how to tell their output apart: which command starts each
server and client (C++, Python, asyncio, the reference implementation), the pairs of the interop
matrix, and the exit codes that differ. Shared by every folder of tests/ (fixtures are in each
folder's conftest.py; processes are tools/procs.py's).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from tools.procs import Server

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable

# ---- the programs' own tests (tests/programs): the C++ programs and the Python scripts, which must
# behave and print the same (apart from the "(c++)"/"(python)" tag and the usage line's program name).
# SECLINK_SERVER / SECLINK_CLIENT: other builds of the C++ programs (make test-poll).
SERVER = Path(os.environ.get("SECLINK_SERVER", REPO / "server"))
CLIENT = Path(os.environ.get("SECLINK_CLIENT", REPO / "client"))
PY_SERVER = REPO / "python" / "server.py"
PY_CLIENT = REPO / "python" / "client.py"
LANGS = {
    "cpp": ([str(SERVER)], [str(CLIENT)]),
    "py": ([PY, str(PY_SERVER)], [PY, str(PY_CLIENT)]),
}

# ---- the interop matrix (tests/interop): every server against every client
SERVERS = {
    "cpp": [str(REPO / "server")],
    "py": [PY, str(REPO / "python" / "server.py")],
    "py-asyncio": [PY, str(REPO / "python" / "server.py"), "--asyncio"],
    "ref": [PY, "-m", "tests.reference.server"],
}
CLIENTS = {
    "cpp": [str(REPO / "client")],
    "py": [PY, str(REPO / "python" / "client.py")],
    "aio": [PY, str(REPO / "python" / "client.py"), "--asyncio"],
    "ref": [PY, "-m", "tests.reference.client"],
}
OURS = ("cpp", "py", "py-asyncio", "aio")  # speak the programs' full command line (logs, TLS, exit codes)
PAIRS = [(s, c) for s in SERVERS for c in CLIENTS]
PAIR_IDS = [f"{s}-server--{c}-client" for s, c in PAIRS]
TLS_PAIRS = [(s, c) for s, c in PAIRS if s != "ref" and c != "ref"]

# Exit codes for the same failure: ours share the README's table; the reference client has its own.
TOO_LARGE = {"ref": 3}
HANDSHAKE = {"ref": 2}
PROTOCOL = {"ref": 1}  # a protocol error (tampered, replayed): README's 7 for ours
LIMIT = 65536

RECV = re.compile(r"^\[RECV\] (?:#\d+ )?(.*?)(?: \((?:a reply of )?\d+ bytes?\))?$")


class MatrixServer(Server):
    """A server of the matrix; `kind` is its key in SERVERS."""

    def __init__(self, kind: str, argv: list[str], *, cwd: Path, env: dict[str, str]) -> None:
        self.kind = kind
        super().__init__(argv, cwd=cwd, env=env)


def replies(stdout: str) -> list[str]:
    """The replies a client printed, the same for every client's output format."""
    return [m.group(1) for line in stdout.splitlines() if line.startswith("[RECV]") and (m := RECV.match(line))]


def received(srv: MatrixServer) -> list[str]:
    """What the server logged as received ([RECV] <peer> #n <text> (N bytes)) in arrival order."""
    return [m.group(1) for m in srv.out.matching(r"^\[RECV\] \S+ #\d+ (.*) \(\d+ bytes?\)$")]


def refusal(client: str, reason: str) -> tuple[int, str]:
    """The exit status and the line of a client refused with CLOSE `reason`."""
    if client == "ref":
        return 1, f"error: the server closed the connection: {reason}"
    return 7, f"the server closed the session: {reason}"
