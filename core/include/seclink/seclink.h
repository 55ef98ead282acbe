/*
 * seclink.h - the C ABI of libseclink, the seclink/1 protocol engine.
 *
 * This header is the only door into the library: the C++ wrapper (seclink.hpp), the native
 * programs and the Python bindings all go through it. Wire format: docs/PROTOCOL.md.
 *
 * Conventions
 *  - Every function returns an sl_err (0 = SL_OK) unless documented otherwise, and never lets a
 *    C++ exception escape.
 *  - Constructors are `int sl_x_new(sl_x **out, ...)`: *out is set to NULL first, so it is NULL
 *    on every error. Every sl_x_free() accepts NULL.
 *  - One sl_conn is used from one thread at a time; distinct objects may be used concurrently.
 *  - Bytes fed to the engine are untrusted: every length is checked before anything is
 *    allocated, and plaintext is released only after its tag has verified.
 */
#ifndef SECLINK_H
#define SECLINK_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define SL_API __attribute__((visibility("default")))
#else
#define SL_API
#endif

/* ---- version (CMake reads these three lines) ---------------------------------------------- */
#define SL_VERSION_MAJOR 0
#define SL_VERSION_MINOR 1
#define SL_VERSION_PATCH 0

/** The library's version as "MAJOR.MINOR.PATCH"; a static string. */
SL_API const char *sl_version(void);

/* ---- errors ---------------------------------------------------------------------------------
 * Values are part of the ABI and of docs/PROTOCOL.md section 7: never renumber. */
typedef enum sl_err {
    SL_OK = 0,
    SL_EINVAL = 1,            /* a bad argument (NULL pointer, out-of-range value) */
    SL_ENOMEM = 2,            /* out of memory */
    SL_EINTERNAL = 3,         /* a bug or an unexpected exception inside the library */
    SL_ESTATE = 4,            /* the call is not valid in the connection's current state */
    SL_ECLOSED = 5,           /* the connection has failed or been closed */
    SL_ECRYPTO = 6,           /* an OpenSSL call failed unexpectedly */
    SL_ERANGE = 7,            /* an output buffer is too small */
    SL_EIO = 8,               /* a file-system error other than those below (see errno) */

    SL_EFRAME_TOO_SHORT = 10, /* length prefix below the smallest body for the state */
    SL_EFRAME_TOO_LARGE = 11, /* length prefix above the largest body for the state */
    SL_EBAD_MAGIC = 12,       /* handshake frame does not start with "SLNK" */
    SL_EBAD_VERSION = 13,     /* handshake frame names an unknown protocol version */
    SL_EHANDSHAKE_AUTH = 14,  /* handshake failed to decrypt: the pre-shared keys differ */
    SL_EWEAK_KEY = 15,        /* the peer's ephemeral key is a low-order X25519 point */
    SL_EBAD_COUNTER = 16,     /* transport IV is not the next counter: replay, reorder or loss */
    SL_EAUTH = 17,            /* transport frame failed authentication: tampered or foreign */
    SL_EBAD_TYPE = 18,        /* unknown message type */
    SL_EBAD_PING = 19,        /* PING or PONG content over SL_MAX_PING bytes */
    SL_EMSG_TOO_LARGE = 20,   /* outgoing message content over the connection's limit */
    SL_ENONCE_EXHAUSTED = 21, /* the send counter reached 2^64-1: open a new connection */
    SL_ETRUNCATED = 22,       /* the stream ended in the middle of a frame */

    SL_EKEY_NOT_FOUND = 30,   /* key file does not exist */
    SL_EKEY_PERMISSIONS = 31, /* key file readable or writable by group or others */
    SL_EKEY_SYMLINK = 32,     /* key file path is a symbolic link */
    SL_EKEY_SIZE = 33,        /* key file decodes to other than SL_KEY_BYTES bytes */
    SL_EKEY_FORMAT = 34,      /* key file is not one line of standard padded base64 */
    SL_EKEY_EXISTS = 35,      /* refusing to overwrite an existing key file */
    SL_EKEY_NOT_FILE = 36,    /* key file path is not a regular file */
    SL_EKEY_OWNER = 37,       /* key file belongs to another user */
    SL_EKEY_DIR = 38,         /* key file's directory is writable by group or others, or belongs to
                                 another user (other than root) */

    SL_EADDRINUSE = 40,       /* the server's port is already in use */
    SL_ERESOLVE = 41,         /* host name not found / bad address */
    SL_ECONNREFUSED = 42,     /* nothing listens on that port */
    SL_EUNREACHABLE = 43,     /* no route to the host */
    SL_ETIMEDOUT = 44,        /* the operation timed out */
    SL_EPEER_CLOSED = 45,     /* the peer closed the connection without a CLOSE message */
    SL_ESOCKET = 46,          /* another socket error (see errno) */
    SL_ETLS = 47,             /* TLS failed (handshake or record layer) */
    SL_ETLS_VERIFY = 48,      /* the server's certificate did not verify (CA or host name) */
    SL_ETLS_PIN = 49,         /* the server's certificate does not match the pinned SHA-256 */
    SL_ETLS_EXPECTED = 50,    /* the peer is not speaking TLS, but TLS was asked for */
    SL_ETLS_UNEXPECTED = 51,  /* the peer speaks TLS, but plain seclink was asked for */
    SL_ETLS_CERT = 52,        /* the TLS certificate or key file cannot be used */
    SL_ETLS_HOSTNAME = 53,    /* the server's certificate is valid but issued for another host */
    SL_ETLS_TRUST = 54,       /* nothing to verify the server with: no readable CA file, no pin */
    SL_EADDRNOTAVAIL = 55,    /* listening on an address that is not one of this machine's */
    SL_EACCES = 56,           /* the system refused: a port below 1024 without privilege, a firewall */
    SL_EAFNOSUPPORT = 57,     /* the address family (IPv6 or IPv4) is turned off on this machine */
    SL_EBAD_KEY_UPDATE = 60,  /* a KEY_UPDATE message with content (PROTOCOL.md 13) */
    SL_ESERVER_KEY_UNKNOWN = 61, /* the server's static key is not one this client knows (PROTOCOL.md 14) */
    SL_ESERVER_KEY_CHANGED = 62, /* the server's static key differs from the one this client expects */
    SL_EMODE_REFUSED = 63,    /* the server does not accept the handshake mode asked for */
    SL_EBAD_AUTH = 64,        /* mode 4: the client's first frame is not a well-formed AUTH (PROTOCOL.md 13) */

    /* Chat rooms (PROTOCOL.md "Chat rooms"): sent in-band as "! NAME: text", never fatal. */
    SL_ECHAT_NAME = 70,       /* not a valid name (1-24 letters, digits, '-', '_') */
    SL_ECHAT_NAME_TAKEN = 71, /* someone on the server already has that name */
    SL_ECHAT_TEXT = 72,       /* not a valid chat line: bad UTF-8, control or bidi characters, too long */
    SL_ECHAT_ROOM_FULL = 73,  /* the room has its most members */
    SL_ECHAT_ROOMS = 74,      /* the server has its most rooms */
    SL_ECHAT_RATE = 75,       /* more lines a second than the server allows */
    SL_ECHAT_NO_USER = 76,    /* nobody on the server has that name */
    SL_ECHAT_COMMAND = 77,    /* unknown command, wrong arguments, or not in a room */
    SL_ECHAT_SLOW = 78,       /* the member read too slowly: its queue filled and it was closed */

    SL_EBAD_EOF = 80,         /* an EOF message with content, a second EOF, or DATA after EOF */
    SL_EFILE_REFUSED = 81,    /* the server refused a file transfer (sl_file_result says why) */
    SL_EFILE_HASH = 82,       /* a received file's SHA-256 is not the sender's: nothing was kept */
    SL_EFILE_EXISTS = 83,     /* a download would replace a local file (allow it to overwrite) */
    SL_EBAD_FILE_MSG = 84     /* a file message with a bad layout, or out of turn (PROTOCOL.md 10) */
} sl_err;

/* What kind of failure an error is, for programs that report failures by kind. The values are
 * the exit codes of the seclink programs (README.md), so every language's programs take them
 * from here. USAGE is never returned: only a program knows its flags. */
typedef enum sl_category {
    SL_CAT_OK = 0,
    SL_CAT_INTERNAL = 1,  /* a bug, out of memory, a file-system error */
    SL_CAT_USAGE = 2,     /* a bad flag or argument */
    SL_CAT_KEY = 3,       /* the pre-shared key file is missing or unusable */
    SL_CAT_NETWORK = 4,   /* cannot listen or connect: in use, refused, unreachable, unknown host, timeout */
    SL_CAT_HANDSHAKE = 5, /* the seclink handshake failed: different keys, not a seclink peer */
    SL_CAT_TLS = 6,       /* TLS: verification, pin, TLS on one side only, certificate */
    SL_CAT_SESSION = 7,   /* the session broke off: closed, lost, a protocol error */
    SL_CAT_TOO_LARGE = 8  /* a message over the size limit was refused (nothing was sent) */
} sl_category;

/** The sl_category of `err`; SL_CAT_INTERNAL for values not listed. */
SL_API int sl_err_category(int err);

/** The errno behind the last SL_ESOCKET this thread was given (0 if none), so that a program
 *  can name the cause of a socket error no other code describes (strerror()). */
SL_API int sl_last_os_error(void);

/** A static, one-line English description of `err`, saying what to do where there is a fix.
 *  Never NULL; unknown values give "unknown error". */
SL_API const char *sl_strerror(int err);

/** The stable name of `err` as used in docs/PROTOCOL.md and the test vectors ("BAD_MAGIC",
 *  "AUTH", ...); "OK" for 0, "UNKNOWN" for values not listed. Never NULL. */
SL_API const char *sl_errname(int err);

/* ---- wire constants: macros for C, functions for bindings ----------------------------------- */
#define SL_KEY_BYTES 32u           /* pre-shared key */
#define SL_PREFIX_BYTES 4u         /* big-endian body length in front of every frame */
#define SL_IV_BYTES 12u            /* transport IV: 4 zero bytes || 64-bit big-endian counter */
#define SL_TAG_BYTES 16u           /* AES-256-GCM tag */
#define SL_TYPE_BYTES 1u           /* message type in front of the content */
#define SL_OVERHEAD_BYTES 33u      /* prefix + IV + type + tag around every message's content */
#define SL_HANDSHAKE1_BYTES 53u    /* body of frame 1 (version 1, empty payload) */
#define SL_HANDSHAKE2_BYTES 48u    /* body of frame 2 */
#define SL_MAX_HANDSHAKE_BYTES 1024u /* largest handshake body a receiver accepts */
#define SL_MAX_PING 64u            /* largest PING/PONG content */
#define SL_MAX_FIRST_FRAME_BYTES 1024u /* largest transport body a server accepts before the
                                          client's first frame verified (key confirmation) */
#define SL_DEFAULT_MAX_MESSAGE (16u * 1024u * 1024u) /* default largest message content */
#define SL_MAX_MESSAGE_LIMIT 0x7FFFFFFEu /* largest max message (2^31-2): type + content are one AEAD call */
#define SL_HASH_BYTES 32u          /* handshake hash */
#define SL_DEFAULT_TIMEOUT_MS 10000u /* a client's connect + handshake limit, and each send's */
#define SL_DEFAULT_KEEPALIVE_MS 60000u /* an interactive client PINGs after this long without traffic */

/* Defaults of the server's limits (sl_server_config_init), read by every layer and language. */
#define SL_DEFAULT_PORT 5000u
#define SL_DEFAULT_MAX_CLIENTS 10000u             /* authenticated sessions at once */
#define SL_DEFAULT_MAX_HANDSHAKES 256u            /* sessions still proving they hold the key */
#define SL_DEFAULT_MAX_HANDSHAKES_PER_ADDR 64u    /* ... of them from one source address */
#define SL_DEFAULT_HANDSHAKE_RATE 200u            /* new sessions a second from one address */
#define SL_DEFAULT_HANDSHAKE_TIMEOUT_MS 10000u
#define SL_DEFAULT_IDLE_TIMEOUT_MS 300000u
#define SL_DEFAULT_FRAME_TIMEOUT_MS 60000u        /* a started frame must be complete by then */
#define SL_DEFAULT_MAX_MEMORY (256u * 1024u * 1024u) /* all sessions' buffered bytes */
#define SL_PROTOCOL_VERSION 1u
#define SL_DEFAULT_MAX_FILE_SIZE (64ull << 30)    /* a served file: 64 GiB */
#define SL_DEFAULT_MAX_FILES_TOTAL (256ull << 30) /* every file in the served directory: 256 GiB */
#define SL_FILE_CHUNK (256u * 1024u)              /* largest FILE_DATA; a files server's max_message
                                                     must be at least this */
/* Chat rooms (sl_server_config.chat; PROTOCOL.md "Chat rooms"). */
#define SL_DEFAULT_CHAT_ROOMS 1000u   /* rooms on a server at once */
#define SL_DEFAULT_CHAT_MEMBERS 1000u /* members of one room */
#define SL_DEFAULT_CHAT_RATE 20u      /* lines a second from one member (burst: the same number) */
#define SL_DEFAULT_CHAT_QUEUE 1000u   /* lines waiting for one member before it is dropped as too slow */
#define SL_CHAT_MAX_NAME 24u          /* bytes of a member's or a room's name */
#define SL_CHAT_MAX_TEXT 2000u        /* bytes of one chat line from a client */
#define SL_DEFAULT_REKEY_BYTES 0x100000000ull /* bytes under one key before an automatic KEY_UPDATE (4 GiB) */
#define SL_MAX_PSKS 16u  /* keys a server accepts at once (key rotation, PROTOCOL.md 12) */
#define SL_FINGERPRINT_CHARS 39u   /* "XXXX-XXXX-...": 8 groups of 4 base32 characters (PROTOCOL.md 14.3) */

/* Handshake modes, the version byte of frame 1 (PROTOCOL.md 14). Masks of accepted modes have
 * bit (1 << mode) set for each. */
typedef enum sl_mode {
    SL_MODE_PSK = 1,        /* Noise NNpsk0: both sides prove the PSK (the default) */
    SL_MODE_SERVER_KEY = 2, /* Noise NXpsk2: and the server its static key, checked by the client */
    SL_MODE_USER_KEY = 3,   /* Noise XXpsk3: and the client a user key the server lists (PROTOCOL.md 15) */
    SL_MODE_PASSWORD = 4    /* as SL_MODE_SERVER_KEY, then a user name and password (PROTOCOL.md 16) */
} sl_mode;
#define SL_MODES_ALL ((1u << SL_MODE_PSK) | (1u << SL_MODE_SERVER_KEY) | (1u << SL_MODE_USER_KEY) | \
                      (1u << SL_MODE_PASSWORD))
#define SL_MAX_PASSWORD 1024u /* bytes */

SL_API size_t sl_key_bytes(void);
SL_API size_t sl_prefix_bytes(void);
SL_API size_t sl_iv_bytes(void);
SL_API size_t sl_tag_bytes(void);
SL_API size_t sl_overhead_bytes(void);
SL_API size_t sl_max_ping(void);
SL_API size_t sl_default_max_message(void);
SL_API unsigned sl_protocol_version(void);

/* ---- pre-shared key files (docs/PROTOCOL.md section 6) -------------------------------------- */

/** Loads the 32-byte key in the file at `path` into `key` (the rules: docs/PROTOCOL.md 6).
 *  Returns SL_OK, SL_EINVAL, SL_EKEY_NOT_FOUND, SL_EKEY_SYMLINK, SL_EKEY_NOT_FILE,
 *  SL_EKEY_PERMISSIONS, SL_EKEY_OWNER, SL_EKEY_DIR, SL_EKEY_FORMAT, SL_EKEY_SIZE, SL_EIO. On
 *  error `key` is zeroed. The file's content is untrusted; it is read with a small bound and
 *  wiped from memory. Run as root it also loads other users' keys: see sl_key_load_ex. */
SL_API int sl_key_load(const char *path, uint8_t key[SL_KEY_BYTES]);

/* sl_key_load_ex warnings: things allowed, but worth telling the user. */
#define SL_KEY_WARN_OTHER_OWNER 1u /* running as root, loaded a key file (or from a directory)
                                      that belongs to another user */

/** sl_key_load, and sets `*warnings` (if not NULL) to SL_KEY_WARN_* bits: 0 when there is
 *  nothing to say or on error. A program should show each bit as a warning. */
SL_API int sl_key_load_ex(const char *path, uint8_t key[SL_KEY_BYTES], unsigned *warnings);

/** Creates a new random key at `path` (mode 0600, O_EXCL, parent directories 0700 as needed)
 *  and, if `key_out` is not NULL, copies the key there. Refuses a directory sl_key_load would.
 *  Returns SL_OK, SL_EINVAL, SL_EKEY_EXISTS, SL_EKEY_DIR, SL_EKEY_NOT_FILE, SL_ECRYPTO, SL_EIO. */
SL_API int sl_key_generate(const char *path, uint8_t key_out[SL_KEY_BYTES]);

/** Writes into `buf` (capacity `cap`, NUL-terminated) the key file path to use: `explicit_path`
 *  if not NULL or empty, else $SECLINK_PSK_FILE, else $XDG_CONFIG_HOME/seclink/psk (if set and
 *  absolute), else $HOME/.config/seclink/psk. If `needed` is not NULL it receives the length
 *  without the NUL. Returns SL_OK, SL_EINVAL (no HOME), SL_ERANGE (`cap` too small). */
SL_API int sl_key_path(const char *explicit_path, char *buf, size_t cap, size_t *needed);

/** Like sl_key_path for the configuration directory: $XDG_CONFIG_HOME/seclink or
 *  $HOME/.config/seclink (where the default key and generated certificates live). */
SL_API int sl_config_dir(char *buf, size_t cap, size_t *needed);

/* ---- the sans-I/O connection engine --------------------------------------------------------- */

typedef enum sl_role { SL_CLIENT = 0, SL_SERVER = 1 } sl_role;

typedef enum sl_msg_type {
    SL_MSG_DATA = 1,  /* application bytes */
    SL_MSG_CLOSE = 2, /* optional UTF-8 reason; sender closes after sending */
    SL_MSG_PING = 3,  /* at most SL_MAX_PING bytes; the engine queues the PONG itself */
    SL_MSG_PONG = 4,
    SL_MSG_KEY_UPDATE = 5, /* rekeying (PROTOCOL.md 13): sent by sl_conn_rekey() and automatically,
                             never by sl_conn_send(); handled by the engine, never delivered */
    SL_MSG_AUTH = 6,      /* mode 4 (PROTOCOL.md 13): sent by the engine (sl_conn_set_login); a server's
                             session layer checks it (delivered by sl_conn_feed to it) */
    SL_MSG_EOF = 0x20, /* empty: the sender sends no more DATA (its input ended); see PROTOCOL.md 9 */
    /* File transfer (PROTOCOL.md 10); the client calls sl_client_send_file / sl_client_get_file
       and servers with files_dir handle them in the session layer. */
    SL_MSG_FILE_PUT = 0x21,
    SL_MSG_FILE_GET = 0x22,
    SL_MSG_FILE_READY = 0x23,
    SL_MSG_FILE_INFO = 0x24,
    SL_MSG_FILE_DATA = 0x25,
    SL_MSG_FILE_READ = 0x26,
    SL_MSG_FILE_END = 0x27,
    SL_MSG_FILE_DONE = 0x28,
    SL_MSG_FILE_ERROR = 0x2F
} sl_msg_type;

typedef enum sl_event_type {
    SL_EVENT_NONE = 0,           /* more input is needed */
    SL_EVENT_HANDSHAKE_DONE = 1, /* keys established; messages may now be sent */
    SL_EVENT_MESSAGE = 2         /* a DATA, PING, PONG or CLOSE arrived (see msg_type) */
} sl_event_type;

typedef struct sl_event {
    int type;            /* sl_event_type */
    int msg_type;        /* sl_msg_type, for SL_EVENT_MESSAGE */
    const uint8_t *data; /* message content; valid until the next call on the connection */
    size_t len;
} sl_event;

typedef struct sl_conn sl_conn;

/** Creates a connection for `role` with the 32-byte pre-shared key `psk` (copied; the copy is
 *  wiped by sl_conn_free). Configure it with the setters below, then call sl_conn_start().
 *  Returns SL_OK, SL_EINVAL, SL_ENOMEM, SL_ECRYPTO. */
SL_API int sl_conn_new(sl_conn **out, sl_role role, const uint8_t psk[SL_KEY_BYTES]);

/** Frees `conn` and wipes its keys. Accepts NULL. */
SL_API void sl_conn_free(sl_conn *conn);

/** Sets the largest message content this side accepts and sends (default
 *  SL_DEFAULT_MAX_MESSAGE, at most SL_MAX_MESSAGE_LIMIT). Only before sl_conn_start().
 *  Returns SL_OK, SL_EINVAL, SL_ESTATE. */
SL_API int sl_conn_set_max_message(sl_conn *conn, size_t max_message);

/** Sets only the largest content this side sends (what the peer accepts), after
 *  sl_conn_set_max_message: e.g. a server that accepts small messages but replies with larger
 *  ones. Only before sl_conn_start(). Returns SL_OK, SL_EINVAL, SL_ESTATE. */
SL_API int sl_conn_set_max_send(sl_conn *conn, size_t max_send);

/** FOR TEST VECTORS ONLY: use `priv` as this side's ephemeral X25519 private key instead of a
 *  fresh random one. A fixed ephemeral destroys forward secrecy and, reused, lets an observer
 *  link sessions; never call this outside tests. Only before sl_conn_start().
 *  Returns SL_OK, SL_EINVAL, SL_ESTATE, SL_ECRYPTO. */
SL_API int sl_conn_set_ephemeral_for_testing(sl_conn *conn, const uint8_t priv[32]);

/** Client only, on by default: right after frame 2 arrives, queue an empty PING as the first
 *  transport frame (key confirmation, docs/PROTOCOL.md 4.1) and swallow its PONG. Turning it
 *  off is only for reproducing the original seclink/1 vectors (section 8); a server then takes
 *  the client's first message as its key confirmation, and refuses it if it is over
 *  SL_MAX_FIRST_FRAME_BYTES. Only before sl_conn_start(). Returns SL_OK, SL_EINVAL, SL_ESTATE. */
SL_API int sl_conn_set_key_confirmation(sl_conn *conn, int on);

/** 1 once the peer has proved that it holds the key: for a server, once the client's first
 *  transport frame verified; for a client, once frame 2 verified. Else 0. */
SL_API int sl_conn_peer_confirmed(const sl_conn *conn);

/** Server only, key rotation (docs/PROTOCOL.md 12): accept any of the `count` keys at `psks`
 *  (count * SL_KEY_BYTES bytes, copied, at most SL_MAX_PSKS), tried in this order on frame 1,
 *  instead of the key given to sl_conn_new. Only before sl_conn_start().
 *  Returns SL_OK, SL_EINVAL (a client, count 0 or over SL_MAX_PSKS), SL_ESTATE, SL_ENOMEM. */
SL_API int sl_conn_set_psks(sl_conn *conn, const uint8_t *psks, size_t count);

/** Client: the handshake mode to ask for (sl_mode; default SL_MODE_PSK). Before sl_conn_start().
 *  Returns SL_OK, SL_EINVAL, SL_ESTATE. */
SL_API int sl_conn_set_mode(sl_conn *conn, int mode);

/** Client, SL_MODE_SERVER_KEY: the server's static public key to expect (copied). Without it the
 *  handshake stops after frame 2 with SL_ESERVER_KEY_UNKNOWN (sl_conn_server_key() then gives the
 *  key, to show its fingerprint and ask); a different key is SL_ESERVER_KEY_CHANGED. Nothing is
 *  sent to a server whose key was not expected. Returns SL_OK, SL_EINVAL, SL_ESTATE. */
SL_API int sl_conn_set_server_key(sl_conn *conn, const uint8_t pub[32]);

/** Server: its static X25519 private key (copied), which enables SL_MODE_SERVER_KEY and
 *  SL_MODE_USER_KEY. Client in SL_MODE_USER_KEY: its identity's private key (required). Before
 *  sl_conn_start(). Returns SL_OK, SL_EINVAL, SL_ESTATE, SL_ENOMEM. */
SL_API int sl_conn_set_static_key(sl_conn *conn, const uint8_t priv[32]);

/** Server: the modes it accepts, a mask of (1 << sl_mode) bits (default: SL_MODE_PSK only; mode 2
 *  also needs sl_conn_set_static_key). A frame 1 in another mode fails with SL_EMODE_REFUSED (or
 *  SL_EBAD_VERSION for no mode at all). Returns SL_OK, SL_EINVAL, SL_ESTATE. */
SL_API int sl_conn_set_accepted_modes(sl_conn *conn, unsigned mask);

/** Client: the static key a mode-2 server sent, once frame 2 verified (also after
 *  SL_ESERVER_KEY_UNKNOWN / CHANGED). Returns SL_OK, SL_EINVAL, SL_ESTATE (none received). */
SL_API int sl_conn_server_key(const sl_conn *conn, uint8_t out[32]);

/** Client, SL_MODE_PASSWORD: the user name and password (copied; wiped once sent) that the engine
 *  sends as AUTH once the server's key is accepted. Before sl_conn_start(). Returns SL_OK,
 *  SL_EINVAL (a name of 0 or over 32 characters, a password over SL_MAX_PASSWORD), SL_ESTATE. */
SL_API int sl_conn_set_login(sl_conn *conn, const char *user, const uint8_t *password, size_t password_len);

/** Appends (or replaces) the line of `user` in the password users file at `path` (PROTOCOL.md 16):
 *  a salted scrypt hash (N 16384, r 8, p 1, OpenSSL's KDF), the file created with mode 0600.
 *  Returns SL_OK, SL_EINVAL, SL_EIO, SL_ECRYPTO, SL_EKEY_PERMISSIONS (group/other may write it). */
SL_API int sl_users_add(const char *path, const char *user, const uint8_t *password, size_t password_len);

/** Server, SL_MODE_USER_KEY: the client's static public key, once frame 3 verified. Returns
 *  SL_OK, SL_EINVAL, SL_ESTATE (none yet). */
SL_API int sl_conn_client_key(const sl_conn *conn, uint8_t out[32]);

/** Client, after SL_EMODE_REFUSED: the modes the server said it accepts (mask), else 0. */
SL_API unsigned sl_conn_server_modes(const sl_conn *conn);

/** "psk", "server-key" for an sl_mode; "unknown" else. Static. */
SL_API const char *sl_mode_name(int mode);

/** Rekeying (docs/PROTOCOL.md 13): sends a KEY_UPDATE now; this side's sending key is then
 *  replaced by the next one. Returns SL_OK, SL_EINVAL, SL_ESTATE (no handshake yet), SL_ECLOSED,
 *  SL_ENONCE_EXHAUSTED, SL_ENOMEM, SL_ECRYPTO. */
SL_API int sl_conn_rekey(sl_conn *conn);

/** The bytes sent under one key (plaintext + 16 per frame) after which a KEY_UPDATE is sent
 *  automatically: SL_DEFAULT_REKEY_BYTES unless set. Lower values are for tests (a rekey every few
 *  frames); at least 1. Returns SL_OK, SL_EINVAL. */
SL_API int sl_conn_set_rekey_bytes(sl_conn *conn, uint64_t bytes);

/** Number of KEY_UPDATEs this side has sent and received so far. */
SL_API int sl_conn_rekeys(const sl_conn *conn, uint64_t *sent, uint64_t *received);

/** Server: the index of the key frame 1 matched (in sl_conn_set_psks order; 0 without it), or
 *  -1 before a frame 1 verified (and for a client, or NULL). */
SL_API int sl_conn_psk_index(const sl_conn *conn);

/** Starts the handshake: a client queues frame 1 for sending; a server starts waiting for it.
 *  Returns SL_OK, SL_EINVAL, SL_ESTATE, SL_ECRYPTO. */
SL_API int sl_conn_start(sl_conn *conn);

/** Feeds up to `len` received bytes. Consumes bytes until one event is complete or the input is
 *  used up, stores how many it consumed in `*consumed` and the event in `*ev` (SL_EVENT_NONE if
 *  it needs more). Call again with the rest of the input until it is all consumed. Replies the
 *  protocol requires (frame 2, PONG) are queued for sending automatically.
 *  Returns SL_OK or the protocol error that made the connection fail (SL_EFRAME_TOO_SHORT ...
 *  SL_EBAD_PING); after an error every call returns SL_ECLOSED. After a CLOSE from the peer,
 *  further input is consumed and ignored. */
SL_API int sl_conn_feed(sl_conn *conn, const uint8_t *data, size_t len, size_t *consumed,
                        sl_event *ev);

/** Tells the engine that the stream has ended. Returns SL_OK at a frame boundary, SL_ETRUNCATED
 *  if a frame was partly received. */
SL_API int sl_conn_feed_eof(sl_conn *conn);

/** Queues one message for sending. DATA needs a completed handshake; content at most the
 *  connection's max message (SL_EMSG_TOO_LARGE), PING/PONG at most SL_MAX_PING (SL_EBAD_PING).
 *  After CLOSE nothing more may be sent. Returns SL_OK, SL_EINVAL (bad type), SL_ESTATE, SL_ECLOSED,
 *  SL_EMSG_TOO_LARGE, SL_EBAD_PING, SL_ENONCE_EXHAUSTED, SL_ENOMEM, SL_ECRYPTO. */
SL_API int sl_conn_send(sl_conn *conn, int msg_type, const uint8_t *data, size_t len);

/** Points `*data`/`*len` at the bytes waiting to be written to the stream (len 0 if none).
 *  The pointer stays valid until the next call that changes the connection. */
SL_API int sl_conn_pending(const sl_conn *conn, const uint8_t **data, size_t *len);

/** Marks the first `n` pending bytes as written. Returns SL_OK, SL_EINVAL (n too large). */
SL_API int sl_conn_consume(sl_conn *conn, size_t n);

/** Number of bytes waiting to be written (0 for NULL). */
SL_API size_t sl_conn_pending_size(const sl_conn *conn);

/** Frees the buffers the connection keeps between messages (they grow again on demand): for
 *  servers that hold many quiet sessions after some large messages. Keeps partial input and
 *  unsent output. Invalidates the data of the last event. Returns SL_OK, SL_EINVAL. */
SL_API int sl_conn_trim(sl_conn *conn);

/** 1 once the handshake has completed, else 0. */
SL_API int sl_conn_is_established(const sl_conn *conn);

/** 1 once the connection failed, sent CLOSE or received CLOSE, else 0. */
SL_API int sl_conn_is_closed(const sl_conn *conn);

/** What sl_conn_set_trace() reports for each frame sent or received. */
typedef struct sl_frame_info {
    int sent;                 /* 1: this side sent the frame; 0: it received it */
    int kind;                 /* 1: handshake frame 1, 2: handshake frame 2, 3: transport,
                                 4: handshake frame 3 (mode 3, PROTOCOL.md 15) */
    const uint8_t *body;      /* the frame's body as on the wire (after the 4-byte length) */
    size_t body_len;          /* = the length prefix */
    uint64_t counter;         /* transport: the frame's counter (its IV) */
    int msg_type;             /* transport: sl_msg_type */
    const uint8_t *content;   /* transport: the message content, after the tag verified */
    size_t content_len;
} sl_frame_info;

typedef void (*sl_trace_fn)(void *ud, const sl_frame_info *frame);

/** Calls `fn(ud, ...)` for every frame the connection sends or accepts (received frames only
 *  after they verified), from inside sl_conn_start/feed/send; NULL turns tracing off. For
 *  teaching and debugging: the information is also what an observer of the wire sees, plus the
 *  plaintext. Returns SL_OK, SL_EINVAL. */
SL_API int sl_conn_set_trace(sl_conn *conn, sl_trace_fn fn, void *ud);

/** Writes an annotated multi-line hex dump of `frame` (length prefix, IV and counter,
 *  ciphertext, tag, plaintext) into `buf`, NUL-terminated and truncated to fit; `peer` (may be
 *  NULL) names the other side. Returns the length written. */
SL_API size_t sl_format_frame(const sl_frame_info *frame, const char *peer, char *buf, size_t cap);

/** Copies the 32-byte handshake hash (docs/PROTOCOL.md 3.5). Returns SL_OK, SL_EINVAL,
 *  SL_ESTATE (handshake not complete). */
SL_API int sl_conn_handshake_hash(const sl_conn *conn, uint8_t out[SL_HASH_BYTES]);

/* ---- server identity: static keys, fingerprints, known servers (PROTOCOL.md 14) ------------ */

/** The X25519 public key of the private key `priv` (e.g. a server key file, loaded with
 *  sl_key_load: same format as a PSK file). Returns SL_OK, SL_EINVAL, SL_ECRYPTO. */
SL_API int sl_key_public(const uint8_t priv[32], uint8_t pub[32]);

/** Writes the fingerprint of public key `pub` (SL_FINGERPRINT_CHARS characters + NUL, so cap >=
 *  40): base32 of the first 20 bytes of its SHA-256, in 8 groups of 4 joined by '-'. Returns
 *  SL_OK, SL_EINVAL, SL_ERANGE, SL_ECRYPTO. */
SL_API int sl_key_fingerprint(const uint8_t pub[32], char *buf, size_t cap);

/** 1 if `text` is the fingerprint of `pub`, comparing without regard to case, '-' and spaces;
 *  else 0. */
SL_API int sl_fingerprint_matches(const char *text, const uint8_t pub[32]);

/** Looks `host_port` ("host:port", "[v6]:port"; the host compared without regard to case) up in
 *  the known-servers file at `path`. SL_OK: found, its key in `pub` and its line number in *line
 *  (if not NULL); SL_ESERVER_KEY_UNKNOWN: no such line (or no such file). Also SL_EINVAL, SL_EIO,
 *  SL_EKEY_PERMISSIONS (the file is writable by group or others: anyone could plant a key). */
SL_API int sl_known_servers_lookup(const char *path, const char *host_port, uint8_t pub[32], unsigned *line);

/** Appends "host:port BASE64(pub)" to the known-servers file at `path`, creating it (0600, and its
 *  directory 0700) if needed. Returns SL_OK, SL_EINVAL, SL_EIO, SL_EKEY_PERMISSIONS. */
SL_API int sl_known_servers_add(const char *path, const char *host_port, const uint8_t pub[32]);

/** The default known-servers file, <sl_config_dir()>/known_servers (as sl_config_dir). */
SL_API int sl_known_servers_path(char *buf, size_t cap, size_t *needed);

/* ---- native I/O: logging shared by the server and client ---------------------------------- */

typedef enum sl_log_level {
    SL_LOG_ERROR = 0,
    SL_LOG_WARN = 1,
    SL_LOG_INFO = 2,  /* start, connect, disconnect */
    SL_LOG_MSG = 3,   /* [RECV] / [SEND] lines */
    SL_LOG_TRACE = 4  /* annotated frames (--trace) */
} sl_log_level;

/** Receives one finished log line such as "[INFO] Listening on 0.0.0.0:5000" (no timestamp,
 *  no newline; trace entries span several lines). Called from any of the server's threads,
 *  one call at a time. */
typedef void (*sl_log_fn)(void *ud, int level, const char *line);

/** How a message is shown in logs: "<empty>"; "<binary>" if it is not valid UTF-8 or holds a
 *  control character other than tab (C0, DEL, C1); else its text, in which every character that
 *  could split or disguise a log line (line/paragraph separators, format characters such as bidi
 *  controls, zero-width characters and the BOM, spaces other than U+0020, private-use characters,
 *  noncharacters) is written as \uXXXX or \UXXXXXXXX (lower-case hex), cut after at most 200
 *  bytes with "...". The result is one line whichever way it is split, at most 203 bytes.
 *  Writes at most cap-1 bytes and a NUL; returns the length. The input is untrusted. */
SL_API size_t sl_format_message(const uint8_t *data, size_t len, char *buf, size_t cap);

/* ---- native I/O: the server ----------------------------------------------------------------
 * A fixed pool of worker threads, each running its own event loop (epoll on Linux, poll() elsewhere:
 * CMake SECLINK_POLLER) over non-blocking sockets and driving one sl_conn per connection; worker
 * 0's loop also accepts and spreads new connections. */

/** A reply being built by a handler. */
typedef struct sl_buf sl_buf;

/** Appends to the reply. Returns SL_OK, SL_EINVAL, SL_EMSG_TOO_LARGE, SL_ENOMEM. */
SL_API int sl_buf_append(sl_buf *buf, const uint8_t *data, size_t len);

/** Called on a worker thread for every DATA message. Append the reply to `reply` (it is sent as
 *  one DATA message, possibly empty). Return 0 to send it, non-zero to close that session: the
 *  client gets CLOSE "server error" and the server logs a [WARN] whose reason is what the handler
 *  appended to `reply` (never sent). Calls for one session never overlap; calls for different
 *  sessions may. */
typedef int (*sl_handler_fn)(void *ud, const char *peer, const uint8_t *data, size_t len, sl_buf *reply);

typedef struct sl_server_config {
    const char *host;               /* address to bind; "0.0.0.0" by default */
    uint16_t port;                  /* 0: any free port (see sl_server_port) */
    const uint8_t *psk;             /* SL_KEY_BYTES bytes, required; copied */
    unsigned threads;               /* worker threads; 0: sl_server_default_threads() */
    unsigned max_clients;           /* authenticated sessions at once; more are told so and
                                       closed. Default 10000 */
    unsigned handshake_timeout_ms;  /* default 10000 */
    unsigned idle_timeout_ms;       /* default 300000; 0 in a config from _init means default */
    size_t max_message;             /* default SL_DEFAULT_MAX_MESSAGE */
    int echo;                       /* reply with the message itself, not "ACK: received N bytes" */
    int log_level;                  /* most verbose sl_log_level passed to `log`; default SL_LOG_MSG */
    sl_log_fn log;                  /* NULL: no logging */
    void *log_ud;
    sl_handler_fn handler;          /* NULL: the built-in ACK (or echo) reply */
    void *handler_ud;
    int tls;                        /* run seclink/1 inside TLS 1.3 */
    const char *tls_cert;           /* PEM certificate chain (with tls) */
    const char *tls_key;            /* PEM private key (with tls) */
    /* Admission and budgets (the session layer, below). 0 in a config from _init means default. */
    unsigned max_handshakes;        /* sessions still proving they hold the key, at once; more
                                       wait for a slot (at most handshake_timeout_ms) */
    unsigned max_handshakes_per_addr; /* of those, from one source address; more wait likewise */
    unsigned handshake_rate;        /* new sessions a second from one source address (burst: the
                                       same number); more wait for their turn */
    unsigned frame_timeout_ms;      /* a frame once started must be complete within this */
    size_t max_memory;              /* budget for every session's buffered input and output */
    int redact;                     /* log sizes and counters only: message content and CLOSE
                                       reasons become "<redacted>", and no trace entries */
    const char *files_dir;          /* serve files in this directory (PROTOCOL.md 10); NULL: none */
    int files_overwrite;            /* an upload may replace an existing file */
    uint64_t max_file_size;         /* bytes per file; 0: SL_DEFAULT_MAX_FILE_SIZE */
    uint64_t max_files_total;       /* bytes of every file in files_dir; 0: SL_DEFAULT_MAX_FILES_TOTAL */
    int stream;                     /* stream mode (pipe, tunnel; docs/PROTOCOL.md 9): DATA is
                                       handed to the driver, which answers nothing (an empty
                                       sl_session_reply() only says it took it) and sends its
                                       own DATA and EOF (sl_session_send, sl_session_send_eof).
                                       Only for drivers of the session layer, not sl_server_new */
    /* Chat rooms (PROTOCOL.md "Chat rooms"): DATA lines are relayed between sessions instead of
       answered; the handler and echo are not used. 0 in a config from _init means default. */
    int chat;
    unsigned chat_rooms;            /* rooms at once */
    unsigned chat_members;          /* members of one room */
    unsigned chat_rate;             /* lines a second from one member */
    unsigned chat_queue;            /* lines waiting for one member; more: it is closed (CHAT_SLOW) */
    const char *chat_cluster;       /* "nats://HOST:PORT": rooms shared with the servers linked to
                                       that NATS server (PROTOCOL.md 11.7); NULL: this server only.
                                       Not a usable URL, or built without libnats: SL_EINVAL */
    /* Key rotation (docs/PROTOCOL.md 12). */
    size_t psk_count;               /* keys at `psk` (psk_count * SL_KEY_BYTES bytes), all
                                       accepted, tried in order; 0 means 1; at most SL_MAX_PSKS */
    const char *const *psk_names;   /* NULL, or psk_count names (e.g. the key files' paths, never
                                       the keys): "handshake complete (key NAME)" is logged */
    uint64_t rekey_bytes;           /* automatic KEY_UPDATE threshold (PROTOCOL.md 13); 0: default.
                                       Small values are for tests */
    /* Server identity (PROTOCOL.md 14). */
    const uint8_t *server_key;      /* 32-byte static private key (copied); NULL: no mode 2 */
    unsigned modes;                 /* accepted modes, a mask of (1 << sl_mode); 0: psk, and
                                       server-key if server_key is set, and user-key if
                                       authorized_keys is set too */
    const char *authorized_keys;    /* key users (PROTOCOL.md 15): a file of NAME BASE64(KEY)
                                       lines, read at start and by sl_*_reload_users */
    const char *password_users;     /* password users (PROTOCOL.md 16): a file written by
                                       sl_users_add, read at start and by sl_*_reload_users;
                                       enables SL_MODE_PASSWORD (with server_key) */
} sl_server_config;

/** Fills `cfg` with the defaults above (psk NULL, which sl_server_new requires to be set). */
SL_API void sl_server_config_init(sl_server_config *cfg);

/** The worker threads a server starts when sl_server_config.threads is 0: one per CPU this
 *  process may run on, less one, and at least 1 (so 1 on a 2-core machine). The core left over
 *  serves clients on the same machine and the kernel's network work: with the clients on a
 *  small machine, a worker per core has them descheduled with requests waiting (bench/README.md,
 *  "Tail latency and the worker count"). */
SL_API unsigned sl_server_default_threads(void);

typedef struct sl_server sl_server;

/** Creates the server and binds its listening socket (so the port is known and in use when it
 *  returns). Returns SL_OK, SL_EINVAL, SL_ENOMEM, SL_ERESOLVE, SL_EADDRINUSE, SL_ESOCKET,
 *  SL_ETLS_CERT. */
SL_API int sl_server_new(sl_server **out, const sl_server_config *cfg);

/** The port actually bound. */
SL_API uint16_t sl_server_port(const sl_server *server);

/** Starts the worker threads and returns. Ignores SIGPIPE process-wide if it was
 *  at its default (a write to a closed socket must never kill a server). Returns SL_OK,
 *  SL_EINVAL, SL_ESTATE (already started), SL_ENOMEM, SL_ESOCKET. */
SL_API int sl_server_start(sl_server *server);

/** Asks the server to stop: every session gets a CLOSE, the threads end. Returns at once;
 *  async-signal-safe and callable from any thread. */
SL_API int sl_server_stop(sl_server *server);

/** Waits until the server has stopped and every thread has been joined; then closes the
 *  listening socket, so the port is free again. */
SL_API int sl_server_wait(sl_server *server);

/** Number of connections open now (authenticated or not). */
SL_API size_t sl_server_sessions(const sl_server *server);

/** sl_policy_reload_users for the server's policy; async-signal-unsafe (call it from a thread,
 *  e.g. after sigwait). */
SL_API int sl_server_reload_users(sl_server *server);

/** Stops (if running), joins and frees. Accepts NULL. */
SL_API void sl_server_free(sl_server *server);

/* ---- the session layer: a server's policy, sans I/O ---------------------------------------
 * Everything a server decides about its connections lives here, once, for every server (the
 * native epoll server and seclink.aio): admission, limits, deadlines, the memory budget, the
 * built-in replies and every log line. An sl_policy (one per server) holds the configuration and
 * the server-wide counters and is thread-safe; an sl_session (one per accepted connection, used
 * by one thread at a time) wraps one sl_conn. The I/O driver around them only moves bytes and
 * time:
 *   - feeds what it reads with sl_session_feed(), while sl_session_wants_read() says so;
 *   - answers each DATA message that sl_session_feed() hands out (only when the config has a
 *     handler; otherwise the session answers ACK or echo itself) with sl_session_reply() or
 *     sl_session_reply_failed(), possibly later, before feeding more;
 *   - writes sl_session_pending() and sl_session_consume()s what was written;
 *   - calls sl_session_tick() once sl_session_deadline() has passed;
 *   - once sl_session_status() is SL_SESSION_CLOSING with nothing pending, shuts down its
 *     writing side (a TLS close_notify, then shutdown(SHUT_WR)) and, while
 *     sl_session_wants_read() says so, keeps reading raw bytes from the socket and feeding them:
 *     the session discards them until the client's EOF, a byte bound or a deadline (a lingering
 *     close: closing with unread input would reset the connection, and the reset can destroy
 *     the CLOSE the client has not read yet);
 *   - closes the socket when sl_session_status() is SL_SESSION_CLOSED (or, a driver that does
 *     not linger, SL_SESSION_CLOSING with nothing pending); then sl_session_close() writes the
 *     "disconnected" line and gives the session's slots back.
 * Times are milliseconds of a monotonic clock, as the driver reads it. */

typedef struct sl_policy sl_policy;
typedef struct sl_session sl_session;

typedef enum sl_session_state {
    SL_SESSION_OPEN = 0,    /* read (while wants_read) and write */
    SL_SESSION_CLOSING = 1, /* write what is pending, shut down writing, then read and feed
                               (discarded) while wants_read; close when CLOSED */
    SL_SESSION_CLOSED = 2   /* close the socket now */
} sl_session_state;

/** Creates the policy for a server configured by `cfg` (host, port, threads, tls_cert/key and
 *  the handler function itself are the driver's; everything else is used here, psk copied).
 *  Returns SL_OK, SL_EINVAL, SL_ENOMEM. */
SL_API int sl_policy_new(sl_policy **out, const sl_server_config *cfg);
SL_API void sl_policy_free(sl_policy *policy);

/** Authenticated sessions now (those that proved they hold the key). */
SL_API size_t sl_policy_sessions(const sl_policy *policy);
/** Every session not yet closed, in whatever phase (waiting, handshake, authenticated). */
SL_API size_t sl_policy_connections(const sl_policy *policy);
/** Sessions now holding a handshake slot (not yet authenticated). */
SL_API size_t sl_policy_handshakes(const sl_policy *policy);
/** Bytes charged to the memory budget now. */
SL_API size_t sl_policy_memory(const sl_policy *policy);

/** The acceptor ran out of file descriptors and closed a connection at once: logs it. */
SL_API void sl_policy_out_of_fds(sl_policy *policy);

/** Creates the session of a connection just accepted from `peer` ("host:port" or
 *  "[v6]:port", the source address is the part before the port) and logs "connected". It may
 *  have to wait for admission (wants_read 0, a deadline to retry at). Returns SL_OK, SL_EINVAL,
 *  SL_ENOMEM, SL_ECRYPTO. */
SL_API int sl_session_new(sl_session **out, sl_policy *policy, const char *peer, int64_t now_ms);

/** Calls sl_session_close() if it was not called, then frees. Accepts NULL. */
SL_API void sl_session_free(sl_session *session);

/** Feeds up to `len` received bytes; `*consumed` says how many were used. If `*msg` comes
 *  back non-NULL, a DATA message (`*msg_len` bytes, valid until the next call) waits for
 *  sl_session_reply(); feed the rest after that. A protocol error is not returned: the session
 *  logs it and starts closing. Returns SL_OK, SL_EINVAL, SL_ESTATE (a reply is outstanding). */
SL_API int sl_session_feed(sl_session *session, const uint8_t *data, size_t len, int64_t now_ms,
                           size_t *consumed, const uint8_t **msg, size_t *msg_len);

/** The peer closed its end of the stream (or reset it). */
SL_API void sl_session_feed_eof(sl_session *session, int64_t now_ms);

/** Answers the message sl_session_feed() handed out (content as one DATA message). A reply the
 *  session cannot send (too large, over the memory budget) closes the session with a [WARN].
 *  Returns SL_OK, SL_EINVAL, SL_ESTATE (no message is waiting). */
SL_API int sl_session_reply(sl_session *session, const uint8_t *data, size_t len, int64_t now_ms);

/** Stream mode (cfg.stream): queues `len` bytes as one DATA message to the peer, charged to the
 *  memory budget and logged as a reply is. Send while sl_session_can_send() says so (that is the
 *  backpressure). Returns SL_OK, SL_EINVAL, SL_ESTATE (not stream mode, not open, or after EOF). */
SL_API int sl_session_send(sl_session *session, const uint8_t *data, size_t len, int64_t now_ms);
/** Queues an EOF (PROTOCOL.md 9): this side sends no more DATA. A request/reply session sends
 *  its EOF by itself in answer to the client's. Returns SL_OK, SL_EINVAL, SL_ESTATE. */
SL_API int sl_session_send_eof(sl_session *session, int64_t now_ms);
/** Stream mode: the driver's own end failed (a tunnel's target refused or reset, standard output
 *  closed): the client gets CLOSE `why` and the log a [WARN] with it. `why` is the driver's text
 *  (no message content). Returns SL_OK, SL_EINVAL. */
SL_API int sl_session_fail(sl_session *session, const char *why, int64_t now_ms);
/** 1 while the session is open, has not sent EOF and its output is not backed up. */
SL_API int sl_session_can_send(const sl_session *session);
/** 1 once the client's EOF has arrived. */
SL_API int sl_session_peer_eof(const sl_session *session);

/** The application could not answer: the client gets CLOSE "server error", the log a [WARN]
 *  with `why` (shown as message text is). Returns SL_OK, SL_EINVAL, SL_ESTATE. */
SL_API int sl_session_reply_failed(sl_session *session, const char *why, int64_t now_ms);

/** Bytes to write (the engine's output; before a TLS server's handshake, raw bytes such as the
 *  alert for a plain client), and how many of them were written. */
SL_API int sl_session_pending(const sl_session *session, const uint8_t **data, size_t *len);
SL_API int sl_session_consume(sl_session *session, size_t n, int64_t now_ms);

SL_API int sl_session_status(const sl_session *session);
/** 1 if the driver should read from the connection now; 0 while the session waits for
 *  admission or a reply, while its output is backed up, or while it is closing and still has
 *  output to write (1 again once that is written: the lingering close). */
SL_API int sl_session_wants_read(const sl_session *session);
/** When sl_session_tick() is due (monotonic ms). */
SL_API int64_t sl_session_deadline(const sl_session *session);
/** Handles what is due: admission retries, handshake, frame and idle timeouts, the end of a
 *  closing session's grace period, giving back the buffers of a quiet session. */
SL_API void sl_session_tick(sl_session *session, int64_t now_ms);

/** A read or write failed with `err` (an sl_err, e.g. from errno): logs it and closes. */
SL_API void sl_session_io_error(sl_session *session, int err, int writing, int64_t now_ms);

/** TLS servers, before the TLS handshake: the connection's first bytes. Returns 1 if they are
 *  not TLS (the session then closes, with a TLS alert pending as raw bytes), else 0. */
SL_API int sl_session_tls_check(sl_session *session, const uint8_t *data, size_t len, int64_t now_ms);
/** The TLS handshake failed; `detail` says how (may be NULL). */
SL_API void sl_session_tls_failed(sl_session *session, const char *detail, int64_t now_ms);

/** The server is stopping: authenticated sessions get CLOSE "server shutting down", others are
 *  closed at once. */
SL_API void sl_session_shutdown(sl_session *session, int64_t now_ms);

/** The driver has closed the socket: logs "disconnected: <reason>" and returns the session's
 *  slots and memory to the policy. Idempotent. */
SL_API void sl_session_close(sl_session *session);

/** "host:port" of the peer, as logged; "NAME@host:port" once a key user (mode 3) is
 *  authenticated, so a handler sees who it serves. */
SL_API const char *sl_session_peer(const sl_session *session);

/** Chat servers: another session (possibly on another thread) queued lines for this one. The
 *  session calls `wake(ud)` from that thread, at most once until sl_session_pump() runs; the
 *  driver must then, on this session's own thread, call sl_session_pump() and write what is
 *  pending. `wake` must not call into the session layer. Set it before feeding.
 *  Servers with password users (PROTOCOL.md 16) need it too: the password check runs on the
 *  policy's own threads, which call `wake(ud)` when the verdict is in (see sl_session_busy). */
typedef void (*sl_wake_fn)(void *ud);
SL_API void sl_session_set_wake(sl_session *session, sl_wake_fn wake, void *ud);
/** Moves lines queued for this session into its pending output, as far as its output
 *  backpressure allows (the rest waits; sl_session_consume() pumps again). A member whose queue
 *  overflowed is closed here (CLOSE "CHAT_SLOW: ..."). */
SL_API void sl_session_pump(sl_session *session, int64_t now_ms);
/** 1 while a password check (scrypt, about 0.1 s) runs for this session on the policy's checker
 *  threads (two, with a bounded queue: when it is full the client gets CLOSE "server busy: try
 *  again later"). Meanwhile sl_session_feed() takes nothing (SL_ESTATE) and wants_read is 0: the
 *  driver keeps the bytes it read but could not feed, and after the wake calls
 *  sl_session_pump() (which takes the verdict) and feeds them. */
SL_API int sl_session_busy(const sl_session *session);

/** 1 if this build can link chat rooms across servers (sl_server_config.chat_cluster). */
SL_API int sl_chat_cluster_available(void);

/** 1 if `data` is text a chat line may hold (PROTOCOL.md "Chat rooms"): strict UTF-8 without
 *  control characters (C0, DEL, C1), line or paragraph separators, or bidirectional controls;
 *  any length. Clients use it to decide whether a line from a server is safe to print as is. */
SL_API int sl_chat_text_ok(const uint8_t *data, size_t len);
/** The name of the session's key user (mode 3, PROTOCOL.md 15), or "" (no user / not yet). */
SL_API const char *sl_session_user(const sl_session *session);

/** Reads the config's authorized_keys file again (e.g. on SIGHUP): sessions whose handshake ends
 *  after this use the new list; a user removed is refused from then on. A file that does not
 *  parse leaves the previous list in force. Logs the outcome. Returns SL_OK, SL_EINVAL (no
 *  file configured), SL_EKEY_NOT_FOUND, SL_EKEY_FORMAT (a bad line), SL_EIO. */
SL_API int sl_policy_reload_users(sl_policy *policy);

/* ---- native I/O: the blocking client ------------------------------------------------------ */
/* No client call raises SIGPIPE, with or without TLS, whatever the process's disposition: a
 * server that goes away shows as SL_EPEER_CLOSED. */

typedef struct sl_client_config {
    const char *host;           /* name or address of the server */
    uint16_t port;
    const uint8_t *psk;         /* SL_KEY_BYTES bytes, required; copied */
    unsigned timeout_ms;        /* connect + handshake limit; default SL_DEFAULT_TIMEOUT_MS */
    size_t max_message;         /* default SL_DEFAULT_MAX_MESSAGE */
    sl_log_fn log;              /* receives trace entries when trace is set; may be NULL */
    void *log_ud;
    int trace;                  /* log every frame (SL_LOG_TRACE) */
    int tls;                    /* run seclink/1 inside TLS 1.3; the certificate is always verified */
    const char *tls_ca;         /* PEM CA file; the host name is checked against it */
    const char *tls_pin;        /* and/or: hex SHA-256 of the server certificate (DER), ':' allowed;
                                   with tls_ca both must hold */
    const char *tls_trust_dir;  /* or (neither set): trust <dir>/tls/cert.pem, the certificate a
                                   server on this machine generated; NULL: sl_config_dir() */
    uint64_t rekey_bytes;       /* automatic KEY_UPDATE threshold (PROTOCOL.md 13); 0: default.
                                   Small values are for tests */
    /* Server identity (PROTOCOL.md 14). */
    int mode;                   /* sl_mode; 0: SL_MODE_PSK */
    const uint8_t *server_key;  /* mode 2: the server's public key to expect (see sl_conn_set_server_key) */
    uint8_t *server_key_seen;   /* if not NULL, 32 bytes: receives the key a mode-2 server sent, also
                                   when connecting fails with SL_ESERVER_KEY_UNKNOWN / CHANGED */
    unsigned *server_modes_seen; /* if not NULL: receives the modes a server refusing ours accepts */
    const uint8_t *identity;    /* SL_MODE_USER_KEY: the client's 32-byte private key (copied) */
    const char *user;           /* SL_MODE_PASSWORD: see sl_conn_set_login */
    const uint8_t *password;
    size_t password_len;
} sl_client_config;

SL_API void sl_client_config_init(sl_client_config *cfg);

typedef struct sl_client sl_client;

/** Connects, (TLS,) handshakes. Returns SL_OK, SL_EINVAL, SL_ENOMEM, SL_ERESOLVE,
 *  SL_ECONNREFUSED, SL_EUNREACHABLE, SL_ETIMEDOUT, SL_ESOCKET, SL_EPEER_CLOSED, the handshake
 *  errors (SL_EHANDSHAKE_AUTH, SL_EBAD_MAGIC, ...), and the TLS errors. */
SL_API int sl_client_connect(sl_client **out, const sl_client_config *cfg);

/** Sends one message and waits until it is written, at most the config's timeout_ms (a server
 *  that stops reading gives SL_ETIMEDOUT). If the write fails because the server has closed
 *  and the server's CLOSE has already arrived, that CLOSE is the answer: the send returns SL_OK
 *  and sl_client_recv() returns the messages read, the CLOSE last (sl_client_flush and
 *  sl_client_connect do the same). Returns SL_OK, the sl_conn_send errors,
 *  SL_ETIMEDOUT, SL_EPEER_CLOSED, SL_ESOCKET, SL_ETLS. */
SL_API int sl_client_send(sl_client *client, int msg_type, const uint8_t *data, size_t len);

/** Full duplex (pipe and tunnel clients): queues one message without writing it; write it with
 *  sl_client_flush(), which writes what it can within `timeout_ms` (0: what fits now, then
 *  SL_ETIMEDOUT if some is left). Wait for the socket (sl_client_fd(): POLLIN, and POLLOUT while
 *  sl_client_pending() is not 0) and take what arrived with sl_client_recv(client, 0, ...) until
 *  it says SL_ETIMEDOUT (that also drains what TLS has buffered). */
SL_API int sl_client_queue(sl_client *client, int msg_type, const uint8_t *data, size_t len);
SL_API int sl_client_flush(sl_client *client, int timeout_ms);
SL_API size_t sl_client_pending(const sl_client *client);
/** The client's socket, to wait for with poll() beside other input (an interactive program, a
 *  pipe). Readable means sl_client_recv() has something to read; with TLS, call sl_client_recv()
 *  with timeout 0 until it says SL_ETIMEDOUT, as records may be buffered. -1 for NULL. */
SL_API int sl_client_fd(const sl_client *client);

/** Waits up to `timeout_ms` (-1: forever) for the next DATA, PONG, EOF or CLOSE message (PINGs are
 *  answered and skipped). `*data` stays valid until the next call on the client. Returns SL_OK,
 *  SL_ETIMEDOUT, SL_EPEER_CLOSED, SL_ECLOSED (after CLOSE), a protocol error, SL_ESOCKET, SL_ETLS. */
SL_API int sl_client_recv(sl_client *client, int timeout_ms, int *msg_type, const uint8_t **data, size_t *len);

/** Rekeying (docs/PROTOCOL.md 13): sends a KEY_UPDATE and waits until it is written (as
 *  sl_client_send); later messages go under the next key. Returns the sl_client_send errors. */
SL_API int sl_client_rekey(sl_client *client);

/** Sends CLOSE with `reason` (may be NULL), flushes and shuts the connection down. */
SL_API int sl_client_close(sl_client *client, const char *reason);

/* File transfer (docs/PROTOCOL.md 10). */
typedef void (*sl_progress_fn)(void *ud, uint64_t done, uint64_t total);
typedef struct sl_file_result {
    uint64_t size;          /* bytes of the whole file */
    uint64_t resumed_from;  /* bytes already there from an earlier attempt (verified, not sent again) */
    uint8_t sha256[32];     /* SHA-256 of the whole file, the same on both sides */
    int remote_code;        /* with SL_EFILE_REFUSED: the server's FILE_ERROR code */
    char message[256];      /* what went wrong, in words (the server's reason for SL_EFILE_REFUSED) */
} sl_file_result;

/** Uploads the file at `path` as `name` (NULL: the path's last component), resuming a transfer
 *  an earlier attempt left unfinished. `progress` (may be NULL) is called after every chunk.
 *  Returns SL_OK, SL_EINVAL, SL_EIO (the local file), SL_EFILE_REFUSED (the server said no:
 *  result->remote_code, message), SL_EFILE_HASH, SL_EBAD_FILE_MSG, or a session error. */
SL_API int sl_client_send_file(sl_client *client, const char *path, const char *name, sl_progress_fn progress,
                               void *ud, sl_file_result *result);
/** Downloads `name` to `path` (NULL: `name` in the current directory) through a temporary file
 *  next to it (resumed if an earlier attempt left one); replaces an existing file only if
 *  `overwrite`. Returns as sl_client_send_file, and SL_EFILE_EXISTS. */
SL_API int sl_client_get_file(sl_client *client, const char *name, const char *path, int overwrite,
                              sl_progress_fn progress, void *ud, sl_file_result *result);
/** 1 if `name` is a plain file name as PROTOCOL.md 10 defines it (what a server accepts). */
SL_API int sl_file_name_valid(const char *name);
/** The name of a FILE_ERROR code ("EXISTS", "BAD_NAME", ...; PROTOCOL.md 10). */
SL_API const char *sl_file_code_name(int code);

/** "host:port" of the server as connected. */
SL_API const char *sl_client_peer(const sl_client *client);

/** Frees (closing the socket without a CLOSE if sl_client_close was not called). Accepts NULL. */
SL_API void sl_client_free(sl_client *client);

/* ---- TLS helpers ---------------------------------------------------------------------------- */

/** Creates a self-signed certificate (EC P-256, SAN localhost and 127.0.0.1 and ::1, valid 825
 *  days) and its key as PEM files, key mode 0600, unless both exist already. Returns SL_OK,
 *  SL_EINVAL, SL_EIO, SL_ECRYPTO. */
SL_API int sl_tls_ensure_self_signed(const char *cert_path, const char *key_path, int *created);

/** Writes the SHA-256 fingerprint of the first certificate in `cert_path` as 64 hex digits
 *  (cap >= 65). Returns SL_OK, SL_EINVAL, SL_ETLS_CERT. */
SL_API int sl_tls_fingerprint(const char *cert_path, char *buf, size_t cap);

/** Parses a certificate pin, as sl_tls_fingerprint() writes it and sl_client_config.tls_pin
 *  takes it: 64 hex digits, either case, ':' anywhere ignored. The one parser of pins, for every
 *  layer and language. `out` may be NULL (only check). Returns SL_OK, SL_EINVAL (not a pin). */
SL_API int sl_tls_pin_parse(const char *pin, uint8_t out[32]);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* SECLINK_H */
