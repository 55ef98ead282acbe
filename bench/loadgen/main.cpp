// loadgen - a closed-loop load generator for seclink/1 servers and for the benchmark baselines.
//
//   loadgen --port P --proto seclink|seclink-tls|raw|tls-raw|cbc [--mode rr|idle|sessions] ...
//
// One epoll event loop per thread (--threads), non-blocking sockets, level-triggered epoll with
// EPOLLOUT armed only while output is blocked. Modes:
//   rr        --conns N connections, exactly one request in flight on each; every reply is checked
//             (a wrong reply aborts the run). Figures cover --seconds after a --warmup that is
//             not counted: replies that arrive inside the window are counted, and their latency
//             is the time from the request's send() to the reply's verification.
//   idle      opens and handshakes --conns N sessions (--ramp at a time per thread), exchanges
//             --idle-msgs round trips on each, holds them for --hold seconds and reports the
//             server's RSS growth per session; then closes them.
//   sessions  --parallel loops of: connect + (TLS +) handshake + one request + CLOSE + close.
//
// Protocols: seclink (the seclink/1 engine through the public C ABI only), seclink-tls (the same
// inside TLS 1.3, certificate verified against --tls-ca and the host name), raw (u32be length +
// payload, echoed back), tls-raw (raw inside TLS 1.3), cbc (the AES-256-CBC + HMAC-SHA-256 frames
// of bench/baselines/cbc_threaded_server.py).
//
// The server's CPU time (utime+stime of /proc/PID/stat, all threads) and RSS (VmRSS of
// /proc/PID/status) are sampled by the main thread at the start and the end of the window.
// The last line printed is `RESULT {json}` for bench/run_bench.py.
//
// The parts: options (command line), common (helpers), stats (histogram, /proc samples),
// request (payloads, reply checks), protocol* and cbc (the protocol clients), stream (TCP or
// TLS), loop (event loop, connection state machine), worker (the modes), report (output).
// This file: the process setup, the threads and the measured window.
#include <arpa/inet.h>
#include <netdb.h>
#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <sys/resource.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "cbc.hpp"
#include "common.hpp"
#include "conn.hpp"
#include "report.hpp"
#include "stats.hpp"
#include "worker.hpp"

using namespace loadgen;

namespace {

// Every connection is a file descriptor: use the hard limit.
void raise_open_files(unsigned live) {
    rlimit rl{};
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < live + 64u)
        fatal("%u connections need more open files than the limit of %llu (ulimit -Hn)", live,
              static_cast<unsigned long long>(rl.rlim_cur));
}

// The server address (resolved once, IPv4), the expected ACK, the keys and the TLS context.
void prepare(Config &cfg) {
    const Options &o = cfg.opt;
    addrinfo hints{}, *res = nullptr;
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    const std::string port = std::to_string(o.port);
    if (int rc = getaddrinfo(o.host.c_str(), port.c_str(), &hints, &res); rc != 0 || res == nullptr)
        fatal("cannot resolve %s: %s", o.host.c_str(), gai_strerror(rc));
    std::memcpy(&cfg.addr, res->ai_addr, sizeof cfg.addr);
    freeaddrinfo(res);
    in6_addr a6{};
    cfg.host_is_ip = inet_pton(AF_INET, o.host.c_str(), &a6) == 1 || inet_pton(AF_INET6, o.host.c_str(), &a6) == 1;

    char ack[64];
    std::snprintf(ack, sizeof ack, "ACK: received %zu bytes", o.size);
    cfg.ack = ack;

    if (!is_raw(o.proto)) {
        char path[4096];
        int rc = sl_key_path(o.psk_file.empty() ? nullptr : o.psk_file.c_str(), path, sizeof path, nullptr);
        if (rc == SL_OK) rc = sl_key_load(path, cfg.psk);
        if (rc != SL_OK) fatal("cannot load the pre-shared key %s: %s", path, sl_strerror(rc));
        if (o.proto == Proto::Cbc) derive_cbc_keys(cfg.psk, cfg.cbc_enc, cfg.cbc_mac);
    }
    if (is_tls(o.proto)) {
        cfg.tls = SSL_CTX_new(TLS_client_method());
        if (cfg.tls == nullptr || SSL_CTX_set_min_proto_version(cfg.tls, TLS1_3_VERSION) != 1)
            fatal("cannot create the TLS context: %s", openssl_errors().c_str());
        if (SSL_CTX_load_verify_locations(cfg.tls, o.tls_ca.c_str(), nullptr) != 1)
            fatal("cannot load the CA file %s: %s", o.tls_ca.c_str(), openssl_errors().c_str());
        SSL_CTX_set_verify(cfg.tls, SSL_VERIFY_PEER, nullptr);
        SSL_CTX_set_session_cache_mode(cfg.tls, SSL_SESS_CACHE_OFF);  // every session: a full handshake
        SSL_CTX_set_mode(cfg.tls, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    }
}

// rr and sessions: starts a timed window after the warm-up, samples it, waits for the threads.
void run_window(const Config &cfg, Shared &sh, double setup_s, const std::vector<std::unique_ptr<Worker>> &workers,
                std::vector<std::thread> &threads) {
    const Options &o = cfg.opt;
    const auto pid = static_cast<pid_t>(o.server_pid);
    const uint64_t start = now_ns();
    const uint64_t t0 = start + seconds_to_ns(o.warmup), t1 = t0 + seconds_to_ns(o.seconds);
    sh.t0.store(t0);
    sh.t1.store(t1);
    sh.go.store(true, std::memory_order_release);
    WindowSamples w;
    sleep_until_ns(t0);
    w.server0 = sample_proc(pid);
    w.self0 = self_cpu_s(), w.machine0 = machine_busy_s();
    sleep_until_ns(t1);
    w.server1 = sample_proc(pid);
    w.self1 = self_cpu_s(), w.machine1 = machine_busy_s();
    for (auto &t : threads) t.join();

    Histogram lat;
    uint64_t n = 0;
    for (auto &wk : workers) {
        lat.merge(wk->latency());
        n += wk->counted();
    }
    report_window(cfg, setup_s, lat, n, w);
}

}  // namespace

int main(int argc, char **argv) {
    Config cfg;
    cfg.opt = parse_options(argc, argv);
    const Options &o = cfg.opt;
    std::signal(SIGPIPE, SIG_IGN);  // OpenSSL writes with write(2): a reset peer must not kill us
    const unsigned live = live_conns(o);
    raise_open_files(live);
    prepare(cfg);

    std::printf("loadgen: %s, mode %s, %u %s, %zu-byte requests, %u thread(s), expecting %s\n", proto_name(o.proto),
                mode_name(o.mode), live, o.mode == Mode::Sessions ? "parallel sessions" : "connections", o.size,
                o.threads, o.expect_echo ? "the echo" : ("\"" + cfg.ack + "\"").c_str());
    std::fflush(stdout);

    const auto pid = static_cast<pid_t>(o.server_pid);
    const ProcSample before = sample_proc(pid);
    if (pid > 0 && !before.ok) fatal("cannot read /proc/%ld/stat: is --server-pid right?", o.server_pid);

    // Connections are spread round-robin over the threads.
    Shared sh;
    const uint64_t t_setup = now_ns();
    sh.setup_deadline = t_setup + seconds_to_ns(o.timeout);
    std::vector<std::unique_ptr<Worker>> workers;
    for (unsigned t = 0; t < o.threads; ++t)
        workers.push_back(Worker::make(cfg, sh, t, live / o.threads + (t < live % o.threads ? 1 : 0)));
    std::vector<std::thread> threads;
    for (auto &w : workers) threads.emplace_back([&w] { w->run(); });

    while (sh.ready.load() < o.threads) {  // bounded by the setup deadline
        if (now_ns() > sh.setup_deadline + seconds_to_ns(5)) fatal("setup did not finish within %.0f s", o.timeout);
        sleep_until_ns(now_ns() + 2000000);
    }
    const double setup_s = static_cast<double>(now_ns() - t_setup) / 1e9;

    if (o.mode == Mode::Idle) {
        // Let the server finish whatever it does after the last reply, then sample while held.
        sleep_until_ns(now_ns() + seconds_to_ns(std::min(0.5, o.hold)));
        const ProcSample held1 = sample_proc(pid);
        sleep_until_ns(now_ns() + seconds_to_ns(o.hold));
        const ProcSample held2 = sample_proc(pid);
        sh.release.store(true, std::memory_order_release);
        for (auto &t : threads) t.join();
        sleep_until_ns(now_ns() + seconds_to_ns(0.5));
        const ProcSample after = sample_proc(pid);
        report_idle(cfg, setup_s, before, held1, held2, after);
    } else {
        run_window(cfg, sh, setup_s, workers, threads);
    }
    if (cfg.tls) SSL_CTX_free(cfg.tls);
    OPENSSL_cleanse(cfg.psk, sizeof cfg.psk);
    return 0;
}
