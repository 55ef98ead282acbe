#!/usr/bin/env python3
"""The narrated demo behind `make demo`.

It starts a C++ server and a Python server on free ports of 127.0.0.1, has the C++ and Python
clients talk to both, shows one frame with --trace, lets a relay tamper with a frame and replay
one, and tries a wrong key. Each step says what to notice, then checks that the programs really
behaved that way.

Everything lives in build/demo/ (a key made for the demo, every log file): each program gets
--psk-file and --log-file explicitly, and XDG_CONFIG_HOME points into build/demo/ as well, so
your own key in ~/.config/seclink/ is never read or written.

Exit status: 0 if every step behaved as narrated, 1 if any did not, 130 on Ctrl-C.
"""

from __future__ import annotations

import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from functools import partial
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from interop_tests.relay import Relay  # noqa: E402  (needs ROOT on sys.path first)

# Paths are relative to ROOT, where every child runs, so a command shown can be pasted as is.
DEMO = "build/demo"
PSK = f"{DEMO}/psk"
WRONG_PSK = f"{DEMO}/wrong-psk"
WAIT = 10.0  # seconds: the longest any single wait may take
HOST = "127.0.0.1"

SERVERS = {"C++": ["./server"], "Python": [sys.executable, "python/server.py"]}
CLIENTS = {"C++": ["./client"], "Python": [sys.executable, "python/client.py"]}
LOGS = {"C++": "cpp", "Python": "py"}  # log file prefixes: build/demo/cpp-server.log, ...
SHORT = {"C++": "C++", "Python": "Py"}  # for the labels in front of each line of output
WIDTH = 100  # columns; longer output lines are wrapped

COLOUR = sys.stdout.isatty() and "NO_COLOR" not in os.environ


class StepFailed(Exception):
    """A program did not behave as the step narrated; the message says how."""


# ---------------------------------------------------------------------------------------------
# Printing

def paint(text: str, code: str) -> str:
    """Wrap text in an ANSI colour code, only on a terminal and without NO_COLOR."""
    return f"\033[{code}m{text}\033[0m" if COLOUR else text


def heading(number: int, total: int, title: str) -> None:
    print()
    print(paint(f"== {number}/{total}  {title} ==", "1"))


def notice(*lines: str) -> None:
    """The 'what to look at' lines under a heading."""
    for i, line in enumerate(lines):
        print(("Notice: " if i == 0 else "        ") + line)


def show(label: str, lines: List[str], wrap: bool = True) -> None:
    """Program output, indented and labelled with who printed it; long lines wrapped unless told."""
    prefix = f"  {label:<10} | "
    for line in lines:
        if len(prefix + line) <= WIDTH or not wrap:
            print(prefix + line)
            continue
        pieces = textwrap.wrap(line, WIDTH - len(prefix), subsequent_indent="    ", break_on_hyphens=False)
        print(prefix + pieces[0])
        for piece in pieces[1:]:
            print(" " * (len(prefix) - 2) + "| " + piece)


def show_command(argv: List[str]) -> None:
    words = ["python3" if word == sys.executable else word for word in argv]
    print("  $ " + shlex.join(words))


def check(condition: bool, reason: str) -> None:
    if not condition:
        raise StepFailed(reason)


# ---------------------------------------------------------------------------------------------
# Running the programs

def child_env() -> dict:
    """The environment of every child: no way to reach the user's own key or config."""
    env = dict(os.environ)
    env.pop("SECLINK_PSK_FILE", None)
    env["XDG_CONFIG_HOME"] = str(ROOT / DEMO / "config")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def common_flags(log: str, psk: str = PSK) -> List[str]:
    return ["--psk-file", psk, "--log-file", f"{DEMO}/{log}.log"]


def make_key(path: str) -> List[str]:
    """Write a new key file with ./server --keygen; returns what it printed."""
    argv = ["./server", "--keygen", "--psk-file", path]
    show_command(argv)
    result = subprocess.run(argv, cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=WAIT)
    check(result.returncode == 0, f"--keygen exited {result.returncode}: {result.stderr.strip()}")
    return result.stdout.splitlines()


STARTED: List["Program"] = []  # every long-running child, so that main() stops them all, always


class Program:
    """A long-running child (a server, or an interactive client) whose output is read line by line.

    A reader thread moves each line into a queue, so every wait has a deadline: a program that
    hangs makes its step fail after WAIT seconds instead of freezing the demo.
    """

    def __init__(self, label: str, argv: List[str], interactive: bool = False) -> None:
        self.label = label
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, env=child_env(), text=True, errors="replace", bufsize=1,
            stdin=subprocess.PIPE if interactive else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.lines: queue.Queue[Optional[str]] = queue.Queue()
        STARTED.append(self)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
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
                show(self.label, seen)
                raise StepFailed(f"{self.label} printed no line matching {pattern!r} in {WAIT:.0f} s")
            if line is None:
                self.lines.put(None)  # so that later calls see the end at once too
                show(self.label, seen)
                raise StepFailed(f"{self.label} ended without a line matching {pattern!r}")
            seen.append(line)
            if re.search(pattern, line):
                return seen

    def type_line(self, text: str) -> None:
        """Send one line to the program's standard input, as if typed."""
        try:
            self.proc.stdin.write(text + "\n")
            self.proc.stdin.flush()
        except OSError as e:
            raise StepFailed(f"{self.label} stopped reading its input: {e}")

    def wait(self) -> int:
        try:
            return self.proc.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            raise StepFailed(f"{self.label} did not exit within {WAIT:.0f} s")

    def close(self) -> None:
        """Make sure the program is gone (used on every exit path, failures included)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Server(Program):
    """A server on a free port (--port 0): the port is read from its 'Listening on' line."""

    def __init__(self, language: str) -> None:
        argv = SERVERS[language] + ["--host", HOST, "--port", "0"]
        show_command(argv)
        super().__init__(f"{SHORT[language]} server", argv + common_flags(f"{LOGS[language]}-server"))
        self.startup = self.expect(r"Listening on ")
        self.port = int(re.search(r"Listening on [\d.]+:(\d+)", self.startup[-1]).group(1))


def run_client(language: str, args: List[str], psk: str = PSK,
               show_output: bool = True) -> subprocess.CompletedProcess:
    """Run a client to the end; show the command and (unless told not to) everything it printed."""
    argv = CLIENTS[language] + args
    show_command(argv + (["--psk-file", psk] if psk != PSK else []))
    try:
        result = subprocess.run(argv + common_flags(f"{LOGS[language]}-client", psk), cwd=ROOT,
                                env=child_env(), stdin=subprocess.DEVNULL, capture_output=True,
                                text=True, errors="replace", timeout=WAIT)
    except subprocess.TimeoutExpired:
        raise StepFailed(f"the {language} client did not finish within {WAIT:.0f} s")
    if show_output:
        show(f"{SHORT[language]} client", result.stdout.splitlines() + result.stderr.splitlines())
    return result


def start_relay(server: Server, action: str) -> Relay:
    """A man in the middle that will `action` ("flip" or "replay") the client's first message frame."""
    relay = Relay(server.port, "up", 1, action)
    print(f"  (the relay listens on port {relay.port} and forwards to the {server.label} on {server.port})")
    return relay


def ack_line(number: int, message: str) -> str:
    """The line a client prints for the server's reply to its message `number`."""
    reply = f"ACK: received {len(message.encode())} bytes"
    return f"[RECV] #{number} {reply} ({len(reply)} bytes)"


# ---------------------------------------------------------------------------------------------
# The steps. Each gets the servers by language ("C++", "Python"), prints its notice and the
# programs' output, and returns what it verified, or raises StepFailed.

Servers = Dict[str, Server]


def start_servers(servers: Servers) -> str:
    notice("a key made for the demo, then both servers on free ports (--port 0).",
           "Their first lines differ only in the (c++) / (python) tag.")
    show("keygen", make_key(PSK))
    for language, tag in (("C++", "(c++)"), ("Python", "(python)")):
        servers[language] = Server(language)
        show(servers[language].label, servers[language].startup, wrap=False)  # to compare whole
        check(tag in servers[language].startup[0], f"the {language} server's first line lacks {tag}")
    return f"listening on ports {servers['C++'].port} (C++) and {servers['Python'].port} (Python)"


def one_message(servers: Servers, client: str, server: str) -> str:
    notice(f"the {client} client's [SEND] and the {server} server's [RECV] show the same text;",
           "the ACK names the byte count the server decrypted.")
    srv = servers[server]
    message = f"Hello from {client} to {server}"
    result = run_client(client, [HOST, str(srv.port), message])
    lines = srv.expect(r"disconnected")
    show(srv.label, [line for line in lines if line.startswith(("[RECV]", "[SEND]"))])
    check(result.returncode == 0, f"the client exited {result.returncode}, not 0")
    check(ack_line(1, message) in result.stdout, f"the client did not print '{ack_line(1, message)}'")
    check(any(f"#1 {message} (" in line for line in lines), "the server did not log the message")
    return f"exit 0, reply '{ack_line(1, message)}'"


def interactive(servers: Servers) -> str:
    notice("no message on the command line: each line typed is sent at once and its reply printed;",
           "!DISCONNECT (or quit, or Ctrl-D) ends the session cleanly. The script types here.")
    sessions = [("Python", "C++", ["hi", "how are you?"], "!DISCONNECT"),
                ("C++", "Python", ["hello again"], "quit")]
    for client, server, lines, goodbye in sessions:
        srv = servers[server]
        argv = CLIENTS[client] + [HOST, str(srv.port)]
        show_command(argv)
        program = Program(f"{SHORT[client]} client", argv + common_flags(f"{LOGS[client]}-client"),
                          interactive=True)
        show(program.label, program.expect(r"Connected to"))
        for number, text in enumerate(lines, 1):
            show("typed", [text])
            program.type_line(text)
            output = program.expect(r"^\[RECV\]")
            show(program.label, output)
            check(output[-1] == ack_line(number, text), f"no '{ack_line(number, text)}' for {text!r}")
        show("typed", [goodbye])
        program.type_line(goodbye)
        show(program.label, program.expect(r"Disconnected"))
        code = program.wait()
        check(code == 0, f"the interactive {client} client exited {code}, not 0")
        srv.expect(r"disconnected: client closed the session")
    return "every line typed got its ACK; both sessions ended with exit 0"


def trace(servers: Servers) -> str:
    notice("one transport frame = 4-byte length prefix, 12-byte IV (4 zero bytes + counter 0),",
           "ciphertext (type byte + text: as long as the plaintext), 16-byte GCM tag.")
    srv = servers["Python"]
    result = run_client("C++", [HOST, str(srv.port), "trace me", "--trace"], show_output=False)
    srv.expect(r"disconnected")
    lines = result.stdout.splitlines()
    check(result.returncode == 0, f"the client exited {result.returncode}, not 0: {result.stderr.strip()}")
    starts = [i for i, line in enumerate(lines) if "-> sent transport frame" in line]
    check(bool(starts), "no '-> sent transport frame' in the trace")
    block = lines[starts[0]:starts[0] + 6]  # the heading line and its five annotated fields
    print("  (the two handshake frames, then:)")
    for line in lines[starts[0]:starts[0] + 7]:  # unlabelled and unwrapped: this is the picture
        print("    " + line)
    fields = {line.split()[0]: line.split() for line in block[1:]}
    check(list(fields) == ["length", "iv", "cipher", "tag", "plain"], f"trace labels {list(fields)}")
    check(fields["iv"][2:4] == ["counter", "0"], "the first frame's IV is not counter 0")
    length, cipher = int(fields["length"][1], 16), len(fields["cipher"][1]) // 2
    check(length == 12 + cipher + 16, "length != IV + ciphertext + tag")
    check(fields["plain"][-2:] == ["trace", "me"], "the plaintext column does not show 'trace me'")
    return f"length {length} = 12 (IV) + {cipher} (ciphertext: 1 type byte + 8) + 16 (tag)"


def tampered(servers: Servers) -> str:
    notice("a relay between client and C++ server flips one bit of the first message's ciphertext.",
           "The tag check fails: nothing is delivered, only this connection is closed (exit 7).")
    srv = servers["C++"]
    relay = start_relay(srv, "flip")
    try:
        result = run_client("C++", [HOST, str(relay.port), "tampered"])
        lines = srv.expect(r"disconnected")
    finally:
        relay.close()
    show(srv.label, lines[-1:])
    check(relay.done.is_set(), "the relay never flipped a frame")
    check(result.returncode == 7, f"the client exited {result.returncode}, not 7")
    check("protocol error: AUTH:" in lines[-1], "the server did not report an AUTH error")
    check(not any(line.startswith("[RECV]") for line in lines), "the server delivered the tampered message")
    return "client exit 7; server: AUTH, no [RECV]"


def replayed(servers: Servers) -> str:
    notice("a relay sends the first message frame twice, byte for byte. Copy 1 is delivered and",
           "answered; copy 2 repeats counter 0 where 1 was due (BAD_COUNTER): the server closes the",
           "session, so the client's next message gets no answer (exit 7).")
    srv = servers["Python"]
    relay = start_relay(srv, "replay")
    try:
        result = run_client("Python", [HOST, str(relay.port), "replay me", "one more"])
        lines = srv.expect(r"disconnected")
    finally:
        relay.close()
    show(srv.label, [line for line in lines if line.startswith(("[RECV]", "[WARN]"))])
    check(relay.done.is_set(), "the relay never replayed a frame")
    check(sum(line.startswith("[RECV]") for line in lines) == 1, "the message was not delivered exactly once")
    check("protocol error: BAD_COUNTER:" in lines[-1], "the server did not report BAD_COUNTER")
    check("[RECV] #1 ACK: received 9 bytes" in result.stdout, "the first copy was not answered")
    check(result.returncode == 7, f"the client exited {result.returncode}, not 7")
    return "delivered and answered once; the replay refused (BAD_COUNTER); client exit 7"


def wrong_key(servers: Servers) -> str:
    notice("a client with another key cannot complete the handshake (HANDSHAKE_AUTH): exit 5,",
           "nothing sent. The server goes on serving the next client that has the right key.")
    make_key(WRONG_PSK)
    srv = servers["C++"]
    result = run_client("C++", [HOST, str(srv.port), "wrong key"], psk=WRONG_PSK)
    refused = srv.expect(r"disconnected")[-1]
    show(srv.label, [refused])
    check(result.returncode == 5, f"the client exited {result.returncode}, not 5")
    check("handshake failed: HANDSHAKE_AUTH:" in refused, "the server did not report HANDSHAKE_AUTH")
    check("different pre-shared key" in result.stderr, "the client's error does not name the key")
    good = run_client("Python", [HOST, str(srv.port), "still there?"])
    srv.expect(r"disconnected: client closed the session")
    check(good.returncode == 0 and ack_line(1, "still there?") in good.stdout, "the next good client failed")
    return "wrong key: exit 5, HANDSHAKE_AUTH; the next client: exit 0 with its ACK"


def stop_servers(servers: Servers) -> str:
    notice("SIGTERM (as Ctrl-C would): a server sends each open session a CLOSE (none are open",
           "now), says so, and exits 0.")
    for server in servers.values():
        server.proc.send_signal(signal.SIGTERM)
        lines = server.expect(r"Server stopped")
        show(server.label, lines)
        check(any("Terminated: closing 0 sessions" in line for line in lines), "no 'Terminated' line")
        code = server.wait()
        check(code == 0, f"the {server.label} exited {code}, not 0")
    return "both servers stopped with exit 0"


STEPS: List[Tuple[str, Callable[[Servers], str]]] = [
    ("Start a C++ server and a Python server", start_servers),
    ("C++ client -> C++ server", partial(one_message, client="C++", server="C++")),
    ("C++ client -> Python server", partial(one_message, client="C++", server="Python")),
    ("Python client -> C++ server", partial(one_message, client="Python", server="C++")),
    ("Python client -> Python server", partial(one_message, client="Python", server="Python")),
    ("Interactive: Python client -> C++ server, C++ client -> Python server", interactive),
    ("--trace: one frame on the wire next to its plaintext", trace),
    ("A tampered frame is rejected", tampered),
    ("A replayed frame is rejected", replayed),
    ("The wrong key is refused", wrong_key),
    ("Stop both servers with SIGTERM", stop_servers),
]


def prepare() -> None:
    """Check the programs are built, and start from an empty build/demo/."""
    for program in ("server", "client"):
        if not (ROOT / program).exists():
            sys.exit(f"demo: ./{program} is missing: run `make` first (or `make demo`, which builds it)")
    shutil.rmtree(ROOT / DEMO, ignore_errors=True)
    (ROOT / DEMO / "config").mkdir(parents=True)


def run_steps(servers: Servers) -> List[str]:
    """Run every step in order; returns the steps that failed, as 'number (title)'."""
    failed: List[str] = []
    for number, (title, step) in enumerate(STEPS, 1):
        heading(number, len(STEPS), title)
        try:
            print(paint("  OK: " + step(servers), "32"))
        except (StepFailed, subprocess.TimeoutExpired) as e:
            print(paint(f"  FAILED: {e}", "31"))
            failed.append(f"{number} ({title})")
            if step is start_servers:  # without the servers no other step can run
                failed.append(f"{number + 1}-{len(STEPS)} (not run)")
                break
    return failed


def main() -> int:
    sys.stdout.reconfigure(line_buffering=True)  # show each line at once, even through a pipe
    prepare()
    print("seclink demo: C++ and Python servers and clients on 127.0.0.1, talking seclink/1.")
    print(f"Every program also gets --psk-file {PSK} and --log-file {DEMO}/<program>.log,")
    print("so your own key in ~/.config/seclink/ is never read or written.")
    try:
        failed = run_steps({})
    except KeyboardInterrupt:
        print("\ndemo: interrupted")
        return 130
    finally:
        for program in STARTED:
            program.close()
    logs = sorted(path.name for path in (ROOT / DEMO).glob("*.log"))
    print()
    print(f"Logs are in {DEMO}/: " + ", ".join(logs))
    if failed:
        print(paint("Demo FAILED: these steps did not behave as narrated: " + "; ".join(failed), "31"))
        return 1
    print(paint(f"Demo complete: all {len(STEPS)} steps behaved as narrated.", "32"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
