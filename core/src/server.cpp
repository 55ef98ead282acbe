// server.cpp - the native server: a fixed pool of worker threads, each running its own epoll
// loop over non-blocking sockets and driving one sans-I/O engine per connection. No thread per
// client. One acceptor spreads new connections round-robin over the workers; it runs inside
// worker 0's loop, so a connection that stays on worker 0 costs no thread hand-off.
//
// Bounds that keep one client from hurting the others: the engine rejects frames over the
// message limit before buffering them; a worker stops reading from a client whose replies are
// not being read (more than kHighWater bytes queued) until they drain; a handshake must finish
// within handshake_timeout_ms and a session may be idle for idle_timeout_ms; sessions beyond
// max_clients are told so and closed.
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "engine.hpp"
#include "net.hpp"
#include "seclink/seclink.h"
#include "secure_mem.hpp"

struct sl_buf {
    std::vector<uint8_t> data;
    size_t max;
};

extern "C" int sl_buf_append(sl_buf *buf, const uint8_t *data, size_t len) {
    if (buf == nullptr || (data == nullptr && len != 0)) return SL_EINVAL;
    if (len > buf->max - buf->data.size()) return SL_EMSG_TOO_LARGE;
    try {
        buf->data.insert(buf->data.end(), data, data + len);
    } catch (...) {
        return SL_ENOMEM;
    }
    return SL_OK;
}

namespace seclink::detail {
namespace {

constexpr size_t kReadBuf = 256 * 1024;      // one per worker, shared by its sessions
constexpr size_t kHighWater = 1024 * 1024;   // queued reply bytes before reading pauses
constexpr int kReadsPerEvent = 16;           // fairness: then let other sessions run
constexpr size_t kMaxOverLimit = 64;         // sessions being told "server full" at once
constexpr int64_t kCloseGraceMs = 2000;      // time to flush a CLOSE before dropping the socket
constexpr int64_t kTrimAfterMs = 1000;       // quiet this long: give message buffers back
char kListenTag;                             // epoll tag of the listening socket

std::string errtext(int rc) { return std::string(sl_errname(rc)) + ": " + sl_strerror(rc); }

std::string secs(unsigned ms) {
    return ms % 1000 == 0 ? std::to_string(ms / 1000) + " s" : std::to_string(ms) + " ms";
}

}  // namespace

struct Shared {
    sl_server_config cfg{};
    std::string host;
    Secret<kKeyLen> psk;  // dump-proof memory (secure_mem.hpp), wiped when the server is freed
    SslCtxPtr tls;
    std::atomic<bool> stopping{false};
    std::atomic<size_t> sessions{0};
    int listen_fd = -1;
    int spare_fd = -1;  // kept open so that EMFILE can be answered by closing the connection
    size_t next_worker = 0;
    std::vector<class Worker *> workers;
    std::atomic<size_t> over_limit{0};
    std::mutex log_mu;

    bool logs(int level) const noexcept { return cfg.log != nullptr && level <= cfg.log_level; }
    void log(int level, const std::string &line) {
        if (!logs(level)) return;
        std::lock_guard<std::mutex> lock(log_mu);
        cfg.log(cfg.log_ud, level, line.c_str());
    }
    ~Shared() {
        if (listen_fd >= 0) close(listen_fd);
        if (spare_fd >= 0) close(spare_fd);
    }
};

struct Session {
    Stream io;
    std::unique_ptr<Connection> conn;
    std::string peer;
    Shared *shared = nullptr;
    uint64_t recv_seq = 0, send_seq = 0;
    int64_t deadline = 0;
    int64_t last_active = 0;   // for trimming buffers of quiet sessions
    bool trimmed = true;
    bool counted = false;      // holds one of max_clients
    bool over_limit = false;   // to be told "server full" after the handshake
    bool established = false;
    bool closing = false;      // CLOSE queued or received: flush, then close
    bool paused = false;       // reading stopped until queued replies drain
    bool first_read = true;
    bool dead = false;         // closed; freed after the current batch of events
    uint32_t events = 0;
    std::string reason;        // why it is closing
    int reason_level = SL_LOG_INFO;
};

namespace {

void trace_frame(void *ud, const sl_frame_info *f) {
    auto *s = static_cast<Session *>(ud);
    std::string buf(8192, '\0');
    size_t n = sl_format_frame(f, s->peer.c_str(), buf.data(), buf.size());
    buf.resize(n);
    s->shared->log(SL_LOG_TRACE, buf);
}

std::string shown(const uint8_t *data, size_t len) {
    char buf[256];
    sl_format_message(data, len, buf, sizeof buf);
    return buf;
}

}  // namespace

class Worker {
public:
    explicit Worker(Shared &sh) : sh_(sh) {}
    ~Worker() {
        if (th_.joinable()) th_.join();
        if (epfd_ >= 0) close(epfd_);
        if (evfd_ >= 0) close(evfd_);
        for (int fd : incoming_fds()) close(fd);
    }

    int init(bool acceptor) {
        epfd_ = epoll_create1(EPOLL_CLOEXEC);
        evfd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (epfd_ < 0 || evfd_ < 0) return SL_ESOCKET;
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.ptr = nullptr;  // the wake-up eventfd
        if (epoll_ctl(epfd_, EPOLL_CTL_ADD, evfd_, &ev) != 0) return SL_ESOCKET;
        if (acceptor) {
            ev.data.ptr = &kListenTag;
            if (epoll_ctl(epfd_, EPOLL_CTL_ADD, sh_.listen_fd, &ev) != 0) return SL_ESOCKET;
        }
        rbuf_.reset(new (std::nothrow) uint8_t[kReadBuf]);
        return rbuf_ ? SL_OK : SL_ENOMEM;
    }
    void start() { th_ = std::thread([this] { run(); }); }
    void join() {
        if (th_.joinable()) th_.join();
    }
    void wake() noexcept {
        uint64_t one = 1;
        ssize_t r = write(evfd_, &one, sizeof one);
        (void)r;  // a full counter already means "wake up"
    }
    void post(int fd, bool over_limit) {
        {
            std::lock_guard<std::mutex> lock(mu_);
            incoming_.push_back({fd, over_limit});
        }
        wake();
    }

private:
    struct Incoming {
        int fd;
        bool over_limit;
    };

    std::vector<int> incoming_fds() {
        std::lock_guard<std::mutex> lock(mu_);
        std::vector<int> fds;
        for (const Incoming &i : incoming_) fds.push_back(i.fd);
        incoming_.clear();
        return fds;
    }

    int sweep_interval() const {
        unsigned t = sh_.cfg.handshake_timeout_ms < sh_.cfg.idle_timeout_ms ? sh_.cfg.handshake_timeout_ms
                                                                            : sh_.cfg.idle_timeout_ms;
        t /= 4;
        return static_cast<int>(t < 20 ? 20 : t > 1000 ? 1000 : t);
    }

    void run() {
        epoll_event evs[256];
        const int interval = sweep_interval();
        int64_t next_sweep = now_ms() + interval;
        while (!sh_.stopping.load()) {
            int n = epoll_wait(epfd_, evs, 256, interval);
            for (int i = 0; i < n; ++i) {
                if (evs[i].data.ptr == nullptr) {
                    uint64_t v;
                    while (read(evfd_, &v, sizeof v) > 0) {
                    }
                    take_incoming();
                    continue;
                }
                if (evs[i].data.ptr == &kListenTag) {
                    accept_burst();
                    continue;
                }
                on_event(*static_cast<Session *>(evs[i].data.ptr), evs[i].events);
            }
            reap();
            int64_t now = now_ms();
            if (now >= next_sweep) {
                sweep(now);
                reap();
                next_sweep = now + interval;
            }
        }
        shutdown_all();
    }

    // The acceptor: takes what the listening socket has queued and spreads it round-robin.
    void accept_burst() {
        for (int burst = 0; burst < 64; ++burst) {
            int fd = accept4(sh_.listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd < 0) {
                if (errno == EMFILE || errno == ENFILE) refuse_without_fds();
                return;  // EAGAIN and transient errors: wait for the next readiness
            }
            bool over = sh_.sessions.fetch_add(1) >= sh_.cfg.max_clients;
            if (over) {
                sh_.sessions.fetch_sub(1);
                if (sh_.over_limit.fetch_add(1) >= kMaxOverLimit) {
                    sh_.over_limit.fetch_sub(1);
                    sh_.log(SL_LOG_WARN, "[WARN] " + peer_name(fd) + " refused: server full and too many refusals pending");
                    close(fd);
                    continue;
                }
            }
            Worker *w = sh_.workers[sh_.next_worker++ % sh_.workers.size()];
            if (w == this) add_session(fd, over);
            else w->post(fd, over);
        }
    }

    // Out of file descriptors: free the spare, accept and close at once, so the pending
    // connection leaves the queue instead of waking epoll forever.
    void refuse_without_fds() {
        if (sh_.spare_fd >= 0) close(sh_.spare_fd);
        int fd = accept(sh_.listen_fd, nullptr, nullptr);
        if (fd >= 0) close(fd);
        sh_.spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        sh_.log(SL_LOG_WARN, "[WARN] out of file descriptors: refused a connection (raise 'ulimit -n' or lower --max-clients)");
    }

    void take_incoming() {
        std::vector<Incoming> batch;
        {
            std::lock_guard<std::mutex> lock(mu_);
            batch.swap(incoming_);
        }
        for (const Incoming &in : batch) add_session(in.fd, in.over_limit);
    }

    void add_session(int fd, bool over_limit) {
        auto s = std::make_unique<Session>();
        s->io.fd = fd;
        s->shared = &sh_;
        s->over_limit = over_limit;
        s->counted = !over_limit;
        s->peer = peer_name(fd);
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        s->conn = std::make_unique<Connection>(SL_SERVER, sh_.psk);
        // Replies may be larger than what this server accepts (an ACK for a tiny limit, say):
        // what limits them is the client, whose default limit is the protocol default.
        bool ok = s->conn->set_max_message(sh_.cfg.max_message) == SL_OK &&
                  s->conn->set_max_send(std::max<size_t>(sh_.cfg.max_message, SL_DEFAULT_MAX_MESSAGE)) == SL_OK;
        if (sh_.logs(SL_LOG_TRACE)) s->conn->set_trace(trace_frame, s.get());
        ok = ok && s->conn->start() == SL_OK;
        if (ok && sh_.tls) {
            s->io.ssl.reset(SSL_new(sh_.tls.get()));
            ok = s->io.ssl && SSL_set_fd(s->io.ssl.get(), fd) == 1;
            if (ok) SSL_set_accept_state(s->io.ssl.get());
        }
        s->deadline = now_ms() + sh_.cfg.handshake_timeout_ms;
        s->events = EPOLLIN;
        epoll_event ev{};
        ev.events = s->events;
        ev.data.ptr = s.get();
        if (!ok || epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
            sh_.log(SL_LOG_ERROR, "[ERROR] " + s->peer + " could not be set up; connection dropped");
            release(*s);
            return;  // ~Session closes fd
        }
        sh_.log(SL_LOG_INFO, "[INFO] " + s->peer + " connected");
        Session *raw = s.get();
        sessions_.emplace(raw, std::move(s));
    }

    void release(Session &s) {
        if (s.counted) sh_.sessions.fetch_sub(1);
        if (s.over_limit) sh_.over_limit.fetch_sub(1);
        s.counted = s.over_limit = false;
    }

    // Marks the session for closing now (reaped after the event batch).
    void drop(Session &s, int level, const std::string &reason) {
        if (s.dead) return;
        s.dead = true;
        s.reason = reason;
        s.reason_level = level;
        dead_.push_back(&s);
    }

    void reap() {
        for (Session *sess : dead_) {
            auto it = sessions_.find(sess);
            if (it == sessions_.end()) continue;
            Session &s = *it->second;
            sh_.log(s.reason_level, std::string(s.reason_level == SL_LOG_WARN ? "[WARN] " : "[INFO] ") + s.peer +
                                        " disconnected: " + s.reason);
            epoll_ctl(epfd_, EPOLL_CTL_DEL, s.io.fd, nullptr);
            release(s);
            sessions_.erase(it);
        }
        dead_.clear();
    }

    // Queues CLOSE (if the session is established) and closes once it is flushed.
    void close_gracefully(Session &s, int level, const std::string &reason, const char *close_reason) {
        if (s.closing) return;
        s.closing = true;
        s.reason = reason;
        s.reason_level = level;
        s.deadline = now_ms() + kCloseGraceMs;
        if (close_reason != nullptr && s.established && !s.conn->closed())
            s.conn->send(SL_MSG_CLOSE, reinterpret_cast<const uint8_t *>(close_reason), std::strlen(close_reason));
    }

    void on_event(Session &s, uint32_t events) {
        if (s.dead) return;
        if (s.io.ssl && !s.io.tls_connected) {
            if (s.first_read && !tls_first_check(s)) return;
            Io r = s.io.tls_handshake();
            if (r == Io::Eof || r == Io::Error) {
                unsigned long e = ERR_get_error();
                ERR_clear_error();
                char msg[256] = "connection closed";
                if (e != 0) ERR_error_string_n(e, msg, sizeof msg);
                drop(s, SL_LOG_WARN, std::string("TLS handshake failed: ") + msg);
                return;
            }
            if (r != Io::Done) {
                want(s, r == Io::WantWrite);
                return;
            }
        }
        if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && !s.paused && !s.closing) {
            if (!do_read(s)) return;
        }
        do_write(s);
    }

    // A TLS server whose client speaks plain seclink/1: say so instead of a TLS error.
    bool tls_first_check(Session &s) {
        uint8_t b[8];
        ssize_t n = recv(s.io.fd, b, sizeof b, MSG_PEEK);
        if (n <= 0) return true;  // nothing yet, or EOF: let TLS report it
        s.first_read = false;
        if (b[0] != 0x16) {
            // Answer as TLS would (a fatal protocol_version alert record), so that the client can
            // tell its user that this server speaks TLS rather than guess from a closed socket.
            static const uint8_t alert[] = {0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x46};
            ssize_t w = send(s.io.fd, alert, sizeof alert, MSG_NOSIGNAL);
            (void)w;
            drop(s, SL_LOG_WARN, "client is not using TLS (plain seclink/1?) but this server runs with --tls");
            return false;
        }
        return true;
    }

    // Reads and processes what the socket has; false if the session is gone.
    bool do_read(Session &s) {
        for (int i = 0; i < kReadsPerEvent && !s.paused && !s.closing; ++i) {
            size_t n = 0;
            Io r = s.io.read(rbuf_.get(), kReadBuf, &n);
            if (r == Io::WantRead || r == Io::WantWrite) {
                if (r == Io::WantWrite) want(s, true);
                break;
            }
            if (r == Io::Eof) {
                on_eof(s);
                return false;
            }
            if (r == Io::Error) {
                drop(s, SL_LOG_WARN, "connection error: " + errtext(s.io.last_error));
                return false;
            }
            if (s.first_read) {
                s.first_read = false;
                if (!s.io.ssl && n >= 2 && rbuf_[0] == 0x16 && rbuf_[1] == 0x03) {
                    drop(s, SL_LOG_WARN, "client is speaking TLS but this server runs without --tls");
                    return false;
                }
            }
            if (!feed(s, rbuf_.get(), n)) return false;
            s.last_active = now_ms();
            s.trimmed = false;
            if (s.established && !s.closing) s.deadline = s.last_active + sh_.cfg.idle_timeout_ms;
            // A short plain read means the socket is drained; level-triggered epoll reports
            // anything that arrives later, so skip the recv() that would only say EAGAIN.
            // (TLS may hold decrypted records internally: keep reading until it says so.)
            if (!s.io.ssl && n < kReadBuf) break;
        }
        return true;
    }

    void on_eof(Session &s) {
        if (s.conn->closed() && s.established) {
            drop(s, s.reason.empty() ? SL_LOG_INFO : s.reason_level, s.reason.empty() ? "connection closed" : s.reason);
            return;
        }
        int rc = s.conn->feed_eof();
        if (rc == SL_ETRUNCATED) drop(s, SL_LOG_WARN, "connection lost in the middle of a frame (TRUNCATED)");
        else if (!s.established) drop(s, SL_LOG_WARN, "connection closed during the handshake");
        else drop(s, SL_LOG_INFO, "connection lost (no CLOSE from the client)");
    }

    bool feed(Session &s, const uint8_t *data, size_t len) {
        size_t off = 0;
        while (off < len) {
            size_t used = 0;
            sl_event ev{};
            int rc = s.conn->feed(data + off, len - off, &used, &ev);
            if (rc != SL_OK) {
                const std::string why = (s.established ? "protocol error: " : "handshake failed: ") + errtext(rc);
                if (s.conn->pending_size() > 0) {  // replies to the messages before the bad frame still go
                    close_gracefully(s, SL_LOG_WARN, why, nullptr);
                    return true;
                }
                drop(s, SL_LOG_WARN, why);
                return false;
            }
            off += used;
            if (ev.type == SL_EVENT_HANDSHAKE_DONE) on_handshake(s);
            else if (ev.type == SL_EVENT_MESSAGE && !on_message(s, ev)) return false;
            if (s.closing && s.conn->closed()) break;  // nothing after CLOSE counts
        }
        if (s.conn->pending_size() > kHighWater) s.paused = true;
        return true;
    }

    void on_handshake(Session &s) {
        s.established = true;
        s.deadline = now_ms() + sh_.cfg.idle_timeout_ms;
        if (s.over_limit) {
            std::string why = "server full (" + std::to_string(sh_.cfg.max_clients) + " clients)";
            close_gracefully(s, SL_LOG_WARN, "refused: " + why, "server full: try again later");
            return;
        }
        sh_.log(SL_LOG_INFO, "[INFO] " + s.peer + " handshake complete");
    }

    bool on_message(Session &s, const sl_event &ev) {
        const bool msg_log = sh_.logs(SL_LOG_MSG);
        // With redact the log holds sizes and counters, never content (cfg.redact).
        auto content = [this](const uint8_t *data, size_t len) {
            return sh_.cfg.redact ? std::string("<redacted>") : shown(data, len);
        };
        switch (ev.msg_type) {
        case SL_MSG_CLOSE: {
            std::string why = "client closed the session";
            if (ev.len != 0) why += " (" + content(ev.data, ev.len) + ")";
            s.closing = true;
            s.reason = why;
            s.reason_level = SL_LOG_INFO;
            s.deadline = now_ms() + kCloseGraceMs;
            return true;
        }
        case SL_MSG_PING:
            if (msg_log) {
                sh_.log(SL_LOG_MSG, "[RECV] " + s.peer + " PING (" + std::to_string(ev.len) + " bytes)");
                sh_.log(SL_LOG_MSG, "[SEND] " + s.peer + " PONG (" + std::to_string(ev.len) + " bytes)");
            }
            return true;
        case SL_MSG_PONG:
            if (msg_log) sh_.log(SL_LOG_MSG, "[RECV] " + s.peer + " PONG (" + std::to_string(ev.len) + " bytes)");
            return true;
        default: break;
        }
        const uint64_t seq = ++s.recv_seq;
        if (msg_log)
            sh_.log(SL_LOG_MSG, "[RECV] " + s.peer + " #" + std::to_string(seq) + " " + content(ev.data, ev.len) + " (" +
                                    std::to_string(ev.len) + " bytes)");
        int rc;
        const uint8_t *reply = ev.data;
        size_t reply_len = ev.len;
        char ack[64];
        sl_buf buf{{}, std::max<size_t>(sh_.cfg.max_message, SL_DEFAULT_MAX_MESSAGE)};
        if (sh_.cfg.handler != nullptr) {
            if (sh_.cfg.handler(sh_.cfg.handler_ud, s.peer.c_str(), ev.data, ev.len, &buf) != 0) {
                // What a failing handler appended is its reason, for the log only (never sent).
                std::string why = "the message handler failed";
                if (!buf.data.empty()) why += ": " + content(buf.data.data(), buf.data.size());
                close_gracefully(s, SL_LOG_WARN, why, "server error");
                return true;
            }
            reply = buf.data.data();
            reply_len = buf.data.size();
        } else if (!sh_.cfg.echo) {
            int n = std::snprintf(ack, sizeof ack, "ACK: received %zu bytes", ev.len);
            reply = reinterpret_cast<const uint8_t *>(ack);
            reply_len = static_cast<size_t>(n);
        }
        std::string reply_shown = msg_log ? content(reply, reply_len) : std::string();  // before send reuses buffers
        if ((rc = s.conn->send(SL_MSG_DATA, reply, reply_len)) != SL_OK) {
            drop(s, SL_LOG_WARN, "reply refused: " + errtext(rc));
            return false;
        }
        if (msg_log)
            sh_.log(SL_LOG_MSG, "[SEND] " + s.peer + " #" + std::to_string(++s.send_seq) + " " + reply_shown + " (" +
                                    std::to_string(reply_len) + " bytes)");
        else
            ++s.send_seq;
        return true;
    }

    void want(Session &s, bool write) {
        uint32_t ev = (s.paused || s.closing ? 0u : uint32_t{EPOLLIN}) | (write ? uint32_t{EPOLLOUT} : 0u);
        if (ev == 0) ev = EPOLLIN;  // keep noticing hang-ups while closing or paused
        if (ev == s.events) return;
        s.events = ev;
        epoll_event e{};
        e.events = ev;
        e.data.ptr = &s;
        epoll_ctl(epfd_, EPOLL_CTL_MOD, s.io.fd, &e);
    }

    void do_write(Session &s) {
        if (s.dead) return;
        bool blocked = false;
        while (s.conn->pending_size() > 0) {
            size_t n = 0;
            Io r = s.io.write(s.conn->pending(), s.conn->pending_size(), &n);
            if (r == Io::Done) {
                s.conn->consume(n);
                continue;
            }
            if (r == Io::WantWrite || r == Io::WantRead) {
                blocked = true;
                break;
            }
            drop(s, s.closing ? s.reason_level : SL_LOG_INFO,
                 s.closing ? s.reason : "connection lost while sending (client went away)");
            return;
        }
        if (!blocked) {
            s.paused = false;
            if (s.closing) {
                if (s.io.ssl) SSL_shutdown(s.io.ssl.get());
                shutdown(s.io.fd, SHUT_WR);
                drop(s, s.reason_level, s.reason);
                return;
            }
        }
        want(s, blocked);
    }

    void sweep(int64_t now) {
        for (auto &[raw, sp] : sessions_) {
            Session &s = *sp;
            if (!s.trimmed && s.established && !s.closing && now - s.last_active >= kTrimAfterMs &&
                s.conn->pending_size() == 0) {
                s.conn->trim();  // a quiet session keeps no message-sized buffers
                s.trimmed = true;
            }
            if (now < s.deadline || s.dead) continue;
            if (s.closing) drop(s, s.reason_level, s.reason);
            else if (!s.established)
                drop(s, SL_LOG_WARN, "handshake timed out after " + secs(sh_.cfg.handshake_timeout_ms));
            else {
                close_gracefully(s, SL_LOG_INFO, "idle for " + secs(sh_.cfg.idle_timeout_ms), "idle timeout");
                do_write(s);
            }
        }
    }

    // Every session gets a CLOSE and a short grace period to receive it.
    void shutdown_all() {
        take_incoming();
        for (auto &[raw, sp] : sessions_) {
            if (sp->dead) continue;
            if (!sp->established) drop(*sp, SL_LOG_INFO, "server shutting down");
            else {
                close_gracefully(*sp, SL_LOG_INFO, "server shutting down", "server shutting down");
                do_write(*sp);
            }
        }
        reap();
        const int64_t end = now_ms() + kCloseGraceMs;
        epoll_event evs[256];
        while (!sessions_.empty() && now_ms() < end) {
            int n = epoll_wait(epfd_, evs, 256, 50);
            for (int i = 0; i < n; ++i)
                if (evs[i].data.ptr != nullptr) do_write(*static_cast<Session *>(evs[i].data.ptr));
            reap();
        }
        for (auto &[raw, sp] : sessions_) drop(*sp, SL_LOG_INFO, "server shutting down");
        reap();
    }

    Shared &sh_;
    int epfd_ = -1, evfd_ = -1;
    std::mutex mu_;
    std::vector<Incoming> incoming_;
    std::unordered_map<Session *, std::unique_ptr<Session>> sessions_;
    std::vector<Session *> dead_;
    std::unique_ptr<uint8_t[]> rbuf_;
    std::thread th_;
};

}  // namespace seclink::detail

using seclink::detail::Shared;
using seclink::detail::Worker;

struct sl_server {
    Shared sh;
    uint16_t port = 0;
    bool started = false, joined = false;
    std::vector<std::unique_ptr<Worker>> workers;
};

extern "C" {

void sl_server_config_init(sl_server_config *cfg) {
    if (cfg == nullptr) return;
    *cfg = sl_server_config{};
    cfg->host = "0.0.0.0";
    cfg->max_clients = 10000;
    cfg->handshake_timeout_ms = 10000;
    cfg->idle_timeout_ms = 300000;
    cfg->max_message = SL_DEFAULT_MAX_MESSAGE;
    cfg->log_level = SL_LOG_MSG;
}

int sl_server_new(sl_server **out, const sl_server_config *cfg) {
    if (out == nullptr) return SL_EINVAL;
    *out = nullptr;
    if (cfg == nullptr || cfg->psk == nullptr || cfg->max_message > SL_MAX_MESSAGE_LIMIT) return SL_EINVAL;
    try {
        auto s = std::make_unique<sl_server>();
        s->sh.cfg = *cfg;
        s->sh.host = cfg->host != nullptr ? cfg->host : "0.0.0.0";
        s->sh.cfg.host = s->sh.host.c_str();
        std::memcpy(s->sh.psk, cfg->psk, SL_KEY_BYTES);
        s->sh.cfg.psk = nullptr;  // the copy above is the only one kept
        if (s->sh.cfg.threads == 0) s->sh.cfg.threads = std::max(1u, std::thread::hardware_concurrency());
        if (s->sh.cfg.max_clients == 0) s->sh.cfg.max_clients = 10000;
        if (s->sh.cfg.handshake_timeout_ms == 0) s->sh.cfg.handshake_timeout_ms = 10000;
        if (s->sh.cfg.idle_timeout_ms == 0) s->sh.cfg.idle_timeout_ms = 300000;
        if (s->sh.cfg.redact && s->sh.cfg.log_level > SL_LOG_MSG) s->sh.cfg.log_level = SL_LOG_MSG;  // traces hold plaintext
        if (cfg->tls) {
            int rc = seclink::detail::make_server_tls(cfg->tls_cert, cfg->tls_key, &s->sh.tls);
            if (rc != SL_OK) return rc;
        }
        int rc = seclink::detail::listen_on(s->sh.host.c_str(), cfg->port, &s->sh.listen_fd);
        if (rc != SL_OK) return rc;
        std::string name = seclink::detail::sock_name(s->sh.listen_fd);
        s->port = static_cast<uint16_t>(std::stoi(name.substr(name.rfind(':') + 1)));
        s->sh.spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        *out = s.release();
        return SL_OK;
    } catch (const std::bad_alloc &) {
        return SL_ENOMEM;
    } catch (...) {
        return SL_EINTERNAL;
    }
}

uint16_t sl_server_port(const sl_server *server) { return server != nullptr ? server->port : 0; }

size_t sl_server_sessions(const sl_server *server) { return server != nullptr ? server->sh.sessions.load() : 0; }

int sl_server_start(sl_server *server) {
    if (server == nullptr) return SL_EINVAL;
    if (server->started) return SL_ESTATE;
    struct sigaction sa {};
    if (sigaction(SIGPIPE, nullptr, &sa) == 0 && sa.sa_handler == SIG_DFL) signal(SIGPIPE, SIG_IGN);
    try {
        for (unsigned i = 0; i < server->sh.cfg.threads; ++i) {
            auto w = std::make_unique<Worker>(server->sh);
            int rc = w->init(i == 0);  // worker 0 is also the acceptor
            if (rc != SL_OK) return rc;
            server->sh.workers.push_back(w.get());
            server->workers.push_back(std::move(w));
        }
        for (auto &w : server->workers) w->start();
        server->started = true;
        return SL_OK;
    } catch (const std::bad_alloc &) {
        return SL_ENOMEM;
    } catch (...) {
        return SL_EINTERNAL;
    }
}

int sl_server_stop(sl_server *server) {
    if (server == nullptr) return SL_EINVAL;
    server->sh.stopping.store(true);
    for (auto &w : server->workers) w->wake();  // only touches eventfds: async-signal-safe
    return SL_OK;
}

int sl_server_wait(sl_server *server) {
    if (server == nullptr) return SL_EINVAL;
    if (!server->started || server->joined) return SL_OK;
    for (auto &w : server->workers) w->join();
    server->joined = true;
    // Stopped: free the port now (new connections are refused), not only at sl_server_free.
    if (server->sh.listen_fd >= 0) close(server->sh.listen_fd);
    server->sh.listen_fd = -1;
    return SL_OK;
}

void sl_server_free(sl_server *server) {
    if (server == nullptr) return;
    if (server->started) {
        sl_server_stop(server);
        sl_server_wait(server);
    }
    delete server;
}

}  // extern "C"
