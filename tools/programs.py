"""Running the real seclink programs from the teaching tools (tools/demo.py, tools/attacks/,
tools/trace_html.py): long-running children read line by line with a deadline on every wait,
one-shot clients, and an environment that never reaches the user's own key.

Every path is relative to the repository root, where every child runs, so a command shown can be
pasted as is.
"""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, List, Optional

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
WAIT = 10.0  # seconds: the longest any single wait may take

SERVERS = {"C++": ["./server"], "Python": [sys.executable, "python/server.py"]}
CLIENTS = {"C++": ["./client"], "Python": [sys.executable, "python/client.py"]}


class Misbehaved(Exception):
    """A program did not behave as expected; the message says how."""


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
    """A long-running child (a server, or an interactive client) whose output is read line by line.

    A reader thread moves each line into a queue, so every wait has a deadline: a program that
    hangs makes its caller fail after WAIT seconds instead of freezing.
    """

    def __init__(self, label: str, argv: List[str], config_dir: str, interactive: bool = False,
                 on_timeout: Callable[[str, List[str]], None] = lambda label, lines: None) -> None:
        self.label = label
        self.on_timeout = on_timeout
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, env=child_env(config_dir), text=True, errors="replace", bufsize=1,
            stdin=subprocess.PIPE if interactive else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.lines: "queue.Queue[Optional[str]]" = queue.Queue()
        STARTED.append(self)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        with self.proc.stdout:
            for line in self.proc.stdout:
                self.lines.put(line.rstrip("\n"))
        self.lines.put(None)  # end of output

    def expect(self, pattern: str) -> List[str]:
        """The lines printed since the last call, up to and including the first matching pattern."""
        seen: List[str] = []
        deadline = time.monotonic() + WAIT
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.on_timeout(self.label, seen)
                raise Misbehaved(f"{self.label} printed no line matching {pattern!r} in {WAIT:.0f} s")
            if line is None:
                self.lines.put(None)  # so that later calls see the end at once too
                self.on_timeout(self.label, seen)
                raise Misbehaved(f"{self.label} ended without a line matching {pattern!r}")
            seen.append(line)
            if re.search(pattern, line):
                return seen

    def type_line(self, text: str) -> None:
        """Send one line to the program's standard input, as if typed."""
        try:
            self.proc.stdin.write(text + "\n")
            self.proc.stdin.flush()
        except OSError as e:
            raise Misbehaved(f"{self.label} stopped reading its input: {e}")

    def wait(self) -> int:
        try:
            return self.proc.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            raise Misbehaved(f"{self.label} did not exit within {WAIT:.0f} s")

    def close(self) -> None:
        """Make sure the program is gone (used on every exit path, failures included)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass


def stop_all() -> None:
    while STARTED:
        STARTED.pop().close()


class SeclinkServer(Program):
    """A real server on a free port (--port 0): the port is read from its 'Listening on' line."""

    def __init__(self, language: str, label: str, flags: List[str], config_dir: str,
                 extra: List[str] = (), **kwargs) -> None:
        self.argv = SERVERS[language] + ["--host", HOST, "--port", "0"] + list(extra)
        super().__init__(label, self.argv + flags, config_dir, **kwargs)
        self.startup = self.expect(r"Listening on ")
        self.port = int(re.search(r"Listening on [\d.]+:(\d+)", self.startup[-1]).group(1))


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
