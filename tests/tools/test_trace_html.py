"""tools/trace_html.py: the page describes a real session frame by frame, and a real browser
(headless Chromium) renders it with every frame present, in order, with the right labels."""

import re
import shutil
import struct
import subprocess
from html.parser import HTMLParser

import pytest

from tools import programs, trace_html

OUT = programs.ROOT / "build" / "trace-html"

# A replayed second message: the server takes the first copy, answers it, refuses the second.
# Per direction (the two directions interleave as timing has it): after the handshake, the
# client's key-confirmation PING and the server's PONG (docs/PROTOCOL.md 4.1) carry counter 0.
EXPECTED = {
    "up": [("handshake frame 1", "", "delivered", ""), ("transport frame", "0", "delivered", ""),
           ("transport frame", "1", "delivered", ""), ("transport frame", "2", "delivered", ""),
           ("transport frame", "2", "refused", "REPLAYED")],
    "down": [("handshake frame 2", "", "delivered", ""), ("transport frame", "0", "delivered", ""),
             ("transport frame", "1", "delivered", ""), ("transport frame", "2", "delivered", "")],
}


@pytest.fixture(scope="module")
def replayed_page():
    session = trace_html.record("Python", "C++", ["hello", "pay 100 to bob"], meddle="replay", index=3,
                                work="build/trace-html/session")
    OUT.mkdir(parents=True, exist_ok=True)
    page = OUT / "replayed.html"
    page.write_text(trace_html.render(session), encoding="utf-8")
    return session, page


class Frames(HTMLParser):
    """The frame boxes of a (rendered) page: their data attributes and their heading text."""

    def __init__(self):
        super().__init__()
        self.frames, self._label_depth = [], None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "div" and "frame" in (attrs.get("class") or "").split():
            self.frames.append({**attrs, "label": ""})
        if tag == "span" and attrs.get("class") == "label":
            self._label_depth = 0
        elif self._label_depth is not None:
            self._label_depth += 1

    def handle_endtag(self, tag):
        if self._label_depth is not None:
            if self._label_depth == 0:
                self._label_depth = None
            else:
                self._label_depth -= 1

    def handle_data(self, data):
        if self._label_depth is not None:
            self.frames[-1]["label"] += data


def frames_of(html):
    parser = Frames()
    parser.feed(html)
    return parser.frames


def check_frames(frames, session):
    assert [f["data-number"] for f in frames] == [str(i) for i in range(1, len(frames) + 1)]  # in wire order
    for direction, expected in EXPECTED.items():
        mine = [f for f in frames if f["data-direction"] == direction]
        assert len(mine) >= len(expected)
        for frame, (kind, counter, status, mark) in zip(mine, expected):
            i = int(frame["data-number"])
            assert (frame["data-kind"], frame["data-counter"], frame["data-status"]) == (kind, counter, status)
            assert frame["label"].startswith(f"#{i} {kind}")
            assert (mark in frame["label"]) if mark else ("REPLAYED" not in frame["label"])
            assert f"{len(session.rows[i - 1].data)} bytes" in frame["label"]
        # After the refusal only the client's CLOSE may follow, which the server never processed.
        assert all(f["data-direction"] == "up" and f["data-status"] == "unprocessed" for f in mine[len(expected):])


def test_the_session_is_described_frame_by_frame(replayed_page):
    session, page = replayed_page
    for direction, expected in EXPECTED.items():
        rows = [row for row in session.rows if row.direction == direction]
        assert [row.summary().split(" [")[-1] for row in rows[:len(expected)]] == [e[2] + "]" for e in expected]
    up = [row for row in session.rows if row.direction == "up"]
    assert "BAD_COUNTER" in session.warn
    assert up[1].plain == "PING <empty>"  # the key confirmation
    assert up[3].plain == up[4].plain == "DATA pay 100 to bob"
    assert up[4].data == up[3].data  # byte for byte the same frame
    html = page.read_text()
    assert "BAD_COUNTER" in html and "REFUSED by the server" in html
    assert not re.search(r"""(src|href)\s*=|@import|url\(""", html)  # self-contained: nothing to fetch
    check_frames(frames_of(html), session)


def test_a_tampered_handshake_frame_is_refused_and_nothing_follows():
    session = trace_html.record("C++", "Python", ["hello"], meddle="flip", index=0, work="build/trace-html/flip")
    assert [r.summary().split(" [")[-1] for r in session.rows] == ["refused]"]
    assert session.rows[0].tampered and "HANDSHAKE_AUTH" in session.warn
    assert session.client_exit == 5


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("chromium is missing: run tools/install-deps.sh (Debian package 'chromium')")
    return path


def browser(args, tmp_path):
    # A profile of its own, so that parallel runs never share a lock; --no-sandbox as we run as root.
    return subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           f"--user-data-dir={tmp_path / 'profile'}"] + args,
                          capture_output=True, text=True, timeout=120)


def test_chromium_renders_every_frame_in_order_with_its_labels(replayed_page, tmp_path):
    session, page = replayed_page
    result = browser(["--dump-dom", page.as_uri()], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "<title>seclink: one session, frame by frame</title>" in result.stdout
    check_frames(frames_of(result.stdout), session)


def test_chromium_takes_a_screenshot_for_a_person_to_look_at(replayed_page, tmp_path):
    _, page = replayed_page
    shot = OUT / "replayed.png"
    shot.unlink(missing_ok=True)
    result = browser([f"--screenshot={shot}", "--window-size=1280,2400", page.as_uri()], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (1280, 2400)
    assert len(data) > 50_000  # a page with content, not a blank one
