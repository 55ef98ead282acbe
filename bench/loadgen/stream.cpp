// loadgen: TCP or TLS byte streams (see stream.hpp).
#include "stream.hpp"

#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

#include "common.hpp"

namespace loadgen {

namespace {

[[noreturn]] void tls_failed(const Config &cfg, Conn &c, const char *what, int r, int e) {
    const long vr = SSL_get_verify_result(c.ssl);
    std::string detail;
    if (vr != X509_V_OK) {
        detail = std::string("the server certificate did not verify: ") + X509_verify_cert_error_string(vr) +
                 " (CA file " + cfg.opt.tls_ca + ", host " + cfg.opt.host + ")";
    } else if (e == SSL_ERROR_SYSCALL) {
        detail = ERR_peek_error() ? openssl_errors() : r == 0 ? "unexpected end of stream" : std::strerror(errno);
    } else {
        detail = openssl_errors();
    }
    fatal("connection #%u: TLS %s failed (%s): %s", c.id, what, st_name(c.st), detail.c_str());
}

}  // namespace

bool tls_attach(const Config &cfg, Conn &c) {
    if (cfg.tls == nullptr) return false;
    c.ssl = SSL_new(cfg.tls);
    if (c.ssl == nullptr || SSL_set_fd(c.ssl, c.fd) != 1) fatal("SSL_new: %s", openssl_errors().c_str());
    // The certificate must name the host we were given (an address, or a DNS name).
    const std::string &host = cfg.opt.host;
    const int ok = cfg.host_is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c.ssl), host.c_str())
                                  : (SSL_set1_host(c.ssl, host.c_str()) == 1 &&
                                     SSL_set_tlsext_host_name(c.ssl, host.c_str()) == 1);
    if (ok != 1) fatal("cannot set the TLS host name check: %s", openssl_errors().c_str());
    SSL_set_connect_state(c.ssl);
    c.st = St::TlsHandshake;
    return true;
}

bool tls_handshake(const Config &cfg, Conn &c) {
    ERR_clear_error();
    const int r = SSL_connect(c.ssl);
    if (r == 1) {
        c.tls_wants_write = false;
        return true;
    }
    const int e = SSL_get_error(c.ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        c.tls_wants_write = e == SSL_ERROR_WANT_WRITE;
        return false;
    }
    tls_failed(cfg, c, "handshake", r, e);
}

ssize_t stream_write(const Config &cfg, Conn &c, const uint8_t *p, size_t n, bool fail_on_error) {
    if (c.ssl) {
        ERR_clear_error();
        const int r = SSL_write(c.ssl, p, static_cast<int>(std::min<size_t>(n, 1u << 30)));
        if (r > 0) {
            c.tls_wants_write = false;
            return r;
        }
        const int e = SSL_get_error(c.ssl, r);
        if (e == SSL_ERROR_WANT_WRITE) c.tls_wants_write = true;
        else if (e != SSL_ERROR_WANT_READ && fail_on_error) tls_failed(cfg, c, "write", r, e);
        return 0;
    }
    const ssize_t r = ::send(c.fd, p, n, MSG_NOSIGNAL);
    if (r >= 0) return r;
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && fail_on_error)
        fatal("connection #%u: send: %s (%s)", c.id, std::strerror(errno), st_name(c.st));
    return errno == EINTR ? -1 : 0;
}

ssize_t stream_read(const Config &cfg, Conn &c, uint8_t *buf, size_t n) {
    if (c.ssl) {
        ERR_clear_error();
        const int r = SSL_read(c.ssl, buf, static_cast<int>(n));
        if (r > 0) return r;
        const int e = SSL_get_error(c.ssl, r);
        if (e == SSL_ERROR_WANT_READ) return 0;
        if (e == SSL_ERROR_WANT_WRITE) {
            c.tls_wants_write = true;
            return 0;
        }
        if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0 && errno == 0))
            return kStreamEof;
        tls_failed(cfg, c, "read", r, e);
    }
    const ssize_t r = ::recv(c.fd, buf, n, 0);
    if (r > 0) return r;
    if (r == 0) return kStreamEof;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return 0;
    fatal("connection #%u: recv: %s (%s, %llu requests sent)", c.id, std::strerror(errno), st_name(c.st),
          static_cast<unsigned long long>(c.seq));
}

void tls_close(Conn &c) {
    if (!c.ssl) return;
    if (SSL_is_init_finished(c.ssl)) SSL_shutdown(c.ssl);  // sends close_notify; no wait
    SSL_free(c.ssl);
    c.ssl = nullptr;
    ERR_clear_error();
}

}  // namespace loadgen
