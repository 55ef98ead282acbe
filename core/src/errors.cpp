// errors.cpp - names and messages for sl_err. The messages say what is wrong, and what to do
// where there is a fix, in the library's terms: they reach C and Python API users, who have no
// command-line flags. The programs add their flag hints where they print them.
#include "seclink/seclink.h"

namespace {

struct ErrorInfo {
    int code;
    const char *name;
    const char *message;
};

constexpr ErrorInfo kErrors[] = {
    {SL_OK, "OK", "success"},
    {SL_EINVAL, "INVAL", "invalid argument"},
    {SL_ENOMEM, "NOMEM", "out of memory"},
    {SL_EINTERNAL, "INTERNAL", "internal error in libseclink (please report it)"},
    {SL_ESTATE, "STATE", "operation not valid in the connection's current state"},
    {SL_ECLOSED, "CLOSED", "the connection is closed"},
    {SL_ECRYPTO, "CRYPTO", "an OpenSSL operation failed unexpectedly"},
    {SL_ERANGE, "RANGE", "output buffer too small"},
    {SL_EIO, "IO", "file system error (see errno)"},
    {SL_EFRAME_TOO_SHORT, "FRAME_TOO_SHORT", "frame length below the minimum for this stage of the protocol"},
    {SL_EFRAME_TOO_LARGE, "FRAME_TOO_LARGE",
     "frame length above the limit (message too large, or the peer is not speaking seclink/1)"},
    {SL_EBAD_MAGIC, "BAD_MAGIC", "handshake does not start with \"SLNK\": the peer is not a seclink client"},
    {SL_EBAD_VERSION, "BAD_VERSION", "the peer uses an unsupported seclink protocol version"},
    {SL_EHANDSHAKE_AUTH, "HANDSHAKE_AUTH",
     "handshake authentication failed: the two sides use different pre-shared keys"},
    {SL_EWEAK_KEY, "WEAK_KEY", "the peer sent a low-order (weak) X25519 key; handshake aborted"},
    {SL_EBAD_COUNTER, "BAD_COUNTER", "frame out of sequence: replayed, reordered or lost"},
    {SL_EAUTH, "AUTH", "frame failed authentication: tampered with, or from another session"},
    {SL_EBAD_TYPE, "BAD_TYPE", "unknown message type"},
    {SL_EBAD_PING, "BAD_PING", "PING/PONG content longer than 64 bytes"},
    {SL_EBAD_KEY_UPDATE, "BAD_KEY_UPDATE", "the peer sent a KEY_UPDATE with content: a protocol error"},
    {SL_ESERVER_KEY_UNKNOWN, "SERVER_KEY_UNKNOWN", "the server's key is not known here: check its fingerprint, then trust it"},
    {SL_ESERVER_KEY_CHANGED, "SERVER_KEY_CHANGED",
     "the server's key is not the one trusted for it: someone may be in the middle, or the key was replaced"},
    {SL_EMODE_REFUSED, "MODE_REFUSED", "the server does not accept the handshake mode asked for"},
    {SL_EBAD_AUTH, "BAD_AUTH", "the client did not start with a well-formed user name and password"},
    {SL_EMSG_TOO_LARGE, "MSG_TOO_LARGE", "message larger than the connection's maximum message size"},
    {SL_ENONCE_EXHAUSTED, "NONCE_EXHAUSTED", "message counter exhausted: open a new connection"},
    {SL_ETRUNCATED, "TRUNCATED", "the stream ended in the middle of a frame"},
    {SL_EBAD_EOF, "BAD_EOF", "the peer broke the EOF rule: EOF with content, a second EOF, or DATA after EOF"},
    {SL_EFILE_REFUSED, "FILE_REFUSED", "the server refused the file transfer"},
    {SL_EFILE_HASH, "FILE_HASH", "the file's SHA-256 does not match the sender's: the copy was discarded"},
    {SL_EFILE_EXISTS, "FILE_EXISTS", "a file of that name exists here: refusing to overwrite it"},
    {SL_EBAD_FILE_MSG, "BAD_FILE_MSG", "a file transfer message broke the protocol (bad layout, or out of turn)"},
    {SL_EKEY_NOT_FOUND, "KEY_NOT_FOUND", "key file not found: generate a key, or name an existing key file"},
    {SL_EKEY_PERMISSIONS, "KEY_PERMISSIONS",
     "key file is accessible by group or others: run 'chmod 600' on it"},
    {SL_EKEY_SYMLINK, "KEY_SYMLINK", "key file is a symbolic link: point at the real file instead"},
    {SL_EKEY_SIZE, "KEY_SIZE", "key file does not hold exactly 32 bytes: generate a new key"},
    {SL_EKEY_FORMAT, "KEY_FORMAT",
     "key file is not one line of base64: generate a new key"},
    {SL_EKEY_EXISTS, "KEY_EXISTS", "key file already exists: refusing to overwrite it (remove it first)"},
    {SL_EKEY_NOT_FILE, "KEY_NOT_FILE", "key file path is not a regular file: point at a key file"},
    {SL_EKEY_OWNER, "KEY_OWNER", "key file belongs to another user: use a key file of your own (or 'chown' it to you)"},
    {SL_EKEY_DIR, "KEY_DIR",
     "key file's directory can be changed by another user: run 'chmod go-w' on it, or move the key to a "
     "directory of your own"},
    {SL_EADDRINUSE, "ADDRINUSE", "address already in use: another program listens on that port"},
    {SL_ERESOLVE, "RESOLVE", "host not found: check the host name or address"},
    {SL_ECONNREFUSED, "CONNREFUSED", "connection refused: no server listens on that host and port"},
    {SL_EUNREACHABLE, "UNREACHABLE", "host unreachable: check the address and the network"},
    {SL_ETIMEDOUT, "TIMEDOUT", "timed out: the server did not answer in time"},
    {SL_EPEER_CLOSED, "PEER_CLOSED", "the peer closed the connection without saying goodbye (CLOSE)"},
    {SL_ESOCKET, "SOCKET", "unexpected socket error from the operating system"},
    {SL_ETLS, "TLS", "TLS failed"},
    {SL_ETLS_VERIFY, "TLS_VERIFY", "the server's TLS certificate is not signed by the trusted CA"},
    {SL_ETLS_TRUST, "TLS_TRUST",
     "nothing to verify the server's TLS certificate with: the CA file cannot be read and no "
     "certificate fingerprint is pinned (without either, a client trusts the certificate a local "
     "TLS server created in the seclink config directory)"},
    {SL_ETLS_HOSTNAME, "TLS_HOSTNAME",
     "the server's TLS certificate is for another host name: connect with a name it was issued for"},
    {SL_ETLS_PIN, "TLS_PIN", "the server's TLS certificate does not match the pinned SHA-256 fingerprint"},
    {SL_ETLS_EXPECTED, "TLS_EXPECTED", "TLS was asked for, but the server does not speak TLS"},
    {SL_ETLS_UNEXPECTED, "TLS_UNEXPECTED", "the server speaks TLS, but TLS was not asked for"},
    {SL_ETLS_CERT, "TLS_CERT", "the TLS certificate or key file cannot be used (unreadable, not PEM, or a key that does not "
     "match the certificate)"},
    {SL_EADDRNOTAVAIL, "ADDRNOTAVAIL",
     "not an address of this machine: listen on one of its addresses, or on 0.0.0.0 (or ::) for all of them"},
    {SL_EACCES, "ACCES",
     "permission denied by the system: ports below 1024 need privileges (choose a higher port), or a firewall "
     "refused the connection"},
    {SL_EAFNOSUPPORT, "AFNOSUPPORT", "that kind of address (IPv6 or IPv4) is turned off on this machine"},
    {SL_ECHAT_NAME, "CHAT_NAME", "a name is 1 to 24 letters, digits, '-' or '_'"},
    {SL_ECHAT_NAME_TAKEN, "CHAT_NAME_TAKEN", "that name is taken"},
    {SL_ECHAT_TEXT, "CHAT_TEXT",
     "a chat line is 1 to 2000 bytes of UTF-8 text without control or bidirectional-control characters"},
    {SL_ECHAT_ROOM_FULL, "CHAT_ROOM_FULL", "that room is full"},
    {SL_ECHAT_ROOMS, "CHAT_ROOMS", "the server has as many rooms as it allows"},
    {SL_ECHAT_RATE, "CHAT_RATE", "too many lines a second: wait a moment"},
    {SL_ECHAT_NO_USER, "CHAT_NO_USER", "nobody here has that name"},
    {SL_ECHAT_COMMAND, "CHAT_COMMAND", "not a command (/help lists them)"},
    {SL_ECHAT_SLOW, "CHAT_SLOW", "too slow: lines waiting for you passed the limit, so the server closed the session"},
};

const ErrorInfo *find(int err) noexcept {
    for (const ErrorInfo &e : kErrors)
        if (e.code == err) return &e;
    return nullptr;
}

}  // namespace

extern "C" const char *sl_strerror(int err) {
    const ErrorInfo *e = find(err);
    return e != nullptr ? e->message : "unknown error";
}

extern "C" const char *sl_errname(int err) {
    const ErrorInfo *e = find(err);
    return e != nullptr ? e->name : "UNKNOWN";
}

extern "C" int sl_err_category(int err) {
    switch (err) {
    case SL_OK: return SL_CAT_OK;
    case SL_EMSG_TOO_LARGE: return SL_CAT_TOO_LARGE;
    case SL_EBAD_MAGIC:
    case SL_EBAD_VERSION:
    case SL_EHANDSHAKE_AUTH:
    case SL_EWEAK_KEY:
    case SL_ESERVER_KEY_UNKNOWN:
    case SL_ESERVER_KEY_CHANGED:
    case SL_EMODE_REFUSED:
    case SL_EBAD_AUTH: return SL_CAT_HANDSHAKE;
    case SL_ECLOSED:
    case SL_EFRAME_TOO_SHORT:
    case SL_EFRAME_TOO_LARGE:
    case SL_EBAD_COUNTER:
    case SL_EAUTH:
    case SL_EBAD_TYPE:
    case SL_EBAD_PING:
    case SL_EBAD_KEY_UPDATE:
    case SL_ENONCE_EXHAUSTED:
    case SL_ETRUNCATED:
    case SL_EBAD_EOF:
    case SL_EBAD_FILE_MSG:
    case SL_EFILE_HASH:
    case SL_EFILE_REFUSED:
    case SL_EFILE_EXISTS:
    case SL_EPEER_CLOSED: return SL_CAT_SESSION;
    case SL_EADDRINUSE:
    case SL_ERESOLVE:
    case SL_ECONNREFUSED:
    case SL_EUNREACHABLE:
    case SL_ETIMEDOUT:
    case SL_ESOCKET:
    case SL_EADDRNOTAVAIL:
    case SL_EACCES:
    case SL_EAFNOSUPPORT: return SL_CAT_NETWORK;
    default: break;
    }
    if (err >= SL_EKEY_NOT_FOUND && err <= SL_EKEY_DIR) return SL_CAT_KEY;
    if (err >= SL_ETLS && err <= SL_ETLS_TRUST) return SL_CAT_TLS;
    return SL_CAT_INTERNAL;
}
