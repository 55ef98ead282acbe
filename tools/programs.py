"""Running the real seclink programs from the teaching tools (tools/demo.py, tools/attacks/,
tools/trace_html.py): long-running children read line by line with a deadline on every wait,
one-shot clients, and an environment that never reaches the user's own key.

Every path is relative to the repository root, where every child runs, so a command shown can be
pasted as is.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, List

from tools import procs

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
WAIT = procs.WAIT  # seconds: the longest any single wait may take

SERVERS = {"C++": ["./server"], "Python": [sys.executable, "python/server.py"]}
CLIENTS = {"C++": ["./client"], "Python": [sys.executable, "python/client.py"]}


Misbehaved = procs.Misbehaved  # a program did not behave as expected; the message says how


def child_env(config_dir: str) -> dict:
    """The environment of every child: no way to reach the user's own key or config."""
    env = dict(os.environ)
    env.pop("SECLINK_PSK_FILE", None)
    env["XDG_CONFIG_HOME"] = str(ROOT / config_dir)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def require_built() -> None:
    for program in ("server", "client"):
        if not (ROOT / program).exists():
            sys.exit(f"./{program} is missing: run `make` first")


STARTED: List["Program"] = []  # every long-running child, so that stop_all() can end them, always


class Program:
    """A long-running child (a server, or an interactive client) whose output (stderr merged) is
    read line by line by tools/procs.py, so every wait has a deadline: a program that hangs makes
    its caller fail after WAIT seconds instead of freezing."""

    def __init__(self, label: str, argv: List[str], config_dir: str, interactive: bool = False,
                 on_timeout: Callable[[str, List[str]], None] = lambda label, lines: None) -> None:
        self.label = label
        self.on_timeout = on_timeout
        self.child = procs.Proc(argv, cwd=ROOT, env=child_env(config_dir), stdin=interactive, merge_stderr=True,
                                name=label)
        self.proc = self.child.proc
        self.seen = 0  # lines before this index were returned by expect() already
        STARTED.append(self)

    def expect(self, pattern: str) -> List[str]:
        """The lines printed since the last call, up to and including the first matching pattern."""
        try:
            index = self.child.out.wait_index(pattern, since=self.seen, timeout=WAIT)
        except Misbehaved:
            self.on_timeout(self.label, self.child.out.lines[self.seen:])
            raise
        lines = self.child.out.lines[self.seen:index + 1]
        self.seen = index + 1
        return lines

    def wait_listening(self) -> List[str]:
        """For a server started with --port 0: wait for its "Listening on" line, set `port` from it
        and return what it printed up to there (also kept as `startup`)."""
        self.startup = self.expect(procs.LISTENING.pattern)
        self.port = int(procs.LISTENING.search(self.startup[-1]).group(2))
        return self.startup

    def type_line(self, text: str) -> None:
        """Send one line to the program's standard input, as if typed."""
        self.child.write(text + "\n")

    def wait(self) -> int:
        return self.child.wait(WAIT)

    def close(self) -> None:
        """Make sure the program is gone (used on every exit path, failures included)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self.child.kill()


def stop_all() -> None:
    while STARTED:
        STARTED.pop().close()


class SeclinkServer(Program):
    """A real server on a free port (--port 0): the port is read from its 'Listening on' line."""

    def __init__(self, language: str, label: str, flags: List[str], config_dir: str,
                 extra: List[str] = (), **kwargs) -> None:
        self.argv = SERVERS[language] + ["--host", HOST, "--port", "0"] + list(extra)
        super().__init__(label, self.argv + flags, config_dir, **kwargs)
        self.wait_listening()


def run_client(language: str, args: List[str], flags: List[str], config_dir: str) -> subprocess.CompletedProcess:
    """Run a real client to the end (bounded by WAIT) and return what it printed."""
    try:
        return subprocess.run(CLIENTS[language] + args + flags, cwd=ROOT, env=child_env(config_dir),
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              errors="replace", timeout=WAIT)
    except subprocess.TimeoutExpired:
        raise Misbehaved(f"the {language} client did not finish within {WAIT:.0f} s")


def keygen(path: str, config_dir: str) -> List[str]:
    """Write a new key file with ./server --keygen (replacing an old one); returns what it printed."""
    (ROOT / path).unlink(missing_ok=True)
    (ROOT / path).parent.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["./server", "--keygen", "--psk-file", path], cwd=ROOT,
                            env=child_env(config_dir), capture_output=True, text=True, timeout=WAIT)
    if result.returncode != 0:
        raise Misbehaved(f"--keygen exited {result.returncode}: {result.stderr.strip()}")
    return result.stdout.splitlines()
