"""The programs ``server.py`` / ``seclink-server`` and ``client.py`` / ``seclink-client``.

They have the same flags, defaults, output, log file format, exit codes and interactive commands
as the C++ programs ``./server`` and ``./client`` (cpp_apps/): only the ``(python)`` tag in the
start-up line and ``--version`` tell them apart. Keep the two in step; the end-to-end tests run
the same cases against both.
"""

from __future__ import annotations

import asyncio
import base64
import ctypes
import errno
import json
import os
import queue
import re
import select
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any, NoReturn, overload

from . import _seclink
from .client import Client
from .errors import Category, ConnectionClosed, Err, Error, HandshakeError, KeyFileError, MessageTooLarge, Timeout
from .keys import (certificate_fingerprint, config_dir, ensure_self_signed_certificate, key_files, resolve_psks,
                   server_key, server_key_path, wipe)
from .server import Server

# Exit codes, the same as the C++ programs' (README.md): the core's error categories (sl_category).
OK, INTERNAL, USAGE, KEY, NETWORK, HANDSHAKE, TLS, SESSION, TOO_LARGE = (
    Category.OK, Category.INTERNAL, Category.USAGE, Category.KEY, Category.NETWORK, Category.HANDSHAKE, Category.TLS,
    Category.SESSION, Category.TOO_LARGE)

LOG_ERROR, LOG_WARN, LOG_INFO, LOG_MSG, LOG_TRACE = (_seclink.LOG_ERROR, _seclink.LOG_WARN, _seclink.LOG_INFO,
                                                     _seclink.LOG_MSG, _seclink.LOG_TRACE)
MAX_MESSAGE_LIMIT = _seclink.MAX_MESSAGE_LIMIT

# The flag table and help text, shared with the C++ programs (cpp_apps/flags_header.cmake makes a
# header of the same file). {DEFAULT_X} is _seclink.DEFAULT_X (SL_DEFAULT_X of seclink.h).
with open(os.path.join(os.path.dirname(__file__), "flags.json"), encoding="utf-8") as _f:
    PROGRAMS: dict[str, Any] = json.load(_f)


def expand_defaults(text: str) -> str:
    """{DEFAULT_X} -> _seclink.DEFAULT_X; ":s" gives milliseconds in seconds, ":MiB" bytes in MiB."""
    def value(m: re.Match[str]) -> str:
        n = getattr(_seclink, m.group(1), None)
        if n is None:
            return m.group(0)
        return str(n // 1000 if m.group(2) == "s" else n >> 20 if m.group(2) == "MiB" else n)
    return re.sub(r"\{(DEFAULT_\w+)(?::(s|MiB))?\}", value, text)


def help_text(prog: str, role: str) -> str:
    """--help, formatted as the C++ programs' app::help_text() formats it."""
    p = PROGRAMS[role]
    out = [f"usage: {prog} {p['usage']}", "", *p["about"], "", "options:"]
    for f in p["flags"]:
        head = (f"-{f['short']}, " if "short" in f else "") + f"--{f['name']}" + (f" {f['value']}" if "value" in f else "")
        lines = [expand_defaults(h) for h in f["help"]]
        if len(head) <= 23:
            out.append(f"  {head:<23}  {lines[0]}")
            lines = lines[1:]
        else:
            out.append(f"  {head}")
        out += [" " * 27 + line for line in lines]
    return "\n".join([*out, "", *p["epilog"]]) + "\n"


class Exit(Exception):
    """A fatal error: one line on stderr, then exit with `code`."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


# What these programs' flags can do about a library error, by error name (flags.json "hints",
# which the C++ programs are built with too).
FLAG_HINTS: dict[str, str] = {k: v for k, v in PROGRAMS["hints"].items() if k != "//"}


def describe(e: Error) -> str:
    """The library's description, the flag hint and the name, as the C++ programs print them."""
    if not e.name:
        return str(e)
    hint = FLAG_HINTS.get(e.name)
    return f"{e.detail}; {hint} [{e.name}]" if hint else f"{e.detail} [{e.name}]"


def count(n: int, thing: str) -> str:
    """"1 byte", "2 bytes"."""
    return f"{n} {thing}{'' if n == 1 else 's'}"


def host_port(host: str, port: int) -> str:
    """"127.0.0.1:5000", "[::1]:5000": an IPv6 address in brackets, as in a URL."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# The terminal's line limit (Linux N_TTY): a longer line typed or pasted is cut to this.
TERMINAL_LINE = 4095


def shown(data: bytes) -> str:
    return _seclink.format_message(data)


class Args:
    """Minimal GNU-style flag parser over the flag table, the same rules as the C++ programs':
    --name value, --name=value, bare --switch, the table's short names (-h), positionals, '--'
    ends the options. Anything else that starts with '-' is an unknown option, named."""

    def __init__(self, argv: Sequence[str], role: str) -> None:
        flags = PROGRAMS[role]["flags"]
        with_value = [f["name"] for f in flags if "value" in f]
        switches = [f["name"] for f in flags if "value" not in f]
        shorts = {f["short"]: f["name"] for f in flags if "short" in f}
        self.positional: list[str] = []
        self._flags: list[tuple[str, str]] = []
        i = 0
        while i < len(argv):
            a = argv[i]
            i += 1
            if a == "--":
                self.positional += argv[i:]
                break
            if len(a) < 2 or not a.startswith("-"):  # "-" alone is a positional too
                self.positional.append(a)
                continue
            if not a.startswith("--"):
                if a[1:] not in shorts:
                    names = [f"--{n}" for n in [*with_value, *switches] if n.startswith(a[1])]
                    hint = ""
                    if names:
                        listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
                        hint = f": options have long names; did you mean {listed}?"
                    raise Exit(USAGE, f"unknown option '{a}'{hint} (see --help)")
                a = "--" + shorts[a[1:]]
            name, eq, value = a[2:].partition("=")
            if name in switches:
                if eq:
                    raise Exit(USAGE, f"--{name} takes no value (see --help)")
                self._flags.append((name, ""))
            elif name in with_value:
                if not eq:
                    if i >= len(argv):
                        raise Exit(USAGE, f"--{name} needs a value (see --help)")
                    value = argv[i]
                    i += 1
                self._flags.append((name, value))
            else:
                raise Exit(USAGE, f"unknown option '{a}' (see --help)")

    def has(self, name: str) -> bool:
        return any(n == name for n, _ in self._flags)

    @overload
    def get(self, name: str) -> str | None: ...
    @overload
    def get(self, name: str, default: str) -> str: ...

    def get(self, name: str, default: str | None = None) -> str | None:
        """The flag's last value, else `default`."""
        values = self.all(name)
        return values[-1] if values else default

    def all(self, name: str) -> list[str]:
        return [v for n, v in self._flags if n == name]

    def number(self, name: str, default: int, lo: int, hi: int) -> int:
        v = self.get(name)
        return default if v is None else parse_number(f"--{name}", v, lo, hi)


def parse_number(what: str, v: str, lo: int, hi: int) -> int:
    if not v.isascii() or not v.isdigit() or not lo <= int(v) <= hi:
        raise Exit(USAGE, f"{what} must be a number from {lo} to {hi}, not '{v}'")
    return int(v)


def no_core_dumps() -> None:
    """No core dumps of this process (they would hold the key and messages), and no ptrace attach
    by other processes of the same user: prctl(PR_SET_DUMPABLE, 0), as the C++ programs do."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE (linux/prctl.h)
    except (OSError, AttributeError):  # not Linux: nothing equivalent to do here
        pass


class Logger:
    """Log lines on the screen and, with a timestamp, appended to the log file. The file may hold
    message text: it is created 0600 and never opened through a symbolic link."""

    def __init__(self, path: str, quiet: bool, role: str = "server") -> None:
        self.quiet = quiet
        self.to_stderr = False  # pipe mode: standard output carries data
        self._fd: int | None = None
        self._path, self._role, self._lost = path, role, 0
        self._lock = threading.Lock()
        if path and path != "-":
            try:
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            except OSError as e:
                if e.errno == errno.ELOOP:
                    raise Exit(USAGE, f"log file '{path}' is a symbolic link, which is never followed (give the "
                                      "real file with --log-file PATH, or remove the link)") from None
                raise Exit(USAGE, f"cannot open log file '{path}': {e.strerror} "
                                  "(choose another with --log-file PATH, or --log-file - for none)") from None
            self._fd = fd
            if os.fstat(fd).st_mode & 0o077:
                self.line(LOG_WARN, f"[WARN] log file {path} is accessible by group or others: "
                                    f"run 'chmod 600 {path}'")

    def line(self, level: int, text: str, always: bool = False) -> None:
        """Lines above LOG_WARN are hidden by --quiet unless `always`."""
        if self.quiet and level > LOG_WARN and not always:
            return
        raw = text.encode("utf-8", "surrogateescape")
        with self._lock:
            if self._fd is not None:  # first: whoever sees a line on screen finds it in the file
                t = time.time()
                stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) + f".{int(t * 1000) % 1000:03d}"
                self._write_file(stamp.encode() + b" " + raw + b"\n")
            screen = sys.stderr if self.to_stderr else sys.stdout
            screen.buffer.write(raw + b"\n")
            screen.buffer.flush()

    def _write_file(self, data: bytes) -> None:
        """One write per line (O_APPEND). A log file that cannot be written (a full disk,
        /dev/full) never stops the program: the failure is said on stderr once per episode, and
        so is the recovery."""
        assert self._fd is not None
        try:
            while data:
                data = data[os.write(self._fd, data):]
        except OSError as e:
            self._lost += 1
            if self._lost == 1:
                sys.stderr.write(f"{self._role}: warning: cannot write the log file {self._path}: {e.strerror} "
                                 "(serving goes on; lines are lost until it can be written again)\n")
                sys.stderr.flush()
            return
        if self._lost:
            sys.stderr.write(f"{self._role}: the log file {self._path} is written again "
                             f"({self._lost} lines were lost)\n")
            sys.stderr.flush()
            self._lost = 0

    def callback(self, level: int, text: str) -> None:
        self.line(level, text)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


# ------------------------------------------------------------------------------------------ keys

def key_location(prog: str, explicit: str | None) -> tuple[str, bool]:
    """(path, is_default): only a key at the default location is created on first use."""
    env = os.environ.get("SECLINK_PSK_FILE", "")
    try:
        path = _seclink.key_path(explicit or None)
    except Error as e:
        raise Exit(KEY, f"cannot work out where the key file is (set HOME or use --psk-file): {describe(e)}") from None
    return path, not explicit and not env


def keygen(path: str) -> NoReturn:
    try:
        _seclink.key_generate(path)
    except KeyFileError as e:
        if e.name == "KEY_EXISTS":
            raise Exit(KEY, f"a key file already exists at {path} (remove it first to replace it; "
                            "it is never overwritten)") from None
        raise Exit(KEY, f"cannot create a key file at {path}: {describe(e)}") from None
    print(f"[INFO] New pre-shared key written to {path} (mode 0600)")
    print("[INFO] Copy this file to every machine that must talk to each other; keep it secret.")
    raise SystemExit(OK)


def load_key(path: str, is_default: bool, log: Logger) -> bytearray:
    """The key at `path`; at the default location a missing key is created (and said so). A
    bytearray, wiped once the library has its own copy (as the C++ programs do)."""
    try:
        return _loaded(path, log)
    except KeyFileError as e:
        if e.name != "KEY_NOT_FOUND" or not is_default:
            raise Exit(KEY, f"key file {path}: {describe(e)}") from None
    try:
        key = bytearray(_seclink.key_generate(path))
        log.line(LOG_INFO, f"[INFO] No key found: created a new pre-shared key at {path} "
                           "(copy it to the other side to talk across machines)")
        return key
    except KeyFileError as e:
        if e.name != "KEY_EXISTS":  # else another program was faster: use its key
            raise Exit(KEY, f"key file {path}: {describe(e)}") from None
    try:
        return _loaded(path, log)
    except KeyFileError as e:
        raise Exit(KEY, f"key file {path}: {describe(e)}") from None


def server_keys(prog: str, args: Args, log: Logger) -> tuple[bytearray | None, list[str]]:
    """The server's key and its file; or, for several key files (key rotation, docs/PROTOCOL.md
    9: --psk-file more than once, or a directory standing for its files), None and the files,
    each checked here (so that a bad one is named) and loaded again by the server."""
    given = args.all("psk-file")
    if len(given) <= 1 and not (given and os.path.isdir(given[0])):
        path, is_default = key_location(prog, given[0] if given else None)
        return load_key(path, is_default, log), [path]
    try:
        files = key_files(given)
    except KeyFileError as e:
        raise Exit(KEY, str(e)) from None
    if len(files) > _seclink.MAX_PSKS:
        raise Exit(USAGE, f"{len(files)} key files: a server accepts at most {_seclink.MAX_PSKS} at once "
                          "(remove the keys no client uses any more)")
    for f in files:
        try:
            wipe(_loaded(f, log))
        except KeyFileError as e:
            raise Exit(KEY, f"key file {f}: {describe(e)}") from None
    return None, files


def server_identity(args: Args, psk_files: list[str], log: Logger, opts: dict[str, Any]) -> tuple[list[str], list[str]]:
    """--modes and the server's static key (docs/PROTOCOL.md 14), as the C++ server: puts
    server_key and modes into `opts`; returns the modes and the lines to log at start."""
    authorized, passwords = args.get("authorized-keys"), args.get("users")
    default = "psk,server-key" + (",user-key" if authorized else "") + (",password" if passwords else "")
    modes = (args.get("modes") or default).split(",")
    if not modes or any(m not in ("psk", "server-key", "user-key", "password") for m in modes):
        raise Exit(USAGE, f"--modes takes a list of psk and server-key, not '{args.get('modes')}'")
    if "password" in modes and not passwords:
        raise Exit(USAGE, "the password mode needs --users FILE (written by --add-user)")
    if passwords:
        if "password" not in modes:
            raise Exit(USAGE, "--users is for the password mode, which --modes leaves out")
        opts["password_users"] = passwords
    if "user-key" in modes and not authorized:
        raise Exit(USAGE, "the user-key mode needs --authorized-keys FILE (the users' public keys)")
    if authorized:
        if "user-key" not in modes:
            raise Exit(USAGE, "--authorized-keys is for the user-key mode, which --modes leaves out")
        opts["authorized_keys"] = authorized
    opts["modes"] = modes
    lines: list[str] = []
    if any(m in modes for m in ("server-key", "user-key", "password")):
        flag = args.get("server-key-file")
        given = args.all("psk-file")
        path = flag or server_key_path(given[0] if given else psk_files[0])
        try:
            key, created = server_key(path, create=flag is None)
        except KeyFileError as e:
            extra = (" (or leave out --server-key-file to use the default, created on first use)"
                     if e.name == "KEY_NOT_FOUND" else "")
            raise Exit(KEY, f"server key file {path}: {describe(e)}{extra}") from None
        if created:  # said after the first line, as the C++ server does
            lines.append(f"[INFO] No server key found: created one at {path} (mode 0600)")
        opts["server_key"] = key
        lines.append(f"[INFO] Server key {path}, fingerprint {_seclink.key_fingerprint(_seclink.key_public(key))}")
    elif args.has("server-key-file"):
        raise Exit(USAGE, "--server-key-file is for the server-key and user-key modes, which --modes leaves out")
    order = [m for m in ("psk", "server-key", "user-key", "password") if m in modes]
    lines.append(f"[INFO] Handshake modes accepted: {', '.join(order)}")
    return modes, lines


def reload_users(reload: Any, opts: dict[str, Any], log: Logger) -> None:
    """SIGHUP: the core re-reads --authorized-keys and logs the outcome (a bad file keeps the old list)."""
    if not opts.get("authorized_keys") and not opts.get("password_users"):
        log.line(LOG_INFO, "[INFO] SIGHUP: nothing to reload (no --authorized-keys or --users)")
        return
    try:
        reload()
    except Error:
        pass  # logged by the core


def _loaded(path: str, log: Logger) -> bytearray:
    key, warnings = _seclink.key_load_ex(path)
    if warnings & _seclink.KEY_WARN_OTHER_OWNER:
        log.line(LOG_WARN, f"[WARN] key file {path} (or its directory) belongs to another user: loaded only because "
                           "root may read any key (run the program as the key's owner instead)")
    return key


# ------------------------------------------------------------------------------------------ server

def _server(prog: str, argv: Sequence[str]) -> int:
    args = Args(argv, "server")
    if args.has("help"):
        sys.stdout.write(help_text(prog, "server"))
        return OK
    if args.has("version"):
        print(f"seclink server {_seclink.version()} (python), protocol seclink/{_seclink.PROTOCOL_VERSION}")
        return OK
    if len(args.positional) > 1:
        raise Exit(USAGE, "too many arguments (see --help)")
    port = parse_number("PORT", args.positional[0], 0, 65535) if args.positional else _seclink.DEFAULT_PORT
    port = args.number("port", port, 0, 65535)

    if args.get("add-user") is not None:  # docs/PROTOCOL.md 16: store a password user, then exit
        name, users = args.get("add-user"), args.get("users")
        if not users:
            raise Exit(USAGE, "--add-user NAME needs --users FILE (where the password hashes go)")
        password = read_password(args, f"New password for {name}: ", confirm=True)
        try:
            _seclink.users_add(users, name, password.encode())
        except Error as e:
            if e.name == "INVAL":
                raise Exit(USAGE, f"a user name is 1 to 32 of A-Z a-z 0-9 . _ -, not '{name}'") from None
            raise Exit(KEY, f"cannot write {users}: {describe(e)}") from None
        print(f"[INFO] Stored a salted scrypt hash of {name}'s password in {users} (mode 0600)")
        return OK
    if args.has("keygen"):
        if len(args.all("psk-file")) > 1:
            raise Exit(USAGE, "--keygen writes one key file: give at most one --psk-file")
        keygen(key_location(prog, args.get("psk-file"))[0])

    host = args.get("host", "0.0.0.0")
    use_asyncio = args.has("asyncio")
    if use_asyncio and args.has("threads"):
        raise Exit(USAGE, "--threads does not apply to --asyncio (one event loop serves every session)")
    threads = args.number("threads", 0, 1, 1024)
    S = _seclink
    opts: dict[str, Any] = dict(
                max_clients=args.number("max-clients", S.DEFAULT_MAX_CLIENTS, 1, 1000000),
                max_handshakes=args.number("max-handshakes", S.DEFAULT_MAX_HANDSHAKES, 1, 1000000),
                max_handshakes_per_address=args.number("max-handshakes-per-address",
                                                       S.DEFAULT_MAX_HANDSHAKES_PER_ADDR, 1, 1000000),
                handshake_rate=args.number("handshake-rate", S.DEFAULT_HANDSHAKE_RATE, 1, 1000000),
                handshake_timeout=float(args.number("handshake-timeout", S.DEFAULT_HANDSHAKE_TIMEOUT_MS // 1000, 1, 3600)),
                idle_timeout=float(args.number("idle-timeout", S.DEFAULT_IDLE_TIMEOUT_MS // 1000, 1, 86400)),
                frame_timeout=float(args.number("frame-timeout", S.DEFAULT_FRAME_TIMEOUT_MS // 1000, 1, 86400)),
                max_memory=args.number("max-memory", S.DEFAULT_MAX_MEMORY >> 20, 1, 1 << 20) << 20,
                max_message=args.number("max-message", _seclink.DEFAULT_MAX_MESSAGE, 0, MAX_MESSAGE_LIMIT),
                rekey_bytes=args.number("rekey-bytes", 0, 1, 2**64 - 1),
                echo=args.has("echo"), redact=args.has("redact"), chat=args.has("chat"),
                chat_rooms=args.number("chat-rooms", S.DEFAULT_CHAT_ROOMS, 1, 1000000),
                chat_members=args.number("chat-members", S.DEFAULT_CHAT_MEMBERS, 1, 1000000),
                chat_rate=args.number("chat-rate", S.DEFAULT_CHAT_RATE, 1, 1000000),
                chat_queue=args.number("chat-queue", S.DEFAULT_CHAT_QUEUE, 1, 1000000),
                chat_cluster=args.get("cluster") or None,
                log_level=LOG_TRACE if args.has("trace") else LOG_WARN if args.has("quiet") else LOG_MSG)
    if args.has("redact") and args.has("trace"):
        raise Exit(USAGE, "--trace shows message content: not with --redact")
    if not args.has("files") and any(args.has(f) for f in ("overwrite", "max-file-size", "max-files-total")):
        raise Exit(USAGE, "--overwrite, --max-file-size and --max-files-total go with --files DIR")
    if args.has("files"):
        files_dir = args.get("files", "")
        if not files_dir or not os.path.isdir(files_dir):
            raise Exit(USAGE, f"--files '{files_dir}' is not a directory (create it first)")
        if opts["max_message"] < _seclink.FILE_CHUNK:
            raise Exit(USAGE, f"--files needs --max-message of at least {_seclink.FILE_CHUNK} bytes")
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a file-size limit is a write error, not death
        opts.update(files_dir=files_dir, overwrite=args.has("overwrite"),
                    max_file_size=args.number("max-file-size", S.DEFAULT_MAX_FILE_SIZE >> 20, 1, 1 << 40) << 20,
                    max_files_total=args.number("max-files-total", S.DEFAULT_MAX_FILES_TOTAL >> 20, 1, 1 << 40) << 20)
    if not args.has("chat") and any(args.has(f) for f in ("chat-rooms", "chat-members", "chat-rate", "chat-queue")):
        raise Exit(USAGE, "--chat-rooms, --chat-members, --chat-rate and --chat-queue need --chat")
    if args.has("chat") and args.has("echo"):
        raise Exit(USAGE, "--echo does not apply to --chat (lines are relayed)")
    if args.get("cluster") and not args.has("chat"):
        raise Exit(USAGE, "--cluster needs --chat")
    if args.get("cluster") and not _seclink.chat_cluster_available():
        raise Exit(USAGE, "--cluster: this build has no NATS client (install libnats-dev and rebuild)")

    pipe = args.has("pipe")
    forward = args.get("forward")
    if forward is not None and (pipe or any(args.has(f) for f in ("tls", "echo", "files", "asyncio"))):
        raise Exit(USAGE, "--forward does not go with --pipe, --tls, --echo, --files or --asyncio")
    if pipe and (args.has("tls") or args.has("echo") or use_asyncio):
        flag = next(f for f in ("tls", "echo", "asyncio") if args.has(f))
        raise Exit(USAGE, f"--{flag} does not go with --pipe")
    log = Logger(args.get("log-file", "server_logs.txt"), args.has("quiet"))
    if pipe:
        log.to_stderr = True
    if (pipe or forward is not None) and not args.has("trace"):
        opts["log_level"] = LOG_WARN if args.has("quiet") else LOG_INFO  # no line per chunk
    opts["log"] = log.callback
    if not args.has("tls") and (args.has("tls-cert") or args.has("tls-key")):
        raise Exit(USAGE, "--tls-cert and --tls-key need --tls")
    psk, psk_files = server_keys(prog, args, log)
    if pipe or forward is not None:  # pipe and tunnel servers: the PSK mode, with one key or several
        if psk is None:
            psk, opts["psk_names"] = resolve_psks(None, psk_files)
        return _serve_pipe(host, port, psk, opts, log) if pipe else _serve_forward(host, port, psk, opts, log, forward)
    if psk is None:
        opts["psk_file"] = psk_files
    keys_line = f"key {psk_files[0]}" if len(psk_files) == 1 else f"keys {', '.join(psk_files)}"
    modes, identity_lines = server_identity(args, psk_files, log, opts)

    cert = key = None
    if args.has("tls"):
        cert, key = args.get("tls-cert", ""), args.get("tls-key", "")
        if bool(cert) != bool(key):
            raise Exit(USAGE, "--tls-cert and --tls-key go together")
        if not cert:
            try:
                cert, key, created = ensure_self_signed_certificate()
            except Error as e:
                raise Exit(TLS, f"cannot create a TLS certificate in {_tls_dir()}: {describe(e)}") from None
            if created:
                log.line(LOG_INFO, f"[INFO] Created a self-signed TLS certificate: {cert}")
        try:
            fp = certificate_fingerprint(cert)
        except Error:
            raise Exit(TLS, f"cannot read the TLS certificate {cert} (check --tls-cert)") from None
        log.line(LOG_INFO, f"[INFO] TLS 1.3 certificate {cert}, SHA-256 fingerprint {fp}")
        opts.update(tls=True, tls_cert=cert, tls_key=key)

    def listen_error(e: Exception) -> Exit:
        code = getattr(e, "name", "")
        if (opts.get("authorized_keys") or opts.get("password_users")) and isinstance(e, KeyFileError):
            files = " or ".join(f for f in (f"authorized keys {opts['authorized_keys']}" if opts.get("authorized_keys") else "",
                                            f"users file {opts['password_users']}" if opts.get("password_users") else "") if f)
            return Exit(KEY, f"{files}: {describe(e)} (authorized keys: NAME BASE64-PUBLIC-KEY lines; users: "
                             "written by --add-user)")
        if code == "ADDRINUSE":
            return Exit(NETWORK, f"cannot listen on {host_port(host, port)}: the port is in use by another program "
                                 "(choose another with --port)")
        if code == "RESOLVE":
            return Exit(NETWORK, f"cannot listen on '{host}': not a local address (check --host)")
        if code == "TLS_CERT":
            return Exit(TLS, f"TLS certificate/key unusable: {cert}, {key} (check --tls-cert and --tls-key)")
        if isinstance(e, Error) and e.code and _seclink.err_category(e.code) == Category.NETWORK:
            return Exit(NETWORK, f"cannot listen on {host_port(host, port)}: {describe(e)}")
        if isinstance(e, ValueError) and str(e).startswith("cannot link chat rooms"):
            return Exit(USAGE, f"--cluster takes the NATS server's URL, nats://HOST:PORT (got '{args.get('cluster')}')")
        if isinstance(e, Error):
            return Exit(_seclink.err_category(e.code) if e.code else INTERNAL, f"cannot start: {describe(e)}")
        return Exit(INTERNAL, f"cannot start: {e}")

    def started(workers: int, bound_port: int, tag: str) -> None:
        log.line(LOG_INFO, f"[INFO] seclink server {_seclink.version()} ({tag}): {workers} worker "
                           f"thread{'' if workers == 1 else 's'}, max {opts['max_clients']} clients, {keys_line}")
        for text in identity_lines:
            log.line(LOG_INFO, text)
        log.line(LOG_INFO, f"[INFO] Listening on {host_port(host, bound_port)}", always=True)

    def stopping(signum: int, sessions: int) -> None:
        what = "Interrupted" if signum == signal.SIGINT else "Terminated"
        log.line(LOG_INFO, f"[INFO] {what}: closing {count(sessions, 'session')}")

    if use_asyncio:
        return asyncio.run(_serve_asyncio(host, port, psk, opts, listen_error, started, stopping, log))

    # Stop signals are taken by Python handlers in the main thread; the native workers never run Python
    # unless they log. An Event wait is interruptible, so the main thread sleeps in it.
    stop_signal: list[int] = []
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop_signal.append(signum)
        stop.set()

    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, on_signal)
    signal.signal(signal.SIGHUP, lambda _signum, _frame: stop.set())  # wakes the loop below: reload
    try:
        server = Server(host, port, psk=psk, threads=threads, **opts)
    except (Error, ValueError) as e:
        raise listen_error(e) from None
    finally:
        if psk is not None:
            wipe(psk)  # the server keeps its own copy
        if opts.get("server_key") is not None:
            wipe(opts["server_key"])
    # The worker threads inherit a mask without the stop signals, so they reach the main thread.
    stop_set = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_set)
    try:
        server.start()
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stop_set)
    started(threads or _seclink.default_threads(), server.port, "python")  # "Listening on": every worker is ready
    while stop.wait() and not stop_signal:  # SIGHUP: re-read --authorized-keys, as the C++ server
        stop.clear()
        reload_users(server.reload_users, opts, log)
    stopping(stop_signal[0], server.sessions)
    server.close()
    log.line(LOG_INFO, "[INFO] Server stopped")
    log.close()
    return OK


def _serve_pipe(host: str, port: int, psk: bytearray, opts: dict[str, Any], log: Logger) -> int:
    from . import pipe

    def listening(bound: int) -> None:
        log.line(LOG_INFO, f"[INFO] Listening on {host_port(host, bound)} (pipe mode: one session)", always=True)

    try:
        ended, received, sent, stop = pipe.run_server(host, port, psk, opts, log.callback, listening)
    except pipe.PipeError as e:
        raise Exit(e.code, str(e)) from None
    finally:
        wipe(psk)
    counts = f"received {count(received, 'byte')}, sent {count(sent, 'byte')}"
    if stop.signum:
        log.line(LOG_INFO, f"[INFO] {stop.name}: closed the session ({counts})")
        log.close()
        return stop.code
    log.line(LOG_INFO, f"[INFO] Pipe done: {counts}")
    log.close()
    return OK if ended else SESSION


def _serve_forward(host: str, port: int, psk: bytearray, opts: dict[str, Any], log: Logger, forward: str) -> int:
    from . import pipe
    target = pipe.split_host_port(forward)
    if target is None or target[1] == 0:
        raise Exit(USAGE, "--forward takes HOST:PORT, e.g. 127.0.0.1:6379")

    def listening(bound: int) -> None:
        log.line(LOG_INFO, f"[INFO] Listening on {host_port(host, bound)} (forwarding to "
                           f"{host_port(*target)})", always=True)
    try:
        pipe.run_forward_server(host, port, psk, opts, log.callback, listening, target)
    except pipe.PipeError as e:
        raise Exit(e.code, str(e)) from None
    finally:
        wipe(psk)
    log.line(LOG_INFO, "[INFO] Server stopped")
    log.close()
    return OK


async def _serve_asyncio(host, port, psk, opts, listen_error, started, stopping, log) -> int:
    loop = asyncio.get_running_loop()
    got: asyncio.Future[int] = loop.create_future()
    for s in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(s, _resolve, got, s)
    from . import aio
    try:
        server = await aio.serve(host, port, psk=psk, **opts)
    except (Error, ValueError) as e:
        raise listen_error(e) from None
    finally:
        if psk is not None:
            wipe(psk)  # the server keeps its own copy
        if opts.get("server_key") is not None:
            wipe(opts["server_key"])
    loop.add_signal_handler(signal.SIGHUP, reload_users, server.reload_users, opts, log)
    started(1, server.port, "python asyncio")
    signum = await got
    stopping(signum, server.sessions)
    await server.close()
    log.line(LOG_INFO, "[INFO] Server stopped")
    log.close()
    return OK


def _resolve(future: asyncio.Future[int], value: int) -> None:
    if not future.done():
        future.set_result(value)


def _tls_dir() -> str:
    try:
        return os.path.join(config_dir(), "tls")
    except Error:
        return "the config directory"


# ------------------------------------------------------------------------------------------ client

def connect_error(e: Error, where: str, mode: str = "psk") -> Exit:
    """The exit code and sentence for a failure to connect (as the C++ client's)."""
    at = f"cannot connect to {where}: "
    if e.code == Err.MODE_REFUSED:  # the server said which modes it accepts (PROTOCOL.md 14.2)
        modes = ", ".join(getattr(e, "server_modes", None) or []) or "none"
        return Exit(HANDSHAKE, f"the server at {where} accepts only the modes: {modes}; this client asked for "
                               f"{mode} (choose one with --mode) [MODE_REFUSED]")
    if e.code == Err.TIMEDOUT:
        return Exit(NETWORK, at + "no answer in time (is the host right, and a server running? see --timeout)")
    if e.code == Err.HANDSHAKE_AUTH:
        return Exit(HANDSHAKE, f"handshake with {where} failed: the server uses a different pre-shared key "
                               "(copy the server's key file here, or point --psk-file at it)")
    if e.code in (Err.PEER_CLOSED, Err.TRUNCATED):
        return Exit(HANDSHAKE, f"the server at {where} closed the connection during the handshake: it most likely "
                               "uses a different pre-shared key (or it runs with --tls: then add --tls)")
    # The core's category says which exit code; before the session is up, a broken session is a
    # failed handshake.
    category = _seclink.err_category(e.code) if e.code else Category.INTERNAL
    if category == Category.NETWORK:
        return Exit(NETWORK, at + describe(e))
    if category in (Category.HANDSHAKE, Category.SESSION):
        return Exit(HANDSHAKE, f"handshake with {where} failed: {describe(e)}")
    if category == Category.TLS:
        return Exit(TLS, f"TLS with {where} failed: {describe(e)}")
    return Exit(INTERNAL, at + describe(e))


_CHANGED_WARNING = """\
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
@    WARNING: THE SERVER'S KEY HAS CHANGED!               @
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!
Someone could be in the middle of this connection right now, reading and changing it.
It is also possible that the server's key has just been replaced.
The key the server sent has the fingerprint {seen}.
The key trusted for {where} has the fingerprint {trusted} ({known}, line {line}).
If you know the change is expected (ask the server's operator for the new fingerprint),
delete line {line} of {known} and connect again.
"""


def read_password(args: Args, prompt: str, confirm: bool = False) -> str:
    """docs/PROTOCOL.md 16, as the C++ programs: --password-fd N, else $SECLINK_PASSWORD, else
    asked on the terminal without echo (twice with `confirm`). Never logged."""
    fd = args.get("password-fd")
    if fd is not None:
        n = parse_number("--password-fd", fd, 0, 1 << 20)
        data = b""
        while (c := os.read(n, 1)) and c != b"\n":
            data += c
        return data.decode("utf-8", "replace")
    if "SECLINK_PASSWORD" in os.environ:
        return os.environ["SECLINK_PASSWORD"]
    import getpass
    try:
        os.close(os.open("/dev/tty", os.O_RDWR))
    except OSError:
        raise Exit(USAGE, "no terminal to ask for the password on: use --password-fd N or $SECLINK_PASSWORD") from None
    password = getpass.getpass(prompt)
    if confirm and getpass.getpass("Again: ") != password:
        raise Exit(USAGE, "the two passwords differ; nothing was changed")
    return password


def load_identity(args: Args, log: Logger) -> bytearray:
    """The client's identity (mode user-key, docs/PROTOCOL.md 15), created on first use at the
    default location; its public key is printed for the server's --authorized-keys."""
    path = args.get("identity")
    is_default = path is None
    if is_default:
        path = os.path.join(config_dir(), "identity")
    try:
        key, created = server_key(path, create=is_default)
    except KeyFileError as e:
        extra = " (or leave out the flag that names it to use the default, created on first use)" if e.name == "KEY_NOT_FOUND" else ""
        raise Exit(KEY, f"key file {path}: {describe(e)}{extra}") from None
    if created:
        log.line(LOG_INFO, f"[INFO] No identity found: created one at {path} (mode 0600)")
    pub = base64.b64encode(_seclink.key_public(key)).decode()
    log.line(LOG_INFO, f"[INFO] Identity {path}, public key {pub} (the server lists it as NAME {pub})")
    return key


def connect_checked(args: Args, where: str, make: Any, log: Logger) -> Any:
    """The client's side of docs/PROTOCOL.md 14.4, as the C++ client's (cpp_apps/identity.hpp):
    a known key is expected; an unknown one is learned with a first connection that stops after
    frame 2, accepted by --server-key, --trust-on-first-use or the user's answer, recorded, and
    connected to again expecting it. Raises Exit on a refusal of this kind."""
    known = args.get("known-servers") or _seclink.known_servers_path()
    try:
        found = _seclink.known_servers_lookup(known, where)
    except Error as e:
        hint = f" (run 'chmod go-w {known}')" if e.name == "KEY_PERMISSIONS" else ""
        raise Exit(KEY, f"known-servers file {known}: {describe(e)}{hint}") from None
    expected, line = found if found else (None, 0)
    try:
        try:
            return make(server_key=expected)
        except HandshakeError as e:
            if e.name != "SERVER_KEY_UNKNOWN":
                raise
            seen = e.server_key  # type: ignore[attr-defined]
        fp = _seclink.key_fingerprint(seen)
        pinned = args.get("server-key")
        if pinned is not None:
            if not _seclink.fingerprint_matches(pinned, seen):
                raise Exit(HANDSHAKE, f"the server at {where} has the key {fp}, not the one given with --server-key "
                                      f"({pinned}): refusing to connect; check the fingerprint with the server's operator")
            trusted = True
        elif args.has("trust-on-first-use"):
            trusted = True
        elif sys.stdin.isatty() and sys.stderr.isatty():
            sys.stderr.write(f"The authenticity of server '{where}' can't be established.\nIts key fingerprint is {fp}.\n"
                             "Compare it with the fingerprint the server printed. Trust it (yes/no)? ")
            sys.stderr.flush()
            trusted = sys.stdin.readline().strip() in ("yes", "y")
        else:
            trusted = False
        if not trusted:
            raise Exit(HANDSHAKE, f"the server at {where} is not known: its key fingerprint is {fp}. Compare it with "
                                  f"the fingerprint the server printed, then connect with --server-key {fp} (or "
                                  "--trust-on-first-use) [SERVER_KEY_UNKNOWN]")
        try:
            _seclink.known_servers_add(known, where, seen)
        except Error as e:
            raise Exit(KEY, f"cannot add the server's key to {known}: {describe(e)}") from None
        log.line(LOG_INFO, f"[INFO] Added {where} (key {fp}) to the known servers in {known}")
        expected = seen
        return make(server_key=expected)
    except HandshakeError as e:
        if e.name == "SERVER_KEY_CHANGED":
            sys.stderr.write(_CHANGED_WARNING.format(seen=_seclink.key_fingerprint(e.server_key), where=where,  # type: ignore[attr-defined]
                                                     trusted=_seclink.key_fingerprint(expected), known=known, line=line))
            raise Exit(HANDSHAKE, f"the key of the server at {where} has changed: refusing to connect "
                                  "[SERVER_KEY_CHANGED]") from None
        raise


class _AioSession:
    """seclink.aio's client behind the blocking interface the program uses; its event loop runs
    in a thread of its own, so that one thread may wait for messages while another sends."""

    def __init__(self, loop: asyncio.AbstractEventLoop, **kw) -> None:
        from . import aio
        self._loop = loop
        threading.Thread(target=loop.run_forever, daemon=True).start()
        self._c = self._call(aio.connect(**kw))

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def send(self, data: bytes) -> None:
        self._call(self._c.send(data))

    def recv(self, timeout: float | None) -> bytes:
        return self._call(self._c.recv(timeout))

    def keepalive(self) -> None:
        self._call(self._c.keepalive())

    def close(self) -> None:
        self._call(self._c.close())


class Session:
    """Sends messages and prints their replies; failures become Exit."""

    def __init__(self, client, log: Logger, timeout: int, redact: bool = False) -> None:
        self.client, self.log, self.timeout, self.seq = client, log, timeout, 0
        self.redacted = redact
        self.receiver: threading.Thread | None = None  # interactive: the thread that receives
        self.shown = (lambda data: "<redacted>") if redact else shown

    def exchange(self, msg: bytes) -> None:
        self.send(msg)
        try:
            reply = self.client.recv(self.timeout)
        except Timeout:
            raise Exit(SESSION, f"no reply within {self.timeout} s") from None
        except Error as e:
            raise self.ended(e) from None
        self.show_reply(reply)

    def send(self, msg: bytes, logged: bool = True) -> None:
        try:
            self.client.send(msg)
        except MessageTooLarge:
            raise Exit(TOO_LARGE, f"message of {len(msg)} bytes is over the limit (--max-message)") from None
        except Timeout:
            raise Exit(SESSION, f"the server stopped reading: message {self.seq + 1} not sent within "
                                f"{self.timeout} s (--timeout)") from None
        except Error as e:
            raise Exit(SESSION, f"sending failed: {describe(e)}") from None
        self.seq += 1
        if logged:
            self.log.line(LOG_MSG, f"[SEND] #{self.seq} {self.shown(msg)} ({count(len(msg), 'byte')})")

    def show_reply(self, reply: bytes) -> None:
        self.log.line(LOG_WARN, f"[RECV] #{self.seq} {self.shown(reply)} (a reply of {count(len(reply), 'byte')})")

    def ended(self, e: Error, waiting: bool = True) -> Exit:
        """The Exit for a receive that failed (waiting: for a reply; else at the prompt)."""
        if isinstance(e, ConnectionClosed) and e.reason is not None:
            why = self.shown(e.reason.encode()) if e.reason else "no reason given"
            return Exit(SESSION, f"the server closed the session: {why}")
        if isinstance(e, ConnectionClosed) or e.name in ("PEER_CLOSED", "TRUNCATED"):
            return Exit(SESSION, "the server closed the connection without a reply" if waiting else
                        "the server closed the connection (no CLOSE: it stopped or the network failed)")
        return Exit(SESSION, f"session failed: {describe(e)}")

    def close(self) -> None:
        try:
            self.client.close()
        except Error:
            pass
        if self.receiver is not None:  # it ends now that the client is closed (never left inside the core)
            self.receiver.join()
        self.log.line(LOG_INFO, "[INFO] Disconnected")


def _client(prog: str, argv: Sequence[str]) -> int:
    args = Args(argv, "client")
    if args.has("help"):
        sys.stdout.write(help_text(prog, "client"))
        return OK
    if args.has("version"):
        print(f"seclink client {_seclink.version()} (python), protocol seclink/{_seclink.PROTOCOL_VERSION}")
        return OK
    if len(args.all("psk-file")) > 1:
        raise Exit(USAGE, "a client uses one key: give --psk-file once (several are for a server)")
    psk_path, is_default = key_location(prog, args.get("psk-file"))
    if args.has("keygen"):
        keygen(psk_path)

    pos = args.positional
    host = pos[0] if pos else "127.0.0.1"
    port = parse_number("PORT", pos[1], 1, 65535) if len(pos) > 1 else _seclink.DEFAULT_PORT
    messages = [os.fsencode(m) for m in pos[2:]]
    host = args.get("host", host)
    port = args.number("port", port, 1, 65535)
    messages += [os.fsencode(m) for m in args.all("message")]
    for path in args.all("message-file"):
        try:
            with open(path, "rb") as f:
                messages.append(f.read())
        except OSError:
            raise Exit(USAGE, f"cannot read --message-file '{path}'") from None
    max_message = args.number("max-message", _seclink.DEFAULT_MAX_MESSAGE, 0, MAX_MESSAGE_LIMIT)
    for i, m in enumerate(messages, 1):  # refuse before connecting: nothing half-sent
        if len(m) > max_message:
            raise Exit(TOO_LARGE, f"message {i} is {len(m)} bytes, over the limit of {max_message} bytes "
                                  "(--max-message); nothing was sent")
    timeout = args.number("timeout", _seclink.DEFAULT_TIMEOUT_MS // 1000, 1, 3600)
    if not args.has("tls") and (args.has("tls-ca") or args.has("tls-pin")):
        raise Exit(USAGE, "--tls-ca and --tls-pin need --tls")
    pin = args.get("tls-pin")
    if pin is not None:
        try:
            _seclink.tls_pin_parse(pin)
        except Error:
            raise Exit(USAGE, "--tls-pin takes the certificate's SHA-256 fingerprint: 64 hex digits "
                              "(colons allowed), as the server prints it") from None

    if args.has("redact") and args.has("trace"):
        raise Exit(USAGE, "--trace shows message content: not with --redact")
    pipe = args.has("pipe")
    if pipe and messages:
        raise Exit(USAGE, "--pipe sends standard input: not with messages")
    sends, gets = args.all("send"), args.all("get")
    if (sends or gets) and (pipe or messages):
        raise Exit(USAGE, "--send and --get do not go with messages or --pipe")
    if args.has("overwrite") and not gets:
        raise Exit(USAGE, "--overwrite goes with --get")
    for name in gets:
        if not _seclink.file_name_valid(name):
            raise Exit(USAGE, "--get takes a plain file name as the server lists it (no '/', not starting "
                              f"with '.'): '{name}'")
    for path in sends:  # before connecting: a typo costs no session
        if not os.access(path, os.R_OK):
            raise Exit(USAGE, f"cannot read --send '{path}': {os.strerror(errno.ENOENT if not os.path.exists(path) else errno.EACCES)}")
    if (sends or gets) and args.has("asyncio"):
        raise Exit(USAGE, "--asyncio does not go with --send and --get (seclink.aio has send_file/get_file)")
    if pipe and args.has("asyncio"):
        raise Exit(USAGE, "--asyncio does not go with --pipe")
    listen = args.get("listen")
    if listen is not None and (pipe or messages or sends or gets or args.has("asyncio")):
        raise Exit(USAGE, "--listen does not go with messages, --pipe, --send, --get or --asyncio")
    log = Logger(args.get("log-file", "client_logs.txt"), args.has("quiet"), "client")
    log.to_stderr = pipe
    psk = load_key(psk_path, is_default, log)
    tls = args.has("tls")
    kw: dict[str, Any] = dict(host=host, port=port, psk=psk, timeout=float(timeout), max_message=max_message, tls=tls,
              tls_ca=args.get("tls-ca") or None, tls_pin=pin or None,
              rekey_bytes=args.number("rekey-bytes", 0, 1, 2**64 - 1),
              trace=(lambda text: log.line(LOG_TRACE, text)) if args.has("trace") else None)
    mode = args.get("mode", "psk")
    if mode not in ("psk", "server-key", "user-key", "password"):
        raise Exit(USAGE, f"--mode takes one mode: psk, server-key or user-key, not '{mode}'")
    if (mode == "password") != (args.get("user") is not None):
        raise Exit(USAGE, "--mode password and --user NAME go together")
    if mode == "password":
        kw["user"] = args.get("user")
        kw["password"] = read_password(args, f"Password for {kw['user']}: ")
    if mode == "psk" and (args.has("server-key") or args.has("trust-on-first-use")):
        raise Exit(USAGE, "--server-key and --trust-on-first-use need --mode server-key or user-key")
    if mode != "user-key" and args.has("identity"):
        raise Exit(USAGE, "--identity needs --mode user-key")
    kw["mode"] = mode
    if mode == "user-key":
        kw["identity"] = load_identity(args, log)
    where = host_port(host, port)
    if listen is not None:
        return _client_tunnel(kw, psk, where, listen, max_message, log)
    loop = asyncio.new_event_loop() if args.has("asyncio") else None
    try:
        try:
            def make(**extra: Any) -> Any:
                return _AioSession(loop, **kw, **extra) if loop else Client(**kw, **extra)
            client = connect_checked(args, where, make, log) if mode != "psk" else make()
        except Error as e:
            raise connect_error(e, where, mode) from None
        finally:
            wipe(psk)  # the client keeps its own copy
        del kw
        noise = {"server-key": "Noise NXpsk2, server key verified",
                 "user-key": "Noise XXpsk3, server key verified, as a key user",
                 "password": f"Noise NXpsk2, server key verified, as {args.get('user')}"}.get(mode, "Noise NNpsk0")
        log.line(LOG_INFO, f"[INFO] Connected to {where} (seclink/1: {noise} + AES-256-GCM"
                           f"{', inside TLS 1.3)' if tls else ')'}")
        if pipe:
            return _client_pipe(client, max_message, log)
        if sends or gets:
            return _client_files(client, sends, gets, args.has("overwrite"), log)
        session = Session(client, log, timeout, args.has("redact"))
        if messages:
            for m in messages:
                session.exchange(m)
        else:
            _interactive(session, log, args.number("keepalive", _seclink.DEFAULT_KEEPALIVE_MS // 1000, 0, 86400))
        session.close()
    finally:
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)  # its thread ends; the process does not wait for it
    log.close()
    return OK


def _client_tunnel(kw: dict[str, Any], psk: bytearray, where: str, listen: str, max_message: int, log: Logger) -> int:
    from . import pipe
    local = pipe.split_host_port(listen)
    if local is None:
        raise Exit(USAGE, "--listen takes ADDR:PORT, e.g. 127.0.0.1:7000")

    def listening(bound: int) -> None:
        log.line(LOG_INFO, f"[INFO] Listening on {host_port(local[0], bound)} (tunnel to {where})", always=True)
    try:
        pipe.run_tunnel_client(lambda: Client(**kw), where, local, max_message, log.callback, listening)
    except pipe.PipeError as e:
        raise Exit(e.code, str(e)) from None
    finally:
        wipe(psk)  # each tunnel's Client made its own copy
    log.line(LOG_INFO, "[INFO] Stopped")
    log.close()
    return OK


def _client_pipe(client: Client, max_message: int, log: Logger) -> int:
    from . import pipe
    stop = pipe.PipeStop()
    try:
        sent, received = pipe.run_client(client._c, max_message, lambda text: log.line(LOG_INFO, text),
                                         stop_fd=stop.fd)
    except pipe.Stopped as e:
        client.close("client shutting down")
        log.line(LOG_INFO, f"[INFO] {stop.name}: closed the session (sent {count(e.args[0], 'byte')}, "
                           f"received {count(e.args[1], 'byte')})")
        log.close()
        return stop.code
    except pipe.PipeError as e:
        raise Exit(e.code, str(e)) from None
    finally:
        stop.close()
    client.close()
    log.line(LOG_INFO, f"[INFO] Disconnected: sent {count(sent, 'byte')}, received {count(received, 'byte')}")
    log.close()
    return OK


def _human(n: float) -> str:
    units = ["B", "KiB", "MiB", "GiB", "TiB"]
    u = 0
    while n >= 1024 and u < 4:
        n /= 1024
        u += 1
    return f"{n:.0f} {units[u]}" if u == 0 else f"{n:.1f} {units[u]}"


class _Bar:
    """The progress bar of cpp_apps/transfer.hpp: one line on standard error, redrawn at most ten
    times a second, only when standard error is a terminal."""

    def __init__(self, label: str) -> None:
        self.label, self.tty = label, sys.stderr.isatty()
        self.started, self.drawn, self.first = time.monotonic(), 0.0, None

    def __call__(self, done: int, total: int) -> None:
        if self.first is None:
            self.first = done
        t = time.monotonic()
        if not self.tty or (t - self.drawn < 0.1 and done != total):
            return
        self.drawn = t
        rate = (done - self.first) / max(t - self.started, 1e-6)
        eta = (total - done) / rate if rate > 0 else 0
        pct = int(100 * done / total) if total else 100
        fill = pct * 24 // 100
        sys.stderr.write(f"\r{self.label} [{'#' * fill}{'.' * (24 - fill)}] {pct:3d}% {_human(done)} / {_human(total)}"
                         f"  {_human(rate)}/s  ETA {int(eta)}s ")
        sys.stderr.flush()

    def done(self) -> None:
        if self.tty and self.first is not None:
            sys.stderr.write("\r\033[K")


def _client_files(client: Client, sends: list[str], gets: list[str], overwrite: bool, log: Logger) -> int:
    from .errors import FileTransferError
    jobs = [(True, p) for p in sends] + [(False, n) for n in gets]
    for upload, what in jobs:
        bar = _Bar(("send " if upload else "get ") + what)
        t0 = time.monotonic()
        try:
            r = client.send_file(what, progress=bar) if upload else client.get_file(what, overwrite=overwrite, progress=bar)
        except FileTransferError as e:
            bar.done()
            raise Exit(SESSION, f"{'sending' if upload else 'getting'} {what} failed: the server refused it: {e.detail}") from None
        except OSError as e:
            bar.done()
            raise Exit(INTERNAL, f"{'sending' if upload else 'getting'} {what} failed: {e}") from None
        except Error as e:
            bar.done()
            hint = " (add --overwrite to replace it)" if e.name == "FILE_EXISTS" else ""
            raise Exit(_seclink.err_category(e.code) if e.code else INTERNAL,
                       f"{'sending' if upload else 'getting'} {what} failed: {e.detail or e}{hint}") from None
        bar.done()
        secs = time.monotonic() - t0
        rate = _human((r.size - r.resumed_from) / max(secs, 1e-6))
        resumed = f", resumed after {r.resumed_from} bytes" if r.resumed_from else ""
        log.line(LOG_INFO, f"[INFO] {'sent' if upload else 'received'} {what}: {r.size} bytes ({_human(r.size)}) in "
                           f"{secs:.2f} s, {rate}/s{resumed}, sha256 {r.sha256}", always=True)
    client.close()
    log.close()
    return OK


class _Input:
    """The line being typed, kept below the lines that arrive (as the C++ client's Input). On a
    terminal stdin is read byte by byte (no echo, no canonical mode; Ctrl-C still signals) and the
    line is redrawn after each arriving line; otherwise lines are read as they come."""

    def __init__(self, tty: bool) -> None:
        self.tty, self.line, self._saved = tty, bytearray(), None
        if tty:
            import termios
            try:
                self._saved = termios.tcgetattr(0)
            except termios.error:
                self.tty = False
                return
            raw = termios.tcgetattr(0)
            raw[3] &= ~(termios.ICANON | termios.ECHO)
            raw[6][termios.VMIN], raw[6][termios.VTIME] = 1, 0
            termios.tcsetattr(0, termios.TCSAFLUSH, raw)
            self._prompt()

    def above(self, print_lines) -> None:
        if self.tty:
            self._out("\r\033[K")
        print_lines()
        if self.tty:
            self._prompt()

    def read(self) -> tuple[list[bytes], bool]:
        """Complete lines read, and False at the end of input (a last unterminated line included)."""
        try:
            data = os.read(0, 4096)
        except InterruptedError:
            return [], True
        lines: list[bytes] = []
        if not data:
            if not self.tty and self.line:
                lines.append(bytes(self.line))
            return lines, False
        for ch in data:
            if ch == 0x0A or (self.tty and ch == 0x0D):
                lines.append(bytes(self.line).removesuffix(b"\r"))
                self.line.clear()
                if self.tty:
                    self._out("\r\n")
            elif not self.tty:
                self.line.append(ch)
            elif ch == 0x04:  # Ctrl-D: the end on an empty line
                if not self.line:
                    return lines, False
            elif ch in (0x7F, 0x08):  # erase one character (all bytes of it)
                while self.line and self.line[-1] & 0xC0 == 0x80:
                    self.line.pop()
                if self.line:
                    self.line.pop()
                self._redraw()
            elif ch == 0x15:  # Ctrl-U
                self.line.clear()
                self._redraw()
            elif ch >= 0x20 and len(self.line) < TERMINAL_LINE:
                self.line.append(ch)
                os.write(1, bytes([ch]))
        return lines, True

    def done(self) -> None:
        if self.tty:
            import termios
            self._out("\r\033[K")
            termios.tcsetattr(0, termios.TCSAFLUSH, self._saved)

    def _prompt(self) -> None:
        self._out("> ")
        os.write(1, bytes(self.line))

    def _redraw(self) -> None:
        self._out("\r\033[K")
        self._prompt()

    @staticmethod
    def _out(text: str) -> None:
        sys.stdout.flush()
        os.write(1, text.encode())


def _receive_all(client, events: queue.Queue, wake: int) -> None:
    """The receiving thread of an interactive session: every message, then how it ended."""
    while True:
        try:
            events.put(("data", client.recv(None)))
        except Error as e:
            events.put(("end", e))
            os.write(wake, b"x")
            return
        os.write(wake, b"x")


def _interactive(session: Session, log: Logger, keepalive: int) -> None:
    """Waits for typed lines and for the server at once: what arrives is shown at once (a chat
    server's lines, a CLOSE, a lost server), and an idle session sends a PING every `keepalive` s."""
    # Ctrl-C leaves as Ctrl-D does, even when started with SIGINT ignored (a background job, or
    # nohup): Python then installs no handler of its own, so set it as the C++ client does.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    stdin_tty = sys.stdin.isatty()
    inp = _Input(stdin_tty and sys.stdout.isatty())  # the line is redrawn on stdout
    if stdin_tty:
        inp.above(lambda: log.line(LOG_INFO, "[INFO] Type a message and press Enter; 'exit', 'quit', Ctrl-D or Ctrl-C "
                                             "to leave."))
    events: queue.Queue = queue.Queue()
    wake_r, wake_w = os.pipe()
    session.receiver = threading.Thread(target=_receive_all, args=(session.client, events, wake_w), daemon=True)
    session.receiver.start()
    chat, first, input_open, last_sent = False, True, True, time.monotonic()

    def shown_line(data: bytes) -> str:
        if chat:  # a chat server's line, as it is when it is safe to print
            return data.decode() if not session.redacted and _seclink.chat_text_ok(data) else session.shown(data)
        return f"[RECV] {session.shown(data)} ({count(len(data), 'byte')}, not a reply)"

    def handle(kind: str, value: Any) -> None:
        nonlocal chat, first
        if kind == "end":
            inp.done()
            raise session.ended(value, waiting=False)
        if first:
            chat = value.startswith(b"* you are ")  # a chat server's first line (PROTOCOL.md "Chat rooms")
        first = False
        inp.above(lambda: log.line(LOG_WARN, shown_line(value)))

    def send_line(line: bytes) -> bool:  # False: leave
        nonlocal last_sent, first
        if line in (b"exit", b"quit", b"!DISCONNECT") or (chat and line == b"/quit"):
            return False
        if not line:
            inp.above(lambda: log.line(LOG_WARN, "[WARN] empty line: nothing sent (to send an empty message or several "
                                                 "lines, use --message-file)"))
            return True
        if stdin_tty and len(line) >= TERMINAL_LINE:
            inp.above(lambda: log.line(LOG_WARN, f"[WARN] the line is {count(len(line), 'byte')}, the most a terminal "
                                                 "passes on: anything longer was cut (send long text with --message-file)"))
        inp.above(lambda: session.send(line, logged=not chat))
        if not chat:
            try:
                kind, value = events.get(timeout=session.timeout)
            except queue.Empty:
                inp.done()
                raise Exit(SESSION, f"no reply within {session.timeout} s") from None
            if kind == "end":
                inp.done()
                raise session.ended(value)
            if first and value.startswith(b"* you are "):
                handle(kind, value)  # a chat server: its first line came instead of a reply
            else:
                first = False
                inp.above(lambda: session.show_reply(value))
        last_sent = time.monotonic()
        return True

    try:
        while True:
            wait = max(0.0, last_sent + keepalive - time.monotonic()) if keepalive else None
            ready, _, _ = select.select([wake_r] + ([0] if input_open else []), [], [], wait)
            if not ready:  # idle: a PING keeps the session (and NAT state) alive; recv skips its PONG
                try:
                    session.client.keepalive()
                except Error as e:
                    inp.done()
                    raise session.ended(e, waiting=False) from None
                last_sent = time.monotonic()
                continue
            if wake_r in ready:
                os.read(wake_r, 4096)
                while not events.empty():
                    handle(*events.get_nowait())
            if 0 in ready:
                lines, input_open = inp.read()
                if not all(send_line(line) for line in lines) or not input_open:
                    break
    except KeyboardInterrupt:
        pass  # Ctrl-C leaves as Ctrl-D does: CLOSE, exit 0
    except Exit:
        try:  # the receiving thread must not be left inside the core when the process exits
            session.client.close()
        except Error:
            pass
        session.receiver.join()
        raise
    inp.done()


# ------------------------------------------------------------------------------------------ entry points

def _main(role: str, run, argv: Sequence[str] | None) -> int:
    prog = os.path.basename(sys.argv[0]) or role
    no_core_dumps()
    try:
        return run(prog, list(sys.argv[1:] if argv is None else argv))
    except Exit as e:
        sys.stdout.flush()
        sys.stderr.write(f"{role}: error: {e}\n")
        return e.code
    except KeyboardInterrupt:
        return 130


def server_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``seclink-server`` / ``python/server.py``."""
    return _main("server", _server, argv)


def client_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``seclink-client`` / ``python/client.py``."""
    return _main("client", _client, argv)
