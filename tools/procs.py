"""Start a program, read its output line by line, wait until it listens: the one copy of this,
used by the tests (tests/), the demo and the attack lab (tools/programs.py) and the benchmarks
(bench/).

Every wait has a deadline, so a program that hangs fails its caller instead of freezing it, and
nothing here sleeps to synchronise:

- `Lines`: a reader thread collecting a pipe's lines; `wait_for(pattern)` blocks until one matches.
- `Proc`: a running program with its stdout and stderr collected (or stderr merged into stdout).
- `Server`: a `Proc` started with `--port 0`; its real port is read from its "Listening on" line.
- `run_to_end()`: a program run to completion with a deadline; `Result` is what it printed.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

WAIT = 10.0       # seconds: the usual bound for something that should happen at once
CEILING = 30.0    # seconds: the bound for the slowest thing (a load test, 16 MiB messages)

# Every seclink server (C++, Python, asyncio, the reference one) prints this once it accepts.
LISTENING = re.compile(r"\[INFO\] Listening on (\S+):(\d+)")
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} ")


class Misbehaved(AssertionError):
    """A program did not do what was expected in time; the message says what and shows its output.
    An AssertionError, so that a test reports it as a failure."""


class Lines:
    """Collects the lines of a pipe in a thread; callers wait for lines with a deadline."""

    def __init__(self, pipe: IO[bytes], name: str) -> None:
        self.name = name
        self._pipe = pipe
        self._lines: list[str] = []
        self._done = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, name=f"reader-{name}", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for raw in self._pipe:
                line = raw.decode("utf-8", errors="replace").rstrip("\n")
                with self._cond:
                    self._lines.append(line)
                    self._cond.notify_all()
        except (OSError, ValueError):  # pipe closed under us at teardown
            pass
        finally:
            with self._cond:
                self._done = True
                self._cond.notify_all()

    @property
    def lines(self) -> list[str]:
        with self._cond:
            return list(self._lines)

    @property
    def text(self) -> str:
        return "".join(line + "\n" for line in self.lines)

    def mark(self) -> int:
        """Index of the next line: pass it as `since` to ignore what came before."""
        with self._cond:
            return len(self._lines)

    def matching(self, pattern: str, since: int = 0) -> list[re.Match[str]]:
        rx = re.compile(pattern)
        return [m for line in self.lines[since:] if (m := rx.search(line))]

    def wait_index(self, pattern: str, since: int = 0, timeout: float = WAIT, count: int = 1) -> int:
        """Index of the `count`-th line (from index `since`) matching `pattern`; raises Misbehaved
        after `timeout` s or when the pipe ends first."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [i for i in range(since, len(self._lines)) if rx.search(self._lines[i])]
                if len(found) >= count:
                    return found[count - 1]
                left = deadline - time.monotonic()
                if left <= 0 or self._done:
                    tail = "\n".join(self._lines[-40:])
                    why = "ended" if self._done else f"timed out after {timeout} s"
                    raise Misbehaved(f"{self.name}: {len(found)}/{count} lines match {pattern!r} "
                                     f"({why}); last lines:\n{tail}")
                self._cond.wait(min(left, 0.5))

    def wait_for(self, pattern: str, since: int = 0, timeout: float = WAIT, count: int = 1) -> re.Match[str]:
        """The `count`-th line (from index `since`) matching `pattern`; fails after `timeout` s."""
        index = self.wait_index(pattern, since, timeout, count)
        with self._cond:
            return re.search(pattern, self._lines[index])

    def join(self, timeout: float = WAIT) -> None:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise Misbehaved(f"{self.name}: the pipe never ended")


def strip_timestamps(text: str) -> list[str]:
    """Log file lines without their timestamp; every line that starts an entry must have one
    (trace rows continue an entry on indented lines without one)."""
    out = []
    for line in text.splitlines():
        m = TIMESTAMP.match(line)
        if not (m or line.startswith(" ")):
            raise Misbehaved(f"log line without a timestamp: {line!r}")
        out.append(line[m.end():] if m else line)
    return out


def program_name(argv: list[str]) -> str:
    """How a command is named in messages: the script for `python3 script.py`, else the program."""
    if argv[0] == sys.executable and len(argv) > 1:
        return Path(argv[2] if argv[1] == "-m" and len(argv) > 2 else argv[1]).name
    return Path(argv[0]).name


class Proc:
    """A running program whose stdout and stderr are collected line by line (`out`, `err`);
    with `merge_stderr` both go to `out` and `err` is None."""

    def __init__(self, argv: list[str], *, cwd: Path | str, env: dict[str, str], stdin: bool = False,
                 merge_stderr: bool = False, name: str | None = None, start_new_session: bool = False) -> None:
        self.argv = argv
        self.name = name or program_name(argv)
        self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                     stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
                                     start_new_session=start_new_session)
        self.out = Lines(self.proc.stdout, f"{self.name} stdout")
        self.err = None if merge_stderr else Lines(self.proc.stderr, f"{self.name} stderr")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def write(self, text: str | bytes) -> None:
        """Write to the program's standard input (a Misbehaved if it stopped reading it)."""
        try:
            self.proc.stdin.write(text.encode() if isinstance(text, str) else text)
            self.proc.stdin.flush()
        except OSError as e:
            raise Misbehaved(f"{self.name} stopped reading its input: {e}") from None

    def close_stdin(self) -> None:
        if self.proc.stdin and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except OSError:
                pass

    def output(self) -> str:
        return f"stdout:\n{self.out.text}" + (f"stderr:\n{self.err.text}" if self.err else "")

    def wait(self, timeout: float = WAIT) -> int:
        """Exit status (Misbehaved if the program is still running after `timeout`)."""
        try:
            status = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise Misbehaved(f"{self.argv} still running after {timeout} s; {self.output()}") from None
        self.out.join()
        if self.err:
            self.err.join()
        return status

    def stop(self, signum: int = signal.SIGTERM, timeout: float = WAIT) -> int:
        """Send `signum` (SIGTERM: the graceful stop) and return the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        status = self.wait(timeout)
        self._close_pipes()
        return status

    def _close_pipes(self) -> None:
        self.close_stdin()
        for lines, pipe in ((self.out, self.proc.stdout), (self.err, self.proc.stderr)):
            if lines:
                lines.join()
                pipe.close()

    def kill(self) -> None:
        """Teardown, on every path: kill if still running, reap, close the pipes."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(CEILING)
        self._close_pipes()


class Server(Proc):
    """A server started on port 0: `host` and `port` come from its "Listening on" line."""

    def __init__(self, argv: list[str], *, cwd: Path | str, env: dict[str, str], timeout: float = WAIT,
                 **kwargs) -> None:
        super().__init__(argv, cwd=cwd, env=env, **kwargs)
        self.cwd = cwd
        try:
            index = self.out.wait_index(LISTENING.pattern, timeout=timeout)
        except Misbehaved as e:
            self.kill()
            raise Misbehaved(f"{e}" + (f"\nstderr: {self.err.text}" if self.err else "")) from None
        self.startup = self.out.lines[:index + 1]  # what it printed up to and including that line
        m = LISTENING.search(self.startup[-1])
        self.host, self.port = m.group(1), int(m.group(2))

    def wait_for(self, pattern: str, since: int = 0, timeout: float = WAIT, count: int = 1) -> re.Match[str]:
        return self.out.wait_for(pattern, since, timeout, count)


@dataclass
class Result:
    """A program run to completion."""
    returncode: int
    stdout: str
    stderr: str
    argv: list[str]

    def __str__(self) -> str:
        return f"{self.argv[1:]} -> exit {self.returncode}\nstdout:\n{self.stdout}stderr:\n{self.stderr}"


def run_to_end(argv: list[str], *, cwd: Path | str, env: dict[str, str], input: bytes | str | None = None,
        timeout: float = WAIT) -> Result:
    """Run `argv` to completion (Misbehaved, after killing it, if it runs longer than `timeout`)."""
    if isinstance(input, str):
        input = input.encode()
    try:
        cp = subprocess.run(argv, cwd=cwd, env=env, input=input,
                            stdin=None if input is not None else subprocess.DEVNULL,
                            capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise Misbehaved(f"{argv} still running after {timeout} s (killed); stdout:\n"
                         f"{(e.stdout or b'').decode(errors='replace')}") from None
    return Result(cp.returncode, cp.stdout.decode("utf-8", errors="replace"),
                  cp.stderr.decode("utf-8", errors="replace"), argv)


def base_env(home: Path) -> dict[str, str]:
    """The environment of every program a test starts: its own HOME and XDG_CONFIG_HOME, no
    SECLINK_PSK_FILE, so nothing reaches the user's own key or configuration."""
    env = {k: v for k, v in os.environ.items() if k not in ("SECLINK_PSK_FILE", "XDG_CONFIG_HOME", "HOME")}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / "config"), LC_ALL="C.UTF-8")
    return env
