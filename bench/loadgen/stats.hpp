// loadgen: the statistics. A latency histogram (log-linear buckets, under 1.6% relative error,
// merged across threads) and the CPU/memory samples: the server's CPU time and RSS from /proc
// (--server-pid), the whole machine's busy time, and the loadgen's own CPU time.
#pragma once

#include <sys/types.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace loadgen {

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

struct ProcSample {
    bool ok = false;
    double cpu_s = 0;   // utime + stime of every thread, in seconds
    long rss_kib = 0;   // VmRSS
};

ProcSample sample_proc(pid_t pid);  // not ok if pid <= 0 or /proc/PID is unreadable

// Busy CPU time of the whole machine (every CPU, seconds) from the first line of /proc/stat;
// with the server's and our own, it shows how much else ran during the window. NAN if unreadable.
double machine_busy_s();

double self_cpu_s();  // getrusage(RUSAGE_SELF): user + system seconds

}  // namespace loadgen
