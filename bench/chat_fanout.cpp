// chat_fanout - fan-out load for chat servers: N listeners and one speaker in one room.
//
//   chat_fanout --port P --members N --lines L [--proto seclink|lines] [--psk-file F]
//               [--window W] [--server-pid PID] [--host H] [--port2 P2]
//
// The speaker says L lines, each carrying its send time; at most W lines are in flight (a line is
// done when every listener has it), so the server is driven as fast as it delivers without any
// listener falling behind. Each listener checks every line arrives, once, in order. Reported:
// deliveries a second (lines x listeners / time), the latency from send to each delivery
// (p50/p99), and the server's CPU time per delivery (utime+stime of /proc/PID/stat, all threads;
// --server-pid may be given more than once: the sum).
//   seclink  the seclink/1 engine through the public C ABI (a chat server: --chat)
//   lines    plain text lines, as `ncat --chat` relays them ("<userN> text"), no encryption
// --port2: half of the listeners connect there (two servers sharing the room, e.g. through NATS).
// The last line printed is `RESULT {json}`.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "seclink/seclink.h"

namespace {

[[noreturn]] __attribute__((format(printf, 1, 2))) void die(const char *fmt, ...) {
    std::fflush(stdout);
    std::fputs("chat_fanout: error: ", stderr);
    va_list ap;
    va_start(ap, fmt);
    std::vfprintf(stderr, fmt, ap);
    va_end(ap);
    std::fputc('\n', stderr);
    std::exit(1);
}

uint64_t clock_ns() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// utime + stime of a process, all threads, in microseconds.
double cpu_us(long pid) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
    std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    const size_t close = s.rfind(')');
    if (close == std::string::npos) die("cannot read /proc/%ld/stat", pid);
    std::istringstream in(s.substr(close + 2));
    std::string field;
    unsigned long long utime = 0, stime = 0;
    for (int i = 3; i <= 15 && in >> field; ++i) {
        if (i == 14) utime = std::stoull(field);
        if (i == 15) stime = std::stoull(field);
    }
    return double(utime + stime) * 1e6 / double(sysconf(_SC_CLK_TCK));
}

struct Member {
    int fd = -1;
    sl_conn *conn = nullptr;  // seclink only
    std::string in;           // lines: bytes not yet a whole line
    bool ready = false;       // seclink: got its welcome; lines: connected
    uint64_t next = 0;        // the next line number it expects
};

struct Options {
    std::string host = "127.0.0.1", psk_file, proto = "seclink";
    int port = 0, port2 = 0;
    unsigned members = 1000, lines = 200, window = 8;
    std::vector<long> pids;
};

class Fanout {
public:
    explicit Fanout(const Options &o) : o_(o) {
        if (o_.proto == "seclink") {
            if (sl_key_load(o_.psk_file.c_str(), psk_) != SL_OK) die("cannot load the key %s", o_.psk_file.c_str());
        }
        ep_ = epoll_create1(EPOLL_CLOEXEC);
    }

    void run() {
        members_.resize(o_.members + 1);  // the last one is the speaker
        for (unsigned i = 0; i <= o_.members; ++i) {
            open(i, (o_.port2 != 0 && i % 2 == 1 && i < o_.members) ? o_.port2 : o_.port);
            if (i % 50 == 49) poll(5);  // let the server accept: a short listen backlog overflows otherwise
        }
        // Everyone in the room: every listener and the speaker ready.
        const uint64_t setup_end = clock_ns() + 60'000'000'000ull;
        while (std::count_if(members_.begin(), members_.end(), [](const Member &m) { return m.ready; }) <
               static_cast<long>(members_.size())) {
            if (clock_ns() > setup_end) die("the members were not all in the room within 60 s");
            poll(100);
        }
        if (o_.proto == "lines") drain_ms(300);  // ncat's join announcements
        std::vector<double> cpu0;
        for (long pid : o_.pids) cpu0.push_back(cpu_us(pid));
        const uint64_t t0 = clock_ns();
        uint64_t said = 0, last = done_, progress = t0;
        while (done_ < o_.lines) {
            while (said < o_.lines && said < done_ + o_.window) say(said++);
            poll(1000);
            if (done_ != last) last = done_, progress = clock_ns();
            if (clock_ns() - progress > 20'000'000'000ull)
                die("no progress for 20 s: %lu of %u lines delivered to every listener", static_cast<unsigned long>(done_),
                    o_.lines);
        }
        const double secs = double(clock_ns() - t0) / 1e9;
        double cpu = 0;
        for (size_t i = 0; i < o_.pids.size(); ++i) cpu += cpu_us(o_.pids[i]) - cpu0[i];
        std::sort(lat_.begin(), lat_.end());
        const double deliveries = double(o_.lines) * o_.members;
        auto pct = [&](double q) { return lat_.empty() ? 0.0 : lat_[std::min(lat_.size() - 1, size_t(q * lat_.size()))] / 1e3; };
        std::printf("%s: %u listeners, %u lines: %.0f deliveries/s, latency p50 %.0f us p99 %.0f us, server CPU %.2f us "
                    "per delivery\n",
                    o_.proto.c_str(), o_.members, o_.lines, deliveries / secs, pct(0.5), pct(0.99),
                    o_.pids.empty() ? 0.0 : cpu / deliveries);
        std::printf("RESULT {\"proto\": \"%s\", \"members\": %u, \"lines\": %u, \"deliveries_per_s\": %.0f, "
                    "\"p50_us\": %.1f, \"p99_us\": %.1f, \"server_cpu_us_per_delivery\": %.3f}\n",
                    o_.proto.c_str(), o_.members, o_.lines, deliveries / secs, pct(0.5), pct(0.99),
                    o_.pids.empty() ? -1.0 : cpu / deliveries);
    }

private:
    void open(unsigned i, int port) {
        Member &m = members_[i];
        m.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(static_cast<uint16_t>(port));
        inet_pton(AF_INET, o_.host.c_str(), &a.sin_addr);
        timeval tv{10, 0};  // a server that stops accepting or reading fails the run instead of hanging it
        if (m.fd >= 0) setsockopt(m.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);  // (connect() obeys it too)
        if (m.fd < 0 || connect(m.fd, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0)
            die("cannot connect member %u: %s", i, std::strerror(errno));
        int one = 1;
        setsockopt(m.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u32 = i;
        epoll_ctl(ep_, EPOLL_CTL_ADD, m.fd, &ev);
        if (o_.proto == "seclink") {
            if (sl_conn_new(&m.conn, SL_CLIENT, psk_) != SL_OK || sl_conn_start(m.conn) != SL_OK) die("sl_conn");
            flush(m);
        } else {
            m.ready = true;
        }
    }

    void flush(Member &m) {  // blocking socket: small writes
        const uint8_t *p = nullptr;
        size_t n = 0;
        sl_conn_pending(m.conn, &p, &n);
        while (n > 0) {
            ssize_t w = write(m.fd, p, n);
            if (w <= 0) die("write: %s", std::strerror(errno));
            sl_conn_consume(m.conn, static_cast<size_t>(w));
            sl_conn_pending(m.conn, &p, &n);
        }
    }

    void say(uint64_t n) {
        Member &s = members_.back();
        char text[64];
        const int len = std::snprintf(text, sizeof text, "%lu %lu", static_cast<unsigned long>(n),
                                      static_cast<unsigned long>(clock_ns()));
        if (o_.proto == "seclink") {
            if (sl_conn_send(s.conn, SL_MSG_DATA, reinterpret_cast<const uint8_t *>(text), size_t(len)) != SL_OK)
                die("send");
            flush(s);
        } else {
            std::string line = std::string(text, size_t(len)) + "\n";
            if (write(s.fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) die("write");
        }
    }

    void drain_ms(int ms) {
        const uint64_t end = clock_ns() + uint64_t(ms) * 1000000ull;
        while (clock_ns() < end) poll(10);
        for (auto &m : members_) m.in.clear();
    }

    void poll(int timeout_ms) {
        epoll_event evs[256];
        int n = epoll_wait(ep_, evs, 256, timeout_ms);
        for (int i = 0; i < n; ++i) read_member(evs[i].data.u32);
    }

    void read_member(unsigned i) {
        Member &m = members_[i];
        uint8_t buf[65536];
        ssize_t r = read(m.fd, buf, sizeof buf);
        if (r <= 0) die("member %u: the server closed the connection", i);
        if (o_.proto == "lines") {
            m.in.append(reinterpret_cast<char *>(buf), size_t(r));
            size_t nl;
            while ((nl = m.in.find('\n')) != std::string::npos) {
                std::string line = m.in.substr(0, nl);
                m.in.erase(0, nl + 1);
                if (line.rfind("<announce>", 0) == 0) continue;
                const size_t sp = line.find("> ");  // "<userN> TEXT"
                if (sp != std::string::npos) line.erase(0, sp + 2);
                heard(i, line);
            }
            return;
        }
        size_t off = 0;
        while (off < size_t(r)) {
            size_t used = 0;
            sl_event ev{};
            if (sl_conn_feed(m.conn, buf + off, size_t(r) - off, &used, &ev) != SL_OK) die("member %u: feed", i);
            off += used;
            if (ev.type == SL_EVENT_HANDSHAKE_DONE) flush(m);  // the key-confirmation PING
            if (ev.type != SL_EVENT_MESSAGE || ev.msg_type != SL_MSG_DATA) continue;
            std::string line(reinterpret_cast<const char *>(ev.data), ev.len);
            if (line.rfind("* you are ", 0) == 0) m.ready = true;
            if (line.rfind("[", 0) != 0) continue;  // notices
            heard(i, line.substr(line.find("] ") + 2));
        }
    }

    void heard(unsigned i, const std::string &text) {
        if (i == o_.members) return;  // the speaker's own lines (seclink echoes them)
        Member &m = members_[i];
        unsigned long n = 0, sent = 0;
        if (std::sscanf(text.c_str(), "%lu %lu", &n, &sent) != 2) return;  // not a bench line
        if (n != m.next) die("member %u got line %lu, expected %lu", i, n, static_cast<unsigned long>(m.next));
        ++m.next;
        lat_.push_back(double(clock_ns() - sent));
        if (++count_[n % kRing] == o_.members) {
            count_[n % kRing] = 0;
            ++done_;
        }
    }

    static constexpr size_t kRing = 1024;  // > window
    Options o_;
    uint8_t psk_[SL_KEY_BYTES]{};
    int ep_ = -1;
    std::vector<Member> members_;
    std::vector<double> lat_;
    unsigned count_[kRing] = {};
    uint64_t done_ = 0;
};

}  // namespace

int main(int argc, char **argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto val = [&]() -> std::string {
            if (i + 1 >= argc) die("%s needs a value", a.c_str());
            return argv[++i];
        };
        if (a == "--port") o.port = std::stoi(val());
        else if (a == "--port2") o.port2 = std::stoi(val());
        else if (a == "--host") o.host = val();
        else if (a == "--members") o.members = unsigned(std::stoul(val()));
        else if (a == "--lines") o.lines = unsigned(std::stoul(val()));
        else if (a == "--window") o.window = unsigned(std::stoul(val()));
        else if (a == "--proto") o.proto = val();
        else if (a == "--psk-file") o.psk_file = val();
        else if (a == "--server-pid") o.pids.push_back(std::stol(val()));
        else die("unknown option %s", a.c_str());
    }
    if (o.port == 0 || (o.proto != "seclink" && o.proto != "lines") || o.window == 0 || o.window >= 1024)
        die("usage: chat_fanout --port P [--members N] [--lines L] [--proto seclink|lines] [--psk-file F] "
            "[--window W<1024] [--server-pid PID] [--port2 P2]");
    rlimit rl{};
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    Fanout(o).run();
    return 0;
}
