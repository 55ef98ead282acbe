"""seclink/1 reference implementation, written from docs/PROTOCOL.md alone.

Read it next to the spec; section numbers in comments refer to docs/PROTOCOL.md.

Layers, bottom up:
  CipherState, SymmetricState  Noise state objects (section 3.2)
  NoiseHandshake               Noise_NNpsk0_25519_AESGCM_SHA256 with any prologue and payloads (3.3-3.5)
  Connection                   seclink framing, handshake frames, transport frames, messages (2-5),
                               sans-I/O: feed it received bytes, it returns events and queues bytes to send
  load_key / generate_key / default_key_path   key files (section 6)

Only the standard library and the `cryptography` package are used.
"""

from __future__ import annotations

import base64
import hmac
import os
import re
import stat
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

PROTOCOL_NAME = b"Noise_NNpsk0_25519_AESGCM_SHA256"  # exactly 32 bytes = HASHLEN
PROLOGUE = b"SLNK\x01"
PROLOGUE_2 = b"SLNK\x02"  # section 14
MODE_PSK, MODE_SERVER_KEY, MODE_USER_KEY, MODE_PASSWORD = 0x01, 0x02, 0x03, 0x04
MODE_NAMES = {MODE_PSK: "psk", MODE_SERVER_KEY: "server-key", MODE_USER_KEY: "user-key", MODE_PASSWORD: "password"}
AUTH = 0x06  # section 16
FRAME3_MIN = 64  # section 15
MAGIC = b"SLNK"
VERSION = 0x01

DATA, CLOSE, PING, PONG = 0x01, 0x02, 0x03, 0x04
KEY_UPDATE = 0x05  # section 13
DEFAULT_REKEY_BYTES = 2**32  # section 13: T
EOF = 0x20  # section 9
# Section 10: file transfer.
FILE_PUT, FILE_GET, FILE_READY, FILE_INFO, FILE_DATA, FILE_READ, FILE_END, FILE_DONE, FILE_ERROR = (
    0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x2F)
FILE_TYPES = {FILE_PUT: "FILE_PUT", FILE_GET: "FILE_GET", FILE_READY: "FILE_READY", FILE_INFO: "FILE_INFO",
              FILE_DATA: "FILE_DATA", FILE_READ: "FILE_READ", FILE_END: "FILE_END", FILE_DONE: "FILE_DONE",
              FILE_ERROR: "FILE_ERROR"}
FILE_CHUNK = 262144
FILE_CODES = {1: "NO_FILES", 2: "BAD_NAME", 3: "EXISTS", 4: "NOT_FOUND", 5: "TOO_LARGE", 6: "QUOTA", 7: "DISK_FULL",
              8: "HASH_MISMATCH", 9: "BUSY", 10: "IO", 11: "SIZE_MISMATCH"}
TYPE_NAMES = {DATA: "DATA", CLOSE: "CLOSE", PING: "PING", PONG: "PONG", KEY_UPDATE: "KEY_UPDATE", EOF: "EOF", **FILE_TYPES}
MAX_PING = 64
DEFAULT_MAX_MESSAGE = 16 * 1024 * 1024

FRAME1_MIN, FRAME2_MIN, HANDSHAKE_MAX = 53, 48, 1024  # section 2 table
FIRST_FRAME_MAX = 1024  # section 4.1: a server's bound until the key is confirmed
IV_LEN, TAG_LEN = 12, 16
TRANSPORT_OVERHEAD = IV_LEN + 1 + TAG_LEN  # 29: iv, type byte, tag
MAX_PSKS = 16  # section 12: keys a server tries on frame 1
MAX_NONCE = 2**64 - 1  # reserved: a counter that reaches it must not be used

# Section 7: name -> meaning (the numbers belong to the C ABI and are not needed here).
ERRORS = {
    "FRAME_TOO_SHORT": "frame length below the smallest body for the state",
    "FRAME_TOO_LARGE": "frame length above the largest body for the state",
    "BAD_MAGIC": "frame 1 does not start with SLNK: not a seclink peer",
    "BAD_VERSION": "frame 1 names a version other than 1",
    "HANDSHAKE_AUTH": "a handshake payload failed to decrypt: the PSKs differ",
    "WEAK_KEY": "the peer's ephemeral key is a low-order point",
    "BAD_COUNTER": "transport IV is not the next counter: replay, reorder or loss",
    "AUTH": "transport frame failed authentication: tampered or foreign",
    "BAD_TYPE": "unknown message type",
    "BAD_PING": "PING/PONG content over 64 bytes",
    "BAD_KEY_UPDATE": "a KEY_UPDATE with content",
    "SERVER_KEY_UNKNOWN": "the server's static key is not one this client expects",
    "SERVER_KEY_CHANGED": "the server's static key differs from the one this client expects",
    "MODE_REFUSED": "the server does not accept the handshake mode asked for",
    "BAD_AUTH": "mode 4: the first frame is not a well-formed AUTH",
    "MSG_TOO_LARGE": "message content over max_message",
    "NONCE_EXHAUSTED": "counter reached 2^64-1: open a new connection",
    "TRUNCATED": "the stream ended inside a frame",
    "BAD_EOF": "EOF with content, a second EOF, or DATA after EOF (section 9)",
    "BAD_FILE_MSG": "a file message with a bad layout, or out of turn (section 10)",
}


class ProtocolError(Exception):
    """A seclink/1 protocol error; `.name` is its section 7 name. Fatal to the connection."""

    def __init__(self, name: str) -> None:
        assert name in ERRORS, name
        super().__init__(f"{name}: {ERRORS[name]}")
        self.name = name


# --------------------------------------------------------------------------- Noise (section 3)

def nonce(n: int) -> bytes:
    """The 12-byte AES-GCM nonce (and the transport IV): 0x00000000 || u64be(n)."""
    return b"\x00" * 4 + n.to_bytes(8, "big")


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, sha256).digest()


def hkdf(ck: bytes, ikm: bytes, outputs: int) -> list[bytes]:
    """Noise's HKDF (section 3.1): two or three 32-byte outputs."""
    t = hmac_sha256(ck, ikm)
    out = [hmac_sha256(t, b"\x01")]
    for i in range(2, outputs + 1):
        out.append(hmac_sha256(t, out[-1] + bytes([i])))
    return out


def dh(priv: X25519PrivateKey, pub: bytes) -> bytes:
    """X25519; an all-zero result (low-order peer key) aborts the handshake with WEAK_KEY."""
    try:
        shared = priv.exchange(X25519PublicKey.from_public_bytes(pub))
    except ValueError:  # cryptography refuses an all-zero shared secret
        raise ProtocolError("WEAK_KEY") from None
    if hmac.compare_digest(shared, bytes(32)):  # belt and braces; never reached with cryptography
        raise ProtocolError("WEAK_KEY")
    return shared


def rekey(key: bytes) -> bytes:
    """Section 13: REKEY(k) = the first 32 bytes of ENCRYPT(k, 2^64-1, empty, 32 zero bytes)."""
    return AESGCM(key).encrypt(nonce(MAX_NONCE), bytes(32), b"")[:32]


class CipherState:
    """A key and its counter. Encrypts with AES-256-GCM, nonce = nonce(n)."""

    def __init__(self, key: bytes | None = None) -> None:
        self.key = key
        self.n = 0

    def encrypt_with_ad(self, ad: bytes, plaintext: bytes) -> bytes:
        if self.key is None:
            return plaintext
        if self.n >= MAX_NONCE:
            raise ProtocolError("NONCE_EXHAUSTED")
        ciphertext = AESGCM(self.key).encrypt(nonce(self.n), plaintext, ad)
        self.n += 1
        return ciphertext

    def decrypt_with_ad(self, ad: bytes, ciphertext: bytes) -> bytes:
        """Raises cryptography's InvalidTag on failure; `n` then stays unchanged."""
        if self.key is None:
            return ciphertext
        plaintext = AESGCM(self.key).decrypt(nonce(self.n), ciphertext, ad)
        self.n += 1
        return plaintext


class SymmetricState:
    """ck, h and a CipherState, with the operations of section 3.2."""

    def __init__(self, prologue: bytes, name: bytes = PROTOCOL_NAME) -> None:
        assert len(name) == 32  # both names are 32 bytes, so used as is (not hashed)
        self.h = name
        self.ck = name
        self.cipher = CipherState()
        self.mix_hash(prologue)

    def mix_hash(self, data: bytes) -> None:
        self.h = sha256(self.h + data).digest()

    def mix_key(self, ikm: bytes) -> None:
        self.ck, temp_k = hkdf(self.ck, ikm, 2)
        self.cipher = CipherState(temp_k)

    def mix_key_and_hash(self, ikm: bytes) -> None:
        self.ck, temp_h, temp_k = hkdf(self.ck, ikm, 3)
        self.mix_hash(temp_h)
        self.cipher = CipherState(temp_k)

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        ciphertext = self.cipher.encrypt_with_ad(self.h, plaintext)
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        try:
            plaintext = self.cipher.decrypt_with_ad(self.h, ciphertext)
        except InvalidTag:
            raise ProtocolError("HANDSHAKE_AUTH") from None
        self.mix_hash(ciphertext)
        return plaintext

    def split(self) -> tuple[CipherState, CipherState]:
        k1, k2 = hkdf(self.ck, b"", 2)
        return CipherState(k1), CipherState(k2)


def public_bytes(priv: X25519PrivateKey) -> bytes:
    return priv.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


class NoiseHandshake:
    """Noise_NNpsk0_25519_AESGCM_SHA256:  -> psk, e   <- e, ee   (sections 3.3-3.5).

    Noise messages only (no "SLNK" header, no length prefix); payloads may be non-empty and the
    prologue is a parameter, so this class also runs the public Noise test vectors.
    """

    def __init__(self, initiator: bool, psk: bytes, *, prologue: bytes = PROLOGUE,
                 ephemeral: bytes | None = None) -> None:
        if len(psk) != 32:
            raise ValueError("the PSK must be 32 bytes")
        self.initiator = initiator
        self._psk = psk
        self._e = (X25519PrivateKey.from_private_bytes(ephemeral) if ephemeral is not None
                   else X25519PrivateKey.generate())
        self._ss: SymmetricState | None = SymmetricState(prologue)
        self.handshake_hash: bytes | None = None  # set by split()

    def write_message_1(self, payload: bytes = b"") -> bytes:
        """Initiator: e.pub || EncryptAndHash(payload)."""
        ss = self._ss
        e_pub = public_bytes(self._e)
        ss.mix_key_and_hash(self._psk)          # "psk"
        ss.mix_hash(e_pub)                      # "e" ...
        ss.mix_key(e_pub)                       # ... plus MixKey, because a PSK is in use
        return e_pub + ss.encrypt_and_hash(payload)

    def read_message_1(self, message: bytes) -> bytes:
        """Responder: returns the payload; HANDSHAKE_AUTH if the PSKs differ."""
        ss = self._ss
        self._re, c1 = message[:32], message[32:]
        ss.mix_key_and_hash(self._psk)
        ss.mix_hash(self._re)
        ss.mix_key(self._re)
        return ss.decrypt_and_hash(c1)

    def write_message_2(self, payload: bytes = b"") -> bytes:
        """Responder: e.pub || EncryptAndHash(payload); WEAK_KEY if the initiator's key is low-order."""
        ss = self._ss
        e_pub = public_bytes(self._e)
        ss.mix_hash(e_pub)
        ss.mix_key(e_pub)
        ss.mix_key(dh(self._e, self._re))       # "ee"
        return e_pub + ss.encrypt_and_hash(payload)

    def read_message_2(self, message: bytes) -> bytes:
        """Initiator: returns the payload; WEAK_KEY or HANDSHAKE_AUTH on failure."""
        ss = self._ss
        re_pub, c2 = message[:32], message[32:]
        ss.mix_hash(re_pub)
        ss.mix_key(re_pub)
        ss.mix_key(dh(self._e, re_pub))          # checked before the tag: WEAK_KEY wins
        return ss.decrypt_and_hash(c2)

    def split(self) -> tuple[CipherState, CipherState]:
        """(initiator-to-responder, responder-to-initiator); erases ck, k and e.priv."""
        send_i, send_r = self._ss.split()
        self.handshake_hash = self._ss.h
        # Python cannot wipe memory; dropping the references is the best it can do.
        self._ss = None
        self._e = None
        return send_i, send_r


class NXpsk2Handshake:
    """Section 14: Noise_NXpsk2_25519_AESGCM_SHA256:  -> e   <- e, ee, s, es, psk.

    The same interface as NoiseHandshake; the responder has a static key `static`, the
    initiator learns it as `remote_static` from message 2."""

    NAME = b"Noise_NXpsk2_25519_AESGCM_SHA256"  # exactly 32 bytes

    def __init__(self, initiator: bool, psk: bytes, *, prologue: bytes = PROLOGUE_2,
                 ephemeral: bytes | None = None, static: bytes | None = None) -> None:
        self.initiator = initiator
        self._psk = psk
        self._e = (X25519PrivateKey.from_private_bytes(ephemeral) if ephemeral is not None
                   else X25519PrivateKey.generate())
        self._s = X25519PrivateKey.from_private_bytes(static) if static is not None else None
        self._ss: SymmetricState | None = SymmetricState(prologue, name=self.NAME)
        self.remote_static: bytes | None = None
        self.handshake_hash: bytes | None = None

    def write_message_1(self, payload: bytes = b"") -> bytes:
        ss, e_pub = self._ss, public_bytes(self._e)
        ss.mix_hash(e_pub)
        ss.mix_key(e_pub)                        # "e" with a PSK in the pattern
        return e_pub + ss.encrypt_and_hash(payload)

    def read_message_1(self, message: bytes) -> bytes:
        ss = self._ss
        self._re, c1 = message[:32], message[32:]
        ss.mix_hash(self._re)
        ss.mix_key(self._re)
        return ss.decrypt_and_hash(c1)

    def write_message_2(self, payload: bytes = b"") -> bytes:
        ss, e_pub = self._ss, public_bytes(self._e)
        ss.mix_hash(e_pub)
        ss.mix_key(e_pub)                        # "e"
        ss.mix_key(dh(self._e, self._re))        # "ee"
        cs = ss.encrypt_and_hash(public_bytes(self._s))  # "s"
        ss.mix_key(dh(self._s, self._re))        # "es" (responder: DH(s, re))
        ss.mix_key_and_hash(self._psk)           # "psk"
        return e_pub + cs + ss.encrypt_and_hash(payload)

    def read_message_2(self, message: bytes) -> bytes:
        ss = self._ss
        re_pub, cs, c2 = message[:32], message[32:80], message[80:]
        ss.mix_hash(re_pub)
        ss.mix_key(re_pub)
        ss.mix_key(dh(self._e, re_pub))          # "ee"
        rs = ss.decrypt_and_hash(cs)             # "s"
        ss.mix_key(dh(self._e, rs))              # "es" (initiator: DH(e, rs))
        ss.mix_key_and_hash(self._psk)           # "psk"
        payload = ss.decrypt_and_hash(c2)
        self.remote_static = rs
        return payload

    split = NoiseHandshake.split


class XXpsk3Handshake(NXpsk2Handshake):
    """Section 15: Noise_XXpsk3_25519_AESGCM_SHA256:  -> e   <- e, ee, s, es   -> s, se, psk.

    Message 1 is NXpsk2's; the initiator has a static key `static` too, which the responder
    learns as `remote_static` from message 3."""

    NAME = b"Noise_XXpsk3_25519_AESGCM_SHA256"

    def __init__(self, initiator: bool, psk: bytes, *, prologue: bytes = b"SLNK\x03",
                 ephemeral: bytes | None = None, static: bytes | None = None) -> None:
        super().__init__(initiator, psk, prologue=prologue, ephemeral=ephemeral, static=static)

    def write_message_2(self, payload: bytes = b"") -> bytes:
        ss, e_pub = self._ss, public_bytes(self._e)
        ss.mix_hash(e_pub)
        ss.mix_key(e_pub)                        # "e"
        ss.mix_key(dh(self._e, self._re))        # "ee"
        cs = ss.encrypt_and_hash(public_bytes(self._s))  # "s"
        ss.mix_key(dh(self._s, self._re))        # "es"
        return e_pub + cs + ss.encrypt_and_hash(payload)

    def read_message_2(self, message: bytes) -> bytes:
        ss = self._ss
        self._re, cs, c2 = message[:32], message[32:80], message[80:]
        ss.mix_hash(self._re)
        ss.mix_key(self._re)
        ss.mix_key(dh(self._e, self._re))        # "ee"
        rs = ss.decrypt_and_hash(cs)             # "s"
        ss.mix_key(dh(self._e, rs))              # "es"
        payload = ss.decrypt_and_hash(c2)
        self.remote_static = rs
        return payload

    def write_message_3(self, payload: bytes = b"") -> bytes:
        ss = self._ss
        cc = ss.encrypt_and_hash(public_bytes(self._s))  # "s"
        ss.mix_key(dh(self._s, self._re))        # "se" (initiator: DH(s, re))
        ss.mix_key_and_hash(self._psk)           # "psk"
        return cc + ss.encrypt_and_hash(payload)

    def read_message_3(self, message: bytes, psks: list[bytes] | None = None) -> tuple[bytes, int]:
        """The payload, and which of `psks` (section 12; default: this handshake's one PSK) it
        verified under: `s` and `se` once, then `psk` and the payload from that same state with
        each key in turn; the first whose tag verifies wins."""
        ss = self._ss
        rc = ss.decrypt_and_hash(message[:48])   # "s"
        ss.mix_key(dh(self._e, rc))              # "se" (responder: DH(e, rs))
        ck, h = ss.ck, ss.h
        for i, key in enumerate(psks or [self._psk]):
            ss.ck, ss.h = ck, h
            ss.mix_key_and_hash(key)             # "psk"
            try:
                payload = ss.decrypt_and_hash(message[48:])
            except ProtocolError:
                continue
            self.remote_static = rc
            return payload, i
        raise ProtocolError("HANDSHAKE_AUTH")


def password_matches(line: str, name: str, password: bytes) -> bool:
    """Section 16: `line` of a users file (NAME scrypt N r p SALT HASH) holds this name and password."""
    import hashlib
    fields = line.split()
    if len(fields) != 7 or fields[0] != name or fields[1] != "scrypt":
        return False
    n, r, p = int(fields[2]), int(fields[3]), int(fields[4])
    want = base64.b64decode(fields[6])
    got = hashlib.scrypt(password, salt=base64.b64decode(fields[5]), n=n, r=r, p=p, dklen=len(want),
                         maxmem=2 * 128 * r * (n + p + 2))
    return hmac.compare_digest(got, want)


def modes_frame(accepted: list[int]) -> bytes:
    """Section 14.2: how a server answers a frame 1 in a mode it does not accept."""
    body = MAGIC + b"\x00" + bytes([len(accepted)]) + bytes(sorted(accepted))
    body += bytes(max(0, 48 - len(body)))
    return len(body).to_bytes(4, "big") + body


def fingerprint(pub: bytes) -> str:
    """Section 14.3: base32 of the first 20 bytes of SHA-256(pub), in groups of 4."""
    text = base64.b32encode(sha256(pub).digest()[:20]).decode()
    return "-".join(text[i:i + 4] for i in range(0, 32, 4))


# --------------------------------------------------------------------------- seclink (sections 2, 4, 5)

@dataclass(frozen=True)
class HandshakeDone:
    """The handshake completed; the connection can send and receive messages."""


@dataclass(frozen=True)
class Message:
    """A DATA, PING, PONG or EOF message (a PING has already been answered with a PONG)."""
    type: int
    content: bytes


@dataclass(frozen=True)
class Auth:
    """Section 16 (server, mode 4): the client's user name and password, for the server to check."""
    name: str
    password: bytes


@dataclass(frozen=True)
class Closed:
    """The peer sent CLOSE (reason: its text, invalid UTF-8 replaced), or the stream ended
    between frames without a CLOSE (reason None: the peer vanished)."""
    reason: str | None


Event = HandshakeDone | Message | Closed | Auth


class Connection:
    """One side of a seclink/1 connection, without I/O.

    Feed received bytes to receive() (it returns events), call eof() when the stream ends, and
    write data_to_send() to the stream after every call. A ProtocolError is fatal: the
    connection then refuses everything (close the stream; a server sends nothing more).
    """

    def __init__(self, role: str, psk: bytes, *, ephemeral: bytes | None = None,
                 max_message: int = DEFAULT_MAX_MESSAGE, key_confirmation: bool = True,
                 psks: list[bytes] | None = None, rekey_bytes: int = DEFAULT_REKEY_BYTES,
                 mode: int = MODE_PSK, static: bytes | None = None, server_key: bytes | None = None,
                 accepted_modes: list[int] | None = None, identity: bytes | None = None,
                 login: tuple[str, bytes] | None = None) -> None:
        if role not in ("client", "server"):
            raise ValueError("role must be 'client' or 'server'")
        if psks is not None and (role != "server" or not 1 <= len(psks) <= MAX_PSKS):
            raise ValueError(f"psks: a server's list of 1 to {MAX_PSKS} keys (section 12)")
        self.role = role
        self.max_message = max_message
        self._ephemeral = ephemeral
        self._psks = psks            # section 12: the keys a server tries on frame 1, in order
        self._rekey_bytes = rekey_bytes  # section 13: T
        self._sent_under_key = 0
        self.psk_index: int | None = None  # which of them matched
        # Section 14. Client: the mode it asks for and the server key it expects (None: any key
        # is SERVER_KEY_UNKNOWN); what it learned: server_static, server_modes. Server: its
        # static private key and the modes it accepts.
        self.mode = mode
        self._psk, self._static, self._expected = psk, static, server_key
        self.accepted_modes = accepted_modes or ([MODE_PSK] + ([MODE_SERVER_KEY, MODE_USER_KEY] if static else []))
        self.server_static: bytes | None = None
        self.client_static: bytes | None = None  # section 15: server, after frame 3
        self._login = login  # section 16: a mode-4 client's (name, password)
        self.server_modes: list[int] | None = None
        if mode in (MODE_SERVER_KEY, MODE_PASSWORD) and role == "client":
            self._noise = NXpsk2Handshake(True, psk, ephemeral=ephemeral, prologue=MAGIC + bytes([mode]))
        elif mode == MODE_USER_KEY and role == "client":
            self._noise = XXpsk3Handshake(True, psk, ephemeral=ephemeral, static=identity)
        else:
            self._noise = NoiseHandshake(role == "client", psk, ephemeral=ephemeral)
        # states: "new" (client before start), "frame1" (server waits for it),
        # "frame2" (client waits for it), "transport", "closed" (CLOSE received or stream ended)
        self._state = "new" if role == "client" else "frame1"
        self._in = bytearray()
        self._out = bytearray()
        self._send: CipherState | None = None
        self._recv: CipherState | None = None
        self._sent_close = False
        self._sent_eof = self._peer_eof = False  # section 9
        self._error: ProtocolError | None = None
        # Section 4.1. Client: send the empty PING first (False only to replay the `wire`
        # vectors) and swallow its PONG. Server: the key is confirmed by the first valid frame.
        self._key_confirmation = key_confirmation
        self._confirmed = False
        self._await_pong = False

    @property
    def handshake_hash(self) -> bytes | None:
        """h after frame 2 (not secret; identifies the session), or None before."""
        return self._noise.handshake_hash

    # ---- driving the connection

    def start(self) -> None:
        """Client: queue handshake frame 1. Server: nothing to do (it waits for frame 1)."""
        if self.role == "client":
            if self._state != "new":
                raise ValueError("already started")
            self._queue_frame(MAGIC + bytes([self.mode]) + self._noise.write_message_1())
            self._state = "frame2"

    def receive(self, data: bytes) -> list[Event]:
        """Process received bytes; returns the events of every complete frame among them."""
        self._check_alive()
        if self._state == "new":
            raise ValueError("the client must start() before it receives")
        if self._state == "closed":
            return []  # after CLOSE, further bytes are ignored (section 5)
        self._in += data
        events: list[Event] = []
        try:
            while self._state != "closed":
                body = self._next_frame()
                if body is None:
                    break
                events += self._handle_frame(body)
        except ProtocolError as error:
            self._fail(error)
            raise
        return events

    def eof(self) -> list[Event]:
        """The stream ended. TRUNCATED if inside a frame; else Closed(None) unless CLOSE came."""
        self._check_alive()
        if self._state == "closed":
            return []
        if self._in:
            self._fail(ProtocolError("TRUNCATED"))
            raise self._error
        self._state = "closed"
        return [Closed(None)]

    def send(self, type: int, content: bytes = b"") -> None:
        """Queue one message (section 5)."""
        self._check_alive()
        if self._state != "transport" or self._sent_close:
            raise ValueError("cannot send: handshake not done or connection closed")
        if type not in TYPE_NAMES or type == KEY_UPDATE:
            raise ValueError(f"cannot send message type {type:#04x} (KEY_UPDATE: use rekey())")
        # Refusals before anything is queued: the connection stays usable (section 7).
        if type in (PING, PONG) and len(content) > MAX_PING:
            raise ProtocolError("BAD_PING")
        if len(content) > self.max_message:
            raise ProtocolError("MSG_TOO_LARGE")
        if type == EOF and content:
            raise ValueError("an EOF has no content (section 9)")
        if type in (DATA, EOF) and self._sent_eof:
            raise ValueError("nothing but PING, PONG and CLOSE after our EOF (section 9)")
        self._queue_transport(bytes([type]) + content)
        if type == CLOSE:
            self._sent_close = True
        if type == EOF:
            self._sent_eof = True

    def rekey(self) -> None:
        """Section 13: queue a KEY_UPDATE, then send under REKEY(k)."""
        self._check_alive()
        if self._state != "transport" or self._sent_close:
            raise ValueError("cannot rekey: handshake not done or connection closed")
        self._seal(bytes([KEY_UPDATE]))
        self._send.key = rekey(self._send.key)
        self._sent_under_key = 0

    def close(self, reason: str = "") -> None:
        """Queue a CLOSE; the caller then closes the stream once data_to_send() is written."""
        self.send(CLOSE, reason.encode("utf-8"))

    def data_to_send(self) -> bytes:
        """The bytes queued for the peer (and forget them)."""
        out = bytes(self._out)
        self._out.clear()
        return out

    # ---- internals

    def _check_alive(self) -> None:
        if self._error is not None:
            raise ProtocolError(self._error.name)

    def _fail(self, error: ProtocolError) -> None:
        self._error = error
        self._in.clear()
        self._out.clear()  # after a fatal error nothing more is sent

    def _queue_frame(self, body: bytes) -> None:
        self._out += len(body).to_bytes(4, "big") + body

    def _queue_transport(self, plaintext: bytes) -> None:
        """Seal one message; then, past the section 13 threshold, a KEY_UPDATE."""
        self._seal(plaintext)
        if plaintext[0] in (KEY_UPDATE, CLOSE):
            return
        self._sent_under_key += len(plaintext) + TAG_LEN
        if self._sent_under_key >= self._rekey_bytes:
            self.rekey()

    def _seal(self, plaintext: bytes) -> None:
        """iv || ENCRYPT(k, n, empty, plaintext), n = our counter (section 4)."""
        iv = nonce(self._send.n)
        self._queue_frame(iv + self._send.encrypt_with_ad(b"", plaintext))

    def _bounds(self) -> tuple[int, int]:
        if self._state == "frame1":
            return FRAME1_MIN, HANDSHAKE_MAX
        if self._state == "frame2":
            return FRAME2_MIN, HANDSHAKE_MAX
        if self._state == "frame3":
            return FRAME3_MIN, HANDSHAKE_MAX
        largest = self.max_message + TRANSPORT_OVERHEAD
        if self.role == "server" and not self._confirmed:
            largest = min(largest, FIRST_FRAME_MAX)  # section 4.1
        return TRANSPORT_OVERHEAD, largest

    def _next_frame(self) -> bytes | None:
        """The next complete frame body, or None if more bytes are needed.

        The length is checked as soon as the 4-byte prefix is here, before waiting for the body.
        """
        if len(self._in) < 4:
            return None
        n = int.from_bytes(self._in[:4], "big")
        smallest, largest = self._bounds()
        if n < smallest:
            raise ProtocolError("FRAME_TOO_SHORT")
        if n > largest:
            raise ProtocolError("FRAME_TOO_LARGE")
        if len(self._in) < 4 + n:
            return None
        body = bytes(self._in[4:4 + n])
        del self._in[:4 + n]
        return body

    def _handle_frame(self, body: bytes) -> list[Event]:
        if self._state == "frame1":
            # Server, section 3.3: magic, then version, then the Noise message.
            if body[:4] != MAGIC:
                raise ProtocolError("BAD_MAGIC")
            if body[4] not in MODE_NAMES or body[4] not in self.accepted_modes:
                raise ProtocolError("BAD_VERSION")  # section 14.2: answered with modes_frame()
            if body[4] != MODE_PSK:  # sections 14.1, 12: the first PSK (mode 3: until frame 3)
                kind = XXpsk3Handshake if body[4] == MODE_USER_KEY else NXpsk2Handshake
                self._noise = kind(False, self._psks[0] if self._psks else self._psk, prologue=body[:5],
                                   ephemeral=self._ephemeral, static=self._static)
                self.mode = body[4]
                self._noise.read_message_1(body[5:])
                self.psk_index = 0
                if body[4] == MODE_USER_KEY:  # frame 2, then frame 3 completes the handshake
                    self._queue_frame(self._noise.write_message_2())
                    self._state = "frame3"
                    return []
            elif self._psks is None:
                self._noise.read_message_1(body[5:])   # payload ignored in version 1
                self.psk_index = 0
            else:
                self._read_message_1_any_key(body[5:])
            frame2 = self._noise.write_message_2()  # may raise WEAK_KEY: then nothing is sent
            self._queue_frame(frame2)
            self._recv, self._send = self._noise.split()
            self._state = "transport"
            return [HandshakeDone()]
        if self._state == "frame3":                 # section 15 (server); section 12: any of its keys
            _, self.psk_index = self._noise.read_message_3(body, self._psks)
            self.client_static = self._noise.remote_static
            self._recv, self._send = self._noise.split()
            self._state = "transport"
            self._confirmed = True
            return [HandshakeDone()]
        if self._state == "frame2":
            if body[:5] == MAGIC + b"\x00":          # section 14.2: the modes the server accepts
                self.server_modes = list(body[6:6 + body[5]])
                raise ProtocolError("MODE_REFUSED")
            self._noise.read_message_2(body)        # payload ignored in version 1
            if self.mode != MODE_PSK:               # 11.1: c2 verified; now the key
                self.server_static = self._noise.remote_static
                if self._expected is None:
                    raise ProtocolError("SERVER_KEY_UNKNOWN")
                if not hmac.compare_digest(self._expected, self.server_static):
                    raise ProtocolError("SERVER_KEY_CHANGED")
            if self.mode == MODE_USER_KEY:          # section 15: frame 3, no confirmation PING
                self._queue_frame(self._noise.write_message_3())
                self._send, self._recv = self._noise.split()
                self._state = "transport"
                self._confirmed = True
                return [HandshakeDone()]
            self._send, self._recv = self._noise.split()
            self._state = "transport"
            self._confirmed = True                  # frame 2 proved the server's key
            if self.mode == MODE_PASSWORD:          # section 16: AUTH goes first, not the PING
                name, password = self._login
                self._seal(bytes([AUTH, len(name)]) + name.encode() + password)
            elif self._key_confirmation:            # section 4.1: the empty PING goes first
                self._queue_transport(bytes([PING]))
                self._await_pong = True
            return [HandshakeDone()]
        return self._handle_transport(body)

    def _read_message_1_any_key(self, message: bytes) -> None:
        """Section 12: a fresh handshake state per key, in order; the first whose tag verifies wins."""
        for i, key in enumerate(self._psks):
            noise = NoiseHandshake(False, key, ephemeral=self._ephemeral)
            try:
                noise.read_message_1(message)
            except ProtocolError as e:
                if e.name != "HANDSHAKE_AUTH":
                    raise
                continue
            self._noise, self.psk_index = noise, i
            return
        raise ProtocolError("HANDSHAKE_AUTH")

    def _handle_transport(self, body: bytes) -> list[Event]:
        # Section 4: the IV must be exactly the next counter, checked before decrypting.
        # (The IV is public, so a plain comparison is fine.)
        if body[:IV_LEN] != nonce(self._recv.n):
            raise ProtocolError("BAD_COUNTER")
        try:
            plaintext = self._recv.decrypt_with_ad(b"", body[IV_LEN:])  # counter += 1 on success
        except InvalidTag:
            raise ProtocolError("AUTH") from None
        type, content = plaintext[0], plaintext[1:]
        first = not self._confirmed
        self._confirmed = True  # (server) a valid frame from the client: it holds the key
        if self.role == "server" and self.mode == MODE_PASSWORD and first:  # section 16
            n = content[0] if content else 0
            if type != AUTH or not 1 <= n <= 32 or len(content) < 1 + n or len(content) - 1 - n > 1024:
                raise ProtocolError("BAD_AUTH")
            return [Auth(content[1:1 + n].decode("utf-8", "replace"), content[1 + n:])]
        if type == DATA:
            if self._peer_eof:
                raise ProtocolError("BAD_EOF")  # DATA after the peer's EOF (section 9)
            return [Message(DATA, content)]
        if type in FILE_TYPES:  # section 10: their layout is the file layer's to check
            return [Message(type, content)]
        if type == EOF:
            if content or self._peer_eof:
                raise ProtocolError("BAD_EOF")
            self._peer_eof = True
            return [Message(EOF, b"")]
        if type == CLOSE:
            self._state = "closed"
            self._in.clear()
            return [Closed(content.decode("utf-8", errors="replace"))]
        if type in (PING, PONG):
            if len(content) > MAX_PING:
                raise ProtocolError("BAD_PING")
            if type == PING and not self._sent_close:
                self._queue_transport(bytes([PONG]) + content)
            if type == PONG and self._await_pong:  # the answer to the confirmation PING
                self._await_pong = False
                return []
            return [Message(type, content)]
        if type == KEY_UPDATE:  # section 13: the next frame is opened with REKEY(k)
            if content:
                raise ProtocolError("BAD_KEY_UPDATE")
            self._recv.key = rekey(self._recv.key)
            return []
        raise ProtocolError("BAD_TYPE")


# --------------------------------------------------------------------------- key files (section 6)

class KeyFileError(Exception):
    """A key file problem; `.name` is its section 6 name, `.message` says how to fix it."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message


# Canonical standard base64 (RFC 4648 section 4): groups of 4, last one possibly padded.
_BASE64 = re.compile(rb"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")


def load_key(path: str | os.PathLike[str]) -> bytes:
    """Read a PSK file, refusing anything section 6 refuses. Never puts the key in a message."""
    try:
        st = os.lstat(path)  # lstat: a symbolic link is itself refused
    except (FileNotFoundError, NotADirectoryError):
        raise KeyFileError("KEY_NOT_FOUND", f"no key file at {path}: generate one with --keygen, "
                           "or point to an existing one with --psk-file or SECLINK_PSK_FILE") from None
    if stat.S_ISLNK(st.st_mode):
        raise KeyFileError("KEY_SYMLINK", f"{path} is a symbolic link: point at the real file")
    if not stat.S_ISREG(st.st_mode):
        raise KeyFileError("KEY_NOT_FILE", f"{path} is not a regular file: point at a key file")
    euid = os.geteuid()  # root may read anyone's key (the library warns; the reference just reads)
    if st.st_uid != euid and euid != 0:
        raise KeyFileError("KEY_OWNER", f"{path} belongs to another user: use a key file of your own")
    folder = os.stat(os.path.dirname(os.fspath(path)) or ".")  # where a symlinked directory leads
    if folder.st_mode & 0o022 or (folder.st_uid not in (euid, 0) and euid != 0):
        raise KeyFileError("KEY_DIR", f"the directory of {path} can be changed by another user: "
                           "run chmod go-w on it, or move the key to a directory of your own")
    if st.st_mode & 0o077:
        raise KeyFileError("KEY_PERMISSIONS", f"{path} is accessible by group or others "
                           f"(mode {stat.S_IMODE(st.st_mode):04o}): run chmod 600 {path}")
    # O_NOFOLLOW: if the file was swapped for a link since lstat, opening fails.
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as f:
        text = f.read()
    if text.endswith(b"\n"):
        text = text[:-1]  # one optional newline, nothing else
    regenerate = "regenerate it with --keygen (and give the new file to every peer)"
    if not text or not _BASE64.fullmatch(text):
        raise KeyFileError("KEY_FORMAT", f"{path} is not one line of base64: {regenerate}")
    key = base64.b64decode(text, validate=True)
    if base64.b64encode(key) != text:  # non-zero unused bits: not *the* base64 of any key
        raise KeyFileError("KEY_FORMAT", f"{path} is not canonical base64: {regenerate}")
    if len(key) != 32:
        raise KeyFileError("KEY_SIZE", f"{path} holds {len(key)} bytes, not 32: {regenerate}")
    return key


def generate_key(path: str | os.PathLike[str]) -> bytes:
    """Write a new random PSK file with mode 0600 (never replacing a file) and return the key."""
    path = Path(path)
    for parent in reversed(path.parents):  # missing parent directories get mode 0700
        if not parent.exists():
            try:
                os.mkdir(parent, 0o700)
            except FileExistsError:
                pass
    key = os.urandom(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        raise KeyFileError("KEY_EXISTS", f"{path} already exists: keep using it, or remove it "
                           "first if you really want a new key (peers with the old one will "
                           "no longer connect)") from None
    with os.fdopen(fd, "wb") as f:
        f.write(base64.b64encode(key) + b"\n")
    return key


def default_key_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Section 6 location: explicit path, SECLINK_PSK_FILE, $XDG_CONFIG_HOME, then $HOME."""
    if explicit:
        return Path(explicit)
    if os.environ.get("SECLINK_PSK_FILE"):
        return Path(os.environ["SECLINK_PSK_FILE"])
    xdg = os.environ.get("XDG_CONFIG_HOME", "")
    if os.path.isabs(xdg):  # set and absolute
        return Path(xdg, "seclink", "psk")
    home = os.environ.get("HOME")
    if not home:
        raise KeyFileError("KEY_NOT_FOUND", "HOME is not set, so there is no default key file: "
                           "use --psk-file or SECLINK_PSK_FILE")
    return Path(home, ".config", "seclink", "psk")


def describe(content: bytes) -> str:
    """How the reference peers show a message: its text if printable UTF-8, else its size."""
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    return text if text is not None and text.isprintable() else f"<{len(content)} bytes binary>"
