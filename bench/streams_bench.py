"""make bench: files and tunnels beside the tools people use for them (README "Performance").

1. A file (2 GiB by default) over loopback, page cache on both ends (/dev/shm): ./client --send to
   ./server --files, against scp with aes256-gcm@openssh.com to Debian's sshd started here on a
   free port with a throwaway host key. Peak memory (RSS) of our server and client, and the CPU
   time each spent per MB beside what SHA-256 and AES-256-GCM alone cost on one core here
   (`openssl speed`): every byte is hashed and sealed by the sender, opened and hashed by the
   receiver, so that is each side's floor, and the rest is the kernel's (copies, TCP, page cache).
2. Tunnels in front of one target (a local echo/sink server): bulk throughput and the 64-byte
   round-trip rate through ./server --forward + ./client --listen, spiped and stunnel4.

    python3 bench/streams_bench.py [--server PATH] [--client PATH] [--size-mib N]

Every number comes from this run on this machine; nothing is compared with a stored figure.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tools.procs import Server  # noqa: E402
MEASURE = [sys.executable, str(REPO / "tools" / "maxrss.py")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 10) -> None:
    end = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > end:
                raise RuntimeError(f"nothing listens on {port}") from None
            time.sleep(0.02)


def start_listening(argv: list[str], env: dict[str, str] | None = None) -> tuple[subprocess.Popen, int]:
    """A seclink program started on port 0 (tools/procs.py: its port from the Listening line, its
    output read as it comes)."""
    p = Server(argv, cwd=REPO, env=env if env is not None else dict(os.environ), merge_stderr=True)
    return p.proc, p.port


def stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def rate(n: int, secs: float) -> str:
    return f"{n / secs / 1e9:.2f} GB/s"


def openssl_ms_per_mb(*algorithm: str) -> float | None:
    """One core's cost of `openssl speed -evp ALGORITHM` on 256 KiB blocks (one FILE_DATA), in ms per MB."""
    try:
        r = subprocess.run(["openssl", "speed", "-seconds", "1", "-bytes", "262144", "-evp", *algorithm],
                           capture_output=True, text=True, timeout=30)
        return 1e6 / float(r.stdout.split()[-1].rstrip("k"))  # "...k": thousands of bytes per second
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
        return None


def cpu_ms_per_mb(path: Path, size: int) -> tuple[float, float]:
    """(user, system) CPU ms per MB of a program measured by tools/maxrss.py."""
    user, system = (float(x) for x in path.read_text().split())
    return user * 1e9 / size, system * 1e9 / size


# ------------------------------------------------------------------------------------ files

def bench_file(args, work: Path, psk: Path) -> None:
    size = args.size_mib << 20
    shm = Path(tempfile.mkdtemp(dir="/dev/shm", prefix="seclink-bench-"))
    try:
        block = os.urandom(1 << 20)
        # On a VM, the first write to memory the guest has not touched before costs a fault in the
        # host, inside the kernel's copy into the page cache: seclink's receiver, which runs first,
        # would pay it and scp, writing into the pages seclink's file left, would not (measured: a
        # 2 GiB run read 0.35 GB/s, 0.87x scp, unwarmed and 0.56-0.62 GB/s, 1.20-1.44x scp, warmed).
        # So three files' worth of memory is touched once first, for both.
        warm = shm / "warm.bin"
        if shutil.disk_usage(shm).free > 5 * size:
            with open(warm, "wb") as f:
                for _ in range(3 * args.size_mib):
                    f.write(block)
            warm.unlink()
        src = shm / "src.bin"
        with open(src, "wb") as f:  # real bytes in the page cache (tmpfs), not a sparse file
            for _ in range(args.size_mib):
                f.write(block)
        inbox = shm / "inbox"
        inbox.mkdir()
        srv, port = start_listening([*MEASURE, str(work / "srv.rss"), args.server, "--host", "127.0.0.1", "--port", "0",
                                     "--psk-file", str(psk), "--log-file", "-", "--quiet", "--files", str(inbox)])
        try:
            t0 = time.monotonic()
            r = subprocess.run([*MEASURE, str(work / "cli.rss"), args.client, "127.0.0.1", str(port), "--psk-file",
                                str(psk), "--log-file", "-", "--send", str(src)], capture_output=True, text=True)
            ours = time.monotonic() - t0
            if r.returncode != 0:
                raise RuntimeError(r.stderr)
        finally:
            stop(srv)
        srv_rss, cli_rss = (int((work / f).read_text()) >> 10 for f in ("srv.rss", "cli.rss"))
        srv_cpu, cli_cpu = (cpu_ms_per_mb(work / f"{f}.rss.cpu", size) for f in ("srv", "cli"))
        (inbox / "src.bin").unlink()
        scp = bench_scp(work, src, shm / "scp.bin")
        sha, gcm = openssl_ms_per_mb("sha256"), openssl_ms_per_mb("aes-256-gcm")
        print(f"file {args.size_mib} MiB over loopback (page cache both ends):")
        print(f"  seclink --send   {ours:6.2f} s  {rate(size, ours)}  (server peak RSS {srv_rss} MiB, client {cli_rss} MiB)")
        side = lambda c: f"{sum(c):.2f} ms (user {c[0]:.2f}, sys {c[1]:.2f})"  # noqa: E731
        print(f"  CPU per MB       server {side(srv_cpu)}, client {side(cli_cpu)}")
        if sha is not None and gcm is not None:
            # Two cores for the two ends: the busier end, or half of the total, bounds the rate.
            best = 1 / max(sum(srv_cpu), sum(cli_cpu), (sum(srv_cpu) + sum(cli_cpu)) / (os.cpu_count() or 1))
            print(f"  floor            SHA-256 {sha:.2f} + AES-256-GCM {gcm:.2f} = {sha + gcm:.2f} ms per MB per side "
                  f"(openssl speed, one core); with the CPU measured above, at most {best:.2f} GB/s on "
                  f"{os.cpu_count()} cores")
        if scp is None:
            print("  scp              not measured (sshd could not be started here)")
        else:
            print(f"  scp aes256-gcm   {scp:6.2f} s  {rate(size, scp)}  -> seclink is {scp / ours:.2f}x scp")
    finally:
        shutil.rmtree(shm, ignore_errors=True)


def bench_scp(work: Path, src: Path, dst: Path) -> float | None:
    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    if not os.path.exists(sshd) or shutil.which("scp") is None:
        return None
    d = work / "ssh"
    d.mkdir()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "host")], check=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "user")], check=True)
    shutil.copy(d / "user.pub", d / "authorized_keys")
    os.chmod(d, 0o700)
    port = free_port()
    conf = d / "sshd_config"
    conf.write_text(f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host'}\nAuthorizedKeysFile {d / 'authorized_keys'}\n"
                    f"PasswordAuthentication no\nStrictModes no\nUsePAM no\nPidFile none\n"
                    f"Ciphers aes256-gcm@openssh.com\nSubsystem sftp internal-sftp\n")
    os.makedirs("/run/sshd", exist_ok=True)  # privilege separation directory
    p = subprocess.Popen([sshd, "-D", "-e", "-f", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_port(port)
        t0 = time.monotonic()
        r = subprocess.run(["scp", "-q", "-c", "aes256-gcm@openssh.com", "-P", str(port), "-i", str(d / "user"),
                            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
                            str(src), f"{os.environ.get('USER', 'root')}@127.0.0.1:{dst}"], capture_output=True, text=True)
        secs = time.monotonic() - t0
        if r.returncode != 0:
            print(f"  (scp failed: {r.stderr.strip()})")
            return None
        return secs
    except RuntimeError:
        return None
    finally:
        p.kill()
        p.wait()


# ------------------------------------------------------------------------------------ tunnels

class Target:
    """The service behind every tunnel: echoes what it gets (the 64-byte round trips) or, after a
    first byte 'S', swallows everything and answers the count at the end (bulk)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(c,), daemon=True).start()

    @staticmethod
    def _one(c: socket.socket) -> None:
        with c:
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            first = c.recv(1)
            if first == b"S":
                buf, n = bytearray(1 << 20), 0
                while got := c.recv_into(buf):
                    n += got
                c.sendall(str(n).encode())
                return
            data = first
            while data:
                c.sendall(data)
                data = c.recv(65536)


def measure_tunnel(port: int, bulk: int, rounds: int) -> tuple[float, float]:
    """(bulk bytes/s, 64-byte round trips/s) through localhost:port."""
    with socket.create_connection(("127.0.0.1", port)) as c:
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        block = os.urandom(1 << 20)
        t0 = time.monotonic()
        c.sendall(b"S")
        for _ in range(bulk >> 20):
            c.sendall(block)
        c.shutdown(socket.SHUT_WR)
        answer = b""
        while data := c.recv(64):
            answer += data
        secs = time.monotonic() - t0
        assert int(answer) == bulk, answer
    msg = os.urandom(64)
    with socket.create_connection(("127.0.0.1", port)) as c:
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        t0 = time.monotonic()
        for _ in range(rounds):
            c.sendall(msg)
            got = b""
            while len(got) < 64:
                got += c.recv(64 - len(got))
        rtt = time.monotonic() - t0
    return bulk / secs, rounds / rtt


def bench_tunnels(args, work: Path, psk: Path) -> None:
    target = Target()
    bulk, rounds = args.tunnel_mib << 20, args.rounds
    results: dict[str, tuple[float, float] | str] = {}
    procs: list[subprocess.Popen] = []
    try:
        results["direct (no tunnel)"] = measure_tunnel(target.port, bulk, rounds)
        srv, sport = start_listening([args.server, "--host", "127.0.0.1", "--port", "0", "--psk-file", str(psk),
                                      "--log-file", "-", "--quiet", "--forward", f"127.0.0.1:{target.port}"])
        procs.append(srv)
        cli, cport = start_listening([args.client, "127.0.0.1", str(sport), "--psk-file", str(psk), "--log-file", "-",
                                      "--quiet", "--listen", "127.0.0.1:0"])
        procs.append(cli)
        results["seclink"] = measure_tunnel(cport, bulk, rounds)
        if shutil.which("spiped"):
            key = work / "spiped.key"
            key.write_bytes(os.urandom(32))
            p1, p2 = free_port(), free_port()
            procs.append(subprocess.Popen(["spiped", "-F", "-d", "-s", f"[127.0.0.1]:{p1}", "-t",
                                           f"[127.0.0.1]:{target.port}", "-k", str(key)]))
            procs.append(subprocess.Popen(["spiped", "-F", "-e", "-s", f"[127.0.0.1]:{p2}", "-t", f"[127.0.0.1]:{p1}",
                                           "-k", str(key)]))
            wait_port(p1)
            wait_port(p2)
            results["spiped"] = measure_tunnel(p2, bulk, rounds)
        else:
            results["spiped"] = "not installed"
        stunnel = shutil.which("stunnel4") or shutil.which("stunnel")
        if stunnel:
            cert, keyf = work / "st.pem", work / "st.key"
            subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                            "-keyout", str(keyf), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost"],
                           check=True, capture_output=True)
            p1, p2 = free_port(), free_port()
            (work / "st-server.conf").write_text(f"foreground = yes\npid =\n[s]\naccept = 127.0.0.1:{p1}\n"
                                                 f"connect = 127.0.0.1:{target.port}\ncert = {cert}\nkey = {keyf}\n")
            (work / "st-client.conf").write_text(f"foreground = yes\npid =\n[c]\nclient = yes\naccept = 127.0.0.1:{p2}\n"
                                                 f"connect = 127.0.0.1:{p1}\nverifyPeer = yes\nCAfile = {cert}\n")
            for conf in ("st-server.conf", "st-client.conf"):
                procs.append(subprocess.Popen([stunnel, str(work / conf)], stdout=subprocess.DEVNULL,
                                              stderr=subprocess.DEVNULL))
            wait_port(p1)
            wait_port(p2)
            results["stunnel4 (TLS 1.3)"] = measure_tunnel(p2, bulk, rounds)
        else:
            results["stunnel4 (TLS 1.3)"] = "not installed"
    finally:
        for p in procs:
            stop(p)
        target.sock.close()
    print(f"tunnel in front of one local target ({args.tunnel_mib} MiB bulk, {rounds} sequential 64-byte round trips):")
    for name, r in results.items():
        if isinstance(r, str):
            print(f"  {name:20s} {r}")
        else:
            print(f"  {name:20s} bulk {r[0] / 1e9:5.2f} GB/s   64 B round trips {r[1]:8.0f}/s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--server", default=str(REPO / "server"))
    ap.add_argument("--client", default=str(REPO / "client"))
    ap.add_argument("--size-mib", type=int, default=2048)
    ap.add_argument("--tunnel-mib", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=20000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="seclink-bench-") as tmp:
        work = Path(tmp)
        psk = work / "psk"
        subprocess.run([args.client, "--keygen", "--psk-file", str(psk)], check=True, capture_output=True)
        bench_file(args, work, psk)
        bench_tunnels(args, work, psk)
    return 0


if __name__ == "__main__":
    sys.exit(main())
