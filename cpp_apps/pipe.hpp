// pipe.hpp - streams over seclink (docs/PROTOCOL.md 9, README "Pipe mode" and "Tunnels"):
//  --pipe: standard input goes to the peer as DATA, the peer's DATA to standard output as raw
//          bytes, the end of input is an EOF message; the client sends CLOSE once both EOFs have
//          passed. Logs go to standard error.
//  --forward HOST:PORT (server) and --listen ADDR:PORT (client): a tunnel, the same with a TCP
//          connection in place of standard input/output, one seclink session per connection; an
//          EOF becomes a half-close (shutdown) and a failing target closes only its tunnel.
// Memory is bounded: input is read only while less than kHighWater bytes wait to be written.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <pthread.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common.hpp"

namespace app::pipe {

constexpr size_t kChunk = 256 * 1024;       // one DATA message per read of the input
constexpr size_t kHighWater = 1024 * 1024;  // queued output before the input waits
constexpr int kDrainMs = 5000;              // at a stop: time for the tunnels to send CLOSE and end

inline int64_t now_ms() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return int64_t{ts.tv_sec} * 1000 + ts.tv_nsec / 1000000;
}

// This side's end of the stream.
struct Local {
    int in = STDIN_FILENO;    // -1: nothing to send
    int out = STDOUT_FILENO;  // -1: nowhere to write (nothing is expected)
    bool socket = false;      // a TCP connection (a tunnel): the peer's EOF is a shutdown(SHUT_WR)
};

struct Counts {
    uint64_t sent = 0, received = 0;
};

// The peer's stream ended: so does our output.
inline void end_output(const Local &l) {
    if (l.out < 0) return;
    if (l.socket) ::shutdown(l.out, SHUT_WR);
    else ::close(l.out);
}

// Writes all of `len` bytes to `fd` (waiting while it is full); false on an error (errno set).
inline bool write_all(int fd, const uint8_t *p, size_t len) {
    while (len > 0) {
        ssize_t n = ::write(fd, p, len);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) {
            pollfd w{fd, POLLOUT, 0};
            ::poll(&w, 1, -1);
            continue;
        }
        if (n <= 0) return false;
        p += n;
        len -= static_cast<size_t>(n);
    }
    return true;
}

// Reads up to buf.size() bytes of `fd`: >0 bytes, 0 at the end, -1 on an error, -2 nothing now.
inline ssize_t read_some(int fd, std::vector<uint8_t> &buf) {
    for (;;) {
        ssize_t n = ::read(fd, buf.data(), buf.size());
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) return -2;
        return n;
    }
}

// "host:port" or "[v6]:port" -> host, port; false if it is not that.
inline bool split_host_port(const std::string &s, std::string *host, unsigned long *port) {
    const size_t colon = s.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == s.size()) return false;
    *host = s.substr(0, colon);
    if (host->size() >= 2 && host->front() == '[' && host->back() == ']') *host = host->substr(1, host->size() - 2);
    char *end = nullptr;
    *port = std::strtoul(s.c_str() + colon + 1, &end, 10);
    return *end == '\0' && *port <= 65535;  // 0: any free port, where that makes sense
}

// A TCP connection to host:port within `timeout_ms` (blocking socket), or -1 with *why.
inline int connect_tcp(const std::string &host, unsigned long port, int timeout_ms, std::string *why) {
    addrinfo hints{}, *res = nullptr;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    const std::string service = std::to_string(port);
    if (int rc = getaddrinfo(host.c_str(), service.c_str(), &hints, &res); rc != 0 || res == nullptr) {
        *why = "cannot resolve " + host + ": " + gai_strerror(rc);
        return -1;
    }
    int fd = -1;
    for (addrinfo *ai = res; ai != nullptr && fd < 0; ai = ai->ai_next) {
        fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
        if (fd < 0) continue;
        int err = ::connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 ? 0 : errno;
        if (err == EINPROGRESS) {
            pollfd p{fd, POLLOUT, 0};
            socklen_t len = sizeof err;
            err = ::poll(&p, 1, timeout_ms) == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 ? err : ETIMEDOUT;
        }
        if (err != 0) {
            *why = std::strerror(err);
            ::close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd >= 0) {
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return fd;
}

// A listening socket on host:port (0: any free port); dies with a clear message if it cannot.
inline int listen_on(const char *prog, const std::string &host, unsigned long port, unsigned *bound, int backlog) {
    addrinfo hints{}, *res = nullptr;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    const std::string service = std::to_string(port);
    if (getaddrinfo(host.c_str(), service.c_str(), &hints, &res) != 0 || res == nullptr)
        die(prog, kNetwork, "cannot listen on '" + host + "': not a local address");
    int lfd = ::socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, res->ai_protocol);
    int one = 1;
    if (lfd >= 0) setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (lfd < 0 || ::bind(lfd, res->ai_addr, res->ai_addrlen) != 0 || ::listen(lfd, backlog) != 0) {
        const int err = errno;
        freeaddrinfo(res);
        die(prog, kNetwork, "cannot listen on " + host_port(host, port) + ": " + std::strerror(err) +
                                (err == EADDRINUSE ? " (choose another port)" : ""));
    }
    freeaddrinfo(res);
    sockaddr_storage ss{};
    socklen_t sl = sizeof ss;
    getsockname(lfd, reinterpret_cast<sockaddr *>(&ss), &sl);
    *bound = ntohs(ss.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6 &>(ss).sin6_port
                                            : reinterpret_cast<sockaddr_in &>(ss).sin_port);
    return lfd;
}

// Accepts one connection; its peer as "host:port".
inline int accept_one(int lfd, std::string *peer, bool nonblock) {
    sockaddr_storage a{};
    socklen_t al = sizeof a;
    int fd;
    do fd = ::accept4(lfd, reinterpret_cast<sockaddr *>(&a), &al, SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0));
    while (fd < 0 && errno == EINTR);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char h[NI_MAXHOST] = "?", sv[NI_MAXSERV] = "?";
    getnameinfo(reinterpret_cast<sockaddr *>(&a), al, h, sizeof h, sv, sizeof sv, NI_NUMERICHOST | NI_NUMERICSERV);
    *peer = host_port(h, std::strtoul(sv, nullptr, 10));
    return fd;
}

// The graceful stop of a tunnel program, like the server's: SIGINT/SIGTERM are blocked in every
// thread (the constructor runs before any thread starts) and taken by wait(); stop() then makes
// fd() readable for good, which the accept loop and every tunnel poll: the accept loop ends, each
// tunnel sends its CLOSE and ends; drain() waits for them.
class Stopper {
public:
    Stopper() {
        sigemptyset(&signals_);
        sigaddset(&signals_, SIGINT);
        sigaddset(&signals_, SIGTERM);
        pthread_sigmask(SIG_BLOCK, &signals_, nullptr);
        if (::pipe(fds_) == 0)
            for (int fd : fds_) fcntl(fd, F_SETFD, FD_CLOEXEC);
    }
    int fd() const { return fds_[0]; }
    int wait() {
        int sig = 0;
        while (sigwait(&signals_, &sig) != 0) {
        }
        return sig;
    }
    void stop() {
        const ssize_t n = ::write(fds_[1], "x", 1);
        (void)n;
    }
    void enter() {
        std::lock_guard<std::mutex> g(mu_);
        ++live_;
    }
    void leave() {
        std::lock_guard<std::mutex> g(mu_);
        if (--live_ == 0) cv_.notify_all();
    }
    int live() {
        std::lock_guard<std::mutex> g(mu_);
        return live_;
    }
    // false: a tunnel did not end in time (one blocked writing to a peer that does not read).
    bool drain() {
        std::unique_lock<std::mutex> l(mu_);
        return cv_.wait_for(l, std::chrono::milliseconds(kDrainMs), [&] { return live_ == 0; });
    }

private:
    sigset_t signals_;
    int fds_[2] = {-1, -1};
    std::mutex mu_;
    std::condition_variable cv_;
    int live_ = 0;
};

// Accepts connections on `lfd` until SIGINT/SIGTERM; each (non-blocking if `nonblock`) goes to
// serve(fd, peer) on a thread of its own that `stop` counts. Then logs the stop, stops accepting
// and waits for those threads (see Stopper).
inline void accept_until_stopped(int lfd, bool nonblock, Stopper &stop, Logger &log, const char *what,
                                 const std::function<void(int)> &on_accept_error,
                                 const std::function<void(int, const std::string &)> &serve) {
    fcntl(lfd, F_SETFL, fcntl(lfd, F_GETFL) | O_NONBLOCK);
    std::thread acceptor([&] {
        for (;;) {
            pollfd p[2] = {{lfd, POLLIN, 0}, {stop.fd(), POLLIN, 0}};
            if (::poll(p, 2, -1) < 0) continue;  // EINTR
            if (p[1].revents != 0) return;
            std::string peer;
            const int fd = accept_one(lfd, &peer, nonblock);
            if (fd < 0) {
                on_accept_error(errno);
                continue;
            }
            stop.enter();
            std::thread([fd, peer, &serve, &stop] {
                serve(fd, peer);
                stop.leave();
            }).detach();
        }
    });
    const int sig = stop.wait();
    log.line(SL_LOG_INFO, std::string("[INFO] ") + (sig == SIGINT ? "Interrupted" : "Terminated") + ": closing " +
                              count(static_cast<uint64_t>(stop.live()), what));
    stop.stop();
    acceptor.join();
    ::close(lfd);  // nobody else may connect
    if (!stop.drain()) {  // the rest is dropped with the process (their state may not be freed under them)
        log.line(SL_LOG_WARN, "[WARN] " + count(static_cast<uint64_t>(stop.live()), what) + " did not end within " +
                                  std::to_string(kDrainMs / 1000) + " s: dropped");
        std::_Exit(kOk);
    }
}

// ------------------------------------------------------------------------------------ client

constexpr int kStopped = -1;  // client_stream(): `stop_fd` became readable

// Carries the stream between `local` and a connected session until both ends have ended (then
// the caller sends CLOSE). Returns kOk, kStopped, or the exit code with *why.
inline int client_stream(sl_client *c, const Local &local, size_t max_message, Counts *n, std::string *why,
                         Logger *tty_log, int stop_fd = -1) {
    std::vector<uint8_t> buf(std::max<size_t>(1, std::min(kChunk, max_message)));
    bool in_open = local.in >= 0, peer_eof = false, eof_queued = local.in < 0;
    if (eof_queued) sl_client_queue(c, SL_MSG_EOF, nullptr, 0);
    for (;;) {
        if (!in_open && peer_eof && sl_client_pending(c) == 0) return kOk;
        const bool input = in_open && sl_client_pending(c) < kHighWater;
        pollfd fds[3] = {{sl_client_fd(c), static_cast<short>(POLLIN | (sl_client_pending(c) ? POLLOUT : 0)), 0},
                         {stop_fd, POLLIN, 0},  // ignored by poll() when -1
                         {local.in, POLLIN, 0}};
        const nfds_t nf = input ? 3 : 2;
        if (::poll(fds, nf, -1) < 0 && errno != EINTR) return *why = std::string("poll: ") + std::strerror(errno), kInternal;
        if (fds[1].revents != 0) return kStopped;
        if (input && fds[2].revents != 0) {
            const ssize_t got = read_some(local.in, buf);
            int rc = SL_OK;
            if (got > 0) {
                rc = sl_client_queue(c, SL_MSG_DATA, buf.data(), static_cast<size_t>(got));
                n->sent += static_cast<uint64_t>(got);
            } else if (got != -2) {  // the end of the input (or an error reading it: the same for the peer)
                rc = sl_client_queue(c, SL_MSG_EOF, nullptr, 0);
                in_open = false;
                if (tty_log != nullptr) tty_log->line(SL_LOG_INFO, "[INFO] end of input: waiting for the server to finish");
            }
            if (rc != SL_OK) return *why = "sending failed: " + describe(rc), kSession;
        }
        int rc = sl_client_flush(c, 0);
        if (rc != SL_OK && rc != SL_ETIMEDOUT) return *why = "sending failed: " + describe(rc), kSession;
        for (;;) {  // everything that has arrived (and what TLS holds buffered)
            int type = 0;
            const uint8_t *data = nullptr;
            size_t len = 0;
            rc = sl_client_recv(c, 0, &type, &data, &len);
            if (rc == SL_ETIMEDOUT) break;
            if (rc == SL_EPEER_CLOSED) return *why = "the server closed the connection before the end of the stream", kSession;
            if (rc != SL_OK) return *why = "session failed: " + describe(rc), kSession;
            if (type == SL_MSG_CLOSE)
                return *why = "the server closed the session: " +
                              (len ? std::string(reinterpret_cast<const char *>(data), len) : "no reason given"),
                       kSession;
            if (type == SL_MSG_EOF) {
                peer_eof = true;
                end_output(local);
            }
            if (type != SL_MSG_DATA) continue;
            if (local.out >= 0 && !write_all(local.out, data, len))
                return *why = std::string(local.socket ? "cannot write to the local connection: " : "cannot write "
                                          "standard output: ") + std::strerror(errno), kInternal;
            n->received += len;
        }
    }
}

// SIGINT (Ctrl-C) and SIGTERM during a --pipe session: blocked from here on and readable on
// fd(), which the stream loop polls; the session then ends with its CLOSE and the program exits
// with code(), 128 + the signal, what a shell reports for a program the signal killed.
class PipeStop {
public:
    PipeStop() {
        sigset_t m;
        sigemptyset(&m);
        sigaddset(&m, SIGINT);
        sigaddset(&m, SIGTERM);
        if (pthread_sigmask(SIG_BLOCK, &m, &old_) == 0) fd_ = signalfd(-1, &m, SFD_CLOEXEC | SFD_NONBLOCK);
    }
    ~PipeStop() {  // a signal not taken by now acts as it did before
        if (fd_ >= 0) ::close(fd_);
        pthread_sigmask(SIG_SETMASK, &old_, nullptr);
    }
    PipeStop(const PipeStop &) = delete;
    PipeStop &operator=(const PipeStop &) = delete;
    int fd() const { return fd_; }
    // The signal that came (0: none), taken once.
    int taken() {
        signalfd_siginfo si{};
        if (sig_ == 0 && fd_ >= 0 && ::read(fd_, &si, sizeof si) == static_cast<ssize_t>(sizeof si))
            sig_ = static_cast<int>(si.ssi_signo);
        return sig_;
    }
    static int code(int sig) { return 128 + sig; }
    static const char *name(int sig) { return sig == SIGINT ? "Interrupted" : "Terminated"; }

private:
    sigset_t old_{};
    int fd_ = -1, sig_ = 0;
};

// --pipe of the client, on a connected session. Returns the exit code.
inline int run_client(const char *prog, sl_client *c, Logger &log, size_t max_message) {
    signal(SIGPIPE, SIG_IGN);  // a closed standard output is an error to report, not a silent death
    PipeStop stop;
    Counts n;
    std::string why;
    const int code = client_stream(c, Local{STDIN_FILENO, STDOUT_FILENO, false}, max_message, &n, &why,
                                   isatty(STDIN_FILENO) ? &log : nullptr, stop.fd());
    if (code != kOk && code != kStopped) {
        sl_client_free(c);
        die(prog, code, why);
    }
    sl_client_close(c, code == kStopped ? "client shutting down" : nullptr);
    sl_client_free(c);
    const std::string counts = "sent " + count(n.sent, "byte") + ", received " + count(n.received, "byte");
    if (code == kStopped) {
        const int sig = stop.taken();
        log.line(SL_LOG_INFO, std::string("[INFO] ") + PipeStop::name(sig) + ": closed the session (" + counts + ")");
        return PipeStop::code(sig);
    }
    log.line(SL_LOG_INFO, "[INFO] Disconnected: " + counts);
    return kOk;
}

// --listen ADDR:PORT of the client: each local TCP connection gets its own seclink session.
inline int run_tunnel_client(const char *prog, sl_client_config cfg, const uint8_t *psk, const std::string &listen,
                             Logger &log) {
    signal(SIGPIPE, SIG_IGN);
    Stopper stop;  // before any thread starts
    std::string host;
    unsigned long port = 0;
    if (!split_host_port(listen, &host, &port)) die(prog, kUsage, "--listen takes ADDR:PORT, e.g. 127.0.0.1:7000");
    unsigned bound = 0;
    const int lfd = listen_on(prog, host, port, &bound, 128);
    const std::string where = host_port(cfg.host, cfg.port);
    log.line(SL_LOG_INFO, "[INFO] Listening on " + host_port(host, bound) + " (tunnel to " + where + ")", true);
    accept_until_stopped(lfd, false, stop, log, "tunnel", [](int) {}, [&](int fd, const std::string &peer) {
        sl_client_config c = cfg;
        c.psk = psk;
        sl_client *cl = nullptr;
        int rc = sl_client_connect(&cl, &c);
        if (rc != SL_OK) {
            log.line(SL_LOG_WARN, "[WARN] tunnel from " + peer + ": cannot connect to " + where + ": " + describe(rc));
            ::close(fd);
            return;
        }
        log.line(SL_LOG_INFO, "[INFO] tunnel from " + peer + " open");
        Counts n;
        std::string why;
        const int code = client_stream(cl, Local{fd, fd, true}, c.max_message, &n, &why, nullptr, stop.fd());
        if (code == kOk || code == kStopped) sl_client_close(cl, code == kStopped ? "client shutting down" : nullptr);
        sl_client_free(cl);
        ::close(fd);
        const bool ok = code == kOk || code == kStopped;
        const std::string how = code == kOk ? " closed" : code == kStopped ? " closed: client shutting down" : " broken off: " + why;
        log.line(ok ? SL_LOG_INFO : SL_LOG_WARN, std::string(ok ? "[INFO] tunnel from " : "[WARN] tunnel from ") + peer +
                                                     how + " (sent " + count(n.sent, "byte") + ", received " +
                                                     count(n.received, "byte") + ")");
    });
    log.line(SL_LOG_INFO, "[INFO] Stopped");
    return kOk;
}

// ------------------------------------------------------------------------------------ server

// Serves one accepted connection `fd` as a stream session of `policy` (the session layer decides
// everything about it: handshake, limits, deadlines, log lines; this only moves bytes). Once the
// session is authenticated `open_local` gives this side's end (false: *why, the session is told).
// Returns true if the client ended its stream (not a lost session).
// A readable `stop_fd` (see Stopper) shuts the session down: CLOSE "server shutting down".
inline bool serve_stream(int fd, const std::string &peer, sl_policy *policy, size_t max_message,
                         const std::function<bool(Local *, std::string *)> &open_local, Counts *n, int stop_fd = -1) {
    sl_session *s = nullptr;
    if (sl_session_new(&s, policy, peer.c_str(), now_ms()) != SL_OK) {
        ::close(fd);
        return false;
    }
    Local local{-1, -1, false};
    bool opened = false, in_open = false, out_open = false, eof_sent = false, shut = false;
    std::vector<uint8_t> buf(std::max<size_t>(1, std::min(kChunk, max_message ? max_message : kChunk)));
    std::vector<uint8_t> net(64 * 1024);
    size_t net_pos = 0, net_len = 0;
    for (;;) {
        int64_t now = now_ms();
        if (now >= sl_session_deadline(s)) sl_session_tick(s, now);
        const int st = sl_session_status(s);
        const uint8_t *out = nullptr;
        size_t out_len = 0;
        sl_session_pending(s, &out, &out_len);
        if (st == SL_SESSION_CLOSING && out_len == 0 && !shut) {  // written: the lingering close (PROTOCOL.md 5)
            ::shutdown(fd, SHUT_WR);
            shut = true;
        }
        if (st == SL_SESSION_CLOSED || (st == SL_SESSION_CLOSING && out_len == 0 && !sl_session_wants_read(s))) break;
        // Authenticated (it may send, or a message came): our end is opened.
        auto open = [&] {
            opened = true;
            std::string why;
            if (!open_local(&local, &why)) return sl_session_fail(s, why.c_str(), now), false;
            in_open = local.in >= 0;
            out_open = local.out >= 0;
            return true;
        };
        if (!opened && st == SL_SESSION_OPEN && sl_session_can_send(s) && !open()) continue;
        if (sl_session_peer_eof(s) && out_open) {  // the client's stream ended: so does our output
            end_output(local);
            out_open = false;
        }
        if (opened && !in_open && !eof_sent && sl_session_can_send(s)) {
            sl_session_send_eof(s, now);
            eof_sent = true;
        }
        while (net_pos < net_len && sl_session_wants_read(s)) {  // bytes already read, while it takes them
            size_t used = 0, mlen = 0;
            const uint8_t *msg = nullptr;
            if (sl_session_feed(s, net.data() + net_pos, net_len - net_pos, now, &used, &msg, &mlen) != SL_OK) break;
            net_pos += used;
            if (msg == nullptr) continue;
            if (!opened && !open()) break;
            if (!out_open || !write_all(local.out, msg, mlen)) {
                const std::string why = std::string(local.socket ? "target: " : "standard output: ") +
                                        (out_open ? std::strerror(errno) : "closed");
                sl_session_fail(s, why.c_str(), now);
                break;
            }
            n->received += mlen;
            sl_session_reply(s, nullptr, 0, now);  // taken
        }
        if (net_pos == net_len) net_pos = net_len = 0;
        if (sl_session_peer_eof(s) && out_open) {  // (it may have come just now)
            end_output(local);
            out_open = false;
        }
        sl_session_pending(s, &out, &out_len);
        const bool reading = net_len == 0 && sl_session_wants_read(s);
        const bool input = in_open && sl_session_can_send(s);
        pollfd fds[3] = {{fd, static_cast<short>((reading ? POLLIN : 0) | (out_len ? POLLOUT : 0)), 0},
                         {stop_fd, POLLIN, 0},  // ignored by poll() when -1
                         {local.in, POLLIN, 0}};
        const int64_t deadline = sl_session_deadline(s);
        const int64_t wait = deadline == INT64_MAX ? 1000 : std::clamp<int64_t>(deadline - now, 0, 1000);
        if (::poll(fds, input ? 3 : 2, static_cast<int>(wait)) < 0 && errno != EINTR) break;
        now = now_ms();
        if (fds[1].revents != 0) {  // once: the session is closing from now on
            sl_session_shutdown(s, now);
            stop_fd = -1;
            continue;
        }
        if (input && fds[2].revents != 0) {
            const ssize_t got = read_some(local.in, buf);
            if (got > 0) {
                sl_session_send(s, buf.data(), static_cast<size_t>(got), now);
                n->sent += static_cast<uint64_t>(got);
            } else if (got == -1 && local.socket) {
                const std::string why = std::string("target: ") + std::strerror(errno);
                sl_session_fail(s, why.c_str(), now);
                in_open = false;
            } else if (got != -2) {
                in_open = false;  // the EOF goes out at the top of the loop
            }
        }
        if ((fds[0].revents & (POLLIN | POLLERR | POLLHUP)) && reading) {
            const ssize_t got = ::read(fd, net.data(), net.size());
            if (got > 0) net_len = static_cast<size_t>(got);
            else if (got == 0) sl_session_feed_eof(s, now);
            else if (errno != EAGAIN && errno != EINTR) sl_session_io_error(s, SL_ESOCKET, 0, now);
        }
        sl_session_pending(s, &out, &out_len);
        if (out_len > 0) {
            const ssize_t w = ::send(fd, out, out_len, MSG_NOSIGNAL);
            if (w > 0) sl_session_consume(s, static_cast<size_t>(w), now);
            else if (w < 0 && errno != EAGAIN && errno != EINTR) sl_session_io_error(s, SL_ESOCKET, 1, now);
        }
    }
    const bool ended = sl_session_peer_eof(s) != 0;  // the client ended its stream (not a lost session)
    ::shutdown(fd, SHUT_WR);
    ::close(fd);
    if (local.socket && local.in >= 0) ::close(local.in);
    sl_session_close(s);  // the "disconnected" line
    sl_session_free(s);
    return ended;
}

// --pipe of the server: listens, serves exactly one session (like `nc -l`), exits.
inline int run_server(const char *prog, sl_server_config cfg, const std::string &host, unsigned long port,
                      Logger &log) {
    signal(SIGPIPE, SIG_IGN);
    unsigned bound = 0;
    const int lfd = listen_on(prog, host, port, &bound, 1);
    log.line(SL_LOG_INFO, "[INFO] Listening on " + host_port(host, bound) + " (pipe mode: one session)", true);
    std::string peer;
    const int fd = accept_one(lfd, &peer, true);
    ::close(lfd);  // one session: nobody else may connect
    if (fd < 0) die(prog, kNetwork, std::string("accept failed: ") + std::strerror(errno));
    cfg.stream = 1;
    sl_policy *policy = nullptr;
    if (int rc = sl_policy_new(&policy, &cfg); rc != SL_OK) die(prog, kInternal, "cannot set up the session: " + describe(rc));
    Counts n;
    PipeStop stop;  // from the session on: before it, a signal ends the program as usual
    // A terminal is not a stream to send: the server then only receives (`./server --pipe > f`).
    const bool ended = serve_stream(fd, peer, policy, cfg.max_message, [](Local *l, std::string *) {
        *l = Local{isatty(STDIN_FILENO) ? -1 : STDIN_FILENO, STDOUT_FILENO, false};
        return true;
    }, &n, stop.fd());
    sl_policy_free(policy);
    const std::string counts = "received " + count(n.received, "byte") + ", sent " + count(n.sent, "byte");
    if (const int sig = stop.taken(); sig != 0) {
        log.line(SL_LOG_INFO, std::string("[INFO] ") + PipeStop::name(sig) + ": closed the session (" + counts + ")");
        return PipeStop::code(sig);
    }
    log.line(SL_LOG_INFO, "[INFO] Pipe done: " + counts);
    return ended ? kOk : kSession;
}

// --forward HOST:PORT of the server: every session is carried to its own TCP connection to the
// target, until the server is stopped (SIGINT/SIGTERM: each session gets its CLOSE, see Stopper).
inline int run_forward_server(const char *prog, sl_server_config cfg, const std::string &host, unsigned long port,
                              const std::string &target, Logger &log) {
    signal(SIGPIPE, SIG_IGN);
    Stopper stop;  // before any thread starts
    std::string thost;
    unsigned long tport = 0;
    if (!split_host_port(target, &thost, &tport) || tport == 0)
        die(prog, kUsage, "--forward takes HOST:PORT, e.g. 127.0.0.1:6379");
    cfg.stream = 1;
    sl_policy *policy = nullptr;
    if (int rc = sl_policy_new(&policy, &cfg); rc != SL_OK) die(prog, kInternal, "cannot set up: " + describe(rc));
    unsigned bound = 0;
    const int lfd = listen_on(prog, host, port, &bound, 128);
    log.line(SL_LOG_INFO, "[INFO] Listening on " + host_port(host, bound) + " (forwarding to " + host_port(thost, tport) +
                              ")", true);
    const size_t max_message = cfg.max_message;
    accept_until_stopped(lfd, true, stop, log, "session", [policy](int err) {
        if (err == EMFILE || err == ENFILE) sl_policy_out_of_fds(policy);
    }, [&](int fd, const std::string &peer) {
        Counts n;
        serve_stream(fd, peer, policy, max_message, [&](Local *l, std::string *why) {
            const int t = connect_tcp(thost, tport, 10000, why);
            if (t < 0) {
                *why = "cannot reach the tunnel's target " + host_port(thost, tport) + ": " + *why;
                return false;
            }
            *l = Local{t, t, true};
            return true;
        }, &n, stop.fd());
    });
    sl_policy_free(policy);
    log.line(SL_LOG_INFO, "[INFO] Server stopped");
    return kOk;
}

}  // namespace app::pipe
