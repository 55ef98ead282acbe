"""--tls: the self-signed certificate and default trust, --tls-pin, --tls-ca, --tls-cert/--tls-key,
every mismatch with its exit code and error name, and seclink/1 traffic inside TLS."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import socket
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tools.procs import CEILING, WAIT, base_env
from tests.reference.seclink_ref import DATA, PING, PONG, Message

FINGERPRINT = r"^\[INFO\] TLS 1\.3 certificate (\S+), SHA-256 fingerprint ([0-9a-f]{64})$"


def fingerprint_of(pem: Path) -> str:
    cert = x509.load_pem_x509_certificate(pem.read_bytes())
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def tls_error(r, name: str) -> None:
    """Exit 6, one error line naming the TLS mismatch."""
    assert r.returncode == 6, str(r)
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("client: error: TLS with ") and f"[{name}]" in lines[0], str(r)
    assert "[SEND]" not in r.stdout


@pytest.fixture
def elsewhere(tmp_path: Path, psk_file: Path) -> dict[str, str]:
    """The environment of a client on another machine: no certificate of a local server to trust
    (it has the PSK through --psk-file)."""
    (tmp_path / "elsewhere").mkdir()
    return base_env(tmp_path / "elsewhere")


class TlsServer:
    def __init__(self, srv) -> None:
        self.srv = srv
        self.port = srv.port
        m = srv.wait_for(FINGERPRINT)
        self.cert, self.fingerprint = Path(m.group(1)), m.group(2)


@pytest.fixture
def tls_server(start_server) -> TlsServer:
    return TlsServer(start_server("--tls"))


def make_ca(tmp_path: Path, name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    path = tmp_path / f"{name}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key, path


def make_leaf(tmp_path: Path, ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey,
              sans: list[x509.GeneralName]) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "leaf")]))
            .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "leaf.pem", tmp_path / "leaf.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


# --------------------------------------------------------------------------- trust that works

def test_self_signed_certificate_is_created_and_trusted_by_default(start_server, run_client, home):
    tls_dir = home / "config" / "seclink" / "tls"
    srv = start_server("--tls")
    ts = TlsServer(srv)
    assert ts.cert == tls_dir / "cert.pem"
    assert f"[INFO] Created a self-signed TLS certificate: {ts.cert}" in srv.out.lines
    assert ts.fingerprint == fingerprint_of(ts.cert)
    assert stat.S_IMODE((tls_dir / "key.pem").stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate(ts.cert.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"localhost"}
    assert set(san.get_values_for_type(x509.IPAddress)) == {ipaddress.ip_address("127.0.0.1"),
                                                            ipaddress.ip_address("::1")}
    for host in ("127.0.0.1", "localhost"):
        r = run_client(host, ts.port, "over TLS", "--tls", "--log-file", "-")
        assert r.returncode == 0, str(r)
        assert r.stdout.splitlines()[:3] == [
            f"[INFO] Connected to {host}:{ts.port} (seclink/1: Noise NNpsk0 + AES-256-GCM, inside TLS 1.3)",
            "[SEND] #1 over TLS (8 bytes)", "[RECV] #1 ACK: received 8 bytes (a reply of 21 bytes)"]
    srv.wait_for(r"disconnected: client closed the session$", count=2)
    # A second server reuses the certificate (clients that trust it keep working).
    again = TlsServer(start_server("--tls"))
    assert again.fingerprint == ts.fingerprint
    assert not again.srv.out.matching("Created a self-signed")


def test_pin_trusts_exactly_that_certificate(tls_server, run_client, elsewhere):
    r = run_client("127.0.0.1", tls_server.port, "pinned", "--tls", "--tls-pin", tls_server.fingerprint, env=elsewhere)
    assert r.returncode == 0, str(r)
    assert "[RECV] #1 ACK: received 6 bytes" in r.stdout
    wrong = tls_server.fingerprint[:-1] + ("0" if tls_server.fingerprint[-1] != "0" else "1")
    r = run_client("127.0.0.1", tls_server.port, "pinned", "--tls", "--tls-pin", wrong, env=elsewhere)
    tls_error(r, "TLS_PIN")
    assert len(tls_server.srv.out.matching(r"^\[RECV\]")) == 1  # the mismatched client sent nothing


def test_ca_file_trusts_the_certificate_it_signed(tls_server, run_client, elsewhere):
    for host in ("127.0.0.1", "localhost"):
        r = run_client(host, tls_server.port, "via CA", "--tls", "--tls-ca", tls_server.cert, env=elsewhere)
        assert r.returncode == 0, str(r)


def test_own_certificate_chain_with_tls_cert_and_tls_key(start_server, run_client, elsewhere, tmp_path, home):
    ca, ca_key, ca_path = make_ca(tmp_path, "test-ca")
    cert, key = make_leaf(tmp_path, ca, ca_key, [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    srv = start_server("--tls", "--tls-cert", str(cert), "--tls-key", str(key))
    ts = TlsServer(srv)
    assert ts.cert == cert and ts.fingerprint == fingerprint_of(cert)
    assert not srv.out.matching("Created a self-signed") and not (home / "config" / "seclink" / "tls").exists()
    r = run_client("127.0.0.1", ts.port, "signed", "--tls", "--tls-ca", ca_path, env=elsewhere)
    assert r.returncode == 0, str(r)
    tls_error(run_client("localhost", ts.port, "x", "--tls", "--tls-ca", ca_path, env=elsewhere), "TLS_HOSTNAME")


# --------------------------------------------------------------------------- mismatches

def test_certificate_from_an_unknown_ca_is_refused(tls_server, run_client, elsewhere, tmp_path):
    _, _, other_ca = make_ca(tmp_path, "someone-else")
    r = run_client("127.0.0.1", tls_server.port, "x", "--tls", "--tls-ca", other_ca, env=elsewhere)
    tls_error(r, "TLS_VERIFY")


def test_wrong_host_name_is_refused(start_server, run_client):
    srv = start_server("--tls", host="127.0.0.2")  # loopback, but not in the certificate
    ts = TlsServer(srv)
    assert srv.host == "127.0.0.2"
    tls_error(run_client("127.0.0.2", ts.port, "x", "--tls"), "TLS_HOSTNAME")
    tls_error(run_client("127.0.0.2", ts.port, "x", "--tls", "--tls-ca", ts.cert), "TLS_HOSTNAME")
    assert srv.out.matching(r"^\[RECV\]") == []


@pytest.mark.parametrize("trust", ["pin", "ca"])
def test_tls_client_meeting_a_plain_server(start_server, run_client, tmp_path, trust):
    srv = start_server()
    _, _, ca = make_ca(tmp_path, "ca")
    r = run_client("127.0.0.1", srv.port, "x", "--tls", *(["--tls-pin", "ab" * 32] if trust == "pin" else ["--tls-ca", ca]))
    tls_error(r, "TLS_EXPECTED")
    srv.wait_for(r"^\[WARN\] 127\.0\.0\.1:\d+ disconnected: client is speaking TLS but this server does not use TLS$")
    assert srv.out.matching(r"^\[RECV\]") == []
    assert run_client("127.0.0.1", srv.port, "plain").returncode == 0


def test_plain_client_meeting_a_tls_server(tls_server, run_client):
    r = run_client("127.0.0.1", tls_server.port, "x")
    tls_error(r, "TLS_UNEXPECTED")
    assert "add --tls" in r.stderr
    tls_server.srv.wait_for(r"^\[WARN\] 127\.0\.0\.1:\d+ disconnected: client is not using TLS")
    assert run_client("127.0.0.1", tls_server.port, "tls", "--tls").returncode == 0


def test_wrong_psk_inside_tls_is_still_a_handshake_failure(tls_server, run_client, tmp_path):
    from tests.reference.seclink_ref import generate_key
    generate_key(tmp_path / "other")
    r = run_client("127.0.0.1", tls_server.port, "x", "--tls", psk=tmp_path / "other")
    assert r.returncode == 5, str(r)
    tls_server.srv.wait_for(r"^\[WARN\] 127\.0\.0\.1:\d+ disconnected: handshake failed: HANDSHAKE_AUTH: ")


@pytest.mark.parametrize("case", ["missing-cert", "cert-without-key", "mismatched-key"])
def test_unusable_server_certificate(run_server, tmp_path, case):
    ca, ca_key, ca_path = make_ca(tmp_path, "ca")
    cert, key = make_leaf(tmp_path, ca, ca_key, [x509.DNSName("localhost")])
    args = {"missing-cert": ["--tls-cert", tmp_path / "nope.pem", "--tls-key", key],
            "cert-without-key": ["--tls-cert", cert],
            "mismatched-key": ["--tls-cert", ca_path, "--tls-key", key]}[case]
    r = run_server("--host", "127.0.0.1", "--port", "0", "--tls", *args)
    assert r.returncode == (2 if case == "cert-without-key" else 6), str(r)
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("server: error: "), str(r)
    assert "Listening" not in r.stdout


# --------------------------------------------------------------------------- traffic inside TLS

def test_tls_traffic_large_messages_and_concurrent_clients(start_server, run_client, spawn_client, tmp_path):
    srv = start_server("--tls", "--echo")
    big = os.urandom(16 << 20)
    (tmp_path / "big").write_bytes(big)
    clients = [spawn_client("127.0.0.1", srv.port, "--tls", "--log-file", "-", "--quiet",
                            *[f"tls-{i}-{j}" for j in range(50)]) for i in range(10)]
    r = run_client("127.0.0.1", srv.port, "--tls", "--message-file", tmp_path / "big", "--message", "small",
                   "--log-file", "-", timeout=CEILING)
    assert r.returncode == 0, str(r)
    assert "[RECV] #1 small (a reply of 5 bytes)" in r.stdout and "[RECV] #2 <binary> (a reply of 16777216 bytes)" in r.stdout
    for i, c in enumerate(clients):
        assert c.wait(CEILING) == 0, c.err.text
        assert c.out.lines == [f"[RECV] #{j + 1} tls-{i}-{j} (a reply of {len(f'tls-{i}-{j}')} bytes)" for j in range(50)]


def test_raw_peer_inside_tls_ping_and_tampering(start_server, run_client, raw_peers, psk):
    srv = start_server("--tls")
    ts = TlsServer(srv)
    ctx = ssl.create_default_context(cafile=str(ts.cert))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    witness = raw_peers(ts.port, psk, tls=ctx)
    witness.send(PING, b"tls ping")
    assert witness.next_event() == Message(PONG, b"tls ping")
    attacker = raw_peers(ts.port, psk, tls=ctx)
    f = bytearray(attacker.frame(DATA, b"tampered"))
    f[-3] ^= 0x10
    attacker.send_raw(bytes(f))
    assert attacker.read_to_eof() == b""
    srv.wait_for(rf"^\[WARN\] {attacker.name} disconnected: protocol error: AUTH: ")
    assert witness.request(b"still fine") == b"ACK: received 10 bytes"
    assert run_client("127.0.0.1", ts.port, "after", "--tls").returncode == 0


def test_tls_handshake_timeout_and_shutdown(start_server, spawn_client, raw_peers, psk):
    srv = start_server("--tls", "--handshake-timeout", "1")
    ts = TlsServer(srv)
    with socket.create_connection(("127.0.0.1", ts.port), timeout=WAIT) as silent:
        peer = "127.0.0.1:%d" % silent.getsockname()[1]
        srv.wait_for(rf"^\[WARN\] {peer} disconnected: handshake timed out after 1 s$", timeout=5)
        assert silent.recv(10) == b""
    busy = spawn_client("127.0.0.1", ts.port, "--tls", "--quiet", "--log-file", "-",
                        *[f"m{i}" for i in range(20000)])
    busy.out.wait_for(r"^\[RECV\] #100 ")
    assert srv.stop() == 0
    assert busy.wait() == 7
    assert busy.err.lines == ["client: error: the server closed the session: server shutting down"]


# --------------------------------------------------------------------------- pins and trust

@pytest.mark.parametrize("pin", ["00" * 33, "not-hex"])
def test_malformed_pin_is_a_usage_error(tls_server, run_client, elsewhere, pin):
    r = run_client("127.0.0.1", tls_server.port, "x", "--tls", "--tls-pin", pin, env=elsewhere)
    assert r.returncode == 2, str(r)
    assert "--tls-pin" in r.stderr


def test_pin_is_not_ignored_when_a_ca_is_also_given(tls_server, run_client, elsewhere):
    wrong = "ab" * 32
    r = run_client("127.0.0.1", tls_server.port, "x", "--tls", "--tls-ca", tls_server.cert, "--tls-pin", wrong,
                   env=elsewhere)
    assert r.returncode == 6, str(r)  # README: 6, pin mismatch
    assert tls_server.srv.out.matching(r"^\[RECV\]") == []


@pytest.mark.parametrize("case", ["no-local-certificate", "missing-ca-file"])
def test_client_with_nothing_to_trust_says_how_to_fix_it(tls_server, run_client, elsewhere, tmp_path, case):
    extra = ["--tls-ca", tmp_path / "missing.pem"] if case == "missing-ca-file" else []
    r = run_client("127.0.0.1", tls_server.port, "x", "--tls", *extra, env=elsewhere)
    assert r.returncode == 6, str(r)
    assert "--tls-cert" not in r.stderr
    assert "--tls-ca" in r.stderr or "--tls-pin" in r.stderr
