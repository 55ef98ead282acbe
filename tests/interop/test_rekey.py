"""Rekeying across languages (docs/PROTOCOL.md section 13): every server x every client with a
KEY_UPDATE every few frames in both directions (--rekey-bytes 100); the messages and replies
must all arrive, which they cannot if a receiver does not switch keys exactly when the sender does."""

from __future__ import annotations


import pytest

from tests.matrix import PAIRS, PAIR_IDS, replies

MESSAGES = [f"message {i} " + "x" * (i * 7) for i in range(8)]


@pytest.mark.parametrize(("server", "client"), PAIRS, ids=PAIR_IDS)
def test_rekey_every_few_frames_in_both_directions(start_server, run_client, server: str, client: str) -> None:
    ours = server != "ref"
    srv = start_server(server, "--rekey-bytes", "100", *(["--trace"] if ours else []))
    r = run_client(client, srv.port, *MESSAGES, "--rekey-bytes", "100", *(["--trace"] if client != "ref" else []))
    assert r.returncode == 0, str(r)
    assert replies(r.stdout) == [f"ACK: received {len(m)} bytes" for m in MESSAGES], str(r)
    # Counted as PROTOCOL.md 13 says (plaintext + 16 a frame): the client sends its PING (17)
    # and messages of 27, 34, ... 76 bytes, so a KEY_UPDATE after the 3rd, 5th and 7th; the
    # server its PONG (17) and 8 replies of 39, so one after the 3rd and the 6th: 5 in all, each
    # in both traces (sent by one side, received by the other).
    if ours:
        srv.wait_for(r"disconnected")
        assert len(srv.out.matching(r"KEY_UPDATE")) == 5, srv.out.text
    if client != "ref":
        assert r.stdout.count("KEY_UPDATE") == 5, str(r)
