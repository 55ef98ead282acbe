// loadgen: the per-thread event loop and connection state machine (see loop.hpp).
#include "loop.hpp"

#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common.hpp"
#include "stream.hpp"

namespace loadgen {

const char *st_name(St s) {
    switch (s) {
    case St::Free: return "closed";
    case St::Connecting: return "connecting";
    case St::TlsHandshake: return "TLS handshake";
    case St::Handshake: return "seclink handshake";
    case St::Ready: return "idle";
    case St::Waiting: return "waiting for a reply";
    case St::Closing: return "closing";
    }
    return "?";
}

Loop::Loop(const Config &cfg, Protocol &proto, Driver &driver, unsigned index, size_t nconns)
    : cfg_(cfg), proto_(proto), driver_(driver), conns_(nconns), rbuf_(256 * 1024) {
    ep_ = epoll_create1(EPOLL_CLOEXEC);
    if (ep_ < 0) fatal("epoll_create1: %s", std::strerror(errno));
    for (size_t i = 0; i < nconns; ++i) conns_[i].id = static_cast<uint32_t>(index + i * cfg.opt.threads);
}

Loop::~Loop() {
    for (Conn &c : conns_) close(c);
    if (ep_ >= 0) ::close(ep_);
}

void Loop::poll(int timeout_ms) {
    epoll_event evs[256];
    if (!again_.empty()) timeout_ms = 0;
    const int n = epoll_wait(ep_, evs, 256, timeout_ms);
    if (n < 0 && errno != EINTR) fatal("epoll_wait: %s", std::strerror(errno));
    for (int i = 0; i < n; ++i) {
        const auto idx = static_cast<uint32_t>(evs[i].data.u64);
        const auto gen = static_cast<uint32_t>(evs[i].data.u64 >> 32);
        Conn &c = conns_[idx];
        if (c.fd < 0 || c.gen != gen) continue;  // an event for a socket closed since
        if (c.st == St::Connecting) {
            int err = 0;
            socklen_t len = sizeof err;
            if (getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
            if (err != 0) connect_failed(c, err);
            if (!(evs[i].events & EPOLLOUT)) continue;
            connected(c);
        }
        pump(c);
    }
    // Connections whose TLS layer holds decrypted bytes: no epoll event will announce them.
    std::vector<uint64_t> again;
    again.swap(again_);
    for (const uint64_t k : again) {
        Conn &c = conns_[static_cast<uint32_t>(k)];
        if (c.fd >= 0 && c.gen == static_cast<uint32_t>(k >> 32)) pump(c);
    }
}

uint64_t Loop::key(const Conn &c) const {
    return (static_cast<uint64_t>(c.gen) << 32) | static_cast<uint64_t>(&c - conns_.data());
}

void Loop::open(Conn &c) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) fatal("socket(): %s (open-files limit too low?)", std::strerror(errno));
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, reinterpret_cast<const sockaddr *>(&cfg_.addr), sizeof cfg_.addr) != 0 && errno != EINPROGRESS)
        connect_failed(c, errno);
    c.fd = fd;
    ++c.gen;
    c.st = St::Connecting;
    c.seq = 0;
    c.hdr_got = 0;
    c.out_off = c.out_len = 0;
    c.tls_wants_write = false;
    c.t_open = now_ns();
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT;  // EPOLLOUT: the connect completed (or failed)
    ev.data.u64 = key(c);
    if (epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev) != 0) fatal("epoll_ctl: %s", std::strerror(errno));
    c.out_armed = true;
}

void Loop::connect_failed(const Conn &c, int err) {
    char addr[64];
    inet_ntop(AF_INET, &cfg_.addr.sin_addr, addr, sizeof addr);
    fatal("connection #%u: connect to %s:%u failed: %s%s", c.id, addr, cfg_.opt.port, std::strerror(err),
          err == ECONNREFUSED     ? " (is the server running?)"
          : err == EADDRNOTAVAIL ? " (out of local ports: too many connections or TIME_WAIT sockets)"
                                 : "");
}

void Loop::connected(Conn &c) {
    if (!tls_attach(cfg_, c)) proto_.start(c);  // with TLS: once its handshake is done (pump)
}

void Loop::close(Conn &c) {
    tls_close(c);
    proto_.release(c);
    if (c.fd >= 0) ::close(c.fd);  // also leaves the epoll set
    c.fd = -1;
    c.st = St::Free;
    ++c.gen;
}

size_t Loop::pending_size(const Conn &c) const {
    const uint8_t *p = nullptr;
    size_t n = 0;
    proto_.pending(c, &p, &n);
    return n;
}

bool Loop::flush(Conn &c, bool fail_on_error) {
    bool wrote = false;
    for (int i = 0; i < 256; ++i) {  // each pass writes something or stops
        const uint8_t *p = nullptr;
        size_t n = 0;
        proto_.pending(c, &p, &n);
        if (n == 0) break;
        const ssize_t r = stream_write(cfg_, c, p, n, fail_on_error);
        if (r < 0) continue;  // interrupted
        if (r == 0) break;
        proto_.consume(c, static_cast<size_t>(r));
        wrote = true;
    }
    return wrote;
}

// Reads once (one buffer) and hands the bytes to the protocol; returns whether anything arrived.
bool Loop::read_some(Conn &c) {
    const ssize_t r = stream_read(cfg_, c, rbuf_.data(), rbuf_.size());
    if (r == kStreamEof) on_eof(c);
    if (r == 0) return false;
    proto_.on_bytes(c, rbuf_.data(), static_cast<size_t>(r));
    return true;
}

void Loop::on_eof(Conn &c) {
    const std::string why = "the server closed the connection" + proto_.eof_detail(c);
    // The likely causes, where the state says something.
    fatal("connection #%u: %s (%s, requests sent: %llu)%s", c.id, why.c_str(), st_name(c.st),
          static_cast<unsigned long long>(c.seq), proto_.eof_hint(c));
}

// Bounded rounds; level-triggered epoll brings us back for whatever is left.
void Loop::pump(Conn &c) {
    const uint32_t gen = c.gen;
    for (int round = 0; round < 8; ++round) {
        if (c.st == St::TlsHandshake) {
            if (!tls_handshake(cfg_, c)) break;
            proto_.start(c);
        }
        if (c.gen != gen || c.st == St::Free || c.st == St::Connecting) return;
        const bool wrote = flush(c);
        if (c.st == St::Closing) {
            if (pending_size(c) == 0) {
                driver_.closing_flushed(c);
                return;
            }
            break;  // wait for EPOLLOUT
        }
        const bool got = read_some(c);
        if (c.gen != gen) return;
        if (!wrote && !got) break;
    }
    if (c.gen != gen || c.fd < 0) return;
    arm(c);
    if (stream_buffered(c)) again_.push_back(key(c));
}

// EPOLLOUT only while something waits for the socket to become writable.
void Loop::arm(Conn &c) {
    const bool want = (c.st != St::TlsHandshake && pending_size(c) > 0) || c.tls_wants_write;
    if (want == c.out_armed) return;
    epoll_event ev{};
    ev.events = EPOLLIN | (want ? EPOLLOUT : 0u);
    ev.data.u64 = key(c);
    if (epoll_ctl(ep_, EPOLL_CTL_MOD, c.fd, &ev) != 0) fatal("epoll_ctl: %s", std::strerror(errno));
    c.out_armed = want;
}

}  // namespace loadgen
