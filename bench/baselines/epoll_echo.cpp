// epoll_echo - benchmark baseline (a): the least a plain-TCP server can do per message.
//
//   epoll_echo [--host 127.0.0.1] [--port 0] [--threads 1]
//
// Echoes the `raw` framing of bench/loadgen (u32be length + payload) byte for byte, with no
// encryption. Each of --threads workers runs its own level-triggered epoll loop; all of them
// watch the one listening socket with EPOLLEXCLUSIVE, so a new connection wakes one worker,
// which accepts it and serves it from then on. Bytes are echoed straight from one read buffer
// per thread; only output the socket cannot take at once is copied into the connection (and
// reading from it pauses until that is written), so an idle connection costs a file descriptor
// and a small struct. The framing is tracked only to reject absurd lengths.
//
// Prints "[INFO] Listening on HOST:PORT" (flushed) once it accepts; SIGTERM or SIGINT stops it.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr uint32_t kMaxFrame = 64u * 1024 * 1024;  // larger announced frames close the connection

[[noreturn]] void die(const char *what) {
    std::fprintf(stderr, "epoll_echo: %s: %s\n", what, std::strerror(errno));
    std::exit(1);
}

struct Conn {
    int fd = -1;
    uint8_t hdr[4]{};
    uint32_t hdr_got = 0;
    uint64_t body_left = 0;
    std::vector<uint8_t> backlog;  // output the socket did not take yet
    size_t backlog_off = 0;
};

// Sentinels in epoll_event.data.ptr for the two non-connection descriptors.
char kListenTag, kStopTag;

class Worker {
public:
    Worker(int listen_fd, int stop_fd) : listen_fd_(listen_fd), buf_(64 * 1024) {
        ep_ = epoll_create1(EPOLL_CLOEXEC);
        if (ep_ < 0) die("epoll_create1");
        epoll_event ev{};
        ev.events = EPOLLIN | EPOLLEXCLUSIVE;
        ev.data.ptr = &kListenTag;
        if (epoll_ctl(ep_, EPOLL_CTL_ADD, listen_fd, &ev) != 0) die("epoll_ctl(listen)");
        ev.events = EPOLLIN;
        ev.data.ptr = &kStopTag;
        if (epoll_ctl(ep_, EPOLL_CTL_ADD, stop_fd, &ev) != 0) die("epoll_ctl(stop)");
    }
    ~Worker() {
        for (Conn *c : conns_) {
            close(c->fd);
            delete c;
        }
        close(ep_);
    }
    Worker(const Worker &) = delete;
    Worker &operator=(const Worker &) = delete;

    void run() {
        epoll_event evs[256];
        for (;;) {  // until the stop eventfd fires
            const int n = epoll_wait(ep_, evs, 256, -1);
            if (n < 0) {
                if (errno == EINTR) continue;
                die("epoll_wait");
            }
            for (int i = 0; i < n; ++i) {
                void *p = evs[i].data.ptr;
                if (p == &kStopTag) return;
                if (p == &kListenTag) accept_some();
                else serve(static_cast<Conn *>(p), evs[i].events);
            }
        }
    }

private:
    void accept_some() {
        for (int i = 0; i < 64; ++i) {  // bounded; level-triggered epoll reports the rest
            const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED) return;
                if (errno == EMFILE || errno == ENFILE) {
                    std::fprintf(stderr, "epoll_echo: accept: %s\n", std::strerror(errno));
                    return;
                }
                die("accept4");
            }
            const int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            auto *c = new Conn;
            c->fd = fd;
            epoll_event ev{};
            ev.events = EPOLLIN;
            ev.data.ptr = c;
            if (epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev) != 0) die("epoll_ctl(conn)");
            conns_.push_back(c);
        }
    }

    void drop(Conn *c) {
        close(c->fd);  // also leaves the epoll set
        for (size_t i = 0; i < conns_.size(); ++i) {
            if (conns_[i] == c) {
                conns_[i] = conns_.back();
                conns_.pop_back();
                break;
            }
        }
        delete c;
    }

    void watch(Conn *c, uint32_t events) {
        epoll_event ev{};
        ev.events = events;
        ev.data.ptr = c;
        if (epoll_ctl(ep_, EPOLL_CTL_MOD, c->fd, &ev) != 0) die("epoll_ctl(mod)");
    }

    // Checks the framing of `n` received bytes; false if a frame announces an absurd length.
    static bool frames_ok(Conn *c, const uint8_t *p, size_t n) {
        size_t off = 0;
        while (off < n) {
            if (c->body_left > 0) {
                const size_t k = static_cast<size_t>(std::min<uint64_t>(c->body_left, n - off));
                c->body_left -= k;
                off += k;
                continue;
            }
            c->hdr[c->hdr_got++] = p[off++];
            if (c->hdr_got == 4) {
                const uint32_t len = (static_cast<uint32_t>(c->hdr[0]) << 24) | (static_cast<uint32_t>(c->hdr[1]) << 16) |
                                     (static_cast<uint32_t>(c->hdr[2]) << 8) | c->hdr[3];
                if (len > kMaxFrame) return false;
                c->body_left = len;
                c->hdr_got = 0;
            }
        }
        return true;
    }

    void serve(Conn *c, uint32_t events) {
        if (!c->backlog.empty()) {  // only EPOLLOUT is watched while there is a backlog
            const ssize_t w = send(c->fd, c->backlog.data() + c->backlog_off, c->backlog.size() - c->backlog_off,
                                   MSG_NOSIGNAL);
            if (w < 0) {
                if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) drop(c);
                return;
            }
            c->backlog_off += static_cast<size_t>(w);
            if (c->backlog_off == c->backlog.size()) {
                c->backlog.clear();
                c->backlog.shrink_to_fit();  // idle connections hold no buffer
                c->backlog_off = 0;
                watch(c, EPOLLIN);
            }
            return;
        }
        if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR))) return;
        const ssize_t r = recv(c->fd, buf_.data(), buf_.size(), 0);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            drop(c);
            return;
        }
        if (r < 0) return;
        const auto n = static_cast<size_t>(r);
        if (!frames_ok(c, buf_.data(), n)) {
            drop(c);
            return;
        }
        ssize_t w = send(c->fd, buf_.data(), n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                drop(c);
                return;
            }
            w = 0;
        }
        if (static_cast<size_t>(w) < n) {  // keep the rest; stop reading until it is written
            c->backlog.assign(buf_.data() + w, buf_.data() + n);
            c->backlog_off = 0;
            watch(c, EPOLLOUT);
        }
    }

    int ep_ = -1;
    int listen_fd_;
    std::vector<uint8_t> buf_;
    std::vector<Conn *> conns_;
};

[[noreturn]] void usage(const char *why) {
    std::fprintf(stderr, "epoll_echo: %s\nusage: epoll_echo [--host 127.0.0.1] [--port 0] [--threads 1]\n", why);
    std::exit(2);
}

long number(const char *s, long lo, long hi) {
    char *end = nullptr;
    const long v = std::strtol(s, &end, 10);
    if (end == s || *end != '\0' || v < lo || v > hi) usage("bad number");
    return v;
}

}  // namespace

int main(int argc, char **argv) {
    std::string host = "127.0.0.1";
    long port = 0, threads = 1;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (i + 1 >= argc) usage(("missing value for " + a).c_str());
        const char *v = argv[++i];
        if (a == "--host") host = v;
        else if (a == "--port") port = number(v, 0, 65535);
        else if (a == "--threads") threads = number(v, 1, 256);
        else usage(("unknown option " + a).c_str());
    }

    rlimit rl{};  // one descriptor per connection: use the hard limit
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    // SIGTERM/SIGINT are blocked in every thread and taken by sigwait() in main.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    if (inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) usage("--host must be an IPv4 address");
    const int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    const int one = 1;
    if (lfd < 0) die("socket");
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(lfd, reinterpret_cast<sockaddr *>(&addr), sizeof addr) != 0) die("bind");
    if (listen(lfd, SOMAXCONN) != 0) die("listen");
    socklen_t alen = sizeof addr;
    getsockname(lfd, reinterpret_cast<sockaddr *>(&addr), &alen);

    const int stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (stop_fd < 0) die("eventfd");
    std::vector<Worker *> workers;
    std::vector<std::thread> pool;
    for (long t = 0; t < threads; ++t) workers.push_back(new Worker(lfd, stop_fd));
    for (Worker *w : workers) pool.emplace_back([w] { w->run(); });

    std::printf("[INFO] Listening on %s:%u\n", host.c_str(), static_cast<unsigned>(ntohs(addr.sin_port)));
    std::fflush(stdout);

    int sig = 0;
    sigwait(&stop_signals, &sig);
    const uint64_t wake = 1;  // the eventfd stays readable: every worker sees it
    if (write(stop_fd, &wake, sizeof wake) != static_cast<ssize_t>(sizeof wake)) die("write(eventfd)");
    for (auto &t : pool) t.join();
    for (Worker *w : workers) delete w;
    close(lfd);
    close(stop_fd);
    return 0;
}
