"""The reference implementation against the public Noise vectors, seclink_v1.json and section 6."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from tests.reference import make_vectors
from tests.reference.seclink_ref import (
    CLOSE, DATA, EOF, FILE_TYPES, PING, PONG, Closed, Connection, HandshakeDone, KeyFileError, Message, NoiseHandshake,
    ProtocolError, default_key_path, generate_key, load_key, nonce)

HERE = Path(__file__).resolve().parents[1]  # tests/, where the vectors are
NOISE_VECTORS = HERE / "vectors" / "public" / "noise_nnpsk0_25519_aesgcm_sha256.json"
SECLINK_VECTORS = HERE / "vectors" / "seclink_v1.json"
TYPES = {"DATA": DATA, "CLOSE": CLOSE, "PING": PING, "PONG": PONG, "EOF": EOF,
         **{name: t for t, name in FILE_TYPES.items()}}

V = json.loads(SECLINK_VECTORS.read_text(encoding="utf-8"))
WIRE = [bytes.fromhex(entry["bytes"]) for entry in V["wire"]]


def fixed_pair(key_confirmation: bool = False) -> dict[str, Connection]:
    """Both sides with the vectors' fixed secrets; the client as in `wire` (no key-confirmation
    PING) unless `key_confirmation` (as in `confirmed_wire`)."""
    h = bytes.fromhex
    return {"client": Connection("client", h(V["psk"]), ephemeral=h(V["client_ephemeral"]),
                                 max_message=V["max_message"], key_confirmation=key_confirmation),
            "server": Connection("server", h(V["psk"]), ephemeral=h(V["server_ephemeral"]),
                                 max_message=V["max_message"])}


def other(side: str) -> str:
    return "server" if side == "client" else "client"


# ---------------------------------------------------------------- public Noise vectors

def test_noise_handshake_reproduces_public_nnpsk0_vector() -> None:
    vectors = json.loads(NOISE_VECTORS.read_text())["vectors"]
    (v,) = [v for v in vectors if v["protocol_name"] == "Noise_NNpsk0_25519_AESGCM_SHA256"]
    h = bytes.fromhex
    init = NoiseHandshake(True, h(v["init_psks"][0]), prologue=h(v["init_prologue"]),
                          ephemeral=h(v["init_ephemeral"]))
    resp = NoiseHandshake(False, h(v["resp_psks"][0]), prologue=h(v["resp_prologue"]),
                          ephemeral=h(v["resp_ephemeral"]))
    msgs = [(h(m["payload"]), h(m["ciphertext"])) for m in v["messages"]]

    assert init.write_message_1(msgs[0][0]) == msgs[0][1]
    assert resp.read_message_1(msgs[0][1]) == msgs[0][0]
    assert resp.write_message_2(msgs[1][0]) == msgs[1][1]
    assert init.read_message_2(msgs[1][1]) == msgs[1][0]
    i_send, i_recv = init.split()
    r_recv, r_send = resp.split()
    assert init.handshake_hash.hex() == resp.handshake_hash.hex() == v["handshake_hash"]

    assert len(msgs) > 2
    for index, (payload, ciphertext) in enumerate(msgs[2:]):  # initiator first, then alternating
        sender, receiver = (i_send, r_recv) if index % 2 == 0 else (r_send, i_recv)
        assert sender.encrypt_with_ad(b"", payload) == ciphertext
        assert receiver.decrypt_with_ad(b"", ciphertext) == payload


# ---------------------------------------------------------------- seclink_v1.json

def test_generator_reproduces_committed_vectors_exactly() -> None:
    assert make_vectors.render(make_vectors.build_vectors()) == SECLINK_VECTORS.read_text(encoding="utf-8")


@pytest.mark.parametrize("section", ["wire", "confirmed_wire", "eof_wire", "file_wire"])
def test_wire_is_reproduced_byte_for_byte_by_client_and_server(section: str) -> None:
    peers = fixed_pair(key_confirmation=section != "wire")
    queued = {"client": b"", "server": b""}  # frames a side queued by itself (frame 2, PING, PONG)
    for index, entry in enumerate(V[section]):
        sender, receiver = peers[entry["from"]], peers[other(entry["from"])]
        if entry["kind"] == "handshake1":
            sender.start()
        queued[entry["from"]] += sender.data_to_send()
        if not queued[entry["from"]]:
            sender.send(TYPES[entry["type"]], bytes.fromhex(entry["content"]))
            queued[entry["from"]] = sender.data_to_send()
        frame = bytes.fromhex(entry["bytes"])
        assert queued[entry["from"]][:len(frame)] == frame, f"{section}[{index}]"
        queued[entry["from"]] = queued[entry["from"]][len(frame):]

        events = receiver.receive(frame)
        if entry["kind"] != "transport":
            assert events == [HandshakeDone()]
        elif entry.get("delivered") is False:  # the PONG to the key-confirmation PING
            assert events == []
        elif entry["type"] == "CLOSE":
            assert events == [Closed(bytes.fromhex(entry["content"]).decode())]
        else:
            assert events == [Message(TYPES[entry["type"]], bytes.fromhex(entry["content"]))]
    assert peers["client"].handshake_hash.hex() == peers["server"].handshake_hash.hex() == V["handshake_hash"]
    assert peers["client"].data_to_send() == peers["server"].data_to_send() == b""


def test_wire_frames_have_the_documented_layout() -> None:
    counters = {"client": 0, "server": 0}
    for entry, frame in zip(V["wire"], WIRE):
        body = frame[4:]
        assert int.from_bytes(frame[:4], "big") == len(body)
        if entry["kind"] == "handshake1":
            assert len(body) == 53 and body[:5] == bytes.fromhex(V["prologue"]) == b"SLNK\x01"
        elif entry["kind"] == "handshake2":
            assert len(body) == 48
        else:
            assert body[:12] == nonce(counters[entry["from"]])
            assert len(body) == 12 + 1 + len(bytes.fromhex(entry["content"])) + 16
            counters[entry["from"]] += 1
    assert [e["kind"] for e in V["wire"][:2]] == ["handshake1", "handshake2"]


def test_vectors_cover_every_receiver_error() -> None:
    receiver_errors = {"FRAME_TOO_SHORT", "FRAME_TOO_LARGE", "BAD_MAGIC", "BAD_VERSION", "HANDSHAKE_AUTH",
                       "WEAK_KEY", "BAD_COUNTER", "AUTH", "BAD_TYPE", "BAD_PING", "TRUNCATED", "BAD_EOF"}
    assert {case["error"] for case in V["malformed"]} == receiver_errors
    assert len({case["name"] for case in V["malformed"]}) == len(V["malformed"])


def deliver_first(k: int) -> dict[str, Connection]:
    """Section 8: both sides with the fixed ephemerals, wire[0..k-1] each delivered to its receiver."""
    peers = fixed_pair()
    peers["client"].start()
    for entry, frame in zip(V["wire"][:k], WIRE[:k]):
        peers[other(entry["from"])].receive(frame)
    return peers


@pytest.mark.parametrize("case", V["malformed"], ids=[c["name"] for c in V["malformed"]])
def test_malformed_input_fails_with_its_error(case: dict) -> None:
    side = deliver_first(case["after"])[case["to"]]
    with pytest.raises(ProtocolError) as raised:
        side.receive(bytes.fromhex(case["bytes"]))
        if case.get("eof"):
            side.eof()
    assert raised.value.name == case["error"]
    assert side.data_to_send() == b""  # a failed side sends nothing (not even frame 2 or a PONG)
    with pytest.raises(ProtocolError):  # and the connection stays dead
        side.receive(WIRE[case["after"]] if case["after"] < len(WIRE) else b"")


@pytest.mark.parametrize("case", V["malformed"], ids=[c["name"] for c in V["malformed"]])
def test_malformed_input_fed_byte_by_byte_releases_no_message(case: dict) -> None:
    side = deliver_first(case["after"])[case["to"]]
    events = []
    with pytest.raises(ProtocolError) as raised:
        for byte in bytes.fromhex(case["bytes"]):
            events += side.receive(bytes([byte]))
        if case.get("eof"):
            events += side.eof()
    assert raised.value.name == case["error"]
    assert not [e for e in events if isinstance(e, Message)]


@pytest.mark.parametrize("case", V["eof_malformed"], ids=[c["name"] for c in V["eof_malformed"]])
def test_eof_rule_broken_after_eof_wire_fails_with_bad_eof(case: dict) -> None:
    """Section 9: after eof_wire[0..after-1] (the client's EOF included), more DATA or a second
    EOF from the client is BAD_EOF, and the server releases nothing from it."""
    peers = fixed_pair(key_confirmation=True)
    peers["client"].start()
    for entry in V["eof_wire"][:case["after"]]:
        peers[other(entry["from"])].receive(bytes.fromhex(entry["bytes"]))
    side = peers[case["to"]]
    side.data_to_send()
    with pytest.raises(ProtocolError) as raised:
        side.receive(bytes.fromhex(case["bytes"]))
    assert raised.value.name == case["error"] == "BAD_EOF"
    assert side.data_to_send() == b""


def test_sender_refuses_data_and_a_second_eof_after_its_eof() -> None:
    client, server = Connection("client", bytes(32)), Connection("server", bytes(32))
    handshake(client, server)
    client.send(EOF)
    with pytest.raises(ValueError):
        client.send(DATA, b"late")
    with pytest.raises(ValueError):
        client.send(EOF)
    client.send(PING, b"still alive")  # PING and CLOSE are still allowed
    assert server.receive(client.data_to_send()) == [Message(EOF, b""), Message(PING, b"still alive")]
    server.send(DATA, b"the other direction goes on")
    assert client.receive(server.data_to_send()) == [Message(PONG, b"still alive"),
                                                     Message(DATA, b"the other direction goes on")]


# ---------------------------------------------------------------- behaviour beyond the vectors

def handshake(client: Connection, server: Connection) -> None:
    """The handshake and the key confirmation (section 4.1): afterwards nothing is queued."""
    client.start()
    assert server.receive(client.data_to_send()) == [HandshakeDone()]
    assert client.receive(server.data_to_send()) == [HandshakeDone()]
    assert server.receive(client.data_to_send()) == [Message(PING, b"")]
    assert client.receive(server.data_to_send()) == []


def test_client_confirms_the_key_with_an_empty_ping_before_anything_else() -> None:
    client, server = Connection("client", bytes(32)), Connection("server", bytes(32))
    client.start()
    server.receive(client.data_to_send())
    client.receive(server.data_to_send())
    client.send(DATA, b"x" * 5000)  # pipelined behind the PING: accepted once the PING verified
    out = client.data_to_send()
    assert out[:4] == (29).to_bytes(4, "big") and out[4:16] == nonce(0)
    assert server.receive(out) == [Message(PING, b""), Message(DATA, b"x" * 5000)]


def test_server_refuses_a_large_first_frame_before_key_confirmation() -> None:
    client = Connection("client", bytes(32), key_confirmation=False)
    server = Connection("server", bytes(32))
    client.start()
    server.receive(client.data_to_send())
    client.receive(server.data_to_send())
    client.send(DATA, b"x" * (1024 - 29))  # the largest body allowed: 1024
    assert server.receive(client.data_to_send()) == [Message(DATA, b"x" * 995)]
    client.send(DATA, b"y" * 5000)  # confirmed now: the usual limit
    assert server.receive(client.data_to_send()) == [Message(DATA, b"y" * 5000)]
    late = Connection("client", bytes(32), key_confirmation=False)
    fresh = Connection("server", bytes(32))
    late.start()
    fresh.receive(late.data_to_send())
    late.receive(fresh.data_to_send())
    late.send(DATA, b"x" * (1024 - 28))
    with pytest.raises(ProtocolError) as raised:
        fresh.receive(late.data_to_send()[:4])
    assert raised.value.name == "FRAME_TOO_LARGE"


def test_round_trip_with_random_ephemerals() -> None:
    psk = os.urandom(32)
    client, server = Connection("client", psk), Connection("server", psk)
    handshake(client, server)
    assert client.handshake_hash == server.handshake_hash != bytes.fromhex(V["handshake_hash"])
    client.send(DATA, b"one")
    client.send(PING, b"x" * 64)
    assert server.receive(client.data_to_send()) == [Message(DATA, b"one"), Message(PING, b"x" * 64)]
    server.send(DATA, b"\x00" * 100_000)
    events = client.receive(server.data_to_send())  # the automatic PONG was queued first
    assert events == [Message(PONG, b"x" * 64), Message(DATA, b"\x00" * 100_000)]
    client.close("done")
    assert server.receive(client.data_to_send() + b"ignored garbage") == [Closed("done")]
    assert server.eof() == []


def test_two_sessions_with_random_ephemerals_differ() -> None:
    hashes = set()
    for _ in range(2):
        client, server = Connection("client", bytes(32)), Connection("server", bytes(32))
        handshake(client, server)
        hashes.add(client.handshake_hash)
    assert len(hashes) == 2


def test_frames_split_across_and_merged_in_reads() -> None:
    peers = fixed_pair()
    peers["client"].start()
    assert peers["server"].receive(b"".join(WIRE[0:1])) == [HandshakeDone()]
    stream = WIRE[1] + WIRE[3] + WIRE[6] + WIRE[7]  # everything the server sent, in one piece
    events = peers["client"].receive(stream[:3]) + peers["client"].receive(stream[3:])
    assert events == [HandshakeDone(), Message(DATA, b"ACK: received 14 bytes"),
                      Message(PONG, b"ping-1"), Message(DATA, bytes(range(256)))]


def test_handshake_payloads_of_later_versions_are_ignored() -> None:
    psk = bytes(range(32))
    noise = NoiseHandshake(True, psk)
    message = noise.write_message_1(b"future extension")
    server = Connection("server", psk)
    frame1 = (5 + len(message)).to_bytes(4, "big") + b"SLNK\x01" + message
    assert server.receive(frame1) == [HandshakeDone()]
    assert noise.read_message_2(server.data_to_send()[4:]) == b""


def test_end_of_stream_between_frames_without_close_is_reported_as_vanished() -> None:
    peers = deliver_first(3)
    assert peers["server"].eof() == [Closed(None)]


def test_sender_refuses_content_over_max_message() -> None:
    client, server = Connection("client", bytes(32), max_message=10), Connection("server", bytes(32))
    handshake(client, server)
    client.send(DATA, b"x" * 10)
    assert server.receive(client.data_to_send()) == [Message(DATA, b"x" * 10)]
    with pytest.raises(ProtocolError) as raised:
        client.send(DATA, b"x" * 11)
    assert raised.value.name == "MSG_TOO_LARGE"
    assert client.data_to_send() == b"", "nothing half-sent"
    client.send(DATA, b"usable")
    assert server.receive(client.data_to_send()) == [Message(DATA, b"usable")]


def test_sender_refuses_oversized_ping_and_stays_usable() -> None:
    client, server = Connection("client", bytes(32)), Connection("server", bytes(32))
    handshake(client, server)
    with pytest.raises(ProtocolError) as raised:
        client.send(PING, b"p" * 65)
    assert raised.value.name == "BAD_PING"
    client.send(PING, b"p" * 64)
    assert server.receive(client.data_to_send()) == [Message(PING, b"p" * 64)]


def test_receiver_limit_is_its_own_max_message() -> None:
    client, server = Connection("client", bytes(32)), Connection("server", bytes(32), max_message=10)
    handshake(client, server)
    client.send(DATA, b"x" * 10)
    client.send(DATA, b"x" * 11)
    frames = client.data_to_send()
    with pytest.raises(ProtocolError) as raised:
        server.receive(frames)
    assert raised.value.name == "FRAME_TOO_LARGE"


def test_sender_refuses_to_use_the_last_counter() -> None:
    client, server = Connection("client", bytes(32)), Connection("server", bytes(32))
    handshake(client, server)
    client._send.n = 2**64 - 2
    client.send(DATA, b"last one")
    assert client.data_to_send()[4:16] == nonce(2**64 - 2)
    with pytest.raises(ProtocolError) as raised:
        client.send(DATA, b"one too many")
    assert raised.value.name == "NONCE_EXHAUSTED"


def test_nothing_is_sent_after_close() -> None:
    client, server = Connection("client", bytes(32)), Connection("server", bytes(32))
    handshake(client, server)
    client.close()
    with pytest.raises(ValueError):
        client.send(DATA, b"late")
    assert server.receive(client.data_to_send()) == [Closed("")]


def test_close_reason_with_invalid_utf8_is_shown_replaced() -> None:
    client, server = Connection("client", bytes(32)), Connection("server", bytes(32))
    handshake(client, server)
    client.send(CLOSE, b"bad \xff")
    assert server.receive(client.data_to_send()) == [Closed("bad \ufffd")]


# ---------------------------------------------------------------- key files (section 6)

KEY_LINE = b"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n"  # base64 of bytes(range(32))


def write_key(path: Path, data: bytes, mode: int = 0o600) -> Path:
    path.write_bytes(data)
    path.chmod(mode)
    return path


def load_error(path: Path) -> KeyFileError:
    with pytest.raises(KeyFileError) as raised:
        load_key(path)
    return raised.value


def test_key_file_in_the_documented_format_loads(tmp_path: Path) -> None:
    assert load_key(write_key(tmp_path / "psk", KEY_LINE)) == bytes(range(32))
    assert load_key(write_key(tmp_path / "psk2", KEY_LINE.rstrip(b"\n"))) == bytes(range(32))


def test_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    error = load_error(write_key(tmp_path / "psk", KEY_LINE, 0o644))
    assert error.name == "KEY_PERMISSIONS" and "chmod 600" in error.message


def test_key_file_writable_by_group_is_refused(tmp_path: Path) -> None:
    assert load_error(write_key(tmp_path / "psk", KEY_LINE, 0o620)).name == "KEY_PERMISSIONS"


@pytest.mark.parametrize("mode", [0o777, 0o1777, 0o770, 0o702])
def test_key_file_in_a_directory_others_can_write_is_refused(tmp_path: Path, mode: int) -> None:
    (tmp_path / "d").mkdir()
    path = write_key(tmp_path / "d" / "psk", KEY_LINE)
    (tmp_path / "d").chmod(mode)
    error = load_error(path)
    assert error.name == "KEY_DIR" and "chmod go-w" in error.message


def test_key_file_symlink_is_refused(tmp_path: Path) -> None:
    real = write_key(tmp_path / "real", KEY_LINE)
    (tmp_path / "link").symlink_to(real)
    assert load_error(tmp_path / "link").name == "KEY_SYMLINK"


@pytest.mark.parametrize("size", [31, 33, 16])
def test_key_file_of_wrong_size_is_refused(tmp_path: Path, size: int) -> None:
    error = load_error(write_key(tmp_path / "psk", base64.b64encode(bytes(size)) + b"\n"))
    assert error.name == "KEY_SIZE"


@pytest.mark.parametrize("content", [
    b"not base64 at all!\n", KEY_LINE.replace(b"=", b""), KEY_LINE + b"\n", b" " + KEY_LINE,
    KEY_LINE.replace(b"\n", b"\r\n"), KEY_LINE.replace(b"A", b"-", 1), b"", b"\n",
    KEY_LINE.replace(b"8=", b"9="),  # non-zero unused bits: not canonical
], ids=["garbage", "no_padding", "two_newlines", "leading_space", "crlf", "urlsafe_alphabet", "empty",
        "only_newline", "non_canonical"])
def test_key_file_not_in_base64_format_is_refused(tmp_path: Path, content: bytes) -> None:
    error = load_error(write_key(tmp_path / "psk", content))
    assert error.name == "KEY_FORMAT"


def test_key_path_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir(mode=0o700)
    assert load_error(tmp_path / "dir").name == "KEY_NOT_FILE"


def test_missing_key_file_is_refused_with_a_hint(tmp_path: Path) -> None:
    error = load_error(tmp_path / "nope")
    assert error.name == "KEY_NOT_FOUND" and "--keygen" in error.message


def test_key_errors_never_show_the_key(tmp_path: Path) -> None:
    for name, content, mode in [("open", KEY_LINE, 0o644), ("spaced", KEY_LINE + b" ", 0o600)]:
        error = load_error(write_key(tmp_path / name, content, mode))
        assert KEY_LINE[:8].decode() not in str(error) and bytes(range(32)).hex()[:8] not in str(error)


def test_generated_key_loads_back_and_has_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dirs" / "psk"
    key = generate_key(path)
    assert load_key(path) == key and len(key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o700
    assert len(path.read_bytes()) == 45


def test_generate_refuses_to_replace_a_file(tmp_path: Path) -> None:
    path = write_key(tmp_path / "psk", KEY_LINE)
    with pytest.raises(KeyFileError) as raised:
        generate_key(path)
    assert raised.value.name == "KEY_EXISTS"
    assert path.read_bytes() == KEY_LINE


def test_generate_refuses_a_dangling_symlink(tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to(tmp_path / "target")
    with pytest.raises(KeyFileError) as raised:
        generate_key(tmp_path / "link")
    assert raised.value.name == "KEY_EXISTS"
    assert not (tmp_path / "target").exists()


def test_default_key_path_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/u")
    monkeypatch.setenv("XDG_CONFIG_HOME", "/xdg")
    monkeypatch.setenv("SECLINK_PSK_FILE", "/env/psk")
    assert default_key_path("/explicit/psk") == Path("/explicit/psk")
    assert default_key_path() == Path("/env/psk")
    monkeypatch.delenv("SECLINK_PSK_FILE")
    assert default_key_path() == Path("/xdg/seclink/psk")
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/xdg")  # not absolute: ignored
    assert default_key_path() == Path("/home/u/.config/seclink/psk")
    monkeypatch.delenv("XDG_CONFIG_HOME")
    assert default_key_path() == Path("/home/u/.config/seclink/psk")
