"""``python -m seclink``: what the package offers, its version, and where the key lives.

``python -m seclink server [options]`` and ``python -m seclink client [options]`` run the two
programs (the same as the ``seclink-server`` and ``seclink-client`` commands), for when the
commands are not on PATH.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence

from . import PROTOCOL_VERSION, __version__, _seclink
from .errors import Error

PROGRAMS = {"server": "the multi-threaded server", "client": "the client (one message, or interactive)"}


def _package_version() -> str:
    try:
        from importlib.metadata import PackageNotFoundError, version
        return version("seclink")
    except PackageNotFoundError:  # run in place from a checkout, not installed
        return __version__


def overview() -> str:
    lines = [f"seclink {_package_version()}: encrypted, authenticated messaging "
             f"(protocol seclink/{PROTOCOL_VERSION}: Noise NNpsk0 + AES-256-GCM; libseclink {__version__})", "",
             "Programs (each takes --help):"]
    for name, what in PROGRAMS.items():
        where = shutil.which(f"seclink-{name}")
        lines.append(f"  seclink-{name:<8} {what}")
        lines.append(f"  {'':16} {where if where else 'not on PATH'}; also: python -m seclink {name} [options]")
    lines += ["", "Pre-shared key (both sides need the same file):"]
    try:
        path = _seclink.key_path(None)
        state = "exists" if os.path.exists(path) else "not created yet: seclink-server --keygen writes it"
        lines.append(f"  {path} ({state})")
    except Error as e:
        lines.append(f"  unknown: {e} (set HOME, or SECLINK_PSK_FILE)")
    lines += ["  $SECLINK_PSK_FILE or --psk-file name another one.", "",
              "Python API (help(seclink) has the details):",
              "  seclink.Client        blocking client: send, recv, request, ping",
              "  seclink.Server        the native server, replies built natively or by a Python handler",
              "  seclink.Connection    the sans-I/O engine, for your own I/O",
              "  seclink.aio           asyncio connect() and serve()",
              "  seclink.keys          key files and TLS certificates",
              "", f"Installed in {os.path.dirname(os.path.abspath(__file__))}"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in PROGRAMS:
        from . import cli
        run = cli.server_main if args[0] == "server" else cli.client_main
        sys.argv[0] = f"seclink-{args[0]}"  # the name its usage line shows
        return run(args[1:])
    print(overview())
    if args and args[0] not in ("-h", "--help"):
        print(f"\npython -m seclink: unknown command {args[0]!r} (server, client, or nothing)", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
