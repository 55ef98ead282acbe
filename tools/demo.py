#!/usr/bin/env python3
"""The narrated demo behind `make demo`: a lesson in steps.

It starts a C++ server and a Python server on free ports of 127.0.0.1, has the C++ and Python
clients talk to both, has three clients chat across two chat servers linked by NATS, shows what
an eavesdropper captures (seclink next to a plaintext protocol),
shows one frame with --trace, lets a relay tamper with a frame and replay one, tries a wrong key,
runs the attack lab (four classic broken designs, and the same attacks on seclink), writes a
picture of one session as an HTML page, and sends a file, pipes a stream and runs a tunnel. Each step says what to notice, then checks that the
programs really behaved that way.

For a class: --step waits for Enter after each step; --only N runs one step (starting the
servers quietly first when it needs them). Text wraps to the terminal's width.

Everything lives in build/demo/ (a key made for the demo, every log file): each program gets
--psk-file and --log-file explicitly, and XDG_CONFIG_HOME points into build/demo/ as well, so
your own key in ~/.config/seclink/ is never read or written.

Exit status: 0 if every step behaved as narrated, 1 if any did not, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Dict, List, Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# These need ROOT on sys.path first.
from tools.relay import Relay  # noqa: E402
from tools import programs, trace_html  # noqa: E402
from tools.attacks import lab as attack_lab, weak  # noqa: E402
from tools.wiretap import Wiretap, hexdump  # noqa: E402

# Paths are relative to ROOT, where every child runs, so a command shown can be pasted as is.
DEMO = "build/demo"
PSK = f"{DEMO}/psk"
WRONG_PSK = f"{DEMO}/wrong-psk"
CONFIG = f"{DEMO}/config"  # XDG_CONFIG_HOME of every child
SESSION_PAGE = f"{DEMO}/session.html"  # step 13 writes it (--trace-html FILE: elsewhere)
WAIT = programs.WAIT  # seconds: the longest any single wait may take
HOST = programs.HOST

SERVERS = programs.SERVERS
CLIENTS = programs.CLIENTS
LOGS = {"C++": "cpp", "Python": "py"}  # log file prefixes: build/demo/cpp-server.log, ...
SHORT = {"C++": "C++", "Python": "Py"}  # for the labels in front of each line of output
WIDTH = 80  # columns; longer output lines are wrapped. main() sets it to the terminal's width.

COLOUR = sys.stdout.isatty() and "NO_COLOR" not in os.environ

StepFailed = programs.Misbehaved  # a program did not behave as the step narrated


# ---------------------------------------------------------------------------------------------
# Printing

def paint(text: str, code: str) -> str:
    """Wrap text in an ANSI colour code, only on a terminal and without NO_COLOR."""
    return f"\033[{code}m{text}\033[0m" if COLOUR else text


def say(text: str, first: str = "", rest: Optional[str] = None) -> None:
    """One paragraph, wrapped to the terminal's width."""
    rest = " " * len(first) if rest is None else rest
    for line in textwrap.wrap(text, WIDTH, initial_indent=first, subsequent_indent=rest,
                              break_on_hyphens=False, break_long_words=True) or [first]:
        print(line)


def heading(number: int, total: int, title: str) -> None:
    print()
    text = f"== {number}/{total}  {title} =="
    if len(text) > WIDTH:
        text = text[:-3]  # no "==" left alone on a line of its own
    for line in textwrap.wrap(text, WIDTH, subsequent_indent="   "):
        print(paint(line, "1"))


def notice(*lines: str) -> None:
    """The 'what to look at' paragraph under a heading (the pieces are joined, then wrapped)."""
    say(" ".join(lines), "Notice: ")


def show(label: str, lines: List[str], wrap: bool = True) -> None:
    """Program output, indented and labelled with who printed it; long lines wrapped unless told."""
    prefix = f"  {label:<10} | "
    for line in lines:
        if len(prefix + line) <= WIDTH or not wrap:
            print(prefix + line)
            continue
        pieces = textwrap.wrap(line, max(20, WIDTH - len(prefix)), subsequent_indent="    ",
                               break_on_hyphens=False)
        print(prefix + pieces[0])
        for piece in pieces[1:]:
            print(" " * (len(prefix) - 2) + "| " + piece)


def show_command(argv: List[str]) -> None:
    words = ["python3" if word == sys.executable else word for word in argv]
    line = "  $ " + shlex.join(words)
    if len(line) <= WIDTH:
        print(line)
        return
    pieces, current = [], ""
    for word in (shlex.quote(w) for w in words):  # break between words, never inside a quoted one
        if current and len(current) + 1 + len(word) > WIDTH - 8:
            pieces.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    pieces.append(current)
    for i, piece in enumerate(pieces):  # a shell continuation, so it can still be pasted
        print(("  $ " if i == 0 else "      ") + piece + (" \\" if i < len(pieces) - 1 else ""))


def fit_trace(lines: List[str]) -> List[str]:
    """--trace rows ('label  value   note') as they are when they fit, else the note on its own line."""
    out = []
    for line in lines:
        row = re.match(r"^(\s+)(\S+ +)(\S.*?)( {2,})(\S.*)$", line)
        if len(line) <= WIDTH or not row:
            out.append(line if len(line) <= WIDTH else line[:WIDTH - 3] + "...")
            continue
        lead = row.group(1) + row.group(2)
        out.append((lead + row.group(3))[:WIDTH])
        out.append(" " * len(lead) + "^ " + row.group(5)[:WIDTH - len(lead) - 2])
    return out


def check(condition: bool, reason: str) -> None:
    if not condition:
        raise StepFailed(reason)


# ---------------------------------------------------------------------------------------------
# Running the programs

def common_flags(log: str, psk: str = PSK) -> List[str]:
    return ["--psk-file", psk, "--log-file", f"{DEMO}/{log}.log"]


def make_key(path: str) -> List[str]:
    """Write a new key file with ./server --keygen; returns what it printed."""
    show_command(["./server", "--keygen", "--psk-file", path])
    return programs.keygen(path, CONFIG)


class Program(programs.Program):
    """A long-running child whose output is shown (as far as it got) when a wait fails."""

    def __init__(self, label: str, argv: List[str], interactive: bool = False) -> None:
        super().__init__(label, argv, CONFIG, interactive=interactive, on_timeout=show)


class Server(Program):
    """A server on a free port (--port 0): the port is read from its 'Listening on' line."""

    def __init__(self, language: str) -> None:
        argv = SERVERS[language] + ["--host", HOST, "--port", "0"]
        show_command(argv)
        super().__init__(f"{SHORT[language]} server", argv + common_flags(f"{LOGS[language]}-server"))
        self.wait_listening()


def run_client(language: str, args: List[str], psk: str = PSK,
               show_output: bool = True) -> subprocess.CompletedProcess:
    """Run a client to the end; show the command and (unless told not to) everything it printed."""
    argv = CLIENTS[language] + args
    show_command(argv + (["--psk-file", psk] if psk != PSK else []))
    result = programs.run_client(language, args, common_flags(f"{LOGS[language]}-client", psk), CONFIG)
    if show_output:
        show(f"{SHORT[language]} client", result.stdout.splitlines() + result.stderr.splitlines())
    return result


def start_relay(server: Server, action: str) -> Relay:
    """A man in the middle that will `action` ("flip" or "replay") the client's first message frame."""
    relay = Relay(server.port, "up", 2, action)  # 0: frame 1, 1: the key-confirmation PING
    say(f"(the relay listens on port {relay.port} and forwards to the {server.label} on {server.port})", "  ")
    return relay


def ack_line(number: int, message: str) -> str:
    """The line a client prints for the server's reply to its message `number`."""
    reply = f"ACK: received {len(message.encode())} bytes"
    return f"[RECV] #{number} {reply} (a reply of {len(reply)} bytes)"


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
        show(servers[language].label, servers[language].startup)
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


def chat(servers: Servers) -> str:
    notice("--chat: clients talk to each other, live. A C++ and a Python chat server share their",
           "rooms through a NATS server (--cluster); three clients in two languages join lobby,",
           "each hears the others' lines as they come. The script types here.")
    nats_bin = shutil.which("nats-server") or "/usr/sbin/nats-server"
    check(os.path.exists(nats_bin), "nats-server is missing (tools/install-deps.sh installs it)")
    bus = Program("NATS", [nats_bin, "-a", HOST, "-p", "-1"])
    nats_port = re.search(r"client connections on [\d.]+:(\d+)", bus.expect(r"client connections on ")[-1]).group(1)
    say(f"(nats-server listens on port {nats_port})", "  ")
    chat_servers = {}
    for language in ("C++", "Python"):
        argv = SERVERS[language] + ["--host", HOST, "--port", "0", "--chat", "--cluster", f"nats://{HOST}:{nats_port}"]
        show_command(argv)
        srv = Program(f"{SHORT[language]} chat server", argv + common_flags(f"{LOGS[language]}-chat-server"))
        lines = srv.wait_listening()
        show(srv.label, [line for line in lines if "cluster" in line or "Listening" in line])
        chat_servers[language] = srv
    people = [("alice", "C++", "C++"), ("bob", "Python", "Python"), ("carol", "Python", "C++")]  # name, client, server
    members = {}
    for name, client, server in people:
        argv = CLIENTS[client] + [HOST, str(chat_servers[server].port)]
        show_command(argv)
        member = Program(f"{name} ({SHORT[client]})", argv + common_flags(f"{LOGS[client]}-chat-client"),
                         interactive=True)
        member.expect(r"^\* guest\d+ joined lobby$")
        member.type_line(f"/nick {name}")
        show(member.label, member.expect(rf"is now {name}$"))
        members[name] = member
    for name, text in (("alice", "hi all, from C++"), ("bob", "hello from Python, on the other server")):
        show("typed", [f"{name}: {text}"])
        members[name].type_line(text)
        for other, member in members.items():
            heard = member.expect(rf"^\[{name}\] ")
            show(member.label, heard[-1:])
            check(heard[-1] == f"[{name}] {text}", f"{other} did not hear {name}'s line")
    for member in members.values():
        member.type_line("/quit")
        member.expect(r"Disconnected")
        check(member.wait() == 0, f"{member.label} did not exit 0")
    for srv in chat_servers.values():
        srv.proc.send_signal(signal.SIGTERM)
        srv.expect(r"Server stopped")
    bus.close()
    return "three members on two servers heard every line; /quit ended each with exit 0"


def trace(servers: Servers) -> str:
    notice("one transport frame = 4-byte length prefix, 12-byte IV (4 zero bytes + counter),",
           "ciphertext (type byte + text: as long as the plaintext), 16-byte GCM tag. The client's",
           "first transport frame (counter 0) is an empty PING that proves it holds the key.")
    srv = servers["Python"]
    result = run_client("C++", [HOST, str(srv.port), "trace me", "--trace"], show_output=False)
    srv.expect(r"disconnected")
    lines = result.stdout.splitlines()
    check(result.returncode == 0, f"the client exited {result.returncode}, not 0: {result.stderr.strip()}")
    starts = [i for i, line in enumerate(lines) if "-> sent transport frame" in line]
    check(len(starts) >= 2, "no second '-> sent transport frame' in the trace")
    block = lines[starts[1]:starts[1] + 6]  # the heading line and its five annotated fields
    print("  (the two handshake frames and the key-confirmation PING, then:)")
    for line in fit_trace(["    " + line for line in block]):  # the picture
        print(line)
    fields = {line.split()[0]: line.split() for line in block[1:]}
    check(list(fields) == ["length", "iv", "cipher", "tag", "plain"], f"trace labels {list(fields)}")
    check(fields["iv"][2:4] == ["counter", "1"], "the message's IV is not counter 1")
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


SECRET = "my PIN is 4711"


def eavesdropper(servers: Servers) -> str:
    notice("a capturing relay sits between client and server and records every byte, as anyone on",
           "the path could. The same secret goes once over a plaintext protocol, once over seclink;",
           "then the capture is searched for it.")
    secret = SECRET.encode()
    width = WIDTH - 4
    mark = (lambda text: paint(text, "1;31")) if COLOUR else str

    say("plaintext protocol (tools/attacks/weak.py PlainLink: a length prefix, then the text):", "  ")
    server = weak.WeakServer(weak.PlainLink())
    tap = Wiretap(server.port)
    weak.send_messages(tap.port, weak.PlainLink(), [secret])
    tap.close()
    server.close()
    plain = tap.wire()
    for line in hexdump(tap.wire("up"), width, secret, mark):
        print("    " + line)
    found = plain.find(secret)
    say(f"search for {SECRET!r}: found at offset {found:#x} of {len(plain)} bytes captured"
        if found >= 0 else f"search for {SECRET!r}: not found", "  => ")
    check(found >= 0, "the secret is not in the plaintext capture")

    srv = servers["C++"]
    tap = Wiretap(srv.port)
    say(f"seclink: ./client -> the relay (port {tap.port}) -> the C++ server (port {srv.port}):", "  ")
    result = run_client("C++", [HOST, str(tap.port), SECRET], show_output=False)
    tap.close()
    srv.expect(r"disconnected")
    check(result.returncode == 0, f"the client exited {result.returncode}, not 0")
    up = tap.wire("up")
    sizes = ", ".join(f"{len(f.data)}" for f in tap.frames if f.direction == "up")
    say(f"client to server: {len(up)} bytes in frames of {sizes} (handshake frame 1, the message, CLOSE):",
        "  ")
    for line in hexdump(up, width, secret, mark):
        print("    " + line)
    wire = tap.wire()
    say(f"search for {SECRET!r} in all {len(wire)} bytes, both directions: "
        + ("FOUND" if secret in wire else "not found"), "  => ")
    check(secret not in wire, "the secret is in the seclink capture")
    check(secret.hex() not in wire.hex(), "the secret's bytes are in the seclink capture")
    return f"plaintext: the secret at offset {found:#x}; seclink: {len(wire)} bytes, no trace of it"


def attacks(servers: Servers) -> str:
    notice("the attack lab (make attacks): four designs that classroom assignments often hand in,",
           "each INSECURE on purpose (tools/attacks/weak.py), and a real attack on each. Then the same",
           "attack on seclink, where it must fail. The lab runs its own C++ server.")
    the_lab = attack_lab.Lab("C++", print, WIDTH, f"{DEMO}/attacks")
    try:
        failed = [n for n in range(1, len(attack_lab.ATTACKS) + 1) if not attack_lab.run_attack(the_lab, n)]
    finally:
        the_lab.close()
    check(not failed, f"attack(s) {failed} did not behave as taught")
    return "all four attacks broke their weak design and failed against seclink"


def trace_page(servers: Servers) -> str:
    notice("one session drawn as a sequence diagram (tools/trace_html.py): every frame on the wire",
           "with its length, counter, ciphertext, tag and plaintext, the handshake explained, and a",
           "replayed frame marked where the server refused it. Open it in a browser.")
    path = SESSION_PAGE
    messages = ["hello", "pay 100 to bob", "bye"]
    show_command([sys.executable, "tools/trace_html.py", "--replay", "3", "-o", path] + messages)
    session = trace_html.record(server="Python", client="C++", messages=messages,
                                meddle="replay", index=3, work=f"{DEMO}/trace")
    (ROOT / path).parent.mkdir(parents=True, exist_ok=True)
    (ROOT / path).write_text(trace_html.render(session), encoding="utf-8")
    show("frames", [row.summary() for row in session.rows])
    refused = [row for row in session.rows if row.refused]
    check(len(refused) == 1 and refused[0].replayed, "the replayed frame is not the one marked refused")
    check(session.warn and "BAD_COUNTER" in session.warn, "no BAD_COUNTER [WARN] from the server")
    return f"wrote {path}: {len(session.rows)} frames, the replay refused ({len(session.html_bytes)} bytes)"


def _listening_port(program: Program) -> int:
    show(program.label, program.wait_listening())
    return program.port


def _run_in(directory: Path, argv: List[str], stdin: Optional[str] = None) -> subprocess.CompletedProcess:
    """A client run to the end in `directory` (where --get writes)."""
    show_command(argv)
    try:
        return subprocess.run(argv, cwd=directory, env=programs.child_env(CONFIG), input=stdin,
                              stdin=None if stdin is not None else subprocess.DEVNULL, capture_output=True,
                              text=True, errors="replace", timeout=WAIT)
    except subprocess.TimeoutExpired:
        raise StepFailed(f"{argv[0]} did not finish within {WAIT:.0f} s") from None


def files(servers: Servers) -> str:
    notice("--files DIR: a server that takes files. The Python client sends one, the C++ client",
           "fetches it back: the same SHA-256 on both lines, checked before the file got its name.",
           "A name that is not a plain file name is refused by the server.")
    inbox, fetched = ROOT / DEMO / "inbox", ROOT / DEMO / "fetched"
    for d in (inbox, fetched):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    (ROOT / DEMO / "report.txt").write_text("quarterly figures\n" * 20000)
    argv = SERVERS["C++"] + ["--host", HOST, "--port", "0", "--files", f"{DEMO}/inbox"]
    show_command(argv)
    srv = Program("C++ files server", argv + common_flags("cpp-files-server"))
    port = _listening_port(srv)
    flags = ["--psk-file", PSK, "--log-file", "-"]
    sent = _run_in(ROOT, CLIENTS["Python"] + [HOST, str(port), "--send", f"{DEMO}/report.txt"] + flags)
    show("Py client", sent.stdout.splitlines() + sent.stderr.splitlines())
    got = _run_in(fetched, [str(ROOT / "client"), HOST, str(port), "--get", "report.txt", "--psk-file",
                            str(ROOT / PSK), "--log-file", "-"])
    show("C++ client", got.stdout.splitlines() + got.stderr.splitlines())
    (ROOT / DEMO / ".hidden").write_text("x")
    bad = _run_in(ROOT, CLIENTS["C++"] + [HOST, str(port), "--send", f"{DEMO}/.hidden"] + flags)
    show("C++ client", bad.stderr.splitlines())
    srv.proc.send_signal(signal.SIGTERM)
    show(srv.label, [line for line in srv.expect(r"Server stopped") if "report" in line or "hidden" in line])
    digests = re.findall(r"sha256 ([0-9a-f]{64})", sent.stdout + got.stdout)
    check(sent.returncode == 0 and got.returncode == 0, "a transfer failed")
    check(len(digests) == 2 and digests[0] == digests[1], "the two SHA-256 lines differ")
    check((fetched / "report.txt").read_bytes() == (ROOT / DEMO / "report.txt").read_bytes(), "the copy differs")
    check(bad.returncode == 7 and "BAD_NAME" in bad.stderr, "the hidden name was not refused")
    return f"sent and fetched back, sha256 {digests[0][:16]}...; '.hidden' refused (BAD_NAME)"


def pipe(servers: Servers) -> str:
    notice("--pipe: what nc does, encrypted. The server serves one session and writes the client's",
           "standard input to its standard output (here mixed with its log lines), then exits.")
    argv = SERVERS["C++"] + ["--host", HOST, "--port", "0", "--pipe"]
    show_command(argv)
    srv = Program("C++ pipe server", argv + common_flags("cpp-pipe-server"))
    port = _listening_port(srv)
    result = _run_in(ROOT, CLIENTS["Python"] + [HOST, str(port), "--pipe", "--psk-file", PSK, "--log-file", "-"],
                     stdin="first line\nsecond line\n")
    show("Py client", result.stderr.splitlines())
    lines = srv.expect(r"Pipe done")
    show(srv.label, lines)
    code = srv.wait()
    check(result.returncode == 0 and code == 0, "the pipe did not end with exit 0 on both sides")
    check("first line" in lines and "second line" in lines, "the server did not write what was piped in")
    return "both lines came out of the server's standard output; both exited 0"


def tunnel(servers: Servers) -> str:
    import socket
    import threading
    notice("--forward / --listen: what stunnel does. A plain TCP service (here a tiny one that",
           "answers in capitals) is reached through the client's local port; the half-close",
           "(the sender's 'I am done') travels through the tunnel as an EOF message.")
    service = socket.create_server((HOST, 0))

    def answer() -> None:
        conn, _ = service.accept()
        with conn:
            data = b""
            while chunk := conn.recv(1024):
                data += chunk
            conn.sendall(data.upper())
    threading.Thread(target=answer, daemon=True).start()
    target = f"{HOST}:{service.getsockname()[1]}"
    argv = SERVERS["C++"] + ["--host", HOST, "--port", "0", "--forward", target]
    show_command(argv)
    srv = Program("C++ server", argv + common_flags("cpp-forward-server"))
    sport = _listening_port(srv)
    argv = CLIENTS["Python"] + [HOST, str(sport), "--listen", f"{HOST}:0"]
    show_command(argv)
    cli = Program("Py client", argv + common_flags("py-listen-client"))
    lport = _listening_port(cli)
    with socket.create_connection((HOST, lport), timeout=WAIT) as c:
        c.sendall(b"hello through the tunnel")
        c.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := c.recv(1024):
            reply += chunk
    service.close()
    show("service answered", [reply.decode()])
    show(cli.label, cli.expect(r"tunnel from .* closed"))
    for program in (srv, cli):
        program.proc.terminate()
        program.wait()
    check(reply == b"HELLO THROUGH THE TUNNEL", "the answer did not come back through the tunnel")
    return "the service's answer came back through the tunnel after the half-close"


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


@dataclass
class Step:
    title: str
    run: Callable[[Servers], str]
    needs_servers: bool = True


STEPS: List[Step] = [
    Step("Start a C++ server and a Python server", start_servers, needs_servers=False),
    Step("C++ client -> C++ server", partial(one_message, client="C++", server="C++")),
    Step("C++ client -> Python server", partial(one_message, client="C++", server="Python")),
    Step("Python client -> C++ server", partial(one_message, client="Python", server="C++")),
    Step("Python client -> Python server", partial(one_message, client="Python", server="Python")),
    Step("Interactive: Python client -> C++ server, C++ client -> Python server", interactive),
    Step("An eavesdropper's view: the same secret over plaintext and over seclink", eavesdropper),
    Step("--trace: one frame on the wire next to its plaintext", trace),
    Step("A tampered frame is rejected", tampered),
    Step("A replayed frame is rejected", replayed),
    Step("The wrong key is refused", wrong_key),
    Step("The attack lab: classic designs broken, the same attacks on seclink", attacks, needs_servers=False),
    Step("A picture of one session as an HTML page", trace_page, needs_servers=False),
    Step("Files: --send and --get, checked by SHA-256", files),
    Step("A pipe: --pipe on both sides", pipe),
    Step("A tunnel: --forward and --listen", tunnel),
    Step("Chat rooms: three clients, two languages, two servers linked by NATS", chat),
    Step("Stop both servers with SIGTERM", stop_servers),
]


def prepare() -> None:
    """Check the programs are built, and start from an empty build/demo/."""
    for program in ("server", "client"):
        if not (ROOT / program).exists():
            sys.exit(f"demo: ./{program} is missing: run `make` first (or `make demo`, which builds it)")
    shutil.rmtree(ROOT / DEMO, ignore_errors=True)
    (ROOT / CONFIG).mkdir(parents=True)


def report(text: str, colour: str) -> None:
    """A step's verdict, wrapped, each line in the verdict's colour."""
    for line in textwrap.wrap(text, WIDTH - 2, subsequent_indent="    ", break_on_hyphens=False):
        print(paint("  " + line, colour))


def pause(number: int) -> bool:
    """--step: wait for Enter after step `number`; False if the presenter typed q (or Ctrl-D)."""
    try:
        answer = input(paint(f"-- step {number}/{len(STEPS)} done: Enter for the next, q to stop -- ", "2"))
    except EOFError:
        print()
        return False
    return answer.strip().lower() not in ("q", "quit", "exit")


def run_steps(servers: Servers, only: Optional[int] = None, step_mode: bool = False,
              ran: Optional[List[int]] = None) -> List[str]:
    """Run every step in order (or only one); returns the steps that failed, as 'number (title)'.
    The numbers of the steps that ran are appended to `ran`."""
    failed: List[str] = []
    ran = [] if ran is None else ran
    numbers = [only] if only else list(range(1, len(STEPS) + 1))
    if only and STEPS[only - 1].needs_servers:
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # step 1, quietly: the servers are needed
                start_servers(servers)
        except StepFailed as e:
            print(paint(f"  FAILED to start the servers: {e}", "31"))
            return [f"1 ({STEPS[0].title})"]
        say(f"(step 1 ran quietly: the C++ server is on port {servers['C++'].port}, "
            f"the Python server on {servers['Python'].port})")
    for number in numbers:
        step = STEPS[number - 1]
        ran.append(number)
        heading(number, len(STEPS), step.title)
        try:
            report("OK: " + step.run(servers), "32")
        except (StepFailed, subprocess.TimeoutExpired, OSError) as e:
            report(f"FAILED: {e}", "31")
            failed.append(f"{number} ({step.title})")
            if step.run is start_servers:  # without the servers no other step can run
                failed.append(f"{number + 1}-{len(STEPS)} (not run)")
                break
        if step_mode and number != numbers[-1] and not pause(number):
            print("demo: stopped by the presenter")
            break
    return failed


def main(argv: Optional[List[str]] = None) -> int:
    global WIDTH, SESSION_PAGE
    parser = argparse.ArgumentParser(
        prog="tools/demo.py", description=__doc__.split("\n\n")[0] + "\n\n" + __doc__.split("\n\n")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="steps:\n" + "\n".join(f"  {n:>2}  {step.title}" for n, step in enumerate(STEPS, 1))
        + "\n\nExit status: 0 if every step run behaved as narrated, 1 if any did not, 130 on Ctrl-C.")
    parser.add_argument("--step", action="store_true", help="wait for Enter after each step (q stops)")
    parser.add_argument("--only", type=int, metavar="N", choices=range(1, len(STEPS) + 1),
                        help=f"run only step N (1-{len(STEPS)}); the servers are started quietly if it needs them")
    parser.add_argument("--trace-html", metavar="FILE", default=SESSION_PAGE,
                        help=f"where step 13 writes the session page (default {SESSION_PAGE})")
    parser.add_argument("--width", type=int, metavar="COLUMNS",
                        help="wrap text at COLUMNS (default: the terminal's width)")
    args = parser.parse_args(argv)
    page = Path(args.trace_html).resolve()
    SESSION_PAGE = str(page.relative_to(ROOT)) if page.is_relative_to(ROOT) else str(page)
    WIDTH = max(60, args.width or shutil.get_terminal_size((80, 24)).columns)
    sys.stdout.reconfigure(line_buffering=True)  # show each line at once, even through a pipe
    prepare()
    say("seclink demo: C++ and Python servers and clients on 127.0.0.1, talking seclink/1. "
        f"Every program also gets --psk-file {PSK} and --log-file {DEMO}/<program>.log, "
        "so your own key in ~/.config/seclink/ is never read or written.")
    ran: List[int] = []
    try:
        failed = run_steps({}, args.only, args.step, ran)
    except KeyboardInterrupt:
        print("\ndemo: interrupted")
        return 130
    finally:
        programs.stop_all()
    logs = sorted(path.name for path in (ROOT / DEMO).glob("*.log"))
    print()
    if logs:
        say(f"Logs are in {DEMO}/: " + ", ".join(logs))
    if failed:
        say("Demo FAILED: these steps did not behave as narrated: " + "; ".join(failed))
        return 1
    done = f"step {args.only}" if args.only else f"all {len(STEPS)} steps" if len(ran) == len(STEPS) \
        else f"steps 1-{ran[-1]} of {len(STEPS)}"
    print(paint(f"Demo complete: {done} behaved as narrated.", "32"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
