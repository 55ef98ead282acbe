"""seclink: encrypted, authenticated messaging (seclink/1: Noise NNpsk0 + AES-256-GCM).

The engine is libseclink's C++ core, the same one the native ``server`` and ``client`` use, so
every part of the project speaks exactly the same wire protocol (docs/PROTOCOL.md).

- :class:`Client`: blocking client (``send``, ``recv``, ``request``), a context manager.
- :class:`Server`: the native multi-threaded server, replies built natively or by a Python handler.
- :class:`Connection`: the sans-I/O engine, for bringing your own I/O.
- :mod:`seclink.aio`: asyncio ``connect()`` and ``serve()``.
- :mod:`seclink.keys`: pre-shared key files and TLS certificates.
- :mod:`seclink.errors`: the exceptions, all subclasses of :class:`Error`.
"""

try:
    from ._seclink import version as _native_version
except ModuleNotFoundError as e:  # a clone where nothing was built yet
    if e.name != f"{__name__}._seclink":
        raise
    raise ModuleNotFoundError(f"the native module {e.name} is not built: run `make` first (or `pip install .`)",
                              name=e.name) from None
from ._seclink import (DEFAULT_MAX_MESSAGE, KEY_BYTES, LOG_ERROR, LOG_INFO, LOG_MSG, LOG_TRACE, LOG_WARN, MAX_PING,
                       OVERHEAD_BYTES, PROTOCOL_VERSION)
from ._seclink import version as _native_version
from .client import Client
from .connection import Closed, Connection, Data, Event, HandshakeComplete, Eof, Ping, Pong
from .client import FileResult
from .errors import (AuthenticationError, FileTransferError, Category, ConnectionClosed, Err, Error, MsgType, HandshakeError, KeyFileError, MessageTooLarge,
                     NetworkError, ProtocolError, Timeout, TLSError)
from .keys import generate_key, key_path, load_key
from .server import Server

__version__ = _native_version()

__all__ = ["Client", "Server", "Connection", "Event", "HandshakeComplete", "Data", "Ping", "Pong", "Eof", "Closed",
           "Err", "Category", "MsgType", "Error", "KeyFileError", "NetworkError", "Timeout", "TLSError", "HandshakeError", "ProtocolError",
           "AuthenticationError", "ConnectionClosed", "FileTransferError", "FileResult", "MessageTooLarge", "load_key", "generate_key", "key_path",
           "DEFAULT_MAX_MESSAGE", "KEY_BYTES", "MAX_PING", "OVERHEAD_BYTES", "PROTOCOL_VERSION",
           "LOG_ERROR", "LOG_WARN", "LOG_INFO", "LOG_MSG", "LOG_TRACE", "__version__"]
