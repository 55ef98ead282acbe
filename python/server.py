#!/usr/bin/env python3
"""seclink server (Python): `python3 server.py --port 5000`. Same flags and output as ./server; see --help."""
import sys

try:
    from seclink.cli import server_main
except ModuleNotFoundError as e:  # seclink/__init__.py says what to do: run `make` first
    if not (e.name or "").startswith("seclink"):
        raise
    sys.exit(f"server: error: {e}")

if __name__ == "__main__":
    sys.exit(server_main())
