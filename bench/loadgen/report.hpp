// loadgen: the output. The human-readable lines after a run and the last line, `RESULT {json}`
// (read by bench/run_bench.py; its keys are listed in bench/README.md). Figures that could not be
// measured are null.
#pragma once

#include <cstdint>

#include "conn.hpp"
#include "stats.hpp"

namespace loadgen {

// idle: the server's samples before the sessions, twice while held, and after closing them.
void report_idle(const Config &cfg, double setup_s, const ProcSample &before, const ProcSample &held1,
                 const ProcSample &held2, const ProcSample &after);

// rr and sessions: the samples at the start (0) and the end (1) of the measured window.
struct WindowSamples {
    ProcSample server0, server1;
    double self0 = 0, self1 = 0;        // self_cpu_s()
    double machine0 = 0, machine1 = 0;  // machine_busy_s()
};
void report_window(const Config &cfg, double setup_s, const Histogram &lat, uint64_t n, const WindowSamples &w);

}  // namespace loadgen
