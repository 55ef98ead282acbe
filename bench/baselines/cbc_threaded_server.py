#!/usr/bin/env python3
"""Benchmark baseline (b): the design seclink replaces.

A thread-per-client Python server with AES-256-CBC + HMAC-SHA-256 (encrypt-then-MAC) from the
`cryptography` package, keyed from the pre-shared key file:

    python3 bench/baselines/cbc_threaded_server.py --port 0 --psk-file F [--host 127.0.0.1] [--echo]

Wire format (both directions; bench/loadgen --proto cbc speaks it):

    enc_key || mac_key = HKDF-SHA-256(ikm = PSK, salt = SALT, info = INFO, length = 64)
    frame = u32be(N) || iv (16 random bytes) || ciphertext || tag (32)
    ciphertext = AES-256-CBC(enc_key, iv, PKCS#7(plaintext))
    tag = HMAC-SHA-256(mac_key, iv || ciphertext)                 N = 16 + len(ciphertext) + 32

There is no handshake, no replay protection and one key pair for both directions: it is what
the old design did, kept as a yardstick, not as a proposal. Each request is answered with
"ACK: received N bytes" (N = plaintext length), or with the plaintext itself with --echo.
A frame that fails the MAC or the padding closes that connection.

Prints "[INFO] Listening on HOST:PORT" (flushed) once it accepts; SIGTERM or SIGINT stops it
with exit status 0.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import os
import signal
import socket
import struct
import sys
import threading

from cryptography.hazmat.primitives import hashes, hmac, padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SALT = b"seclink-bench cbc baseline v1"
INFO = b"aes-256-cbc key || hmac-sha-256 key"
IV_BYTES, TAG_BYTES, BLOCK = 16, 32, 16
MAX_PLAINTEXT = 16 * 1024 * 1024
MAX_BODY = IV_BYTES + MAX_PLAINTEXT + BLOCK + TAG_BYTES
MIN_BODY = IV_BYTES + BLOCK + TAG_BYTES


def load_psk(path: str) -> bytes:
    """The PSK file format of docs/PROTOCOL.md section 6: one line of base64 for 32 bytes."""
    with open(path, "rb") as f:
        text = f.read(256)
    try:
        key = base64.b64decode(text.rstrip(b"\n"), validate=True)
    except (binascii.Error, ValueError) as error:
        raise SystemExit(f"cbc_threaded_server: {path} is not a base64 key file: {error}")
    if len(key) != 32:
        raise SystemExit(f"cbc_threaded_server: {path} holds {len(key)} bytes, not 32")
    return key


def derive_keys(psk: bytes) -> tuple[bytes, bytes]:
    okm = HKDF(algorithm=hashes.SHA256(), length=64, salt=SALT, info=INFO).derive(psk)
    return okm[:32], okm[32:]


class CbcHmac:
    def __init__(self, enc_key: bytes, mac_key: bytes) -> None:
        self.enc_key, self.mac_key = enc_key, mac_key

    def seal(self, plaintext: bytes) -> bytes:
        """The whole frame, length prefix included."""
        iv = os.urandom(IV_BYTES)
        padder = padding.PKCS7(128).padder()
        padded = padder.update(plaintext) + padder.finalize()
        enc = Cipher(algorithms.AES(self.enc_key), modes.CBC(iv)).encryptor()
        ct = enc.update(padded) + enc.finalize()
        mac = hmac.HMAC(self.mac_key, hashes.SHA256())
        mac.update(iv)
        mac.update(ct)
        tag = mac.finalize()
        return struct.pack(">I", IV_BYTES + len(ct) + TAG_BYTES) + iv + ct + tag

    def open(self, body: memoryview) -> bytes:
        """Verifies the tag (constant time), then decrypts; raises ValueError on any failure."""
        if len(body) < MIN_BODY or (len(body) - IV_BYTES - TAG_BYTES) % BLOCK:
            raise ValueError("bad frame length")
        iv, ct, tag = body[:IV_BYTES], body[IV_BYTES:-TAG_BYTES], body[-TAG_BYTES:]
        mac = hmac.HMAC(self.mac_key, hashes.SHA256())
        mac.update(iv)
        mac.update(ct)
        mac.verify(bytes(tag))  # InvalidSignature is a subclass of Exception, handled by caller
        dec = Cipher(algorithms.AES(self.enc_key), modes.CBC(bytes(iv))).decryptor()
        padded = dec.update(ct) + dec.finalize()
        unpadder = padding.PKCS7(128).unpadder()
        return unpadder.update(padded) + unpadder.finalize()


def recv_exact(sock: socket.socket, view: memoryview) -> bool:
    """Fills `view`; False if the stream ends first."""
    got = 0
    while got < len(view):
        n = sock.recv_into(view[got:])
        if n == 0:
            return False
        got += n
    return True


def serve_client(sock: socket.socket, crypto: CbcHmac, echo: bool) -> None:
    header = bytearray(4)
    body = bytearray()
    with sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while recv_exact(sock, memoryview(header)):
                (n,) = struct.unpack(">I", header)
                if n < MIN_BODY or n > MAX_BODY:
                    return  # not our framing: drop the connection
                if len(body) != n:
                    body = bytearray(n)
                if not recv_exact(sock, memoryview(body)):
                    return
                try:
                    plaintext = crypto.open(memoryview(body))
                except Exception:  # bad tag or padding: the connection is not trusted any more
                    return
                reply = plaintext if echo else f"ACK: received {len(plaintext)} bytes".encode()
                sock.sendall(crypto.seal(reply))
        except OSError:
            return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="AES-256-CBC + HMAC thread-per-client baseline server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--psk-file", required=True)
    parser.add_argument("--echo", action="store_true", help="reply with the plaintext instead of the ACK")
    args = parser.parse_args(argv)

    enc_key, mac_key = derive_keys(load_psk(args.psk_file))
    crypto = CbcHmac(enc_key, mac_key)

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((args.host, args.port))
    listener.listen(socket.SOMAXCONN)
    host, port = listener.getsockname()
    print(f"[INFO] Listening on {host}:{port}", flush=True)

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        while True:  # one thread per client, for as long as the server runs
            sock, _ = listener.accept()
            try:
                threading.Thread(target=serve_client, args=(sock, crypto, args.echo), daemon=True).start()
            except RuntimeError as error:  # "can't start new thread": the design's limit
                print(f"[WARN] cannot serve another client: {error}", file=sys.stderr, flush=True)
                sock.close()
    except KeyboardInterrupt:
        pass
    finally:
        listener.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
