#!/usr/bin/env python3
"""The native-backed Python server with a Python handler (an echo), for `make bench`: what a
message costs when it goes through Python code. Usage: py_handler_server.py --host H --port P
--psk-file F [--threads N]. Prints "Listening on HOST:PORT"; stops on SIGTERM/SIGINT."""

import argparse
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))

import seclink  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--psk-file", required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--max-clients", type=int, default=10000)
    args = p.parse_args()
    server = seclink.Server(args.host, args.port, psk_file=args.psk_file, threads=args.threads,
                            max_clients=args.max_clients, handler=lambda data, peer: data)
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, lambda *_: server.stop())
    print(f"[INFO] Listening on {args.host}:{server.port}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
