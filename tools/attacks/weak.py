"""INSECURE TEACHING MATERIAL. DO NOT USE ANY OF THIS TO PROTECT ANYTHING.

Small re-implementations of the designs that classroom messaging assignments often hand in, each
broken on purpose in one classic way, so that tools/attacks/lab.py can run a real attack on it:

    PlainLink     no encryption at all (the eavesdropper's baseline)
    XorLink       XOR with a fixed key: one known plaintext gives the key away
    CbcLink       AES-CBC, key hard-coded below, no MAC: readable by anyone with the source,
                  and the IV's bits flip the first block's plaintext bits
    NoCounterLink AES-GCM with a random nonce per message: confidential and authenticated,
                  but nothing stops a recorded message from being accepted again
    TLS without certificate verification: see tls_client_context()

Every design uses seclink/1's framing (a 4-byte big-endian length, then the body), so one relay
(tools/wiretap.py) can watch and meddle with all of them. Servers listen on 127.0.0.1 only.
"""

from __future__ import annotations

import datetime
import os
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.x509.oid import NameOID

HOST = "127.0.0.1"
WAIT = 10.0

# INSECURE: a key in the source is a key in every copy of the source. (Attack 2 imports it.)
CBC_KEY = b"SECLINK-TEACHING-KEY-DONT-USE-!!"  # 32 bytes: AES-256


def frame(body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + body


class PlainLink:
    """INSECURE: the message itself is the body."""

    name = "plaintext"

    def seal(self, message: bytes) -> bytes:
        return message

    def open(self, body: bytes) -> bytes:
        return body


class XorLink:
    """INSECURE: body = message XOR the key, repeated. The same key for every message."""

    name = "XOR with a fixed key"

    def __init__(self, key: bytes) -> None:
        self.key = key

    def seal(self, message: bytes) -> bytes:
        return xor(message, self.key)

    def open(self, body: bytes) -> bytes:
        return xor(body, self.key)


class CbcLink:
    """INSECURE: body = IV (16 random bytes) || AES-256-CBC(CBC_KEY, IV, PKCS#7(message)); no MAC."""

    name = "AES-CBC, hard-coded key, no MAC"

    def seal(self, message: bytes) -> bytes:
        iv = os.urandom(16)
        padder = padding.PKCS7(128).padder()
        padded = padder.update(message) + padder.finalize()
        enc = Cipher(algorithms.AES(CBC_KEY), modes.CBC(iv)).encryptor()
        return iv + enc.update(padded) + enc.finalize()

    def open(self, body: bytes) -> bytes:
        iv, ct = body[:16], body[16:]
        dec = Cipher(algorithms.AES(CBC_KEY), modes.CBC(iv)).decryptor()
        unpadder = padding.PKCS7(128).unpadder()
        return unpadder.update(dec.update(ct) + dec.finalize()) + unpadder.finalize()


class NoCounterLink:
    """INSECURE against replay: body = nonce (12 random bytes) || AES-256-GCM(key, nonce, message).

    Nobody can read or alter a message, but nothing ties it to one session or one position in
    it, so a recorded body is as good the second time as the first.
    """

    name = "AES-GCM, no counter (no replay protection)"

    def __init__(self, key: bytes) -> None:
        self.aead = AESGCM(key)

    def seal(self, message: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + self.aead.encrypt(nonce, message, None)

    def open(self, body: bytes) -> bytes:
        return self.aead.decrypt(body[:12], body[12:], None)


def xor(data: bytes, key: bytes) -> bytes:
    return bytes(b ^ key[i % len(key)] for i, b in enumerate(data))


class WeakServer:
    """A one-thread-per-connection server for a weak design: it opens every frame and logs it.

    `log` holds the lines a real server would print: "[RECV] #n text" for each message it
    accepted, "[WARN] ..." when a frame failed to open (then that connection is closed).
    """

    def __init__(self, link, tls: Optional[ssl.SSLContext] = None) -> None:
        self.link, self.tls = link, tls
        self.listener = socket.create_server((HOST, 0))
        self.port = self.listener.getsockname()[1]
        self.log: List[str] = []
        self.received: List[bytes] = []
        self.sessions_done = 0
        self._changed = threading.Condition()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(WAIT)
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            for body in read_frames(conn):
                try:
                    message = self.link.open(body)
                except Exception as e:  # a frame this design cannot open: close this connection
                    self._note(f"[WARN] frame refused: {type(e).__name__}", None)
                    break
                self._note(f"[RECV] #{len(self.received) + 1} {message.decode(errors='replace')}", message)
                conn.sendall(frame(b"OK"))
        except (OSError, ssl.SSLError) as e:
            self._note(f"[WARN] connection failed: {e}", None)
        finally:
            conn.close()
            with self._changed:
                self.sessions_done += 1
                self._changed.notify_all()

    def _note(self, line: str, message: Optional[bytes]) -> None:
        with self._changed:
            self.log.append(line)
            if message is not None:
                self.received.append(message)

    def wait_sessions(self, count: int) -> bool:
        """Wait (bounded) until `count` connections have ended; False if they did not."""
        deadline = time.monotonic() + WAIT
        with self._changed:
            while self.sessions_done < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
        return True

    def close(self) -> None:
        self.listener.close()


def read_frames(sock) -> Iterator[bytes]:
    """Yield each frame body until the peer closes (a partial frame at the end is dropped)."""
    buf = b""
    while True:
        while len(buf) >= 4 and len(buf) >= 4 + int.from_bytes(buf[:4], "big"):
            n = 4 + int.from_bytes(buf[:4], "big")
            yield buf[4:n]
            buf = buf[n:]
        data = sock.recv(65536)
        if not data:
            return
        buf += data


def send_messages(port: int, link, messages: List[bytes], tls: Optional[ssl.SSLContext] = None) -> List[bytes]:
    """The weak client: send each message, wait for the server's OK, close. Returns the replies."""
    replies = []
    with socket.create_connection((HOST, port), timeout=WAIT) as raw:
        conn = tls.wrap_socket(raw, server_hostname="bank.example") if tls is not None else raw
        frames = read_frames(conn)
        for message in messages:
            conn.sendall(frame(link.seal(message)))
            replies.append(next(frames, b""))
        if tls is not None:
            conn.close()
    return replies


# ---------------------------------------------------------------------------------------------
# TLS

def tls_client_context() -> ssl.SSLContext:
    """INSECURE: the one-line 'fix' for a certificate error: verify nothing."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def tls_server_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


def self_signed(directory: Path, name: str) -> Tuple[Path, Path]:
    """A new key and self-signed certificate for `name`; returns (cert.pem, key.pem) paths."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    os.chmod(key_path, 0o600)
    return cert_path, key_path


def fingerprint(cert: Path) -> str:
    der = x509.load_pem_x509_certificate(cert.read_bytes()).public_bytes(serialization.Encoding.DER)
    digest = hashes.Hash(hashes.SHA256())
    digest.update(der)
    return digest.finalize().hex()[:16]

