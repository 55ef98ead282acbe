"""Pre-shared key files and TLS certificates (docs/PROTOCOL.md section 6).

A key file holds one line of standard padded base64 of exactly 32 bytes. Loading refuses files
readable by group or others, files of another user, files in a directory another user can change,
symlinks, and anything of the wrong size or format (the core's rules, so the same as the C++
programs'); run as root it loads another user's key with a :class:`KeyOwnerWarning`. Generating
creates the file with mode 0600 and never overwrites one. The default location is
``$XDG_CONFIG_HOME/seclink/psk`` (else ``~/.config/seclink/psk``), overridden by the environment
variable ``SECLINK_PSK_FILE``, overridden by an explicit path.
"""

from __future__ import annotations

import os
import warnings

from . import _seclink
from .errors import Err, KeyFileError, from_code

__all__ = ["key_path", "load_key", "generate_key", "config_dir", "resolve_psk", "resolve_psks", "key_files", "wipe", "KeyOwnerWarning",
           "ensure_self_signed_certificate", "certificate_fingerprint", "server_key", "server_key_path", "fingerprint", "add_user",
           "public_key"]


class KeyOwnerWarning(UserWarning):
    """Running as root, a key file (or its directory) that belongs to another user was loaded."""


def key_path(path: str | os.PathLike[str] | None = None) -> str:
    """The key file to use: `path` if given, else $SECLINK_PSK_FILE, else the default location."""
    return _seclink.key_path(os.fspath(path) if path is not None else None)


def load_key(path: str | os.PathLike[str] | None = None) -> bytes:
    """Reads the 32-byte key at :func:`key_path` (`path`); raises KeyFileError saying how to fix it.
    The result is immutable bytes, which Python cannot wipe (docs/DESIGN.md section 4)."""
    key = _load(key_path(path), stacklevel=3)
    try:
        return bytes(key)
    finally:
        wipe(key)


def _load(where: str, stacklevel: int) -> bytearray:
    key, notes = _seclink.key_load_ex(where)
    if notes & _seclink.KEY_WARN_OTHER_OWNER:
        warnings.warn(f"{where}: the key file (or its directory) belongs to another user; loaded because root "
                      "may read any key", KeyOwnerWarning, stacklevel=stacklevel)
    return key


def wipe(key: bytearray) -> None:
    """Overwrites a key held in a bytearray (as :func:`resolve_psk` returns it) with zeros, in place."""
    key[:] = bytes(len(key))


def generate_key(path: str | os.PathLike[str] | None = None) -> bytes:
    """Writes a new random key at :func:`key_path` (`path`) with mode 0600 (parent directories
    0700) and returns it. Raises KeyFileError (KEY_EXISTS) rather than overwrite a file."""
    return _seclink.key_generate(key_path(path))


def config_dir() -> str:
    """$XDG_CONFIG_HOME/seclink, else ~/.config/seclink: the default key and certificates live here."""
    return _seclink.config_dir()


def resolve_psk(psk: bytes | bytearray | None, psk_file: str | os.PathLike[str] | None) -> bytearray:
    """A new copy of the key given directly, else loaded from `psk_file`, else from the default
    location, as a bytearray the caller wipes (:func:`wipe`) once the core has its own copy."""
    if psk is not None and psk_file is not None:
        raise ValueError("give psk or psk_file, not both")
    if psk is not None:
        with memoryview(psk) as view:  # its bytes, whatever its item size or strides
            if view.nbytes != _seclink.KEY_BYTES:
                raise ValueError(f"a pre-shared key is exactly {_seclink.KEY_BYTES} bytes, not {view.nbytes}")
            return bytearray(view)  # a copy this package can wipe
    return _load(key_path(psk_file), stacklevel=4)


def key_files(paths: list[str]) -> list[str]:
    """Key rotation (docs/PROTOCOL.md 12): the key files `paths` stand for, in order. A directory
    stands for the files in it whose names do not start with '.', sorted by name (bytewise); each
    is then loaded with the usual rules. Raises KeyFileError (KEY_NOT_FOUND) for an empty directory."""
    out: list[str] = []
    for p in paths:
        if os.path.isdir(p) and not os.path.islink(p):
            names = sorted((n for n in os.listdir(p) if not n.startswith(".")), key=os.fsencode)
            if not names:
                raise from_code(Err.KEY_NOT_FOUND, f"{p}: a key directory with no key files in it")
            out += [os.path.join(p, n) for n in names]
        else:
            out.append(p)
    return out


def resolve_psks(psk: bytes | bytearray | list[bytes] | None,
                 psk_file: str | os.PathLike[str] | list[str | os.PathLike[str]] | None
                 ) -> tuple[bytearray, list[str] | None]:
    """Like :func:`resolve_psk` for a server, which may accept several keys at once (key rotation,
    docs/PROTOCOL.md 12): `psk` may be a list of keys, `psk_file` a list of files or directories
    (:func:`key_files`). Returns the keys one after the other (a bytearray the caller wipes) and,
    for keys from files, the files' paths (for the log: which key a session used), else None."""
    if psk is not None and psk_file is not None:
        raise ValueError("give psk or psk_file, not both")
    if isinstance(psk, list):
        keys = [resolve_psk(k, None) for k in psk]
        names = None
    elif isinstance(psk_file, list) or (psk_file is not None and os.path.isdir(psk_file)):
        files = psk_file if isinstance(psk_file, list) else [psk_file]
        names = key_files([os.fspath(f) for f in files])
        keys = [_load(n, stacklevel=4) for n in names]
    else:
        return resolve_psk(psk, psk_file), None
    if not 1 <= len(keys) <= _seclink.MAX_PSKS:
        for k in keys:
            wipe(k)
        raise ValueError(f"a server accepts 1 to {_seclink.MAX_PSKS} keys at once, not {len(keys)}")
    out = bytearray().join(keys)
    for k in keys:
        wipe(k)
    return out, names


def server_key(path: str | os.PathLike[str], create: bool = True) -> tuple[bytearray, bool]:
    """A server's static private key (docs/PROTOCOL.md 14.3) from `path`, a file in the PSK file's
    format, created (0600) if missing and `create`. Returns (key, created); raises KeyFileError."""
    try:
        return _load(os.fspath(path), stacklevel=3), False
    except KeyFileError as e:
        if e.name != "KEY_NOT_FOUND" or not create:
            raise
    try:
        return bytearray(_seclink.key_generate(os.fspath(path))), True
    except KeyFileError as e:
        if e.name != "KEY_EXISTS":
            raise
    return _load(os.fspath(path), stacklevel=3), False  # another program was faster


def server_key_path(psk_path: str | os.PathLike[str]) -> str:
    """Where a server keeps its static key by default: beside its (first) PSK file, or beside a
    directory of PSK files."""
    return os.path.join(os.path.dirname(os.path.abspath(os.fspath(psk_path))), "server_key")


def add_user(path: str | os.PathLike[str], name: str, password: bytes | str) -> None:
    """Stores a salted scrypt hash of `name`'s password in the users file at `path` (0600),
    replacing the user's old line (docs/PROTOCOL.md 16)."""
    _seclink.users_add(os.fspath(path), name, password.encode() if isinstance(password, str) else password)


def fingerprint(pub: bytes) -> str:
    """The fingerprint of a public key, to read aloud: 8 groups of 4 base32 characters."""
    return _seclink.key_fingerprint(pub)


def public_key(priv: bytes | bytearray) -> bytes:
    """The X25519 public key of a private key (e.g. of :func:`server_key`)."""
    return _seclink.key_public(priv)


def ensure_self_signed_certificate(cert: str | None = None, key: str | None = None) -> tuple[str, str, bool]:
    """Creates a self-signed TLS certificate and key (EC P-256, for localhost, 127.0.0.1 and ::1)
    unless both exist. Default paths: <config_dir>/tls/cert.pem and key.pem, the certificate that
    clients on this machine trust by default. Returns (cert, key, created)."""
    base = os.path.join(config_dir(), "tls")
    cert = cert or os.path.join(base, "cert.pem")
    key = key or os.path.join(base, "key.pem")
    created = _seclink.tls_ensure_self_signed(cert, key)
    return cert, key, created


def certificate_fingerprint(cert: str | os.PathLike[str]) -> str:
    """SHA-256 of the first certificate in the PEM file, as 64 hex digits (what --tls-pin takes)."""
    return _seclink.tls_fingerprint(os.fspath(cert))
