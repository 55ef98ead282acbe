// zmq_curve.cpp - baseline (z): what a user would pick instead of seclink, ZeroMQ with CURVE
// security (libzmq from Debian's libzmq3-dev), driven the way bench/loadgen drives seclink.
//
//   zmq_curve server --port 0 --key-file F [--threads N] [--echo]
//       A ROUTER socket with a fresh CURVE key pair; replies "ACK: received N bytes" (or, with
//       --echo, the message itself) to every message. Writes its public key (Z85) to F, then
//       prints "[INFO] Listening on 127.0.0.1:PORT". SIGTERM or SIGINT: exit 0.
//   zmq_curve client --port P --key-file F [--conns N] [--size B] [--seconds S] [--warmup S]
//                    [--server-pid PID] [--expect ack|echo] [--timeout S]
//       N DEALER sockets (each with its own CURVE key pair) driven closed-loop from one thread:
//       one request in flight on each, the next sent when its reply arrives and checks out.
//       Prints human lines, then `RESULT {json}` with loadgen's keys for round-trip rows
//       (msgs_per_s, gb_per_s, lat_p50_us, lat_p99_us, server_cpu_us_per_msg, ...).
//
// --threads is ZeroMQ's I/O thread count; the ROUTER itself is served by one application thread,
// which is how a ZeroMQ server is usually written. See bench/README.md for how this client
// differs from loadgen's.
#include <signal.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "../loadgen/stats.hpp"  // the latency histogram and the /proc samples loadgen uses

namespace {

[[noreturn]] void fatal(const std::string &what) {
    std::fprintf(stderr, "zmq_curve: %s\n", what.c_str());
    std::exit(1);
}

double now_s() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

struct Args {
    std::vector<std::string> v;
    std::string get(const char *name, const char *dflt) const {
        for (size_t i = 0; i + 1 < v.size(); ++i)
            if (v[i] == name) return v[i + 1];
        return dflt;
    }
    bool has(const char *name) const { return std::find(v.begin(), v.end(), name) != v.end(); }
    long num(const char *name, long dflt, long lo, long hi) const {
        const std::string s = get(name, "");
        if (s.empty()) return dflt;
        char *end = nullptr;
        const long n = std::strtol(s.c_str(), &end, 10);
        if (*end != '\0' || n < lo || n > hi)
            fatal(std::string(name) + " must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
        return n;
    }
    double secs(const char *name, double dflt) const {
        const std::string s = get(name, "");
        return s.empty() ? dflt : std::strtod(s.c_str(), nullptr);
    }
};

void check(int rc, const char *what) {
    if (rc != 0) fatal(std::string(what) + ": " + zmq_strerror(zmq_errno()));
}

std::string ack_for(size_t n) { return "ACK: received " + std::to_string(n) + " bytes"; }

volatile sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

int serve(const Args &a) {
    const std::string key_file = a.get("--key-file", "");
    if (key_file.empty()) fatal("server: --key-file is required");
    const bool echo = a.has("--echo");
    char pub[41], sec[41];
    check(zmq_curve_keypair(pub, sec), "zmq_curve_keypair");
    void *ctx = zmq_ctx_new();
    check(zmq_ctx_set(ctx, ZMQ_IO_THREADS, static_cast<int>(a.num("--threads", 1, 1, 64))), "ZMQ_IO_THREADS");
    void *router = zmq_socket(ctx, ZMQ_ROUTER);
    const int one = 1, zero = 0;
    check(zmq_setsockopt(router, ZMQ_CURVE_SERVER, &one, sizeof one), "ZMQ_CURVE_SERVER");
    check(zmq_setsockopt(router, ZMQ_CURVE_SECRETKEY, sec, 40), "ZMQ_CURVE_SECRETKEY");
    check(zmq_setsockopt(router, ZMQ_SNDHWM, &zero, sizeof zero), "ZMQ_SNDHWM");  // never drop a reply
    check(zmq_setsockopt(router, ZMQ_RCVHWM, &zero, sizeof zero), "ZMQ_RCVHWM");
    const std::string port = a.get("--port", "0");
    check(zmq_bind(router, ("tcp://127.0.0.1:" + (port == "0" ? std::string("*") : port)).c_str()), "bind");
    char endpoint[256];
    size_t len = sizeof endpoint;
    check(zmq_getsockopt(router, ZMQ_LAST_ENDPOINT, endpoint, &len), "ZMQ_LAST_ENDPOINT");
    std::ofstream(key_file) << pub << "\n";
    struct sigaction sa {};
    sa.sa_handler = on_signal;  // no SA_RESTART: a blocked zmq_msg_recv returns EINTR
    sigaction(SIGTERM, &sa, nullptr);
    sigaction(SIGINT, &sa, nullptr);
    std::printf("[INFO] zmq_curve server (libzmq %d.%d.%d, CURVE)\n[INFO] Listening on 127.0.0.1:%s\n", ZMQ_VERSION_MAJOR,
                ZMQ_VERSION_MINOR, ZMQ_VERSION_PATCH, std::strrchr(endpoint, ':') + 1);
    std::fflush(stdout);
    zmq_msg_t id, body;
    zmq_msg_init(&id);
    zmq_msg_init(&body);
    while (!g_stop) {
        if (zmq_msg_recv(&id, router, 0) < 0 || zmq_msg_recv(&body, router, 0) < 0) {
            if (zmq_errno() == EINTR) continue;
            fatal(std::string("recv: ") + zmq_strerror(zmq_errno()));
        }
        if (zmq_msg_send(&id, router, ZMQ_SNDMORE) < 0) fatal("send identity");
        if (echo) {
            if (zmq_msg_send(&body, router, 0) < 0) fatal("send echo");
        } else {
            const std::string ack = ack_for(zmq_msg_size(&body));
            if (zmq_send(router, ack.data(), ack.size(), 0) < 0) fatal("send ack");
        }
    }
    zmq_msg_close(&id);
    zmq_msg_close(&body);
    zmq_close(router);
    zmq_ctx_term(ctx);
    return 0;
}

int load(const Args &a) {
    const std::string key_file = a.get("--key-file", "");
    std::ifstream kf(key_file);
    std::string server_key;
    if (!(kf >> server_key) || server_key.size() != 40) fatal("client: no Z85 server key in --key-file " + key_file);
    const long port = a.num("--port", 0, 1, 65535);
    const int conns = static_cast<int>(a.num("--conns", 16, 1, 10000));
    const size_t size = static_cast<size_t>(a.num("--size", 64, 0, 64L << 20));
    const double seconds = a.secs("--seconds", 5), warmup = a.secs("--warmup", 0.5), timeout = a.secs("--timeout", 60);
    const long server_pid = a.num("--server-pid", 0, 0, 1L << 30);
    const bool echo = a.get("--expect", "ack") == "echo";

    void *ctx = zmq_ctx_new();
    std::vector<void *> socks(conns);
    std::vector<zmq_pollitem_t> items(conns);
    const std::string endpoint = "tcp://127.0.0.1:" + std::to_string(port);
    const int zero = 0;
    for (int i = 0; i < conns; ++i) {
        char pub[41], sec[41];
        check(zmq_curve_keypair(pub, sec), "zmq_curve_keypair");
        socks[i] = zmq_socket(ctx, ZMQ_DEALER);
        check(zmq_setsockopt(socks[i], ZMQ_CURVE_SERVERKEY, server_key.data(), 40), "ZMQ_CURVE_SERVERKEY");
        check(zmq_setsockopt(socks[i], ZMQ_CURVE_PUBLICKEY, pub, 40), "ZMQ_CURVE_PUBLICKEY");
        check(zmq_setsockopt(socks[i], ZMQ_CURVE_SECRETKEY, sec, 40), "ZMQ_CURVE_SECRETKEY");
        check(zmq_setsockopt(socks[i], ZMQ_LINGER, &zero, sizeof zero), "ZMQ_LINGER");
        check(zmq_connect(socks[i], endpoint.c_str()), "connect");
        items[i] = {socks[i], 0, ZMQ_POLLIN, 0};
    }
    std::string request(size, 'x');
    for (size_t i = 0; i < size; ++i) request[i] = static_cast<char>('a' + i % 26);
    const std::string ack = ack_for(size);
    std::vector<double> sent_at(conns);
    loadgen::Histogram lat_ns;
    const double start = now_s();
    for (int i = 0; i < conns; ++i) {
        sent_at[i] = now_s();
        if (zmq_send(socks[i], request.data(), size, 0) < 0) fatal("send");
    }
    const double t0 = start + warmup, t1 = t0 + seconds;
    loadgen::ProcSample s0, s1;
    double me0 = NAN, me1 = NAN, m0 = NAN, m1 = NAN;
    bool in_window = false;
    long count = 0;
    double last_reply = start;
    zmq_msg_t reply;
    zmq_msg_init(&reply);
    for (;;) {
        const double now = now_s();
        if (!in_window && now >= t0) {
            in_window = true;
            s0 = loadgen::sample_proc(static_cast<pid_t>(server_pid));
            me0 = loadgen::self_cpu_s(), m0 = loadgen::machine_busy_s();
        }
        if (now >= t1) break;
        if (now - last_reply > timeout) fatal("no reply for " + std::to_string(timeout) + " s");
        if (zmq_poll(items.data(), conns, 100) < 0) fatal("zmq_poll");
        for (int i = 0; i < conns; ++i) {
            if (!(items[i].revents & ZMQ_POLLIN)) continue;
            while (zmq_msg_recv(&reply, socks[i], ZMQ_DONTWAIT) >= 0) {
                const char *d = static_cast<const char *>(zmq_msg_data(&reply));
                const size_t n = zmq_msg_size(&reply);
                const bool ok = echo ? n == size && std::memcmp(d, request.data(), n) == 0
                                     : n == ack.size() && std::memcmp(d, ack.data(), n) == 0;
                if (!ok) fatal("wrong reply (" + std::to_string(n) + " bytes)");
                const double t = now_s();
                last_reply = t;
                if (t >= t0 && t < t1) {
                    ++count;
                    lat_ns.add(static_cast<uint64_t>((t - sent_at[i]) * 1e9));
                }
                sent_at[i] = t;
                if (zmq_send(socks[i], request.data(), size, 0) < 0) fatal("send");
            }
        }
    }
    s1 = loadgen::sample_proc(static_cast<pid_t>(server_pid));
    me1 = loadgen::self_cpu_s(), m1 = loadgen::machine_busy_s();
    const double window = now_s() - t0;
    zmq_msg_close(&reply);
    for (void *s : socks) zmq_close(s);
    zmq_ctx_term(ctx);
    if (count == 0) fatal("no round trip completed in the window");

    auto q = [&](double p) { return lat_ns.quantile(p) / 1e3; };
    const double max_us = static_cast<double>(lat_ns.max()) / 1e3;
    const double rate = static_cast<double>(count) / window, mbps = rate * static_cast<double>(size) / 1e6;
    const double server_cpu = s1.cpu_s - s0.cpu_s, mine = me1 - me0;
    std::printf("zmq_curve: %d DEALER connections, %zu B requests, CURVE\n", conns, size);
    std::printf("  throughput     %.0f msgs/s, %.1f MB/s of request payload (%.3f GB/s)\n", rate, mbps, mbps / 1e3);
    std::printf("  latency        p50 %.1f us, p99 %.1f us, max %.1f us\n", q(0.5), q(0.99), max_us);
    std::ostringstream j;
    j.setf(std::ios::fixed);
    j.precision(3);
    j << "{\"proto\": \"zmq-curve\", \"mode\": \"rr\", \"size\": " << size << ", \"conns\": " << conns
      << ", \"msgs_per_s\": " << rate << ", \"mb_per_s\": " << mbps << ", \"gb_per_s\": " << mbps / 1e3
      << ", \"count\": " << count << ", \"seconds\": " << window << ", \"lat_p50_us\": " << q(0.5)
      << ", \"lat_p99_us\": " << q(0.99) << ", \"lat_max_us\": " << max_us;
    if (s0.ok && s1.ok) {
        std::printf("  server CPU     %.2f us/msg (%.0f%% of one core); RSS %.1f -> %.1f MiB\n",
                    server_cpu / static_cast<double>(count) * 1e6, 100 * server_cpu / window, static_cast<double>(s0.rss_kib) / 1024,
                    static_cast<double>(s1.rss_kib) / 1024);
        j << ", \"server_cpu_us_per_msg\": " << server_cpu / static_cast<double>(count) * 1e6
          << ", \"server_cpu_pct\": " << 100 * server_cpu / window << ", \"server_rss_kib_start\": " << s0.rss_kib
          << ", \"server_rss_kib_end\": " << s1.rss_kib;
        const double other = std::max(0.0, 100 * ((m1 - m0) - server_cpu - mine) / window);
        std::printf("  other CPU      %.0f%% of one core (other processes during the window)\n", other);
        j << ", \"other_cpu_pct\": " << other;
    }
    std::printf("  client CPU     %.2f us/msg (%.0f%% of one core)\n", mine / static_cast<double>(count) * 1e6,
                100 * mine / window);
    j << ", \"client_cpu_pct\": " << 100 * mine / window << "}";
    std::printf("RESULT %s\n", j.str().c_str());
    return 0;
}

}  // namespace

int main(int argc, char **argv) {
    Args a{std::vector<std::string>(argv + 1, argv + argc)};
    if (a.v.empty() || a.has("--help") || (a.v[0] != "server" && a.v[0] != "client")) {
        std::printf("usage: zmq_curve server --port P --key-file F [--threads N] [--echo]\n"
                    "       zmq_curve client --port P --key-file F [--conns N] [--size B] [--seconds S] [--warmup S]\n"
                    "                        [--server-pid PID] [--expect ack|echo] [--timeout S]\n"
                    "Baseline (z) of make bench: ZeroMQ ROUTER/DEALER with CURVE (see bench/README.md).\n");
        return a.has("--help") ? 0 : 2;
    }
    if (!zmq_has("curve")) fatal("this libzmq has no CURVE support");
    return a.v[0] == "server" ? serve(a) : load(a);
}
