// pipe.hpp - --pipe for both programs (docs/PROTOCOL.md 9, README "Pipe mode"): standard input
// goes to the peer as DATA, the peer's DATA goes to standard output as raw bytes, end of input is
// an EOF message; the client sends CLOSE once both EOFs have passed. Logs go to standard error.
// Memory is bounded: input is read only while less than kHighWater bytes wait to be written.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "common.hpp"

namespace app::pipe {

constexpr size_t kChunk = 256 * 1024;          // one DATA message per read of standard input
constexpr size_t kHighWater = 1024 * 1024;     // queued output before standard input waits

inline int64_t now_ms() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return int64_t{ts.tv_sec} * 1000 + ts.tv_nsec / 1000000;
}

// Writes all of `len` bytes to `fd` (blocking); false on an error (errno set).
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

// Reads up to one chunk of standard input into `buf`: >0 bytes, 0 at the end, -1 on an error.
inline ssize_t read_input(std::vector<uint8_t> &buf) {
    for (;;) {
        ssize_t n = ::read(STDIN_FILENO, buf.data(), buf.size());
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) return -2;  // nothing after all
        return n;
    }
}

// --pipe of the client, on a connected session. Returns the exit code.
inline int run_client(const char *prog, sl_client *c, Logger &log, size_t max_message) {
    signal(SIGPIPE, SIG_IGN);  // a closed standard output is an error to report, not a silent death
    std::vector<uint8_t> buf(std::max<size_t>(1, std::min(kChunk, max_message)));
    bool in_open = true, peer_eof = false;
    uint64_t sent = 0, received = 0;
    auto fail = [&](int code, const std::string &msg) {
        sl_client_free(c);
        die(prog, code, msg);
    };
    const bool tty = isatty(STDIN_FILENO);
    for (;;) {
        if (!in_open && peer_eof && sl_client_pending(c) == 0) break;
        pollfd fds[2] = {{sl_client_fd(c), static_cast<short>(POLLIN | (sl_client_pending(c) ? POLLOUT : 0)), 0},
                         {STDIN_FILENO, POLLIN, 0}};
        const nfds_t n = in_open && sl_client_pending(c) < kHighWater ? 2 : 1;
        if (::poll(fds, n, -1) < 0 && errno != EINTR) fail(kInternal, std::string("poll: ") + std::strerror(errno));
        if (n == 2 && fds[1].revents != 0) {
            ssize_t got = read_input(buf);
            if (got < 0 && got != -2) fail(kInternal, std::string("cannot read standard input: ") + std::strerror(errno));
            // A terminal's Ctrl-D, or the end of a file or pipe.
            int rc = SL_OK;
            if (got > 0) {
                rc = sl_client_queue(c, SL_MSG_DATA, buf.data(), static_cast<size_t>(got));
                sent += static_cast<uint64_t>(got);
            } else if (got == 0) {
                rc = sl_client_queue(c, SL_MSG_EOF, nullptr, 0);
                in_open = false;
                if (tty) log.line(SL_LOG_INFO, "[INFO] end of input: waiting for the server to finish");
            }
            if (rc != SL_OK) fail(kSession, "sending failed: " + describe(rc));
        }
        int rc = sl_client_flush(c, 0);
        if (rc != SL_OK && rc != SL_ETIMEDOUT) fail(kSession, "sending failed: " + describe(rc));
        for (;;) {  // everything that has arrived (and what TLS holds buffered)
            int type = 0;
            const uint8_t *data = nullptr;
            size_t len = 0;
            rc = sl_client_recv(c, 0, &type, &data, &len);
            if (rc == SL_ETIMEDOUT) break;
            if (rc == SL_EPEER_CLOSED) fail(kSession, "the server closed the connection before the end of the stream");
            if (rc != SL_OK) fail(kSession, "session failed: " + describe(rc));
            if (type == SL_MSG_CLOSE)
                fail(kSession, "the server closed the session: " +
                                   (len ? std::string(reinterpret_cast<const char *>(data), len) : "no reason given"));
            if (type == SL_MSG_EOF) peer_eof = true;
            if (type != SL_MSG_DATA) continue;
            if (!write_all(STDOUT_FILENO, data, len))
                fail(kInternal, std::string("cannot write standard output: ") + std::strerror(errno));
            received += len;
        }
    }
    sl_client_close(c, nullptr);
    sl_client_free(c);
    log.line(SL_LOG_INFO, "[INFO] Disconnected: sent " + count(sent, "byte") + ", received " + count(received, "byte"));
    return kOk;
}

// --pipe of the server: listens, serves exactly one session (like `nc -l`), exits. The session
// layer decides everything about it (handshake, limits, deadlines, log lines); this only moves
// bytes between the socket and standard input/output.
inline int run_server(const char *prog, sl_server_config cfg, const std::string &host, unsigned long port,
                      Logger &log) {
    signal(SIGPIPE, SIG_IGN);
    addrinfo hints{}, *res = nullptr;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    const std::string service = std::to_string(port);
    if (getaddrinfo(host.c_str(), service.c_str(), &hints, &res) != 0 || res == nullptr)
        die(prog, kNetwork, "cannot listen on '" + host + "': not a local address (check --host)");
    int lfd = ::socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, res->ai_protocol);
    int one = 1;
    if (lfd >= 0) setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (lfd < 0 || ::bind(lfd, res->ai_addr, res->ai_addrlen) != 0 || ::listen(lfd, 1) != 0) {
        const int err = errno;
        freeaddrinfo(res);
        die(prog, kNetwork, "cannot listen on " + host_port(host, port) + ": " + std::strerror(err) +
                                (err == EADDRINUSE ? " (choose another with --port)" : ""));
    }
    freeaddrinfo(res);
    sockaddr_storage ss{};
    socklen_t sl = sizeof ss;
    getsockname(lfd, reinterpret_cast<sockaddr *>(&ss), &sl);
    const unsigned bound = ntohs(ss.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6 &>(ss).sin6_port
                                                          : reinterpret_cast<sockaddr_in &>(ss).sin_port);
    log.line(SL_LOG_INFO, "[INFO] Listening on " + host_port(host, bound) + " (pipe mode: one session)", true);
    sockaddr_storage peer_addr{};
    socklen_t pl = sizeof peer_addr;
    int fd;
    do fd = ::accept4(lfd, reinterpret_cast<sockaddr *>(&peer_addr), &pl, SOCK_CLOEXEC | SOCK_NONBLOCK);
    while (fd < 0 && errno == EINTR);
    ::close(lfd);  // one session: nobody else may connect
    if (fd < 0) die(prog, kNetwork, std::string("accept failed: ") + std::strerror(errno));
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char h[NI_MAXHOST] = "?", sv[NI_MAXSERV] = "?";
    getnameinfo(reinterpret_cast<sockaddr *>(&peer_addr), pl, h, sizeof h, sv, sizeof sv, NI_NUMERICHOST | NI_NUMERICSERV);
    const std::string peer = host_port(h, std::strtoul(sv, nullptr, 10));

    cfg.stream = 1;
    sl_policy *policy = nullptr;
    sl_session *s = nullptr;
    int rc = sl_policy_new(&policy, &cfg);
    if (rc == SL_OK) rc = sl_session_new(&s, policy, peer.c_str(), now_ms());
    if (rc != SL_OK) die(prog, kInternal, "cannot set up the session: " + describe(rc));

    // A terminal is not a stream to send: the server then only receives (`./server --pipe > f`).
    bool in_open = !isatty(STDIN_FILENO), out_open = true, eof_sent = false;
    std::vector<uint8_t> buf(std::max<size_t>(1, std::min(kChunk, cfg.max_message ? cfg.max_message : kChunk)));
    std::vector<uint8_t> net(64 * 1024);
    size_t net_pos = 0, net_len = 0;
    uint64_t sent = 0, received = 0;
    for (;;) {
        int64_t now = now_ms();
        if (now >= sl_session_deadline(s)) sl_session_tick(s, now);
        const int st = sl_session_status(s);
        const uint8_t *out = nullptr;
        size_t out_len = 0;
        sl_session_pending(s, &out, &out_len);
        if (st == SL_SESSION_CLOSED || (st == SL_SESSION_CLOSING && out_len == 0)) break;
        if (sl_session_peer_eof(s) && out_open) {  // the client's stream ended: so does ours
            ::close(STDOUT_FILENO);
            out_open = false;
        }
        if (!in_open && !eof_sent && sl_session_can_send(s)) {  // our input ended (or is a terminal)
            sl_session_send_eof(s, now);
            eof_sent = true;
        }
        // Bytes already read are fed first, while the session takes them.
        while (net_pos < net_len && sl_session_wants_read(s)) {
            size_t used = 0, mlen = 0;
            const uint8_t *msg = nullptr;
            if (sl_session_feed(s, net.data() + net_pos, net_len - net_pos, now, &used, &msg, &mlen) != SL_OK) break;
            net_pos += used;
            if (msg != nullptr) {
                if (!write_all(STDOUT_FILENO, msg, mlen)) {
                    sl_session_reply_failed(s, "cannot write standard output", now);
                    break;
                }
                received += mlen;
                sl_session_reply(s, nullptr, 0, now);  // taken
            }
        }
        if (net_pos == net_len) net_pos = net_len = 0;
        sl_session_pending(s, &out, &out_len);
        const bool reading = net_len == 0 && sl_session_wants_read(s);
        const bool input = in_open && sl_session_can_send(s);
        pollfd fds[2] = {{fd, static_cast<short>((reading ? POLLIN : 0) | (out_len ? POLLOUT : 0)), 0},
                         {STDIN_FILENO, POLLIN, 0}};
        const int64_t deadline = sl_session_deadline(s);
        const int64_t wait = deadline == INT64_MAX ? 1000 : std::clamp<int64_t>(deadline - now, 0, 1000);
        if (::poll(fds, input ? 2 : 1, static_cast<int>(wait)) < 0 && errno != EINTR) break;
        now = now_ms();
        if (input && fds[1].revents != 0) {
            ssize_t got = read_input(buf);
            if (got > 0) {
                sl_session_send(s, buf.data(), static_cast<size_t>(got), now);
                sent += static_cast<uint64_t>(got);
            } else if (got == 0 || got == -1) {
                if (got < 0) log.line(SL_LOG_WARN, std::string("[WARN] cannot read standard input: ") + std::strerror(errno));
                in_open = false;  // the EOF goes out at the top of the loop
            }
        }
        if (fds[0].revents & (POLLIN | POLLERR | POLLHUP)) {
            if (reading) {
                ssize_t got = ::read(fd, net.data(), net.size());
                if (got > 0) {
                    net_len = static_cast<size_t>(got);
                } else if (got == 0) {
                    sl_session_feed_eof(s, now);
                } else if (errno != EAGAIN && errno != EINTR) {
                    sl_session_io_error(s, SL_ESOCKET, 0, now);
                }
            }
        }
        sl_session_pending(s, &out, &out_len);
        if (out_len > 0) {
            ssize_t w = ::send(fd, out, out_len, MSG_NOSIGNAL);
            if (w > 0) sl_session_consume(s, static_cast<size_t>(w), now);
            else if (w < 0 && errno != EAGAIN && errno != EINTR) sl_session_io_error(s, SL_ESOCKET, 1, now);
        }
    }
    const bool eof_ok = sl_session_peer_eof(s) != 0;  // the client ended its stream (not a lost session)
    ::shutdown(fd, SHUT_WR);
    ::close(fd);
    sl_session_close(s);  // the "disconnected" line
    sl_session_free(s);
    sl_policy_free(policy);
    log.line(SL_LOG_INFO, "[INFO] Pipe done: received " + count(received, "byte") + ", sent " + count(sent, "byte"));
    return eof_ok ? kOk : kSession;
}

}  // namespace app::pipe
