// loadgen: small helpers (clock, fatal exit, OpenSSL errors, byte order, previews).
#include "common.hpp"

#include <openssl/err.h>
#include <time.h>

#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <mutex>

namespace loadgen {

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

void fatal(const char *fmt, ...) {
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

}  // namespace loadgen
