// net.hpp - sockets and TLS for the native server and client: a byte stream that is a plain
// non-blocking TCP socket or TLS 1.3 over one, and the helpers around it.
#pragma once

#include <sys/socket.h>

#include <openssl/ssl.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "seclink/seclink.h"

namespace seclink::detail {

struct SslCtxFree {
    void operator()(SSL_CTX *c) const noexcept { SSL_CTX_free(c); }
};
struct SslFree {
    void operator()(SSL *s) const noexcept { SSL_free(s); }
};
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxFree>;
using SslPtr = std::unique_ptr<SSL, SslFree>;

int64_t now_ms() noexcept;                   // monotonic clock
std::string peer_name(int fd);               // "ip:port" of the other end
std::string addr_name(const sockaddr_storage &ss);  // "ip:port", IPv6 in brackets
std::string sock_name(int fd);               // "ip:port" of this end
int set_nonblocking(int fd) noexcept;
int errno_to_sl(int e) noexcept;             // ECONNREFUSED -> SL_ECONNREFUSED, ...
int last_os_error() noexcept;                // the errno behind this thread's last SL_ESOCKET

// A non-blocking, close-on-exec socket / accepted connection, or -1 with errno set. One call on
// Linux (SOCK_NONBLOCK, accept4); socket()/accept() and fcntl() with SECLINK_POSIX_IO or where
// those do not exist (macOS).
int open_socket(int family, int type, int protocol) noexcept;
// accept_socket() stores the peer's address in *peer (no getpeername() needed).
int accept_socket(int listen_fd, sockaddr_storage *peer) noexcept;

// send() flag that turns SIGPIPE into EPIPE; where it does not exist (older macOS), the socket
// has SO_NOSIGPIPE instead (attach_socket(), open_socket(), accept_socket()).
#ifdef MSG_NOSIGNAL
constexpr int kNoSigPipe = MSG_NOSIGNAL;
#else
constexpr int kNoSigPipe = 0;
#endif

// Binds and listens; *fd_out is the listening socket. SL_OK, SL_ERESOLVE, SL_EADDRINUSE, SL_ESOCKET.
int listen_on(const char *host, uint16_t port, int *fd_out) noexcept;

// Outcome of one non-blocking read or write.
enum class Io { Done, WantRead, WantWrite, Eof, Error };

// A connected stream: plain TCP, or TLS over it once `ssl` is set.
struct Stream {
    int fd = -1;
    SslPtr ssl;
    bool tls_connected = false;
    int last_error = SL_OK;  // set when an operation returns Io::Error

    ~Stream();
    // Reads into buf; *n receives the count (Done only).
    Io read(uint8_t *buf, size_t cap, size_t *n) noexcept;
    Io write(const uint8_t *buf, size_t len, size_t *n) noexcept;
    // Drives the TLS handshake (server or client side as set up). Done when connected.
    Io tls_handshake() noexcept;
};

// Makes `fd` the SSL's transport through a socket BIO that sends with MSG_NOSIGNAL, so that no
// TLS write (SSL_write, SSL_shutdown) raises SIGPIPE. Use it instead of SSL_set_fd().
// SL_OK or SL_ENOMEM.
int attach_socket(SSL *ssl, int fd) noexcept;

// TLS 1.3-only contexts.
int make_server_tls(const char *cert, const char *key, SslCtxPtr *out) noexcept;  // SL_ETLS_CERT
// ca: verify the chain against this CA file (the caller sets the host check); NULL: the chain
// is not checked here and the caller must check_pin() before sending anything.
// SL_ETLS_TRUST if the CA file cannot be loaded.
int make_client_tls(const char *ca, SslCtxPtr *out) noexcept;
// After the TLS handshake: the leaf certificate's SHA-256 must equal `pin` (hex, ':' allowed).
int check_pin(SSL *ssl, const char *pin) noexcept;
// Explains a failed client-side TLS handshake: SL_ETLS_VERIFY, SL_ETLS_EXPECTED, or SL_ETLS.
int classify_tls_failure(SSL *ssl, bool saw_eof) noexcept;

}  // namespace seclink::detail
