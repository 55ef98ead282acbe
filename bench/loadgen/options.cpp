// loadgen: command-line parsing and the --help text.
#include "options.hpp"

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>

namespace loadgen {

const char *proto_name(Proto p) {
    switch (p) {
    case Proto::Seclink: return "seclink";
    case Proto::SeclinkTls: return "seclink-tls";
    case Proto::Raw: return "raw";
    case Proto::TlsRaw: return "tls-raw";
    case Proto::Cbc: return "cbc";
    }
    return "?";
}
const char *mode_name(Mode m) { return m == Mode::RR ? "rr" : m == Mode::Idle ? "idle" : "sessions"; }

namespace {

const char *kUsage =
    "usage: loadgen --port P [--host 127.0.0.1] --proto seclink|seclink-tls|raw|tls-raw|cbc\n"
    "               [--mode rr|idle|sessions] [options]\n"
    "\n"
    "  --mode rr         N connections, one request in flight on each, for a fixed time (default)\n"
    "  --mode idle       open and handshake N sessions, hold them, report server RSS per session\n"
    "  --mode sessions   new sessions: connect + handshake + one message + CLOSE + close\n"
    "\n"
    "  --conns N         connections (rr, idle; default 16, at most 100000)\n"
    "  --size BYTES      request payload (default 64)\n"
    "  --seconds S       measured window (rr, sessions; default 5)\n"
    "  --warmup S        not counted, before the window (default 0.5)\n"
    "  --parallel N      concurrent session loops (sessions; default 16)\n"
    "  --threads N       event-loop threads (default 1)\n"
    "  --ramp N          connections being set up at once per thread (default 256)\n"
    "  --idle-msgs N     round trips on each idle session before holding it (default 1; 0 = none)\n"
    "  --hold S          how long idle sessions are held (default 1)\n"
    "  --timeout S       limit for setting up all connections and for draining replies (default 60)\n"
    "  --psk-file PATH   pre-shared key (seclink, seclink-tls, cbc; default: the usual key path)\n"
    "  --tls-ca FILE     PEM CA the server certificate must verify against (TLS protocols)\n"
    "  --expect ack|echo reply check for seclink* and cbc (default ack: \"ACK: received N bytes\");\n"
    "                    raw and tls-raw always expect the echo\n"
    "  --server-pid PID  sample this process's CPU time and RSS\n"
    "  --cbc-reseal      cbc with ACK replies: seal every request anew (default: each connection\n"
    "                    resends one sealed request; the protocol has no counter, the server's work\n"
    "                    is the same, and the loadgen's CPU is left to the server)\n"
    "\n"
    "Output: human-readable lines, then one line `RESULT {json}`. Exit 1 on any failed check.\n";

[[noreturn]] void usage_error(const char *fmt, const char *arg) {
    std::fprintf(stderr, "loadgen: ");
    std::fprintf(stderr, fmt, arg);
    std::fprintf(stderr, "\n\n%s", kUsage);
    std::exit(2);
}

unsigned long long parse_uint(const char *name, const char *s, unsigned long long lo, unsigned long long hi) {
    char *end = nullptr;
    errno = 0;
    const unsigned long long v = std::strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v < lo || v > hi) {
        std::fprintf(stderr, "loadgen: %s must be an integer in [%llu, %llu], not '%s'\n", name, lo, hi, s);
        std::exit(2);
    }
    return v;
}

double parse_seconds(const char *name, const char *s, double lo, double hi) {
    char *end = nullptr;
    const double v = std::strtod(s, &end);
    if (end == s || *end != '\0' || !(v >= lo && v <= hi)) {
        std::fprintf(stderr, "loadgen: %s must be a number of seconds in [%g, %g], not '%s'\n", name, lo, hi, s);
        std::exit(2);
    }
    return v;
}

}  // namespace

Options parse_options(int argc, char **argv) {
    Options o;
    bool have_port = false;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--help" || a == "-h") {
            std::fputs(kUsage, stdout);
            std::exit(0);
        }
        if (a == "--cbc-reseal") {
            o.cbc_reseal = true;
            continue;
        }
        if (i + 1 >= argc) usage_error("missing value for %s", argv[i]);
        const char *v = argv[++i];
        if (a == "--host") o.host = v;
        else if (a == "--port") o.port = static_cast<unsigned>(parse_uint("--port", v, 1, 65535)), have_port = true;
        else if (a == "--proto") {
            const std::string p = v;
            if (p == "seclink") o.proto = Proto::Seclink;
            else if (p == "seclink-tls") o.proto = Proto::SeclinkTls;
            else if (p == "raw") o.proto = Proto::Raw;
            else if (p == "tls-raw") o.proto = Proto::TlsRaw;
            else if (p == "cbc") o.proto = Proto::Cbc;
            else usage_error("unknown --proto '%s'", v);
        } else if (a == "--mode") {
            const std::string m = v;
            if (m == "rr") o.mode = Mode::RR;
            else if (m == "idle") o.mode = Mode::Idle;
            else if (m == "sessions") o.mode = Mode::Sessions;
            else usage_error("unknown --mode '%s'", v);
        } else if (a == "--conns") o.conns = static_cast<unsigned>(parse_uint("--conns", v, 1, 100000));
        else if (a == "--size") o.size = static_cast<size_t>(parse_uint("--size", v, 1, 16u * 1024 * 1024));
        else if (a == "--seconds") o.seconds = parse_seconds("--seconds", v, 0.1, 3600);
        else if (a == "--warmup") o.warmup = parse_seconds("--warmup", v, 0, 600);
        else if (a == "--parallel") o.parallel = static_cast<unsigned>(parse_uint("--parallel", v, 1, 10000));
        else if (a == "--threads") o.threads = static_cast<unsigned>(parse_uint("--threads", v, 1, 256));
        else if (a == "--ramp") o.ramp = static_cast<unsigned>(parse_uint("--ramp", v, 1, 100000));
        else if (a == "--idle-msgs") o.idle_msgs = static_cast<unsigned>(parse_uint("--idle-msgs", v, 0, 1000));
        else if (a == "--hold") o.hold = parse_seconds("--hold", v, 0, 3600);
        else if (a == "--timeout") o.timeout = parse_seconds("--timeout", v, 1, 3600);
        else if (a == "--psk-file") o.psk_file = v;
        else if (a == "--tls-ca") o.tls_ca = v;
        else if (a == "--expect") {
            const std::string e = v;
            if (e != "ack" && e != "echo") usage_error("--expect is ack or echo, not '%s'", v);
            o.expect_echo = e == "echo";
            o.expect_given = true;
        } else if (a == "--server-pid") o.server_pid = static_cast<long>(parse_uint("--server-pid", v, 1, INT_MAX));
        else usage_error("unknown option %s", argv[i - 1]);
    }
    if (!have_port) usage_error("%s", "--port is required");
    if (is_raw(o.proto)) {
        if (o.expect_given && !o.expect_echo) usage_error("--proto %s is always echoed: --expect ack is not possible", proto_name(o.proto));
        o.expect_echo = true;
    }
    if (is_tls(o.proto) && o.tls_ca.empty()) usage_error("--proto %s needs --tls-ca FILE", proto_name(o.proto));
    // Bound the memory the requests can take (each connection keeps its request until written).
    const unsigned live = live_conns(o);
    if (static_cast<double>(live) * static_cast<double>(o.size) > 4e9)
        usage_error("%s", "--conns (or --parallel) x --size is over 4 GB");
    if (o.threads > live) o.threads = live;
    return o;
}

}  // namespace loadgen
