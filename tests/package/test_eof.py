"""EOF (docs/PROTOCOL.md 9) in the native engine, through the sans-I/O Connection: the `eof_wire`
vectors byte for byte, the `eof_malformed` cases, and the sender's own refusals."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from seclink import Connection, Data, Eof, Error, Ping, Pong, ProtocolError
from seclink.connection import Closed, FileMessage, HandshakeComplete

FILE_TYPES = {"FILE_PUT": 0x21, "FILE_GET": 0x22, "FILE_READY": 0x23, "FILE_INFO": 0x24, "FILE_DATA": 0x25,
              "FILE_READ": 0x26, "FILE_END": 0x27, "FILE_DONE": 0x28, "FILE_ERROR": 0x2F}

VECTORS = json.loads((Path(__file__).resolve().parents[2] / "tests" / "vectors" / "seclink_v1.json")
                     .read_text(encoding="utf-8"))


def confirmed_pair() -> dict[str, Connection]:
    h = bytes.fromhex
    pair = {side: Connection(side, h(VECTORS["psk"]), max_message=VECTORS["max_message"],
                             ephemeral_for_testing=h(VECTORS[f"{side}_ephemeral"])) for side in ("client", "server")}
    for conn in pair.values():
        conn.start()
    return pair


def other(side: str) -> str:
    return "server" if side == "client" else "client"


@pytest.mark.parametrize("section", ["eof_wire", "file_wire"])
def test_engine_reproduces_eof_and_file_wire_byte_for_byte(section: str) -> None:
    """eof_wire (section 9) and file_wire (section 10: the engine carries the file messages; the
    session layer and the client give them meaning)."""
    peers = confirmed_pair()
    for index, entry in enumerate(VECTORS[section]):
        sender, receiver = peers[entry["from"]], peers[other(entry["from"])]
        content = bytes.fromhex(entry.get("content", ""))
        queued = sender.data_to_send()
        if not queued:  # frames 1, 2, the PING and its PONG are queued by the engine itself
            kind = entry["type"]
            if kind == "DATA":
                sender.send(content)
            elif kind == "EOF":
                sender.send_eof()
            elif kind == "CLOSE":
                sender.close(content.decode())
            else:
                sender.send_file_message(FILE_TYPES[kind], content)
            queued = sender.data_to_send()
        assert queued == bytes.fromhex(entry["bytes"]), f"{section}[{index}]"
        events = receiver.receive_data(queued)
        if entry["kind"] != "transport":
            assert events == [HandshakeComplete()]
        elif entry.get("delivered") is False:
            assert events == []
        else:
            if entry["type"].startswith("FILE_"):
                assert events == [FileMessage(FILE_TYPES[entry["type"]], content)], f"{section}[{index}]"
                continue
            want = {"DATA": Data(content), "PING": Ping(content), "PONG": Pong(content), "EOF": Eof(),
                    "CLOSE": Closed(content.decode())}[entry["type"]]
            assert events == [want], f"{section}[{index}]"


@pytest.mark.parametrize("case", VECTORS["eof_malformed"], ids=[c["name"] for c in VECTORS["eof_malformed"]])
def test_engine_refuses_data_or_a_second_eof_after_eof(case: dict) -> None:
    peers = confirmed_pair()
    for entry in VECTORS["eof_wire"][:case["after"]]:
        peers[other(entry["from"])].receive_data(bytes.fromhex(entry["bytes"]))
    side = peers[case["to"]]
    side.data_to_send()
    with pytest.raises(ProtocolError) as raised:
        side.receive_data(bytes.fromhex(case["bytes"]))
    assert raised.value.name == case["error"] == "BAD_EOF"
    assert side.data_to_send() == b""


def test_sender_may_not_send_data_or_eof_after_its_eof_but_still_receives() -> None:
    client, server = Connection("client", b"k" * 32), Connection("server", b"k" * 32)
    client.start()
    server.start()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    client.send(b"last")
    client.send_eof()
    for late in (lambda: client.send(b"late"), client.send_eof):
        with pytest.raises(Error) as raised:
            late()
        assert raised.value.name == "STATE"
    assert server.receive_data(client.data_to_send()) == [Ping(b""), Data(b"last"), Eof()]
    client.data_to_send()
    server.send(b"the other way still works")
    assert Data(b"the other way still works") in client.receive_data(server.data_to_send())
