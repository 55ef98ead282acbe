#!/usr/bin/env python3
"""A picture of one seclink session: a self-contained HTML page (no external assets, works
offline) drawn from a real session of the real programs.

    python3 tools/trace_html.py -o build/session.html                 # a clean session
    python3 tools/trace_html.py --replay 2 -o build/session.html      # the relay replays frame 2
    python3 tools/trace_html.py --flip 1 hello "pay 100 to bob"       # ... or flips a bit in frame 1

It starts a server with --trace on a free port of 127.0.0.1, puts a capturing relay
(tools/wiretap.py) in front of it, and runs a client with --trace through the relay. The page is
a sequence diagram: every frame on the wire in order, with its length, counter, ciphertext, tag
and (from the sender's --trace) plaintext; the handshake frames explained; a frame the relay
replayed or tampered with marked where the server refused it, with the server's [WARN] line.
Frame numbers: in each direction frame 0 is the handshake frame, so 1 is the first message.
"""

from __future__ import annotations

import argparse
import html
import re
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

if __package__ in (None, ""):  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools import programs  # noqa: E402
from tools.wiretap import Frame, Wiretap  # noqa: E402

HEADER = re.compile(r"^\[TRACE\] \S+ (->|<-) (?:sent|received) (handshake frame 1|handshake frame 2|transport frame), "
                    r"(\d+) bytes on the wire$")
ROW = re.compile(r"^ {8}(\S+) +(\S(?:.*?\S)?)(?: {2,}(\S.*))?$")

EXPLAIN = {
    "handshake frame 1": "Noise NNpsk0, message 1 (-> psk, e). The client's fresh X25519 public key, "
                         "and a 16-byte tag over an empty payload under a key mixed from the PSK: only a "
                         "holder of the PSK can make it, so the server knows who is asking.",
    "handshake frame 2": "Noise NNpsk0, message 2 (<- e, ee). The server's fresh X25519 public key; its tag "
                         "proves the PSK and the shared X25519 secret. Both sides now split the chaining key "
                         "into two AES-256-GCM keys, one per direction, and erase the ephemeral keys.",
    "transport frame": "AES-256-GCM under this direction's key. The IV is the frame counter (0, 1, 2, ...): "
                       "the receiver accepts only the next one. The tag covers IV and ciphertext. The "
                       "client's first one is an empty PING: a replayed frame 1 gets an answer too, so only "
                       "this frame proves to the server that the client holds the key (PROTOCOL.md 4.1).",
}


@dataclass
class Traced:
    """One frame as a program's --trace printed it."""

    kind: str
    wire_len: int
    fields: List[Tuple[str, str, str]]  # (label, value, note)

    def field(self, label: str) -> str:
        return next((value for name, value, _ in self.fields if name == label), "")


def parse_trace(lines: List[str]) -> Dict[str, List[Traced]]:
    """A program's --trace blocks, by direction of the frame as the program saw it: "->" sent, "<-" received."""
    found: Dict[str, List[Traced]] = {"->": [], "<-": []}
    current: Optional[Traced] = None
    for line in lines:
        header = HEADER.match(line)
        if header:
            current = Traced(header.group(2), int(header.group(3)), [])
            found[header.group(1)].append(current)
            continue
        row = ROW.match(line) if current is not None else None
        if row:
            current.fields.append((row.group(1), row.group(2), row.group(3) or ""))
        else:
            current = None
    return found


@dataclass
class Row:
    """One frame in the diagram, in wire order."""

    number: int
    direction: str  # "up": client to server; "down": server to client
    index: int  # the frame's number in its direction (0: handshake)
    kind: str
    data: bytes  # the frame as the receiver got it, length prefix included
    fields: List[Tuple[str, str, str]] = field(default_factory=list)
    plain: str = ""  # "DATA hello", from the sender's --trace
    status: str = "delivered"  # delivered | refused | unprocessed
    replayed: bool = False
    tampered: bool = False
    note: str = ""

    @property
    def refused(self) -> bool:
        return self.status == "refused"

    @property
    def counter(self) -> Optional[int]:
        return int.from_bytes(self.data[4 + 4:4 + 12], "big") if self.kind == "transport frame" else None

    def label(self) -> str:
        who = "client -> server" if self.direction == "up" else "server -> client"
        what = self.kind if self.counter is None else f"transport, counter {self.counter}"
        return f"{who}: {what}"

    def summary(self) -> str:
        marks = " REPLAYED" * self.replayed + " TAMPERED" * self.tampered
        return (f"#{self.number} {self.label()}, {len(self.data)} bytes{marks}"
                + (f": {self.plain}" if self.plain else "") + f" [{self.status}]")


@dataclass
class Session:
    server: str
    client: str
    commands: List[str]
    rows: List[Row]
    warn: str  # the server's [WARN] line, if it refused something
    client_exit: int
    html_bytes: bytes = b""


def wire_fields(data: bytes, kind: str) -> List[Tuple[str, str, str]]:
    """The fields of a frame from its bytes alone (what the eavesdropper sees)."""
    body = data[4:]
    rows = [("length", data[:4].hex(), f"{len(body)} bytes follow (big-endian)")]
    if kind == "handshake frame 1":
        rows += [("magic", body[:5].hex(), '"SLNK", protocol version 1'),
                 ("e.pub", body[5:37].hex(), "client's ephemeral X25519 public key"),
                 ("tag", body[37:].hex(), "encrypted empty payload: proves the PSK")]
    elif kind == "handshake frame 2":
        rows += [("e.pub", body[:32].hex(), "server's ephemeral X25519 public key"),
                 ("tag", body[32:].hex(), "encrypted empty payload: proves the PSK + DH")]
    elif len(body) >= 29:
        counter = int.from_bytes(body[4:12], "big")
        rows += [("iv", body[:12].hex(), f"counter {counter}"),
                 ("cipher", body[12:-16].hex(), f"AES-256-GCM ciphertext, {len(body) - 28} bytes"),
                 ("tag", body[-16:].hex(), "GCM tag: integrity of iv + ciphertext")]
    return rows


def build_rows(frames: List[Frame], client_trace: Dict[str, List[Traced]], server_trace: Dict[str, List[Traced]],
               warn: str) -> List[Row]:
    rows: List[Row] = []
    for frame in frames:
        kind = ("handshake frame 1" if frame.direction == "up" else "handshake frame 2") if frame.index == 0 \
            else "transport frame"
        copies = [frame.sent]
        if frame.sent != frame.data and frame.sent == frame.data * 2:
            copies = [frame.data, frame.data]
        for copy_number, data in enumerate(copies):
            row = Row(len(rows) + 1, frame.direction, frame.index, kind, data, wire_fields(data, kind))
            row.replayed = copy_number == 1
            row.tampered = data != frame.data and not row.replayed
            sender = client_trace if frame.direction == "up" else server_trace
            sent = sender["->"]
            if frame.index < len(sent):
                row.plain = sent[frame.index].field("plain")
                note = next((n for name, _, n in sent[frame.index].fields if name == "plain"), "")
                row.plain = note or row.plain
            rows.append(row)
    # Which frames the server accepted: its --trace shows each, in order; the first one that is
    # not next there is the one it refused ([WARN]); nothing after that was processed.
    accepted = server_trace["<-"]
    taken, closed = 0, False
    for row in (r for r in rows if r.direction == "up"):
        if closed:
            row.status, row.note = "unprocessed", "not processed: the server had closed the session"
            continue
        if taken < len(accepted) and matches(accepted[taken], row.data):
            taken += 1
            continue
        if warn:
            row.status, row.note, closed = "refused", warn, True
        else:
            row.status, row.note = "unprocessed", "the server's trace does not show it"
    return rows


def matches(traced: Traced, data: bytes) -> bool:
    """Whether a frame printed by --trace is these bytes (long ciphertexts are shortened there)."""
    fields = wire_fields(data, traced.kind)
    if traced.wire_len != len(data):
        return False
    for label, value, _ in fields:
        shown = traced.field(label).replace("...", "")
        if label != "length" and shown and not value.startswith(shown):
            return False
    return True


def record(server: str = "Python", client: str = "C++", messages: Optional[List[str]] = None,
           meddle: Optional[str] = None, index: int = 2, work: str = "build/trace") -> Session:
    """Run one session through a capturing relay, both programs with --trace, and describe it."""
    messages = messages or ["hello", "pay 100 to bob"]
    shutil.rmtree(programs.ROOT / work, ignore_errors=True)
    config = f"{work}/config"
    (programs.ROOT / config).mkdir(parents=True)
    psk = f"{work}/psk"
    programs.keygen(psk, config)

    def act(frame: Frame) -> bytes:
        if meddle is None or frame.direction != "up" or frame.index != index:
            return frame.data
        if meddle == "replay":
            return frame.data * 2
        data = bytearray(frame.data)
        data[-1] ^= 0x01  # the last tag bit (handshake and transport frames alike)
        return bytes(data)

    srv = programs.SeclinkServer(server, f"{server} server",
                                 ["--trace", "--psk-file", psk, "--log-file", f"{work}/server.log"], config)
    try:
        tap = Wiretap(srv.port, meddle=act)
        client_args = [programs.HOST, str(tap.port)] + messages + ["--trace"]
        client_flags = ["--psk-file", psk, "--log-file", f"{work}/client.log"]
        result = programs.run_client(client, client_args, client_flags, config)
        tap.close()
        server_lines = srv.expect(r"disconnected")
    finally:
        srv.close()
    warn = next((line for line in server_lines if line.startswith("[WARN]")), "")
    rows = build_rows(tap.frames, parse_trace(result.stdout.splitlines()), parse_trace(server_lines), warn)
    show = lambda argv: shlex.join(("python3" if w == sys.executable else w) for w in argv)  # noqa: E731
    commands = [show(srv.argv + ["--trace"]),
                f"relay on 127.0.0.1:{tap.port}" + (f" ({meddle} up frame {index})" if meddle else ""),
                show(programs.CLIENTS[client] + client_args)]
    return Session(server, client, commands, rows, warn, result.returncode)


# ---------------------------------------------------------------------------------------------
# The page

CSS = """
:root { --up: #1f5fbf; --down: #177245; --bad: #c0161d; --warn: #b35c00; --ink: #1b1b1b; }
* { box-sizing: border-box; }
body { font: 20px/1.45 "DejaVu Sans", "Liberation Sans", Arial, sans-serif; color: var(--ink);
       margin: 0 auto; max-width: 1400px; padding: 24px 32px 64px; background: #fff; }
h1 { font-size: 34px; margin: 0 0 6px; }
p.lead { font-size: 22px; margin: 0 0 12px; }
code, .mono { font-family: "DejaVu Sans Mono", "Liberation Mono", monospace; }
.commands { background: #f3f3f3; padding: 10px 14px; border-radius: 6px; font-size: 16px; margin: 0 0 14px; }
.legend { display: flex; gap: 22px; flex-wrap: wrap; font-size: 18px; margin: 0 0 18px; }
.legend span::before { content: ""; display: inline-block; width: 16px; height: 16px; margin-right: 6px;
       vertical-align: -2px; border-radius: 3px; background: var(--c); }
.lanes { display: grid; grid-template-columns: 170px 1fr 170px; position: relative; }
.lane-head { font-weight: bold; font-size: 24px; text-align: center; padding: 8px; border-bottom: 3px solid #444;
       position: sticky; top: 0; background: #fff; z-index: 2; }
.frame { grid-column: 1 / 4; display: grid; grid-template-columns: 170px 1fr 170px; position: relative; }
.frame::before, .frame::after { content: ""; position: absolute; top: 0; bottom: 0; width: 4px; background: #444; }
.frame::before { left: 83px; } .frame::after { right: 83px; }
.card { grid-column: 1 / 4; margin: 14px 100px; border: 3px solid var(--c); border-radius: 10px; padding: 10px 14px 12px;
       background: #fff; position: relative; z-index: 1; }
.frame.up { --c: var(--up); } .frame.down { --c: var(--down); }
.frame.refused, .frame.unprocessed { --c: var(--bad); }
.arrow { font-size: 22px; font-weight: bold; color: var(--c); display: flex; align-items: center; gap: 10px; }
.frame.down .arrow { flex-direction: row-reverse; }
.arrow .line { flex: 1; height: 4px; background: var(--c); position: relative; }
.frame.up .arrow .line::after, .frame.down .arrow .line::after { content: ""; position: absolute; top: -9px;
       border: 11px solid transparent; }
.frame.up .arrow .line::after { right: -4px; border-left: 16px solid var(--c); border-right: 0; }
.frame.down .arrow .line::after { left: -4px; border-right: 16px solid var(--c); border-left: 0; }
.badge { font-size: 16px; font-weight: bold; color: #fff; background: var(--c); border-radius: 4px; padding: 1px 8px; }
.badge.replayed, .badge.tampered { background: var(--warn); }
.explain { font-size: 18px; margin: 6px 0; color: #333; }
table.fields { border-collapse: collapse; width: 100%; font-size: 18px; }
table.fields td { padding: 2px 10px 2px 0; vertical-align: top; }
table.fields td.name { font-weight: bold; width: 80px; }
table.fields td.value { font-family: "DejaVu Sans Mono", "Liberation Mono", monospace; word-break: break-all; }
table.fields td.note { color: #555; width: 38%; }
tr.plain td { background: #fff7d6; }
.verdict { margin-top: 8px; font-size: 19px; font-weight: bold; color: var(--c); }
.frame.refused .verdict { background: #fde8e8; padding: 6px 10px; border-radius: 6px; }
.x { position: absolute; right: 62px; top: 50%; transform: translateY(-50%); font-size: 56px; color: var(--bad);
     font-weight: bold; z-index: 3; }
"""


def render(session: Session) -> str:
    """The page, as one string of HTML with its CSS inline."""
    esc = html.escape
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>seclink: one session, frame by frame</title>", f"<style>{CSS}</style></head><body>",
        "<h1>seclink/1: one session, frame by frame</h1>",
        f'<p class="lead">The {esc(session.client)} client talks to the {esc(session.server)} server through a '
        "relay that records every byte. Each box is one frame exactly as it crossed the wire; the yellow line "
        "is what only the two ends can read.</p>",
        '<div class="commands mono">' + "<br>".join("$ " + esc(c) for c in session.commands) + "</div>",
        '<div class="legend"><span style="--c: var(--up)">client to server</span>'
        '<span style="--c: var(--down)">server to client</span>'
        '<span style="--c: var(--warn)">replayed or tampered by the relay</span>'
        '<span style="--c: var(--bad)">refused by the server</span></div>',
        '<div class="lanes" id="diagram">',
        '<div class="lane-head">Client</div><div class="lane-head">the wire</div><div class="lane-head">Server</div>',
    ]
    explained = set()
    for row in session.rows:
        classes = f"frame {row.direction} {row.status}" + " replayed" * row.replayed + " tampered" * row.tampered
        kind_word = row.kind if row.counter is None else f"transport frame, counter {row.counter}"
        badges = "".join(f' <span class="badge {b}">{b.upper()}</span>'
                         for b, on in (("replayed", row.replayed), ("tampered", row.tampered)) if on)
        parts.append(f'<div class="{classes}" data-number="{row.number}" data-direction="{row.direction}" '
                     f'data-kind="{esc(row.kind)}" data-status="{row.status}" '
                     f'data-counter="{"" if row.counter is None else row.counter}">')
        parts.append('<div class="card">')
        parts.append(f'<div class="arrow"><span class="label">#{row.number} {esc(kind_word)}, '
                     f'{len(row.data)} bytes{badges}</span><span class="line"></span></div>')
        if row.kind not in explained:  # once per kind: the diagram stays short enough to read
            explained.add(row.kind)
            parts.append(f'<div class="explain">{esc(EXPLAIN[row.kind])}</div>')
        parts.append('<table class="fields">')
        for name, value, note in row.fields:
            parts.append(f'<tr class="{esc(name)}"><td class="name">{esc(name)}</td>'
                         f'<td class="value">{esc(value)}</td><td class="note">{esc(note)}</td></tr>')
        if row.plain:
            parts.append(f'<tr class="plain"><td class="name">plain</td><td class="value">{esc(row.plain)}</td>'
                         "<td class=\"note\">from the sender's --trace: never on the wire</td></tr>")
        parts.append("</table>")
        verdict = {"delivered": "delivered" if row.direction == "up" else "",
                   "refused": "REFUSED by the server: " + row.note,
                   "unprocessed": row.note}[row.status]
        if row.direction == "up" and verdict:
            parts.append(f'<div class="verdict">{esc(verdict)}</div>')
        parts.append("</div>")
        if row.refused:
            parts.append('<div class="x" title="refused here">&#x2717;</div>')
        parts.append("</div>")
    parts.append("</div>")
    parts.append(f'<p class="lead">Client exit status: {session.client_exit}. '
                 + (f"Server: <code>{esc(session.warn)}</code>" if session.warn else "No frame was refused.")
                 + "</p></body></html>")
    page = "\n".join(parts) + "\n"
    session.html_bytes = page.encode()
    return page


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="tools/trace_html.py", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("messages", nargs="*", help="messages the client sends (default: hello, 'pay 100 to bob')")
    parser.add_argument("-o", "--output", default="build/session.html", help="the page (default build/session.html)")
    parser.add_argument("--server", choices=sorted(programs.SERVERS), default="Python")
    parser.add_argument("--client", choices=sorted(programs.CLIENTS), default="C++")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--replay", type=int, metavar="N", help="the relay sends client frame N twice")
    what.add_argument("--flip", type=int, metavar="N", help="the relay flips the last tag bit of client frame N")
    args = parser.parse_args(argv)
    programs.require_built()
    meddle, index = ("replay", args.replay) if args.replay is not None else \
        ("flip", args.flip) if args.flip is not None else (None, 0)
    try:
        session = record(args.server, args.client, args.messages or None, meddle, index)
    except programs.Misbehaved as e:
        print(f"trace_html: {e}", file=sys.stderr)
        return 1
    finally:
        programs.stop_all()
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(session), encoding="utf-8")
    for row in session.rows:
        print(row.summary())
    print(f"wrote {out} ({len(session.html_bytes)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
