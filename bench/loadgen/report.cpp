// loadgen: the human-readable results and the RESULT json (see report.hpp).
#include "report.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

#include "common.hpp"

namespace loadgen {

namespace {

class Json {
public:
    void str(const char *k, const std::string &v) { add(k, std::string("\"").append(v).append("\"")); }  // our values need no escaping
    void num(const char *k, double v, int prec = 3) {
        if (!std::isfinite(v)) return null(k);
        char buf[64];
        std::snprintf(buf, sizeof buf, "%.*f", prec, v);
        add(k, buf);
    }
    void integer(const char *k, long long v) { add(k, std::to_string(v)); }
    void null(const char *k) { add(k, "null"); }
    std::string text() const { return "{" + body_ + "}"; }

private:
    void add(const char *k, const std::string &v) {
        if (!body_.empty()) body_.append(", ");
        body_.append("\"").append(k).append("\": ").append(v);
    }
    std::string body_;
};

double kib_to_mib(long kib) { return static_cast<double>(kib) / 1024.0; }

Json header(const Options &o) {
    Json j;
    j.str("proto", proto_name(o.proto));
    j.str("mode", mode_name(o.mode));
    j.integer("threads", o.threads);
    j.integer("size", static_cast<long long>(o.size));
    j.str("expect", o.expect_echo ? "echo" : "ack");
    return j;
}

}  // namespace

void report_idle(const Config &cfg, double setup_s, const ProcSample &before, const ProcSample &held1,
                 const ProcSample &held2, const ProcSample &after) {
    const Options &o = cfg.opt;
    Json j = header(o);
    std::printf("  %u sessions set up in %.2f s (%.0f/s), each after %u round trip(s), held %.1f s\n", o.conns,
                setup_s, o.conns / setup_s, o.idle_msgs, o.hold);
    j.integer("conns", o.conns);
    j.integer("idle_msgs", o.idle_msgs);
    j.num("setup_s", setup_s);
    if (before.ok && held1.ok && held2.ok) {
        const long held = std::max(held1.rss_kib, held2.rss_kib);
        const double per = static_cast<double>(held - before.rss_kib) / o.conns;
        std::printf("  server RSS     %.1f MiB before, %.1f MiB with the sessions held, %.1f MiB after closing\n",
                    kib_to_mib(before.rss_kib), kib_to_mib(held), kib_to_mib(after.rss_kib));
        std::printf("  per session    %.2f KiB\n", per);
        j.integer("rss_before_kib", before.rss_kib);
        j.integer("rss_held_kib", held);
        j.integer("rss_after_close_kib", after.rss_kib);
        j.num("rss_per_session_kib", per);
    } else {
        j.null("rss_per_session_kib");
    }
    std::printf("RESULT %s\n", j.text().c_str());
}

void report_window(const Config &cfg, double setup_s, const Histogram &lat, uint64_t n, const WindowSamples &w) {
    const Options &o = cfg.opt;
    const ProcSample &s0 = w.server0, &s1 = w.server1;
    const double c0 = w.self0, c1 = w.self1, m0 = w.machine0, m1 = w.machine1;
    Json j = header(o);
    const double window = o.seconds;
    const double rate = static_cast<double>(n) / window;
    const double client_pct = 100 * (c1 - c0) / window;
    const bool have_server = s0.ok && s1.ok;
    const double server_cpu = s1.cpu_s - s0.cpu_s;
    const double cpu_per = n > 0 ? server_cpu / static_cast<double>(n) * 1e6 : NAN;
    if (n == 0) fatal("no %s completed in the %.1f s window", o.mode == Mode::RR ? "round trip" : "session", window);

    const char *unit = o.mode == Mode::RR ? "msg" : "session";
    if (o.mode == Mode::RR) {
        std::printf("  %u connections, setup %.2f s; window %.2f s after %.2f s warm-up\n", o.conns, setup_s, window,
                    o.warmup);
        const double mbps = rate * static_cast<double>(o.size) / 1e6;
        std::printf("  throughput     %.0f msgs/s, %.1f MB/s of request payload (%.3f GB/s)\n", rate, mbps, mbps / 1e3);
        j.integer("conns", o.conns);
        j.num("msgs_per_s", rate, 1);
        j.num("mb_per_s", mbps);
        j.num("gb_per_s", mbps / 1e3, 4);
    } else {
        std::printf("  %u parallel session loops; window %.2f s after %.2f s warm-up\n", o.parallel, window, o.warmup);
        std::printf("  throughput     %.0f sessions/s\n", rate);
        j.integer("parallel", o.parallel);
        j.num("sessions_per_s", rate, 1);
    }
    j.integer("count", static_cast<long long>(n));
    j.num("seconds", window);
    std::printf("  latency        p50 %.1f us, p99 %.1f us, max %.1f us%s\n", lat.quantile(0.5) / 1e3,
                lat.quantile(0.99) / 1e3, static_cast<double>(lat.max()) / 1e3,
                o.mode == Mode::RR ? "" : " (connect to verified reply)");
    j.num("lat_p50_us", lat.quantile(0.5) / 1e3, 1);
    j.num("lat_p99_us", lat.quantile(0.99) / 1e3, 1);
    j.num("lat_max_us", static_cast<double>(lat.max()) / 1e3, 1);
    if (have_server) {
        std::printf("  server CPU     %.2f us/%s (%.0f%% of one core); RSS %.1f -> %.1f MiB\n", cpu_per, unit,
                    100 * server_cpu / window, kib_to_mib(s0.rss_kib), kib_to_mib(s1.rss_kib));
        j.num(o.mode == Mode::RR ? "server_cpu_us_per_msg" : "server_cpu_us_per_session", cpu_per);
        j.num("server_cpu_pct", 100 * server_cpu / window, 1);
        j.integer("server_rss_kib_start", s0.rss_kib);
        j.integer("server_rss_kib_end", s1.rss_kib);
    } else {
        j.null(o.mode == Mode::RR ? "server_cpu_us_per_msg" : "server_cpu_us_per_session");
    }
    std::printf("  loadgen CPU    %.2f us/%s (%.0f%% of one core, %u thread(s))\n", (c1 - c0) / static_cast<double>(n) * 1e6,
                unit, client_pct, o.threads);
    j.num("client_cpu_pct", client_pct, 1);
    if (have_server && std::isfinite(m0) && std::isfinite(m1)) {
        // Everything else that ran: other processes (and interrupts charged to no one).
        const double other_pct = std::max(0.0, 100 * ((m1 - m0) - server_cpu - (c1 - c0)) / window);
        std::printf("  other CPU      %.0f%% of one core (other processes during the window)\n", other_pct);
        j.num("other_cpu_pct", other_pct, 1);
    }
    std::printf("RESULT %s\n", j.text().c_str());
}

}  // namespace loadgen
