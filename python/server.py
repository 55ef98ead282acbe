#!/usr/bin/env python3
"""seclink server (Python): `python3 server.py --port 5000`. Same flags and output as ./server; see --help."""
import sys

from seclink.cli import server_main

if __name__ == "__main__":
    sys.exit(server_main())
