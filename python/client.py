#!/usr/bin/env python3
"""seclink client (Python): `python3 client.py 127.0.0.1 5000 "hi"`. Same flags and output as ./client; see --help."""
import sys

try:
    from seclink.cli import client_main
except ModuleNotFoundError as e:  # seclink/__init__.py says what to do: run `make` first
    if not (e.name or "").startswith("seclink"):
        raise
    sys.exit(f"client: error: {e}")

if __name__ == "__main__":
    sys.exit(client_main())
