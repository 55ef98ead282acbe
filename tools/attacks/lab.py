"""The attack lab behind `make attacks`: four classic broken designs, a real attack on each, then
the same attack on seclink (the real ./server or python/server.py, and ./client).

    python3 -m tools.attacks              # all four; exit 0 only if every attack behaved as taught
    python3 -m tools.attacks --only 2     # one of them
    python3 -m tools.attacks --server Python

Each attack must SUCCEED against its weak design (tools/attacks/weak.py: INSECURE on purpose)
and FAIL against seclink; the lab checks both and exits 1 if any attack behaves otherwise.
Everything listens on 127.0.0.1 on free ports; files go to build/attacks/.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import ssl
import sys
import textwrap
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional

if __package__ in (None, ""):  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tools import programs  # noqa: E402
from tools.attacks import weak  # noqa: E402
from tools.wiretap import Frame, Wiretap  # noqa: E402

WORK = "build/attacks"  # the default; every path below is relative to Lab.work
PSK = "psk"
ATTACKER_PSK = "attacker-psk"
Out = Callable[[str], None]


@dataclass
class Verdict:
    """What one attack did: `broke` is True if the attacker got what it wanted."""

    broke: bool
    evidence: List[str] = field(default_factory=list)


class Lab:
    """One real seclink server, shared by the attacks, and the printing."""

    def __init__(self, language: str = "C++", out: Out = print, width: int = 80, work: str = WORK) -> None:
        self.language, self.out, self.width, self.work = language, out, width, work
        self.config = f"{work}/config"
        shutil.rmtree(programs.ROOT / work, ignore_errors=True)
        (programs.ROOT / self.config).mkdir(parents=True)
        programs.keygen(f"{work}/{PSK}", self.config)
        programs.keygen(f"{work}/{ATTACKER_PSK}", self.config)
        self.server = programs.SeclinkServer(language, f"{language} server", self.flags("server"), self.config)
        self.say(f"seclink: the real {language} server on 127.0.0.1:{self.server.port} (key {work}/{PSK}; "
                 f"the attacker's own key {work}/{ATTACKER_PSK}; logs in {work}/)")

    def flags(self, who: str, psk: str = PSK) -> List[str]:
        return ["--psk-file", f"{self.work}/{psk}", "--log-file", f"{self.work}/{who}.log"]

    def client(self, port: int, messages: List[str], psk: str = PSK, who: str = "client"):
        return programs.run_client("C++", [programs.HOST, str(port)] + messages, self.flags(who, psk),
                                   self.config)

    def session_lines(self) -> List[str]:
        """The real server's lines for the session that just ended."""
        return self.server.expect(r"disconnected")

    def close(self) -> None:
        self.server.close()

    # printing ----------------------------------------------------------------------------------
    def say(self, text: str, indent: str = "  ", rest: Optional[str] = None) -> None:
        for line in textwrap.wrap(text, self.width, initial_indent=indent,
                                  subsequent_indent=indent if rest is None else rest,
                                  break_on_hyphens=False) or [indent]:
            self.out(line)

    def show(self, label: str, lines: List[str]) -> None:
        prefix = f"    {label:<9}| "
        for line in lines:
            pieces = textwrap.wrap(line, max(20, self.width - len(prefix)), subsequent_indent="  ",
                                   break_on_hyphens=False) or [""]
            self.out(prefix + pieces[0])
            for piece in pieces[1:]:
                self.out(" " * (len(prefix) - 2) + "| " + piece)


def warn_lines(lines: List[str]) -> List[str]:
    return [line for line in lines if line.startswith("[WARN]")]


# ---------------------------------------------------------------------------------------------
# 1. XOR with a fixed key

KNOWN = b"LOGIN user=alice"  # every session starts with it: the attacker knows these 16 bytes
LATER = [b"password=hunter2", b"pay 100 to bob"]


def xor_weak(lab: Lab) -> Verdict:
    key = os.urandom(16)  # the attacker does not know it
    link = weak.XorLink(key)
    server = weak.WeakServer(link)
    tap = Wiretap(server.port)
    weak.send_messages(tap.port, link, [KNOWN] + LATER)
    tap.close()
    server.close()
    up = [f.body for f in tap.frames if f.direction == "up"]
    recovered_key = weak.xor(up[0], KNOWN)
    read = [weak.xor(body, recovered_key) for body in up[1:]]
    lab.show("wire", [f"frame {i}: {body.hex()}" for i, body in enumerate(up)])
    lab.show("attacker", [f"key = frame 0 XOR {KNOWN.decode()!r} = {recovered_key.hex()}"]
             + [f"frame {i} XOR key = {text.decode(errors='replace')!r}" for i, text in enumerate(read, 1)])
    return Verdict(recovered_key == key and read == LATER, [f"read {read[-1].decode(errors='replace')!r}"])


def xor_seclink(lab: Lab) -> Verdict:
    tap = Wiretap(lab.server.port)
    result = lab.client(tap.port, [m.decode() for m in [KNOWN] + LATER])
    tap.close()
    lines = lab.session_lines()
    # frame 0 is the handshake, frame 1 the key-confirmation PING (docs/PROTOCOL.md 4.1)
    up = [f.body for f in tap.frames if f.direction == "up"][2:]
    cipher = [body[12:-16] for body in up]  # iv || ciphertext || tag; plaintext = type byte || text
    keystream = weak.xor(cipher[0], b"\x01" + KNOWN)
    read = [weak.xor(c[1:], keystream[1:]) for c in cipher[1:len(LATER) + 1]]
    lab.show("attacker", [f"'key' = frame 2 XOR {KNOWN.decode()!r} = {keystream[1:].hex()}"]
             + [f"frame {i} XOR 'key' = {text!r}" for i, text in enumerate(read, 3)])
    lab.say("Every frame has its own counter, so its own keystream: knowing one frame's plaintext "
            "tells nothing about the others. A passive attack leaves no trace in any log; it has to "
            "fail by design, and it does.", "    ")
    if result.returncode != 0 or sum(line.startswith("[RECV]") for line in lines) != 3:
        return Verdict(True, [f"the real session itself failed (client exit {result.returncode})"])
    return Verdict(any(text in LATER for text in read) or any(m in tap.wire() for m in LATER),
                   ["read nothing: no later message in the capture or the XOR"])


# ---------------------------------------------------------------------------------------------
# 2. AES-CBC with the key in the source, no MAC: read it all, and flip "pay 100" into "pay 900"

ORDER = b"pay 100 to bob"
FLIP = ord("1") ^ ord("9")  # XORed into the byte under the "1" of "100" (offset 4)


def cbc_weak(lab: Lab) -> Verdict:
    link = weak.CbcLink()
    server = weak.WeakServer(link)

    def flip_iv(f: Frame) -> bytes:
        if f.direction != "up":
            return f.data
        body = bytearray(f.body)
        body[4] ^= FLIP  # IV byte 4: CBC XORs the IV into the first block's plaintext
        return weak.frame(bytes(body))

    tap = Wiretap(server.port, meddle=flip_iv)
    weak.send_messages(tap.port, link, [ORDER])
    tap.close()
    server.wait_sessions(1)
    server.close()
    body = tap.frames[0].body
    eavesdropped = weak.CbcLink().open(body)  # anyone with the source has CBC_KEY
    lab.show("attacker", [f"with CBC_KEY from tools/attacks/weak.py: {eavesdropped.decode()!r}",
                          f"IV {body[:16].hex()} -> byte 4 ^= 0x{FLIP:02x}"])
    lab.show("server", server.log)
    return Verdict(eavesdropped == ORDER and server.received == [b"pay 900 to bob"],
                   ["the server accepted 'pay 900 to bob'"])


def cbc_seclink(lab: Lab) -> Verdict:
    def flip_cipher(f: Frame) -> bytes:
        if f.direction != "up" or f.index != 2:  # 0: handshake, 1: key-confirmation PING, 2: the order
            return f.data
        data = bytearray(f.data)
        data[4 + 12 + 1 + 4] ^= FLIP  # prefix, IV, type byte, then "pay " : under the "1"
        return bytes(data)

    tap = Wiretap(lab.server.port, meddle=flip_cipher)
    result = lab.client(tap.port, [ORDER.decode()])
    tap.close()
    lines = lab.session_lines()
    lab.say("GCM encrypts with a keystream too, so the same flip would turn 100 into 900; but the "
            "16-byte tag no longer matches, and no plaintext is released before it does.", "    ")
    lab.show("server", warn_lines(lines) + [line for line in lines if line.startswith("[RECV]")])
    accepted = any("pay 900" in line or "pay 100" in line for line in lines if line.startswith("[RECV]"))
    refused = any("protocol error: AUTH:" in line for line in warn_lines(lines))
    return Verdict(accepted or not refused or ORDER in tap.wire() or result.returncode == 0,
                   ["refused (AUTH), nothing delivered" if refused else "no AUTH [WARN]"])


# ---------------------------------------------------------------------------------------------
# 3. TLS with certificate verification turned off: a man in the middle with its own certificate

class TlsMitm:
    """Accepts TLS with its own self-signed certificate, opens TLS to the real server (verifying
    nothing either), reads every frame and rewrites 'to bob' into 'to eve' on the way up."""

    def __init__(self, server_port: int, cert: Path, key: Path) -> None:
        self.server_port = server_port
        self.front = weak.tls_server_context(cert, key)
        self.listener = socket.create_server((weak.HOST, 0))
        self.port = self.listener.getsockname()[1]
        self.seen: List[bytes] = []
        self.error = ""
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.listener.settimeout(weak.WAIT)
        try:
            raw, _ = self.listener.accept()
        except OSError:
            return
        try:
            with self.front.wrap_socket(raw, server_side=True) as client, \
                    weak.tls_client_context().wrap_socket(
                        socket.create_connection((weak.HOST, self.server_port), timeout=weak.WAIT),
                        server_hostname="bank.example") as server:
                client.settimeout(weak.WAIT)
                replies = weak.read_frames(server)
                for body in weak.read_frames(client):
                    self.seen.append(body)
                    server.sendall(weak.frame(body.replace(b"to bob", b"to eve")))
                    client.sendall(weak.frame(next(replies, b"")))
        except (OSError, ssl.SSLError) as e:  # e.g. a client that did verify, and hung up on us
            self.error = f"{type(e).__name__}: {e}"
        finally:
            raw.close()

    def close(self) -> None:
        self.thread.join(weak.WAIT * 2)
        self.listener.close()


def tls_weak(lab: Lab) -> Verdict:
    certs = programs.ROOT / lab.work / "certs"
    real_cert, real_key = weak.self_signed(certs, "bank.example")
    evil_cert, evil_key = weak.self_signed(certs, "mallory.example")
    server = weak.WeakServer(weak.PlainLink(), tls=weak.tls_server_context(real_cert, real_key))
    mitm = TlsMitm(server.port, evil_cert, evil_key)
    client_tls = weak.tls_client_context()
    weak.send_messages(mitm.port, weak.PlainLink(), [ORDER], tls=client_tls)
    mitm.close()
    server.wait_sessions(1)
    server.close()
    lab.show("mitm", [f"presented its own certificate (sha256 {weak.fingerprint(evil_cert)}...), "
                      f"the server's is {weak.fingerprint(real_cert)}...",
                      f"read {b''.join(mitm.seen).decode()!r}, forwarded it as 'pay 100 to eve'"])
    lab.show("server", server.log)
    return Verdict(mitm.seen == [ORDER] and server.received == [b"pay 100 to eve"],
                   ["the client talked to mallory; the server accepted 'pay 100 to eve'"])


def tls_seclink(lab: Lab) -> Verdict:
    # The man in the middle has no PSK, so it brings its own key, as it brought its own
    # certificate: its front is a real seclink server with that key, and it dials the real
    # server with that key.
    front = programs.SeclinkServer("C++", "mitm", lab.flags("mitm", ATTACKER_PSK), lab.config)
    try:
        victim = lab.client(front.port, [ORDER.decode()])
        front_lines = front.expect(r"disconnected")
    finally:
        front.close()
    dial = lab.client(lab.server.port, [ORDER.replace(b"bob", b"eve").decode()], psk=ATTACKER_PSK,
                      who="mitm-client")
    lines = lab.session_lines()
    lab.show("client", [f"exit {victim.returncode}: " + " ".join(victim.stderr.split())])
    lab.show("server", warn_lines(lines))
    read = any(line.startswith("[RECV]") for line in front_lines)
    refused = (victim.returncode == 5 and dial.returncode == 5
               and any("HANDSHAKE_AUTH" in line for line in warn_lines(lines)))
    return Verdict(read or not refused or any(line.startswith("[RECV]") for line in lines),
                   ["client exit 5 (different key); the real server: HANDSHAKE_AUTH"])


# ---------------------------------------------------------------------------------------------
# 4. No replay protection: a recorded session sent again is accepted again

def replay_weak(lab: Lab) -> Verdict:
    link = weak.NoCounterLink(os.urandom(32))
    server = weak.WeakServer(link)
    tap = Wiretap(server.port)
    weak.send_messages(tap.port, link, [ORDER])
    tap.close()
    replay_bytes(server.port, tap.wire("up"))
    server.wait_sessions(2)
    server.close()
    lab.show("attacker", [f"recorded {len(tap.wire('up'))} bytes, sent them again on a new connection"])
    lab.show("server", server.log)
    return Verdict(server.received == [ORDER, ORDER], ["the server accepted 'pay 100 to bob' twice"])


def replay_seclink(lab: Lab) -> Verdict:
    tap = Wiretap(lab.server.port)
    result = lab.client(tap.port, [ORDER.decode()])
    tap.close()
    first = lab.session_lines()
    recorded = tap.wire("up")
    replay_bytes(lab.server.port, recorded)
    lines = lab.session_lines()
    lab.show("attacker", [f"recorded {len(recorded)} bytes (handshake frame 1, the key-confirmation PING, the message, CLOSE), "
                          "sent them again on a new connection"])
    lab.say("The server answers the replayed handshake with fresh ephemeral keys, so the session "
            "keys differ and the recorded message fails its tag.", "    ")
    lab.show("server", warn_lines(lines))
    delivered = sum(line.startswith("[RECV]") for line in first + lines)
    refused = any("protocol error: AUTH:" in line for line in warn_lines(lines))
    return Verdict(result.returncode != 0 or delivered != 1 or not refused,
                   [f"delivered once; the replay refused ({'AUTH' if refused else 'no [WARN]'})"])


def replay_bytes(port: int, data: bytes) -> None:
    """Send recorded bytes on a new connection, then read until the server closes (bounded)."""
    with socket.create_connection((weak.HOST, port), timeout=weak.WAIT) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        try:
            while s.recv(65536):
                pass
        except OSError:
            pass


# ---------------------------------------------------------------------------------------------

@dataclass
class Attack:
    title: str
    design: str
    idea: str
    on_weak: Callable[[Lab], Verdict]
    on_seclink: Callable[[Lab], Verdict]


ATTACKS = [
    Attack("XOR with a fixed key: one known plaintext reads every later message",
           "XorLink: body = message XOR a fixed 16-byte key",
           "every session starts with 'LOGIN user=alice'; the eavesdropper XORs those 16 bytes with "
           "the first frame and gets the key.", xor_weak, xor_seclink),
    Attack("AES-CBC, key in the source, no MAC: read everything, turn 'pay 100' into 'pay 900'",
           "CbcLink: body = IV || AES-CBC(CBC_KEY, message); CBC_KEY is in tools/attacks/weak.py",
           "a listener with the source decrypts; a relay flips IV byte 4 by '1' XOR '9' = 0x08.",
           cbc_weak, cbc_seclink),
    Attack("TLS without certificate verification: a man in the middle reads and alters",
           "TLS 1.3, client with check_hostname=False, verify_mode=CERT_NONE",
           "the man in the middle answers with its own self-signed certificate and relays.",
           tls_weak, tls_seclink),
    Attack("No replay protection: a recorded message is accepted twice",
           "NoCounterLink: body = random nonce || AES-GCM(key, message): sealed, but not ordered",
           "the eavesdropper records the client's bytes and sends them again later.",
           replay_weak, replay_seclink),
]


def run_attack(lab: Lab, number: int) -> bool:
    """Run attack `number` (1-based) on its weak design and on seclink; True if it behaved as taught."""
    attack = ATTACKS[number - 1]
    lab.out("")
    lab.say(f"-- Attack {number}/{len(ATTACKS)}: {attack.title}", "", "   ")
    lab.say(f"INSECURE design: {attack.design}. The attack: {attack.idea}")
    ok = True
    for target, run, expect_broken in (("weak design", attack.on_weak, True),
                                       (f"seclink ({lab.language} server)", attack.on_seclink, False)):
        lab.out(f"  against the {target}:")
        try:
            verdict = run(lab)
        except (programs.Misbehaved, OSError, ssl.SSLError) as e:
            verdict = Verdict(not expect_broken, [f"the attack could not run: {type(e).__name__}: {e}"])
        word = "BROKEN" if verdict.broke else "HELD"
        good = verdict.broke == expect_broken
        ok &= good
        lab.say(f"=> {word}: {'; '.join(verdict.evidence)}"
                + ("" if good else f"  (UNEXPECTED: it should have {'broken' if expect_broken else 'held'})"),
                "  ")
    return ok


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m tools.attacks", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Exit status: 0 if every attack broke its weak design and failed against seclink, "
               "1 otherwise.")
    parser.add_argument("--only", type=int, choices=range(1, len(ATTACKS) + 1), metavar="N",
                        help=f"run only attack N (1-{len(ATTACKS)})")
    parser.add_argument("--server", choices=sorted(programs.SERVERS), default="C++",
                        help="which real seclink server to attack (default C++)")
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)
    programs.require_built()
    width = min(100, shutil.get_terminal_size((80, 24)).columns)
    print("seclink attack lab: INSECURE teaching designs next to seclink, all on 127.0.0.1.")
    failed = []
    try:
        lab = Lab(args.server, print, width)
        for number in [args.only] if args.only else range(1, len(ATTACKS) + 1):
            if not run_attack(lab, number):
                failed.append(number)
    except programs.Misbehaved as e:
        print(f"attack lab: the seclink server did not start: {e}")
        return 1
    finally:
        programs.stop_all()
    print()
    if failed:
        print(f"Attack lab FAILED: attack(s) {', '.join(map(str, failed))} did not behave as taught.")
        return 1
    print("Attack lab complete: every attack broke its weak design and failed against seclink.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
