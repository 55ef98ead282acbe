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
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cmath>
#include <csignal>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "seclink/seclink.h"

namespace {

// ---- small helpers -------------------------------------------------------------------------

uint64_t now_ns() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

uint64_t seconds_to_ns(double s) { return static_cast<uint64_t>(std::llround(s * 1e9)); }

void sleep_until_ns(uint64_t t) {
    for (int i = 0; i < 1000; ++i) {  // bounded: clock_nanosleep only returns early on a signal
        const uint64_t now = now_ns();
        if (now >= t) return;
        const uint64_t d = t - now;
        timespec ts{static_cast<time_t>(d / 1000000000ull), static_cast<long>(d % 1000000000ull)};
        nanosleep(&ts, nullptr);
    }
}

// Prints the message and ends the process at once (from any thread: a failed check must stop
// every connection, and no thread may keep running while static objects are destroyed).
[[noreturn]] __attribute__((format(printf, 1, 2))) void fatal(const char *fmt, ...) {
    static std::mutex mu;
    mu.lock();  // never released: the first failure is the one reported
    std::fflush(stdout);
    std::fputs("loadgen: error: ", stderr);
    va_list ap;
    va_start(ap, fmt);
    std::vfprintf(stderr, fmt, ap);
    va_end(ap);
    std::fputc('\n', stderr);
    std::fflush(stderr);
    std::_Exit(1);
}

std::string openssl_errors() {
    std::string out;
    for (int i = 0; i < 8; ++i) {  // the queue is short; bounded anyway
        const unsigned long e = ERR_get_error();
        if (e == 0) break;
        char buf[256];
        ERR_error_string_n(e, buf, sizeof buf);
        if (!out.empty()) out += "; ";
        out += buf;
    }
    return out.empty() ? "no OpenSSL error queued" : out;
}

void put_be32(uint8_t *p, uint32_t v) {
    p[0] = static_cast<uint8_t>(v >> 24);
    p[1] = static_cast<uint8_t>(v >> 16);
    p[2] = static_cast<uint8_t>(v >> 8);
    p[3] = static_cast<uint8_t>(v);
}

uint32_t get_be32(const uint8_t *p) {
    return (static_cast<uint32_t>(p[0]) << 24) | (static_cast<uint32_t>(p[1]) << 16) |
           (static_cast<uint32_t>(p[2]) << 8) | static_cast<uint32_t>(p[3]);
}

// Printable preview of a reply for error messages.
std::string preview(const uint8_t *p, size_t n) {
    std::string s;
    for (size_t i = 0; i < n && i < 48; ++i) {
        const unsigned char ch = p[i];
        if (ch >= 0x20 && ch < 0x7f && ch != '\\') {
            s += static_cast<char>(ch);
        } else {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\x%02x", ch);
            s += buf;
        }
    }
    if (n > 48) s += "...";
    return s;
}

// ---- latency histogram: log-linear buckets, under 1.6% relative error -----------------------

class Histogram {
public:
    void add(uint64_t v) {
        ++counts_[index(v)];
        ++n_;
        if (v > max_) max_ = v;
    }
    void merge(const Histogram &o) {
        for (size_t i = 0; i < kBuckets; ++i) counts_[i] += o.counts_[i];
        n_ += o.n_;
        max_ = std::max(max_, o.max_);
    }
    uint64_t count() const { return n_; }
    uint64_t max() const { return max_; }
    // The q-quantile (0 < q <= 1) as the middle of its bucket; 0 when empty.
    double quantile(double q) const {
        if (n_ == 0) return 0;
        const auto target = static_cast<uint64_t>(std::ceil(q * static_cast<double>(n_)));
        uint64_t seen = 0;
        for (size_t i = 0; i < kBuckets; ++i) {
            seen += counts_[i];
            if (seen >= target && counts_[i] > 0) return std::min(middle(i), static_cast<double>(max_));
        }
        return static_cast<double>(max_);
    }

private:
    static constexpr unsigned kSubBits = 6, kSub = 1u << kSubBits;  // 64 buckets per power of two
    static constexpr size_t kBuckets = 2 * kSub + (64 - kSubBits - 1) * kSub;
    static size_t index(uint64_t v) {
        if (v < 2 * kSub) return static_cast<size_t>(v);  // exact below 128
        const unsigned e = 63u - static_cast<unsigned>(__builtin_clzll(v));
        const unsigned shift = e - kSubBits;
        const auto m = static_cast<unsigned>(v >> shift);  // in [kSub, 2*kSub)
        return 2 * kSub + (e - kSubBits - 1) * kSub + (m - kSub);
    }
    static double middle(size_t i) {
        if (i < 2 * kSub) return static_cast<double>(i);
        const size_t e = (i - 2 * kSub) / kSub + kSubBits + 1, m = (i - 2 * kSub) % kSub + kSub;
        const double width = std::ldexp(1.0, static_cast<int>(e - kSubBits));
        return static_cast<double>(m) * width + width / 2;
    }
    std::vector<uint64_t> counts_ = std::vector<uint64_t>(kBuckets);
    uint64_t n_ = 0, max_ = 0;
};

// ---- the server process, read from /proc ---------------------------------------------------

struct ProcSample {
    bool ok = false;
    double cpu_s = 0;   // utime + stime of every thread, in seconds
    long rss_kib = 0;   // VmRSS
};

ProcSample sample_proc(pid_t pid) {
    ProcSample s;
    if (pid <= 0) return s;
    char path[64];
    std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
    std::ifstream stat(path);
    std::string line;
    if (!std::getline(stat, line)) return s;
    // Field 2 (comm) is in parentheses and may contain spaces: parse after the last ')'.
    const size_t close = line.rfind(')');
    if (close == std::string::npos) return s;
    std::istringstream rest(line.substr(close + 2));
    std::string field;
    unsigned long long utime = 0, stime = 0;
    for (int i = 3; i <= 15 && rest >> field; ++i) {  // fields 3..15; utime is 14, stime 15
        if (i == 14) utime = std::strtoull(field.c_str(), nullptr, 10);
        if (i == 15) stime = std::strtoull(field.c_str(), nullptr, 10);
    }
    s.cpu_s = static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
    std::snprintf(path, sizeof path, "/proc/%d/status", static_cast<int>(pid));
    std::ifstream status(path);
    for (int i = 0; i < 200 && std::getline(status, line); ++i) {
        if (line.rfind("VmRSS:", 0) == 0) s.rss_kib = std::strtol(line.c_str() + 6, nullptr, 10);
    }
    s.ok = true;
    return s;
}

// Busy CPU time of the whole machine (every CPU, seconds) from the first line of /proc/stat;
// with the server's and our own, it shows how much else ran during the window.
double machine_busy_s() {
    std::ifstream stat("/proc/stat");
    std::string cpu;
    unsigned long long v[8] = {};  // user nice system idle iowait irq softirq steal
    if (!(stat >> cpu) || cpu != "cpu") return NAN;
    for (auto &x : v)
        if (!(stat >> x)) return NAN;
    const unsigned long long busy = v[0] + v[1] + v[2] + v[5] + v[6];  // steal: not ours to use
    return static_cast<double>(busy) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

double self_cpu_s() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

// ---- options -------------------------------------------------------------------------------

enum class Proto { Seclink, SeclinkTls, Raw, TlsRaw, Cbc };
enum class Mode { RR, Idle, Sessions };

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

struct Options {
    std::string host = "127.0.0.1";
    unsigned port = 0;
    Proto proto = Proto::Seclink;
    Mode mode = Mode::RR;
    unsigned conns = 16;
    size_t size = 64;
    double seconds = 5;
    double warmup = 0.5;
    unsigned parallel = 16;
    unsigned threads = 1;
    unsigned ramp = 256;
    unsigned idle_msgs = 1;
    double hold = 1.0;
    double timeout = 60;
    std::string psk_file, tls_ca;
    bool expect_echo = false, expect_given = false;
    bool cbc_reseal = false;
    long server_pid = 0;
};

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
    const bool raw_framing = o.proto == Proto::Raw || o.proto == Proto::TlsRaw;
    if (raw_framing) {
        if (o.expect_given && !o.expect_echo) usage_error("--proto %s is always echoed: --expect ack is not possible", proto_name(o.proto));
        o.expect_echo = true;
    }
    const bool tls = o.proto == Proto::SeclinkTls || o.proto == Proto::TlsRaw;
    if (tls && o.tls_ca.empty()) usage_error("--proto %s needs --tls-ca FILE", proto_name(o.proto));
    // Bound the memory the requests can take (each connection keeps its request until written).
    const unsigned live = o.mode == Mode::Sessions ? o.parallel : o.conns;
    if (static_cast<double>(live) * static_cast<double>(o.size) > 4e9)
        usage_error("%s", "--conns (or --parallel) x --size is over 4 GB");
    if (o.threads > live) o.threads = live;
    return o;
}

// ---- baseline (b): AES-256-CBC + HMAC-SHA-256, encrypt-then-MAC ------------------------------
// Must match bench/baselines/cbc_threaded_server.py:
//   enc_key || mac_key = HKDF-SHA-256(ikm = PSK, salt = kCbcSalt, info = kCbcInfo, 64 bytes)
//   frame = u32be(N) || iv (16, random) || AES-256-CBC(enc_key, iv, PKCS#7(plaintext))
//           || HMAC-SHA-256(mac_key, iv || ciphertext)         with N = 16 + len(ciphertext) + 32
// The same keys serve both directions (the old design did; it is a baseline, not a proposal).

constexpr size_t kCbcIv = 16, kCbcBlock = 16, kCbcTag = 32;
constexpr char kCbcSalt[] = "seclink-bench cbc baseline v1";
constexpr char kCbcInfo[] = "aes-256-cbc key || hmac-sha-256 key";

size_t cbc_body_len(size_t plaintext) { return kCbcIv + (plaintext / kCbcBlock + 1) * kCbcBlock + kCbcTag; }

void derive_cbc_keys(const uint8_t psk[SL_KEY_BYTES], uint8_t enc[32], uint8_t mac[32]) {
    EVP_KDF *kdf = EVP_KDF_fetch(nullptr, "HKDF", nullptr);
    EVP_KDF_CTX *ctx = kdf ? EVP_KDF_CTX_new(kdf) : nullptr;
    uint8_t out[64];
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, const_cast<char *>("SHA256"), 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, const_cast<uint8_t *>(psk), SL_KEY_BYTES),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, const_cast<char *>(kCbcSalt), sizeof kCbcSalt - 1),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, const_cast<char *>(kCbcInfo), sizeof kCbcInfo - 1),
        OSSL_PARAM_construct_end()};
    if (ctx == nullptr || EVP_KDF_derive(ctx, out, sizeof out, params) != 1)
        fatal("HKDF for the cbc keys failed: %s", openssl_errors().c_str());
    std::memcpy(enc, out, 32);
    std::memcpy(mac, out + 32, 32);
    OPENSSL_cleanse(out, sizeof out);
    EVP_KDF_CTX_free(ctx);
    EVP_KDF_free(kdf);
}

// One per thread (OpenSSL contexts are not shared between threads).
class CbcCipher {
public:
    CbcCipher(const uint8_t enc_key[32], const uint8_t mac_key[32]) {
        std::memcpy(mac_key_, mac_key, sizeof mac_key_);
        enc_ = EVP_CIPHER_CTX_new();
        dec_ = EVP_CIPHER_CTX_new();
        mac_ = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
        mctx_ = mac_ ? EVP_MAC_CTX_new(mac_) : nullptr;
        if (!enc_ || !dec_ || !mctx_ || EVP_EncryptInit_ex(enc_, EVP_aes_256_cbc(), nullptr, enc_key, nullptr) != 1 ||
            EVP_DecryptInit_ex(dec_, EVP_aes_256_cbc(), nullptr, enc_key, nullptr) != 1)
            fatal("cannot set up AES-256-CBC / HMAC: %s", openssl_errors().c_str());
    }
    ~CbcCipher() {
        EVP_CIPHER_CTX_free(enc_);
        EVP_CIPHER_CTX_free(dec_);
        EVP_MAC_CTX_free(mctx_);
        EVP_MAC_free(mac_);
        OPENSSL_cleanse(mac_key_, sizeof mac_key_);
    }
    CbcCipher(const CbcCipher &) = delete;
    CbcCipher &operator=(const CbcCipher &) = delete;

    // Replaces `frame` with the whole wire frame (length prefix included) carrying `pt`.
    void seal(const uint8_t *pt, size_t n, std::vector<uint8_t> &frame) {
        const size_t body = cbc_body_len(n);
        frame.resize(4 + body);
        uint8_t *iv = frame.data() + 4, *ct = iv + kCbcIv;
        int len1 = 0, len2 = 0;
        if (RAND_bytes(iv, static_cast<int>(kCbcIv)) != 1 || EVP_EncryptInit_ex(enc_, nullptr, nullptr, nullptr, iv) != 1 ||
            EVP_EncryptUpdate(enc_, ct, &len1, pt, static_cast<int>(n)) != 1 || EVP_EncryptFinal_ex(enc_, ct + len1, &len2) != 1)
            fatal("AES-256-CBC encryption failed: %s", openssl_errors().c_str());
        const size_t ct_len = static_cast<size_t>(len1) + static_cast<size_t>(len2);
        if (ct_len + kCbcIv + kCbcTag != body) fatal("AES-256-CBC produced %zu bytes, expected %zu", ct_len, body - 48);
        mac(iv, kCbcIv + ct_len, ct + ct_len);
        put_be32(frame.data(), static_cast<uint32_t>(body));
    }

    // Verifies and decrypts a frame body into `pt` (room for n bytes); returns the plaintext
    // length, or SIZE_MAX if the tag or the padding is wrong.
    size_t open(const uint8_t *body, size_t n, uint8_t *pt) {
        if (n < kCbcIv + kCbcBlock + kCbcTag || (n - kCbcIv - kCbcTag) % kCbcBlock != 0) return SIZE_MAX;
        uint8_t tag[kCbcTag];
        const size_t ct_len = n - kCbcIv - kCbcTag;
        mac(body, kCbcIv + ct_len, tag);
        if (CRYPTO_memcmp(tag, body + n - kCbcTag, kCbcTag) != 0) return SIZE_MAX;  // MAC first, then decrypt
        int len1 = 0, len2 = 0;
        if (EVP_DecryptInit_ex(dec_, nullptr, nullptr, nullptr, body) != 1 ||
            EVP_DecryptUpdate(dec_, pt, &len1, body + kCbcIv, static_cast<int>(ct_len)) != 1 ||
            EVP_DecryptFinal_ex(dec_, pt + len1, &len2) != 1) {
            ERR_clear_error();
            return SIZE_MAX;
        }
        return static_cast<size_t>(len1) + static_cast<size_t>(len2);
    }

private:
    void mac(const uint8_t *data, size_t n, uint8_t out[kCbcTag]) {
        OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, const_cast<char *>("SHA256"), 0),
                               OSSL_PARAM_construct_end()};
        size_t out_len = 0;
        if (EVP_MAC_init(mctx_, mac_key_, sizeof mac_key_, params) != 1 || EVP_MAC_update(mctx_, data, n) != 1 ||
            EVP_MAC_final(mctx_, out, &out_len, kCbcTag) != 1 || out_len != kCbcTag)
            fatal("HMAC-SHA-256 failed: %s", openssl_errors().c_str());
    }
    uint8_t mac_key_[32];
    EVP_CIPHER_CTX *enc_ = nullptr, *dec_ = nullptr;
    EVP_MAC *mac_ = nullptr;
    EVP_MAC_CTX *mctx_ = nullptr;
};

// ---- what every thread shares --------------------------------------------------------------

struct Config {
    Options opt;
    sockaddr_in addr{};
    uint8_t psk[SL_KEY_BYTES]{};
    uint8_t cbc_enc[32]{}, cbc_mac[32]{};
    SSL_CTX *tls = nullptr;
    bool host_is_ip = false;
    std::string ack;  // "ACK: received N bytes"
    bool seclink() const { return opt.proto == Proto::Seclink || opt.proto == Proto::SeclinkTls; }
    bool raw() const { return opt.proto == Proto::Raw || opt.proto == Proto::TlsRaw; }
};

struct Shared {
    std::atomic<unsigned> ready{0};      // threads whose connections are all set up
    std::atomic<bool> go{false};         // main: start the measured run (t0, t1 are set)
    std::atomic<bool> release{false};    // main: idle mode, close the held sessions
    std::atomic<uint64_t> t0{0}, t1{0};  // the measured window
    uint64_t setup_deadline = 0;
};

// ---- one connection ------------------------------------------------------------------------

enum class St : uint8_t { Free, Connecting, TlsHandshake, Handshake, Ready, Waiting, Closing };

const char *st_name(St s) {
    switch (s) {
    case St::Free: return "closed";
    case St::Connecting: return "connecting";
    case St::TlsHandshake: return "TLS handshake";
    case St::Handshake: return "seclink handshake";
    case St::Ready: return "idle";
    case St::Waiting: return "waiting for a reply";
    case St::Closing: return "closing";
    }
    return "?";
}

struct Conn {
    uint32_t id = 0;          // global number: in error messages and in each request's first bytes
    uint32_t gen = 0;         // bumped whenever the slot gets a new socket (sessions mode)
    int fd = -1;
    St st = St::Free;
    bool out_armed = false;       // EPOLLOUT is in the interest set
    bool tls_wants_write = false; // the last SSL call needs the socket to become writable
    SSL *ssl = nullptr;
    sl_conn *sl = nullptr;
    std::vector<uint8_t> out;     // raw / cbc: the frame being written is out[out_off, out_len)
    size_t out_off = 0, out_len = 0;
    bool cbc_sealed = false;      // cbc, ack mode: `out` holds this connection's sealed request
    uint8_t hdr[4]{};             // raw / cbc: the reply's length prefix, as received so far
    uint32_t hdr_got = 0, body_len = 0;
    size_t body_got = 0;
    std::vector<uint8_t> body;    // cbc: the reply body (verified as a whole)
    uint64_t seq = 0;             // requests sent on this socket
    size_t held = 0;              // seclink rr: the next request, sealed ahead, at the end of the
                                  // engine's output; not written until its turn
    uint64_t t_send = 0;          // when the request in flight was queued
    uint64_t t_open = 0;          // when the socket was opened (a session's start)
};

// ---- one event-loop thread -----------------------------------------------------------------

class Worker {
public:
    Worker(const Config &cfg, Shared &sh, unsigned index, size_t nconns)
        : cfg_(cfg), opt_(cfg.opt), sh_(sh), index_(index), conns_(nconns), rbuf_(256 * 1024), pattern_(opt_.size) {
        ep_ = epoll_create1(EPOLL_CLOEXEC);
        if (ep_ < 0) fatal("epoll_create1: %s", std::strerror(errno));
        for (size_t i = 0; i < nconns; ++i) conns_[i].id = static_cast<uint32_t>(index + i * opt_.threads);
        for (size_t i = 0; i < pattern_.size(); ++i) pattern_[i] = static_cast<uint8_t>('a' + (i * 7 + i / 251) % 26);
        if (opt_.proto == Proto::Cbc) {
            cbc_ = std::make_unique<CbcCipher>(cfg.cbc_enc, cfg.cbc_mac);
            // The longest acceptable reply: the echo, or the ACK text.
            cbc_max_body_ = cbc_body_len(opt_.expect_echo ? opt_.size : cfg.ack.size());
            plain_.resize(cbc_max_body_);
        }
    }
    ~Worker() {
        for (Conn &c : conns_) close_conn(c);
        if (ep_ >= 0) close(ep_);
    }
    Worker(const Worker &) = delete;
    Worker &operator=(const Worker &) = delete;

    void run() {
        switch (opt_.mode) {
        case Mode::RR:
            setup();
            wait_for_go();
            run_rr();
            break;
        case Mode::Idle:
            setup();
            hold();
            break;
        case Mode::Sessions:
            sh_.ready.fetch_add(1);
            wait_for_go();
            run_sessions();
            break;
        }
        close_all();
    }

    const Histogram &latency() const { return hist_; }
    uint64_t counted() const { return counted_; }

private:
    enum class Phase { Setup, Waiting, Run };

    // -- phases --

    // Opens every connection of this thread (at most --ramp at a time) and brings it to Ready.
    void setup() {
        phase_ = Phase::Setup;
        size_t next = 0;
        while (setup_done_ < conns_.size()) {
            while (next < conns_.size() && next - setup_done_ < opt_.ramp) open_conn(conns_[next++]);
            if (now_ns() > sh_.setup_deadline)
                fatal("thread %u: only %zu of its %zu connections were set up within %.0f s (server too slow, "
                      "or not accepting?)",
                      index_, setup_done_, conns_.size(), opt_.timeout);
            poll(20);
        }
        sh_.ready.fetch_add(1);
    }

    void wait_for_go() {
        phase_ = Phase::Waiting;
        while (!sh_.go.load(std::memory_order_acquire)) {
            if (now_ns() > sh_.setup_deadline + seconds_to_ns(opt_.timeout)) fatal("thread %u: no start signal", index_);
            poll(5);  // anything arriving now is unexpected and fails the run
        }
        phase_ = Phase::Run;
        t0_ = sh_.t0.load();
        t1_ = sh_.t1.load();
    }

    void run_rr() {
        for (Conn &c : conns_) {
            send_request(c);
            ++active_;
            pump(c);
        }
        drain();
    }

    void run_sessions() {
        // This thread's share of --parallel session loops; each slot reopens after each session.
        for (Conn &c : conns_) {
            open_conn(c);
            ++active_;
        }
        drain();
    }

    // Runs the loop until no request (or session) is outstanding; none starts after t1.
    void drain() {
        const uint64_t limit = t1_ + seconds_to_ns(opt_.timeout);
        while (active_ > 0) {
            if (now_ns() > limit) {
                size_t waiting = 0;
                for (const Conn &c : conns_) waiting += c.st != St::Free && c.st != St::Ready;
                fatal("thread %u: %zu connection(s) still waiting %.0f s after the end of the run (server stalled?)",
                      index_, waiting, opt_.timeout);
            }
            poll(50);
        }
    }

    // Idle mode: keep watching the held sessions (any byte or close from the server is an error).
    void hold() {
        phase_ = Phase::Waiting;
        const uint64_t limit = sh_.setup_deadline + seconds_to_ns(opt_.hold + opt_.timeout + 10);
        while (!sh_.release.load(std::memory_order_acquire)) {
            if (now_ns() > limit) fatal("thread %u: no release signal", index_);
            poll(20);
        }
    }

    // Sends CLOSE (seclink) best-effort and closes every socket of this thread.
    void close_all() {
        for (Conn &c : conns_) {
            if (c.fd < 0) continue;
            c.held = 0;  // a request sealed ahead goes out before the CLOSE; its reply is not read
            if (c.sl && sl_conn_is_established(c.sl) && !sl_conn_is_closed(c.sl) &&
                sl_conn_send(c.sl, SL_MSG_CLOSE, nullptr, 0) == SL_OK)
                flush(c, /*fail_on_error=*/false);
            close_conn(c);
        }
    }

    // -- the event loop --

    void poll(int timeout_ms) {
        epoll_event evs[256];
        if (!again_.empty()) timeout_ms = 0;
        const int n = epoll_wait(ep_, evs, 256, timeout_ms);
        if (n < 0 && errno != EINTR) fatal("epoll_wait: %s", std::strerror(errno));
        for (int i = 0; i < n; ++i) {
            const auto idx = static_cast<uint32_t>(evs[i].data.u64);
            const auto gen = static_cast<uint32_t>(evs[i].data.u64 >> 32);
            Conn &c = conns_[idx];
            if (c.fd < 0 || c.gen != gen) continue;  // an event for a socket closed since
            if (c.st == St::Connecting) {
                int err = 0;
                socklen_t len = sizeof err;
                if (getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
                if (err != 0) connect_failed(c, err);
                if (!(evs[i].events & EPOLLOUT)) continue;
                connected(c);
            }
            pump(c);
        }
        // Connections whose TLS layer holds decrypted bytes: no epoll event will announce them.
        std::vector<uint64_t> again;
        again.swap(again_);
        for (const uint64_t key : again) {
            Conn &c = conns_[static_cast<uint32_t>(key)];
            if (c.fd >= 0 && c.gen == static_cast<uint32_t>(key >> 32)) pump(c);
        }
    }

    uint64_t key(const Conn &c) const {
        return (static_cast<uint64_t>(c.gen) << 32) | static_cast<uint64_t>(&c - conns_.data());
    }

    void open_conn(Conn &c) {
        const int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) fatal("socket(): %s (open-files limit too low?)", std::strerror(errno));
        const int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(fd, reinterpret_cast<const sockaddr *>(&cfg_.addr), sizeof cfg_.addr) != 0 && errno != EINPROGRESS)
            connect_failed(c, errno);
        c.fd = fd;
        ++c.gen;
        c.st = St::Connecting;
        c.seq = 0;
        c.hdr_got = 0;
        c.out_off = c.out_len = 0;
        c.tls_wants_write = false;
        c.t_open = now_ns();
        epoll_event ev{};
        ev.events = EPOLLIN | EPOLLOUT;  // EPOLLOUT: the connect completed (or failed)
        ev.data.u64 = key(c);
        if (epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev) != 0) fatal("epoll_ctl: %s", std::strerror(errno));
        c.out_armed = true;
    }

    [[noreturn]] void connect_failed(const Conn &c, int err) {
        char addr[64];
        inet_ntop(AF_INET, &cfg_.addr.sin_addr, addr, sizeof addr);
        fatal("connection #%u: connect to %s:%u failed: %s%s", c.id, addr, opt_.port, std::strerror(err),
              err == ECONNREFUSED     ? " (is the server running?)"
              : err == EADDRNOTAVAIL ? " (out of local ports: too many connections or TIME_WAIT sockets)"
                                     : "");
    }

    void connected(Conn &c) {
        if (cfg_.tls == nullptr) {
            start_protocol(c);
            return;
        }
        c.ssl = SSL_new(cfg_.tls);
        if (c.ssl == nullptr || SSL_set_fd(c.ssl, c.fd) != 1) fatal("SSL_new: %s", openssl_errors().c_str());
        // The certificate must name the host we were given (an address, or a DNS name).
        const int ok = cfg_.host_is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c.ssl), opt_.host.c_str())
                                       : (SSL_set1_host(c.ssl, opt_.host.c_str()) == 1 &&
                                          SSL_set_tlsext_host_name(c.ssl, opt_.host.c_str()) == 1);
        if (ok != 1) fatal("cannot set the TLS host name check: %s", openssl_errors().c_str());
        SSL_set_connect_state(c.ssl);
        c.st = St::TlsHandshake;
    }

    // The byte stream is up (TCP, or TLS done): start the seclink handshake, or use it at once.
    void start_protocol(Conn &c) {
        if (cfg_.seclink()) {
            int rc = sl_conn_new(&c.sl, SL_CLIENT, cfg_.psk);
            if (rc == SL_OK) rc = sl_conn_start(c.sl);
            if (rc != SL_OK) fatal("connection #%u: cannot start the seclink engine: %s", c.id, sl_strerror(rc));
            c.st = St::Handshake;
            return;
        }
        established(c);
    }

    // The session is usable.
    void established(Conn &c) {
        c.st = St::Ready;
        if (phase_ == Phase::Setup) {
            if (opt_.mode == Mode::Idle && opt_.idle_msgs > 0) send_request(c);
            else ++setup_done_;
        } else if (opt_.mode == Mode::Sessions) {
            send_request(c);
        } else {
            fatal("connection #%u: handshake completed outside the setup phase", c.id);
        }
    }

    // Builds the next request and queues it. The first min(8, size) bytes carry a tag of
    // (connection, sequence number) so an echo of another request is detected.
    void send_request(Conn &c) {
        ++c.seq;
        write_tag(c, pattern_.data());
        const size_t n = opt_.size;
        if (cfg_.seclink()) {
            if (c.held != 0) {
                c.held = 0;  // sealed ahead while the previous request was in flight: release it
            } else {
                const int rc = sl_conn_send(c.sl, SL_MSG_DATA, pattern_.data(), n);
                if (rc != SL_OK) fatal("connection #%u: sending a %zu-byte message failed: %s", c.id, n, sl_strerror(rc));
            }
            c.st = St::Waiting;
            c.t_send = now_ns();
            if (opt_.mode == Mode::RR && phase_ == Phase::Run) {
                // Still one request in flight: write this one, then seal the next while the
                // server works, so the loadgen's own encryption is not part of the round trip
                // (the baselines' loadgen paths spend no crypto per request either).
                flush(c);
                seal_ahead(c);
            }
            return;
        } else if (cfg_.raw()) {
            c.out.resize(4 + n);
            put_be32(c.out.data(), static_cast<uint32_t>(n));
            std::memcpy(c.out.data() + 4, pattern_.data(), n);
        } else if (!c.cbc_sealed || opt_.cbc_reseal) {
            // The cbc protocol has no counter: the server cannot tell a resent frame from a new
            // one and does the same work for it. With ACK replies (the request's bytes are not
            // checked) each connection seals its request once and resends it, so the loadgen's
            // CPU, shared with the server on a small machine, does not hold the baseline back.
            cbc_->seal(pattern_.data(), n, c.out);
            c.cbc_sealed = !opt_.expect_echo;  // --cbc-reseal: a fresh IV and MAC every time
        }
        c.out_off = 0;
        c.out_len = c.out.size();
        c.st = St::Waiting;
        c.t_send = now_ns();
    }

    void seal_ahead(Conn &c) {
        const size_t before = sl_conn_pending_size(c.sl);
        ++c.seq;  // the tag of the request after this one
        write_tag(c, pattern_.data());
        --c.seq;
        const int rc = sl_conn_send(c.sl, SL_MSG_DATA, pattern_.data(), opt_.size);
        if (rc != SL_OK) fatal("connection #%u: sealing the next request failed: %s", c.id, sl_strerror(rc));
        c.held = sl_conn_pending_size(c.sl) - before;
    }

    void write_tag(const Conn &c, uint8_t *dst) const {
        uint64_t tag = (static_cast<uint64_t>(c.id) << 40) ^ (c.seq * 0x9E3779B97F4A7C15ull);
        for (size_t i = 0; i < std::min<size_t>(8, opt_.size); ++i, tag >>= 8) dst[i] = static_cast<uint8_t>(tag);
    }

    // Whether `p[0..n)` equals bytes [off, off+n) of the request in flight on `c`.
    bool echo_matches(const Conn &c, size_t off, const uint8_t *p, size_t n) const {
        uint8_t head[8];
        write_tag(c, head);
        const size_t tagged = std::min<size_t>(8, opt_.size);
        for (; n > 0 && off < tagged; ++p, ++off, --n)
            if (*p != head[off]) return false;
        return n == 0 || std::memcmp(p, pattern_.data() + off, n) == 0;
    }

    // A whole reply message (seclink, cbc): check it, then account for it.
    void on_reply(Conn &c, const uint8_t *data, size_t len) {
        if (c.st != St::Waiting) fatal("connection #%u: unexpected message from the server (%s)", c.id, st_name(c.st));
        if (opt_.expect_echo) {
            if (len != opt_.size || !echo_matches(c, 0, data, len))
                fatal("connection #%u: reply #%llu is not the echo of the request: %zu bytes \"%s\", expected %zu "
                      "bytes \"%s\"",
                      c.id, static_cast<unsigned long long>(c.seq), len, preview(data, len).c_str(), opt_.size,
                      expected_preview(c).c_str());
        } else if (len != cfg_.ack.size() || std::memcmp(data, cfg_.ack.data(), len) != 0) {
            fatal("connection #%u: reply #%llu is \"%s\" (%zu bytes), expected \"%s\"%s", c.id,
                  static_cast<unsigned long long>(c.seq), preview(data, len).c_str(), len, cfg_.ack.c_str(),
                  len == opt_.size ? " (an echo server? use --expect echo)" : "");
        }
        reply_ok(c);
    }

    std::string expected_preview(const Conn &c) const {
        std::vector<uint8_t> exp(std::min<size_t>(opt_.size, 64));
        std::memcpy(exp.data(), pattern_.data(), exp.size());
        write_tag(c, exp.data());
        return preview(exp.data(), opt_.size <= 48 ? opt_.size : 49);
    }

    void reply_ok(Conn &c) {
        const uint64_t t = now_ns();
        c.st = St::Ready;
        if (phase_ == Phase::Setup) {  // idle mode: the round trips before holding the session
            if (c.seq < opt_.idle_msgs) send_request(c);
            else ++setup_done_;
            return;
        }
        if (phase_ != Phase::Run) fatal("connection #%u: reply while no request was in flight", c.id);
        if (opt_.mode == Mode::RR) {
            if (t >= t0_ && t < t1_) {
                ++counted_;
                hist_.add(t - c.t_send);
            }
            if (t < t1_) send_request(c);
            else --active_;
            return;
        }
        // Sessions: the latency is the whole session up to the verified reply.
        if (t >= t0_ && t < t1_) {
            ++counted_;
            hist_.add(t - c.t_open);
        }
        if (cfg_.seclink()) {
            const int rc = sl_conn_send(c.sl, SL_MSG_CLOSE, nullptr, 0);
            if (rc != SL_OK) fatal("connection #%u: cannot queue CLOSE: %s", c.id, sl_strerror(rc));
        }
        c.st = St::Closing;  // pump() writes what is pending, then closes and reopens
    }

    // Closing state with everything written: end this session and (before t1) start the next.
    void finish_session(Conn &c) {
        close_conn(c);
        if (now_ns() < t1_) open_conn(c);
        else --active_;
    }

    // -- byte I/O --

    void pending(const Conn &c, const uint8_t **p, size_t *n) const {
        if (c.sl) {
            sl_conn_pending(c.sl, p, n);
            *n -= c.held;  // the request sealed ahead waits for its turn
        } else {
            *p = c.out.data() + c.out_off;
            *n = c.out_len - c.out_off;
        }
    }

    void consume(Conn &c, size_t n) {
        if (c.sl) {
            sl_conn_consume(c.sl, n);
        } else {
            c.out_off += n;
            if (c.out_off == c.out_len) c.out_off = c.out_len = 0;  // the buffer is kept for the next request
        }
    }

    // Writes pending output until the socket would block; returns whether anything was written.
    bool flush(Conn &c, bool fail_on_error = true) {
        bool wrote = false;
        for (int i = 0; i < 256; ++i) {  // each pass writes something or stops
            const uint8_t *p = nullptr;
            size_t n = 0;
            pending(c, &p, &n);
            if (n == 0) break;
            size_t done = 0;
            if (c.ssl) {
                ERR_clear_error();
                const int r = SSL_write(c.ssl, p, static_cast<int>(std::min<size_t>(n, 1u << 30)));
                if (r > 0) {
                    done = static_cast<size_t>(r);
                    c.tls_wants_write = false;
                } else {
                    const int e = SSL_get_error(c.ssl, r);
                    if (e == SSL_ERROR_WANT_WRITE) c.tls_wants_write = true;
                    else if (e != SSL_ERROR_WANT_READ && fail_on_error) tls_failed(c, "write", r, e);
                    break;
                }
            } else {
                const ssize_t r = ::send(c.fd, p, n, MSG_NOSIGNAL);
                if (r < 0) {
                    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && fail_on_error)
                        fatal("connection #%u: send: %s (%s)", c.id, std::strerror(errno), st_name(c.st));
                    if (errno != EINTR) break;
                    continue;
                }
                done = static_cast<size_t>(r);
            }
            consume(c, done);
            wrote = true;
        }
        return wrote;
    }

    // Reads once (one buffer) and handles the bytes; returns whether anything arrived.
    bool read_some(Conn &c) {
        if (c.ssl) {
            ERR_clear_error();
            const int r = SSL_read(c.ssl, rbuf_.data(), static_cast<int>(rbuf_.size()));
            if (r > 0) {
                on_bytes(c, rbuf_.data(), static_cast<size_t>(r));
                return true;
            }
            const int e = SSL_get_error(c.ssl, r);
            if (e == SSL_ERROR_WANT_READ) return false;
            if (e == SSL_ERROR_WANT_WRITE) {
                c.tls_wants_write = true;
                return false;
            }
            if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0 && errno == 0))
                on_eof(c);
            tls_failed(c, "read", r, e);
        }
        const ssize_t r = ::recv(c.fd, rbuf_.data(), rbuf_.size(), 0);
        if (r > 0) {
            on_bytes(c, rbuf_.data(), static_cast<size_t>(r));
            return true;
        }
        if (r == 0) on_eof(c);
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return false;
        fatal("connection #%u: recv: %s (%s, %llu requests sent)", c.id, std::strerror(errno), st_name(c.st),
              static_cast<unsigned long long>(c.seq));
    }

    [[noreturn]] void on_eof(Conn &c) {
        std::string why = "the server closed the connection";
        if (c.sl) {
            const int rc = sl_conn_feed_eof(c.sl);
            if (rc != SL_OK) why += std::string(" in the middle of a frame (") + sl_errname(rc) + ")";
        }
        // The likely causes, where the state says something.
        const char *hint = "";
        if (c.st == St::Handshake) hint = "; a seclink server closes silently when the handshake fails: same --psk-file?";
        else if (c.seq == 1 && opt_.proto == Proto::Cbc) hint = "; the cbc server drops frames whose HMAC fails: same --psk-file?";
        else if (c.seq == 1) hint = "; is the server speaking this --proto?";
        fatal("connection #%u: %s (%s, requests sent: %llu)%s", c.id, why.c_str(), st_name(c.st),
              static_cast<unsigned long long>(c.seq), hint);
    }

    [[noreturn]] void tls_failed(Conn &c, const char *what, int r, int e) {
        const long vr = SSL_get_verify_result(c.ssl);
        std::string detail;
        if (vr != X509_V_OK) {
            detail = std::string("the server certificate did not verify: ") + X509_verify_cert_error_string(vr) +
                     " (CA file " + opt_.tls_ca + ", host " + opt_.host + ")";
        } else if (e == SSL_ERROR_SYSCALL) {
            detail = ERR_peek_error() ? openssl_errors() : r == 0 ? "unexpected end of stream" : std::strerror(errno);
        } else {
            detail = openssl_errors();
        }
        fatal("connection #%u: TLS %s failed (%s): %s", c.id, what, st_name(c.st), detail.c_str());
    }

    // Drives one connection as far as it goes without blocking (bounded rounds; level-triggered
    // epoll brings us back for whatever is left).
    void pump(Conn &c) {
        const uint32_t gen = c.gen;
        for (int round = 0; round < 8; ++round) {
            if (c.st == St::TlsHandshake && !tls_handshake(c)) break;
            if (c.gen != gen || c.st == St::Free || c.st == St::Connecting) return;
            const bool wrote = flush(c);
            if (c.st == St::Closing) {
                const uint8_t *p = nullptr;
                size_t n = 0;
                pending(c, &p, &n);
                if (n == 0) {
                    finish_session(c);
                    return;
                }
                break;  // wait for EPOLLOUT
            }
            const bool got = read_some(c);
            if (c.gen != gen) return;
            if (!wrote && !got) break;
        }
        if (c.gen != gen || c.fd < 0) return;
        arm(c);
        if (c.ssl && SSL_pending(c.ssl) > 0) again_.push_back(key(c));
    }

    // Returns true once the TLS handshake is complete (and the protocol started).
    bool tls_handshake(Conn &c) {
        ERR_clear_error();
        const int r = SSL_connect(c.ssl);
        if (r == 1) {
            c.tls_wants_write = false;
            start_protocol(c);
            return true;
        }
        const int e = SSL_get_error(c.ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            c.tls_wants_write = e == SSL_ERROR_WANT_WRITE;
            return false;
        }
        tls_failed(c, "handshake", r, e);
    }

    // EPOLLOUT only while something waits for the socket to become writable.
    void arm(Conn &c) {
        const uint8_t *p = nullptr;
        size_t n = 0;
        if (c.st != St::TlsHandshake) pending(c, &p, &n);
        const bool want = n > 0 || c.tls_wants_write;
        if (want == c.out_armed) return;
        epoll_event ev{};
        ev.events = EPOLLIN | (want ? EPOLLOUT : 0u);
        ev.data.u64 = key(c);
        if (epoll_ctl(ep_, EPOLL_CTL_MOD, c.fd, &ev) != 0) fatal("epoll_ctl: %s", std::strerror(errno));
        c.out_armed = want;
    }

    void close_conn(Conn &c) {
        if (c.ssl) {
            if (SSL_is_init_finished(c.ssl)) SSL_shutdown(c.ssl);  // sends close_notify; no wait
            SSL_free(c.ssl);
            c.ssl = nullptr;
            ERR_clear_error();
        }
        sl_conn_free(c.sl);
        c.sl = nullptr;
        if (c.fd >= 0) close(c.fd);  // also leaves the epoll set
        c.fd = -1;
        c.st = St::Free;
        ++c.gen;
    }

    // -- parsing replies --

    void on_bytes(Conn &c, const uint8_t *p, size_t n) {
        if (c.sl) on_seclink_bytes(c, p, n);
        else on_framed_bytes(c, p, n);
    }

    void on_seclink_bytes(Conn &c, const uint8_t *p, size_t n) {
        const uint32_t gen = c.gen;
        size_t off = 0;
        for (size_t calls = 0; off < n; ++calls) {  // each call consumes bytes or yields an event
            if (calls > n + 16) fatal("connection #%u: the engine made no progress on its input", c.id);
            size_t used = 0;
            sl_event ev{};
            const int rc = sl_conn_feed(c.sl, p + off, n - off, &used, &ev);
            if (rc != SL_OK)
                fatal("connection #%u: seclink protocol error %s (%s): %s", c.id, sl_errname(rc), st_name(c.st),
                      sl_strerror(rc));
            off += used;
            if (ev.type == SL_EVENT_HANDSHAKE_DONE) {
                established(c);
            } else if (ev.type == SL_EVENT_MESSAGE) {
                if (ev.msg_type == SL_MSG_DATA) {
                    on_reply(c, ev.data, ev.len);
                } else if (ev.msg_type == SL_MSG_CLOSE) {
                    fatal("connection #%u: the server sent CLOSE \"%s\" (%s, %llu requests sent)", c.id,
                          preview(ev.data, ev.len).c_str(), st_name(c.st), static_cast<unsigned long long>(c.seq));
                }  // PING: the engine has queued the PONG; PONG: not asked for, ignored
            } else if (used == 0) {
                fatal("connection #%u: the engine consumed no input", c.id);
            }
            if (c.gen != gen || c.st == St::Closing) return;  // the session ended on this event
        }
    }

    // raw / tls-raw / cbc: u32be length prefix + body.
    void on_framed_bytes(Conn &c, const uint8_t *p, size_t n) {
        const uint32_t gen = c.gen;
        size_t off = 0;
        while (off < n) {
            if (c.st != St::Waiting)
                fatal("connection #%u: %zu unexpected bytes from the server (%s)", c.id, n - off, st_name(c.st));
            if (c.hdr_got < 4) {
                const size_t k = std::min<size_t>(4 - c.hdr_got, n - off);
                std::memcpy(c.hdr + c.hdr_got, p + off, k);
                c.hdr_got += static_cast<uint32_t>(k);
                off += k;
                if (c.hdr_got < 4) return;
                c.body_len = get_be32(c.hdr);
                c.body_got = 0;
                if (cfg_.raw() && c.body_len != opt_.size)
                    fatal("connection #%u: reply #%llu announces %u bytes, expected the echo of %zu", c.id,
                          static_cast<unsigned long long>(c.seq), c.body_len, opt_.size);
                if (!cfg_.raw() && (c.body_len < cbc_body_len(0) || c.body_len > cbc_max_body_))
                    fatal("connection #%u: reply #%llu announces a %u-byte frame body, expected %zu to %zu", c.id,
                          static_cast<unsigned long long>(c.seq), c.body_len, cbc_body_len(0), cbc_max_body_);
                if (!cfg_.raw()) c.body.resize(c.body_len);
            }
            const size_t k = std::min<size_t>(c.body_len - c.body_got, n - off);
            if (cfg_.raw()) {
                if (!echo_matches(c, c.body_got, p + off, k))
                    fatal("connection #%u: reply #%llu is not the echo of the request (bytes %zu..%zu differ; "
                          "expected \"%s\")",
                          c.id, static_cast<unsigned long long>(c.seq), c.body_got, c.body_got + k,
                          expected_preview(c).c_str());
            } else {
                std::memcpy(c.body.data() + c.body_got, p + off, k);
            }
            c.body_got += k;
            off += k;
            if (c.body_got < c.body_len) return;
            c.hdr_got = 0;
            if (cfg_.raw()) {
                reply_ok(c);
            } else {
                const size_t m = cbc_->open(c.body.data(), c.body_len, plain_.data());
                if (m == SIZE_MAX)
                    fatal("connection #%u: reply #%llu failed HMAC or padding verification (different PSK?)", c.id,
                          static_cast<unsigned long long>(c.seq));
                on_reply(c, plain_.data(), m);
            }
            if (c.gen != gen || c.st == St::Closing) return;
        }
    }

    const Config &cfg_;
    const Options &opt_;
    Shared &sh_;
    const unsigned index_;
    int ep_ = -1;
    std::vector<Conn> conns_;
    std::vector<uint8_t> rbuf_;     // one read buffer per thread
    std::vector<uint8_t> pattern_;  // request payload; its first bytes are rewritten per request
    std::vector<uint8_t> plain_;    // cbc: decrypted reply
    std::unique_ptr<CbcCipher> cbc_;
    size_t cbc_max_body_ = 0;
    std::vector<uint64_t> again_;
    Phase phase_ = Phase::Setup;
    size_t setup_done_ = 0;
    size_t active_ = 0;  // rr: requests in flight; sessions: session slots still running
    uint64_t t0_ = 0, t1_ = 0;
    uint64_t counted_ = 0;
    Histogram hist_;
};

// ---- output --------------------------------------------------------------------------------

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

}  // namespace

int main(int argc, char **argv) {
    Config cfg;
    cfg.opt = parse_options(argc, argv);
    const Options &o = cfg.opt;
    std::signal(SIGPIPE, SIG_IGN);  // OpenSSL writes with write(2): a reset peer must not kill us

    // Every connection is a file descriptor: use the hard limit.
    rlimit rl{};
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    const unsigned live = o.mode == Mode::Sessions ? o.parallel : o.conns;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < live + 64u)
        fatal("%u connections need more open files than the limit of %llu (ulimit -Hn)", live,
              static_cast<unsigned long long>(rl.rlim_cur));

    // Address: resolved once, IPv4.
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

    if (o.proto != Proto::Raw && o.proto != Proto::TlsRaw) {
        char path[4096];
        int rc = sl_key_path(o.psk_file.empty() ? nullptr : o.psk_file.c_str(), path, sizeof path, nullptr);
        if (rc == SL_OK) rc = sl_key_load(path, cfg.psk);
        if (rc != SL_OK) fatal("cannot load the pre-shared key %s: %s", path, sl_strerror(rc));
        if (o.proto == Proto::Cbc) derive_cbc_keys(cfg.psk, cfg.cbc_enc, cfg.cbc_mac);
    }
    if (o.proto == Proto::SeclinkTls || o.proto == Proto::TlsRaw) {
        cfg.tls = SSL_CTX_new(TLS_client_method());
        if (cfg.tls == nullptr || SSL_CTX_set_min_proto_version(cfg.tls, TLS1_3_VERSION) != 1)
            fatal("cannot create the TLS context: %s", openssl_errors().c_str());
        if (SSL_CTX_load_verify_locations(cfg.tls, o.tls_ca.c_str(), nullptr) != 1)
            fatal("cannot load the CA file %s: %s", o.tls_ca.c_str(), openssl_errors().c_str());
        SSL_CTX_set_verify(cfg.tls, SSL_VERIFY_PEER, nullptr);
        SSL_CTX_set_session_cache_mode(cfg.tls, SSL_SESS_CACHE_OFF);  // every session: a full handshake
        SSL_CTX_set_mode(cfg.tls, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    }

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
        workers.push_back(std::make_unique<Worker>(cfg, sh, t, live / o.threads + (t < live % o.threads ? 1 : 0)));
    std::vector<std::thread> threads;
    for (auto &w : workers) threads.emplace_back([&w] { w->run(); });

    while (sh.ready.load() < o.threads) {  // bounded by the setup deadline
        if (now_ns() > sh.setup_deadline + seconds_to_ns(5)) fatal("setup did not finish within %.0f s", o.timeout);
        sleep_until_ns(now_ns() + 2000000);
    }
    const double setup_s = static_cast<double>(now_ns() - t_setup) / 1e9;

    Json j;
    j.str("proto", proto_name(o.proto));
    j.str("mode", mode_name(o.mode));
    j.integer("threads", o.threads);
    j.integer("size", static_cast<long long>(o.size));
    j.str("expect", o.expect_echo ? "echo" : "ack");

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
        return 0;
    }

    // rr and sessions: a timed window after the warm-up.
    const uint64_t start = now_ns();
    const uint64_t t0 = start + seconds_to_ns(o.warmup), t1 = t0 + seconds_to_ns(o.seconds);
    sh.t0.store(t0);
    sh.t1.store(t1);
    sh.go.store(true, std::memory_order_release);
    sleep_until_ns(t0);
    const ProcSample s0 = sample_proc(pid);
    const double c0 = self_cpu_s(), m0 = machine_busy_s();
    sleep_until_ns(t1);
    const ProcSample s1 = sample_proc(pid);
    const double c1 = self_cpu_s(), m1 = machine_busy_s();
    for (auto &t : threads) t.join();

    Histogram lat;
    uint64_t n = 0;
    for (auto &w : workers) {
        lat.merge(w->latency());
        n += w->counted();
    }
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
    if (cfg.tls) SSL_CTX_free(cfg.tls);
    OPENSSL_cleanse(cfg.psk, sizeof cfg.psk);
    return 0;
}
