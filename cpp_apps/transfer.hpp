// transfer.hpp - --send / --get of the client program (docs/PROTOCOL.md 10): the progress bar
// (only when standard error is a terminal: bytes, rate, ETA, one line redrawn) and the final line
// with size, time, rate and SHA-256. The transfer itself is the library's (sl_client_send_file).
#pragma once

#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <string>

#include "common.hpp"

namespace app::transfer {

inline double now_s() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return double(ts.tv_sec) + double(ts.tv_nsec) / 1e9;
}

inline std::string human(double bytes) {
    const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (bytes >= 1024 && u < 4) {
        bytes /= 1024;
        ++u;
    }
    char buf[32];
    std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", bytes, units[u]);
    return buf;
}

struct Bar {
    std::string label;
    double started = now_s(), drawn = 0;
    uint64_t first = 0;
    bool seen = false, tty = isatty(STDERR_FILENO) != 0;

    static void cb(void *ud, uint64_t done, uint64_t total) { static_cast<Bar *>(ud)->update(done, total); }
    void update(uint64_t done_n, uint64_t total_n) {
        if (!seen) first = done_n, seen = true;
        const double done = static_cast<double>(done_n), total = static_cast<double>(total_n);
        const double t = now_s();
        if (!tty || (t - drawn < 0.1 && done_n != total_n)) return;
        drawn = t;
        const double rate = (done - static_cast<double>(first)) / std::max(t - started, 1e-6);
        const double eta = rate > 0 ? (total - done) / rate : 0;
        const int pct = total_n ? static_cast<int>(100.0 * done / total) : 100;
        const int width = 24, fill = pct * width / 100;
        std::fprintf(stderr, "\r%s [%s%s] %3d%% %s / %s  %s/s  ETA %ds ", label.c_str(), std::string(fill, '#').c_str(),
                     std::string(width - fill, '.').c_str(), pct, human(done).c_str(), human(total).c_str(),
                     human(rate).c_str(), static_cast<int>(eta));
        std::fflush(stderr);
    }
    void done() {
        if (tty && seen) std::fputs("\r\033[K", stderr);  // the bar leaves no trace
    }
};

inline std::string hex(const uint8_t *p, size_t n) {
    std::string s;
    char b[3];
    for (size_t i = 0; i < n; ++i) {
        std::snprintf(b, sizeof b, "%02x", p[i]);
        s += b;
    }
    return s;
}

// "sent report.pdf: 1048576 bytes (1.0 MiB) in 0.52 s, 1.9 MiB/s, sha256 ab12..."
inline std::string summary(const char *verb, const std::string &name, const sl_file_result &r, double secs) {
    char rate[64];
    std::snprintf(rate, sizeof rate, "%.2f s, %s/s", secs, human(static_cast<double>(r.size - r.resumed_from) / std::max(secs, 1e-6)).c_str());
    return std::string("[INFO] ") + verb + " " + name + ": " + std::to_string(r.size) + " bytes (" + human(static_cast<double>(r.size)) +
           ") in " + std::string(rate) + (r.resumed_from ? ", resumed after " + std::to_string(r.resumed_from) + " bytes" : "") +
           ", sha256 " + hex(r.sha256, 32);
}

// Runs one transfer; returns 0 or the exit code, having said why on standard error.
inline int run(const char *prog, sl_client *c, Logger &log, bool upload, const std::string &what, bool overwrite) {
    Bar bar;
    bar.label = (upload ? "send " : "get ") + what;
    sl_file_result r{};
    const double t0 = now_s();
    int rc = upload ? sl_client_send_file(c, what.c_str(), nullptr, Bar::cb, &bar, &r)
                    : sl_client_get_file(c, what.c_str(), nullptr, overwrite, Bar::cb, &bar, &r);
    bar.done();
    if (rc == SL_OK) {
        log.line(SL_LOG_INFO, summary(upload ? "sent" : "received", what, r, now_s() - t0), true);
        return kOk;
    }
    std::string why = r.message[0] ? std::string(r.message) : describe(rc);
    if (rc == SL_EFILE_REFUSED) why = "the server refused it: " + why;
    if (rc == SL_EFILE_EXISTS) why += " (add --overwrite to replace it)";
    std::fprintf(stderr, "%s: error: %s %s failed: %s\n", prog, upload ? "sending" : "getting", what.c_str(), why.c_str());
    return rc == SL_EIO ? kInternal : sl_err_category(rc);
}

}  // namespace app::transfer
