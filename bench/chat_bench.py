#!/usr/bin/env python3
"""Chat fan-out (issue 12): one speaker, --members listeners in one room, driven by
bench/chat_fanout (build-bench/bench/chat_fanout), against

  (a) ./server --chat                                (seclink/1, one server)
  (b) ncat -l --chat                                 (plain text, no encryption; the same driver)
  (c) two ./server --chat --cluster linked by nats-server, the listeners split between them

    python3 bench/chat_bench.py --server build-bench/cpp_apps/server --fanout build-bench/bench/chat_fanout
        [--members 1000] [--lines 300]

Prints one line per run (deliveries a second, latency p50/p99 from send to delivery, server CPU
per delivery: all threads of the server process(es), and of nats-server in (c)). A run that
cannot be made (ncat or nats-server missing, ncat failing at that size) says so and the others
go on. Every process started here is stopped before it returns.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tools.procs import Proc  # noqa: E402

WAIT = 20.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def started(argv: list[str], pattern: str, procs: list[subprocess.Popen], stderr: bool = False) -> tuple[subprocess.Popen, re.Match]:
    """Starts argv and waits (bounded) for a line matching pattern on stdout (or stderr); its output
    goes on being read (tools/procs.py), so a chatty program never blocks on a full pipe."""
    p = Proc(argv, cwd=ROOT, env=dict(os.environ))
    procs.append(p.proc)
    return p.proc, (p.err if stderr else p.out).wait_for(pattern)


def listening(port: int) -> bool:
    """A socket of this machine listens on 127.0.0.1:port (state 0A in /proc/net/tcp)."""
    want = f"0100007F:{port:04X}"
    return any(f.split()[1] == want and f.split()[3] == "0A" for f in Path("/proc/net/tcp").read_text().splitlines()[1:])


def fanout(args, port: int, proto: str, pids: list[int], port2: int = 0, members: int | None = None) -> dict:
    argv = [args.fanout, "--port", str(port), "--members", str(members or args.members), "--lines", str(args.lines),
            "--proto", proto, "--psk-file", args.psk]
    for pid in pids:
        argv += ["--server-pid", str(pid)]
    if port2:
        argv += ["--port2", str(port2)]
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=180)
    except subprocess.TimeoutExpired:
        return {"error": "no result within 180 s"}
    results = [line for line in r.stdout.splitlines() if line.startswith("RESULT ")]
    if r.returncode != 0 or not results:
        return {"error": (r.stderr.strip().splitlines() or [f"exit {r.returncode}"])[-1]}
    return json.loads(results[-1][len("RESULT "):])


def show(label: str, res: dict) -> None:
    if "error" in res:
        print(f"{label:<34} not measured: {res['error']}")
    else:
        print(f"{label:<34} {res['deliveries_per_s']:>9,.0f} deliveries/s   p50 {res['p50_us'] / 1000:7.1f} ms   "
              f"p99 {res['p99_us'] / 1000:7.1f} ms   {res['server_cpu_us_per_delivery']:.2f} us CPU/delivery")


def ours(args, extra: list[str], procs) -> tuple[subprocess.Popen, int]:
    p, m = started([args.server, "--host", "127.0.0.1", "--port", "0", "--psk-file", args.psk, "--log-file", "-",
                    "--quiet", "--chat", "--chat-members", str(args.members + 10), "--chat-rate", "1000000", *extra],
                   r"Listening on [\d.]+:(\d+)", procs)
    return p, int(m.group(1))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", default=str(ROOT / "build-bench/cpp_apps/server"))
    ap.add_argument("--fanout", default=str(ROOT / "build-bench/bench/chat_fanout"))
    ap.add_argument("--members", type=int, default=1000)
    ap.add_argument("--lines", type=int, default=300)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        args.psk = str(Path(tmp) / "psk")
        subprocess.run([args.server, "--keygen", "--psk-file", args.psk], check=True, capture_output=True)
        print(f"chat fan-out: 1 speaker, {args.members} listeners in one room, {args.lines} lines, at most 8 in flight")
        procs: list[subprocess.Popen] = []
        try:
            srv, port = ours(args, [], procs)
            show("(a) ./server --chat", fanout(args, port, "seclink", [srv.pid]))
            srv.terminate()

            ncat = shutil.which("ncat")
            if ncat is None:
                show("(b) ncat --chat", {"error": "ncat missing (tools/install-deps.sh installs it)"})
            else:
                for n in sorted({args.members, min(args.members, 500)}, reverse=True):
                    nport = free_port()
                    p = subprocess.Popen([ncat, "-l", "127.0.0.1", str(nport), "--chat", "--max-conns", str(n + 10)],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                    procs.append(p)
                    for _ in range(200):  # until it listens (a probe connection would make ncat quit)
                        if listening(nport) or p.poll() is not None:
                            break
                        try:
                            p.wait(0.05)
                        except subprocess.TimeoutExpired:
                            pass
                    res = fanout(args, nport, "lines", [p.pid], members=n)
                    if "error" in res and p.poll() is not None:
                        res = {"error": f"ncat ended: {p.stderr.read().strip()[:100]}"}
                    show(f"(b) ncat --chat, {n} listeners", res)
                    p.kill()

            nats = shutil.which("nats-server") or "/usr/sbin/nats-server"
            if not Path(nats).exists():
                show("(c) 2 servers + NATS", {"error": "nats-server missing (tools/install-deps.sh installs it)"})
            else:
                bus, m = started([nats, "-a", "127.0.0.1", "-p", "-1"], r"client connections on [\d.]+:(\d+)", procs,
                                 stderr=True)
                url = f"nats://127.0.0.1:{m.group(1)}"
                a, pa = ours(args, ["--cluster", url], procs)
                b, pb = ours(args, ["--cluster", url], procs)
                show("(c) 2 x ./server --chat + NATS", fanout(args, pa, "seclink", [a.pid, b.pid, bus.pid], port2=pb))
        finally:
            for p in procs:
                if p.poll() is None:
                    p.terminate()
                try:
                    p.wait(WAIT)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
