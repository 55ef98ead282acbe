#!/usr/bin/env python3
"""seclink client (Python): `python3 client.py 127.0.0.1 5000 "hi"`. Same flags and output as ./client; see --help."""
import sys

from seclink.cli import client_main

if __name__ == "__main__":
    sys.exit(client_main())
