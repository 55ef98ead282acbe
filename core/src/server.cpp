// server.cpp - the native server: an I/O driver of the session layer (session.hpp). A fixed pool
// of worker threads, each running its own event loop (poller.hpp: epoll on Linux, poll()
// elsewhere) over non-blocking sockets; each connection is one sl_session, which decides
// everything about it (admission, limits, deadlines, replies, log lines). This file only moves
// bytes and time: it reads, feeds, writes what the session has pending, ticks it at its deadline
// and closes the socket when the session says so. No thread per client; one acceptor spreads new
// connections round-robin over the workers and runs inside worker 0's loop, so a connection that
// stays on worker 0 costs no thread hand-off.
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
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

#include "guard.hpp"
#include "net.hpp"
#include "poller.hpp"
#include "identity.hpp"
#include "session.hpp"
#include "seclink/seclink.h"

struct sl_buf {
    std::vector<uint8_t> data;
    size_t max;
};

extern "C" int sl_buf_append(sl_buf *buf, const uint8_t *data, size_t len) {
    if (buf == nullptr || (data == nullptr && len != 0)) return SL_EINVAL;
    if (len > buf->max - buf->data.size()) return SL_EMSG_TOO_LARGE;
    return seclink::detail::guard([&] {
        buf->data.insert(buf->data.end(), data, data + len);
        return SL_OK;
    });
}

namespace seclink::detail {
namespace {

constexpr size_t kReadBuf = 256 * 1024;  // one per worker, shared by its sessions
constexpr int kReadsPerEvent = 16;       // fairness: then let other sessions run
char kListenTag;                         // poller tag of the listening socket

}  // namespace

struct Shared {
    explicit Shared(const sl_server_config &cfg) : policy(cfg) {}
    ~Shared() {
        if (listen_fd >= 0) close(listen_fd);
        if (spare_fd >= 0) close(spare_fd);
    }
    Policy policy;  // the configuration, admission and budget of every session
    std::string host;
    SslCtxPtr tls;
    std::atomic<bool> stopping{false};
    int listen_fd = -1;
    int spare_fd = -1;  // kept open so that EMFILE can be answered by closing the connection
    size_t next_worker = 0;
    std::vector<class Worker *> workers;
};

// A connection the acceptor took, on its way to the worker that will serve it.
struct Accepted {
    int fd = -1;
    sockaddr_storage addr{};  // the peer, from accept()
};

// One connection: its socket (and TLS) and its session.
struct Conn {
    Stream io;
    std::unique_ptr<Session> s;
    uint32_t events = 0;
    bool tls_checked = false;  // a TLS server has looked at the first bytes
    bool dead = false;         // closed; freed after the current batch of events
    bool shut = false;         // closing: writing shut down, lingering (raw reads discarded)
    std::vector<uint8_t> held;  // read while a password check ran (busy): fed after the verdict
    class Worker *worker = nullptr;
};

class Worker {
public:
    explicit Worker(Shared &sh) : sh_(sh), p_(sh.policy) {}
    ~Worker() {
        if (th_.joinable()) th_.join();
        for (const Accepted &a : incoming()) close(a.fd);
    }

    int init(bool acceptor) {
        int rc = poller_.init();
        if (rc != SL_OK) return rc;
        if (acceptor) {
            if (!poller_.add(sh_.listen_fd, kReadable, &kListenTag)) return SL_ESOCKET;
            acceptor_ = true;
        }
        rbuf_.reset(new (std::nothrow) uint8_t[kReadBuf]);
        return rbuf_ ? SL_OK : SL_ENOMEM;
    }
    void start() { th_ = std::thread([this] { run(); }); }
    void join() {
        if (th_.joinable()) th_.join();
    }
    void wake() noexcept { poller_.wake(); }
    void post(const Accepted &a) {
        {
            std::lock_guard<std::mutex> lock(mu_);
            incoming_.push_back(a);
        }
        wake();
    }

private:
    // A chat session on any thread queued lines for `c` (the session layer calls this once until
    // c's session is pumped, never after it closed): pump it on this worker's thread.
    static void on_wake(void *ud) {
        Conn *c = static_cast<Conn *>(ud);
        Worker *w = c->worker;
        {
            std::lock_guard<std::mutex> lock(w->mu_);
            w->ready_.push_back(c);
        }
        w->wake();
    }

    // Sessions woken by on_wake: still open ones (the pointer may be stale) are pumped.
    void take_ready() {
        std::vector<Conn *> ready;
        {
            std::lock_guard<std::mutex> lock(mu_);
            ready.swap(ready_);
        }
        const int64_t now = now_ms();
        for (Conn *c : ready) {
            if (conns_.count(c) == 0 || c->dead) continue;
            guarded(*c, [&] {
                c->s->pump(now);
                if (!c->held.empty() && !c->s->busy()) {  // what came behind the AUTH
                    const std::vector<uint8_t> held = std::move(c->held);
                    c->held.clear();
                    feed(*c, held.data(), held.size(), now);
                }
                update(*c, now);
            });
        }
    }

    std::vector<Accepted> incoming() {
        std::lock_guard<std::mutex> lock(mu_);
        std::vector<Accepted> got;
        got.swap(incoming_);
        return got;
    }

    // The longest a worker sleeps: sessions' deadlines are looked at (at least) this often.
    int sweep_interval() const {
        const auto &c = p_.cfg;
        unsigned t = std::min(c.handshake_timeout_ms, std::min(c.idle_timeout_ms, c.frame_timeout_ms)) / 4;
        return static_cast<int>(t < 20 ? 20 : t > 1000 ? 1000 : t);
    }

    void run() {
        PollEvent evs[256];
        const int interval = sweep_interval();
        int64_t now = now_ms();  // read once per wake-up here, once per connection event below
        next_sweep_ = now + interval;
        while (!sh_.stopping.load()) {
            const int64_t wait = std::max<int64_t>(0, std::min<int64_t>(next_sweep_ - now, interval));
            int n = poller_.wait(evs, 256, static_cast<int>(wait));
            for (int i = 0; i < n; ++i) {
                if (evs[i].tag == nullptr) {  // woken (the poller has drained its wake-up)
                    take_incoming();
                    take_ready();
                } else if (evs[i].tag == &kListenTag) {
                    accept_burst();
                } else {
                    Conn &c = *static_cast<Conn *>(evs[i].tag);
                    guarded(c, [&] { on_event(c, evs[i].events); });
                }
            }
            reap();
            now = now_ms();
            if (now >= next_sweep_) {
                sweep(now, interval);
                reap();
            }
        }
        shutdown_all();
    }

    // Out of memory (or a bug) while handling one connection ends that connection, never the
    // worker: no exception leaves this thread.
    template <class F>
    void guarded(Conn &c, F &&f) noexcept {
        if (guard([&] {
                f();
                return SL_OK;
            }) != SL_OK) {
            c.s->fail();
            kill(c);
        }
    }

    // The acceptor: takes what the listening socket has queued and spreads it round-robin.
    void accept_burst() {
        for (int burst = 0; burst < 64; ++burst) {
            Accepted a;
            a.fd = accept_socket(sh_.listen_fd, &a.addr);
            if (a.fd < 0) {
                if (errno == EMFILE || errno == ENFILE) refuse_without_fds();
                return;  // EAGAIN and transient errors: wait for the next readiness
            }
            Worker *w = sh_.workers[sh_.next_worker++ % sh_.workers.size()];
            if (w == this) add_conn(a);
            else w->post(a);
        }
    }

    // Out of file descriptors: free the spare, accept and close at once, so the pending
    // connection leaves the queue instead of waking the poller forever.
    void refuse_without_fds() {
        if (sh_.spare_fd >= 0) close(sh_.spare_fd);
        int fd = accept(sh_.listen_fd, nullptr, nullptr);
        if (fd >= 0) close(fd);
        sh_.spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        p_.out_of_fds();
    }

    void take_incoming() {
        for (const Accepted &a : incoming()) add_conn(a);
    }

    void add_conn(const Accepted &a) noexcept {
        const int fd = a.fd;
        std::unique_ptr<Conn> c(new (std::nothrow) Conn);
        if (!c) {
            close(fd);
            return;
        }
        c->io.fd = fd;
        c->worker = this;
        if (guard([&] {
                c->s = std::make_unique<Session>(p_, addr_name(a.addr), now_ms());
                c->s->set_wake(&Worker::on_wake, c.get());
                return SL_OK;
            }) != SL_OK || !c->s->ok())
            return;  // ~Conn closes fd
        bool ok = true;
        if (sh_.tls) {
            c->io.ssl.reset(SSL_new(sh_.tls.get()));
            ok = c->io.ssl && attach_socket(c->io.ssl.get(), fd) == SL_OK;  // sends never raise SIGPIPE
            if (ok) SSL_set_accept_state(c->io.ssl.get());
        }
        c->events = kReadable;
        if (!ok || !poller_.add(fd, c->events, c.get())) {
            c->s->io_error(SL_ESOCKET, false, now_ms());
            return;  // ~Conn logs and closes
        }
        Conn *raw = c.get();
        if (guard([&] {
                conns_.emplace(raw, std::move(c));
                return SL_OK;
            }) != SL_OK) {
            poller_.forget(fd);
            return;
        }
        guarded(*raw, [&] { update(*raw); });
    }

    void kill(Conn &c) noexcept {
        if (c.dead) return;
        c.dead = true;
        if (guard([&] {
                dead_.push_back(&c);
                return SL_OK;
            }) != SL_OK)
            reap_one(c);  // (the vector could not grow) close it now, not later
    }

    void reap_one(Conn &c) noexcept {
        poller_.forget(c.io.fd);
        c.s->close();  // logs "disconnected", returns the slots
        conns_.erase(&c);
    }

    void reap() noexcept {
        for (Conn *c : dead_) {
            if (conns_.count(c) != 0) reap_one(*c);
        }
        dead_.clear();
    }

    void on_event(Conn &c, uint32_t events) {
        if (c.dead) return;
        const int64_t now = now_ms();
        if (c.io.ssl && !c.io.tls_connected && c.s->status() == SL_SESSION_OPEN) {
            if (!c.tls_checked) {
                uint8_t b[8];
                ssize_t n = recv(c.io.fd, b, sizeof b, MSG_PEEK);
                if (n > 0) {
                    c.tls_checked = true;
                    if (c.s->tls_check(b, static_cast<size_t>(n), now)) return update(c, now);
                }
            }
            Io r = c.io.tls_handshake();
            if (r == Io::Eof || r == Io::Error) {
                unsigned long e = ERR_get_error();
                ERR_clear_error();
                char msg[256] = "";
                if (e != 0) ERR_error_string_n(e, msg, sizeof msg);
                c.s->tls_failed(msg, now);
            } else if (r != Io::Done) {
                return interest(c, r == Io::WantWrite);
            }
            return update(c, now);
        }
        if (events & (kReadable | kHangup | kError)) {
            if (c.shut) drain(c, now);
            else if (c.s->wants_read()) do_read(c, now);
            else if (events & (kHangup | kError)) c.s->feed_eof(now);  // gone while not being read
        }
        update(c, now);
    }

    // Reads and feeds what the socket has, while the session wants it.
    void do_read(Conn &c, int64_t now) {
        for (int i = 0; i < kReadsPerEvent && c.s->wants_read(); ++i) {
            size_t n = 0;
            Io r = c.io.read(rbuf_.get(), kReadBuf, &n);
            if (r == Io::WantRead || r == Io::WantWrite) break;
            if (r == Io::Eof) return c.s->feed_eof(now);
            if (r == Io::Error) return c.s->io_error(c.io.last_error, false, now);
            feed(c, rbuf_.get(), n, now);
            // A short plain read means the socket is drained; the level-triggered poller reports
            // anything that arrives later, so skip the recv() that would only say EAGAIN.
            // (TLS may hold decrypted records internally: keep reading until it says so.)
            if (!c.io.ssl && n < kReadBuf) break;
        }
    }

    // The lingering close: raw bytes (TLS records too) read and handed to the session, which
    // discards them and says when to stop (the client's EOF, a byte bound, its deadline).
    void drain(Conn &c, int64_t now) {
        while (c.s->wants_read()) {
            const ssize_t n = recv(c.io.fd, rbuf_.get(), kReadBuf, 0);
            if (n == 0) return c.s->feed_eof(now);
            if (n < 0) {
                if (errno == EINTR) continue;
                if (errno != EAGAIN && errno != EWOULDBLOCK) c.s->io_error(errno_to_sl(errno), false, now);
                return;
            }
            size_t used = 0, mlen = 0;
            const uint8_t *msg = nullptr;
            c.s->feed(rbuf_.get(), static_cast<size_t>(n), now, &used, &msg, &mlen);
        }
    }

    void feed(Conn &c, const uint8_t *data, size_t len, int64_t now) {
        size_t off = 0;
        while (off < len && c.s->status() == SL_SESSION_OPEN) {
            if (c.s->busy()) {  // a password check runs: the rest waits for its verdict
                c.held.assign(data + off, data + len);
                break;
            }
            size_t used = 0, mlen = 0;
            const uint8_t *msg = nullptr;
            if (c.s->feed(data + off, len - off, now, &used, &msg, &mlen) != SL_OK) break;
            off += used;
            if (msg != nullptr) answer(c, msg, mlen, now);
        }
    }

    // The application's handler answers one message (the session answers the others itself).
    void answer(Conn &c, const uint8_t *msg, size_t len, int64_t now) {
        const auto &cfg = p_.cfg;
        sl_buf buf{{}, std::max<size_t>(cfg.max_message, SL_DEFAULT_MAX_MESSAGE)};
        if (cfg.handler(cfg.handler_ud, c.s->peer().c_str(), msg, len, &buf) != 0) {
            // What a failing handler appended is its reason, for the log only (never sent).
            c.s->reply_failed(std::string(buf.data.begin(), buf.data.end()), now);
            return;
        }
        c.s->reply(buf.data.data(), buf.data.size(), now);
    }

    // After anything happened to a connection: writes what is pending, closes it if the session
    // says so, and asks the poller for what the session wants next.
    void update(Conn &c) { update(c, now_ms()); }
    void update(Conn &c, int64_t now) {
        if (c.dead) return;
        bool blocked = false;
        while (c.s->pending_size() > 0 && c.s->status() != SL_SESSION_CLOSED) {
            size_t n = 0;
            Io r;
            if (c.io.ssl && !c.io.tls_connected) {  // raw bytes before TLS (an alert)
                ssize_t w = send(c.io.fd, c.s->pending(), c.s->pending_size(), kNoSigPipe);
                r = w >= 0 ? Io::Done : (errno == EAGAIN || errno == EWOULDBLOCK) ? Io::WantWrite : Io::Error;
                n = w > 0 ? static_cast<size_t>(w) : 0;
            } else {
                r = c.io.write(c.s->pending(), c.s->pending_size(), &n);
            }
            if (r == Io::Done) {
                c.s->consume(n, now);
            } else if (r == Io::WantWrite || r == Io::WantRead) {
                blocked = true;
                break;
            } else {
                c.s->io_error(SL_EPEER_CLOSED, true, now);
            }
        }
        const int st = c.s->status();
        if (st == SL_SESSION_CLOSED) return kill(c);
        if (st == SL_SESSION_CLOSING && !blocked) {
            if (!c.shut) {
                c.shut = true;
                if (c.io.ssl && c.io.tls_connected) SSL_shutdown(c.io.ssl.get());
                shutdown(c.io.fd, SHUT_WR);
            }
            if (!c.s->wants_read()) return kill(c);  // (lingering, the session says until when)
        }
        next_sweep_ = std::min(next_sweep_, c.s->deadline());
        interest(c, blocked);
    }

    void interest(Conn &c, bool write) {
        uint32_t ev = (c.s->wants_read() ? uint32_t{kReadable} : 0u) | (write ? uint32_t{kWritable} : 0u);
        if (ev == c.events) return;
        c.events = ev;  // 0: only hang-ups and errors (every backend reports those)
        poller_.modify(c.io.fd, ev, &c);
    }

    void sweep(int64_t now, int interval) {
        next_sweep_ = now + interval;
        for (auto &[raw, cp] : conns_) {
            Conn &c = *cp;
            if (c.dead) continue;
            if (now >= c.s->deadline()) {
                guarded(c, [&] {
                    c.s->tick(now);
                    update(c, now);
                });
            } else {
                next_sweep_ = std::min(next_sweep_, c.s->deadline());
            }
        }
    }

    // Every session gets a CLOSE and a short grace period to receive it.
    void shutdown_all() {
        if (acceptor_) poller_.remove(sh_.listen_fd);
        take_incoming();
        for (auto &[raw, cp] : conns_) {
            Conn &c = *cp;
            guarded(c, [&] {
                c.s->shutdown(now_ms());
                update(c);
            });
        }
        reap();
        const int64_t end = now_ms() + kCloseGraceMs;
        PollEvent evs[256];
        while (!conns_.empty() && now_ms() < end) {
            int n = poller_.wait(evs, 256, 50);
            for (int i = 0; i < n; ++i) {
                void *tag = evs[i].tag;
                if (tag == nullptr || tag == &kListenTag) continue;  // only sessions are flushed now
                Conn &c = *static_cast<Conn *>(tag);
                guarded(c, [&] { on_event(c, evs[i].events); });  // flushing, then lingering
            }
            reap();
        }
        for (auto &[raw, cp] : conns_) {  // grace over: what is left is dropped, reason kept
            cp->s->tick(INT64_MAX / 2);
            kill(*cp);
        }
        reap();
    }

    Shared &sh_;
    Policy &p_;
    Poller poller_;
    bool acceptor_ = false;
    int64_t next_sweep_ = 0;
    std::mutex mu_;
    std::vector<Accepted> incoming_;
    std::vector<Conn *> ready_;  // guarded by mu_
    std::unordered_map<Conn *, std::unique_ptr<Conn>> conns_;
    std::vector<Conn *> dead_;
    std::unique_ptr<uint8_t[]> rbuf_;
    std::thread th_;
};

}  // namespace seclink::detail

using seclink::detail::Shared;
using seclink::detail::Worker;

struct sl_server {
    explicit sl_server(const sl_server_config &cfg) : sh(cfg) {}
    Shared sh;
    unsigned threads = 1;
    uint16_t port = 0;
    bool started = false, joined = false;
    std::vector<std::unique_ptr<Worker>> workers;
};

extern "C" {

void sl_server_config_init(sl_server_config *cfg) {
    if (cfg == nullptr) return;
    *cfg = sl_server_config{};
    cfg->host = "0.0.0.0";
    cfg->max_message = SL_DEFAULT_MAX_MESSAGE;
    cfg->log_level = SL_LOG_MSG;
    seclink::detail::apply_server_defaults(*cfg);
}

int sl_server_new(sl_server **out, const sl_server_config *cfg) {
    if (out == nullptr) return SL_EINVAL;
    *out = nullptr;
    if (cfg == nullptr || cfg->stream) return SL_EINVAL;  // stream mode needs a driver of its own (the pipe program)
    return seclink::detail::guard([&]() -> int {
        const int checked = seclink::detail::check_server_config(*cfg);
        if (checked != SL_OK) return checked;
        auto s = std::make_unique<sl_server>(*cfg);  // the policy keeps the only copy of the key
        if (cfg->files_dir != nullptr && s->sh.policy.files.dirfd < 0) return static_cast<int>(SL_EIO);
        if (s->sh.policy.chat && !s->sh.policy.chat->ok()) return s->sh.policy.chat->error();  // --cluster
        s->sh.host = cfg->host != nullptr ? cfg->host : "0.0.0.0";
        s->threads = cfg->threads != 0 ? cfg->threads : sl_server_default_threads();
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
    });
}

uint16_t sl_server_port(const sl_server *server) { return server != nullptr ? server->port : 0; }

int sl_server_reload_users(sl_server *server) {
    if (server == nullptr) return SL_EINVAL;
    return seclink::detail::guard([&] { return server->sh.policy.reload_users(); });
}

size_t sl_server_sessions(const sl_server *server) { return server != nullptr ? server->sh.policy.connections.load() : 0; }

int sl_server_start(sl_server *server) {
    if (server == nullptr) return SL_EINVAL;
    if (server->started) return SL_ESTATE;
    struct sigaction sa {};
    if (sigaction(SIGPIPE, nullptr, &sa) == 0 && sa.sa_handler == SIG_DFL) signal(SIGPIPE, SIG_IGN);
    return seclink::detail::guard([&]() -> int {
        for (unsigned i = 0; i < server->threads; ++i) {
            auto w = std::make_unique<Worker>(server->sh);
            int rc = w->init(i == 0);  // worker 0 is also the acceptor
            if (rc != SL_OK) return rc;
            server->sh.workers.push_back(w.get());
            server->workers.push_back(std::move(w));
        }
        for (auto &w : server->workers) w->start();
        server->started = true;
        return SL_OK;
    });
}

int sl_server_stop(sl_server *server) {
    if (server == nullptr) return SL_EINVAL;
    server->sh.stopping.store(true);
    for (auto &w : server->workers) w->wake();  // one write(2) each: async-signal-safe
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
