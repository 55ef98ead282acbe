#include "net.hpp"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cctype>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstring>

namespace seclink::detail {

int64_t now_ms() noexcept {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

std::string addr_name(const sockaddr_storage &ss) {
    char host[INET6_ADDRSTRLEN] = "?";
    char out[INET6_ADDRSTRLEN + 16] = "?";
    if (ss.ss_family == AF_INET) {
        const auto *a = reinterpret_cast<const sockaddr_in *>(&ss);
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
        std::snprintf(out, sizeof out, "%s:%u", host, unsigned{ntohs(a->sin_port)});
    } else if (ss.ss_family == AF_INET6) {
        const auto *a = reinterpret_cast<const sockaddr_in6 *>(&ss);
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
        std::snprintf(out, sizeof out, "[%s]:%u", host, unsigned{ntohs(a->sin6_port)});
    }
    return out;
}

std::string peer_name(int fd) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (getpeername(fd, reinterpret_cast<sockaddr *>(&ss), &len) != 0) return "?";
    return addr_name(ss);
}

std::string sock_name(int fd) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (getsockname(fd, reinterpret_cast<sockaddr *>(&ss), &len) != 0) return "?";
    return addr_name(ss);
}

int set_nonblocking(int fd) noexcept {
    int fl = fcntl(fd, F_GETFL);
    return fl >= 0 && fcntl(fd, F_SETFL, fl | O_NONBLOCK) == 0 ? SL_OK : SL_ESOCKET;
}

#if defined(SOCK_NONBLOCK) && defined(SOCK_CLOEXEC) && !defined(SECLINK_POSIX_IO)
int open_socket(int family, int type, int protocol) noexcept {
    return socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol);
}

int accept_socket(int listen_fd, sockaddr_storage *peer) noexcept {
    socklen_t len = sizeof *peer;
    return accept4(listen_fd, reinterpret_cast<sockaddr *>(peer), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
}
#else
static int nonblocking_cloexec(int fd) noexcept {
    if (fd < 0) return -1;
    if (set_nonblocking(fd) != SL_OK || fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) {
        const int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
#ifdef SO_NOSIGPIPE
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
#endif
    return fd;
}

int open_socket(int family, int type, int protocol) noexcept { return nonblocking_cloexec(socket(family, type, protocol)); }

int accept_socket(int listen_fd, sockaddr_storage *peer) noexcept {
    socklen_t len = sizeof *peer;
    return nonblocking_cloexec(accept(listen_fd, reinterpret_cast<sockaddr *>(peer), &len));
}
#endif

namespace {
thread_local int t_last_os_error = 0;  // behind the last SL_ESOCKET of this thread
}  // namespace

int last_os_error() noexcept { return t_last_os_error; }

int errno_to_sl(int e) noexcept {
    switch (e) {
    case ECONNREFUSED: return SL_ECONNREFUSED;
    case ENETUNREACH:
    case EHOSTUNREACH:
    case ENETDOWN: return SL_EUNREACHABLE;
    case ETIMEDOUT: return SL_ETIMEDOUT;
    case EADDRINUSE: return SL_EADDRINUSE;
    case ECONNRESET:
    case EPIPE: return SL_EPEER_CLOSED;
    case ENOMEM:
    case ENOBUFS: return SL_ENOMEM;
    case EADDRNOTAVAIL: return SL_EADDRNOTAVAIL;
    case EACCES:
    case EPERM: return SL_EACCES;
    case EAFNOSUPPORT: return SL_EAFNOSUPPORT;
    default:
        t_last_os_error = e;
        return SL_ESOCKET;
    }
}

int listen_on(const char *host, uint16_t port, int *fd_out) noexcept {
    *fd_out = -1;
    addrinfo hints{}, *res = nullptr;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    const std::string service = std::to_string(port);
    if (getaddrinfo(host, service.c_str(), &hints, &res) != 0 || res == nullptr) return SL_ERESOLVE;
    int rc = SL_ESOCKET;
    for (addrinfo *ai = res; ai != nullptr; ai = ai->ai_next) {
        int fd = open_socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd < 0) {
            rc = errno_to_sl(errno);
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        // Accepted connections inherit TCP_NODELAY from the listener (Linux, the BSDs, macOS):
        // one setsockopt() here instead of one per connection.
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        // 4096 pending connections, as seclink.aio (the system caps it at net.core.somaxconn).
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 4096) == 0) {
            *fd_out = fd;
            rc = SL_OK;
            break;
        }
        rc = errno_to_sl(errno);
        close(fd);
    }
    freeaddrinfo(res);
    return rc;
}

// OpenSSL's socket BIO writes with write(2), which raises SIGPIPE when the peer has gone; a
// library must never do that to its host process. This BIO is the same socket BIO with
// send(MSG_NOSIGNAL): EPIPE comes back as an error instead. (Where MSG_NOSIGNAL does not exist,
// attach_socket() sets SO_NOSIGPIPE on the socket, which does the same.)
namespace {

int fd_of(BIO *b) noexcept { return static_cast<int>(reinterpret_cast<intptr_t>(BIO_get_data(b))); }

bool should_retry(int e) noexcept { return e == EINTR || e == EAGAIN || e == EWOULDBLOCK; }

int nosig_write(BIO *b, const char *buf, int len) {
    BIO_clear_retry_flags(b);
    if (len <= 0) return 0;
    ssize_t r = ::send(fd_of(b), buf, static_cast<size_t>(len), kNoSigPipe);
    if (r < 0 && should_retry(errno)) BIO_set_retry_write(b);
    return static_cast<int>(r);
}

int nosig_read(BIO *b, char *buf, int len) {
    BIO_clear_retry_flags(b);
    if (buf == nullptr || len <= 0) return 0;
    ssize_t r = ::recv(fd_of(b), buf, static_cast<size_t>(len), 0);
    if (r < 0 && should_retry(errno)) BIO_set_retry_read(b);
    else if (r == 0) BIO_set_flags(b, BIO_FLAGS_IN_EOF);  // what SSL reports as an unexpected EOF
    return static_cast<int>(r);
}

int nosig_puts(BIO *b, const char *s) { return nosig_write(b, s, static_cast<int>(std::strlen(s))); }

long nosig_ctrl(BIO *b, int cmd, long, void *ptr) {
    switch (cmd) {
    case BIO_C_GET_FD:  // SSL_get_fd()
        if (ptr != nullptr) *static_cast<int *>(ptr) = fd_of(b);
        return fd_of(b);
    case BIO_CTRL_EOF: return BIO_test_flags(b, BIO_FLAGS_IN_EOF) != 0;
    case BIO_CTRL_GET_CLOSE: return BIO_NOCLOSE;  // the Stream owns and closes the socket
    case BIO_CTRL_FLUSH:
    case BIO_CTRL_DUP: return 1;
    default: return 0;
    }
}

int nosig_create(BIO *b) {
    BIO_set_data(b, reinterpret_cast<void *>(intptr_t{-1}));
    return 1;
}

const BIO_METHOD *nosig_socket_method() noexcept {
    static BIO_METHOD *m = [] {
        BIO_METHOD *bm = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR,
                                      "seclink socket (MSG_NOSIGNAL)");
        if (bm != nullptr &&
            (BIO_meth_set_write(bm, nosig_write) != 1 || BIO_meth_set_read(bm, nosig_read) != 1 ||
             BIO_meth_set_puts(bm, nosig_puts) != 1 || BIO_meth_set_ctrl(bm, nosig_ctrl) != 1 ||
             BIO_meth_set_create(bm, nosig_create) != 1)) {
            BIO_meth_free(bm);
            bm = nullptr;
        }
        return bm;
    }();
    return m;
}

}  // namespace

int attach_socket(SSL *ssl, int fd) noexcept {
    const BIO_METHOD *m = nosig_socket_method();
    BIO *b = m != nullptr ? BIO_new(m) : nullptr;
    if (b == nullptr) return SL_ENOMEM;
#ifdef SO_NOSIGPIPE
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
#endif
    BIO_set_data(b, reinterpret_cast<void *>(intptr_t{fd}));
    BIO_set_init(b, 1);
    SSL_set_bio(ssl, b, b);  // one BIO both ways; the SSL owns it now
    return SL_OK;
}

Stream::~Stream() {
    ssl.reset();
    if (fd >= 0) close(fd);
}

// Maps an SSL_get_error() outcome; records the error for Io::Error.
static Io ssl_io(Stream &s, int ret) noexcept {
    int e = SSL_get_error(s.ssl.get(), ret);
    switch (e) {
    case SSL_ERROR_WANT_READ: return Io::WantRead;
    case SSL_ERROR_WANT_WRITE: return Io::WantWrite;
    case SSL_ERROR_ZERO_RETURN: return Io::Eof;
    case SSL_ERROR_SYSCALL:
        if (ERR_peek_error() == 0 && (errno == 0 || errno == ECONNRESET || errno == EPIPE)) {
            ERR_clear_error();
            return Io::Eof;  // the peer went away without a TLS close_notify
        }
        s.last_error = SL_ETLS;
        return Io::Error;
    default:
        // An unexpected EOF is reported as an SSL error in OpenSSL 3; treat it as EOF.
        if (ERR_GET_REASON(ERR_peek_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
            ERR_clear_error();
            return Io::Eof;
        }
        s.last_error = SL_ETLS;
        return Io::Error;
    }
}

Io Stream::read(uint8_t *buf, size_t cap, size_t *n) noexcept {
    *n = 0;
    if (ssl) {
        ERR_clear_error();
        size_t got = 0;
        int ret = SSL_read_ex(ssl.get(), buf, cap, &got);
        if (ret == 1) {
            *n = got;
            return Io::Done;
        }
        return ssl_io(*this, ret);
    }
    for (;;) {
        ssize_t r = ::recv(fd, buf, cap, 0);
        if (r > 0) {
            *n = static_cast<size_t>(r);
            return Io::Done;
        }
        if (r == 0) return Io::Eof;
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return Io::WantRead;
        if (errno == ECONNRESET) return Io::Eof;
        last_error = errno_to_sl(errno);
        return Io::Error;
    }
}

Io Stream::write(const uint8_t *buf, size_t len, size_t *n) noexcept {
    *n = 0;
    if (ssl) {
        ERR_clear_error();
        size_t put = 0;
        int ret = SSL_write_ex(ssl.get(), buf, len, &put);
        if (ret == 1) {
            *n = put;
            return Io::Done;
        }
        return ssl_io(*this, ret);
    }
    for (;;) {
        ssize_t r = ::send(fd, buf, len, kNoSigPipe);
        if (r >= 0) {
            *n = static_cast<size_t>(r);
            return Io::Done;
        }
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return Io::WantWrite;
        if (errno == EPIPE || errno == ECONNRESET) return Io::Eof;
        last_error = errno_to_sl(errno);
        return Io::Error;
    }
}

Io Stream::tls_handshake() noexcept {
    ERR_clear_error();
    int ret = SSL_do_handshake(ssl.get());
    if (ret == 1) {
        tls_connected = true;
        return Io::Done;
    }
    return ssl_io(*this, ret);
}

static int tls13_only(SSL_CTX *ctx) noexcept {
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1 ||
        SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) != 1)
        return SL_ETLS;
    // Partial writes keep the server's event loop non-blocking with large messages.
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
    return SL_OK;
}

int make_server_tls(const char *cert, const char *key, SslCtxPtr *out) noexcept {
    SslCtxPtr ctx(SSL_CTX_new(TLS_server_method()));
    if (!ctx || tls13_only(ctx.get()) != SL_OK) return SL_ETLS;
    if (cert == nullptr || key == nullptr || SSL_CTX_use_certificate_chain_file(ctx.get(), cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx.get(), key, SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(ctx.get()) != 1) {
        ERR_clear_error();
        return SL_ETLS_CERT;
    }
    SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(ctx.get(), 0);
    *out = std::move(ctx);
    return SL_OK;
}

// In pin mode the chain is not checked against a CA; check_pin() compares the certificate itself
// before a single seclink byte is sent, which is a stricter check than a CA would give.
static int accept_for_pin_check(int, X509_STORE_CTX *) { return 1; }

int make_client_tls(const char *ca, SslCtxPtr *out) noexcept {
    SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
    if (!ctx || tls13_only(ctx.get()) != SL_OK) return SL_ETLS;
    if (ca == nullptr) {
        SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, accept_for_pin_check);
    } else {
        if (SSL_CTX_load_verify_locations(ctx.get(), ca, nullptr) != 1) {
            ERR_clear_error();
            return SL_ETLS_TRUST;
        }
        SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
    }
    *out = std::move(ctx);
    return SL_OK;
}

int check_pin(SSL *ssl, const char *pin) noexcept {
    uint8_t want[32], got[32];
    if (sl_tls_pin_parse(pin, want) != SL_OK) return SL_EINVAL;
    X509 *cert = SSL_get1_peer_certificate(ssl);
    unsigned int len = 0;
    bool ok = cert != nullptr && X509_digest(cert, EVP_sha256(), got, &len) == 1 && len == 32 &&
              CRYPTO_memcmp(got, want, 32) == 0;
    X509_free(cert);
    return ok ? SL_OK : SL_ETLS_PIN;
}

int classify_tls_failure(SSL *ssl, bool saw_eof) noexcept {
    long v = SSL_get_verify_result(ssl);
    unsigned long e = ERR_peek_error();
    ERR_clear_error();
    if (v == X509_V_ERR_HOSTNAME_MISMATCH || v == X509_V_ERR_IP_ADDRESS_MISMATCH) return SL_ETLS_HOSTNAME;
    if (v != X509_V_OK) return SL_ETLS_VERIFY;
    if (saw_eof || ERR_GET_REASON(e) == SSL_R_WRONG_VERSION_NUMBER || ERR_GET_REASON(e) == SSL_R_PACKET_LENGTH_TOO_LONG)
        return SL_ETLS_EXPECTED;
    return SL_ETLS;
}

}  // namespace seclink::detail

extern "C" int sl_last_os_error(void) { return seclink::detail::last_os_error(); }
