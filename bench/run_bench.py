#!/usr/bin/env python3
"""Runs bench/loadgen against our server and the three baselines and prints one table.

    python3 bench/run_bench.py --build-dir build-bench --server ./server [--seconds 5]

Columns: our server (plain seclink/1, and inside TLS 1.3 with --tls), (a) the C++ epoll echo
server (plain TCP, no crypto), (b) the thread-per-client Python AES-CBC + HMAC server (the
design seclink replaces) and (c) a Python asyncio TLS 1.3 echo server; then ours beside (z),
ZeroMQ with CURVE security (bench/baselines/zmq_curve.cpp, its own closed-loop client), the
library users would pick instead, at 1, 16 and 128 connections. Each measurement gets a
fresh server on 127.0.0.1, port 0: the port is read from its "[INFO] Listening on HOST:PORT"
line, the loadgen runs, the server is stopped with SIGTERM. If --server does not exist yet, its
columns read n/a. Then the project's targets are checked for our server as ratios.

Every step is bounded in time; the whole run takes about 30 x (--warmup + --seconds) plus
session setup: 3 to 4 minutes with the defaults on a 2-core machine, plus (--repeat N - 1)
rounds of the figures --repeat-only chooses. See bench/README.md.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import ipaddress
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from tools import procs  # noqa: E402  (the one "start it, wait until it listens" module)
MIB = 1024 * 1024
PY_SERVER = HERE.parent / "python" / "server.py"
PY_ROWS = ("rr16", "rr128")  # what the Python servers are measured on
PY_COLS = ("py", "py_handler", "py_aio")
ZMQ_ROWS = ("rr1", "rr16", "rr128", "mib1", "mib16", "mib128")  # ours beside ZeroMQ CURVE
LAT_ROWS = ("rr16", "rr128")  # ours with its default worker count, for tail latency
OTHER_CPU_WARN = 20.0  # % of one core used by other processes during a window: flag the figure


# ---- fixtures: key and certificate ----------------------------------------------------------

def write_psk(path: Path) -> None:
    """A key file as docs/PROTOCOL.md section 6 describes: base64 of 32 random bytes, mode 0600."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(base64.b64encode(os.urandom(32)).decode() + "\n")


def write_self_signed(cert_path: Path, key_path: Path) -> None:
    """EC P-256 self-signed certificate for localhost and 127.0.0.1 (it is also the CA file)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


# ---- running one server ---------------------------------------------------------------------

class Server(procs.Server):
    """A server process started on port 0 (tools/procs.py: the port from its Listening line, its
    output read as it comes, so a chatty server never blocks on a full pipe)."""

    def __init__(self, cmd: list[str], start_timeout: float = 20.0) -> None:
        super().__init__(cmd, cwd=HERE.parent, env=dict(os.environ), timeout=start_timeout, merge_stderr=True,
                         start_new_session=True)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self) -> str:
        return "\n".join(self.out.lines[-20:])[-1500:].strip() or "(no output)"

    def stop(self, timeout: float = 15.0) -> str | None:
        """SIGTERM and wait; returns a complaint if it did not stop cleanly."""
        try:
            super().stop(signal.SIGTERM, timeout)
            return None
        except procs.Misbehaved:
            self.kill()
            return f"did not stop within {timeout:.0f} s of SIGTERM (killed)"


# ---- the matrix -----------------------------------------------------------------------------

@dataclass
class Column:
    key: str
    title: str
    proto: str                  # loadgen --proto
    echo_server: bool           # always replies with the echo (raw framing)
    cmd: list[str] | None       # None: not available (n/a)
    echo_flag: list[str] = field(default_factory=list)  # how to make it echo, if it can
    max_idle: int = 10000
    rows: tuple[str, ...] | None = None  # the only rows it runs (None: all)
    load: list[str] | None = None  # its own load program (None: loadgen)


@dataclass
class Row:
    key: str
    title: str
    mode: str
    args: list[str]
    echo: bool  # ask every server for the echo (the 64-byte rows: like for like with (a))
    cols: tuple[str, ...] | None = None  # the only columns that run it (None: all)


def build_columns(args: argparse.Namespace, psk: Path, cert: Path, key: Path, build: Path,
                  server: Path | None) -> list[Column]:
    py = sys.executable
    # Every load comes from 127.0.0.1: the per-address admission limits, meant for real networks,
    # are lifted so that they do not throttle the load generator (docs/DESIGN.md 5.5).
    plain = ["--host", "127.0.0.1", "--port", "0", "--psk-file", str(psk), "--log-file", "-", "--quiet",
             "--max-clients", str(args.idle_conns + 64), "--max-handshakes", "4096",
             "--max-handshakes-per-address", "4096", "--handshake-rate", "1000000"]
    ours_common = plain + ["--threads", str(args.server_threads)]
    ours = [str(server)] + ours_common if server else None
    ours_tls = ours + ["--tls", "--tls-cert", str(cert), "--tls-key", str(key)] if ours else None
    zmq, zmq_key = build / "bench" / "zmq_curve", psk.parent / "zmq-server.key"
    return [
        Column("ours", "ours", "seclink", False, ours, ["--echo"], args.idle_conns),
        Column("ours_tls", "ours --tls", "seclink-tls", False, ours_tls, ["--echo"], args.idle_conns),
        Column("a", "(a) epoll", "raw", True,
               [str(build / "bench" / "epoll_echo"), "--host", "127.0.0.1", "--port", "0",
                "--threads", str(args.server_threads)], [], args.baseline_idle_conns),
        Column("b", "(b) CBC thr", "cbc", False,
               [py, str(HERE / "baselines" / "cbc_threaded_server.py"), "--host", "127.0.0.1", "--port", "0",
                "--psk-file", str(psk)], ["--echo"], args.baseline_idle_conns),
        Column("c", "(c) asyncio", "tls-raw", True,
               [py, str(HERE / "baselines" / "asyncio_tls_echo.py"), "--host", "127.0.0.1", "--port", "0",
                "--cert", str(cert), "--key", str(key)], [], args.baseline_idle_conns),
        # Our Python servers (python/server.py; the native server under Python; a Python handler; asyncio).
        Column("py", "server.py", "seclink", False, [py, str(PY_SERVER)] + ours_common, ["--echo"], rows=PY_ROWS),
        Column("py_handler", "py handler", "seclink", True,
               [py, str(HERE / "py_handler_server.py"), "--host", "127.0.0.1", "--port", "0", "--psk-file", str(psk),
                "--threads", str(args.server_threads)], [], rows=PY_ROWS),
        Column("py_aio", "py --asyncio", "seclink", False,
               [py, str(PY_SERVER), "--asyncio"] + plain, ["--echo"], args.idle_conns, rows=(*PY_ROWS, "idle")),
        # Ours with one worker per core (the default is one less), beside --threads 1: tail latency.
        Column("ours_cores", f"ours {os.cpu_count()} thr", "seclink", False,
               [str(server)] + plain + ["--threads", str(os.cpu_count() or 1)] if server else None, ["--echo"],
               rows=LAT_ROWS),
        # ZeroMQ with CURVE: server and client are one program, the server's key goes through a file.
        Column("z", "(z) 0MQ", "zmq", False,
               [str(zmq), "server", "--port", "0", "--key-file", str(zmq_key), "--threads", str(args.server_threads)]
               if zmq.exists() else None, ["--echo"], rows=ZMQ_ROWS,
               load=[str(zmq), "client", "--key-file", str(zmq_key)]),
    ]


def build_rows(args: argparse.Namespace) -> list[Row]:
    t = ["--seconds", str(args.seconds), "--warmup", str(args.warmup)]
    return [
        Row("rr1", "64 B round trips, 1 conn", "rr", ["--conns", "1", "--size", "64"] + t, True, ("ours", "z")),
        Row("rr16", "64 B round trips, 16 conns", "rr", ["--conns", "16", "--size", "64"] + t, True),
        Row("rr128", "64 B round trips, 128 conns", "rr", ["--conns", "128", "--size", "64"] + t, True),
        Row("mib1", "1 MiB in, ACK back, 1 conn", "rr", ["--conns", "1", "--size", str(MIB)] + t, False),
        Row("mib16", "1 MiB in, ACK back, 16 conns", "rr", ["--conns", "16", "--size", str(MIB)] + t, False),
        Row("mib128", "1 MiB in, ACK back, 128 conns", "rr", ["--conns", "128", "--size", str(MIB)] + t, False,
            ("ours", "z")),
        Row("idle", "idle sessions", "idle", ["--hold", "1"], False),
        Row("sess", "new sessions, 16 in parallel", "sessions", ["--parallel", "16", "--size", "64"] + t, False),
    ]


def run_one(args: argparse.Namespace, loadgen: Path, col: Column, row: Row, psk: Path, cert: Path,
            tmp: Path) -> dict:
    """Starts the column's server, runs the row's load against it, stops it. Returns the RESULT
    dict, or {"error": ...}."""
    cmd = list(col.cmd) + (col.echo_flag if row.echo else [])
    expect = "echo" if (row.echo or col.echo_server) else "ack"
    try:
        server = Server(cmd)
    except procs.Misbehaved as error:
        return {"error": f"server did not start: {error}"}
    conns: list[str] = []
    if row.mode == "idle":
        conns = ["--conns", str(col.max_idle)]
    if col.load is not None:  # a program of its own (rr rows only): same flags as loadgen's for those
        lg = col.load + ["--port", str(server.port), "--server-pid", str(server.proc.pid), "--timeout",
                         str(args.timeout), "--expect", expect] + row.args
    else:
        lg = [str(loadgen), "--host", "127.0.0.1", "--port", str(server.port), "--proto", col.proto, "--mode",
              row.mode, "--threads", str(args.loadgen_threads), "--server-pid", str(server.proc.pid),
              "--timeout", str(args.timeout)] + row.args + conns
    if col.proto in ("seclink", "seclink-tls", "cbc"):
        lg += ["--psk-file", str(psk), "--expect", expect]
    if col.proto in ("seclink-tls", "tls-raw"):
        lg += ["--tls-ca", str(cert)]
    if col.proto == "cbc" and args.cbc_reseal:
        lg += ["--cbc-reseal"]
    budget = args.warmup + args.seconds + 2 * args.timeout + 30  # loadgen bounds itself well inside this
    try:
        done = subprocess.run(lg, capture_output=True, text=True, timeout=budget)
    except subprocess.TimeoutExpired:
        server.stop()
        return {"error": f"loadgen did not finish within {budget:.0f} s"}
    result: dict = {}
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT "):])
    crashed = not server.alive()
    server_log = server.log_tail() if crashed or done.returncode != 0 else ""
    problem = server.stop()
    if done.returncode != 0 or not result:
        err = done.stderr.strip().splitlines()
        msg = err[-1] if err else f"loadgen exited with status {done.returncode}"
        if crashed:
            msg += f" [server exited with status {server.proc.returncode}: {server_log}]"
        return {"error": msg, "cmd": " ".join(lg)}
    if crashed:
        return {"error": f"server exited with status {server.proc.returncode} during the run: {server_log}"}
    if problem:
        result["warning"] = problem
    return result


# ---- repeated windows -----------------------------------------------------------------------

def rounds(figures: list[tuple[Row, Column]], reverse: bool) -> list[tuple[Row, Column]]:
    """One more round of `figures` (row by row); with `reverse`, each row's columns in the other
    order, so that a ratio's two figures take turns at coming first."""
    out: list[tuple[Row, Column]] = []
    for row in dict.fromkeys(r.key for r, _ in figures):
        group = [(r, c) for r, c in figures if r.key == row]
        out += group[::-1] if reverse else group
    return out


def median(values: list[float]) -> float:
    v = sorted(values)
    return v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2


def median_result(results: list[dict]) -> dict:
    """One figure measured in several rounds: the median of every number its good rounds have
    (the error of the first round if none was good)."""
    good = [r for r in results if "error" not in r]
    if not good:
        return results[0]
    if len(good) == 1:
        return good[0]
    out = dict(good[0])
    for key, value in good[0].items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            values = [r[key] for r in good if isinstance(r.get(key), (int, float))]
            out[key] = median(values)
    out["rounds"] = len(good)
    return out


# ---- report ---------------------------------------------------------------------------------

def fmt(value: float | None, kind: str) -> str:
    if value is None:
        return "n/a"
    if kind == "rate":
        return f"{value:,.0f}"
    if kind == "us":
        return f"{value:,.1f}"
    if kind == "gbs":
        return f"{value:.2f}"
    if kind == "kib":
        return f"{value:.2f}"
    return str(value)


# The ZeroMQ comparison shows latency and MB/s too.
ZMQ_SPEC = {
    **{k: [("msgs/s", "msgs_per_s", "rate"), ("p50 us", "lat_p50_us", "us"), ("p99 us", "lat_p99_us", "us"),
           ("server CPU us/msg", "server_cpu_us_per_msg", "us")] for k in ("rr1", "rr16", "rr128")},
    **{k: [("MB/s", "mb_per_s", "rate"), ("p50 us", "lat_p50_us", "us"), ("p99 us", "lat_p99_us", "us"),
           ("server CPU us/MiB", "server_cpu_us_per_msg", "us")] for k in ("mib1", "mib16", "mib128")},
}


LAT_SPEC = {k: [("msgs/s", "msgs_per_s", "rate"), ("p50 us", "lat_p50_us", "us"), ("p99 us", "lat_p99_us", "us")]
            for k in LAT_ROWS}


def zmq_ratios(results: dict, rows: list[Row]) -> list[str]:
    """Ours over (z), row by row: throughput (higher is better) and server CPU (lower is better)."""
    out = []
    for row in rows:
        ours, z = results.get(row.key, {}).get("ours"), results.get(row.key, {}).get("z")
        if not ours or not z or "error" in ours or "error" in z:
            continue
        rate = "mb_per_s" if row.key.startswith("mib") else "msgs_per_s"
        cpu_o, cpu_z = ours.get("server_cpu_us_per_msg"), z.get("server_cpu_us_per_msg")
        cpu = f", server CPU {cpu_o / cpu_z:.2f}x (ours / z)" if cpu_o and cpu_z else ""
        out.append(f"  {row.title:<34} ours {ours[rate] / z[rate]:.2f}x the throughput of (z){cpu}")
    return out


def table(results: dict, columns: list[Column], rows: list[Row], spec: dict | None = None) -> list[str]:
    def cell(col: Column, row: Row, metric: str, kind: str, note_echo: bool = False) -> str:
        r = results.get(row.key, {}).get(col.key)
        if col.cmd is None:
            return "n/a"
        if r is None:
            return "-"
        if "error" in r:
            return "FAIL"
        text = fmt(r.get(metric), kind)
        if (r.get("other_cpu_pct") or 0) >= OTHER_CPU_WARN:
            text = "!" + text
        if note_echo and col.echo_server:
            text += " e"
        if row.mode == "idle" and r.get("conns") not in (None, col.max_idle):
            text += f" ({r['conns']})"
        return text

    lines = []
    w0, w = 51, 13
    lines.append("".ljust(w0) + "".join(c.title.rjust(w) for c in columns))
    spec = spec or {
        "rr1": [("msgs/s", "msgs_per_s", "rate"), ("server CPU us/msg", "server_cpu_us_per_msg", "us")],
        "rr16": [("msgs/s", "msgs_per_s", "rate"), ("server CPU us/msg", "server_cpu_us_per_msg", "us")],
        "rr128": [("msgs/s", "msgs_per_s", "rate"), ("server CPU us/msg", "server_cpu_us_per_msg", "us")],
        "mib1": [("GB/s", "gb_per_s", "gbs")],
        "mib16": [("GB/s", "gb_per_s", "gbs")],
        "mib128": [("GB/s", "gb_per_s", "gbs")],
        "idle": [("server RSS KiB/session", "rss_per_session_kib", "kib")],
        "sess": [("sessions/s", "sessions_per_s", "rate"), ("server CPU us/session", "server_cpu_us_per_session", "us")],
    }
    for row in rows:
        for i, (label, metric, kind) in enumerate(spec[row.key]):
            title = row.title if i == 0 else ""
            lines.append(f"{title:<29}{label:<22}".ljust(w0) + "".join(
                cell(c, row, metric, kind, note_echo=row.key.startswith("mib")).rjust(w) for c in columns))
    return lines


def footnotes(args: argparse.Namespace, rows: set[str], results: dict) -> list[str]:
    notes = []
    disturbed = [r for cols in results.values() for r in cols.values() if (r.get("other_cpu_pct") or 0) >= OTHER_CPU_WARN]
    if disturbed:
        notes.append(f"  !: other processes used >= {OTHER_CPU_WARN:.0f}% of a core during that window "
                     f"({len(disturbed)} figure(s)): rerun them on a quiet machine (--only ...).")
    if rows & {"rr16", "rr128"}:
        notes.append("  64 B rows: every server echoes the request (ours and (b) run with --echo).")
    if rows & {"mib1", "mib16"}:
        notes.append("  1 MiB rows: e = (a) and (c) can only echo, so they send the 1 MiB back (twice the bytes).")
        notes.append("  The loadgen encrypts every request for ours (seclink/1 has a counter); for (b) it resends "
                     "one sealed frame" + (" (no: --cbc-reseal)." if args.cbc_reseal else " per connection."))
    if "idle" in rows:
        notes.append(f"  Idle: {args.idle_conns} sessions on ours, {args.baseline_idle_conns} on the baselines, each "
                     "after one 64 B round trip; user-space RSS only (kernel socket buffers are not in it).")
    if "sess" in rows:
        notes.append("  Sessions: connect + handshake (TLS too for ours --tls and (c)) + one 64 B message + CLOSE "
                     "(ours) + close.")
    return notes


def engine_figures(build: Path) -> dict:
    """Crypto floors measured now by engine_bench (CPU time, us): `x25519_us`, a server's X25519
    work per session (one key pair generated plus one DH: BM_X25519Keygen + BM_X25519Derive), and
    `aead64_us`, a bare AES-256-GCM seal + open of 64 bytes (BM_RawAesGcm/bytes:64). Empty
    without engine_bench."""
    bench = build / "bench" / "engine_bench"
    if not os.access(bench, os.X_OK):
        return {}
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        done = subprocess.run([str(bench), "--benchmark_filter=BM_X25519(Keygen|Derive)$|BM_RawAesGcm/bytes:64$",
                               f"--benchmark_out={out.name}", "--benchmark_out_format=json"],
                              capture_output=True, timeout=120)
        if done.returncode != 0:
            return {}
        ns = {b["name"]: b["cpu_time"] for b in json.load(open(out.name))["benchmarks"] if b.get("time_unit") == "ns"}
    got = {}
    if "BM_X25519Keygen" in ns and "BM_X25519Derive" in ns:
        got["x25519_us"] = (ns["BM_X25519Keygen"] + ns["BM_X25519Derive"]) / 1e3
    if "BM_RawAesGcm/bytes:64" in ns:
        got["aead64_us"] = ns["BM_RawAesGcm/bytes:64"] / 1e3
    return got


def target_checks(results: dict, engine: dict | None = None, runs: dict | None = None) -> list[str]:
    """The project's targets for our plain server, as ratios of the measured figures. A ratio of
    two figures measured in the same rounds (--repeat) is the median of its per-round ratios,
    shown with their range. With `engine` (engine_figures()), the floor under the two goals that
    compare ours with the X25519 work and with (a): what the crypto alone adds to (a)'s work."""
    engine = engine or {}
    x25519_us, aead64_us = engine.get("x25519_us"), engine.get("aead64_us")
    def get(row: str, col: str, metric: str) -> float | None:
        r = results.get(row, {}).get(col)
        return None if r is None or "error" in r else r.get(metric)

    spread: dict = {}  # (row, {columns}) -> (min, max, rounds) of a ratio measured in rounds

    def paired(row: str, num: str, den: str, metric: str) -> float | None:
        """num/den per round when both were measured in the same rounds, else of the medians."""
        a, b = (runs or {}).get(row, {}).get(num, []), (runs or {}).get(row, {}).get(den, [])
        if len(a) > 1 and len(a) == len(b):
            values = [x[metric] / y[metric] for x, y in zip(a, b) if "error" not in x and "error" not in y
                      and x.get(metric) is not None and y.get(metric)]
            if values:
                spread[(row, frozenset((num, den)))] = (min(values), max(values), len(values))
                return median(values)
        return ratio(get(row, num, metric), get(row, den, metric))

    def disturbed(row: str, cols: tuple[str, ...]) -> bool:
        return any((results.get(row, {}).get(c, {}).get("other_cpu_pct") or 0) >= OTHER_CPU_WARN for c in cols)

    def ratio(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None or b == 0 else a / b

    out = []

    def check(label: str, row: str, cols: tuple[str, ...], value: float | None, shown: str, ok, need: str) -> None:
        verdict = "n/a" if value is None else ("met" if ok(value) else "MISSED")
        if value is not None and disturbed(row, cols):
            verdict += " (! disturbed window)"
        if value is not None and (row, frozenset(cols)) in spread:
            lo, hi, n = spread[(row, frozenset(cols))]
            verdict += f"; median of {n} rounds, range {shown.format(lo)} to {shown.format(hi)}"
        out.append(f"  {label:<52} {shown.format(value) if value is not None else '':>10}  (target {need}): {verdict}")

    def floor(label: str, value: float, what: str) -> None:
        out.append(f"  {label:<52} {value:>9.2f}x  (no lower: {what})")

    for row, name in (("rr16", "16 conns"), ("rr128", "128 conns")):
        check(f"64 B, {name}: msgs/s vs (a)", row, ("ours", "a"), paired(row, "ours", "a", "msgs_per_s"), "{:.0%}",
              lambda r: r >= 0.70, ">= 70%")
        check(f"64 B, {name}: msgs/s vs (b)", row, ("ours", "b"), paired(row, "ours", "b", "msgs_per_s"), "{:.1f}x",
              lambda r: r >= 10, ">= 10x")
        cpu = paired(row, "ours", "a", "server_cpu_us_per_msg")
        check(f"64 B, {name}: server CPU/msg vs (a)", row, ("ours", "a"), cpu, "{:.2f}x", lambda r: r <= 1.15, "<= 1.15x")
        check(f"64 B, {name}: server CPU/msg vs (a), goal", row, ("ours", "a"), cpu, "{:.2f}x",
              lambda r: r <= 1.0, "<= 1.0x")
        a_us = get(row, "a", "server_cpu_us_per_msg")
        if aead64_us is not None and a_us:
            floor(f"64 B, {name}: floor of that ratio", 1 + aead64_us / a_us,
                  f"(a)'s {a_us:.2f} us + a bare AES-256-GCM seal+open of 64 B, {aead64_us:.2f} us")
    for row, name in (("mib1", "1 conn"), ("mib16", "16 conns")):
        g = get(row, "ours", "gb_per_s")
        check(f"1 MiB, {name}: GB/s", row, ("ours",), g, "{:.2f}", lambda v: v >= 1.5, ">= 1.5 GB/s")
        mib_us = get(row, "ours", "server_cpu_us_per_msg")
        check(f"1 MiB, {name}: server CPU per MiB received", row, ("ours",),
              None if mib_us is None else mib_us / 1000, "{:.3f} ms", lambda v: v <= 0.33, "<= 0.33 ms")
        check(f"1 MiB, {name}: GB/s vs (b)", row, ("ours", "b"), paired(row, "ours", "b", "gb_per_s"), "{:.1f}x",
              lambda r: r >= 2, ">= 2x")
    n = get("idle", "ours", "conns")
    check(f"idle: server RSS per session ({n or '?'} sessions)", "idle", (),
          get("idle", "ours", "rss_per_session_kib"), "{:.2f} KiB", lambda k: k <= 8, "<= 8 KiB")
    per_session = get("sess", "ours", "server_cpu_us_per_session")
    if x25519_us is None:
        check("new sessions: server CPU/session (X25519 work: n/a)", "sess", ("ours",), None, "", None, "<= 2x")
    else:
        check(f"new sessions: server CPU/session vs its X25519 work ({x25519_us:.0f} us)", "sess", ("ours",),
              ratio(per_session, x25519_us), "{:.2f}x", lambda r: r <= 2, "<= 2x")
        check("new sessions: server CPU/session vs X25519 work, goal", "sess", ("ours",),
              ratio(per_session, x25519_us), "{:.2f}x", lambda r: r <= 1.5, "<= 1.5x")
        a_us = get("sess", "a", "server_cpu_us_per_session")
        if a_us:
            floor("new sessions: floor of that ratio", 1 + a_us / x25519_us,
                  f"the X25519 work + (a)'s {a_us:.1f} us for a TCP session with one message; "
                  "the Noise hashing and the handshake's round trip come on top")
    check("server.py, 64 B, 16 conns: msgs/s vs ours", "rr16", ("ours", "py"),
          paired("rr16", "py", "ours", "msgs_per_s"), "{:.0%}", lambda r: r >= 0.8,
          ">= 80%")
    check("server.py --asyncio, 64 B, 16 conns: msgs/s vs (c)", "rr16", ("py_aio", "c"),
          paired("rr16", "py_aio", "c", "msgs_per_s"), "{:.2f}x", lambda r: r > 1,
          "> 1x")
    check("server.py --asyncio, 64 B, 16 conns: msgs/s", "rr16", ("py_aio",), get("rr16", "py_aio", "msgs_per_s"),
          "{:,.0f}", lambda v: v >= 60000, ">= 60,000")
    n = get("idle", "py_aio", "conns")
    check(f"server.py --asyncio: {n or '?'} sessions opened (with handshakes)", "idle", ("py_aio",),
          get("idle", "py_aio", "setup_s"), "{:.2f} s", lambda v: v < 5, "< 5 s")
    return out


def progress_line(row: Row, r: dict) -> str:
    keys = {
        "rr": [("msgs_per_s", "msgs/s", ",.0f"), ("server_cpu_us_per_msg", "us server CPU/msg", ".2f")],
        "idle": [("conns", "sessions", "d"), ("rss_per_session_kib", "KiB/session", ".2f")],
        "sessions": [("sessions_per_s", "sessions/s", ",.0f"),
                     ("server_cpu_us_per_session", "us server CPU/session", ".1f")],
    }[row.mode]
    if row.key.startswith("mib"):
        keys = [("gb_per_s", "GB/s", ".2f"), ("server_cpu_us_per_msg", "us server CPU/msg", ".0f")]
    parts = [f"{r[k]:{f}} {unit}" for k, unit, f in keys if r.get(k) is not None]
    if r.get("lat_p50_us") is not None:
        parts.append(f"p50/p99 {r['lat_p50_us']:,.0f}/{r['lat_p99_us']:,.0f} us")
    if r.get("server_cpu_pct") is not None:
        parts.append(f"CPU server {r['server_cpu_pct']:.0f}% loadgen {r['client_cpu_pct']:.0f}%")
    if (r.get("other_cpu_pct") or 0) >= OTHER_CPU_WARN:
        parts.append(f"[other processes took {r['other_cpu_pct']:.0f}% of a core: figure disturbed]")
    if "warning" in r:
        parts.append(f"[{r['warning']}]")
    return ", ".join(parts)


# ---- main -----------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--build-dir", default="build-bench", help="CMake build dir with bench/loadgen and bench/epoll_echo")
    p.add_argument("--server", default="./server", help="our server binary (n/a in the table if missing)")
    p.add_argument("--seconds", type=float, default=5.0, help="measured window of each rate (default 5)")
    p.add_argument("--warmup", type=float, default=0.5, help="uncounted warm-up before each window (default 0.5)")
    p.add_argument("--server-threads", type=int, default=1,
                   help="worker threads of ours and (a) (default 1: the loadgen has the other core)")
    p.add_argument("--loadgen-threads", type=int, default=1, help="loadgen event-loop threads (default 1)")
    p.add_argument("--idle-conns", type=int, default=10000, help="idle sessions held on ours (default 10000)")
    p.add_argument("--baseline-idle-conns", type=int, default=None,
                   help="idle sessions held on the baselines (default: --idle-conns)")
    p.add_argument("--timeout", type=float, default=60.0, help="loadgen's setup/drain limit (default 60 s)")
    p.add_argument("--only", default="", help="comma-separated rows (rr1,rr16,rr128,mib1,mib16,mib128,idle,sess) "
                   "and/or columns (ours,ours_tls,a,b,c,py,py_handler,py_aio,ours_cores,z) to run; default all")
    p.add_argument("--retries", type=int, default=1,
                   help="measure a figure again (at most this often) if other processes disturbed it (default 1)")
    p.add_argument("--repeat", type=int, default=1,
                   help="measure the figures chosen by --repeat-only this many times, in rounds that alternate "
                   "the order of the columns (so drift hits ours and (a) alike); tables show medians and every "
                   "ratio its median with its range (default 1)")
    p.add_argument("--repeat-only", default="", help="rows and/or columns (as --only) whose figures --repeat "
                   "measures again; default every selected figure")
    p.add_argument("--cbc-reseal", action="store_true",
                   help="make the loadgen seal every request for (b) too (default: one sealed frame resent)")
    p.add_argument("--json", default="", help="also write every result to this file")
    args = p.parse_args(argv)
    if args.baseline_idle_conns is None:
        args.baseline_idle_conns = args.idle_conns
    if not (0.1 <= args.seconds <= 600 and 0 <= args.warmup <= 60):
        p.error("--seconds must be in [0.1, 600] and --warmup in [0, 60]")
    if not 1 <= args.repeat <= 100:
        p.error("--repeat must be in [1, 100]")

    build = Path(args.build_dir).resolve()
    loadgen = build / "bench" / "loadgen"
    for binary in (loadgen, build / "bench" / "epoll_echo"):
        if not os.access(binary, os.X_OK):
            print(f"run_bench: {binary} is missing; build it with:\n  cmake -S . -B {args.build_dir} -G Ninja "
                  "-DCMAKE_BUILD_TYPE=Release -DSECLINK_BUILD_TESTS=OFF -DSECLINK_BUILD_BENCH=ON && "
                  f"cmake --build {args.build_dir}", file=sys.stderr)
            return 2
    server = Path(args.server).resolve() if args.server else None
    if server is not None and not os.access(server, os.X_OK):
        print(f"run_bench: {args.server} not found: our server's columns will read n/a", flush=True)
        server = None

    # Every connection is a descriptor, in the loadgen and in the servers (they inherit this).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    need = max(args.idle_conns, args.baseline_idle_conns) + 256
    if hard != resource.RLIM_INFINITY and hard < need:
        print(f"run_bench: the open-files limit ({hard}) is below {need}: lower --idle-conns", file=sys.stderr)
        return 2

    tmp = Path(tempfile.mkdtemp(prefix="seclink-bench-"))
    try:
        psk, cert, key = tmp / "psk", tmp / "cert.pem", tmp / "key.pem"
        write_psk(psk)
        write_self_signed(cert, key)
        columns = build_columns(args, psk, cert, key, build, server)
        rows = build_rows(args)
        only = {s.strip() for s in args.only.split(",") if s.strip()}
        again = {s.strip() for s in args.repeat_only.split(",") if s.strip()}
        for flag, keys in (("--only", only), ("--repeat-only", again)):
            unknown = keys - {r.key for r in rows} - {c.key for c in columns}
            if unknown:
                p.error(f"{flag}: unknown {', '.join(sorted(unknown))}")
        sel_rows = [r for r in rows if not (only & {x.key for x in rows}) or r.key in only]
        sel_cols = [c for c in columns if not (only & {x.key for x in columns}) or c.key in only]

        cpus = os.cpu_count()
        print(f"seclink benchmark: {cpus} CPUs, {args.seconds:g} s per figure after {args.warmup:g} s warm-up, "
              f"server threads {args.server_threads} (ours, (a)), loadgen threads {args.loadgen_threads}", flush=True)
        runs: dict = {}  # runs[row][col]: one result per round
        failures: list[str] = []
        todo = [(r, c) for r in sel_rows for c in sel_cols if c.cmd is not None and (c.rows is None or r.key in c.rows)
                and (r.cols is None or c.key in r.cols)]
        repeated = [(r, c) for r, c in todo if (not (again & {x.key for x in rows}) or r.key in again)
                    and (not (again & {x.key for x in columns}) or c.key in again)] if args.repeat > 1 else []
        if repeated:
            print(f"Measuring {len(repeated)} figure(s) {args.repeat} times, in rounds alternating the column order",
                  flush=True)
        schedule = todo + [rc for n in range(1, args.repeat) for rc in rounds(repeated, reverse=n % 2 == 1)]
        started = time.monotonic()
        for i, (row, col) in enumerate(schedule, 1):
            r = run_one(args, loadgen, col, row, psk, cert, tmp)
            # A window shared with other busy processes says little: try again, keep the quieter.
            for _ in range(args.retries):
                if "error" in r or (r.get("other_cpu_pct") or 0) < OTHER_CPU_WARN:
                    break
                print(f"        ({row.title} | {col.title}: other processes took {r['other_cpu_pct']:.0f}% of a core;"
                      " measuring again)", flush=True)
                again = run_one(args, loadgen, col, row, psk, cert, tmp)
                if "error" in again or (again.get("other_cpu_pct") or 0) < r["other_cpu_pct"]:
                    r = again
            runs.setdefault(row.key, {}).setdefault(col.key, []).append(r)
            if "error" in r:
                failures.append(f"{row.title} / {col.title}: {r['error']}")
                summary = "FAILED: " + r["error"]
            else:
                summary = progress_line(row, r)
            print(f"[{i:2}/{len(schedule)}] {row.title} | {col.title}: {summary}", flush=True)
        elapsed = time.monotonic() - started
        results = {row: {col: median_result(rs) for col, rs in cols.items()} for row, cols in runs.items()}

        print()
        print(f"Results ({elapsed:.0f} s; 127.0.0.1; CPU = server user+system time over the window, "
              "RSS = growth of the server's VmRSS):")
        for line in table(results, [c for c in sel_cols if c.rows is None], [r for r in sel_rows if r.cols is None]):
            print(line)
        py_cols = [c for c in sel_cols if c.key in PY_COLS]
        py_rows = [r for r in sel_rows if r.key in PY_ROWS]
        if py_cols and py_rows:
            print("\nThe Python servers (python/server.py; --threads 1 like ours), next to ours and (c):")
            for line in table(results, [c for c in columns if c.key in ("ours", "c")] + py_cols, py_rows):
                print(line)
        lat_rows = [r for r in sel_rows if r.key in LAT_ROWS]
        if lat_rows and any(c.key == "ours_cores" for c in sel_cols):
            print(f"\nTail latency: ours with --threads {args.server_threads} and with one worker per core "
                  f"({os.cpu_count()}; the default is one less), the load generator on the same machine:")
            for line in table(results, [c for c in columns if c.key in ("ours", "ours_cores")], lat_rows, LAT_SPEC):
                print(line)
        z_rows = [r for r in sel_rows if r.key in ZMQ_ROWS]
        if z_rows and any(c.key in ("ours", "z") for c in sel_cols):
            print("\nBeside ZeroMQ CURVE (z), the library users compare with (each with its own closed-loop client):")
            for line in table(results, [c for c in columns if c.key in ("ours", "z")], z_rows, ZMQ_SPEC):
                print(line)
            for line in zmq_ratios(results, z_rows):
                print(line)
        for line in footnotes(args, {r.key for r in sel_rows}, results):
            print(line)
        if server is None:
            print("\nTargets for our server: n/a (no server binary)")
        else:
            print()
            print("Targets for our server (plain seclink/1 column):")
            engine = engine_figures(build) if results.keys() & {"sess", "rr16", "rr128"} else {}
            for line in target_checks(results, engine, runs):
                print(line)
        if failures:
            print()
            print("Failures:")
            for f in failures:
                print(f"  {f}")
        if args.json:
            Path(args.json).write_text(json.dumps({"settings": {k: v for k, v in vars(args).items()},
                                                   "results": results, "runs": runs}, indent=2) + "\n")
        return 1 if failures else 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
