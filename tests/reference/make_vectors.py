"""Write tests/vectors/seclink_v1.json, the seclink/1 test vectors (docs/PROTOCOL.md section 8).

Deterministic: fixed PSK and ephemerals, so running it twice gives the same file.

    python3 -m tests.reference.make_vectors
"""

from __future__ import annotations

import json
from hashlib import sha256
from pathlib import Path
from typing import Any

from .seclink_ref import (CLOSE, DATA, EOF, FILE_DATA, FILE_DONE, FILE_END, FILE_GET, FILE_INFO, FILE_PUT, FILE_READ,
                          FILE_READY, MAGIC, PING, PONG, PROLOGUE, TYPE_NAMES, VERSION, Connection,
                          DEFAULT_MAX_MESSAGE, SymmetricState)

VECTORS_PATH = Path(__file__).resolve().parents[1] / "vectors" / "seclink_v1.json"
ROTATION_PATH = VECTORS_PATH.with_name("seclink_v1_rotation.json")
REKEY_PATH = VECTORS_PATH.with_name("seclink_v1_rekey.json")
SERVER_KEY_PATH = VECTORS_PATH.with_name("seclink_v1_server_key.json")
SERVER_STATIC = sha256(b"seclink server static").digest()
USER_KEY_PATH = VECTORS_PATH.with_name("seclink_v1_user_key.json")
CLIENT_STATIC = sha256(b"seclink client identity").digest()
PASSWORD_PATH = VECTORS_PATH.with_name("seclink_v1_password.json")
REKEY_T = 64  # section 13's threshold, low so that both sides rekey every few frames

PSK = bytes(range(32))
CLIENT_EPHEMERAL = sha256(b"seclink client ephemeral").digest()
SERVER_EPHEMERAL = sha256(b"seclink server ephemeral").digest()
OTHER_PSK = sha256(b"seclink other psk").digest()                       # a peer with another key
OTHER_CLIENT_EPHEMERAL = sha256(b"seclink other session").digest()     # another session, same PSK
MAX_MESSAGE = DEFAULT_MAX_MESSAGE

# Low-order X25519 points: the shared secret with any key is all zeros.
ZERO_POINT = bytes(32)
ORDER8_POINT = bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800")

# The connection: (sender, kind, message type, content). handshake2 and the PONG are not
# requested by the script: the server queues them itself on receiving frame 1 and the PING.
SCRIPT: list[tuple[str, str, int | None, bytes | None]] = [
    ("client", "handshake1", None, None),
    ("server", "handshake2", None, None),
    ("client", "transport", DATA, b"hello, seclink"),
    ("server", "transport", DATA, b"ACK: received 14 bytes"),
    ("client", "transport", DATA, b""),
    ("client", "transport", PING, b"ping-1"),
    ("server", "transport", PONG, b"ping-1"),
    ("server", "transport", DATA, bytes(range(256))),
    ("client", "transport", DATA, "héllo wörld ✓".encode("utf-8")),
    ("client", "transport", CLOSE, b"bye"),
]

# The same start with key confirmation (section 4.1), as every client now sends it: the empty
# PING is queued by the client itself when frame 2 arrives, its PONG by the server, and that PONG
# is not delivered to the client's application.
CONFIRMED_SCRIPT: list[tuple[str, str, int | None, bytes | None]] = [
    ("client", "handshake1", None, None),
    ("server", "handshake2", None, None),
    ("client", "transport", PING, b""),
    ("server", "transport", PONG, b""),
    ("client", "transport", DATA, b"hello, seclink"),
    ("server", "transport", DATA, b"ACK: received 14 bytes"),
]

# Section 9: the confirmed session, then the client's EOF, the server's EOF in answer (every
# reply is out), and the client's CLOSE.
EOF_SCRIPT = CONFIRMED_SCRIPT + [
    ("client", "transport", EOF, b""),
    ("server", "transport", EOF, b""),
    ("client", "transport", CLOSE, b""),
]

# Section 10: after the confirmed start, an upload of "hello.txt" (5 bytes: "hello"), then a
# download of it resumed after the 2 bytes the client already has, then CLOSE.
_u64 = lambda n: n.to_bytes(8, "big")  # noqa: E731
FILE_SCRIPT = CONFIRMED_SCRIPT + [
    ("client", "transport", FILE_PUT, _u64(5) + b"\x00" + b"hello.txt"),
    ("server", "transport", FILE_READY, _u64(0) + sha256(b"").digest()),
    ("client", "transport", FILE_DATA, b"hello"),
    ("client", "transport", FILE_END, sha256(b"hello").digest()),
    ("server", "transport", FILE_DONE, _u64(5) + sha256(b"hello").digest()),
    ("client", "transport", FILE_GET, _u64(2) + sha256(b"he").digest() + b"hello.txt"),
    ("server", "transport", FILE_INFO, _u64(5) + _u64(2)),
    ("client", "transport", FILE_READ, (3).to_bytes(4, "big")),
    ("server", "transport", FILE_DATA, b"llo"),
    ("client", "transport", FILE_END, b""),
    ("server", "transport", FILE_DONE, _u64(5) + sha256(b"hello").digest()),
    ("client", "transport", CLOSE, b""),
]


def prefixed(body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + body


def flip(frame: bytes, offset: int, bit: int = 0x01) -> bytes:
    """The frame with one bit flipped; a negative offset counts from the end."""
    out = bytearray(frame)
    out[offset] ^= bit
    return bytes(out)


def handshaken(psk: bytes = PSK, client_ephemeral: bytes = CLIENT_EPHEMERAL
               ) -> tuple[Connection, Connection]:
    """A client and a server with the handshake done and nothing left to send (the `wire`
    session: the client sends no key-confirmation PING)."""
    client = Connection("client", psk, ephemeral=client_ephemeral, max_message=MAX_MESSAGE, key_confirmation=False)
    server = Connection("server", psk, ephemeral=SERVER_EPHEMERAL, max_message=MAX_MESSAGE)
    client.start()
    server.receive(client.data_to_send())
    client.receive(server.data_to_send())
    return client, server


def run_script(script: list[tuple[str, str, int | None, bytes | None]] = SCRIPT, key_confirmation: bool = False
               ) -> tuple[list[dict[str, Any]], bytes]:
    """Run a script between a client and a server; returns the wire entries and the handshake hash."""
    client = Connection("client", PSK, ephemeral=CLIENT_EPHEMERAL, max_message=MAX_MESSAGE,
                        key_confirmation=key_confirmation)
    server = Connection("server", PSK, ephemeral=SERVER_EPHEMERAL, max_message=MAX_MESSAGE)
    peers = {"client": client, "server": server}
    wire = []
    queued = b""  # a frame the sender queued by itself ahead of the one asked for
    for sender, kind, type, content in script:
        receiver = "server" if sender == "client" else "client"
        if kind == "handshake1":
            client.start()
        out = queued or peers[sender].data_to_send()
        queued = b""
        if not out:
            peers[sender].send(type, content)
            out = peers[sender].data_to_send()
        n = int.from_bytes(out[:4], "big")
        frame, queued = out[:4 + n], out[4 + n:]
        events = peers[receiver].receive(frame)
        entry: dict[str, Any] = {"from": sender, "kind": kind}
        if kind == "transport":
            entry["type"] = TYPE_NAMES[type]
            entry["content"] = content.hex()
            if not events:
                entry["delivered"] = False
        entry["bytes"] = frame.hex()
        wire.append(entry)
    assert client.handshake_hash == server.handshake_hash
    return wire, client.handshake_hash


def frame1_with_key(e_pub: bytes) -> bytes:
    """Frame 1 with a chosen (e.g. low-order) public key, correctly encrypted for it."""
    ss = SymmetricState(PROLOGUE)
    ss.mix_key_and_hash(PSK)
    ss.mix_hash(e_pub)
    ss.mix_key(e_pub)
    return prefixed(MAGIC + bytes([VERSION]) + e_pub + ss.encrypt_and_hash(b""))


def frame2_with_key(e_pub: bytes, client_pub: bytes) -> bytes:
    """Frame 2 with a low-order public key, encrypted as if DH had been allowed to give zeros,
    so that only the WEAK_KEY check can catch it."""
    ss = SymmetricState(PROLOGUE)
    ss.mix_key_and_hash(PSK)
    ss.mix_hash(client_pub)
    ss.mix_key(client_pub)
    ss.encrypt_and_hash(b"")
    ss.mix_hash(e_pub)
    ss.mix_key(e_pub)
    ss.mix_key(bytes(32))
    return prefixed(e_pub + ss.encrypt_and_hash(b""))


def sealed_by_client(plaintext: bytes) -> bytes:
    """A transport frame with counter 0, correctly encrypted with the session's client key,
    whose plaintext the sender API would refuse (bad type, oversized PING)."""
    client, _ = handshaken()
    client._queue_transport(plaintext)  # bypasses send()'s checks on purpose
    return client.data_to_send()


def malformed_cases(wire: list[bytes]) -> list[dict[str, Any]]:
    u32 = lambda n: n.to_bytes(4, "big")  # noqa: E731
    frame1, frame2 = wire[0], wire[1]
    client_pub = frame1[9:41]

    other_psk_client, other_psk_server = (Connection("client", OTHER_PSK, ephemeral=CLIENT_EPHEMERAL),
                                          Connection("server", OTHER_PSK, ephemeral=SERVER_EPHEMERAL))
    other_psk_client.start()
    frame1_other_psk = other_psk_client.data_to_send()
    other_psk_server.receive(frame1_other_psk)
    frame2_other_psk = other_psk_server.data_to_send()

    other_client, _ = handshaken(client_ephemeral=OTHER_CLIENT_EPHEMERAL)
    other_client.send(DATA, b"hello, seclink")
    foreign = other_client.data_to_send()

    iv_end = 4 + 12  # a transport frame: prefix, iv, ciphertext (type byte first), tag
    cases = [
        # (name, to, after, bytes, error[, eof])
        ("bad_magic", "server", 0, prefixed(b"XLNK" + frame1[8:]), "BAD_MAGIC"),
        ("http_request", "server", 0, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", "FRAME_TOO_LARGE"),
        ("bad_version_2", "server", 0, prefixed(MAGIC + b"\x02" + frame1[9:]), "BAD_VERSION"),
        ("bad_version_0", "server", 0, prefixed(MAGIC + b"\x00" + frame1[9:]), "BAD_VERSION"),
        ("frame1_length_0", "server", 0, u32(0), "FRAME_TOO_SHORT"),
        ("frame1_length_52", "server", 0, u32(52), "FRAME_TOO_SHORT"),
        ("frame1_length_1025", "server", 0, u32(1025), "FRAME_TOO_LARGE"),
        ("frame1_length_max", "server", 0, u32(2**32 - 1), "FRAME_TOO_LARGE"),
        ("frame1_other_psk", "server", 0, frame1_other_psk, "HANDSHAKE_AUTH"),
        ("frame1_flipped_tag", "server", 0, flip(frame1, -1), "HANDSHAKE_AUTH"),
        ("frame1_flipped_key", "server", 0, flip(frame1, 9), "HANDSHAKE_AUTH"),
        ("frame1_zero_key", "server", 0, frame1_with_key(ZERO_POINT), "WEAK_KEY"),
        ("frame1_order8_key", "server", 0, frame1_with_key(ORDER8_POINT), "WEAK_KEY"),
        ("frame1_truncated_prefix", "server", 0, frame1[:2], "TRUNCATED", True),
        ("frame1_truncated_body", "server", 0, frame1[:30], "TRUNCATED", True),
        ("frame2_other_psk", "client", 1, frame2_other_psk, "HANDSHAKE_AUTH"),
        ("frame2_flipped_tag", "client", 1, flip(frame2, -1), "HANDSHAKE_AUTH"),
        ("frame2_zero_key", "client", 1, frame2_with_key(ZERO_POINT, client_pub), "WEAK_KEY"),
        ("frame2_order8_key", "client", 1, frame2_with_key(ORDER8_POINT, client_pub), "WEAK_KEY"),
        ("frame2_length_47", "client", 1, u32(47), "FRAME_TOO_SHORT"),
        ("frame2_length_1025", "client", 1, u32(1025), "FRAME_TOO_LARGE"),
        ("frame2_truncated_body", "client", 1, frame2[:-1], "TRUNCATED", True),
        ("transport_length_28", "server", 2, u32(28), "FRAME_TOO_SHORT"),
        ("transport_length_max_message_plus_30", "server", 2, u32(MAX_MESSAGE + 30), "FRAME_TOO_LARGE"),
        ("transport_flipped_ciphertext", "server", 2, flip(wire[2], iv_end + 3), "AUTH"),
        ("transport_flipped_tag", "server", 2, flip(wire[2], -1), "AUTH"),
        ("transport_tag_cut_short", "server", 2, prefixed(wire[2][4:-1]), "AUTH"),
        ("transport_flipped_iv_high", "server", 2, flip(wire[2], 4, 0x80), "BAD_COUNTER"),
        ("transport_skipped_counter", "server", 2, wire[4], "BAD_COUNTER"),
        ("transport_other_session", "server", 2, foreign, "AUTH"),
        ("transport_type_07", "server", 2, sealed_by_client(b"\x07hello"), "BAD_TYPE"),
        ("transport_type_00", "server", 2, sealed_by_client(b"\x00"), "BAD_TYPE"),
        ("transport_ping_65", "server", 2, sealed_by_client(bytes([PING]) + b"p" * 65), "BAD_PING"),
        ("transport_pong_65", "server", 2, sealed_by_client(bytes([PONG]) + b"p" * 65), "BAD_PING"),
        ("transport_truncated", "server", 2, wire[2][:-1], "TRUNCATED", True),
        ("transport_replay", "server", 3, wire[2], "BAD_COUNTER"),
        ("transport_reflected", "client", 2, wire[2], "AUTH"),
        ("transport_flipped_from_server", "client", 2, flip(wire[3], iv_end + 5), "AUTH"),
        ("transport_replay_from_server", "client", 4, wire[3], "BAD_COUNTER"),
        # Section 4.1: until the client's first transport frame verified, a server takes no body
        # over 1024 bytes, whatever its max_message.
        ("first_transport_length_1025", "server", 2, u32(1025), "FRAME_TOO_LARGE"),
        ("first_transport_1025_sealed", "server", 2, sealed_by_client(bytes([DATA]) + bytes(1025 - 29)),
         "FRAME_TOO_LARGE"),
        # Section 9.
        ("eof_with_content", "server", 2, sealed_by_client(bytes([EOF]) + b"x"), "BAD_EOF"),
    ]
    out = []
    for name, to, after, data, error, *eof in cases:
        case: dict[str, Any] = {"name": name, "to": to, "after": after, "bytes": data.hex(), "error": error}
        if eof:
            case["eof"] = True
        out.append(case)
    return out


def eof_malformed(eof_wire: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Section 9 cases after the client's EOF (entry 6 of eof_wire): `after` counts eof_wire."""
    client = Connection("client", PSK, ephemeral=CLIENT_EPHEMERAL, max_message=MAX_MESSAGE)
    server = Connection("server", PSK, ephemeral=SERVER_EPHEMERAL, max_message=MAX_MESSAGE)
    client.start()
    server.receive(client.data_to_send())
    client.receive(server.data_to_send())
    for entry in eof_wire[2:7]:  # replay the session up to and including the client's EOF
        (server if entry["from"] == "client" else client).receive(bytes.fromhex(entry["bytes"]))
    client.data_to_send()
    # The client's next frames (counter 3: after its PING, DATA and EOF), as a sender that broke
    # the rule would seal them.
    client._send.n = 3
    client._queue_transport(bytes([DATA]) + b"late")
    data_after = client.data_to_send()
    client._send.n -= 1
    client._queue_transport(bytes([EOF]))
    second = client.data_to_send()
    return [{"name": "data_after_eof", "to": "server", "after": 7, "bytes": data_after.hex(), "error": "BAD_EOF"},
            {"name": "second_eof", "to": "server", "after": 7, "bytes": second.hex(), "error": "BAD_EOF"}]


def build_vectors() -> dict[str, Any]:
    wire, handshake_hash = run_script()
    confirmed, confirmed_hash = run_script(CONFIRMED_SCRIPT, key_confirmation=True)
    assert confirmed_hash == handshake_hash and confirmed[:2] == wire[:2]
    eof_wire, _ = run_script(EOF_SCRIPT, key_confirmation=True)
    assert eof_wire[:len(confirmed)] == confirmed
    return {
        "protocol": "seclink/1",
        "description": "One complete seclink/1 connection as exact bytes from fixed keys, and malformed "
                       "inputs with the error each must produce (docs/PROTOCOL.md section 8).",
        "psk": PSK.hex(),
        "client_ephemeral": CLIENT_EPHEMERAL.hex(),
        "server_ephemeral": SERVER_EPHEMERAL.hex(),
        "max_message": MAX_MESSAGE,
        "prologue": PROLOGUE.hex(),
        "handshake_hash": handshake_hash.hex(),
        "wire": wire,
        "confirmed_wire": confirmed,
        "malformed": malformed_cases([bytes.fromhex(entry["bytes"]) for entry in wire]),
        "eof_wire": eof_wire,
        "eof_malformed": eof_malformed(eof_wire),
        "file_wire": run_script(FILE_SCRIPT, key_confirmation=True)[0],
    }


def build_rotation_vectors() -> dict[str, Any]:
    """Section 12: a server holding three keys answers a client that holds the second one."""
    psks = [sha256(b"seclink rotation key %d" % i).digest() for i in range(2)] + [PSK]
    psks[1], psks[2] = psks[2], psks[1]  # the client's key (PSK) second, a key after it
    client = Connection("client", PSK, ephemeral=CLIENT_EPHEMERAL)
    server = Connection("server", psks[0], ephemeral=SERVER_EPHEMERAL, psks=psks)
    client.start()
    frame1 = client.data_to_send()
    server.receive(frame1)
    frame2 = server.data_to_send()
    client.receive(frame2)
    assert server.psk_index == 1 and client.handshake_hash == server.handshake_hash
    stranger = Connection("client", OTHER_PSK, ephemeral=CLIENT_EPHEMERAL)
    stranger.start()
    return {
        "protocol": "seclink/1",
        "description": "Key rotation (docs/PROTOCOL.md section 12): a server with several pre-shared keys finds "
                       "the client's by trial decryption of frame 1.",
        "psks": [k.hex() for k in psks],
        "client_psk_index": 1,
        "client_ephemeral": CLIENT_EPHEMERAL.hex(),
        "server_ephemeral": SERVER_EPHEMERAL.hex(),
        "frame1": frame1.hex(),
        "frame2": frame2.hex(),
        "handshake_hash": server.handshake_hash.hex(),
        "frame1_no_key": stranger.data_to_send().hex(),
        "frame1_no_key_error": "HANDSHAKE_AUTH",
    }


def build_rekey_vectors() -> dict[str, Any]:
    """Section 13: the confirmed session with T = 64 on both sides and one requested KEY_UPDATE."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    client = Connection("client", PSK, ephemeral=CLIENT_EPHEMERAL, rekey_bytes=REKEY_T)
    server = Connection("server", PSK, ephemeral=SERVER_EPHEMERAL, rekey_bytes=REKEY_T)
    peers = {"client": client, "server": server}
    keys: dict[str, list[str]] = {"client_to_server": [], "server_to_client": []}
    wire: list[dict[str, Any]] = []

    def note_keys() -> None:
        if client._send is None or server._send is None:
            return
        for name, k in (("client_to_server", client._send.key), ("server_to_client", server._send.key)):
            if not keys[name] or keys[name][-1] != k.hex():
                keys[name].append(k.hex())

    def deliver(sender: str, kind: str = "transport") -> None:
        """Every frame `sender` has queued, in order, to the other side, recorded."""
        out = peers[sender].data_to_send()
        receiver = peers["server" if sender == "client" else "client"]
        while out:
            n = int.from_bytes(out[:4], "big")
            frame, out = out[:4 + n], out[4 + n:]
            entry: dict[str, Any] = {"from": sender, "kind": kind}
            if kind == "transport":  # what the receiver is about to open (its current key)
                pt = AESGCM(receiver._recv.key).decrypt(frame[4:16], frame[16:], b"")
                entry.update(type=TYPE_NAMES[pt[0]], content=pt[1:].hex())
            entry["bytes"] = frame.hex()
            wire.append(entry)
            receiver.receive(frame)
        note_keys()

    client.start()
    deliver("client", "handshake1")
    deliver("server", "handshake2")
    deliver("client")  # the key-confirmation PING
    deliver("server")  # its PONG
    for i, text in enumerate([b"hello, seclink", b"second", b"a somewhat longer third message", b"4", b"five"]):
        if i == 3:
            client.rekey()  # on request
        client.send(DATA, text)
        deliver("client")
        server.send(DATA, f"ACK: received {len(text)} bytes".encode())
        deliver("server")
    client.send(CLOSE, b"bye")
    deliver("client")
    assert len(keys["client_to_server"]) >= 3 and len(keys["server_to_client"]) >= 3
    return {
        "protocol": "seclink/1",
        "description": "Rekeying (docs/PROTOCOL.md section 13): the confirmed session of section 8 with an "
                       "automatic KEY_UPDATE threshold of 64 bytes on both sides and one KEY_UPDATE on request.",
        "psk": PSK.hex(),
        "client_ephemeral": CLIENT_EPHEMERAL.hex(),
        "server_ephemeral": SERVER_EPHEMERAL.hex(),
        "rekey_bytes": REKEY_T,
        "requested_before": "4",
        "wire": wire,
        "rekeyed_keys": keys,
        "malformed": [{"name": "key_update_with_content", "to": "server", "after": 4,
                       "bytes": sealed_after_confirmation(bytes([0x05]) + b"x").hex(), "error": "BAD_KEY_UPDATE"}],
    }


def sealed_after_confirmation(plaintext: bytes) -> bytes:
    """The client's frame with counter 1 (after the confirmation PING) carrying `plaintext`."""
    client = Connection("client", PSK, ephemeral=CLIENT_EPHEMERAL, rekey_bytes=REKEY_T)
    server = Connection("server", PSK, ephemeral=SERVER_EPHEMERAL, rekey_bytes=REKEY_T)
    client.start()
    server.receive(client.data_to_send())
    client.receive(server.data_to_send())
    client.data_to_send()  # the PING
    client._seal(plaintext)  # bypasses rekey()'s rules on purpose
    return client.data_to_send()


def build_server_key_vectors() -> dict[str, Any]:
    """Section 14: a mode-2 connection (Noise NXpsk2) and what a client and a server refuse."""
    from .seclink_ref import MODE_SERVER_KEY, Message, fingerprint, modes_frame, public_bytes
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    pub = public_bytes(X25519PrivateKey.from_private_bytes(SERVER_STATIC))

    def pair(expected: bytes | None = pub) -> tuple[Connection, Connection]:
        return (Connection("client", PSK, ephemeral=CLIENT_EPHEMERAL, mode=MODE_SERVER_KEY, server_key=expected),
                Connection("server", PSK, ephemeral=SERVER_EPHEMERAL, static=SERVER_STATIC))

    client, server = pair()
    client.start()
    wire: list[dict[str, Any]] = []
    for sender, kind in (("client", "handshake1"), ("server", "handshake2"), ("client", "transport"),
                         ("server", "transport")):
        frame = (client if sender == "client" else server).data_to_send()
        (server if sender == "client" else client).receive(frame)
        wire.append({"from": sender, "kind": kind, "bytes": frame.hex()})
    wire[2].update(type="PING", content="")
    wire[3].update(type="PONG", content="", delivered=False)
    client.send(DATA, b"hello, seclink")
    frame = client.data_to_send()
    assert server.receive(frame) == [Message(DATA, b"hello, seclink")]
    wire.append({"from": "client", "kind": "transport", "type": "DATA", "content": b"hello, seclink".hex(),
                 "bytes": frame.hex()})
    assert client.server_static == pub and client.handshake_hash == server.handshake_hash
    frame1, frame2 = bytes.fromhex(wire[0]["bytes"]), bytes.fromhex(wire[1]["bytes"])
    return {
        "protocol": "seclink/1",
        "description": "Mode 2, server identity (docs/PROTOCOL.md section 14): Noise_NXpsk2_25519_AESGCM_SHA256 "
                       "from fixed keys, and what clients and servers refuse.",
        "psk": PSK.hex(),
        "server_static": SERVER_STATIC.hex(),
        "server_static_public": pub.hex(),
        "fingerprint": fingerprint(pub),
        "client_ephemeral": CLIENT_EPHEMERAL.hex(),
        "server_ephemeral": SERVER_EPHEMERAL.hex(),
        "prologue": b"SLNK\x02".hex(),
        "handshake_hash": server.handshake_hash.hex(),
        "wire": wire,
        "modes_frame_psk_only": modes_frame([1]).hex(),
        "malformed": [
            # (to, after, bytes, error, what the client expects for the server key)
            {"name": "client_expects_another_key", "to": "client", "after": 1, "bytes": frame2.hex(),
             "error": "SERVER_KEY_CHANGED", "expected_server_key": sha256(b"another key").hexdigest()},
            {"name": "client_expects_no_key", "to": "client", "after": 1, "bytes": frame2.hex(),
             "error": "SERVER_KEY_UNKNOWN", "expected_server_key": None},
            {"name": "frame2_flipped_static", "to": "client", "after": 1, "bytes": flip(frame2, 4 + 32 + 5).hex(),
             "error": "HANDSHAKE_AUTH", "expected_server_key": pub.hex()},
            {"name": "modes_frame", "to": "client", "after": 1, "bytes": modes_frame([1]).hex(),
             "error": "MODE_REFUSED", "expected_server_key": pub.hex(), "server_modes": [1]},
            {"name": "server_without_mode_2", "to": "server", "after": 0, "bytes": frame1.hex(),
             "error": "BAD_VERSION", "accepted_modes": [1]},
        ],
    }


def build_user_key_vectors() -> dict[str, Any]:
    """Section 15: a mode-3 connection (Noise XXpsk3) from fixed keys."""
    from .seclink_ref import MODE_USER_KEY, public_bytes
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    server_pub = public_bytes(X25519PrivateKey.from_private_bytes(SERVER_STATIC))
    client_pub = public_bytes(X25519PrivateKey.from_private_bytes(CLIENT_STATIC))
    client = Connection("client", PSK, ephemeral=CLIENT_EPHEMERAL, mode=MODE_USER_KEY, server_key=server_pub,
                        identity=CLIENT_STATIC)
    server = Connection("server", PSK, ephemeral=SERVER_EPHEMERAL, static=SERVER_STATIC)
    client.start()
    wire: list[dict[str, Any]] = []
    for sender, kind in (("client", "handshake1"), ("server", "handshake2"), ("client", "handshake3")):
        frame = (client if sender == "client" else server).data_to_send()
        (server if sender == "client" else client).receive(frame)
        wire.append({"from": sender, "kind": kind, "bytes": frame.hex()})
    client.send(DATA, b"hello, seclink")
    frame = client.data_to_send()
    assert server.receive(frame)[0].content == b"hello, seclink"
    wire.append({"from": "client", "kind": "transport", "type": "DATA", "content": b"hello, seclink".hex(),
                 "bytes": frame.hex()})
    assert server.client_static == client_pub and client.handshake_hash == server.handshake_hash
    frame3 = bytes.fromhex(wire[2]["bytes"])
    return {
        "protocol": "seclink/1",
        "description": "Mode 3, key users (docs/PROTOCOL.md section 15): Noise_XXpsk3_25519_AESGCM_SHA256 from "
                       "fixed keys.",
        "psk": PSK.hex(),
        "server_static": SERVER_STATIC.hex(),
        "server_static_public": server_pub.hex(),
        "client_static": CLIENT_STATIC.hex(),
        "client_static_public": client_pub.hex(),
        "client_ephemeral": CLIENT_EPHEMERAL.hex(),
        "server_ephemeral": SERVER_EPHEMERAL.hex(),
        "handshake_hash": server.handshake_hash.hex(),
        "wire": wire,
        "malformed": [
            {"name": "frame3_flipped_static", "to": "server", "after": 2, "bytes": flip(frame3, 4 + 3).hex(),
             "error": "HANDSHAKE_AUTH"},
            {"name": "frame3_flipped_tag", "to": "server", "after": 2, "bytes": flip(frame3, -1).hex(),
             "error": "HANDSHAKE_AUTH"},
            {"name": "frame3_length_63", "to": "server", "after": 2, "bytes": (63).to_bytes(4, "big").hex(),
             "error": "FRAME_TOO_SHORT"},
        ],
    }


def build_password_vectors() -> dict[str, Any]:
    """Section 16: a mode-4 connection with its AUTH frame, and a users-file line."""
    import base64
    import hashlib
    from .seclink_ref import MODE_PASSWORD, password_matches, public_bytes
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    server_pub = public_bytes(X25519PrivateKey.from_private_bytes(SERVER_STATIC))
    salt = sha256(b"seclink password salt").digest()[:16]
    password = "correct horse battery staple"
    digest = hashlib.scrypt(password.encode(), salt=salt, n=16384, r=8, p=1, dklen=32)
    line = f"bob scrypt 16384 8 1 {base64.b64encode(salt).decode()} {base64.b64encode(digest).decode()}"
    client = Connection("client", PSK, ephemeral=CLIENT_EPHEMERAL, mode=MODE_PASSWORD, server_key=server_pub,
                        login=("bob", password.encode()))
    server = Connection("server", PSK, ephemeral=SERVER_EPHEMERAL, static=SERVER_STATIC, accepted_modes=[1, 2, 4])
    client.start()
    wire = []
    for sender, kind in (("client", "handshake1"), ("server", "handshake2"), ("client", "transport")):
        frame = (client if sender == "client" else server).data_to_send()
        events = (server if sender == "client" else client).receive(frame)
        wire.append({"from": sender, "kind": kind, "bytes": frame.hex()})
    wire[2].update(type="AUTH", content=(bytes([3]) + b"bob" + password.encode()).hex())
    assert events[0].name == "bob" and password_matches(line, "bob", events[0].password)
    # A first frame that is not AUTH (an empty PING, sealed with the client's key at counter 0).
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from .seclink_ref import nonce
    c2s = client._send.key
    body = nonce(0) + AESGCM(c2s).encrypt(nonce(0), bytes([PING]), b"")
    not_auth = prefixed(body)
    return {
        "protocol": "seclink/1",
        "description": "Mode 4, password users (docs/PROTOCOL.md section 16): Noise NXpsk2 with prologue SLNK 04, "
                       "then the AUTH message; and a users-file line for the password.",
        "psk": PSK.hex(),
        "server_static": SERVER_STATIC.hex(),
        "server_static_public": server_pub.hex(),
        "client_ephemeral": CLIENT_EPHEMERAL.hex(),
        "server_ephemeral": SERVER_EPHEMERAL.hex(),
        "user": "bob",
        "password": password,
        "users_line": line,
        "handshake_hash": server.handshake_hash.hex(),
        "wire": wire,
        "malformed": [{"name": "first_frame_not_auth", "to": "server", "after": 2, "bytes": not_auth.hex(),
                       "error": "BAD_AUTH"}],
    }


def render(vectors: dict[str, Any]) -> str:
    return json.dumps(vectors, indent=1, ensure_ascii=False) + "\n"


def main() -> None:
    VECTORS_PATH.parent.mkdir(parents=True, exist_ok=True)
    VECTORS_PATH.write_text(render(build_vectors()), encoding="utf-8")
    print(f"wrote {VECTORS_PATH}")
    ROTATION_PATH.write_text(render(build_rotation_vectors()), encoding="utf-8")
    print(f"wrote {ROTATION_PATH}")
    REKEY_PATH.write_text(render(build_rekey_vectors()), encoding="utf-8")
    print(f"wrote {REKEY_PATH}")
    PASSWORD_PATH.write_text(render(build_password_vectors()), encoding="utf-8")
    print(f"wrote {PASSWORD_PATH}")
    SERVER_KEY_PATH.write_text(render(build_server_key_vectors()), encoding="utf-8")
    print(f"wrote {SERVER_KEY_PATH}")
    USER_KEY_PATH.write_text(render(build_user_key_vectors()), encoding="utf-8")
    print(f"wrote {USER_KEY_PATH}")


if __name__ == "__main__":
    main()
