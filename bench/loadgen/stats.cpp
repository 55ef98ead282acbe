// loadgen: reading the server process, the machine and ourselves from /proc and getrusage().
#include "stats.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

namespace loadgen {

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

}  // namespace loadgen
