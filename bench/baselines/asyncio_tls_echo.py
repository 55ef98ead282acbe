#!/usr/bin/env python3
"""Benchmark baseline (c): a Python asyncio TLS 1.3 echo server.

    python3 bench/baselines/asyncio_tls_echo.py --port 0 --cert CERT.pem --key KEY.pem [--host 127.0.0.1]

Speaks the `tls-raw` framing of bench/loadgen: inside TLS 1.3, each frame is u32be(N) || N
bytes, and is sent back unchanged. One event loop, one coroutine per connection (the standard
library's ssl module over asyncio streams): the usual way to put TLS in front of a Python
service.

Prints "[INFO] Listening on HOST:PORT" (flushed) once it accepts; SIGTERM or SIGINT stops it
with exit status 0.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import ssl
import struct
import sys

MAX_FRAME = 64 * 1024 * 1024  # larger announced frames close the connection


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            header = await reader.readexactly(4)
            (n,) = struct.unpack(">I", header)
            if n > MAX_FRAME:
                break
            body = await reader.readexactly(n)
            writer.write(header + body)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError, OSError):
        pass
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (ConnectionError, ssl.SSLError, OSError):
            pass


async def serve(args: argparse.Namespace) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(args.cert, args.key)
    # A limit above the largest frame, so readexactly() of a 1 MiB body is one buffer.
    server = await asyncio.start_server(echo, args.host, args.port, ssl=ctx, backlog=4096, limit=4 * 1024 * 1024)
    host, port = server.sockets[0].getsockname()[:2]
    print(f"[INFO] Listening on {host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="asyncio TLS 1.3 echo baseline server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--cert", required=True, help="PEM certificate chain")
    parser.add_argument("--key", required=True, help="PEM private key")
    args = parser.parse_args(argv)
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
