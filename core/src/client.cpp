// client.cpp - the native blocking client: connect (with a deadline), optional TLS 1.3 with
// mandatory certificate verification, the seclink/1 handshake, then send/recv of messages.
// The socket is non-blocking underneath; every wait is a poll() with a deadline.
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <cctype>
#include <cstring>
#include <memory>
#include <new>
#include <string>

#include "engine.hpp"
#include "guard.hpp"
#include "keyfile.hpp"
#include "net.hpp"
#include "seclink/seclink.h"

using namespace seclink::detail;

struct sl_client {
    Stream io;
    SslCtxPtr tls_ctx;
    std::unique_ptr<Connection> conn;
    seclink::detail::Secret<SL_KEY_BYTES> identity;  // mode 3 (PROTOCOL.md 12): what conn points at
    std::string peer;
    sl_log_fn log = nullptr;
    void *log_ud = nullptr;
    int io_timeout_ms = SL_DEFAULT_TIMEOUT_MS;  // how long a send may wait for the server to read
    bool received_any = false;
    bool closed = false;
    uint8_t rbuf[64 * 1024];
    size_t rpos = 0, rlen = 0;  // unprocessed received bytes in rbuf
};

namespace {

// Called from inside the (noexcept) engine: allocates nothing, so it cannot throw.
void trace_frame(void *ud, const sl_frame_info *f) noexcept {
    auto *c = static_cast<sl_client *>(ud);
    char buf[8192];
    sl_format_frame(f, c->peer.c_str(), buf, sizeof buf);
    c->log(c->log_ud, SL_LOG_TRACE, buf);
}

int wait_fd(int fd, short events, int64_t deadline) {
    for (;;) {
        int64_t left = deadline < 0 ? -1 : deadline - now_ms();
        if (deadline >= 0 && left <= 0) return SL_ETIMEDOUT;
        pollfd p{fd, events, 0};
        int r = poll(&p, 1, left < 0 ? -1 : static_cast<int>(left > 1000000 ? 1000000 : left));
        if (r > 0) return SL_OK;
        if (r < 0 && errno != EINTR) return SL_ESOCKET;
    }
}

int64_t deadline_after(int timeout_ms) { return timeout_ms < 0 ? -1 : now_ms() + timeout_ms; }

int connect_tcp(const char *host, uint16_t port, int64_t deadline, int *fd_out, std::string *peer) {
    addrinfo hints{}, *res = nullptr;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    const std::string service = std::to_string(port);
    if (getaddrinfo(host, service.c_str(), &hints, &res) != 0 || res == nullptr) return SL_ERESOLVE;
    int rc = SL_ECONNREFUSED;
    for (addrinfo *ai = res; ai != nullptr; ai = ai->ai_next) {
        int fd = open_socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd < 0) {
            rc = errno_to_sl(errno);
            continue;
        }
        int err = connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 ? 0 : errno;
        if (err == EINPROGRESS) {
            rc = wait_fd(fd, POLLOUT, deadline);
            socklen_t len = sizeof err;
            err = rc == SL_OK && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 ? err : -1;
        }
        if (err == 0) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            *fd_out = fd;
            *peer = peer_name(fd);
            freeaddrinfo(res);
            return SL_OK;
        }
        if (err > 0) rc = errno_to_sl(err);
        close(fd);
        if (rc == SL_ETIMEDOUT) break;
    }
    freeaddrinfo(res);
    return rc;
}

// Writes everything the engine has queued.
int flush(sl_client *c, int64_t deadline) {
    while (c->conn->pending_size() > 0) {
        size_t n = 0;
        Io r = c->io.write(c->conn->pending(), c->conn->pending_size(), &n);
        if (r == Io::Done) {
            c->conn->consume(n);
            continue;
        }
        if (r == Io::Eof) return SL_EPEER_CLOSED;
        if (r == Io::Error) return c->io.last_error;
        int rc = wait_fd(c->io.fd, r == Io::WantRead ? POLLIN : POLLOUT, deadline);
        if (rc != SL_OK) return rc;
    }
    return SL_OK;
}

// Reads more bytes into rbuf (which must be fully processed).
int fill(sl_client *c, int64_t deadline) {
    for (;;) {
        size_t n = 0;
        Io r = c->io.read(c->rbuf, sizeof c->rbuf, &n);
        if (r == Io::Done) {
            if (!c->received_any && !c->io.ssl && n >= 2 && (c->rbuf[0] == 0x15 || c->rbuf[0] == 0x16) &&
                c->rbuf[1] == 0x03)
                return SL_ETLS_UNEXPECTED;  // a TLS record (alert or handshake) where seclink was expected
            c->received_any = true;
            c->rpos = 0;
            c->rlen = n;
            return SL_OK;
        }
        if (r == Io::Eof) return c->conn->feed_eof() == SL_ETRUNCATED ? SL_ETRUNCATED : SL_EPEER_CLOSED;
        if (r == Io::Error) return c->io.last_error;
        int rc = wait_fd(c->io.fd, r == Io::WantWrite ? POLLOUT : POLLIN, deadline);
        if (rc != SL_OK) return rc;
    }
}

// Next engine event (never SL_EVENT_NONE on success).
int next_event(sl_client *c, int64_t deadline, sl_event *ev) {
    for (;;) {
        while (c->rpos < c->rlen) {
            size_t used = 0;
            int rc = c->conn->feed(c->rbuf + c->rpos, c->rlen - c->rpos, &used, ev);
            if (rc != SL_OK) return rc;
            c->rpos += used;
            if (ev->type != SL_EVENT_NONE) return SL_OK;
        }
        int rc = fill(c, deadline);
        if (rc != SL_OK) return rc;
    }
}

int start_tls(sl_client *c, const sl_client_config *cfg, int64_t deadline) {
    std::string trust;
    const char *ca = cfg->tls_ca;
    const bool pinned = cfg->tls_pin != nullptr && cfg->tls_pin[0] != '\0';
    if (pinned && sl_tls_pin_parse(cfg->tls_pin, nullptr) != SL_OK) return SL_EINVAL;
    if (ca == nullptr && !pinned) {  // trust the certificate a local server generated
        trust = (cfg->tls_trust_dir ? std::string(cfg->tls_trust_dir) : config_dir()) + "/tls/cert.pem";
        ca = trust.c_str();
    }
    int rc = make_client_tls(ca, &c->tls_ctx);  // no CA: only the pin is checked
    if (rc != SL_OK) return rc;
    c->io.ssl.reset(SSL_new(c->tls_ctx.get()));
    if (!c->io.ssl || attach_socket(c->io.ssl.get(), c->io.fd) != SL_OK) return SL_ETLS;
    SSL_set_connect_state(c->io.ssl.get());
    if (ca != nullptr) {  // the host name (or address) must match the certificate
        X509_VERIFY_PARAM *param = SSL_get0_param(c->io.ssl.get());
        in6_addr a6;
        in_addr a4;
        bool ip = inet_pton(AF_INET, cfg->host, &a4) == 1 || inet_pton(AF_INET6, cfg->host, &a6) == 1;
        if ((ip ? X509_VERIFY_PARAM_set1_ip_asc(param, cfg->host) : X509_VERIFY_PARAM_set1_host(param, cfg->host, 0)) != 1)
            return SL_ETLS;
        if (!ip) SSL_set_tlsext_host_name(c->io.ssl.get(), cfg->host);
    }
    for (;;) {
        Io r = c->io.tls_handshake();
        if (r == Io::Done) break;
        if (r == Io::Eof || r == Io::Error) return classify_tls_failure(c->io.ssl.get(), r == Io::Eof);
        if ((rc = wait_fd(c->io.fd, r == Io::WantWrite ? POLLOUT : POLLIN, deadline)) != SL_OK) return rc;
    }
    return pinned ? check_pin(c->io.ssl.get(), cfg->tls_pin) : SL_OK;
}

int connect_client(sl_client *c, const sl_client_config *cfg) {
    const int64_t deadline = now_ms() + (cfg->timeout_ms ? cfg->timeout_ms : SL_DEFAULT_TIMEOUT_MS);
    int rc = connect_tcp(cfg->host, cfg->port, deadline, &c->io.fd, &c->peer);
    if (rc != SL_OK) return rc;
    if (cfg->tls && (rc = start_tls(c, cfg, deadline)) != SL_OK) return rc;
    c->conn = std::make_unique<Connection>(SL_CLIENT, cfg->psk);
    if ((rc = c->conn->set_max_message(cfg->max_message ? cfg->max_message : SL_DEFAULT_MAX_MESSAGE)) != SL_OK) return rc;
    if (cfg->rekey_bytes != 0 && (rc = c->conn->set_rekey_bytes(cfg->rekey_bytes)) != SL_OK) return rc;
    if (cfg->mode != 0 && (rc = c->conn->set_mode(cfg->mode)) != SL_OK) return rc;
    if (cfg->server_key != nullptr && (rc = c->conn->set_expected_server_key(cfg->server_key)) != SL_OK) return rc;
    if (cfg->user != nullptr && (rc = c->conn->set_login(cfg->user, cfg->password, cfg->password_len)) != SL_OK)
        return rc;
    if (cfg->identity != nullptr) {
        std::memcpy(c->identity.data(), cfg->identity, SL_KEY_BYTES);
        if ((rc = c->conn->set_static_key(c->identity.data())) != SL_OK) return rc;
    }
    if (cfg->trace && cfg->log != nullptr) c->conn->set_trace(trace_frame, c);
    if ((rc = c->conn->start()) != SL_OK || (rc = flush(c, deadline)) != SL_OK) return rc;
    sl_event ev{};
    rc = next_event(c, deadline, &ev);
    // What the server said about itself (PROTOCOL.md 11), for the caller to show, even on failure.
    if (cfg->server_key_seen != nullptr && c->conn->server_static() != nullptr)
        std::memcpy(cfg->server_key_seen, c->conn->server_static(), SL_KEY_BYTES);
    if (cfg->server_modes_seen != nullptr) *cfg->server_modes_seen = c->conn->server_modes();
    if (rc != SL_OK) return rc;
    if (ev.type != SL_EVENT_HANDSHAKE_DONE) return SL_EINTERNAL;
    return flush(c, deadline);  // the key-confirmation PING (PROTOCOL.md 4.1), sent at once
}

}  // namespace

extern "C" {

void sl_client_config_init(sl_client_config *cfg) {
    if (cfg == nullptr) return;
    *cfg = sl_client_config{};
    cfg->host = "127.0.0.1";
    cfg->port = 5000;
    cfg->timeout_ms = SL_DEFAULT_TIMEOUT_MS;
    cfg->max_message = SL_DEFAULT_MAX_MESSAGE;
}

int sl_client_connect(sl_client **out, const sl_client_config *cfg) {
    if (out == nullptr) return SL_EINVAL;
    *out = nullptr;
    if (cfg == nullptr || cfg->psk == nullptr || cfg->host == nullptr || cfg->max_message > SL_MAX_MESSAGE_LIMIT)
        return SL_EINVAL;
    std::unique_ptr<sl_client> c(new (std::nothrow) sl_client);
    if (!c) return SL_ENOMEM;
    c->log = cfg->log;
    c->log_ud = cfg->log_ud;
    c->io_timeout_ms = cfg->timeout_ms ? static_cast<int>(cfg->timeout_ms) : static_cast<int>(SL_DEFAULT_TIMEOUT_MS);
    const int rc = guard([&] { return connect_client(c.get(), cfg); });
    ERR_clear_error();
    if (rc == SL_OK) *out = c.release();
    return rc;
}

int sl_client_send(sl_client *c, int msg_type, const uint8_t *data, size_t len) {
    if (c == nullptr) return SL_EINVAL;
    int rc = c->conn->send(msg_type, data, len);
    // A server that stops reading must not hang us: a send may wait timeout_ms in all.
    return rc != SL_OK ? rc : flush(c, now_ms() + c->io_timeout_ms);
}

int sl_client_rekey(sl_client *c) {
    if (c == nullptr) return SL_EINVAL;
    int rc = c->conn->rekey();
    return rc != SL_OK ? rc : flush(c, now_ms() + c->io_timeout_ms);
}

int sl_client_recv(sl_client *c, int timeout_ms, int *msg_type, const uint8_t **data, size_t *len) {
    if (c == nullptr || msg_type == nullptr || data == nullptr || len == nullptr) return SL_EINVAL;
    if (c->closed) return SL_ECLOSED;
    const int64_t deadline = deadline_after(timeout_ms);
    for (;;) {
        sl_event ev{};
        int rc = next_event(c, deadline, &ev);
        if (rc != SL_OK) return rc;
        if (ev.type != SL_EVENT_MESSAGE) continue;
        if (ev.msg_type == SL_MSG_PING) {  // the engine queued the PONG
            if ((rc = flush(c, deadline)) != SL_OK) return rc;
            continue;
        }
        if (ev.msg_type == SL_MSG_CLOSE) c->closed = true;
        *msg_type = ev.msg_type;
        *data = ev.data;
        *len = ev.len;
        return SL_OK;
    }
}

int sl_client_close(sl_client *c, const char *reason) {
    if (c == nullptr) return SL_EINVAL;
    int rc = SL_OK;
    if (!c->conn->closed()) {
        const size_t n = reason != nullptr ? std::strlen(reason) : 0;
        rc = c->conn->send(SL_MSG_CLOSE, reinterpret_cast<const uint8_t *>(reason), n);
        if (rc == SL_OK) rc = flush(c, now_ms() + 2000);
    }
    if (c->io.ssl) SSL_shutdown(c->io.ssl.get());
    shutdown(c->io.fd, SHUT_WR);
    c->closed = true;
    ERR_clear_error();
    return rc;
}

const char *sl_client_peer(const sl_client *c) { return c != nullptr ? c->peer.c_str() : ""; }

void sl_client_free(sl_client *c) { delete c; }

}  // extern "C"
